"""The synchronous transports: the local socket (newline-delimited JSON-RPC, with auto-start)
and the HTTP bridge (`POST /rpc` with the token). Each call opens a connection of its own, so a
connection that fails can only be one that carried nothing yet, and a retry never runs a
command twice.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple
from urllib.parse import urlsplit

from . import _locate, _rpc, errors

_ids = iter(range(1, 1 << 62))
_ids_lock = threading.Lock()


def next_id() -> int:
    with _ids_lock:
        return next(_ids)


def _dumps(message: Dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


class SocketConnection:
    """One connection to a server's socket: whole messages out, whole messages in."""

    def __init__(self, path: str, timeout: Optional[float]) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError:
            self._sock.close()
            raise
        self._reader = self._sock.makefile("rb")

    def send(self, message: Dict[str, Any]) -> None:
        self._sock.sendall(_dumps(message))

    def receive(self, timeout: Optional[float]) -> Dict[str, Any]:
        """The next message; `DaemonUnavailable` when the server closes or says nothing in time."""
        self._sock.settimeout(timeout)
        try:
            line = self._reader.readline(_rpc.MAX_MESSAGE)
        except socket.timeout:
            raise errors.DaemonUnavailable(
                f"the server on {self.path} did not answer within {timeout:g} s; raise the client's timeout "
                "or look at `mcli-server status`"
            ) from None
        except OSError as error:
            raise errors.DaemonUnavailable(f"lost the connection to the server on {self.path}: {error}") from None
        if not line.endswith(b"\n"):
            raise errors.DaemonUnavailable(
                f"the server on {self.path} closed the connection before it answered; "
                "see its log, or `mcli-server status`"
            )
        try:
            message = json.loads(line)
        except ValueError:
            raise errors.DaemonError(f"the server on {self.path} sent a line that is not JSON: {line[:80]!r}") from None
        if not isinstance(message, dict):
            raise errors.DaemonError(f"the server on {self.path} sent a message that is not an object")
        return message

    def close(self) -> None:
        self._reader.close()
        self._sock.close()


