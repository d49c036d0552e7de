#!/usr/bin/env bash
# W2 and W3 end to end (BENCHMARKS.md), flinkw beside Apache Flink, on one pinned core:
#   W2: datagen bids (watermark = max ts - 200 ms) -> key by auction -> 1 s tumbling windows,
#       COUNT(*) and MAX(price) -> blackhole;
#   W3: the same bids -> key by auction -> 10 s windows sliding by 2 s, COUNT(*) -> blackhole.
# flinkw runs the nexmark-windows plugin on the memory and on the RocksDB state backend.
#
# Usage:  bash bench/w2w3.sh [--with-flink]
#   --with-flink   afterwards, run the Flink side of w2 and w3 (peers/flink/bench.sh) on the
#                  same core and compare with it; otherwise compare with the figures recorded
#                  in peers/flink/README.md (and say so).
# Env knobs:
#   W23_COUNT       bids per measured run            (default 20000000)
#   W23_REPS        measured runs per workload and backend (default 3)
#   W23_CPU         core list for taskset            (default 0)
#   W23_WORKLOADS   workloads                        (default "w2 w3")
#   W23_BACKENDS    flinkw state backends            (default "memory rocksdb")
#   W23_CHECK       bids of the correctness check    (default 1000000; 0 = skip)
#   FLINK_ROWS      rows per Flink run               (default W23_COUNT)
#   FLINK_REPS      Flink measured reps              (default 2; a 20M-row run takes ~25 s)
#   FLINK_DIR       the Flink side                   (default /work/shared/peers/flink)
#
# Each flinkw run is one process: wall time from spawn to exit, CPU = user + sys of the
# process (all threads) from wait4(). RocksDB runs get a fresh --state-dir each, removed
# after the run. One untimed run of 1000 bids first fills the compiled-plugin cache.
#
# The correctness check runs each workload on each backend with `--set output=stdout` and
# W23_CHECK bids, and checks that the window counts add up to the bid count (W2: every bid
# is in one window) or to 5x it (W3: every bid is in 10 s / 2 s = 5 windows).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT="${W23_COUNT:-20000000}"
REPS="${W23_REPS:-3}"
CPU="${W23_CPU:-0}"
WORKLOADS="${W23_WORKLOADS:-w2 w3}"
BACKENDS="${W23_BACKENDS:-memory rocksdb}"
CHECK="${W23_CHECK:-1000000}"
FLINK_ROWS="${FLINK_ROWS:-$COUNT}"
FLINK_REPS="${FLINK_REPS:-2}"
FLINK_DIR="${FLINK_DIR:-/work/shared/peers/flink}"
WITH_FLINK=0
for arg in "$@"; do
  case "$arg" in
    --with-flink) WITH_FLINK=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flinkw/target}"
PLUGIN_TARGET="$CARGO_TARGET_DIR/wasm-plugins"

echo "[w2w3] building flinkw (release) and the nexmark-windows plugin" >&2
(cd "$ROOT" && cargo build --release -q -p flinkw-cluster)
(cd "$ROOT/plugins/nexmark-windows" &&
  env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_TARGET \
    cargo build --release -q --target wasm32-wasip2 --target-dir "$PLUGIN_TARGET")
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export FLINKW_CACHE_DIR="$WORK/cache"
mkdir -p "$FLINKW_CACHE_DIR"
# Private copies: other builds in the same target dir may replace the originals meanwhile.
FLINKW="$WORK/flinkw"
WASM="$WORK/nexmark_windows.wasm"
cp "$CARGO_TARGET_DIR/release/flinkw" "$FLINKW"
cp "$PLUGIN_TARGET/wasm32-wasip2/release/nexmark_windows.wasm" "$WASM"

echo "== machine and versions"
echo "date:     $(date -u +%FT%TZ)"
echo "nproc:    $(nproc)"
echo "memory:   $(awk '/MemTotal/ {printf "%.1f GiB (%d kB)", $2/1048576, $2}' /proc/meminfo)"
echo "cpu:      $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "os:       $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
echo "rustc:    $(rustc --version)"
if REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"; then
  git -C "$ROOT" diff --quiet HEAD -- . 2>/dev/null || REV="$REV+uncommitted changes"
else
  REV="$(cat "$ROOT/REVISION" 2>/dev/null || echo "not a git checkout")"
