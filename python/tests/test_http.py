"""The client over the HTTP bridge: the token from the server file or MCLI_TOKEN, results in
the original's shape, and its errors."""

from __future__ import annotations

import socket

import pytest

from mcli_daemon import (
    APIDaemonClient,
    CommandNotFound,
    DaemonClientConfig,
    DaemonUnavailable,
    Unauthorized,
)


def bridge(mcli) -> str:
    """Starts a server with the HTTP bridge on a free port; its URL."""
    return "http://" + mcli.start("--http", "127.0.0.1:0")["http"]


def test_the_token_comes_from_the_server_file(mcli):
    url = bridge(mcli)
    client = APIDaemonClient(DaemonClientConfig(url=url))
    assert client.transport == "http"
    assert client.is_running() and client.health_check()["status"] == "healthy"
    result = client.execute_command("hello", args=["Ada"])
    assert (result["success"], result["output"], result["exit_code"]) == (True, "Hello Ada!\n", 0)
    assert client.status()["running"] is True
    assert client.list_commands()["total"] >= 5
    assert client.history(limit=1)[0]["transport"] == "http"


def test_host_and_port_as_the_original(mcli):
    port = int(bridge(mcli).rpartition(":")[2])
    client = APIDaemonClient(DaemonClientConfig(host="localhost", port=port, timeout=30, retry_attempts=3))
    assert client.execute_command("echo", ["x"])["output"] == "x\n"


def test_mcli_token_and_a_wrong_token(mcli, monkeypatch):
    url = bridge(mcli)
    token = mcli.server_file()["token"]
    monkeypatch.setenv("MCLI_TOKEN", "0" * 64)
    client = APIDaemonClient(DaemonClientConfig(url=url))
    assert client.is_running(), "/health needs no token"
    with pytest.raises(Unauthorized) as refused:
        client.status()
    assert "pass token= or set MCLI_TOKEN to the output of `mcli-server token`" in str(refused.value)
    monkeypatch.setenv("MCLI_TOKEN", token)
    assert client.status()["running"] is True
    monkeypatch.delenv("MCLI_TOKEN")
    assert APIDaemonClient(DaemonClientConfig(url=url, token=token)).status()["running"] is True


def test_errors_over_http(mcli):
    client = APIDaemonClient(DaemonClientConfig(url=bridge(mcli)))
    with pytest.raises(CommandNotFound) as missing:
        client.execute_command("helo")
    assert missing.value.suggestions == ["hello"]
    failed = client.execute_command("exit", ["4"])
    assert (failed["success"], failed["exit_code"], failed["error"]) == (False, 4, "command ended with status failed")


def test_stream_over_http_comes_whole(mcli):
    mcli.script("both", "echo out\necho err >&2\n")
    stream = APIDaemonClient(DaemonClientConfig(url=bridge(mcli))).stream("both")
    assert [(chunk.stream, chunk.data) for chunk in stream] == [("stdout", b"out\n"), ("stderr", b"err\n")]
    assert stream.result["success"] is True


def test_nothing_listening(mcli):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = APIDaemonClient(DaemonClientConfig(port=port, retry_attempts=2, retry_delay=0.01))
    assert client.is_running() is False
    with pytest.raises(DaemonUnavailable, match=rf"no server answers at the mcli HTTP bridge at http://localhost:{port}"):
        client.execute_command("hello")
    assert not (mcli.runtime / "server.sock").exists(), "an HTTP client never starts a server"
