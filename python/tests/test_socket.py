"""The synchronous client over the local socket: finding the server, starting it, results,
streaming, cancelling, history, and every error a caller can meet."""

from __future__ import annotations

import os
import threading

import pytest

from conftest import wait_until

from mcli_daemon import (
    APIDaemonClient,
    Busy,
    CommandBroken,
    CommandFailed,
    CommandNotFound,
    DaemonClientConfig,
    DaemonUnavailable,
    get_daemon_client,
)


def test_a_call_starts_the_server_once_and_is_running_never_does(mcli):
    client = get_daemon_client()
    assert client.transport == "socket"
    assert client.is_running() is False
    assert not (mcli.runtime / "server.sock").exists(), "is_running() must not start a server"
    assert client.health_check()["status"] == "healthy"
    pid = mcli.server_file()["pid"]
    assert client.is_running() is True
    client.execute_command("hello")
    assert mcli.server_file()["pid"] == pid, "a second server was started"


def test_execute_command_returns_the_original_shape(mcli):
    result = get_daemon_client().execute_command("hello", args=["Ada", "--verbose"])
    assert result["success"] is True
    assert result["output"] == result["result"] == "Hello Ada! (verbose mode)\n"
    assert result["error"] is None
    assert result["exit_code"] == 0
    assert result["status"] == "completed"
    assert isinstance(result["execution_time_ms"], int)
    assert isinstance(result["id"], int)


