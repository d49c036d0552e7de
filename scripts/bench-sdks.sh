#!/usr/bin/env bash
# W1 (Nexmark q1 + q2 over datagen bids, into a blackhole) per plugin language:
# records per CPU-second (user + sys of the whole `flinkw run`, median of 3)
# and memory per plugin instance ((peak RSS at parallelism 4 - at 1) / 3).
# The figures go to docs/benchmarks.md. Usage: scripts/bench-sdks.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
[ -x "$CARGO_TARGET_DIR/release/flinkw" ] || cargo test --release --workspace --no-run -q
flinkw="$CARGO_TARGET_DIR/release/flinkw"
out="$(mktemp -d)"
export FLINKW_CACHE_DIR="$out/compiled"
rust="$FLINKW_PLUGIN_TARGET_DIR/wasm32-wasip2/release/nexmark_w1.wasm"
for lang in c js python; do
  "$flinkw" plugin build "$FLINKW_ROOT/plugins/$lang-nexmark-w1" --out "$out/$lang.wasm" >/dev/null
done
# name  plugin  records
runs=("rust $rust 20000000" "c $out/c.wasm 20000000" "js $out/js.wasm 2000000" "python $out/python.wasm 300000")
printf '%-7s %12s %14s %12s %12s %14s\n' lang records rec/CPU-s rss-p1-MiB rss-p4-MiB MiB/instance
for r in "${runs[@]}"; do
  set -- $r
  lang=$1 wasm=$2 n=$3
  "$flinkw" run "$wasm" --set count=1000 2>/dev/null  # compile once, into the cache
  rates=()
  for _ in 1 2 3; do
    /usr/bin/time -o "$out/time" -f "%U %S" "$flinkw" run "$wasm" --set count="$n" >/dev/null 2>&1
    t=$(tail -1 "$out/time")
    rates+=("$(echo "$t" | awk -v n="$n" '{printf "%.0f", n / ($1 + $2)}')")
  done
  rate=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p)
  small=$((n / 10))
  /usr/bin/time -o "$out/time" -f "%M" "$flinkw" run "$wasm" --set count="$small" >/dev/null 2>&1
  rss1=$(tail -1 "$out/time")
  /usr/bin/time -o "$out/time" -f "%M" "$flinkw" run "$wasm" --set count="$small" --set parallelism=4 >/dev/null 2>&1
  rss4=$(tail -1 "$out/time")
  printf '%-7s %12s %14s %12.1f %12.1f %14.1f\n' "$lang" "$n" "$rate" "$(echo "$rss1/1024" | bc -l)" \
    "$(echo "$rss4/1024" | bc -l)" "$(echo "($rss4-$rss1)/3/1024" | bc -l)"
done
rm -rf "$out"
