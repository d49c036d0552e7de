#!/usr/bin/env bash
# W1 end to end (BENCHMARKS.md): datagen bids -> Nexmark q1 (euros) -> q2 (auction % 123 == 0)
# -> blackhole; flinkw (Wasm), flinkw (native) and, with --with-flink, Apache Flink on the same
# pinned core. A shorthand for bench/run.sh (which see).
#
# Usage:  bash bench/w1.sh [--with-flink]
# Env knobs: W1_COUNT bids per run (default 20000000), W1_REPS runs (3), W1_CPU core (0).
set -euo pipefail
FLINK=(--no-flink)
for arg in "$@"; do
  case "$arg" in
    --with-flink) FLINK=() ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
BENCH_CPU="${W1_CPU:-0}" exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" --workloads w1 \
  --w1-count "${W1_COUNT:-20000000}" --flink-rows "${W1_COUNT:-20000000}" --reps "${W1_REPS:-3}" \
  --flink-reps "${W1_REPS:-3}" "${FLINK[@]}"
