#!/usr/bin/env python3
"""Soak and fault runs of mcli against its real binaries; prints a Markdown table of figures.

What it measures (docs/soak.md says what each figure means and what to expect):
  1. hostile inputs per transport (socket, TCP with and without auth, stdio): a generated corpus
     of malformed and adversarial JSON-RPC messages and framings; tried, crashes, hangs;
  2. a bounded fuzz run: random mutations of valid messages over several connections;
  3. `kill -9` rounds under load: looping clients while the server is killed and restarted on
     demand; every acknowledged execution must be in the history afterwards;
  4. a full state disk (root only: a tiny tmpfs as XDG_STATE_HOME);
  5. idle HTTP connections against the bridge, with `GET /health` latency measured meanwhile.

Everything runs in a private temp dir, traffic goes only to loopback and to the Unix socket, every
loop is bounded in count and time, and every process the run started (found by the temp dir in
its environment) is killed at the end, also on Ctrl-C and when the overall deadline passes.

Standard library only, so that it runs wherever the binaries do, with nothing to build.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import resource
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NAME = "soak"
# A server's stdio and connections get this long to answer one message before it counts as a hang.
REPLY_BOUND = 5.0
# The socket's limit for one message (docs/protocol.md), to send one just over it.
MAX_FRAME = 16 * 1024 * 1024


def log(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# The sandbox: private dirs, the processes started in them, and their cleanup.


class Sandbox:
    """A private temp dir with one sub-environment per section, and everything started in it."""

    def __init__(self, bin_dir: Path, keep: bool):
        # Short: a socket path must fit in 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="mcsoak", dir="/tmp"))
        self.bin_dir = bin_dir
        self.keep = keep
        self.children: list[subprocess.Popen] = []
        self.mounts: list[Path] = []
        self.lock = threading.Lock()
        self.cleaned = False

    def env(self, name: str) -> "Env":
        return Env(self, self.root / name)

    def track(self, child: subprocess.Popen) -> subprocess.Popen:
        with self.lock:
            self.children.append(child)
        return child

    def our_pids(self) -> list[int]:
        """The live processes whose environment names this sandbox (servers started on demand
        or detached are not our children, but they carry our runtime dir)."""
        needle = f"MCLI_RUNTIME_DIR={self.root}/".encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read():
                        pids.append(int(entry))
            except OSError:
                continue
        return pids

    def cleanup(self) -> None:
        with self.lock:
            if self.cleaned:
                return
            self.cleaned = True
            children = list(self.children)
        for child in children:
            if child.poll() is None:
                try:
                    child.kill()
                except OSError:
                    pass
        for _ in range(3):
            for pid in self.our_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        for child in children:
            try:
                child.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for mount in self.mounts:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        if self.keep:
            log(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


class Env:
    """One section's runtime, config, state and home dirs, as the end-to-end tests lay them."""

    def __init__(self, sandbox: Sandbox, root: Path):
        self.sandbox = sandbox
        self.root = root
        self.runtime = root / "rt"
        self.state = root / "state"
        for sub in ("cfg", "state", "home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.config = root / "config.toml"
        # The history keeps every row of the run, so that none is missing for want of room.
        self.config.write_text("[server]\nhistory_max_entries = 10000000\n")

    def vars(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root / "home"),
            "MCLI_RUNTIME_DIR": str(self.runtime),
            "XDG_RUNTIME_DIR": str(self.root / "xdg-rt"),
            "XDG_CONFIG_HOME": str(self.root / "cfg"),
            "XDG_STATE_HOME": str(self.state),
            "MCLI_CONFIG": str(self.config),
            "MCLI_SOCKET_NAME": NAME,
        }

    def bin(self, name: str) -> str:
        return str(self.sandbox.bin_dir / name)

    def run(self, program: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs a binary to completion (killed past `timeout`, then exit status -9)."""
        child = self.sandbox.track(
            subprocess.Popen(
                [self.bin(program), *args],
                env=self.vars(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
        return subprocess.CompletedProcess(child.args, child.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def foreground(self, args: list[str]) -> "Server":
        """Starts `mcli-server start --foreground ARGS` and waits for its readiness line."""
        log_file = open(self.root / "server.log", "ab")
        child = self.sandbox.track(
            subprocess.Popen(
                [self.bin("mcli-server"), "start", "--foreground", *args],
                env=self.vars(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
            )
        )
        log_file.close()
        line = read_line_within(child.stdout, 30)
        if not line:
            child.kill()
            raise RuntimeError(f"mcli-server gave no readiness line within 30 s; see {self.root / 'server.log'}")
        return Server(self, child)

    def server_file(self) -> dict | None:
        try:
            return json.loads((self.runtime / f"{NAME}.json").read_text())
        except (OSError, ValueError):
            return None

    @property
    def socket_path(self) -> str:
        return str(self.runtime / f"{NAME}.sock")


def read_line_within(stream, bound: float) -> bytes:
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(bound)
    return got[0] if got else b""


@dataclass
class Server:
    env: Env
    child: subprocess.Popen
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.info = self.env.server_file() or {}

    def alive(self) -> bool:
        return self.child.poll() is None

    def rss_kib(self) -> tuple[int, int]:
        """The server's resident set now and at its peak, in KiB."""
        values = {}
        try:
            for row in Path(f"/proc/{self.child.pid}/status").read_text().splitlines():
                key, _, value = row.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(value.split()[0])
        except OSError:
            pass
        return values.get("VmRSS", 0), values.get("VmHWM", 0)

    def tcp_addr(self) -> tuple[str, int]:
        host, _, port = self.info["tcp"].rpartition(":")
        return host.strip("[]"), int(port)

    def http_addr(self) -> tuple[str, int]:
        host, _, port = self.info["http"].rpartition(":")
        return host.strip("[]"), int(port)

    def stop(self) -> None:
        self.env.run("mcli-server", ["stop"], timeout=30)
        try:
            self.child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()


# ----------------------------------------------------------------------------------------------
# Messages and framings.


def req(method: str, params=None, id_=1, **extra) -> dict:
    msg = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    msg.update(extra)
    return msg


def note(method: str, params=None) -> dict:
    msg = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def enc(value) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()


def lines(*bodies) -> bytes:
    return b"".join(enc(b) + b"\n" for b in bodies)


def framed(*bodies) -> bytes:
    return b"".join(b"Content-Length: %d\r\n\r\n" % len(enc(b)) + enc(b) for b in bodies)


@dataclass
class Item:
    name: str
    data: bytes
    # A reply must come (a request with an id in a frame the server can read).
    expect_reply: bool


# Wrong values of every JSON type, for every param of every method.
WRONG = [None, True, -1, 1.5, 1e308, 2**64, "", "x" * 5000, [], [1, "a"], {}, {"a": {"b": []}}]

METHOD_PARAMS = {
    "execute": {"command": "echo", "args": ["a"], "cwd": "/tmp", "env": {"A": "1"}, "stdin": "s", "stdin_b64": "cw==",
                "stdin_stream": False, "timeout": 5, "stream": False, "no_cache": True, "protocol": 1},
    "history": {"limit": 5, "command": "echo", "failed": False},
    "cancel": {"id": 1},
    "shutdown": {"force": False},
}


def corpus() -> list[Item]:
    """The hostile inputs: each a whole connection's bytes."""
    items: list[Item] = []

    def add(name: str, body, expect=True, both=True):
        # Each message in both framings, unless it is a framing of its own.
        if both:
            items.append(Item(f"{name} (lines)", lines(body), expect))
            items.append(Item(f"{name} (headers)", framed(body), expect))
        else:
            items.append(Item(name, body, expect))

    # Valid ones first, as a baseline of the checks.
    for method in ("health", "status", "list"):
        add(f"valid {method}", req(method))
    add("valid execute echo", req("execute", {"command": "echo", "args": ["x"]}))
    # Broken JSON.
    for name, body in [
        ("truncated JSON", b'{"jsonrpc":"2.0","id":1,"method":"hea'),
        ("trailing garbage", b'{"jsonrpc":"2.0","id":1,"method":"health"}xyz'),
        ("two objects in one frame", b'{"jsonrpc":"2.0","id":1,"method":"health"}{"id":2}'),
        ("a bare string", b'"health"'),
        ("a bare number", b"12345678901234567890123"),
        ("null", b"null"),
        ("NaN literal", b'{"jsonrpc":"2.0","id":NaN,"method":"health"}'),
        ("single quotes", b"{'jsonrpc':'2.0','id':1,'method':'health'}"),
        ("comment", b'{"jsonrpc":"2.0",/*c*/"id":1,"method":"health"}'),
        ("invalid UTF-8 in method", b'{"jsonrpc":"2.0","id":1,"method":"he\xffalth"}'),
        ("invalid UTF-8 in id", b'{"jsonrpc":"2.0","id":"\xc3\x28","method":"health"}'),
        ("overlong UTF-8", b'{"jsonrpc":"2.0","id":1,"method":"\xc0\xafhealth"}'),
        ("lone surrogate escape", b'{"jsonrpc":"2.0","id":"\\ud800","method":"health"}'),
        ("NUL bytes", b'{"jsonrpc":"2.0","id":1,"method":"health\x00"}'),
        ("duplicate keys", b'{"jsonrpc":"2.0","id":1,"id":2,"method":"health","method":"status"}'),
    ]:
        add(name, body)
    # BOMs.
    bom = "\ufeff".encode()
    items.append(Item("BOM before a line", bom + lines(req("health")), False))
    items.append(Item("BOM before headers", bom + framed(req("health")), False))
    items.append(Item("BOM inside a header frame", framed(bom + enc(req("health"))), True))
    items.append(Item("BOM on a second line", lines(req("health")) + bom + lines(req("health", id_=2)), True))
    # Deep nesting.
    for depth in (64, 129, 1000, 100_000):
        add(f"array nesting {depth}", b"[" * depth + b"]" * depth)
        add(f"object nesting {depth} in params", b'{"jsonrpc":"2.0","id":1,"method":"echo","params":'
            + b'{"a":' * depth + b"1" + b"}" * depth + b"}")
    add("unclosed nesting 100000", b"[" * 100_000)
    # Envelopes.
    for name, body in [
        ("no jsonrpc", {"id": 1, "method": "health"}),
        ("jsonrpc 1.0", {"jsonrpc": "1.0", "id": 1, "method": "health"}),
        ("jsonrpc as number", {"jsonrpc": 2.0, "id": 1, "method": "health"}),
        ("method as number", {"jsonrpc": "2.0", "id": 1, "method": 7}),
        ("method null", {"jsonrpc": "2.0", "id": 1, "method": None}),
        ("no method", {"jsonrpc": "2.0", "id": 1}),
        ("unknown method", req("no/such/method")),
        ("empty method", req("")),
        ("rpc. method", req("rpc.discover")),
        ("huge method name", req("m" * 100_000)),
        ("params a string", req("health", "x")),
        ("params a number", req("health", 5)),
        ("params null", {"jsonrpc": "2.0", "id": 1, "method": "health", "params": None}),
        ("params as array", req("execute", ["echo", ["pos"]])),
        ("result and error in a request", req("health", result=1, error={"code": 1})),
        ("a response sent to the server", {"jsonrpc": "2.0", "id": 1, "result": {}}),
        ("authenticate on an open transport", req("authenticate", {"token": "x"})),
    ]:
        add(name, body)
    # Ids.
    for id_ in [-1, -(2**63), 2**63, 2**64, 2**64 + 1, 1.5, 1e400, -0.0, "", "i" * 10_000, {}, [], True, None]:
        body = enc(req("health", id_=0)).replace(b'"id":0', b'"id":' + (b"1e400" if id_ == 1e400 else enc(id_)))
        add(f"id {str(id_)[:20]!s}", body)
    # Notifications: with ids where they have none, and the server's own sent to it.
    add("mcli/output as a request", req("mcli/output", {"stream": "stdout", "data": "x"}))
    add("mcli/output notification", note("mcli/output", {"stream": "stdout", "data": "x"}), expect=False)
    add("mcli/stdin for no request", note("mcli/stdin", {"request_id": 99, "data": "x", "eof": True}), expect=False)
    add("mcli/stdin bad base64", note("mcli/stdin", {"request_id": 1, "data_b64": "!!!", "eof": True}), expect=False)
    add("$/cancelRequest unknown id", note("$/cancelRequest", {"id": 424242}), expect=False)
    add("$/cancelRequest no params", note("$/cancelRequest"), expect=False)
    add("$/cancelRequest id object", note("$/cancelRequest", {"id": {"a": 1}}), expect=False)
    add("$/cancelRequest with an id", req("$/cancelRequest", {"id": 1}))
    add("$/other notification", note("$/setTrace", {"value": "off"}), expect=False)
    add("unknown notification", note("nope"), expect=False)
    add("execute as a notification", note("execute", {"command": "echo", "args": ["n"]}), expect=False)
    # Wrong types in every param.
    for method, params in METHOD_PARAMS.items():
        if method == "shutdown":
            continue
        for key in params:
            for value in WRONG:
                bad = dict(params, **{key: value})
                items.append(Item(f"{method}.{key} = {json.dumps(value)[:16]}", lines(req(method, bad)), True))
        items.append(Item(f"{method} unknown param", lines(req(method, dict(params, bogus=1))), True))
    for value in WRONG:
        items.append(Item(f"shutdown.force = {json.dumps(value)[:16]} (id, no shutdown)",
                          lines(req("shutdown", {"force": value, "bogus": 1})), True))
    # Batches of every odd shape.
    for name, body in [
        ("empty batch", []),
        ("batch of a number", [1]),
        ("batch of null", [None]),
        ("batch of strings", ["a", "b"]),
        ("nested batch", [[req("health")]]),
        ("batch of an empty batch", [[]]),
        ("batch of notifications only", [note("nope"), note("$/cancelRequest", {"id": 1})]),
        ("batch with duplicate ids", [req("health"), req("health"), req("status")]),
        ("batch mixed valid and invalid", [req("health"), {"x": 1}, 5, req("nope", id_=3), note("nope")]),
        ("batch of 1000 health", [req("health", id_=i) for i in range(1000)]),
        ("batch of 200 small history", [req("history", {"limit": 10000}, id_=i) for i in range(200)]),
        ("batch of 50 executes", [req("execute", {"command": "echo", "args": [str(i)]}, id_=i) for i in range(50)]),
        ("batch with a cancel for itself", [req("execute", {"command": "sleep", "args": ["0.2"]}, id_="s"),
                                            note("$/cancelRequest", {"id": "s"})]),
        ("batch with authenticate", [req("authenticate", {"token": "x"}), req("health", id_=2)]),
    ]:
        add(name, body, expect=name not in ("batch of notifications only",))
    add("batch truncated", b'[{"jsonrpc":"2.0","id":1,"method":"health"},')
    # Framings.
    for name, data, expect in [
        ("huge Content-Length", b"Content-Length: 99999999999\r\n\r\n{}", False),
        ("Content-Length 2^64", b"Content-Length: 18446744073709551616\r\n\r\n{}", False),
        ("negative Content-Length", b"Content-Length: -1\r\n\r\n{}", False),
        ("Content-Length not a number", b"Content-Length: ten\r\n\r\n{}", False),
        ("Content-Length too short", b"Content-Length: 5\r\n\r\n" + enc(req("health")), True),
        ("Content-Length too long then EOF", b"Content-Length: 500\r\n\r\n" + enc(req("health")), False),
        ("Content-Length 17 MiB then EOF", b"Content-Length: %d\r\n\r\n{" % (17 * 1024 * 1024), False),
        ("two Content-Length headers", b"Content-Length: 2\r\nContent-Length: 41\r\n\r\n" + enc(req("health")), True),
        ("header without colon", b"Content-Length 41\r\n\r\n" + enc(req("health")), False),
        ("header of 9000 bytes", b"X-Pad: " + b"p" * 9000 + b"\r\n\r\n", False),
        ("headers never ended", b"Content-Length: 41\r\n" * 300, False),
        ("bare LF headers", b"Content-Length: 41\n\n" + enc(req("health")), True),
        ("Content-Length zero", b"Content-Length: 0\r\n\r\n", True),
        ("header in Latin-1", b"Content-Type: caf\xe9\r\nContent-Length: 2\r\n\r\n{}", False),
        ("only whitespace", b" \r\n\t\n" * 1000, False),
        ("random binary", bytes(random.Random(7).randrange(256) for _ in range(4096)), False),
        ("a line of 16 MiB + 1", b'{"a":"' + b"x" * MAX_FRAME + b'"}\n' + lines(req("health")), True),
        ("a line without newline at EOF", enc(req("health")), True),
        ("CRLF lines", enc(req("health")) + b"\r\n" + enc(req("status", id_=2)) + b"\r\n", True),
        ("a thousand blank lines then a request", b"\n" * 1000 + lines(req("health")), True),
        ("NDJSON then headers", lines(req("health")) + framed(req("status", id_=2)), True),
        ("headers then NDJSON", framed(req("health")) + lines(req("status", id_=2)), True),
        ("64 requests pipelined", lines(*[req("health", id_=i) for i in range(64)]), True),
        ("300 requests pipelined", lines(*[req("health", id_=i) for i in range(300)]), True),
        ("stdin_stream never fed", lines(req("execute", {"command": "echo", "stdin_stream": True})), False),
    ]:
        items.append(Item(name, data, expect))
    return items


# ----------------------------------------------------------------------------------------------
# Connections.


def connect_unix(path: str, bound: float = REPLY_BOUND) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(bound)
    s.connect(path)
    return s


def connect_tcp(addr: tuple[str, int], bound: float = REPLY_BOUND) -> socket.socket:
    s = socket.create_connection(addr, timeout=bound)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_line(s: socket.socket, bound: float) -> bytes:
    """One line from `s` within `bound` seconds (b"" on close or timeout)."""
    s.settimeout(bound)
    buf = b""
    deadline = time.monotonic() + bound
    while b"\n" not in buf and time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except OSError:
            return b""
        if not chunk:
            return b""
        buf += chunk
    return buf.split(b"\n", 1)[0] if b"\n" in buf else b""


def health_on_socket(env: Env, bound: float = REPLY_BOUND) -> bool:
    try:
        with connect_unix(env.socket_path, bound) as s:
            s.sendall(lines(req("health", id_="probe")))
            reply = json.loads(read_line(s, bound) or b"null")
            return isinstance(reply, dict) and reply.get("id") == "probe" and "result" in reply
    except (OSError, ValueError):
        return False


def authenticate(s: socket.socket, token: str) -> bool:
    s.sendall(lines(req("authenticate", {"token": token}, id_="auth")))
    try:
        reply = json.loads(read_line(s, REPLY_BOUND) or b"null")
    except ValueError:
        return False
    return isinstance(reply, dict) and reply.get("result", {}).get("ok") is True


def exchange(s: socket.socket, data: bytes, bound: float) -> tuple[bytes, bool]:
    """Sends `data`, half-closes, and reads until the server closes or `bound` passes. Returns
    what came back and whether the connection ended."""
    got = bytearray()
    done = threading.Event()

    def reader():
        s.settimeout(0.2)
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            got.extend(chunk)
        else:
            return
        done.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for at in range(0, len(data), 1 << 20):
            s.sendall(data[at:at + (1 << 20)])
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # The server may close a connection it will not read any more.
    thread.join(bound + 1)
    return bytes(got), done.is_set()


# ----------------------------------------------------------------------------------------------
# 1. Hostile inputs per transport.


@dataclass
class Tally:
    tried: int = 0
    crashes: int = 0
    hangs: int = 0
    # A reply was due and the server closed the connection (or the session exited) without it.
    unanswered: int = 0
    left_open: int = 0
    examples: list[str] = field(default_factory=list)

    def fault(self, kind: str, name: str) -> None:
        if kind == "crash":
            self.crashes += 1
        elif kind == "hang":
            self.hangs += 1
        else:
            self.unanswered += 1
        # One example of each reason (the part in brackets), a few at most.
        reason = name.split(" (", 1)[-1]
        if len(self.examples) < 4 and not any(e.endswith(reason) for e in self.examples):
            self.examples.append(f"{kind}: {name}")


class Restartable:
    """The server of a section, restarted after a crash; its generation tells the workers that
    saw the same crash apart."""

    def __init__(self, env: Env, args: list[str]):
        self.env = env
        self.args = args
        self.lock = threading.Lock()
        self.server = env.foreground(args)
        self.generation = 0

    def current(self) -> tuple[Server, int]:
        with self.lock:
            return self.server, self.generation

    def check(self, generation: int) -> bool:
        """Whether the server is up and answers `health`; when not, restarts it and returns False
        (once per crash, for the first worker that sees it)."""
        if health_on_socket(self.env):
            return True
        with self.lock:
            if generation != self.generation:
                return True
            if self.server.alive():
                self.server.child.kill()
            self.server.child.wait()
            self.server = self.env.foreground(self.args)
            self.generation += 1
            return False


def hostile_stream(env: Env, transport: str, items: list[Item], bound: float, deadline: float, workers: int) -> Tally:
    """Sends each item on a connection of its own to one server, several at once, checking that
    the server answers `health` after each."""
    tally = Tally()
    tally_lock = threading.Lock()
    holder = Restartable(env, ["--tcp", "127.0.0.1:0"])

    def one(item: Item) -> None:
        if time.monotonic() > deadline:
            return
        server, generation = holder.current()
        faults = []
        try:
            if transport == "socket":
                s = connect_unix(env.socket_path)
            else:
                s = connect_tcp(server.tcp_addr())
                if transport == "tcp+auth" and not authenticate(s, server.info["token"]):
                    s.close()
                    raise OSError("authentication not answered")
            with s:
                got, ended = exchange(s, item.data, bound)
        except OSError as e:
            got, ended = b"", True
            faults.append(("hang", f"{item.name}: {e}"))
        if item.expect_reply and not got:
            faults.append(("hang" if not ended else "unanswered", item.name))
        if not holder.check(generation):
            faults.append(("crash", item.name))
        with tally_lock:
            tally.tried += 1
            tally.left_open += 0 if ended else 1
            for kind, name in faults:
                tally.fault(kind, name)

    try:
        run_all(one, items, workers)
    finally:
        holder.server.stop()
    return tally


def run_all(work, items: list, workers: int) -> None:
    """Runs `work` on every item, `workers` at a time."""
    queue = list(reversed(items))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                item = queue.pop()
            work(item)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def hostile_stdio(env: Env, items: list[Item], bound: float, deadline: float, workers: int) -> Tally:
    """Runs each item through an `mcli-server --stdio` session of its own: the session must answer
    (or close) and end when its input does, never by a signal or a panic."""
    tally = Tally()
    tally_lock = threading.Lock()

    def one(item: Item) -> None:
        if time.monotonic() > deadline:
            return
        child = env.sandbox.track(
            subprocess.Popen([env.bin("mcli-server"), "--stdio"], env=env.vars(), cwd=env.root,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
        ended = True
        try:
            out, err = child.communicate(item.data, timeout=bound)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
            ended = False
        except BrokenPipeError:
            child.kill()
            out, err = b"", b""
            child.wait()
        faults = []
        panicked = b"panicked" in err or child.returncode == 101
        if ended and (child.returncode < 0 or panicked):
            faults.append(("crash", f"{item.name} (exit {child.returncode})"))
        elif item.expect_reply and not out:
            why = short(err.decode(errors="replace"), env.sandbox.root)
            kind = "unanswered" if ended else "hang"
            faults.append((kind, f"{item.name} (no reply, exit {child.returncode}: {why})"))
        with tally_lock:
            tally.tried += 1
            tally.left_open += 0 if ended else 1
            for kind, name in faults:
                tally.fault(kind, name)

    run_all(one, items, workers)
    return tally


# ----------------------------------------------------------------------------------------------
# 2. A bounded fuzz run.

SEEDS = [
    req("health"), req("status"), req("list"),
    req("execute", {"command": "echo", "args": ["fuzz", "x"]}),
    req("execute", {"command": "hello", "args": ["w"], "stream": False}),
    req("execute", {"command": "exit", "args": ["3"]}),
    req("execute", {"command": "echo", "args": ["a"], "env": {"A": "b"}, "cwd": "/tmp", "stdin": "in"}),
    req("execute", {"command": "sleep", "args": ["0.01"], "timeout": 1}),
    req("history", {"limit": 3}), req("cancel", {"id": 1}),
    note("$/cancelRequest", {"id": 1}), note("mcli/stdin", {"request_id": 1, "data": "x", "eof": True}),
    [req("health", id_=1), req("status", id_=2)],
]
SEED_BYTES = [enc(s) for s in SEEDS]
INTERESTING = [b"-1", b"0", b"1e308", b"18446744073709551616", b"null", b"true", b'""', b"[]", b"{}", b'"\\u0000"',
               b"[[[[[[[[", b"]]]]", b"\xff", b"\xef\xbb\xbf", b"1.5", b'"$/cancelRequest"']


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2:
            del out[at:at + rng.randint(1, 16)]
        elif op == 3:
            end = min(len(out), at + rng.randint(1, 32))
            out[at:at] = out[at:end] * rng.randint(1, 8)
        elif op == 4:
            out[at:at] = rng.choice(INTERESTING)
        elif op == 5:
            other = rng.choice(SEED_BYTES)
            out = out[:at] + other[rng.randrange(len(other) + 1):]
        else:
            out[at:at + rng.randint(0, 8)] = rng.choice(INTERESTING)
    # One line of the line framing: a raw newline would split it.
    return bytes(out).replace(b"\n", b" ")


def fuzz(env: Env, seconds: float, connections: int, seed: int) -> dict:
    server = env.foreground(["--tcp", "127.0.0.1:0"])
    # Let it settle before the first reading.
    health_on_socket(env)
    rss_before, _ = server.rss_kib()
    stop_at = time.monotonic() + seconds
    sent = [0] * connections
    reconnects = [0] * connections
    crashed = threading.Event()

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.monotonic() < stop_at and not crashed.is_set():
            try:
                s = connect_unix(env.socket_path) if index % 2 == 0 else connect_tcp(server.tcp_addr())
                if index % 2 == 1 and not authenticate(s, server.info["token"]):
                    s.close()
                    reconnects[index] += 1
                    continue
            except OSError:
                reconnects[index] += 1
                time.sleep(0.05)
                continue
            drain = threading.Thread(target=drain_socket, args=(s,), daemon=True)
            drain.start()
            s.settimeout(REPLY_BOUND)
            try:
                while time.monotonic() < stop_at:
                    batch = b"".join(mutate(rng, rng.choice(SEED_BYTES)) + b"\n" for _ in range(16))
                    s.sendall(batch)
                    sent[index] += 16
            except OSError:
                reconnects[index] += 1
            finally:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
                drain.join(REPLY_BOUND)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if not server.alive():
            crashed.set()
        time.sleep(0.5)
    alive = server.alive() and health_on_socket(env)
    rss_after, peak = server.rss_kib()
    result = {"sent": sum(sent), "reconnects": sum(reconnects), "crashes": 0 if alive else 1,
              "rss_before": rss_before, "rss_after": rss_after, "rss_peak": peak, "seconds": seconds,
              "connections": connections}
    if alive:
        server.stop()
    return result


def drain_socket(s: socket.socket) -> None:
    s.settimeout(1.0)
    while True:
        try:
            if not s.recv(1 << 20):
                return
        except socket.timeout:
            continue
        except OSError:
            return


# ----------------------------------------------------------------------------------------------
# 3. kill -9 rounds under load.


def kill_rounds(env: Env, rounds: int, clients: int, round_seconds: float) -> dict:
    acknowledged: list[tuple[int, str]] = []
    lock = threading.Lock()
    stop = threading.Event()
    failures = [0]

    def client(index: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            tag = f"c{index}-{n}"
            command = "hello" if n % 2 else "echo"
            done = env.run("mcli-client", ["--json", "-q", command, tag], timeout=30)
            if done.returncode == 0:
                try:
                    ack = json.loads(done.stdout)["id"]
                except (ValueError, KeyError, TypeError):
                    failures[0] += 1
                    continue
                with lock:
                    acknowledged.append((int(ack), tag))
            else:
                with lock:
                    failures[0] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    kills = 0
    try:
        for _ in range(rounds):
            pid = wait_for_server_pid(env, 30)
            if pid is None:
                log("kill -9: no server came up within 30 s")
                break
            time.sleep(round_seconds)
            try:
                os.kill(pid, signal.SIGKILL)
                kills += 1
            except OSError as e:
                log(f"kill -9: server {pid} was already gone ({e})")
            wait_gone(pid, 10)
        # The last round's executions, then the end of the load.
        time.sleep(round_seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    env.run("mcli-server", ["stop"], timeout=30)
    history, how = read_history(env, len(acknowledged))
    ids = [i for i, _ in acknowledged]
    missing = [(i, tag) for i, tag in acknowledged if history.get(i) != tag]
    return {"rounds": kills, "clients": clients, "acknowledged": len(acknowledged), "failed_calls": failures[0],
            "missing": len(missing), "missing_examples": missing[:3],
            "duplicate_ids": len(ids) - len(set(ids)), "history_rows": len(history), "history_read": how}


def wait_for_server_pid(env: Env, bound: float) -> int | None:
    """The pid of the server that answers on the socket now (from `status`), waiting for one."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            with connect_unix(env.socket_path, 2) as s:
                s.sendall(lines(req("status", id_="pid")))
                reply = json.loads(read_line(s, 2) or b"null")
                return int(reply["result"]["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return None


def wait_gone(pid: int, bound: float) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rsplit(") ", 1)[-1].startswith("Z"):
            return
        time.sleep(0.02)


def history_page_flag(env: Env) -> str | None:
    """The paging flag of `mcli-server history`, if this build has one."""
    text = env.run("mcli-server", ["history", "--help"]).stdout
    for flag in ("--before", "--before-id", "--until", "--offset", "--after"):
        if flag in text.split():
            return flag
    return None


def read_history(env: Env, expected: int) -> tuple[dict[int, str], str]:
    """All rows of the history as id -> first argument, through `mcli-server history --json`,
    paging when it can. Returns the rows and how they were read."""
    limit = 10_000
    flag = history_page_flag(env)
    rows: dict[int, str] = {}
    page_args: list[str] = []
    pages = 0
    while pages < 10_000:
        pages += 1
        done = env.run("mcli-server", ["history", "--json", "--limit", str(limit), *page_args], timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"mcli-server history failed: {done.stderr.strip()}")
        entries = json.loads(done.stdout).get("entries", [])
        new = 0
        for e in entries:
            if e["id"] not in rows:
                new += 1
            rows[e["id"]] = (e.get("args") or [""])[0]
        if len(entries) < limit or flag is None or new == 0:
            break
        oldest = min(e["id"] for e in entries)
        page_args = [flag, str(oldest)] if flag != "--offset" else [flag, str(len(rows))]
    if flag is None and len(rows) >= limit:
        # The CLI cannot page in this build: read the rest from the database itself (read-only).
        db = env.state / "mcli" / f"{NAME}-history.sqlite3"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            for id_, args in conn.execute("SELECT id, args FROM executions"):
                rows[id_] = (json.loads(args) or [""])[0]
        return rows, f"reading {db.name} itself (the CLI returns at most {limit} rows and cannot page)"
    return rows, f"`mcli-server history --json` ({pages} page{'s' if pages > 1 else ''}{', ' + flag if flag else ''})"


# ----------------------------------------------------------------------------------------------
# 4. A full state disk.


def full_disk(env: Env, size: str) -> dict:
    if os.geteuid() != 0:
        return {"measured": False, "why": "not running as root: cannot mount a tmpfs"}
    mount_point = env.state
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"measured": False, "why": f"`mount -t tmpfs` failed: {done.stderr.strip() or done.returncode}"}
    env.sandbox.mounts.append(mount_point)
    try:
        return full_disk_phases(env, mount_point)
    finally:
        # Nothing may keep the mount busy: end this section's processes first.
        for pid in env.sandbox.our_pids():
            try:
                if f"MCLI_RUNTIME_DIR={env.runtime}\0".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
        env.sandbox.mounts.remove(mount_point)


def full_disk_phases(env: Env, mount_point: Path) -> dict:
    acked: list[tuple[str, int]] = []

    def serve_some(phase: str, count: int) -> tuple[int, str]:
        start = env.run("mcli-server", ["start"], timeout=60)
        served = 0
        for n in range(count):
            done = env.run("mcli-client", ["--json", "-q", "echo", f"{phase}-{n}"], timeout=30)
            if done.returncode == 0:
                served += 1
                acked.append((phase, int(json.loads(done.stdout)["id"])))
            last = done
        env.run("mcli-server", ["stop"], timeout=30)
        root = env.sandbox.root
        detail = f"start exit {start.returncode}" + (f": {short(start.stderr, root)}" if start.returncode else "")
        if served < count:
            detail += f"; client exit {last.returncode}"
            if short(last.stderr, root) != short(start.stderr, root):
                detail += f": {short(last.stderr, root)}"
        return served, detail

    # A history with rows, as a user has; then the disk fills up.
    serve_some("before", 3)
    filler = mount_point / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    try:
        with open(filler, "ab") as f:
            while True:
                f.write(b"\0")
                f.flush()
    except OSError:
        pass
    served_a, detail_a = serve_some("full-a", 5)
    served_b, detail_b = serve_some("full-b", 5)
    filler.unlink()
    served_c, detail_c = serve_some("freed", 3)
    history, _ = read_history(env, len(acked))
    full = [i for phase, i in acked if phase.startswith("full")]
    ids = [i for _, i in acked]
    return {"measured": True, "served": f"{served_a}/5 then {served_b}/5 (second server)", "detail_a": detail_a,
            "detail_b": detail_b, "detail_c": f"{served_c}/3 after freeing ({detail_c})",
            "recorded": f"{sum(1 for i in full if i in history)}/{len(full)}",
            "ids_unique": len(ids) == len(set(ids)), "duplicates": len(ids) - len(set(ids)), "acked": len(ids)}


def short(text: str, root: Path | None = None) -> str:
    """The first line of an error, without the program's name, with the sandbox's dir as `$TMP`."""
    line = first_line(text)
    line = line.split(": ", 1)[-1] if line.startswith("mcli-") else line
    return (line.replace(str(root), "$TMP") if root else line)[:200]


def first_line(text: str) -> str:
    text = text.strip().splitlines()
    return text[0][:160] if text else ""


# ----------------------------------------------------------------------------------------------
# 5. Idle HTTP connections.


def http_health(addr: tuple[str, int], bound: float) -> float | None:
    """One `GET /health` on a new connection: its latency in seconds, or None past `bound`."""
    started = time.monotonic()
    try:
        with socket.create_connection(addr, timeout=bound) as s:
            s.settimeout(max(0.001, bound - (time.monotonic() - started)))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data and b"healthy" in data:
                    break
    except OSError:
        return None
    return time.monotonic() - started if data.startswith(b"HTTP/1.1 200") else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class IdleFlood:
    """Keeps `count` idle connections open to `addr` (sending nothing), opening a new one for each
    that the server closes, as a flood would; bounded in re-opens."""

    def __init__(self, addr: tuple[str, int], count: int):
        self.addr = addr
        self.count = count
        self.conns: dict[int, socket.socket] = {}
        self.reopened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.keep, daemon=True)

    def open_one(self) -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(self.addr)
        self.conns[s.fileno()] = s
        return s.fileno()

    def start(self) -> None:
        for _ in range(self.count):
            self.open_one()
        self.thread.start()

    def keep(self) -> None:
        poller = select.poll()
        for fd in self.conns:
            poller.register(fd, select.POLLIN)
        while not self.stop.is_set():
            for fd, _ in poller.poll(200):
                s = self.conns.pop(fd, None)
                poller.unregister(fd)
                if s is None:
                    continue
                s.close()
                if self.reopened < 50 * self.count:
                    self.reopened += 1
                    poller.register(self.open_one(), select.POLLIN)

    def close(self) -> int:
        self.stop.set()
        self.thread.join(5)
        still = len(self.conns)
        for s in self.conns.values():
            s.close()
        return still


def idle_http(env: Env, count: int, samples: int, budget: float) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
    server = env.foreground(["--http", "127.0.0.1:0"])
    addr = server.http_addr()
    baseline = [t for t in (http_health(addr, 5) for _ in range(50)) if t is not None]
    flood = IdleFlood(addr, count)
    flood.start()
    latencies: list[float] = []
    timeouts = 0
    deadline = time.monotonic() + budget
    while len(latencies) + timeouts < samples and time.monotonic() < deadline:
        took = http_health(addr, min(20.0, max(0.5, deadline - time.monotonic())))
        if took is None:
            timeouts += 1
        else:
            latencies.append(took)
    still_open = flood.close()
    server.stop()
    return {"opened": count, "reopened": flood.reopened, "still_open": still_open, "samples": len(latencies),
            "timeouts": timeouts, "baseline": baseline, "latencies": latencies, "budget": budget}


# ----------------------------------------------------------------------------------------------
# The report.


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "ok" if ok else "**FAIL**"


def table(results: dict, args) -> str:
    rows = ["| # | figure | setting | measured | expected | result |", "|---|---|---|---|---|---|"]
    for transport, tally in results.get("hostile", {}).items():
        examples = f" ({'; '.join(tally.examples)})" if tally.examples else ""
        rows.append(
            f"| 1 | hostile inputs | {transport} | {tally.tried} tried, {tally.crashes} crashes, {tally.hangs} hangs, "
            f"{tally.unanswered} closed unanswered, {tally.left_open} left open after EOF{examples} | 0 crashes, 0 hangs, "
            f"0 unanswered | {verdict(tally.crashes == 0 and tally.hangs == 0 and tally.unanswered == 0)} |")
    if "fuzz" in results:
        f = results["fuzz"]
        rows.append(
            f"| 2 | fuzz | {f['seconds']:.0f} s, {f['connections']} connections (socket and TCP) | "
            f"{f['sent']:,} messages, {f['crashes']} crashes, {f['reconnects']} reconnects; RSS {f['rss_before'] / 1024:.1f}"
            f" MiB before, {f['rss_after'] / 1024:.1f} MiB after (peak {f['rss_peak'] / 1024:.1f} MiB) | 0 crashes | "
            f"{verdict(f['crashes'] == 0)} |")
    if "kill" in results:
        k = results["kill"]
        extra = f"; e.g. {k['missing_examples']}" if k["missing_examples"] else ""
        rows.append(
            f"| 3 | `kill -9` rounds | {k['rounds']} of {args.kill_rounds} rounds, {k['clients']} looping clients | {k['acknowledged']:,} "
            f"acknowledged, {k['missing']} missing, {k['duplicate_ids']} duplicate ids ({k['failed_calls']} calls "
            f"failed, not acknowledged; history read by {k['history_read']}){extra} | 0 missing, 0 duplicates | "
            f"{verdict(k['missing'] == 0 and k['duplicate_ids'] == 0 and k['acknowledged'] > 0)} |")
    if "disk" in results:
        d = results["disk"]
        if not d["measured"]:
            rows.append(f"| 4 | full state disk | tmpfs of {args.disk_size} | not measured: {d['why']} | | - |")
        else:
            rows.append(
                f"| 4 | full state disk | tmpfs of {args.disk_size}, full | served {d['served']} [{d['detail_a']}; "
                f"{d['detail_b']}; {d['detail_c']}]; recorded {d['recorded']}; ids unique: "
                f"{'yes' if d['ids_unique'] else 'no'} ({d['duplicates']} duplicates of {d['acked']}) | served, "
                f"not recorded, ids unique | {verdict(d['ids_unique'] and d['served'].startswith('5/5'))} |")
    if "http" in results:
        h = results["http"]
        base = h["baseline"]
        lat = h["latencies"]
        p = (f"p50 {ms(percentile(lat, 0.5))}, p99 {ms(percentile(lat, 0.99))} over {h['samples']} answers"
             if lat else "none answered")
        ok = bool(lat) and h["timeouts"] == 0 and percentile(lat, 0.99) < 0.1
        rows.append(
            f"| 5 | idle HTTP connections | {h['opened']} kept open ({h['reopened']} re-opened after the server "
            f"closed them) | `GET /health`: {p}, "
            f"{h['timeouts']} unanswered within 20 s (baseline without them: p50 {ms(percentile(base, 0.5)) if base else '-'}, "
            f"p99 {ms(percentile(base, 0.99)) if base else '-'}) | p99 < 100 ms | {verdict(ok)} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release",
                        help="where mcli-server and mcli-client are (default: target/release)")
    parser.add_argument("--only", default="hostile,fuzz,kill,disk,http",
                        help="comma-separated sections to run: hostile, fuzz, kill, disk, http")
    parser.add_argument("--transports", default="socket,tcp,tcp+auth,stdio", help="transports of the hostile inputs")
    parser.add_argument("--workers", type=int, default=8, help="hostile inputs sent at once")
    parser.add_argument("--fuzz-seconds", type=float, default=45)
    parser.add_argument("--fuzz-connections", type=int, default=4)
    parser.add_argument("--kill-rounds", type=int, default=5)
    parser.add_argument("--kill-clients", type=int, default=8)
    parser.add_argument("--kill-round-seconds", type=float, default=2.0)
    parser.add_argument("--disk-size", default="2m", help="size of the full tmpfs (default 2m)")
    parser.add_argument("--idle", type=int, default=1500, help="idle HTTP connections to open")
    parser.add_argument("--health-samples", type=int, default=200)
    parser.add_argument("--health-budget", type=float, default=45, help="seconds for the /health samples at most")
    parser.add_argument("--reply-bound", type=float, default=REPLY_BOUND,
                        help="seconds a reply may take before it counts as a hang")
    parser.add_argument("--max-seconds", type=float, default=900, help="the whole run's bound; then it stops")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for a look afterwards")
    args = parser.parse_args()

    for binary in ("mcli-server", "mcli-client"):
        if not (args.bin_dir / binary).is_file():
            print(f"soak: {args.bin_dir / binary} is missing: build it (`cargo build --release`) or pass --bin-dir",
                  file=sys.stderr)
            return 2
    sandbox = Sandbox(args.bin_dir.resolve(), args.keep)
    atexit.register(sandbox.cleanup)

    def on_signal(signum, _frame):
        sandbox.cleanup()
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # The overall bound: whatever is running then, everything started is killed.
    watchdog = threading.Timer(args.max_seconds, lambda: (log(f"over {args.max_seconds:.0f} s: stopping"),
                                                          on_signal(signal.SIGALRM, None)))
    watchdog.daemon = True
    watchdog.start()
    deadline = time.monotonic() + args.max_seconds

    sections = set(args.only.split(","))
    results: dict = {}
    started = time.monotonic()
    if "hostile" in sections:
        items = corpus()
        results["hostile"] = {}
        for transport in args.transports.split(","):
            log(f"hostile inputs on {transport}: {len(items)} items")
            env = sandbox.env(f"h-{transport.replace('+', '')}")
            if transport == "stdio":
                results["hostile"][transport] = hostile_stdio(env, items, args.reply_bound, deadline, args.workers)
            else:
                results["hostile"][transport] = hostile_stream(
                    env, transport, items, args.reply_bound, deadline, args.workers)
    if "fuzz" in sections:
        log(f"fuzz: {args.fuzz_seconds:.0f} s on {args.fuzz_connections} connections")
        results["fuzz"] = fuzz(sandbox.env("fuzz"), args.fuzz_seconds, args.fuzz_connections, args.seed)
    if "kill" in sections:
        log(f"kill -9: {args.kill_rounds} rounds under {args.kill_clients} clients")
        results["kill"] = kill_rounds(sandbox.env("kill"), args.kill_rounds, args.kill_clients, args.kill_round_seconds)
    if "disk" in sections:
        log(f"full disk: tmpfs of {args.disk_size}")
        results["disk"] = full_disk(sandbox.env("disk"), args.disk_size)
    if "http" in sections:
        log(f"idle HTTP: {args.idle} connections")
        results["http"] = idle_http(sandbox.env("http"), args.idle, args.health_samples, args.health_budget)
    watchdog.cancel()
    print(f"mcli soak, {time.strftime('%Y-%m-%d %H:%M')}, binaries {args.bin_dir}, {time.monotonic() - started:.0f} s\n")
    print(table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
