#!/usr/bin/env bash
# Builds the release binaries and runs the benchmarks; paste the table into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked --workspace
exec target/release/mcli-bench target/release "$@"
