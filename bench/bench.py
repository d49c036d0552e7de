#!/usr/bin/env python3
"""The benchmark runner behind bench/run.sh (see its header for usage).

For each workload it runs flinkw with the Wasm plugin, the native-Rust baseline
(host/examples/native_bench.rs) and Apache Flink (peers/flink/bench.sh) on the same
pinned core, one after the other, and prints min/median/max and the ratios.

Every flinkw or native run is one process: wall time from spawn to exit, CPU = user + sys
of the process (all threads) from wait4(). Flink's figures are the harness's own: CPU of
the JVM from /proc over execute_sql() to job end, in a warm JVM (see its README).
"""
import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TARGETS = {  # BENCHMARKS.md: flinkw (Wasm) / Flink per CPU-second, memory backend
    "w1": 5.0,
    "w2": 3.0,
    "w3": 3.0,
}
WASM_VS_NATIVE_TARGET = 0.67  # W1


def machine(args):
    info = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "memory_kb": int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "kernel": platform.release(),
        "load_before": os.getloadavg(),
        "pinning": f"taskset -c {args.cpu}",
        "source": args.revision,
        "flinkw": subprocess.run([args.flinkw, "--version"], capture_output=True, text=True).stdout.strip(),
    }
    for k, v in info.items():
        print(f"{k:12} {v}")
    return info


