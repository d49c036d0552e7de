#!/usr/bin/env bash
# Kafka -> Kafka stateless throughput: the kafka-windowed plugin's `copy`
# pipeline (each value as it is) at parallelism 2 over a 4-partition topic on
# a local noida-db broker, with at-least-once and exactly-once delivery.
#
# Usage:  bash bench/kafka.sh
# Env knobs: KB_COUNT records (default 1000000).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=/dev/null
source scripts/setup.sh
cargo test --release -p flinkw-cluster --test all -- --ignored kafka_copy_throughput \
  --nocapture 2>&1 | grep '^kafka-bench'