def test_commands_run_in_the_callers_directory_and_environment(mcli, monkeypatch, tmp_path):
    mcli.script("where", 'pwd\necho "$GREETING"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GREETING", "from the caller")
    result = get_daemon_client().execute_command("where")
    assert result["output"] == f"{tmp_path}\nfrom the caller\n"


def test_a_failing_command_is_a_result_or_command_failed_with_check(mcli):
    mcli.script("fails", 'echo partial\necho "broken pipe" >&2\nexit 3\n')
    client = get_daemon_client()
    result = client.execute_command("fails")
    assert (result["success"], result["exit_code"], result["status"]) == (False, 3, "failed")
    assert result["output"] == "partial\n"
    assert result["error"] == result["stderr"] == "broken pipe\n"
    with pytest.raises(CommandFailed) as failed:
        client.execute_command("fails", check=True)
    assert (failed.value.exit_code, failed.value.stdout, failed.value.stderr) == (3, "partial\n", "broken pipe\n")
    assert str(failed.value) == "command `fails` exited with status 3: broken pipe"


def test_a_timeout_ends_the_command(mcli):
    result = get_daemon_client().execute_command("sleep", args=["30"], timeout=0.3)
    assert result["status"] == "timed_out" and result["success"] is False
    with pytest.raises(CommandFailed, match="command `sleep` timed out"):
        get_daemon_client().execute_command("sleep", args=["30"], timeout=0.3, check=True)


def test_unknown_and_broken_commands_raise(mcli):
    client = get_daemon_client()
    with pytest.raises(CommandNotFound) as missing:
        client.execute_command("helo")
    assert missing.value.suggestions == ["hello"] and missing.value.command == "helo"
    assert str(missing.value) == "unknown command `helo`; did you mean `hello`?"
    (mcli.commands / "broken.toml").write_text("bogus = 1\n")
    wait_until(lambda: "broken" in {c["name"] for c in client.list_commands()["commands"]}, "the registry to see broken.toml")
    with pytest.raises(CommandBroken, match="broken.toml"):
        client.execute_command("broken")


def test_stdin_text_and_bytes(mcli):
    mcli.script("cat", "cat\n")
    client = get_daemon_client()
    assert client.execute_command("cat", stdin="line\n")["output"] == "line\n"
    result = client.execute_command("cat", stdin=b"\xff\x00a")
    assert result["output"] == "" and result["output_b64"] == "/wBh"


def test_stream_yields_stdout_and_stderr_apart_as_bytes(mcli):
    mcli.script("both", "printf 'out\\n'\nprintf 'err\\n' >&2\nprintf '\\377\\n'\n")
    stream = get_daemon_client().stream("both")
    chunks = list(stream)
    stdout = b"".join(chunk.data for chunk in chunks if chunk.stream == "stdout")
    stderr = b"".join(chunk.data for chunk in chunks if chunk.stream == "stderr")
    assert (stdout, stderr) == (b"out\n\xff\n", b"err\n")
    assert stream.result is not None and stream.result["success"] is True
    assert stream.id == stream.result["id"]


def test_stream_delivers_output_as_it_comes_and_cancel_ends_it(mcli):
    mcli.script("ticker", "echo first\nexec sleep 30\n")
    client = get_daemon_client()
    with client.stream("ticker") as stream:
        chunks = iter(stream)
        first = next(chunks)
        assert first.data == b"first\n", "the first line must arrive before the command ends"
        assert client.cancel(first.id) is True
        assert list(chunks) == []
    assert stream.result["status"] == "cancelled"
    assert client.cancel(first.id) is False


def test_leaving_a_stream_early_cancels_the_command(mcli):
    mcli.script("ticker", "echo first\nexec sleep 30\n")
    client = get_daemon_client()
    stream = client.stream("ticker")
    execution = next(iter(stream)).id
    stream.close()
    entry = wait_until(lambda: [e for e in client.history(command="ticker") if e["id"] == execution], "the history row")
    assert entry[0]["status"] == "cancelled"


def test_history_status_and_list(mcli):
    client = get_daemon_client()
    client.execute_command("hello")
    client.execute_command("exit", args=["2"])
    assert [entry["command"] for entry in client.history()] == ["exit", "hello"]
    assert [entry["command"] for entry in client.history(failed=True)] == ["exit"]
    assert len(client.history(limit=1)) == 1
    status = client.status()
    assert status["running"] is True and status["command_history_count"] == 2
    commands = client.list_commands()
    assert commands["total"] == len(commands["commands"]) >= 5
    assert "hello" in {command["name"] for command in commands["commands"]}


def test_busy_server_raises_busy(mcli):
    mcli.config("[api_daemon]\nmax_concurrent_commands = 1\n[server]\nmax_queued_commands = 0\n")
    mcli.script("hold", "echo held\nexec sleep 30\n")
    client = get_daemon_client()
    stream = client.stream("hold")
    held = next(iter(stream))
    try:
        with pytest.raises(Busy, match="server busy"):
            client.execute_command("hello")
    finally:
        client.cancel(held.id)
        stream.close()


def test_socket_name_from_the_config_and_from_the_environment(mcli, monkeypatch):
    named = APIDaemonClient(DaemonClientConfig(socket_name="other"))
    named.execute_command("hello")
    assert (mcli.runtime / "other.sock").exists() and not (mcli.runtime / "server.sock").exists()
    monkeypatch.setenv("MCLI_SOCKET_NAME", "other")
    assert get_daemon_client().is_running()
    with pytest.raises(ValueError, match="invalid server name '.hidden'"):
        APIDaemonClient(DaemonClientConfig(socket_name=".hidden"))


def test_runtime_dir_from_xdg_runtime_dir(mcli, monkeypatch, tmp_path):
    monkeypatch.delenv("MCLI_RUNTIME_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir(mode=0o700)
    client = get_daemon_client()
    client.execute_command("hello")
    assert (tmp_path / "xdg" / "mcli" / "server.sock").exists()
    mcli.server("stop")


def test_no_server_and_no_mcli_server_on_path(mcli, no_server_on_path):
    client = APIDaemonClient(DaemonClientConfig(retry_delay=0.01))
    with pytest.raises(DaemonUnavailable) as unavailable:
        client.execute_command("hello")
    socket = mcli.runtime / "server.sock"
    assert str(unavailable.value) == (
        f"no server answers on {socket}; start one with `mcli-server start`, and mcli-server is not on PATH "
        "to start one: install it, or start a server with `mcli-server start`"
    )
    assert client.wait_for_daemon(timeout=0.2) is False


def test_auto_start_off(mcli):
    client = APIDaemonClient(DaemonClientConfig(auto_start=False, retry_attempts=2, retry_delay=0.01))
    with pytest.raises(DaemonUnavailable, match="no server answers on .*server.sock; start one with `mcli-server start`"):
        client.status()
    assert not (mcli.runtime / "server.sock").exists()
    mcli.start()
    assert client.status()["running"] is True


def test_a_runtime_dir_open_to_others_is_refused(mcli):
    mcli.runtime.mkdir(mode=0o700)
    os.chmod(mcli.runtime, 0o755)
    with pytest.raises(DaemonUnavailable) as unsafe:
        get_daemon_client().execute_command("hello")
    assert str(unsafe.value) == f"runtime dir {mcli.runtime} is open to group or others (mode 0755); run `chmod 700 {mcli.runtime}`"
    os.chmod(mcli.runtime, 0o700)


def test_a_failed_start_says_why(mcli):
    mcli.config("[api_daemon]\nbogus_key = [\n")
    with pytest.raises(DaemonUnavailable, match=r"cannot start the server: `.*mcli-server --socket-name server start` exited with status 1: "):
        get_daemon_client().execute_command("hello")


def test_wait_for_daemon_starts_one(mcli):
    assert get_daemon_client().wait_for_daemon(timeout=30) is True
    assert (mcli.runtime / "server.json").exists()


def test_a_server_that_goes_away_mid_call(mcli):
    pid_file = mcli.root / "hold.pid"
    mcli.script("hold", f"echo $$ > {pid_file}\nexec sleep 30\n")
    client = get_daemon_client()
    errors = []

    def call():
        try:
            client.execute_command("hold")
        except DaemonUnavailable as error:
            errors.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: client.status()["active_commands"], "the command to run")
    # Its process has started (and said so) before the server goes: it outlives a kill -9.
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), "the command's pid")
    pid = mcli.server_file()["pid"]
    os.kill(pid, 9)
    caller.join(30)
    os.kill(int(pid_file.read_text()), 9)  # A server killed with -9 cannot end its command.
    assert errors and "closed the connection before it answered" in str(errors[0]), errors
