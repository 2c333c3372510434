#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: builds the binaries that the end-to-end tests
# drive, then runs every unit and end-to-end test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests start the real binaries from target/debug, so build them first.
cargo build --workspace --locked
cargo test --workspace --locked
