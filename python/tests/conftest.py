"""Fixtures for the tests of mcli_daemon against the real binaries.

`MCLI_BIN_DIR` names the directory of `mcli-server` and `mcli-client` (scripts/test.sh sets it
to target/debug; the default is the checkout's target/debug). Every test gets its own runtime,
config and state dirs, and every server started in them is stopped when the test ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("MCLI_BIN_DIR") or REPO / "target" / "debug")
EXAMPLES = Path(__file__).resolve().parent / "examples"

_CLEARED = [
    "MCLI_SOCKET_NAME",
    "MCLI_DAEMON_ROUTING",
    "MCLI_TOKEN",
    "MCLI_CONFIG",
    "MCLI_ALTERNATE_EDITOR",
    "MCLI_API_DAEMON_ENABLED",
    "MCLI_API_DAEMON_HOST",
    "MCLI_API_DAEMON_PORT",
    "MCLI_API_DAEMON_DEBUG",
    "XDG_RUNTIME_DIR",
    "PYTHONPATH",
]


def pytest_configure(config: pytest.Config) -> None:
    missing = [name for name in ("mcli-server", "mcli-client") if not (BIN_DIR / name).is_file()]
    if missing:
        raise pytest.UsageError(
            f"{', '.join(missing)} missing in {BIN_DIR}: run `cargo build --workspace` first, or set MCLI_BIN_DIR"
        )


class Mcli:
    """One test's mcli world: its dirs, its commands, and the servers it started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runtime = root / "run"
        self.config_home = root / "config"
        self.state_home = root / "state"
        self.commands = self.config_home / "mcli" / "commands"
        self.commands.mkdir(parents=True)
        self.state_home.mkdir()

    def env(self) -> Dict[str, str]:
        return dict(os.environ)

    def server(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs `mcli-server ARGS...` and returns what it did."""
        done = subprocess.run(
            [str(BIN_DIR / "mcli-server"), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and done.returncode != 0:
            raise AssertionError(f"mcli-server {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def start(self, *args: str, name: str = "server") -> Dict:
        """Starts a server (waiting for its readiness line) and returns its server file."""
        self.server("-s", name, "start", *args)
        return self.server_file(name)

    def server_file(self, name: str = "server") -> Dict:
        return json.loads((self.runtime / f"{name}.json").read_text())

    def script(self, name: str, body: str) -> Path:
        """A command: an executable shell script in the commands dir."""
        path = self.commands / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
        return path

    def config(self, text: str) -> None:
        path = self.config_home / "mcli" / "config.toml"
        path.write_text(text)

    def stop_all(self) -> None:
        """Stops every server whose server file is in the runtime dir; kills what will not stop."""
        if not self.runtime.is_dir():
            return
        for file in self.runtime.glob("*.json"):
            try:
                pid = int(json.loads(file.read_text())["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            self.server("-s", file.stem, "stop", check=False)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def mcli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private mcli world, with the binaries first on PATH; its servers stop at the end."""
    world = Mcli(tmp_path)
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MCLI_RUNTIME_DIR", str(world.runtime))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(world.config_home))
    monkeypatch.setenv("XDG_STATE_HOME", str(world.state_home))
    monkeypatch.setenv("PATH", f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    try:
        yield world
    finally:
        world.stop_all()


@pytest.fixture
def no_server_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PATH without mcli-server (python3 and the shell stay reachable)."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sh", "python3"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            (bare / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bare))


def wait_until(condition, what: str, timeout: float = 20.0):
    """Polls `condition` until it returns something true; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_python(code_or_path: str, *args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Runs a Python file (or `-c` code) with this interpreter, in the current environment."""
    argv: List[str] = [sys.executable, code_or_path, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)
