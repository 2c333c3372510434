#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: builds the binaries that the end-to-end tests
# drive, runs every unit and end-to-end test of the workspace, then the Python package's tests
# (python/tests, pytest against the same binaries) in a virtual environment of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive, installed when missing and allowed (root with apt-get);
# `apt-get update` runs once, and only if something is missing. Without them the rest of the
# suite still runs and the tests that need one fail naming the package.
updated=
need() { # need COMMAND PACKAGE WHO-NEEDS-IT
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    [ -n "$updated" ] || { apt-get update -qq; updated=1; }
    apt-get install -y -qq "$2" >/dev/null
  else
    echo "scripts/test.sh: $1 is needed by $3; install $2" >&2
    return 1
  fi
}

# The worker tests, a standard-library client of the HTTP bridge and the Python package.
need python3 python3 "the worker and Python tests (tests/python/original_client.py)" || exit 1
# The service-manager tests (tests/tests/restart.rs): no running systemd is needed.
need systemd-socket-activate systemd "tests/tests/restart.rs" || true
# tests/tests/editors.rs drives the editor packages of contrib/ in Emacs, Neovim and node.
need emacs emacs-nox "tests/tests/editors.rs" || true
need nvim neovim "tests/tests/editors.rs" || true
need node nodejs "tests/tests/editors.rs (contrib/vscode)" || true

# Every server a test starts watches its config file and commands dirs with inotify; the
# kernel's default of 128 instances per user is shared with whatever else runs as this user, and
# a server past it serves on without watching (the tests of watching then fail). Raise it when
# allowed.
if [ "$(id -u)" = 0 ] && [ "$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 1024)" -lt 1024 ]; then
  sysctl -q -w fs.inotify.max_user_instances=1024 || true
fi

# The ecosystem tests check the completion scripts in real shells and render the man pages.
need zsh zsh "tests/tests/ecosystem.rs" || true
need fish fish "tests/tests/ecosystem.rs" || true
need elvish elvish "tests/tests/ecosystem.rs" || true
need groff groff "tests/tests/ecosystem.rs" || true
need man man-db "tests/tests/ecosystem.rs" || true
# `script` (util-linux's bsdutils) gives a command a terminal: the jobs tests' progress of --wait.
need script bsdutils "tests/tests/jobs.rs" || true
# The terminal tests (tests/tests/terminal.rs) run commands on a server-side terminal through
# util-linux's `setsid --ctty` (Essential on Debian, so normally there).
need setsid util-linux "tests/tests/terminal.rs" || true

# The end-to-end tests start the real binaries from target/debug, so build them first.
cargo build --workspace --locked
cargo test --workspace --locked

# The Python package: installed with its test tools into target/python-venv (made once, reused),
# then tested against the binaries just built.
venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    # Debian and Ubuntu ship venv (and its ensurepip) apart from python3.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      [ -n "$updated" ] || apt-get update -qq
      apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv --clear "$venv"
    else
      echo "scripts/test.sh: cannot create a virtual environment with \`python3 -m venv $venv\`; install python3-venv" >&2
      exit 1
    fi
  fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./python
"$venv/bin/python" -m pip install -q --disable-pip-version-check pytest click
# The metrics tests parse /metrics with the reference Prometheus parser.
"$venv/bin/python" -m pip install -q --disable-pip-version-check prometheus_client
MCLI_BIN_DIR="$PWD/target/debug" "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
