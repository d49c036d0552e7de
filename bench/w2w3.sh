#!/usr/bin/env bash
# W2 and W3 end to end (BENCHMARKS.md): datagen bids (watermark = max ts - 200 ms) keyed by
# auction into 1 s tumbling windows (COUNT + MAX) or 10 s windows sliding by 2 s (COUNT), into a
# blackhole; flinkw (Wasm, memory and RocksDB backends), flinkw (native) and, with
# --with-flink, Apache Flink on the same pinned core, after a check that the window counts add
# up. A shorthand for bench/run.sh (which see).
#
# Usage:  bash bench/w2w3.sh [--with-flink]
# Env knobs: W23_COUNT bids per flinkw run (default 2000000), W23_REPS runs (3), W23_CPU core
# (0), W23_WORKLOADS (w2,w3), W23_ROCKSDB (1: also the RocksDB backend), FLINK_ROWS (20000000),
# FLINK_REPS (2).
set -euo pipefail
FLINK=(--no-flink)
for arg in "$@"; do
  case "$arg" in
    --with-flink) FLINK=() ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
ROCKS=()
[ "${W23_ROCKSDB:-1}" = 1 ] && ROCKS=(--rocksdb)
BENCH_CPU="${W23_CPU:-0}" exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" \
  --workloads "${W23_WORKLOADS:-w2,w3}" --w23-count "${W23_COUNT:-2000000}" \
  --reps "${W23_REPS:-3}" --flink-rows "${FLINK_ROWS:-20000000}" --flink-reps "${FLINK_REPS:-2}" \
  "${ROCKS[@]}" "${FLINK[@]}"
