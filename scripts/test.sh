#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: builds the binaries that the end-to-end tests
# drive, runs every unit and end-to-end test of the workspace, then the Python package's tests
# (python/tests, pytest against the same binaries) in a virtual environment of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

# The worker tests, a standard-library client of the HTTP bridge and the Python package need it.
if ! command -v python3 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3 >/dev/null
  else
    echo "scripts/test.sh: python3 is needed (tests/python/original_client.py); install it" >&2
    exit 1
  fi
fi

# The terminal tests (tests/tests/terminal.rs) run commands on a server-side terminal through
# util-linux's `setsid --ctty` (Essential on Debian, so normally there).
if ! command -v setsid >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
  else
    echo "scripts/test.sh: setsid (util-linux) is needed by tests/tests/terminal.rs; install it" >&2
    exit 1
  fi
fi

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
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv --clear "$venv"
    else
      echo "scripts/test.sh: cannot create a virtual environment with \`python3 -m venv $venv\`; install python3-venv" >&2
      exit 1
    fi
  fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./python
"$venv/bin/python" -m pip install -q --disable-pip-version-check pytest click
MCLI_BIN_DIR="$PWD/target/debug" "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
