#!/usr/bin/env python3
"""Density (W6): how many small jobs one worker holds, what each costs.

Starts a coordinator and one worker (real processes, loopback), uploads the
bad-guest plugin once, deploys N copies of its `tick` mode (an unbounded
datagen at 1 record/s through one guest call into a blackhole) through the
REST API, and reports:

- deploy latency: the POST /v1/jobs answer, and submission -> running
  (the job's `start_ms`), median / p95 / max;
- the worker's resident memory before and after, per job;
- threads of the worker process.

Usage: bench/density.py [--jobs 500] [--flinkw PATH] [--plugin PATH]
Needs the release build (cargo test --release --workspace --no-run).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TOKEN = "density-admin-token"


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(rest, method, path, body=None, kind="application/json", token=TOKEN):
    req = urllib.request.Request(f"http://{rest}{path}", data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", kind)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def start_cluster(flinkw_bin, work, slots, procs, worker_args=()):
    """Starts a coordinator and one worker `w1` with `slots` slots (certs in
    `work`, processes appended to `procs`, `worker_args` added to the
    worker's); returns the REST address once the worker has joined, and the
    worker's process."""
    def flinkw(*a):
        subprocess.run([flinkw_bin, *a], check=True, capture_output=True)

    flinkw("cert", "ca", "--out", f"{work}/ca")
    for n in ["coord", "w1"]:
        flinkw("cert", "node", "--ca", f"{work}/ca", "--name", n, "--out", f"{work}/{n}")
    quic = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    rest = f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    procs.append(subprocess.Popen(
        [flinkw_bin, "coordinator", "--listen", quic, "--rest", rest, "--certs", f"{work}/coord",
         "--data-dir", f"{work}/data", "--token", TOKEN], stderr=open(f"{work}/coord.log", "w")))
    worker = subprocess.Popen(
        [flinkw_bin, "worker", "--join", quic, "--slots", str(slots), "--certs", f"{work}/w1",
         "--cache-dir", f"{work}/w1-cache", "--name", "w1", *worker_args],
        stdout=subprocess.DEVNULL, stderr=open(f"{work}/w1.log", "w"))
    procs.append(worker)
    for _ in range(300):
        try:
            if len(call(rest, "GET", "/v1/workers")) == 1:
                break
        except Exception:
            pass
        time.sleep(0.1)
    return rest, worker


def stop_cluster(procs, work):
    """Stops `procs` (SIGTERM: a worker removes its cgroups; SIGKILL after
    10 s) and deletes `work` (kept, and named, with KEEP=1)."""
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if not os.environ.get("KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(work, file=sys.stderr)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/flinkw/target"))
    plugins = os.environ.get("FLINKW_PLUGIN_TARGET_DIR", os.path.join(target, "wasm-plugins"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--max-wait", type=float, default=600, help="seconds to wait for all to run")
    ap.add_argument("--flinkw", default=os.path.join(target, "release", "flinkw"))
    ap.add_argument("--plugin", default=os.path.join(plugins, "wasm32-wasip2/release/bad_guest.wasm"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="flinkw-density-")
    procs = []
    try:
        rest, worker = start_cluster(args.flinkw, work, args.jobs + 10, procs)
        rss0, threads0 = rss_kib(worker.pid), threads(worker.pid)
        with open(args.plugin, "rb") as f:
            hash_ = call(rest, "POST", "/v1/plugins", f.read(), "application/wasm")["plugin"]
        body = json.dumps({"plugin": hash_, "config": ["mode=tick", "rate=1", "count=1000000000"],
                           "memory_limit_mib": 16}).encode()
        answer_ms, ids = [], []
        t0 = time.time()
        for _ in range(args.jobs):
            s = time.time()
            ids.append(call(rest, "POST", "/v1/jobs", body)["job"])
            answer_ms.append((time.time() - s) * 1000)
        deadline = time.time() + args.max_wait
        last_note = 0
        while True:
            jobs = call(rest, "GET", "/v1/jobs")
            states = [j["state"]["state"] for j in jobs]
            if all(s == "running" for s in states) or time.time() > deadline:
                break
            if time.time() - last_note > 10:
                last_note = time.time()
                print(f"{time.time() - t0:6.1f} s: {states.count('running')} running, "
                      f"worker {rss_kib(worker.pid) // 1024} MiB", file=sys.stderr)
            bad = [j for j in jobs if j["state"]["state"] in ("failed", "cancelled")]
            if bad:
                sys.exit(f"a job failed: {bad[0]['state']}")
            time.sleep(0.5)
        all_running_s = time.time() - t0
        time.sleep(3)
        rss1, threads1 = rss_kib(worker.pid), threads(worker.pid)
        start_ms = [j["start_ms"] for j in jobs if j.get("start_ms") is not None] or [0]
        coord_rss = rss_kib(procs[0].pid)
        print(json.dumps({
            "jobs": args.jobs,
            "running": states.count("running"),
            "not_running": {s: states.count(s) for s in set(states) if s != "running"},
            "not_running_errors": [j["state"].get("error") for j in jobs
                                   if j["state"]["state"] != "running"][:3],
            "deploy_answer_ms": {"median": statistics.median(answer_ms), "p95": pct(answer_ms, 0.95),
                                 "max": max(answer_ms)},
            "submit_to_running_ms": {"median": statistics.median(start_ms), "p95": pct(start_ms, 0.95),
                                     "max": max(start_ms)},
            "all_running_s": round(all_running_s, 1),
            "worker_rss_mib": {"idle": rss0 / 1024, "loaded": rss1 / 1024},
            "worker_rss_per_job_kib": (rss1 - rss0) / args.jobs,
            "worker_threads": {"idle": threads0, "loaded": threads1},
            "coordinator_rss_mib": coord_rss / 1024,
        }, indent=1))
    finally:
        stop_cluster(procs, work)


if __name__ == "__main__":
    main()
