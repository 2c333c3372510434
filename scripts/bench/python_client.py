#!/usr/bin/env python3
"""Calls per second of `hello` from the Python client (mcli_daemon), over the socket and over
the HTTP bridge, side by side in one run with a minimal raw JSON-RPC client on the same socket:
the difference is what the library costs on top of the server's work.

    cargo build --release && target/python-venv/bin/python scripts/bench/python_client.py

It runs its own server from target/release (or --bin-dir) in a private directory under /tmp,
and stops it at the end. Traffic goes only to the Unix socket and 127.0.0.1.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def median_ms(samples):
    return statistics.median(samples) * 1000.0


def raw_call(sock, reader, request_id):
    """One execute of `hello` on an open socket, as a minimal client would make it."""
    message = {"jsonrpc": "2.0", "id": request_id, "method": "execute",
               "params": {"command": "hello", "args": [], "stream": False}}
    sock.sendall(json.dumps(message).encode() + b"\n")
    while True:
        line = reader.readline()
        if not line:
            raise RuntimeError("the server closed the connection")
        reply = json.loads(line)
        if reply.get("id") == request_id:
            return reply["result"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default="target/release")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    bins = os.path.abspath(args.bin_dir)
    root = tempfile.mkdtemp(prefix="mcbench", dir="/tmp")
    env = dict(os.environ, MCLI_RUNTIME_DIR=os.path.join(root, "rt"), XDG_CONFIG_HOME=os.path.join(root, "cfg"),
               XDG_STATE_HOME=os.path.join(root, "state"), PATH=bins + os.pathsep + os.environ.get("PATH", ""))
    os.environ.update(env)
    server = [os.path.join(bins, "mcli-server")]
    subprocess.run(server + ["start", "--http", "127.0.0.1:0"], check=True, env=env, stdout=subprocess.DEVNULL)
    try:
        report(env, args.calls)
    finally:
        subprocess.run(server + ["stop"], env=env, stdout=subprocess.DEVNULL)


def report(env, calls):
    from mcli_daemon import APIDaemonClient, DaemonClientConfig, get_daemon_client

    with open(os.path.join(env["MCLI_RUNTIME_DIR"], "server.json")) as f:
        info = json.load(f)
    host, port = info["http"].rsplit(":", 1)
    local = get_daemon_client()
    http = APIDaemonClient(DaemonClientConfig(host=host, port=int(port)))
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.path.join(env["MCLI_RUNTIME_DIR"], "server.sock"))
    reader = sock.makefile("rb")
    raw, lib, web = [], [], []
    for i in range(calls):
        # Interleaved, so that the three see the same machine.
        t = time.perf_counter()
        raw_call(sock, reader, i)
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = local.execute_command("hello")
        lib.append(time.perf_counter() - t)
        t = time.perf_counter()
        over_http = http.execute_command("hello")
        web.append(time.perf_counter() - t)
        if not (result["success"] and over_http["success"]):
            raise RuntimeError(f"a call failed: {result} {over_http}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {calls} calls each, interleaved")
    print()
    print("| measure | median | calls/s |")
    print("|---|---|---|")
    for what, samples in [("raw JSON-RPC on one open socket (the server's work and a minimum client)", raw),
                          ("`mcli_daemon` `execute_command(\"hello\")` over the socket", lib),
                          ("`mcli_daemon` `execute_command(\"hello\")` over HTTP", web)]:
        print(f"| {what} | {median_ms(samples):.3f} ms | {1 / statistics.median(samples):.0f} |")
    print(f"| **client-side time of the library over the socket** (library - raw) | "
          f"**{median_ms(lib) - median_ms(raw):.3f} ms** | |")


if __name__ == "__main__":
    main()