fi
echo "flinkw:   $("$FLINKW" --version), source $REV"
echo "wasmtime: $(awk '/^name = "wasmtime"$/ {getline; print $3}' "$ROOT/Cargo.lock" | tr -d '"')"
echo "pinning:  taskset -c $CPU"
echo "plugin:   $WASM ($(stat -c %s "$WASM") bytes)"
echo "state:    RocksDB dirs under $WORK (filesystem: $(df -T "$WORK" | awk 'NR==2 {print $2}'))"
echo

export W23_JSON="$WORK/flinkw.json" W23_WORK="$WORK"
python3 - "$FLINKW" "$WASM" "$COUNT" "$REPS" "$CPU" "$CHECK" "$WORKLOADS" "$BACKENDS" <<'EOF'
import json, os, shutil, statistics, subprocess, sys, tempfile, time

flinkw, wasm, count, reps, cpu, check = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
workloads, backends = sys.argv[7].split(), sys.argv[8].split()
work = os.environ["W23_WORK"]
WINDOWS_PER_BID = {"w2": 1, "w3": 5}

def run(wl, backend, n, stdout=False):
    cmd = ["taskset", "-c", cpu, flinkw, "run", wasm, "--set", f"workload={wl}",
           "--set", f"count={n}", "--json-summary", "--state-backend", backend]
    state = None
    if backend == "rocksdb":
        state = tempfile.mkdtemp(dir=work, prefix="rocksdb-")
        cmd += ["--state-dir", state]
    if stdout:
        cmd += ["--set", "output=stdout"]
    out = subprocess.PIPE if stdout else subprocess.DEVNULL
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
    text, err = p.communicate()
    wall = time.perf_counter() - t0
    # communicate() reaped the child; its rusage is in RUSAGE_CHILDREN, so take the delta.
    if state is not None:
        shutil.rmtree(state, ignore_errors=True)
    if p.returncode != 0:
        sys.exit(f"flinkw failed ({p.returncode}): {' '.join(cmd)}\n"
                 f"{err.decode(errors='replace')}")
    summary = None
    for line in err.decode(errors="replace").splitlines():
        if line.startswith("{"):
            summary = json.loads(line)
    return wall, summary, text

def timed(wl, backend, n):
    before = os.times()
    wall, summary, _ = run(wl, backend, n)
    after = os.times()
    cpu_s = (after.children_user - before.children_user) + \
            (after.children_system - before.children_system)
    return wall, cpu_s, summary

# Correctness: the window counts add up to the bids (W2) or 5x the bids (W3).
if check > 0:
    for wl in workloads:
        for backend in backends:
            _, summary, text = run(wl, backend, check, stdout=True)
            lines = text.decode().split()
            total = sum(int(line.split(",")[3]) for line in lines)
            want = check * WINDOWS_PER_BID[wl]
            verdict = "ok" if total == want else "WRONG"
            print(f"check {wl} {backend}: {len(lines):,} windows, sum of counts {total:,} "
                  f"(expected {want:,} = {WINDOWS_PER_BID[wl]} x {check:,} bids): {verdict}",
                  flush=True)
            if total != want:
                sys.exit("the window counts do not add up")
    print()

run(workloads[0], "memory", 1000)  # untimed: compiles the plugin into the cache
results = {}
for wl in workloads:
    for backend in backends:
        runs = []
        for i in range(reps):
            wall, cpu_s, summary = timed(wl, backend, count)
            nodes = summary["nodes"] if summary else []
            src = next((x for x in nodes if x["name"] == "datagen"), None)
            if src is not None and src["records_out"] != count:
                sys.exit(f"the source made {src['records_out']} records, expected {count}")
            runs.append((wall, cpu_s))
            out = [x["records_out"] for x in nodes]
            print(f"{wl} {backend} run {i + 1}: wall {wall:.3f} s, CPU {cpu_s:.3f} s, "
                  f"records out per node {out}", flush=True)
        results[f"{wl}/{backend}"] = {
            "rec_per_s": [count / w for w, _ in runs],
            "rec_per_cpu_s": [count / c for _, c in runs],
            "wall": [w for w, _ in runs], "cpu": [c for _, c in runs],
        }

def mmm(xs):
    return min(xs), statistics.median(xs), max(xs)

