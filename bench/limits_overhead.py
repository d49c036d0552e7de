#!/usr/bin/env python3
"""Overhead of the per-instance limits on W1 (issue 10, Performance).

Runs W1 (`flinkw run nexmark_w1.wasm`: datagen bids -> q1 -> q2 ->
blackhole, memory backend) pinned to one core, alternating two engines:

- **limits**: as always: epoch interruption (every loop head and function
  entry checks the epoch for the call deadline) and the memory cap (the
  store's limiter, consulted on each `memory.grow`);
- **no limits**: `FLINKW_BENCH_NO_LIMITS=1`, an internal switch for this
  benchmark only (host/src/engine.rs): code compiled without epoch checks,
  memory capped only by the pool's 4 GiB. Its compiled plugin is cached
  apart from the normal one.

Each mode is warmed up once (fills its compile cache), then the runs
alternate `--reps` times. Prints rec/CPU-s per run and the ratio of the
medians (limits / no limits), with the load average.

Usage: bench/limits_overhead.py [--count 20000000] [--reps 5] [--cpu 0]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import measure  # noqa: E402


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/flinkw/target"))
    plugins = os.environ.get("FLINKW_PLUGIN_TARGET_DIR", os.path.join(target, "wasm-plugins"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cpu", default="0")
    ap.add_argument("--flinkw", default=os.path.join(target, "release", "flinkw"))
    ap.add_argument("--plugin", default=os.path.join(plugins, "wasm32-wasip2/release/nexmark_w1.wasm"))
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="flinkw-limits-")
    modes = {
        "limits": dict(os.environ, FLINKW_CACHE_DIR=cache),
        "no limits": dict(os.environ, FLINKW_CACHE_DIR=cache, FLINKW_BENCH_NO_LIMITS="1"),
    }
    cmd = ["taskset", "-c", args.cpu, args.flinkw, "run", args.plugin, "--set"]
    for env in modes.values():
        measure(cmd + ["count=100000"], env=env)
    runs = {m: [] for m in modes}
    loads = []
    for _ in range(args.reps):
        for mode, env in modes.items():
            r = measure(cmd + [f"count={args.count}"], env=env)
            runs[mode].append(args.count / r["cpu"])
            loads.append(os.getloadavg()[0])
            print(f"  {mode}: {args.count / r['cpu'] / 1e6:.2f} M rec/CPU-s "
                  f"(wall {r['wall']:.2f} s, load {loads[-1]:.1f})", file=sys.stderr, flush=True)
    med = {m: statistics.median(v) for m, v in runs.items()}
    print(json.dumps({
        "count": args.count,
        "rec_per_cpu_s_millions": {m: [round(x / 1e6, 2) for x in v] for m, v in runs.items()},
        "median_millions": {m: round(v / 1e6, 2) for m, v in med.items()},
        "limits_vs_no_limits": round(med["limits"] / med["no limits"], 3),
        "load_min_max": [min(loads), max(loads)],
    }, indent=1))


if __name__ == "__main__":
    main()
