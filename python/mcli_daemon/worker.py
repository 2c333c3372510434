"""Write warm mcli workers in Python (standard library only).

    from mcli_worker import command, serve   # or: from mcli_daemon.worker import command, serve

    MODEL = load_expensive_model()        # paid once, when the worker starts

    @command("generate")
    def generate(prompt, *rest):
        print(MODEL.complete(prompt))       # reaches the client as it is printed
        return 0                            # an int sets the exit code

    serve()

A manifest with a `[worker]` table runs such a script; mcli keeps it running between calls. The
worker reads `run` requests (one JSON-RPC message per line) on standard input and writes
`output` notifications and the answer on standard output, so inside a command `print` and
`sys.stderr` reach the client, and anything the worker logs outside a call goes to the server's
log through standard error. An exception gives exit code 1 and its traceback on stderr. A
timeout or cancel raises KeyboardInterrupt inside the command (exit code 130) and the worker
stays warm; a command that swallows it is killed after the server's grace period.

This file is the helper's one source: pip installs it as `mcli_daemon.worker`, and mcli-server
embeds it and provides it to every worker as `mcli_worker`. So it stays standalone: standard
library only, no relative imports, nothing from the rest of the package.
"""

import base64
import io
import json
import os
import queue
import signal
import sys
import threading
import traceback
from typing import Any, Callable, Dict, Optional, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["command", "serve"]

_COMMANDS: Dict[str, Callable[..., Any]] = {}
_SEND_LOCK = threading.Lock()

# From the import on, the protocol has descriptors of its own: file descriptor 1 becomes standard
# error and 0 becomes /dev/null, so a stray print while the model loads, or a child process's
# output, lands in the server's log instead of the protocol stream. (Import this module first.)
sys.stdout.flush()
_PROTOCOL_OUT = os.fdopen(os.dup(1), "w", encoding="utf-8")
_REQUESTS = os.fdopen(os.dup(0), "r", encoding="utf-8")
os.dup2(2, 1)
_DEVNULL = os.open(os.devnull, os.O_RDONLY)
os.dup2(_DEVNULL, 0)


def command(name: str) -> "Callable[[_F], _F]":
    """Registers the decorated function as the worker command `name`."""

    def register(function):
        _COMMANDS[name] = function
        return function

    return register


def _send(message):
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with _SEND_LOCK:
        _PROTOCOL_OUT.write(line)
        _PROTOCOL_OUT.flush()


class _Output(io.TextIOBase):
    """A text stream whose writes become `output` notifications as they happen."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream

    def writable(self):
        return True

    encoding = "utf-8"

    def write(self, text):
        if text:
            try:
                text.encode("utf-8")
                params = {"stream": self._stream, "data": text}
            except UnicodeEncodeError:
                # Text decoded with surrogateescape (file names, argv): send the original bytes.
                raw = text.encode("utf-8", "surrogateescape")
                params = {"stream": self._stream, "data_b64": base64.b64encode(raw).decode("ascii")}
            _send({"jsonrpc": "2.0", "method": "output", "params": params})
        return len(text)

    def flush(self):
        pass


class _BinaryOutput(io.RawIOBase):
    """`sys.stdout.buffer`: bytes go out base64-encoded, exactly."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream

    def writable(self):
        return True

    def write(self, data):
        data = bytes(data)
        if data:
            encoded = base64.b64encode(data).decode("ascii")
            _send({"jsonrpc": "2.0", "method": "output", "params": {"stream": self._stream, "data_b64": encoded}})
        return len(data)


# Cancellation. A reader thread takes the server's messages; a `cancel` for the running call, or
# the server going away, interrupts the main thread with SIGINT, so that even a blocking call
# such as time.sleep ends with KeyboardInterrupt. The handler raises only while a command runs,
# and at most once per call, so the interrupt can never land in the protocol code.
_LOCK = threading.Lock()
_running = None  # the id of the call in progress, while the main thread runs it
_stop = False  # the call in progress was cancelled (checked when its command starts)
_cancelled = None  # the id of a call cancelled before it started
_armed = False  # whether SIGINT may raise now (read and written in the main thread only)
_interruptible = False  # whether serve() installed the handler


def _on_interrupt(signum, frame):
    global _armed
    if _armed:
        _armed = False
        raise KeyboardInterrupt