def measure(cmd, env=None, stdout=subprocess.DEVNULL):
    """Runs cmd to its end: wall s, cpu s (user+sys of the process tree it waited for), RSS."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env)
    out = p.stdout.read() if stdout == subprocess.PIPE else b""
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"failed ({code}): {' '.join(cmd)}\n{err.decode(errors='replace')[-3000:]}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024,
            "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mmm(xs):
    return (min(xs), statistics.median(xs), max(xs)) if xs else (float("nan"),) * 3


def fmt_m(x):
    return f"{x / 1e6:.3f} M" if x == x else "–"


class Runner:
    def __init__(self, args):
        self.a = args
        self.pin = ["taskset", "-c", args.cpu]
        self.results = {}

    def flinkw(self, plugin, sets, extra=()):
        cmd = self.pin + [self.a.flinkw, "run", plugin] + list(extra)
        for s in sets:
            cmd += ["--set", s]
        return cmd

    def reps(self, name, cmd_for, records, reps=None, env=None):
        """Runs cmd_for(i) `reps` times; rec/s and rec/CPU-s of each run."""
        runs = []
        for i in range(reps or self.a.reps):
            r = measure(cmd_for(i), env=env)
            r.update(rec_per_s=records / r["wall"], rec_per_cpu_s=records / r["cpu"])
            print(f"  {name} run {i + 1}: wall {r['wall']:.3f} s, CPU {r['cpu']:.3f} s, "
                  f"{fmt_m(r['rec_per_cpu_s'])} rec/CPU-s, RSS {r['maxrss_mb']:.0f} MB, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            runs.append({k: v for k, v in r.items() if k not in ("stdout", "stderr")})
        return runs

    def flink(self, workloads, rows):
        """The Flink side, on the same core: peers/flink/bench.sh."""
        if self.a.no_flink:
            return {}
        out = tempfile.mktemp(suffix=".json")
        env = dict(os.environ, FLINK_BENCH_WORKLOADS=",".join(workloads), FLINK_BENCH_REPS=str(self.a.flink_reps),
                   FLINK_BENCH_CPU=self.a.cpu, FLINK_BENCH_ROWS=str(rows))
        cmd = ["bash", os.path.join(self.a.flink_dir, "bench.sh"), out, "--no-cold-probe", "--sanity-rows", "0"]
        print(f"  Flink: FLINK_BENCH_WORKLOADS={env['FLINK_BENCH_WORKLOADS']} FLINK_BENCH_REPS={self.a.flink_reps} "
              f"FLINK_BENCH_CPU={self.a.cpu} FLINK_BENCH_ROWS={rows} bash {cmd[1]} <json> --no-cold-probe "
              f"--sanity-rows 0", flush=True)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        data = json.load(open(out))["workloads"]
        os.unlink(out)
        res = {}
        for w in workloads:
            samples = data[w]["samples"]
            res[w] = [{"wall": s.get("wall_s"), "cpu": s.get("cpu_s"), "rec_per_s": s["rec_per_s_wall"],
                       "rec_per_cpu_s": s["rec_per_cpu_s"]} for s in samples]
            for i, s in enumerate(res[w]):
                print(f"  Flink {w} run {i + 1}: {fmt_m(s['rec_per_cpu_s'])} rec/CPU-s, "
                      f"{fmt_m(s['rec_per_s'])} rec/s", flush=True)
        return res

    # ---- workloads ------------------------------------------------------------------------

    def throughput(self, w):
        """W1, W2, W3: Wasm (memory backend, and RocksDB for W2/W3 with --rocksdb), native, Flink."""
        n = self.a.count[w]
        plugin = self.a.plugins["w1" if w == "w1" else "windows"]
        sets = [f"count={n}"] + ([] if w == "w1" else [f"workload={w}"])
        print(f"\n== {w.upper()}: {n:,} bids per flinkw run", flush=True)
        measure(self.flinkw(plugin, ["count=1000"] + sets[1:]))  # fills the compile cache
        if w != "w1":
            self.check_windows(plugin, w)
        rows = {"flinkw (Wasm)": self.reps("flinkw wasm", lambda i: self.flinkw(plugin, sets), n)}
        if w != "w1" and self.a.rocksdb:
            def rocks(i):
                d = tempfile.mkdtemp(prefix="fw-rocks-", dir="/tmp")
                return self.flinkw(plugin, sets, ["--state-backend", "rocksdb", "--state-dir", d])
            rows["flinkw (Wasm, RocksDB)"] = self.reps("flinkw wasm rocksdb", rocks, n)
        rows["flinkw (native)"] = self.reps("native", lambda i: self.pin + [self.a.native, w, str(n)], n)
        flink = self.flink([w], self.a.flink_rows)
        if flink:
            rows["Flink"] = flink[w]
        self.results[w] = rows
        return rows

    def check_windows(self, plugin, w, n=200_000):
        """W2: every bid is in one window; W3: in 10 s / 2 s = 5 windows. The counts must add up."""
        out = measure(self.flinkw(plugin, [f"count={n}", f"workload={w}", "output=stdout"]),
                      stdout=subprocess.PIPE)["stdout"]
        lines = out.splitlines()
        total = sum(int(line.split(",")[3]) for line in lines)
        want = n * (1 if w == "w2" else 5)
        if total != want:
            sys.exit(f"{w} check failed: the window counts add up to {total}, expected {want}")
        print(f"  check: {len(lines):,} {w} windows over {n:,} bids add up to {total:,}", flush=True)

    def nexmark(self):
        """The Nexmark queries on the nexmark source (Wasm only: the Flink side has no Nexmark)."""
        n = self.a.count["nexmark"]
        print(f"\n== Nexmark queries: {n:,} events per run, extra padding on", flush=True)
        plugin = self.a.plugins["nexmark"]
        measure(self.flinkw(plugin, ["query=q0", "count=1000"]))
        rows = {}
        for q in self.a.queries:
            rows[f"flinkw (Wasm) {q}"] = self.reps(q, lambda i, q=q: self.flinkw(plugin, [f"query={q}", f"count={n}"]), n)
        self.results["nexmark"] = rows
        return rows

    def w6(self):
        """Start-up: spawn -> first output line of a job (cold and warm compile cache); memory per instance."""
        print("\n== W6: start-up and memory per plugin instance", flush=True)
        plugin = self.a.plugins["nexmark"]
        res = {}
        for label, fresh in (("cold cache (compile)", True), ("warm cache", False)):
            times = []
            cache = tempfile.mkdtemp(prefix="fw-w6-")
            if not fresh:  # fill the cache first
                measure(self.flinkw(plugin, ["query=q0", "count=10"]), env=dict(os.environ, FLINKW_CACHE_DIR=cache))
            for i in range(self.a.reps):
                if fresh:
                    cache = tempfile.mkdtemp(prefix="fw-w6-")
                env = dict(os.environ, FLINKW_CACHE_DIR=cache)
                cmd = self.flinkw(plugin, ["query=q0", "count=0", "rate=1000", "output=stdout"])
                t0 = time.perf_counter()
                p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
                ready, _, _ = select.select([p.stdout], [], [], 30)
                if ready and p.stdout.readline():
                    times.append(time.perf_counter() - t0)
                p.kill()
                p.wait()
                if not times or len(times) < i + 1:
                    sys.exit("W6: no record on stdout within 30 s")
            res[label] = times
            print(f"  spawn -> first record, {label}: " + ", ".join(f"{t * 1000:.0f} ms" for t in times), flush=True)
        rss = {}
        for p_ in (1, 4):
            r = measure(self.flinkw(self.a.plugins["w1"], ["count=2000000", f"parallelism={p_}"]))
            rss[p_] = r["maxrss_mb"]
        res["mib_per_instance"] = (rss[4] - rss[1]) / 3
        print(f"  peak RSS p=1 {rss[1]:.1f} MB, p=4 {rss[4]:.1f} MB: {res['mib_per_instance']:.2f} MiB per extra instance")
        self.results["w6"] = res

    def w4(self):
        """W4: p50/p95/p99 source-to-sink latency (latency markers every 100 ms) of W2 at 50 %
        of its maximum rate, with 1 s checkpoints; `/metrics` of `flinkw run --ui` is read every
        8 s (each reading: the sink's newest 128 markers). Not pinned: the job needs its two
        threads on their own cores to hold the rate."""
        plugin = self.a.plugins["windows"]
        print("\n== W4: latency of W2 at 50 % of its maximum rate, 1 s checkpoints", flush=True)
        ck = lambda: ["--checkpoint-dir", tempfile.mkdtemp(prefix="fw-w4-")]
        n = self.a.w4_probe
        sets = ["workload=w2", "parallelism=1", "checkpoint.interval-ms=1000"]
        measure([self.a.flinkw, "run", plugin, "--set", "count=1000"] + ck())
        probe = measure([self.a.flinkw, "run", plugin] + ck() + sum((["--set", s] for s in sets + [f"count={n}"]), []))
        top = n / probe["wall"]
        rate = int(top / 2)
        print(f"  maximum rate: {n:,} bids in {probe['wall']:.2f} s wall = {top / 1e3:.0f} k bids/s; "
              f"measuring at {rate / 1e3:.0f} k bids/s for {self.a.w4_seconds} s", flush=True)
        port = free_port()
        cmd = [self.a.flinkw, "run", plugin] + ck() + ["--ui", f"127.0.0.1:{port}"]
        for s in sets + [f"count={rate * self.a.w4_seconds}", f"rate={rate}", "metrics.latency.interval-ms=100"]:
            cmd += ["--set", s]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        token = None
        for _ in range(100):
            line = p.stderr.readline()
            if "token=" in line:
                token = line.split("token=")[1].split()[0].strip()
                break
        if token is None:
            p.kill()
            sys.exit("W4: the job printed no UI token")
        readings = []
        for i in range(1, self.a.w4_seconds // 8):
            time.sleep(8)
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                             headers={"Authorization": f"Bearer {token}"})
                text = urllib.request.urlopen(req, timeout=5).read().decode()
            except OSError as e:
                print(f"  t={i * 8}s: /metrics failed: {e}")
                continue
            q = {}
            for line in text.splitlines():
                if line.startswith("flinkw_latency_seconds{") and "quantile=" in line:
                    quantile = line.split('quantile="')[1].split('"')[0]
                    q[quantile] = float(line.split()[-1]) * 1000
            if {"0.5", "0.95", "0.99"} <= q.keys():
                readings.append(q)
                print(f"  t={i * 8}s: p50 {q['0.5']:.1f} ms, p95 {q['0.95']:.1f} ms, p99 {q['0.99']:.1f} ms, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
        p.wait()
        if not readings:
            sys.exit("W4: no latency readings")
        p99 = statistics.median(r["0.99"] for r in readings)
        verdict = "met" if p99 < 10 else f"missed by {p99 / 10:.1f}×"
        print(f"  median of the readings' p99: {p99:.1f} ms (target < 10 ms: {verdict})")
        self.results["w4"] = {"max_rate": top, "rate": rate, "readings": readings, "p99_median_ms": p99}

    def w5(self):
        """W5: bench/w5.py (RocksDB keyed state, incremental checkpoints, kill -9 recovery)."""
        print(f"\n== W5: {self.a.w5_keys:,} keys x 256 B of keyed state on RocksDB", flush=True)
        out = tempfile.mktemp(suffix=".json")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "w5.py")
        subprocess.run([sys.executable, script, "--keys", str(self.a.w5_keys), "--json", out], check=True)
        data = json.load(open(out))
        os.unlink(out)
        self.results["w5"] = data
        print("  W5 JSON: " + json.dumps(data)[:2000])

    # ---- report ---------------------------------------------------------------------------

    def table(self, w, rows):
        print(f"\n### {w.upper() if w != 'nexmark' else 'Nexmark'}")
        print("| system | rec/s min / med / max | rec/CPU-s min / med / max | vs Flink (rec/CPU-s, medians) |")
        print("|---|---:|---:|---:|")
        flink = statistics.median([r["rec_per_cpu_s"] for r in rows["Flink"]]) if "Flink" in rows else None
        for name, runs in rows.items():
            a = mmm([r["rec_per_s"] for r in runs])
            b = mmm([r["rec_per_cpu_s"] for r in runs])
            ratio = f"{b[1] / flink:.2f}×" if flink else "–"
            print(f"| {name} | {' / '.join(fmt_m(x) for x in a)} | {' / '.join(fmt_m(x) for x in b)} | {ratio} |")
        med = {k: statistics.median([r["rec_per_cpu_s"] for r in v]) for k, v in rows.items()}
        if "flinkw (native)" in med:
            r = med["flinkw (Wasm)"] / med["flinkw (native)"]
            goal = f" (target ≥ {WASM_VS_NATIVE_TARGET}×: " + ("met)" if r >= WASM_VS_NATIVE_TARGET else f"missed by {WASM_VS_NATIVE_TARGET / r:.2f}×)") if w == "w1" else ""
            print(f"\nWasm / native per CPU-second: {r:.2f}×{goal}")
        if flink and w in TARGETS:
            r = med["flinkw (Wasm)"] / flink
            t = TARGETS[w]
            print(f"flinkw (Wasm) / Flink per CPU-second: {r:.2f}× (target ≥ {t:.0f}×: "
                  + ("met)" if r >= t else f"missed by {t / r:.2f}×)"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default="w1,w2,w3,nexmark,w6")
    ap.add_argument("--flinkw", required=True)
    ap.add_argument("--native", required=True)
    ap.add_argument("--plugin-w1", required=True)
    ap.add_argument("--plugin-windows", required=True)
    ap.add_argument("--plugin-nexmark", required=True)
    ap.add_argument("--cpu", default="0")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--w1-count", type=int, default=20_000_000)
    ap.add_argument("--w23-count", type=int, default=2_000_000)
    ap.add_argument("--nexmark-count", type=int, default=2_000_000)
    ap.add_argument("--queries", default="q0,q1,q2,q3,q4,q5,q7,q8")
    ap.add_argument("--flink-rows", type=int, default=20_000_000)
    ap.add_argument("--flink-reps", type=int, default=2)
    ap.add_argument("--flink-dir", default="/work/shared/peers/flink")
    ap.add_argument("--w4-probe", type=int, default=5_000_000, help="W4: bids of the maximum-rate run")
    ap.add_argument("--w4-seconds", type=int, default=40, help="W4: seconds measured at 50 %%")
    ap.add_argument("--w5-keys", type=int, default=4_000_000, help="W5: keys of 256 B (4 M: ~1 GB)")
    ap.add_argument("--no-flink", action="store_true")
    ap.add_argument("--rocksdb", action="store_true")
    ap.add_argument("--revision", default="?")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    a.count = {"w1": a.w1_count, "w2": a.w23_count, "w3": a.w23_count, "nexmark": a.nexmark_count}
    a.plugins = {"w1": a.plugin_w1, "windows": a.plugin_windows, "nexmark": a.plugin_nexmark}
    a.queries = a.queries.split(",")
    r = Runner(a)
    info = machine(a)
    tables = []
    for w in a.workloads.split(","):
        if w in ("w1", "w2", "w3"):
            tables.append((w, r.throughput(w)))
        elif w == "nexmark":
            tables.append((w, r.nexmark()))
        elif w == "w6":
            r.w6()
        elif w == "w4":
            r.w4()
        elif w == "w5":
            r.w5()
        else:
            sys.exit(f"unknown workload {w!r}: w1, w2, w3, w4, w5, w6, nexmark")
    print("\n## Summary")
    for w, rows in tables:
        r.table(w, rows)
    if "w6" in r.results:
        w6 = r.results["w6"]
        print("\n### W6")
        for k, v in w6.items():
            print(f"- {k}: " + (", ".join(f"{x * 1000:.0f} ms" for x in v) if isinstance(v, list) else f"{v:.2f}"))
    info["load_after"] = os.getloadavg()
    print(f"\nload average before {info['load_before']}, after {info['load_after']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "results": r.results}, f, indent=1)
        print(f"JSON: {a.json}")


if __name__ == "__main__":
    main()
