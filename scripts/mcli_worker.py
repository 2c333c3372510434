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
import traceback

__all__ = ["command", "serve"]

_COMMANDS = {}
_PROTOCOL_OUT = sys.stdout


def command(name):
    """Registers the decorated function as the worker command `name`."""

    def register(function):
        _COMMANDS[name] = function
        return function

    return register


def _send(message):
    _PROTOCOL_OUT.write(json.dumps(message, separators=(",", ":")) + "\n")
    _PROTOCOL_OUT.flush()


class _Output(io.TextIOBase):
    """A text stream whose writes become `output` notifications as they happen."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream

    def writable(self):
        return True

    def write(self, text):
        if text:
            _send({"jsonrpc": "2.0", "method": "output", "params": {"stream": self._stream, "data": text}})
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
    try:
        result = function(*params.get("args", []))
    except SystemExit as exit:
        code = exit.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception:  # noqa: BLE001 - any failure of the command is its exit status
        traceback.print_exc()
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def serve():
    """Serves calls until standard input closes."""
    saved = (sys.stdout, sys.stderr)
    for line in sys.stdin:
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
        stdout, stderr = _Output("stdout"), _Output("stderr")
        stdout.buffer = _BinaryOutput("stdout")
        stderr.buffer = _BinaryOutput("stderr")
        sys.stdout, sys.stderr = stdout, stderr
        try:
            code = _run(message.get("params") or {})
        finally:
            sys.stdout, sys.stderr = saved
        _send({"jsonrpc": "2.0", "id": message["id"], "result": {"exit_code": int(code)}})
