#!/usr/bin/env bash
# README command 2: installs what is missing, then runs every test (unit,
# end-to-end with real plugins built from source, doc tests) and the lints.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$FLINKW_ROOT"

start=$(date +%s)
cargo fmt --all --check
# One profile (release) for everything, so CI builds each crate once.
cargo test --release --workspace
cargo clippy --release --workspace --all-targets -- -D warnings
echo "scripts/test.sh: all checks passed in $(( $(date +%s) - start )) s" >&2
