"""Write warm mcli workers in Python (standard library only).

    from mcli_worker import command, serve

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
log through standard error. An exception gives exit code 1 and its traceback on stderr.
"""

import base64
import io
import json
import os
import sys
import threading
import traceback

__all__ = ["command", "serve"]

_COMMANDS = {}
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


def command(name):
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


def _run(params):
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
        result = function(*params.get("args", []))
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
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def serve():
    """Serves calls until standard input closes."""
    saved = (sys.stdout, sys.stderr, sys.stdin)
    for line in _REQUESTS:
        line = line.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            print(f"mcli_worker: ignored a line that is not JSON: {line[:80]!r}", file=saved[1])
            continue
        if message.get("method") != "run" or "id" not in message:
            continue  # `cancel` and unknown notifications: a call cannot be interrupted here
        params = message.get("params") or {}
        stdout, stderr = _Output("stdout"), _Output("stderr")
        stdout.buffer = _BinaryOutput("stdout")
        stderr.buffer = _BinaryOutput("stderr")
        data = base64.b64decode(params["stdin_b64"]) if params.get("stdin_b64") else b""
        sys.stdout, sys.stderr = stdout, stderr
        sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")
        environ = dict(os.environ)
        if isinstance(params.get("env"), dict):
            os.environ.clear()
            os.environ.update(params["env"])
        try:
            code = _run(params)
        finally:
            sys.stdout, sys.stderr, sys.stdin = saved
            os.environ.clear()
            os.environ.update(environ)
        _send({"jsonrpc": "2.0", "id": message["id"], "result": {"exit_code": int(code)}})
