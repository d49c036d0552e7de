#!/usr/bin/env bash
# The benchmark runner (BENCHMARKS.md): flinkw with the Wasm plugins, the same operators in
# native Rust (host/examples/native_bench.rs) and Apache Flink (peers/flink), one after the
# other on the same pinned core, with min/median/max and the ratios, and a JSON file.
#
# Usage:  bash bench/run.sh [--workloads w1,w2,w3,nexmark,w6] [--no-flink] [--rocksdb]
#                           [--reps N] [--json FILE] [more bench/bench.py options]
#   w1       stateless q1 + q2 over datagen bids (nexmark-w1 plugin)
#   w2, w3   tumbling 1 s COUNT+MAX / sliding 10 s by 2 s COUNT per auction (nexmark-windows)
#   nexmark  the Nexmark queries q0-q8 of plugins/nexmark on the nexmark source (no Flink side)
#   w6       spawn -> first record (cold and warm compile cache), memory per plugin instance
#   w4       p50/p95/p99 latency of W2 at 50 % of its maximum rate, 1 s checkpoints (not pinned;
#            --w4-probe bids for the maximum, --w4-seconds at 50 %)
#   w5       bench/w5.py: ~1 GB RocksDB keyed state, checkpoint pause, bytes, kill -9 recovery
#            (--w5-keys; 4 M keys of 256 B by default)
# Env knobs: BENCH_CPU core list for taskset (default 0), FLINK_DIR (default
# /work/shared/peers/flink), BENCH_NO_BUILD=1 (use what the target dir holds). Counts: --w1-count (20M), --w23-count (2M), --nexmark-count
# (2M), --flink-rows (20M), --flink-reps (2); see `python3 bench/bench.py --help`.
#
# It builds what it runs with `cargo test --release --workspace --no-run` (flinkw, the
# plugins through tests/build.rs, and the native example) and runs private copies, so other
# builds in the shared target dir cannot swap a binary mid-run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=/dev/null
source "$ROOT/scripts/setup.sh" >/dev/null
CPU="${BENCH_CPU:-0}"
FLINK_DIR="${FLINK_DIR:-/work/shared/peers/flink}"

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  echo "[bench] building (cargo test --release --workspace --no-run)" >&2
  (cd "$ROOT" && cargo test --release --workspace --no-run -q 2>&1 | grep -v '^\s*Executable' >&2 || true)
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK" /tmp/fw-rocks-* /tmp/fw-w6-*' EXIT
export FLINKW_CACHE_DIR="$WORK/cache"
PLUGINS="$FLINKW_PLUGIN_TARGET_DIR/wasm32-wasip2/release"
cp "$CARGO_TARGET_DIR/release/flinkw" "$CARGO_TARGET_DIR/release/examples/native_bench" \
  "$PLUGINS/nexmark_w1.wasm" "$PLUGINS/nexmark_windows.wasm" "$PLUGINS/nexmark.wasm" "$WORK/"

if REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"; then
  git -C "$ROOT" diff --quiet HEAD -- . 2>/dev/null || REV="$REV+uncommitted changes"
else
  REV="not a git checkout"
fi

python3 "$ROOT/bench/bench.py" --flinkw "$WORK/flinkw" --native "$WORK/native_bench" \
  --plugin-w1 "$WORK/nexmark_w1.wasm" --plugin-windows "$WORK/nexmark_windows.wasm" \
  --plugin-nexmark "$WORK/nexmark.wasm" --cpu "$CPU" --flink-dir "$FLINK_DIR" \
  --revision "$REV" "$@"
