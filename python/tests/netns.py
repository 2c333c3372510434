"""Runs a Python file in a private network namespace (the test starts this under `unshare -n`),
with loopback up and an mcli server whose HTTP bridge listens on 127.0.0.1:PORT, so that an
example naming a fixed port (the original's 8000) can never meet another program's.

Usage: netns.py PORT FILE
"""

import fcntl
import runpy
import socket
import struct
import subprocess
import sys

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    """`ip link set lo up`, without needing iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def main() -> None:
    port, path = sys.argv[1], sys.argv[2]
    loopback_up()
    subprocess.run(["mcli-server", "start", "--http", f"127.0.0.1:{port}"], check=True, stdin=subprocess.DEVNULL, stdout=sys.stderr)
    try:
        runpy.run_path(path, run_name="__main__")
    finally:
        subprocess.run(["mcli-server", "stop"], check=False, stdin=subprocess.DEVNULL, stdout=sys.stderr)


if __name__ == "__main__":
    main()