print()
print(f"W2/W3, {count:,} bids, {reps} runs each, flinkw pinned to core {cpu}")
print("| workload | backend | wall s min/med/max | CPU s min/med/max | rec/s (wall) min/med/max "
      "| rec/CPU-s min/med/max |")
print("|---|---|---:|---:|---:|---:|")
for key, r in results.items():
    wl, backend = key.split("/")
    print(f"| {wl} | {backend} | " + "%.2f / %.2f / %.2f" % mmm(r["wall"]) + " | "
          + "%.2f / %.2f / %.2f" % mmm(r["cpu"]) + " | "
          + "%.3fM / %.3fM / %.3fM" % tuple(x / 1e6 for x in mmm(r["rec_per_s"])) + " | "
          + "%.3fM / %.3fM / %.3fM" % tuple(x / 1e6 for x in mmm(r["rec_per_cpu_s"])) + " |")
with open(os.environ["W23_JSON"], "w") as f:
    json.dump(results, f)
EOF

# The Flink side: measured now, or the figures recorded in its README.
FJSON="$WORK/flink.json"
if [ "$WITH_FLINK" = 1 ]; then
  FLINK_WL="$(echo "$WORKLOADS" | tr ' ' ',')"
  echo
  echo "== Flink side: FLINK_BENCH_WORKLOADS=$FLINK_WL FLINK_BENCH_REPS=$FLINK_REPS" \
       "FLINK_BENCH_CPU=$CPU FLINK_BENCH_ROWS=$FLINK_ROWS bash $FLINK_DIR/bench.sh <json>" \
       "--no-cold-probe --sanity-rows 0"
  FLINK_BENCH_WORKLOADS="$FLINK_WL" FLINK_BENCH_REPS="$FLINK_REPS" FLINK_BENCH_CPU="$CPU" \
    FLINK_BENCH_ROWS="$FLINK_ROWS" \
    bash "$FLINK_DIR/bench.sh" "$FJSON" --no-cold-probe --sanity-rows 0
else
  : > "$FJSON"
fi

echo
python3 - "$W23_JSON" "$FJSON" <<'EOF'
import json, statistics, sys

TARGET = {"memory": 3.0, "rocksdb": 1.5}  # flinkw / Flink in records per CPU-second
ours = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
if text.strip():
    flink = {}
    for wl, w in json.loads(text)["workloads"].items():
        flink[wl] = ([s["rec_per_s_wall"] for s in w["samples"]],
                     [s["rec_per_cpu_s"] for s in w["samples"]])
    source = "measured in this run"
else:
    # peers/flink/README.md, 2026-11-23 08:05, pinned to core 0, 20M rows, best / median of 2:
    # w2 0.80M / 0.79M rec/s (wall), 0.81M / 0.81M rec/CPU-s;
    # w3 0.84M / 0.80M rec/s (wall), 0.86M / 0.82M rec/CPU-s.
    flink = {"w2": ([0.80e6, 0.79e6], [0.81e6, 0.81e6]),
             "w3": ([0.84e6, 0.80e6], [0.86e6, 0.82e6])}
    source = "NOT measured now: recorded in peers/flink/README.md on 2026-11-23"
print(f"== W2/W3 flinkw vs Flink, medians (Flink figure {source})")
print("| workload | backend | flinkw rec/s | Flink rec/s | ratio | flinkw rec/CPU-s "
      "| Flink rec/CPU-s | ratio | target (per CPU-s) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|")
for key, r in ours.items():
    wl, backend = key.split("/")
    if wl not in flink:
        continue
    a_s, a_c = statistics.median(r["rec_per_s"]), statistics.median(r["rec_per_cpu_s"])
    b_s, b_c = statistics.median(flink[wl][0]), statistics.median(flink[wl][1])
    t = TARGET[backend]
    ratio = a_c / b_c
    verdict = f">= {t}x: " + ("met" if ratio >= t else f"missed by {t / ratio:.2f}x")
    print(f"| {wl} | {backend} | {a_s / 1e6:.3f}M | {b_s / 1e6:.3f}M | {a_s / b_s:.2f}x "
          f"| {a_c / 1e6:.3f}M | {b_c / 1e6:.3f}M | {ratio:.2f}x | {verdict} |")
EOF
