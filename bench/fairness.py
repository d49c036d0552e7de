#!/usr/bin/env python3
"""Fair sharing (issue 10): does a hostile tenant slow another tenant down?

Starts a coordinator and one worker (real processes, loopback), creates two
tenants, and times tenant B's W2 job (nexmark-windows, 1 s tumbling windows
per auction, `--count` bids, parallelism 1 — one subtask per task) three ways,
interleaved `--reps` times:

- alone;
- next to tenant A's hostile plugins, redeployed as they fail: an endless
  loop (stopped by its 1 s call deadline), a memory bomb (its 64 MiB cap)
  and unbounded recursion (the stack cap), with a compile bomb (one
  function of 3 MB) deployed each round (refused before any compiler);
- next to tenant A's *legal* CPU hog: the same W2 job at parallelism
  `--hog-parallelism` (default 1), running all the time (a runaway job that
  breaks no limit).

The worker puts each tenant's threads in a cgroup with equal CPU shares
when it can (root, cgroup v1); `--no-cpu-groups` starts it without them,
and `--a-cpu-percent N` gives tenant A the quota `max-cpu-percent` N (its
group's CFS cap, percent of one core). `--a-crash-backoff-max-s S` sets
A's crash-loop backoff (default: the quota's default, 60 s; 0 turns it
off, as before it existed): A's redeploys refused by it and by the deploy
rate are counted apart.

Prints B's job seconds (the job's own `seconds`) per case, the ratio of
B's throughput to B alone, the load average, and the CPU seconds the
worker's and coordinator's threads used during each case, summed by
thread name (where a hostile tenant's cost goes). Needs the release build
(cargo test --release --workspace --no-run).

Usage: bench/fairness.py [--count 3000000] [--reps 3] [--no-cpu-groups]
                         [--a-cpu-percent N] [--hog-parallelism N]
                         [--a-crash-backoff-max-s S]
"""

import argparse
import collections
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from density import call, start_cluster, stop_cluster  # noqa: E402


TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu(pids):
    """CPU seconds (user + system) of every thread of `pids`, by process
    index and thread name with digits folded (`flinkw-t0-0` -> `flinkw-tN-N`)."""
    out = collections.Counter()
    for i, pid in enumerate(pids):
        # The process's own total also holds the threads that ended.
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[(i, "(whole process)", "")] = (int(fields[11]) + int(fields[12])) / TICKS
        except OSError:
            pass
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[(i, re.sub(r"[0-9]+", "N", name), tid)] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def cpu_delta(before, after, names):
    """CPU seconds between two `thread_cpu` readings, by process and thread name
    (threads that started in between count from 0; threads that ended in
    between are only in the `(whole process)` line)."""
    d = collections.Counter()
    for key, secs in after.items():
        d[f"{names[key[0]]}:{key[1]}"] += secs - before.get(key, 0)
    return {k: round(v, 2) for k, v in d.most_common() if v >= 0.05}


