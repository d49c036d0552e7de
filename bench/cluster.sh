#!/usr/bin/env bash
# The cluster on this machine: W1 and W2 (BENCHMARKS.md) run embedded and on a coordinator
# with 2 worker processes (1 slot each, parallelism 2), and the time from `flinkw deploy` to a
# running job on a cluster that already has the plugin (Flink's job submission takes seconds).
#
# Usage:  bash bench/cluster.sh
# Env knobs: CB_COUNT bids per run (default 10000000), CB_REPS runs (default 3).
#
# W1 chains source -> q1/q2 -> sink inside each slot (no shuffle), so it shows the cluster's
# fixed costs; W2 keys by auction, so about half of all records cross between the two worker
# processes over QUIC (mutual TLS): the difference to the embedded run is the shuffle's cost.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT="${CB_COUNT:-10000000}"
REPS="${CB_REPS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flinkw/target}"
PLUGINS="$CARGO_TARGET_DIR/wasm-plugins/wasm32-wasip2/release"

echo "[cluster] building flinkw and the plugins (cargo test --no-run)" >&2
(cd "$ROOT" && cargo test --release --workspace --no-run -q 2>/dev/null)
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
FLINKW="$WORK/flinkw"
cp "$CARGO_TARGET_DIR/release/flinkw" "$FLINKW"
cp "$PLUGINS/nexmark_w1.wasm" "$PLUGINS/nexmark_windows.wasm" "$WORK/"
export FLINKW_CACHE_DIR="$WORK/cache" FLINKW_TOKEN="bench-token"

"$FLINKW" cert ca --out "$WORK/ca" 2>/dev/null
for n in coordinator w1 w2; do "$FLINKW" cert node --ca "$WORK/ca" --name $n --out "$WORK/$n" 2>/dev/null; done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
QUIC="127.0.0.1:$(free_port)"; REST="127.0.0.1:$(free_port)"
export FLINKW_COORDINATOR="http://$REST"
"$FLINKW" coordinator --listen "$QUIC" --rest "$REST" --certs "$WORK/coordinator" \
  --data-dir "$WORK/coord" 2>"$WORK/coordinator.log" & PIDS+=($!)
for n in w1 w2; do
  "$FLINKW" worker --join "$QUIC" --name $n --slots 1 --certs "$WORK/$n" \
    --cache-dir "$WORK/$n-cache" 2>"$WORK/$n.log" & PIDS+=($!)
done
for _ in $(seq 100); do
  [ "$("$FLINKW" workers --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null)" = 2 ] && break
  sleep 0.1
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { python3 -c 'import time; print(time.time())'; }

run_embedded() { # plugin, sets...
  local plugin=$1; shift
  local t0 t1; t0=$(secs); "$FLINKW" run "$WORK/$plugin" "$@" 2>/dev/null; t1=$(secs)
  python3 -c "print(f'{$t1-$t0:.3f}')"
}
run_cluster() {
  local plugin=$1; shift
  local args=(); for s in "$@"; do args+=(--set "$s"); done
  local t0 t1; t0=$(secs); "$FLINKW" deploy "$WORK/$plugin" "${args[@]}" --wait >/dev/null 2>&1; t1=$(secs)
  python3 -c "print(f'{$t1-$t0:.3f}')"
}

echo "== $(date -u +%FT%TZ), $(nproc) cores, $COUNT bids per run, median of $REPS"
printf '%-6s %-10s %10s %14s\n' workload where seconds 'records/s'
for w in w1 w2; do
  if [ $w = w1 ]; then plugin=nexmark_w1.wasm; sets=(count=$COUNT parallelism=2)
  else plugin=nexmark_windows.wasm; sets=(count=$COUNT parallelism=2 workload=w2); fi
  emb_sets=(); for s in "${sets[@]}"; do emb_sets+=(--set "$s"); done
  run_embedded $plugin --set count=1000 >/dev/null; run_cluster $plugin count=1000 parallelism=2 >/dev/null
  e=$(for _ in $(seq "$REPS"); do run_embedded $plugin "${emb_sets[@]}"; done | median)
  c=$(for _ in $(seq "$REPS"); do run_cluster $plugin "${sets[@]}"; done | median)
  printf '%-6s %-10s %10s %14.0f\n' $w embedded "$e" "$(python3 -c "print($COUNT/$e)")"
  printf '%-6s %-10s %10s %14.0f\n' $w cluster "$c" "$(python3 -c "print($COUNT/$c)")"
done

echo "== deploy -> running (plugin already on the cluster and compiled)"
for _ in $(seq 5); do
  job=$("$FLINKW" deploy "$WORK/nexmark_w1.wasm" --set count=1000 --set parallelism=2)
  for _ in $(seq 200); do
    st=$("$FLINKW" status "$job" --json)
    echo "$st" | grep -q '"finished"' && break
    sleep 0.05
  done
  echo "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("start_ms", s["start_ms"])'
done | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print "deploy -> running: median " a[int((NR+1)/2)] " ms, min " a[1] " ms, max " a[NR] " ms (5 deploys)"}'