def _interrupt(call_id):
    """From the reader thread: stops call `call_id` if it is the one running."""
    global _running, _cancelled, _stop
    with _LOCK:
        if _running is None or _running != call_id:
            _cancelled = call_id
            return
        _running = None
        _stop = True
    if _interruptible:
        os.kill(os.getpid(), signal.SIGINT)


def _read_requests(calls):
    try:
        for line in _REQUESTS:
            _take(line, calls)
    except Exception:  # noqa: BLE001 - unreadable input ends the worker like its end does
        traceback.print_exc(file=sys.__stderr__)
    finally:
        # The server has gone: end the call in progress, then serve() returns.
        with _LOCK:
            running = _running
        if running is not None:
            _interrupt(running)
        calls.put(None)


def _take(line, calls):
    line = line.strip()
    if not line:
        return
    try:
        message = json.loads(line)
    except ValueError:
        print(f"mcli_worker: ignored a line that is not JSON: {line[:80]!r}", file=sys.__stderr__)
        return
    if not isinstance(message, dict):
        return
    if message.get("method") == "run" and "id" in message:
        calls.put(message)
    elif message.get("method") == "cancel":
        params = message.get("params")
        _interrupt(params.get("id") if isinstance(params, dict) else None)


def _run(params):
    global _armed
    name = params.get("command")
    function = _COMMANDS.get(name)
    if function is None:
        sys.stderr.write(f"mcli_worker: this worker has no command {name!r} (it has: {', '.join(sorted(_COMMANDS))})\n")
        return 127
    cwd = params.get("cwd")
    if cwd:
        try:
            os.chdir(cwd)
        except OSError as error:
            sys.stderr.write(f"mcli_worker: cannot enter {cwd}: {error}\n")
            return 1
    try:
        _armed = True
        if _stop:  # cancelled while the call was being set up, before SIGINT could raise
            _armed = False
            raise KeyboardInterrupt
        result = function(*params.get("args", []))
    except KeyboardInterrupt:
        return 130
    except SystemExit as exit:
        code = exit.code
        if isinstance(code, int):
            return code
        if code is not None:
            sys.stderr.write(f"{code}\n")
            return 1
        return 0
    except Exception:  # noqa: BLE001 - any failure of the command is its exit status
        traceback.print_exc()
        return 1
    finally:
        _armed = False
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _call(params):
    """Runs one call with its output, input, environment and directory in place."""
    params = params if isinstance(params, dict) else {}
    saved = (sys.stdout, sys.stderr, sys.stdin)
    environ = dict(os.environ)
    stdout, stderr = _Output("stdout"), _Output("stderr")
    stdout.buffer = _BinaryOutput("stdout")
    stderr.buffer = _BinaryOutput("stderr")
    try:
        data = base64.b64decode(params["stdin_b64"]) if params.get("stdin_b64") else b""
        sys.stdout, sys.stderr = stdout, stderr
        sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")
        if isinstance(params.get("env"), dict):
            os.environ.clear()
            os.environ.update(params["env"])
        return _run(params)
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved
        os.environ.clear()
        os.environ.update(environ)


def serve() -> None:
    """Serves calls until standard input closes."""
    global _running, _cancelled, _stop, _interruptible
    try:
        signal.signal(signal.SIGINT, _on_interrupt)
        _interruptible = True
    except ValueError:
        pass  # not the main thread: a cancelled call runs on, and the server ends the worker
    calls: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
    threading.Thread(target=_read_requests, args=(calls,), name="mcli-requests", daemon=True).start()
    while True:
        message = calls.get()
        if message is None:
            return
        with _LOCK:
            skip = _cancelled == message["id"]
            _running = None if skip else message["id"]
            _cancelled = None
            _stop = False
        try:
            code = 130 if skip else _call(message.get("params"))
        except KeyboardInterrupt:
            code = 130  # the interrupt came as the command ended
        except Exception:  # noqa: BLE001 - a call the worker cannot set up fails alone
            traceback.print_exc(file=sys.__stderr__)
            code = 1
        finally:
            with _LOCK:
                _running = None
        try:
            _send({"jsonrpc": "2.0", "id": message["id"], "result": {"exit_code": int(code)}})
        except OSError:
            return  # the server has gone