class SocketTransport:
    """The local socket `RUNTIME/NAME.sock`, starting a server with `mcli-server start` when
    none answers and the config allows it."""

    name = "socket"

    def __init__(self, config: Any) -> None:
        self.config = config
        self.server_name = _locate.server_name(config.socket_name)
        self.runtime = _locate.runtime_dir(config.runtime_dir)
        self.path = os.path.join(self.runtime, f"{self.server_name}.sock")
        self.where = f"the mcli server `{self.server_name}` ({self.path})"

    def connect(self, start: bool) -> SocketConnection:
        """A connection, after starting a server if none answers (and `start` and `auto_start`).
        Raises `Retry` when no server listens: nothing was sent, so trying again is safe."""
        try:
            return self._try_connect()
        except _rpc.Retry as retry:
            if not (start and self.config.auto_start):
                raise
            program = self.server_program()
            if program is None:
                raise errors.DaemonUnavailable(
                    f"{retry.cause.message}, and mcli-server is not on PATH to start one: install it, "
                    "or start a server with `mcli-server start`"
                ) from None
            self.start_server(program)
            return self._try_connect()

    def _try_connect(self) -> SocketConnection:
        _locate.check_runtime_dir(self.runtime)
        try:
            return SocketConnection(self.path, self.config.timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            unavailable = errors.DaemonUnavailable(
                f"no server answers on {self.path}; start one with `mcli-server start`"
                + (f" (or `mcli-server -s {self.server_name} start`)" if self.server_name != _locate.DEFAULT_NAME else "")
            )
            raise _rpc.Retry(unavailable) from None
        except OSError as error:
            raise errors.DaemonUnavailable(f"cannot connect to {self.path}: {error}") from None

    def server_program(self) -> Optional[str]:
        return self.config.server_program or shutil.which("mcli-server")

    def start_command(self, program: str) -> Tuple[list, Dict[str, str]]:
        env = dict(os.environ)
        if self.config.runtime_dir:
            env["MCLI_RUNTIME_DIR"] = self.config.runtime_dir
        return [program, "--socket-name", self.server_name, "start"], env

    def start_server(self, program: str) -> None:
        """Runs `mcli-server start`, which is race-free and returns once the server listens."""
        argv, env = self.start_command(program)
        try:
            done = subprocess.run(
                argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=start_wait(), check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise errors.DaemonUnavailable(f"cannot start the server with `{' '.join(argv)}`: {error}") from None
        if done.returncode != 0:
            raise errors.DaemonUnavailable(start_failure(argv, done.returncode, done.stderr))

    def call(
        self,
        method: str,
        params: Optional[Dict[str, Any]],
        wait: Optional[float],
        on_output: Optional[Callable[[Dict[str, Any]], None]] = None,
        start: bool = True,
        attempts: Optional[int] = None,
    ) -> Any:
        """One request on a connection of its own, retried while it certainly did not run."""
        return retrying(self.config, lambda: self._call_once(method, params, wait, on_output, start), attempts)

    def _call_once(self, method, params, wait, on_output, start) -> Any:
        connection = self.connect(start)
        try:
            request_id = next_id()
            message: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
            if params is not None:
                message["params"] = params
            try:
                connection.send(message)
            except OSError as error:
                raise errors.DaemonUnavailable(f"lost the connection to {self.where}: {error}") from None
            while True:
                reply = connection.receive(wait)
                if reply.get("id") == request_id and "method" not in reply:
                    return _rpc.response_result(reply)
                if reply.get("method") == "mcli/output" and on_output is not None:
                    on_output(reply.get("params"))
        finally:
            connection.close()


def start_wait() -> float:
    """How long `mcli-server start` may take: its own limit (MCLI_START_TIMEOUT) and a margin."""
    try:
        limit = float(os.environ.get("MCLI_START_TIMEOUT") or 20)
    except ValueError:
        limit = 20.0
    return limit + 20.0


def start_failure(argv: list, status: int, stderr: str) -> str:
    said = stderr.strip().splitlines()[-3:]
    detail = ": " + " / ".join(said) if said else ""
    return f"cannot start the server: `{' '.join(argv)}` exited with status {status}{detail}"


def retrying(config: Any, attempt: Callable[[], Any], attempts: Optional[int] = None) -> Any:
    """Runs `attempt` up to `retry_attempts` times while it raises `Retry`."""
    attempts = max(1, int(config.retry_attempts if attempts is None else attempts))
    for number in range(attempts):
        try:
            return attempt()
        except _rpc.Retry as retry:
            if number + 1 == attempts:
                raise retry.cause from None
            time.sleep(config.retry_delay)
    raise AssertionError("unreachable")


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


class HttpTransport:
    """The HTTP bridge of a server started with `--http`: `GET /health` and `POST /rpc`."""

    name = "http"

    def __init__(self, config: Any) -> None:
        self.config = config
        if config.url:
            parts = urlsplit(config.url if "://" in config.url else f"http://{config.url}")
            if parts.scheme != "http":
                raise ValueError(f"unsupported URL {config.url!r}: the bridge speaks plain http on loopback")
            self.host = parts.hostname or "localhost"
            self.port = parts.port or 80
        else:
            self.host = config.host or "localhost"
            self.port = int(config.port or 8000)
        self.where = f"the mcli HTTP bridge at http://{self.host}:{self.port}"

    def _token(self) -> Optional[str]:
        """`token=`, else `MCLI_TOKEN`, else the server file's, if that server has this address."""
        if self.config.token:
            return self.config.token
        if os.environ.get("MCLI_TOKEN"):
            return os.environ["MCLI_TOKEN"]
        runtime = _locate.runtime_dir(self.config.runtime_dir)
        name = _locate.server_name(self.config.socket_name)
        try:
            if not _locate.check_runtime_dir(runtime):
                return None
        except errors.DaemonUnavailable:
            return None
        found = _locate.read_server_file(os.path.join(runtime, f"{name}.json"))
        address = found.get("http") if found else None
        if not isinstance(address, str) or not _loopback(self.host):
            return None
        # The local server's token goes only to the local server's own port.
        if address.rpartition(":")[2] == str(self.port) and _loopback(address.rpartition(":")[0].strip("[]")):
            token = found.get("token") if found else None
            return token if isinstance(token, str) else None
        return None

    def request(self, verb: str, path: str, body: Any, wait: Optional[float]) -> Any:
        """One HTTP exchange; the parsed JSON answer, or the error it stands for."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.config.timeout)
        try:
            try:
                connection.connect()
            except OSError as error:
                raise _rpc.Retry(errors.DaemonUnavailable(f"no server answers at {self.where}: {error}")) from None
            if connection.sock is not None:
                connection.sock.settimeout(wait)
            try:
                connection.request(verb, path, body=data, headers=headers)
                response = connection.getresponse()
                text = response.read()
            except socket.timeout:
                raise errors.DaemonUnavailable(f"{self.where} did not answer within {wait:g} s") from None
            except (OSError, http.client.HTTPException) as error:
                raise errors.DaemonUnavailable(f"lost the connection to {self.where}: {error}") from None
        finally:
            connection.close()
        return self._answer(response.status, text, path)

    def _answer(self, status: int, text: bytes, path: str) -> Any:
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text.decode("utf-8", "replace")[:200]
        if status >= 400:
            failure = _rpc.http_error(status, body, self.where)
            if failure.code == _rpc.SHUTTING_DOWN:
                raise _rpc.Retry(failure)
            raise failure
        return body

    def call(
        self,
        method: str,
        params: Optional[Dict[str, Any]],
        wait: Optional[float],
        on_output: Optional[Callable[[Dict[str, Any]], None]] = None,
        start: bool = True,
        attempts: Optional[int] = None,
    ) -> Any:
        """A JSON-RPC call through `POST /rpc` (output is never streamed over HTTP)."""

        def once() -> Any:
            message: Dict[str, Any] = {"jsonrpc": "2.0", "id": next_id(), "method": method}
            if params is not None:
                message["params"] = params
            reply = self.request("POST", "/rpc", message, wait)
            if not isinstance(reply, dict):
                raise errors.DaemonError(f"{self.where} answered /rpc with {reply!r}")
            return _rpc.response_result(reply)

        return retrying(self.config, once, attempts)

    def health(self, attempts: Optional[int] = None) -> Any:
        return retrying(self.config, lambda: self.request("GET", "/health", None, self.config.timeout), attempts)


def iterate_stream(
    transport: SocketTransport, params: Dict[str, Any], wait: Optional[float]
) -> Iterator[Tuple[Optional[_rpc.Chunk], Optional[Dict[str, Any]]]]:
    """Streams one `execute` on a connection of its own: `(chunk, None)` per piece of output,
    then `(None, result)`. Closing the generator early hangs up, which cancels the command."""
    attempts = max(1, int(transport.config.retry_attempts))
    for number in range(attempts):
        try:
            yield from _stream_once(transport, params, wait)
            return
        except _rpc.Retry as retry:
            if number + 1 >= attempts:
                raise retry.cause from None
            time.sleep(transport.config.retry_delay)


def _stream_once(
    transport: SocketTransport, params: Dict[str, Any], wait: Optional[float]
) -> Iterator[Tuple[Optional[_rpc.Chunk], Optional[Dict[str, Any]]]]:
    connection = transport.connect(start=True)
    try:
        request_id = next_id()
        try:
            connection.send({"jsonrpc": "2.0", "id": request_id, "method": "execute", "params": params})
        except OSError as error:
            raise errors.DaemonUnavailable(f"lost the connection to {transport.where}: {error}") from None
        while True:
            reply = connection.receive(wait)
            if reply.get("method") == "mcli/output":
                chunk = _rpc.chunk_from(reply.get("params"))
                if chunk is not None:
                    yield chunk, None
            elif reply.get("id") == request_id:
                yield None, _rpc.response_result(reply)
                return
    finally:
        connection.close()
