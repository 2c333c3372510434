"""`GET /metrics` of the real server, parsed with the reference parsers of the `prometheus_client`
package (the Prometheus text format and OpenMetrics): behind the token on the bridge, open on
`[api_daemon] metrics_addr`, and values that move with executions, the cache, connections and
workers."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Dict, Tuple

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from conftest import BIN_DIR, wait_until

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def get(url: str, token: str | None = None) -> Tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def parse(text: str) -> Samples:
    """Every sample by name and labels, from the Prometheus text parser; the OpenMetrics parser
    (stricter: it wants the `# EOF`, the `_total` suffixes, the order) must accept it too."""
    assert list(openmetrics_families(text)), "the OpenMetrics parser found no family"
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def bridge_metrics(mcli) -> Samples:
    file = mcli.server_file()
    status, content_type, text = get(f"http://{file['http']}/metrics", file["token"])
    assert status == 200, text
    assert content_type.startswith("application/openmetrics-text"), content_type
    return parse(text)


def test_metrics_need_the_token_and_move_with_executions(mcli):
    mcli.script("fails", "exit 3\n")
    (mcli.commands / "cached.toml").write_text('run = ["echo", "cached"]\n[cache]\nttl = 600\n')
    file = mcli.start("--http", "127.0.0.1:0")
    status, _, body = get(f"http://{file['http']}/metrics")
    assert status == 401, body
    before = bridge_metrics(mcli)
    assert value(before, "mcli_executions_total", command="echo", status="completed") == 0
    assert value(before, "mcli_running_commands") == 0

    client = str(BIN_DIR / "mcli-client")
    for _ in range(2):
        assert subprocess.run([client, "echo", "x"], capture_output=True).returncode == 0
    assert subprocess.run([client, "fails"], capture_output=True).returncode == 3
    assert subprocess.run([client, "-t", "0.2", "sleep", "10"], capture_output=True).returncode == 124
    for _ in range(2):
        assert subprocess.run([client, "cached"], capture_output=True).stdout == b"cached\n"

    after = bridge_metrics(mcli)
    assert value(after, "mcli_executions_total", command="echo", status="completed") == 2
    assert value(after, "mcli_executions_total", command="fails", status="failed") == 1
    assert value(after, "mcli_executions_total", command="sleep", status="timed_out") == 1
    assert value(after, "mcli_execution_duration_seconds_count") >= 5
    assert value(after, "mcli_execution_duration_seconds_sum") >= 0.2
    assert value(after, "mcli_execution_duration_seconds_bucket", le="+Inf") == value(
        after, "mcli_execution_duration_seconds_count"
    )
    assert value(after, "mcli_cache_lookups_total", result="miss") >= 1
    assert value(after, "mcli_cache_lookups_total", result="hit") == 1
    assert value(after, "mcli_history_write_seconds_count") >= 5
    assert value(after, "mcli_connections_accepted_total", transport="socket") >= 6
    assert value(after, "mcli_connections", transport="http") >= 1


def test_running_commands_and_workers_are_gauges(mcli):
    (mcli.commands / "counter.py").write_text(
        "from mcli_daemon.worker import command, serve\n\n@command('count')\ndef count(*args):\n    print('counted')\n\nserve()\n"
    )
    (mcli.commands / "count.toml").write_text(f'run = ["{sys.executable}", "counter.py"]\n[worker]\n')
    mcli.start("--http", "127.0.0.1:0")
    client = str(BIN_DIR / "mcli-client")
    assert subprocess.run([client, "count"], capture_output=True).stdout == b"counted\n"
    samples = bridge_metrics(mcli)
    assert value(samples, "mcli_workers", state="idle") == 1
    assert value(samples, "mcli_workers", state="busy") == 0
    sleeper = subprocess.Popen([client, "sleep", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: value(bridge_metrics(mcli), "mcli_running_commands") == 1, "one running command")
    finally:
        sleeper.kill()
        sleeper.wait()
    wait_until(lambda: value(bridge_metrics(mcli), "mcli_running_commands") == 0, "no running command")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_metrics_addr_serves_them_open_and_nothing_else(mcli):
    port = free_port()
    mcli.config(f'[api_daemon]\nmetrics_addr = "127.0.0.1:{port}"\n')
    mcli.start()
    subprocess.run([str(BIN_DIR / "mcli-client"), "echo", "x"], capture_output=True, check=True)
    status, _, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    assert value(parse(text), "mcli_executions_total", command="echo", status="completed") == 1
    status, _, _ = get(f"http://127.0.0.1:{port}/status")
    assert status == 404


def test_metrics_addr_must_be_loopback(mcli):
    mcli.config('[api_daemon]\nmetrics_addr = "0.0.0.0:9100"\n')
    done = mcli.server("start", check=False)
    assert done.returncode == 1
    assert "`api_daemon.metrics_addr` must be a loopback address and port" in done.stderr, done.stderr


def test_a_taken_metrics_addr_stops_the_start(mcli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mcli.config(f'[api_daemon]\nmetrics_addr = "127.0.0.1:{port}"\n')
        done = mcli.server("start", check=False)
    assert done.returncode == 1
    assert f"cannot serve the metrics on 127.0.0.1:{port} (`[api_daemon] metrics_addr`)" in done.stderr, done.stderr
