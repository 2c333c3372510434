#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: builds the binaries that the end-to-end tests
# drive, then runs every unit and end-to-end test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# One end-to-end test runs a standard-library Python client against the HTTP bridge.
if ! command -v python3 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3 >/dev/null
  else
    echo "scripts/test.sh: python3 is needed (tests/python/original_client.py); install it" >&2
    exit 1
  fi
fi

# The end-to-end tests start the real binaries from target/debug, so build them first.
cargo build --workspace --locked
cargo test --workspace --locked
