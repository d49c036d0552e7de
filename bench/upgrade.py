#!/usr/bin/env python3
"""Live plugin upgrade against the savepoint path, on a cluster on this machine.

A coordinator and two workers (1 slot each) run the upgrade test plugin
(`tests/plugins/upgrade`: numbers keyed by n % 10, a keyed value state per
key, a guest-side counter) at parallelism 2 and `--rate` numbers/s with
1 s checkpoints. After a few seconds the job moves from version 1 to
version 2 (whose `migrate` converts version 1's counter):

- live: `flinkw upgrade JOB v2.wasm` — reports the pause at the barrier
  (the longest a subtask held its records: snapshot + swap), the command's
  wall time (upload, compile and plan on the coordinator, load on the
  workers, the barrier), and the longest gap in the job's output seen by
  polling its record counts every 50 ms (the counts come with the workers'
  heartbeats, so a gap shorter than a heartbeat or two cannot be seen);
- savepoint: `flinkw upgrade JOB v2.wasm --via-savepoint` — the same gap,
  across the stop, the new job's deploy and its restore.

With --keys N the job is plugins/keyed-state holding N x 256 B of keyed
state (--state-backend memory|rocksdb), "upgraded" to the same code under
another hash: the savepoint path then stops, saves, deploys and restores
all of that state, the live path none of it.

Usage: python3 bench/upgrade.py [--rate N] [--reps R] [--flinkw BIN]
                                [--keys N --state-backend memory|rocksdb]
Needs `cargo test --release --workspace --no-run` first (plugins and binary).
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

from bench import free_port

TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/flinkw/target"))
PLUGINS = os.path.join(TARGET, "wasm-plugins/wasm32-wasip2/release")


class Cluster:
    def __init__(self, flinkw, work):
        self.flinkw, self.work, self.procs = flinkw, work, []
        env = dict(os.environ, FLINKW_TOKEN="bench-token", FLINKW_CACHE_DIR=f"{work}/cache")
        self.env = env
        self.run("cert", "ca", "--out", f"{work}/ca")
        for n in ["coordinator", "w1", "w2"]:
            self.run("cert", "node", "--ca", f"{work}/ca", "--name", n, "--out", f"{work}/{n}")
        quic, rest = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        env["FLINKW_COORDINATOR"] = f"http://{rest}"
        self.spawn("coordinator", "--listen", quic, "--rest", rest,
                   "--certs", f"{work}/coordinator", "--data-dir", f"{work}/coord")
        for n in ["w1", "w2"]:
            self.spawn("worker", "--join", quic, "--name", n, "--slots", "1",
                       "--certs", f"{work}/{n}", "--cache-dir", f"{work}/{n}-cache")
        for _ in range(200):
            out = self.run("workers", "--json", check=False)
            if out.returncode == 0 and len(json.loads(out.stdout or "[]")) == 2:
                return
            time.sleep(0.1)
        raise SystemExit("the workers did not register")

    def spawn(self, *args):
        log = open(f"{self.work}/{args[0]}-{len(self.procs)}.log", "w")
        self.procs.append(subprocess.Popen([self.flinkw, *args], env=self.env, stderr=log))

    def run(self, *args, check=True):
        out = subprocess.run([self.flinkw, *args], env=self.env, capture_output=True, text=True)
        if check and out.returncode != 0:
            raise SystemExit(f"flinkw {' '.join(args)} failed: {out.stderr}")
        return out

    def status(self, job):
        return json.loads(self.run("status", job, "--json").stdout)

    def stop(self):
        for p in self.procs:
            p.kill()


def records_out(status):
    """Records out of every node so far (the sink's are the job's output)."""
    return sum(n[2] for n in status.get("nodes", []))


def with_custom_section(src, dst):
    """Copies a component with a custom section appended: the same code
    under another hash, i.e. a "new version" of a plugin without one."""
    def leb(n):
        out = bytearray()
        while True:
            b = n & 0x7f
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)
    name = b"flinkw-bench-build"
    payload = leb(len(name)) + name + b"2"
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read() + b"\x00" + leb(len(payload)) + payload)


class Workload:
    """What is upgraded: the upgrade test plugin (v1 -> v2, guest state
    migrated) or, with `keys`, plugins/keyed-state holding keys x 256 B of
    keyed state (v1 -> the same code under another hash)."""

    def __init__(self, a, work):
        self.a = a
        if a.keys:
            self.v1 = f"{PLUGINS}/keyed_state.wasm"
            self.v2 = f"{work}/keyed_state_v2.wasm"
            with_custom_section(self.v1, self.v2)
            # Filled at `rate`, then a minute more of updates.
            self.fill_s = a.keys / a.rate + 2
            self.sets = [f"keys={a.keys}", "value-bytes=256", "parallelism=1",
                         f"count={a.keys + a.rate * 60}"]
        else:
            self.v1, self.v2 = f"{PLUGINS}/upgrade_v1.wasm", f"{PLUGINS}/upgrade_v2.wasm"
            self.fill_s = 5
            self.sets = ["parallelism=2", f"count={a.rate * 40}"]

    def deploy_args(self, out, ck):
        args = ["deploy", self.v1, "--checkpoint-dir", ck, "--set", f"rate={self.a.rate}",
                "--set", "checkpoint.interval-ms=1000", "--state-backend", self.a.state_backend]
        if not self.a.keys:
            args += ["--set", f"output={out}"]
        for s in self.sets:
            args += ["--set", s]
        return args


def one(cluster, w, via_savepoint, n):
    out = f"{cluster.work}/out-{n}"
    ck = f"{cluster.work}/ck-{n}"
    job = cluster.run(*w.deploy_args(out, ck)).stdout.strip()
    deadline = time.time() + 60
    while cluster.status(job)["state"]["state"] != "running":
        if time.time() > deadline:
            raise SystemExit(f"{job} did not start")
        time.sleep(0.1)
    time.sleep(w.fill_s)
    args = ["upgrade", job, w.v2, "--json"]
    if via_savepoint:
        args.append("--via-savepoint")
    started = time.time()
    proc = subprocess.Popen([cluster.flinkw, *args], env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # The output's progress while the upgrade runs: the longest time the
    # sinks' record count stood still (polled every 50 ms).
    watched, last, last_change, gap = job, None, time.time(), 0.0
    answer, command_s = None, None
    while time.time() - started < 120:
        got = records_out(cluster.status(watched))
        now = time.time()
        if got != last:
            # A new job's counts start again from 0: any change is progress.
            gap = max(gap, now - last_change)
            last, last_change = got, now
        if answer is None and proc.poll() is not None:
            command_s = now - started
            stdout, stderr = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"upgrade failed: {stderr}")
            answer = json.loads(stdout)
            if via_savepoint:
                # The new job's counts start at 0: standing at 0 is no progress.
                watched, last = answer["job"], 0
        # Done once the job made progress after the command ended.
        if answer is not None and now - started > 10 and last_change > started + command_s:
            break
        time.sleep(0.05)
    if answer is None:
        raise SystemExit("the upgrade did not end within 120 s")
    cluster.run("cancel", watched, check=False)
    return {"pause_ms": answer.get("pause_ms"), "gap_s": round(gap, 3),
            "swapped": answer.get("swapped"), "command_s": round(command_s, 2)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=int, default=50_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--flinkw", default=os.path.join(TARGET, "release/flinkw"))
    p.add_argument("--keys", type=int, default=0,
                   help="upgrade plugins/keyed-state holding KEYS x 256 B of state instead")
    p.add_argument("--state-backend", default="memory", choices=["memory", "rocksdb"])
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        cluster = Cluster(a.flinkw, work)
        w = Workload(a, work)
        try:
            results = {"live": [], "savepoint": []}
            for r in range(a.reps):
                for kind in results:
                    res = one(cluster, w, kind == "savepoint", f"{kind}-{r}")
                    results[kind].append(res)
                    print(kind, res, flush=True)
            for kind, rs in results.items():
                gaps = [x["gap_s"] for x in rs]
                line = f"{kind}: output gap median {statistics.median(gaps):.3f} s (min {min(gaps):.3f}, max {max(gaps):.3f})"
                if kind == "live":
                    pauses = [x["pause_ms"] for x in rs]
                    line += f"; pause at the barrier median {statistics.median(pauses):.1f} ms (max {max(pauses):.1f})"
                print(line)
            print(json.dumps(results))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
