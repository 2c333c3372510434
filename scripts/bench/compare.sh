#!/usr/bin/env bash
# Builds the release binaries of REF (a commit, default: HEAD) in a temporary worktree and of the
# work tree, then measures both side by side: `scripts/bench/compare.sh main~5`.
set -euo pipefail
cd "$(dirname "$0")/../.."
ref="${1:-HEAD}"
old="$(mktemp -d /tmp/mcli-base.XXXXXX)"
trap 'git worktree remove --force "$old" >/dev/null 2>&1 || rm -rf "$old"' EXIT
git worktree add --detach "$old" "$ref" >/dev/null
(cd "$old" && cargo build --release --locked --bin mcli-server --bin mcli-client)
cargo build --release --locked --workspace
target/release/mcli-bench --compare "$old/target/release" target/release
