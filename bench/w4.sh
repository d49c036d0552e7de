#!/bin/bash
# W4: W2 at a fixed rate with 1 s checkpoints; source-to-sink latency from
# latency markers (every 100 ms), read from `flinkw run --ui`'s /metrics
# every 8 s (each reading: the sink's newest 128 markers).
#
#   bash bench/w4.sh RATE SECONDS [PORT]
#
# FLINKW (default: the release binary in CARGO_TARGET_DIR) and PLUGIN (the
# nexmark-windows component) may be set.
set -euo pipefail
RATE=${1:?rate in bids/s}; SECS=${2:?seconds}; PORT=${3:-18931}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/flinkw/target}
FLINKW=${FLINKW:-$TARGET/release/flinkw}
PLUGIN=${PLUGIN:-${FLINKW_PLUGIN_TARGET_DIR:-$TARGET/wasm-plugins}/wasm32-wasip2/release/nexmark_windows.wasm}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$FLINKW" run "$PLUGIN" --set workload=w2 --set count=$((RATE * SECS)) --set rate="$RATE" \
  --set parallelism=1 --set checkpoint.interval-ms=1000 --set metrics.latency.interval-ms=100 \
  --checkpoint-dir "$WORK/ck" --ui "127.0.0.1:$PORT" 2> "$WORK/err" &
PID=$!
for _ in $(seq 50); do grep -q 'token=' "$WORK/err" 2>/dev/null && break; sleep 0.1; done
TOKEN=$(grep -o 'token=[0-9a-f]*' "$WORK/err" | head -1 | cut -d= -f2)
for i in $(seq 1 $((SECS / 8 - 1))); do
  sleep 8
  curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics" > "$WORK/m"
  q() { grep "^flinkw_latency_seconds{.*quantile=\"$1\"" "$WORK/m" | awk '{printf "%.1f", $NF * 1000}'; }
  rate=$(grep '^flinkw_subtask_records_in_per_second{.*,task="0"' "$WORK/m" | awk '{print $NF}')
  echo "t=$((i * 8))s p50=$(q 0.5) ms p95=$(q 0.95) ms p99=$(q 0.99) ms source=${rate} bids/s"
done
wait $PID
tail -1 "$WORK/err" >&2
