"""The synchronous client: the original daemon's `APIDaemonClient`, `DaemonClientConfig` and
`get_daemon_client()` with the same names and return shapes, over mcli's local socket (the
default) or its HTTP bridge, plus what mcli adds: streamed output, `cancel` and `history`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _rpc, _transport, errors
from ._rpc import Chunk

__all__ = ["DaemonClientConfig", "APIDaemonClient", "ExecutionStream", "get_daemon_client", "Chunk"]

Stdin = Union[str, bytes, None]


@dataclass
class DaemonClientConfig:
    """How to reach the server. With no `host`, `port` or `url` the client uses the local socket
    (found as mcli-client finds it); with any of them, the HTTP bridge."""

    host: Optional[str] = None
    """The HTTP bridge's host (`localhost` when only `port` is given)."""
    port: Optional[int] = None
    """The HTTP bridge's port (8000, the original's, when only `host` is given)."""
    timeout: float = 30.0
    """Seconds to wait for a connection and for the answer of any call except `execute`, which
    waits for its command (up to the call's `timeout` plus this, when the call has one)."""
    retry_attempts: int = 3
    """Attempts of a call that certainly did not reach a server (nothing listened, or it was
    shutting down); a call that may have run is never repeated."""
    retry_delay: float = 0.5
    """Seconds between those attempts."""
    url: Optional[str] = None
    """The HTTP bridge as a URL, `http://127.0.0.1:8000`, instead of `host` and `port`."""
    token: Optional[str] = None
    """The bridge's token; default `MCLI_TOKEN`, else the local server file's (for its own port)."""
    socket_name: Optional[str] = None
    """The server's name, as `mcli-client -s`; default `MCLI_SOCKET_NAME`, else `server`."""
    runtime_dir: Optional[str] = None
    """The runtime dir; default `MCLI_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/mcli`, else `/tmp/mcli-$UID`."""
    auto_start: bool = True
    """Start a server with `mcli-server start` when none answers on the socket, as mcli-client does."""
    server_program: Optional[str] = None
    """The `mcli-server` to start; default the one on `PATH`."""
    send_environment: bool = True
    """Over the socket, run commands in this process's working directory and environment, as
    mcli-client does (over HTTP they run in the server's unless a call gives `cwd`/`env`)."""

    @property
    def uses_http(self) -> bool:
        return bool(self.host or self.port or self.url)