def leb(n):
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def compile_bomb():
    """A component whose one core function is ~3 MB of `i32.const 1; drop`
    (the tenants test's compile bomb, encoded by hand)."""
    body = b"\x00" + b"\x41\x01\x1a" * 1_000_000 + b"\x0b"  # no locals; code; end
    code = b"\x01" + leb(len(body)) + body
    sections = [(1, b"\x01\x60\x00\x00"), (3, b"\x01\x00"), (10, code)]
    module = b"\x00asm\x01\x00\x00\x00" + b"".join(
        bytes([i]) + leb(len(s)) + s for i, s in sections)
    return b"\x00asm\x0d\x00\x01\x00" + b"\x01" + leb(len(module)) + module


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/flinkw/target"))
    plugins = os.environ.get("FLINKW_PLUGIN_TARGET_DIR", os.path.join(target, "wasm-plugins"))
    wasm = os.path.join(plugins, "wasm32-wasip2/release")
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=3_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--flinkw", default=os.path.join(target, "release", "flinkw"))
    ap.add_argument("--no-cpu-groups", action="store_true")
    ap.add_argument("--a-cpu-percent", type=int, default=0)
    ap.add_argument("--hog-parallelism", type=int, default=1)
    ap.add_argument("--a-crash-backoff-max-s", type=int, default=60)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="flinkw-fairness-")
    procs = []
    try:
        worker_args = ["--no-cpu-groups"] if args.no_cpu_groups else []
        rest, worker = start_cluster(args.flinkw, work, 16, procs, worker_args)
        pids, names = [worker.pid, procs[0].pid], ["worker", "coordinator"]

        def tenant(name, quota):
            body = json.dumps({"name": name, "quota": quota}).encode()
            return call(rest, "POST", "/v1/tenants", body)["token"]

        a = tenant("mallory", {"max_instance_memory_mib": 64, "max_jobs": 20, "max_slots": 8,
                               "deploys_per_minute": 600, "deploy_burst": 50,
                               "max_cpu_percent": args.a_cpu_percent,
                               "crash_backoff_max_s": args.a_crash_backoff_max_s})
        b = tenant("bob", {"deploys_per_minute": 600, "deploy_burst": 50})

        def upload(token, path):
            with open(path, "rb") as f:
                return call(rest, "POST", "/v1/plugins", f.read(), "application/wasm",
                            token=token)["plugin"]

        def deploy(token, plugin, config, **extra):
            body = json.dumps({"plugin": plugin, "config": config, **extra}).encode()
            return call(rest, "POST", "/v1/jobs", body, token=token)["job"]

        def deploy_when_allowed(token, plugin, config, **extra):
            # After the hostile storm A's deploy bucket may be empty: wait for a token.
            for _ in range(120):
                try:
                    return deploy(token, plugin, config, **extra)
                except urllib.error.HTTPError as e:
                    if e.code != 429:
                        raise
                    time.sleep(0.5)
            sys.exit("A could not deploy its CPU hog for 60 s (429)")

        def state(token, job):
            return call(rest, "GET", f"/v1/jobs/{job}", token=token)

        w2_b = upload(b, f"{wasm}/nexmark_windows.wasm")
        w2_a = upload(a, f"{wasm}/nexmark_windows.wasm")
        bad = upload(a, f"{wasm}/bad_guest.wasm")
        w2 = ["workload=w2", f"count={args.count}", "parallelism=1"]

        cpu = collections.defaultdict(list)

        def b_seconds(case=None):
            before = thread_cpu(pids)
            secs = b_job()
            if case:
                cpu[case].append(cpu_delta(before, thread_cpu(pids), names))
            return secs

        def b_job():
            job = deploy(b, w2_b, w2)
            deadline = time.time() + 600
            while time.time() < deadline:
                s = state(b, job)
                if s["state"]["state"] in ("finished", "failed", "cancelled"):
                    if s["state"]["state"] != "finished":
                        sys.exit(f"B's job ended {s['state']}")
                    return s["seconds"]
                keep_hostile()
                time.sleep(0.05)
            sys.exit("B's job did not finish in 600 s")

        hostile_jobs = {}
        bomb = call(rest, "POST", "/v1/plugins", compile_bomb(), "application/wasm",
                    token=a)["plugin"]
        redeploys = collections.Counter()
        hostile_on = {"on": False}

        def keep_hostile():
            # Redeploy each hostile plugin once its last copy failed.
            if not hostile_on["on"]:
                return
            # The compile bomb: its deploy is refused before any compiler
            # sees it (or by the deploy rate or the crash-loop backoff).
            try:
                deploy(a, bomb, [])
                sys.exit("the compile bomb was accepted")
            except urllib.error.HTTPError as e:
                redeploys[f"compile bomb refused ({e.code})"] += 1
            for mode in ["loop", "membomb", "recurse"]:
                job = hostile_jobs.get(mode)
                if job is None or state(a, job)["state"]["state"] in ("failed", "finished"):
                    try:
                        hostile_jobs[mode] = deploy(a, bad, [f"mode={mode}", "count=1000000"],
                                                    call_timeout_ms=1000, memory_limit_mib=64)
                        redeploys["admitted"] += 1
                    except urllib.error.HTTPError as e:
                        # A's deploy rate quota (600 a minute) or its
                        # crash-loop backoff stops the storm.
                        if e.code != 429:
                            raise
                        text = e.read().decode(errors="replace")
                        which = re.search(r"quota ([a-z-]+) of tenant", text)
                        redeploys[f"refused (429 {which.group(1) if which else '?'})"] += 1

        results = {"alone": [], "hostile plugins": [], "legal CPU hog": []}
        b_seconds()  # warm-up: compiles on the worker
        for _ in range(args.reps):
            results["alone"].append(b_seconds("alone"))
            hostile_on["on"] = True
            keep_hostile()
            time.sleep(1)
            results["hostile plugins"].append(b_seconds("hostile plugins"))
            hostile_on["on"] = False
            for job in hostile_jobs.values():
                call(rest, "POST", f"/v1/jobs/{job}/cancel", token=a)
            hostile_jobs.clear()
            hog = deploy_when_allowed(a, w2_a, ["workload=w2", "count=1000000000",
                                   f"parallelism={args.hog_parallelism}"],
                         memory_limit_mib=64)
            time.sleep(1)
            results["legal CPU hog"].append(b_seconds("legal CPU hog"))
            call(rest, "POST", f"/v1/jobs/{hog}/cancel", token=a)
            time.sleep(1)
        alone = statistics.median(results["alone"])
        print(json.dumps({
            "count": args.count,
            "cpus": os.cpu_count(),
            "cpu_groups": not args.no_cpu_groups,
            "a_cpu_percent": args.a_cpu_percent,
            "a_crash_backoff_max_s": args.a_crash_backoff_max_s,
            "hog_parallelism": args.hog_parallelism,
            "loadavg_after": open("/proc/loadavg").read().split()[:3],
            "hostile_redeploys": redeploys,
            "cpu_seconds_last_rep": {k: v[-1] for k, v in cpu.items()},
            "b_seconds": {k: [round(x, 2) for x in v] for k, v in results.items()},
            "b_throughput_vs_alone": {k: round(alone / statistics.median(v), 3)
                                      for k, v in results.items()},
        }, indent=1))
    finally:
        stop_cluster(procs, work)


if __name__ == "__main__":
    main()
