"""What the synchronous and the asynchronous client share, without any I/O: the params of a
call, the error a JSON-RPC error or an HTTP status becomes, and the result of `execute` in the
shape of the original daemon's `POST /execute`.
"""

from __future__ import annotations

import base64
import os
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

from . import errors

PROTOCOL = 1
# One message is at most 16 MiB (docs/protocol.md §2); a line longer than that is not the server.
MAX_MESSAGE = 16 * 1024 * 1024 + 2

# JSON-RPC error codes of mcli (docs/protocol.md §6).
NOT_FOUND = -32001
BUSY = -32002
UNAUTHORIZED = -32003
SHUTTING_DOWN = -32004
PROTOCOL_MISMATCH = -32005
BROKEN = -32006


class Chunk(NamedTuple):
    """A piece of a streamed command's output, byte-exact, as it came."""

    stream: str
    """`"stdout"` or `"stderr"`."""
    data: bytes
    """The bytes; a chunk can end anywhere, even inside a line or a character."""
    id: Optional[int]
    """The execution id, for `cancel`."""


class Retry(Exception):
    """The request certainly did not run (no connection, or the server was shutting down)."""

    def __init__(self, cause: errors.DaemonError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def execute_params(
    command: str,
    args: Optional[Sequence[Any]],
    timeout: Optional[float],
    stream: bool,
    cwd: Optional[str],
    env: Optional[Mapping[str, str]],
    stdin: Optional[bytes | str],
    no_cache: bool,
) -> Dict[str, Any]:
    """The params of one `execute`."""
    if isinstance(args, (str, bytes)):
        raise TypeError("args must be a list of strings, not one string")
    params: Dict[str, Any] = {
        "command": command,
        "args": [str(arg) for arg in (args or [])],
        "stream": stream,
        "protocol": PROTOCOL,
    }
    if timeout is not None:
        params["timeout"] = timeout
    if cwd is not None:
        params["cwd"] = cwd
    if env is not None:
        params["env"] = dict(env)
    if isinstance(stdin, str):
        params["stdin"] = stdin
    elif stdin is not None:
        params["stdin_b64"] = base64.b64encode(stdin).decode("ascii")
    if no_cache:
        params["no_cache"] = True
    return params


def caller_env() -> Dict[str, str]:
    """This process's environment as mcli-client sends it: the variables that are UTF-8."""
    env = {}
    for key, value in os.environ.items():
        try:
            key.encode("utf-8")
            value.encode("utf-8")
        except UnicodeEncodeError:
            continue
        env[key] = value
    return env


def error_from(error: Any) -> errors.DaemonError:
    """The exception for a JSON-RPC error object."""
    if not isinstance(error, dict):
        return errors.DaemonError(f"the server answered with a malformed error: {error!r}")
    code = error.get("code")
    message = str(error.get("message") or "the server answered with an error without a message")
    data = error.get("data")
    kinds = {
        NOT_FOUND: errors.CommandNotFound,
        BUSY: errors.Busy,
        UNAUTHORIZED: errors.Unauthorized,
        SHUTTING_DOWN: errors.DaemonUnavailable,
        PROTOCOL_MISMATCH: errors.ProtocolMismatch,
        BROKEN: errors.CommandBroken,
    }
    kind = kinds.get(code, errors.DaemonError) if isinstance(code, int) else errors.DaemonError
    return kind(message, code, data)


def response_result(message: Dict[str, Any]) -> Any:
    """The result of a response, or the exception it carries; `Retry` when it did not run."""
    if "error" in message and message["error"] is not None:
        failure = error_from(message["error"])
        if failure.code == SHUTTING_DOWN:
            raise Retry(failure)
        raise failure
    return message.get("result")


def chunk_from(params: Any) -> Optional[Chunk]:
    """The chunk of an `mcli/output` notification's params."""
    if not isinstance(params, dict):
        return None
    if isinstance(params.get("data"), str):
        data = params["data"].encode("utf-8")
    elif isinstance(params.get("data_b64"), str):
        data = base64.b64decode(params["data_b64"])
    else:
        return None
    stream = "stderr" if params.get("stream") == "stderr" else "stdout"
    ident = params.get("id")
    return Chunk(stream, data, ident if isinstance(ident, int) else None)


def _text(result: Dict[str, Any], name: str) -> tuple[str, Optional[str]]:
    """Captured output as (text, base64): the text when it is UTF-8, else the base64 form."""
    if isinstance(result.get(name), str):
        return result[name], None
    encoded = result.get(f"{name}_b64")
    return "", encoded if isinstance(encoded, str) else None


def original_result(result: Any) -> Dict[str, Any]:
    """An `execute` result in the shape of the original daemon's `POST /execute` (the shape of
    mcli's HTTP bridge): `success`, `output`, `result`, `error`, `exit_code`,
    `execution_time_ms`, `status`, and mcli's own fields beside them."""
    result = result if isinstance(result, dict) else {}
    output, output_b64 = _text(result, "stdout")
    stderr, stderr_b64 = _text(result, "stderr")
    status = result.get("status")
    success = status == "completed"
    error = None
    if not success:
        error = stderr if stderr else f"command ended with status {status}"
    return {
        "success": success,
        "output": output,
        "result": output,
        "output_b64": output_b64,
        "stderr": stderr,
        "stderr_b64": stderr_b64,
        "error": error,
        "exit_code": result.get("exit_code"),
        "signal": result.get("signal"),
        "status": status,
        "id": result.get("id"),
        "command": result.get("command"),
        "cached": bool(result.get("cached")),
        "truncated": bool(result.get("truncated")),
        "execution_time_ms": result.get("duration_ms"),
    }


def check(command: str, result: Dict[str, Any]) -> Dict[str, Any]:
    """`result` when the command completed, else `CommandFailed`."""
    if not result.get("success"):
        raise errors.CommandFailed(command, result)
    return result


def http_error(status: int, body: Any, where: str) -> errors.DaemonError:
    """The exception for an HTTP error answer of the bridge (`{"success": false, "error": ...,
    "detail"?: JSON-RPC error}`)."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict) and "code" in detail:
        return error_from(detail)
    message = body.get("error") if isinstance(body, dict) else None
    text = str(message or body or "no body")
    if status == 401:
        return errors.Unauthorized(
            f"{where} refused the token (HTTP 401): {text}; pass token= or set MCLI_TOKEN "
            "to the output of `mcli-server token`",
            UNAUTHORIZED,
        )
    if status == 503:
        return errors.Busy(f"{where} is busy (HTTP 503): {text}", BUSY)
    return errors.DaemonError(f"{where} answered HTTP {status}: {text}")


def commands_answer(result: Any) -> Dict[str, Any]:
    """The `list` result with `total`, as the original's `GET /commands`."""
    commands: List[Any] = list(result.get("commands") or []) if isinstance(result, dict) else []
    return {"commands": commands, "total": len(commands)}


def history_params(limit: Optional[int], command: Optional[str], failed: bool) -> Dict[str, Any]:
    params: Dict[str, Any] = {}
    if limit is not None:
        params["limit"] = int(limit)
    if command is not None:
        params["command"] = command
    if failed:
        params["failed"] = True
    return params
