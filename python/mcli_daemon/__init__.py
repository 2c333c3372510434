"""mcli_daemon: the Python client of mcli, with the API of the original MCLI API daemon.

    from mcli_daemon import get_daemon_client

    client = get_daemon_client()              # the local server's socket, started on demand
    result = client.execute_command("hello", args=["--verbose"])
    print(result["output"])

`APIDaemonClient` and `DaemonClientConfig` reach the local socket by default and the HTTP bridge
when `host`, `port` or `url` is given; `AsyncDaemonClient` is the asyncio twin; `daemon_command`
and `daemon_group` route functions and Click commands to the server; the exceptions are in
`mcli_daemon.errors`. The worker helper is `mcli_daemon.worker`, which is imported only on
purpose: importing it takes over the process's standard input and output for the worker protocol.
Standard library only.
"""

from .aio import AsyncDaemonClient, AsyncExecutionStream
from .client import APIDaemonClient, Chunk, DaemonClientConfig, ExecutionStream, get_daemon_client
from .decorators import _is_daemon_routing_enabled, daemon_command, daemon_group, is_daemon_routing_enabled
from .errors import (
    Busy,
    CommandBroken,
    CommandFailed,
    CommandNotFound,
    DaemonError,
    DaemonUnavailable,
    ProtocolMismatch,
    Unauthorized,
)

__version__ = "0.1.0"

__all__ = [
    "APIDaemonClient",
    "AsyncDaemonClient",
    "AsyncExecutionStream",
    "Busy",
    "Chunk",
    "CommandBroken",
    "CommandFailed",
    "CommandNotFound",
    "DaemonClientConfig",
    "DaemonError",
    "DaemonUnavailable",
    "ExecutionStream",
    "ProtocolMismatch",
    "Unauthorized",
    "daemon_command",
    "daemon_group",
    "get_daemon_client",
    "is_daemon_routing_enabled",
    "_is_daemon_routing_enabled",
]
