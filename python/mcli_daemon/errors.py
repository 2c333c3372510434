"""The exceptions of the client: one base class, one subclass per way a call can fail.

The original client returned `None` when a call failed; this one raises, so a failure is never
mistaken for an empty answer. Every exception carries the JSON-RPC error `code` and `data` when
the server sent one.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = [
    "DaemonError",
    "DaemonUnavailable",
    "CommandNotFound",
    "CommandBroken",
    "CommandFailed",
    "Unauthorized",
    "Busy",
    "ProtocolMismatch",
]


class DaemonError(Exception):
    """A call to the mcli server failed. `code` and `data` are the server's, when it answered."""

    def __init__(self, message: str, code: Optional[int] = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data


class DaemonUnavailable(DaemonError):
    """No server answers, none could be started, or it went away before it answered."""


class CommandNotFound(DaemonError):
    """The server has no command of that name; `suggestions` are its near names, nearest first."""

    def __init__(self, message: str, code: Optional[int] = None, data: Any = None) -> None:
        super().__init__(message, code, data)
        details = data if isinstance(data, dict) else {}
        self.command: Optional[str] = details.get("command")
        self.suggestions: List[str] = list(details.get("suggestions") or [])


class CommandBroken(DaemonError):
    """The command exists but its manifest is broken; the message names the file and the reason."""


class CommandFailed(DaemonError):
    """The command ran and did not complete: it exited non-zero, was killed, timed out or was
    cancelled. `result` is the whole result (in the shape of `execute_command`)."""

    def __init__(self, command: str, result: Dict[str, Any]) -> None:
        self.command = command
        self.result = result
        self.status: str = str(result.get("status"))
        self.exit_code: Optional[int] = result.get("exit_code")
        self.signal: Optional[int] = result.get("signal")
        self.stdout: str = result.get("output") or ""
        self.stderr: str = result.get("stderr") or ""
        if self.status == "timed_out":
            how = "timed out"
        elif self.status == "cancelled":
            how = "was cancelled"
        elif self.exit_code is not None:
            how = f"exited with status {self.exit_code}"
        elif self.signal is not None:
            how = f"was killed by signal {self.signal}"
        else:
            how = "failed"
        message = f"command `{command}` {how}"
        last = self.stderr.strip().splitlines()[-1:] if self.stderr.strip() else []
        if last:
            message += f": {last[0]}"
        super().__init__(message)


class Unauthorized(DaemonError):
    """The server refused the token (HTTP 401, JSON-RPC -32003)."""


class Busy(DaemonError):
    """The server runs `max_concurrent_commands` and its queue is full; the call did not run."""


class ProtocolMismatch(DaemonError):
    """The server speaks another protocol revision (after an upgrade): restart it."""
