"""Every Python example of the original daemon's documentation, run unchanged apart from the
import line (the files in examples/), against the real binaries."""

from __future__ import annotations

import runpy
import socket
import subprocess
import sys

import pytest

from conftest import EXAMPLES, run_python

import mcli_daemon


def example(name: str) -> dict:
    """Runs examples/NAME.py in this process and returns its globals."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")


def echo_command(mcli, name: str) -> None:
    """A command NAME that says it ran on the daemon, with its args."""
    mcli.script(name, f'echo "daemon {name}: $*"\n')


def routing(monkeypatch, on: bool) -> None:
    monkeypatch.setenv("MCLI_DAEMON_ROUTING", "true" if on else "false")


# Quick start and the decorators.


def test_quick_start_runs_on_the_daemon_when_routing_is_on_and_starts_it(mcli, monkeypatch):
    routing(monkeypatch, True)
    echo_command(mcli, "my_function")
    assert not (mcli.runtime / "server.sock").exists()
    assert example("quick_start")["result"] == "daemon my_function: World --verbose\n"
    assert (mcli.runtime / "server.sock").exists(), "the client did not start a server"


def test_quick_start_runs_locally_when_routing_is_off(mcli, monkeypatch):
    routing(monkeypatch, False)
    echo_command(mcli, "my_function")
    assert example("quick_start")["result"] == "Hello World! (verbose mode)"
    assert not (mcli.runtime / "server.sock").exists(), "routing off must not start a server"


def test_quick_start_falls_back_to_local_when_no_server_can_be_reached(mcli, monkeypatch, no_server_on_path):
    routing(monkeypatch, True)
    assert example("quick_start")["result"] == "Hello World! (verbose mode)"


def test_routing_follows_api_daemon_enabled_in_the_config(mcli, monkeypatch):
    echo_command(mcli, "my_function")
    assert example("quick_start")["result"] == "Hello World! (verbose mode)"
    mcli.config("[api_daemon]\nenabled = true\n")
    assert example("quick_start")["result"] == "daemon my_function: World --verbose\n"
    monkeypatch.setenv("MCLI_DAEMON_ROUTING", "false")
    assert example("quick_start")["result"] == "Hello World! (verbose mode)"
    code = "from mcli_daemon import _is_daemon_routing_enabled; print(_is_daemon_routing_enabled())"
    monkeypatch.delenv("MCLI_DAEMON_ROUTING")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "True\n"


def test_daemon_command_example(mcli, monkeypatch):
    my_command = example("decorator_command")["my_command"]
    routing(monkeypatch, False)
    assert my_command("Ada", verbose=True) == "Hello Ada!"
    routing(monkeypatch, True)
    echo_command(mcli, "my_command")
    assert my_command("Ada", verbose=True) == "daemon my_command: Ada --verbose\n"
    assert my_command("Ada") == "daemon my_command: Ada\n"


def test_daemon_group_example(mcli, monkeypatch):
    my_group = example("decorator_group")["my_group"]
    routing(monkeypatch, False)
    assert my_group() is None
    routing(monkeypatch, True)
    echo_command(mcli, "my_group")
    assert my_group() == "daemon my_group: \n"


def test_model_service_integration(mcli, monkeypatch):
    generate_text = example("model_service")["generate_text"]
    routing(monkeypatch, True)
    echo_command(mcli, "model_generate")
    assert generate_text("a poem") == "daemon model_generate: a poem\n"
    assert generate_text("a poem", model="small") == "daemon model_generate: a poem --model small\n"
    routing(monkeypatch, False)
    assert generate_text("a poem") == "Generated text for: a poem"


def test_file_processing_integration(mcli, monkeypatch):
    process_file = example("file_processing")["process_file"]
    routing(monkeypatch, True)
    echo_command(mcli, "process_file")
    assert process_file("in.csv", output_format="yaml") == "daemon process_file: in.csv --output-format yaml\n"
    routing(monkeypatch, False)
    assert process_file("in.csv") == {"processed": "in.csv", "format": "json"}


def test_workflow_integration(mcli, monkeypatch):
    run_workflow = example("workflow")["run_workflow"]
    routing(monkeypatch, True)
    echo_command(mcli, "workflow_run")
    assert run_workflow("build", {"fast": True}) == 'daemon workflow_run: build --parameters {"fast": true}\n'
    routing(monkeypatch, False)
    assert run_workflow("build") == {"workflow": "build", "status": "completed"}


def test_a_routed_command_that_fails_raises_command_failed(mcli, monkeypatch):
    process_file = example("file_processing")["process_file"]
    routing(monkeypatch, True)
    mcli.script("process_file", 'echo "cannot read $1" >&2\nexit 3\n')
    with pytest.raises(mcli_daemon.CommandFailed) as failed:
        process_file("missing.csv")
    assert failed.value.exit_code == 3
    assert failed.value.stderr == "cannot read missing.csv\n"
    assert str(failed.value) == "command `process_file` exited with status 3: cannot read missing.csv"


def test_without_fallback_an_unreachable_daemon_raises(mcli, monkeypatch, no_server_on_path):
    routing(monkeypatch, True)

    @mcli_daemon.daemon_command(command_name="x", fallback_to_local=False)
    def local_only():
        return "ran locally"

    with pytest.raises(mcli_daemon.DaemonUnavailable) as unavailable:
        local_only()
    assert "mcli-server is not on PATH" in str(unavailable.value)


# The client examples.


def test_basic_usage(mcli):
    assert run_python(str(EXAMPLES / "basic_usage.py")).stdout == "", "without a server it does nothing"
    mcli.start()
    done = run_python(str(EXAMPLES / "basic_usage.py"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Result: {'success': True, 'output': 'Hello World! (verbose mode)\\n'"), done.stdout


def _private_network_namespaces() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_advanced_usage_over_the_http_bridge_on_port_8000(mcli):
    path = str(EXAMPLES / "advanced_usage.py")
    if _private_network_namespaces():
        # Its own loopback: port 8000 there is free whatever runs on this machine.
        netns = str(EXAMPLES.parent / "netns.py")
        done = subprocess.run(["unshare", "-n", sys.executable, netns, "8000", path], capture_output=True, text=True, timeout=120)
    elif _port_free(8000):
        mcli.start("--http", "127.0.0.1:8000")
        done = run_python(path)
    else:
        pytest.skip("port 8000 is taken and `unshare -n` is not allowed here")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Daemon is ready\n"


def test_view_command_history(mcli):
    client = mcli_daemon.get_daemon_client()
    client.execute_command("hello")
    done = run_python(str(EXAMPLES / "command_history.py"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Active commands: []\nCommand history: 1\n"


def test_ci_cd_snippet(mcli):
    mcli.script("test_workflow", '[ "$1" = --verbose ] && echo "all green"\n')
    done = run_python(str(EXAMPLES / "ci_cd.py"))
    assert done.returncode == 0, done.stderr
    mcli.script("test_workflow", "exit 1\n")
    failed = run_python(str(EXAMPLES / "ci_cd.py"))
    assert failed.returncode == 1 and "AssertionError" in failed.stderr


def test_connection_errors_snippet(mcli):
    assert run_python(str(EXAMPLES / "connection_errors.py")).stdout == "False\n"
    mcli.start()
    assert run_python(str(EXAMPLES / "connection_errors.py")).stdout == "True\n"