class ExecutionStream:
    """The output of one command as it comes (`Chunk`s, stdout and stderr apart, bytes), then
    its `result`. Leaving early (`close()`, or the `with` block) hangs up, which cancels it."""

    def __init__(self, command: str, chunks: Iterator[Tuple[Optional[Chunk], Any]], check: bool) -> None:
        self.command = command
        self.result: Optional[Dict[str, Any]] = None
        """The result in the shape of `execute_command` (without the output), once it has ended."""
        self.id: Optional[int] = None
        """The execution id, known from the first chunk (or the result) on."""
        self._chunks = chunks
        self._check = check

    def __iter__(self) -> Iterator[Chunk]:
        for chunk, result in self._chunks:
            if chunk is not None:
                self.id = chunk.id if chunk.id is not None else self.id
                yield chunk
            else:
                self.result = _rpc.original_result(result)
                self.id = self.result.get("id")
        if self._check and self.result is not None:
            _rpc.check(self.command, self.result)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "ExecutionStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class APIDaemonClient:
    """A client of one mcli server. Cheap to create; safe to share between threads (each call
    has a connection of its own)."""

    def __init__(self, config: Optional[DaemonClientConfig] = None) -> None:
        self.config = config or DaemonClientConfig()
        self._transport: Union[_transport.SocketTransport, _transport.HttpTransport]
        if self.config.uses_http:
            self._transport = _transport.HttpTransport(self.config)
        else:
            self._transport = _transport.SocketTransport(self.config)

    @property
    def transport(self) -> str:
        """`"socket"` or `"http"`."""
        return self._transport.name

    # The original's API.

    def is_running(self) -> bool:
        """Whether a server answers now. It never starts one and never raises."""
        try:
            self._health(attempts=1, start=False)
            return True
        except (errors.DaemonError, ValueError):
            return False

    def health_check(self) -> Dict[str, Any]:
        """`{"status": "healthy", "version", "uptime_secs"}`."""
        return self._health(attempts=None, start=True)

    def status(self) -> Dict[str, Any]:
        """The server's state: `running`, `active_commands`, `command_history_count`, `config`, …"""
        return self._transport.call("status", None, self.config.timeout)

    def list_commands(self) -> Dict[str, Any]:
        """`{"commands": [{name, description, source, …}], "total": N}`."""
        return _rpc.commands_answer(self._transport.call("list", None, self.config.timeout))

    def execute_command(
        self,
        command_name: str,
        args: Optional[Sequence[Any]] = None,
        timeout: Optional[float] = None,
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        stdin: Stdin = None,
        no_cache: bool = False,
        check: bool = False,
    ) -> Dict[str, Any]:
        """Runs a command and returns the original's result: `success`, `output` (= `result`),
        `error`, `exit_code`, `execution_time_ms`, `status`, and `stderr`, `signal`, `id`, …
        A command that fails is a result with `success: False` (or `CommandFailed` with
        `check=True`); a call that could not run raises (`CommandNotFound`, `Busy`, …)."""
        params = self._execute_params(command_name, args, timeout, False, cwd, env, stdin, no_cache)
        raw = self._transport.call("execute", params, self._execute_wait(timeout))
        result = _rpc.original_result(raw)
        return _rpc.check(command_name, result) if check else result

    def wait_for_daemon(self, timeout: float = 30) -> bool:
        """Waits up to `timeout` seconds for a server to answer (starting one when the client
        may); `True` once one does."""
        deadline = time.monotonic() + timeout
        start = True
        while True:
            try:
                self._health(attempts=1, start=start)
                return True
            except errors.DaemonUnavailable:
                start = False  # One start is enough; then wait for that server.
            except errors.DaemonError:
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    # mcli's additions.

    def stream(
        self,
        command: str,
        args: Optional[Sequence[Any]] = None,
        timeout: Optional[float] = None,
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        stdin: Stdin = None,
        no_cache: bool = False,
        check: bool = False,
    ) -> ExecutionStream:
        """Runs a command and yields its output as it comes. Over HTTP, which does not stream,
        the output comes whole at the end (stdout, then stderr)."""
        if isinstance(self._transport, _transport.HttpTransport):
            return ExecutionStream(command, self._http_chunks(command, args, timeout, cwd, env, stdin, no_cache), check)
        params = self._execute_params(command, args, timeout, True, cwd, env, stdin, no_cache)
        chunks = _transport.iterate_stream(self._transport, params, self._execute_wait(timeout))
        return ExecutionStream(command, chunks, check)

    def cancel(self, execution_id: int) -> bool:
        """Ends a running execution (by the id of `status`, a chunk or a result); `False` when
        none with that id runs."""
        answer = self._transport.call("cancel", {"id": int(execution_id)}, self.config.timeout, start=False)
        return bool(answer.get("ok")) if isinstance(answer, dict) else False

    def history(self, limit: Optional[int] = None, command: Optional[str] = None, failed: bool = False) -> List[Dict[str, Any]]:
        """Past executions, newest first: `id`, `command`, `args`, `started`, `status`, …"""
        answer = self._transport.call("history", _rpc.history_params(limit, command, failed), self.config.timeout)
        return list(answer.get("entries") or []) if isinstance(answer, dict) else []

    def shutdown(self, graceful: bool = True) -> bool:
        """Asks the server to stop (running commands get 10 s when `graceful`)."""
        answer = self._transport.call("shutdown", {"graceful": graceful}, self.config.timeout, start=False, attempts=1)
        return bool(answer.get("ok")) if isinstance(answer, dict) else False

    # Helpers.

    def _health(self, attempts: Optional[int], start: bool) -> Dict[str, Any]:
        if isinstance(self._transport, _transport.HttpTransport):
            return self._transport.health(attempts)
        return self._transport.call("health", None, self.config.timeout, start=start, attempts=attempts)

    def _execute_wait(self, timeout: Optional[float]) -> Optional[float]:
        return None if timeout is None else float(timeout) + self.config.timeout

    def _execute_params(self, command, args, timeout, stream, cwd, env, stdin, no_cache) -> Dict[str, Any]:
        if self.transport == "socket" and self.config.send_environment:
            cwd = cwd if cwd is not None else os.getcwd()
            env = env if env is not None else _rpc.caller_env()
        return _rpc.execute_params(command, args, timeout, stream, cwd, env, stdin, no_cache)

    def _http_chunks(self, command, args, timeout, cwd, env, stdin, no_cache) -> Iterator[Tuple[Optional[Chunk], Any]]:
        params = self._execute_params(command, args, timeout, False, cwd, env, stdin, no_cache)
        raw = self._transport.call("execute", params, self._execute_wait(timeout))
        ident = raw.get("id") if isinstance(raw, dict) else None
        for name in ("stdout", "stderr"):
            data = _rpc.chunk_from({"id": ident, "stream": name, "data": raw.get(name), "data_b64": raw.get(f"{name}_b64")})
            if data is not None and data.data:
                yield data, None
        yield None, raw


def get_daemon_client(config: Optional[DaemonClientConfig] = None) -> APIDaemonClient:
    """A client of the local server as the environment names it (`MCLI_SOCKET_NAME`,
    `MCLI_RUNTIME_DIR`, ...), or of the one `config` describes. Creating one costs next to
    nothing, so each call reads the environment afresh."""
    return APIDaemonClient(config)
