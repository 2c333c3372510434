"""The worker helper: `from mcli_daemon.worker import command, serve` in a warm worker, one
source for what pip installs, what mcli-server embeds and what `scripts/` offers."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from mcli_daemon import get_daemon_client

WORKER = """from mcli_daemon.worker import command, serve

STATE = {"calls": 0}

@command("count")
def count(*args):
    STATE["calls"] += 1
    print(f"call {STATE['calls']}: {' '.join(args)}")

serve()
"""


def package_worker_source() -> bytes:
    spec = importlib.util.find_spec("mcli_daemon.worker")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).read_bytes()


def test_a_worker_written_with_the_package_stays_warm(mcli):
    (mcli.commands / "counter.py").write_text(WORKER)
    # This interpreter has mcli_daemon installed; the worker runs with it.
    (mcli.commands / "count.toml").write_text(f'run = ["{sys.executable}", "counter.py"]\n[worker]\n')
    client = get_daemon_client()
    assert client.execute_command("count", ["a"])["output"] == "call 1: a\n"
    assert client.execute_command("count", ["b"])["output"] == "call 2: b\n"


def test_the_server_embeds_the_package_source(mcli):
    (mcli.commands / "greet.py").write_text(
        "from mcli_worker import command, serve\n\n@command('greet')\ndef greet(name):\n    print('hi', name)\n\nserve()\n"
    )
    (mcli.commands / "greet.toml").write_text('run = ["python3", "greet.py"]\n[worker]\n')
    assert get_daemon_client().execute_command("greet", ["Ada"])["output"] == "hi Ada\n"
    provided = list(mcli.runtime.glob("python-*/mcli_worker.py"))
    assert len(provided) == 1
    assert provided[0].read_bytes() == package_worker_source()
    assert (REPO / "python" / "mcli_daemon" / "worker.py").read_bytes() == package_worker_source()


def test_scripts_mcli_worker_is_the_package_source():
    # Importing the helper moves standard output to standard error, so the answer comes there.
    code = "import mcli_worker, sys; sys.stderr.write(mcli_worker.__file__ + ' ' + ','.join(mcli_worker.__all__))"
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    path, _, names = done.stderr.rpartition(" ")
    assert Path(path).resolve() == (REPO / "python" / "mcli_daemon" / "worker.py").resolve()
    assert names == "command,serve"
