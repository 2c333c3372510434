#!/usr/bin/env python3
"""Calls through `mcli-server restart`: 8 clients call `hello` in a loop, first with no restart,
then while the server is restarted a few times. Prints the latency of the calls in both phases,
the ratio of the second to the first, the failures (there should be none: the old server hands
its socket to the new one), and how long `restart` itself took.

Usage: scripts/bench/restart.py [BIN_DIR] [--restarts N] [--clients N]
(BIN_DIR defaults to target/release; build it with `cargo build --release`.)
Standard library only; runs in a temporary runtime, config and state dir, and stops its server.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def phase(client, env, clients, seconds, during=None):
    """Runs `clients` loops of `hello` for `seconds` (or while `during` runs); returns the
    latencies and the failures."""
    stop = threading.Event()
    latencies, failures = [], []
    lock = threading.Lock()

    def loop(n):
        while not stop.is_set():
            started = time.monotonic()
            run = subprocess.run([client, "hello", str(n)], env=env, capture_output=True)
            took = time.monotonic() - started
            with lock:
                latencies.append(took)
                if run.returncode != 0:
                    failures.append(run.stderr.decode(errors="replace"))

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    extra = during() if during else time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return latencies, failures, extra


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bin_dir", nargs="?", default="target/release")
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    server = os.path.join(args.bin_dir, "mcli-server")
    client = os.path.join(args.bin_dir, "mcli-client")
    with tempfile.TemporaryDirectory(prefix="mrb") as root:
        env = dict(os.environ)
        env.update(
            MCLI_RUNTIME_DIR=os.path.join(root, "rt"),
            XDG_CONFIG_HOME=os.path.join(root, "cfg"),
            XDG_STATE_HOME=os.path.join(root, "state"),
        )
        subprocess.run([server, "start"], env=env, check=True, capture_output=True)
        try:
            before, failed_before, _ = phase(client, env, args.clients, 3.0)

            def restarts():
                took = []
                for _ in range(args.restarts):
                    started = time.monotonic()
                    subprocess.run([server, "restart"], env=env, check=True, capture_output=True)
                    took.append(time.monotonic() - started)
                    time.sleep(0.5)
                return took

            during, failed_during, took = phase(client, env, args.clients, 0, during=restarts)
        finally:
            subprocess.run([server, "stop"], env=env, capture_output=True)

    def line(name, values):
        ms = [v * 1000 for v in values]
        return (
            f"{name:<22} calls {len(ms):>5}  median {statistics.median(ms):7.2f} ms  "
            f"p99 {percentile(ms, 0.99):7.2f} ms  max {max(ms):7.2f} ms"
        )

    print(line("no restart", before))
    print(line(f"{args.restarts} restarts", during))
    print(
        f"ratio (restarts / none): median {statistics.median(during) / statistics.median(before):.2f}x, "
        f"p99 {percentile(during, 0.99) / percentile(before, 0.99):.2f}x"
    )
    print(f"failed calls: {len(failed_before)} without, {len(failed_during)} during restarts")
    ms = [t * 1000 for t in took]
    print(f"restart command: median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms")
    for failure in (failed_before + failed_during)[:5]:
        print("  " + failure.strip().replace("\n", "\n  "), file=sys.stderr)
    return 1 if failed_before or failed_during else 0


if __name__ == "__main__":
    sys.exit(main())
