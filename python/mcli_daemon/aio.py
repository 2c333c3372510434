"""`AsyncDaemonClient`: the asyncio twin of `APIDaemonClient`, with the same methods as
coroutines and `stream()` as an async iterator. The socket is spoken natively; the HTTP bridge
(one short request per call) goes through the synchronous transport in a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional, Sequence

from . import _locate, _rpc, _transport, errors
from ._rpc import Chunk
from .client import DaemonClientConfig, Stdin

__all__ = ["AsyncDaemonClient", "AsyncExecutionStream"]


class _AsyncConnection:
    """One connection to the socket, as asyncio streams."""

    def __init__(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.path = path
        self.reader = reader
        self.writer = writer

    async def send(self, message: Dict[str, Any]) -> None:
        self.writer.write((json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8"))
        await self.writer.drain()

    async def receive(self, wait: Optional[float]) -> Dict[str, Any]:
        try:
            line = await asyncio.wait_for(self.reader.readline(), wait)
        except asyncio.TimeoutError:
            raise errors.DaemonUnavailable(
                f"the server on {self.path} did not answer within {wait:g} s; raise the client's timeout "
                "or look at `mcli-server status`"
            ) from None
        except (OSError, ValueError) as error:
            raise errors.DaemonUnavailable(f"lost the connection to the server on {self.path}: {error}") from None
        if not line.endswith(b"\n"):
            raise errors.DaemonUnavailable(
                f"the server on {self.path} closed the connection before it answered; see its log, or `mcli-server status`"
            )
        try:
            message = json.loads(line)
        except ValueError:
            raise errors.DaemonError(f"the server on {self.path} sent a line that is not JSON: {line[:80]!r}") from None
        if not isinstance(message, dict):
            raise errors.DaemonError(f"the server on {self.path} sent a message that is not an object")
        return message

    def close(self) -> None:
        self.writer.close()


class AsyncExecutionStream:
    """`async for chunk in stream`: the output as it comes, then `result`. Leaving the loop early
    (or `await stream.aclose()`) hangs up, which cancels the command."""

    def __init__(self, command: str, chunks: AsyncIterator[Any], check: bool) -> None:
        self.command = command
        self.result: Optional[Dict[str, Any]] = None
        self.id: Optional[int] = None
        self._chunks = chunks
        self._check = check

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        async for chunk, result in self._chunks:
            if chunk is not None:
                self.id = chunk.id if chunk.id is not None else self.id
                yield chunk
            else:
                self.result = _rpc.original_result(result)
                self.id = self.result.get("id")
        if self._check and self.result is not None:
            _rpc.check(self.command, self.result)

    async def aclose(self) -> None:
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()

    async def __aenter__(self) -> "AsyncExecutionStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class AsyncDaemonClient:
    """An asyncio client of one mcli server; every call has a connection of its own."""

    def __init__(self, config: Optional[DaemonClientConfig] = None) -> None:
        self.config = config or DaemonClientConfig()
        self._http: Optional[_transport.HttpTransport] = None
        self._socket: Optional[_transport.SocketTransport] = None
        if self.config.uses_http:
            self._http = _transport.HttpTransport(self.config)
        else:
            self._socket = _transport.SocketTransport(self.config)

    @property
    def transport(self) -> str:
        return "http" if self._http is not None else "socket"

    async def is_running(self) -> bool:
        try:
            if self._http is not None:
                http = self._http
                await asyncio.to_thread(lambda: http.health(1))
            else:
                await self._call("health", None, self.config.timeout, start=False, attempts=1)
            return True
        except (errors.DaemonError, ValueError):
            return False

    async def health_check(self) -> Dict[str, Any]:
        if self._http is not None:
            return await asyncio.to_thread(self._http.health)
        return await self._call("health", None, self.config.timeout)

    async def status(self) -> Dict[str, Any]:
        return await self._call("status", None, self.config.timeout)

    async def list_commands(self) -> Dict[str, Any]:
        return _rpc.commands_answer(await self._call("list", None, self.config.timeout))

    async def execute_command(
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
        params = self._execute_params(command_name, args, timeout, False, cwd, env, stdin, no_cache)
        result = _rpc.original_result(await self._call("execute", params, self._execute_wait(timeout)))
        return _rpc.check(command_name, result) if check else result

    async def wait_for_daemon(self, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        start = True
        while True:
            try:
                await self._call("health", None, self.config.timeout, start=start, attempts=1)
                return True
            except errors.DaemonUnavailable:
                start = False
            except errors.DaemonError:
                return False
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

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
    ) -> AsyncExecutionStream:
        params = self._execute_params(command, args, timeout, self._socket is not None, cwd, env, stdin, no_cache)
        return AsyncExecutionStream(command, self._chunks(params, self._execute_wait(timeout)), check)

    async def cancel(self, execution_id: int) -> bool:
        answer = await self._call("cancel", {"id": int(execution_id)}, self.config.timeout, start=False)
        return bool(answer.get("ok")) if isinstance(answer, dict) else False

    async def history(self, limit: Optional[int] = None, command: Optional[str] = None, failed: bool = False) -> List[Dict[str, Any]]:
        answer = await self._call("history", _rpc.history_params(limit, command, failed), self.config.timeout)
        return list(answer.get("entries") or []) if isinstance(answer, dict) else []

    async def shutdown(self, graceful: bool = True) -> bool:
        answer = await self._call("shutdown", {"graceful": graceful}, self.config.timeout, start=False, attempts=1)
        return bool(answer.get("ok")) if isinstance(answer, dict) else False

    # Helpers.

    def _execute_wait(self, timeout: Optional[float]) -> Optional[float]:
        return None if timeout is None else float(timeout) + self.config.timeout

    def _execute_params(self, command, args, timeout, stream, cwd, env, stdin, no_cache) -> Dict[str, Any]:
        if self._socket is not None and self.config.send_environment:
            cwd = cwd if cwd is not None else os.getcwd()
            env = env if env is not None else _rpc.caller_env()
        return _rpc.execute_params(command, args, timeout, stream, cwd, env, stdin, no_cache)

    async def _call(self, method: str, params: Any, wait: Optional[float], start: bool = True, attempts: Optional[int] = None) -> Any:
        if self._http is not None:
            http = self._http
            return await asyncio.to_thread(lambda: http.call(method, params, wait, attempts=attempts))
        count = max(1, int(self.config.retry_attempts if attempts is None else attempts))
        for number in range(count):
            try:
                return await self._call_once(method, params, wait, start)
            except _rpc.Retry as retry:
                if number + 1 >= count:
                    raise retry.cause from None
                await asyncio.sleep(self.config.retry_delay)
        raise AssertionError("unreachable")

    async def _call_once(self, method: str, params: Any, wait: Optional[float], start: bool) -> Any:
        connection = await self._connect(start)
        try:
            request_id = _transport.next_id()
            message: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
            if params is not None:
                message["params"] = params
            await self._send(connection, message)
            while True:
                reply = await connection.receive(wait)
                if reply.get("id") == request_id and "method" not in reply:
                    return _rpc.response_result(reply)
        finally:
            connection.close()

    async def _send(self, connection: _AsyncConnection, message: Dict[str, Any]) -> None:
        try:
            await connection.send(message)
        except OSError as error:
            raise errors.DaemonUnavailable(f"lost the connection to the server on {connection.path}: {error}") from None

    async def _chunks(self, params: Dict[str, Any], wait: Optional[float]) -> AsyncIterator[Any]:
        if self._http is not None:
            raw = await self._call("execute", params, wait)
            for name in ("stdout", "stderr"):
                chunk = _rpc.chunk_from({"id": raw.get("id"), "stream": name, "data": raw.get(name), "data_b64": raw.get(f"{name}_b64")})
                if chunk is not None and chunk.data:
                    yield chunk, None
            yield None, raw
            return
        count = max(1, int(self.config.retry_attempts))
        for number in range(count):
            try:
                async for item in self._stream_once(params, wait):
                    yield item
                return
            except _rpc.Retry as retry:
                if number + 1 >= count:
                    raise retry.cause from None
                await asyncio.sleep(self.config.retry_delay)

    async def _stream_once(self, params: Dict[str, Any], wait: Optional[float]) -> AsyncIterator[Any]:
        connection = await self._connect(True)
        try:
            request_id = _transport.next_id()
            await self._send(connection, {"jsonrpc": "2.0", "id": request_id, "method": "execute", "params": params})
            while True:
                reply = await connection.receive(wait)
                if reply.get("method") == "mcli/output":
                    chunk = _rpc.chunk_from(reply.get("params"))
                    if chunk is not None:
                        yield chunk, None
                elif reply.get("id") == request_id:
                    yield None, _rpc.response_result(reply)
                    return
        finally:
            connection.close()

    async def _connect(self, start: bool) -> _AsyncConnection:
        try:
            return await self._try_connect()
        except _rpc.Retry as retry:
            if not (start and self.config.auto_start):
                raise
            # `mcli-server start` is race-free: concurrent calls start one server between them.
            await self._start_server(retry.cause)
            return await self._try_connect()

    async def _try_connect(self) -> _AsyncConnection:
        assert self._socket is not None
        socket = self._socket
        _locate.check_runtime_dir(socket.runtime)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(socket.path, limit=_rpc.MAX_MESSAGE), self.config.timeout
            )
        except (FileNotFoundError, ConnectionRefusedError):
            raise _rpc.Retry(errors.DaemonUnavailable(f"no server answers on {socket.path}; start one with `mcli-server start`")) from None
        except (OSError, asyncio.TimeoutError) as error:
            raise errors.DaemonUnavailable(f"cannot connect to {socket.path}: {error or 'timed out'}") from None
        return _AsyncConnection(socket.path, reader, writer)

    async def _start_server(self, cause: errors.DaemonError) -> None:
        assert self._socket is not None
        program = self._socket.server_program()
        if program is None:
            raise errors.DaemonUnavailable(
                f"{cause.message}, and mcli-server is not on PATH to start one: install it, or start a server with `mcli-server start`"
            )
        argv, env = self._socket.start_command(program)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except OSError as error:
            raise errors.DaemonUnavailable(f"cannot start the server with `{' '.join(argv)}`: {error}") from None
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), _transport.start_wait())
        except asyncio.TimeoutError as error:
            process.kill()
            raise errors.DaemonUnavailable(f"cannot start the server with `{' '.join(argv)}`: {error or 'timed out'}") from None
        if process.returncode != 0:
            raise errors.DaemonUnavailable(_transport.start_failure(argv, process.returncode or 1, stderr.decode("utf-8", "replace")))
