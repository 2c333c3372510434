#!/usr/bin/env bash
# Builds the release binaries and runs the benchmarks; paste the table into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
# wrk (Debian's package) measures the HTTP bridge; install it when missing and we may.
if ! command -v wrk >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --locked --workspace
exec target/release/mcli-bench target/release "$@"
