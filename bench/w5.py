#!/usr/bin/env python3
"""W5 (BENCHMARKS.md): checkpoints of large keyed state in RocksDB.

plugins/keyed-state keeps KEYS x VALUE_BYTES of keyed state (1 GB by default)
on the RocksDB backend with incremental checkpoints into a local directory
every INTERVAL ms, at RATE records/s (each record rewrites one byte of one
key's value), and reports:

- the pause per checkpoint: the longest synchronous snapshot of a subtask
  (records wait meanwhile) and the barrier alignment, from each checkpoint's
  "checkpoint complete" log line (sync_ms, alignment_ms);
- the bytes each incremental checkpoint uploaded, and the size of the state;
- recovery after kill -9: from the restarted process's spawn until both
  subtasks have restored ("subtask restored"; the keyed one reads the
  checkpoint's SST files back into a fresh RocksDB) and until its first
  checkpoint;
- throughput with 1 s checkpoints against none (same records, rate unlimited).

Usage: python3 bench/w5.py [--keys N] [--value-bytes B] [--rate R] [--steady S]
       [--interval-ms I] [--throughput-records N] [--cpu C] [--json FILE]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/flinkw/target"))
PLUGIN_TARGET = os.environ.get("FLINKW_PLUGIN_TARGET_DIR", os.path.join(TARGET, "wasm-plugins"))


def build(work):
    """Private copies of flinkw and the keyed-state plugin (built here)."""
    subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip2"],
                   cwd=os.path.join(ROOT, "plugins/keyed-state"), check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=PLUGIN_TARGET))
    plugin = os.path.join(work, "keyed_state.wasm")
    shutil.copy(os.path.join(PLUGIN_TARGET, "wasm32-wasip2/release/keyed_state.wasm"), plugin)
    flinkw = os.path.join(work, "flinkw")
    shutil.copy(os.path.join(TARGET, "release/flinkw"), flinkw)
    return flinkw, plugin


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


class Run:
    """One `flinkw run` of the plugin with JSON logs read as they come."""

    def __init__(self, a, flinkw, plugin, work, sets, checkpoints=True, cpu=None):
        self.log = open(os.path.join(work, f"log-{time.time_ns()}.jsonl"), "w+")
        cmd = ([] if cpu is None else ["taskset", "-c", cpu]) + [
            flinkw, "--log-format", "json", "run", plugin, "--state-backend", "rocksdb",
            "--state-dir", os.path.join(work, "state")]
        if checkpoints:
            cmd += ["--checkpoint-dir", os.path.join(work, "ck")]
        for s in sets:
            cmd += ["--set", s]
        env = dict(os.environ, FLINKW_LOG="warn,flinkw_host=info")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        self.seen = 0
        self.events = []

    def poll(self):
        """New log events: (seconds since spawn, message, fields)."""
        self.log.flush()
        with open(self.log.name) as f:
            lines = f.readlines()
        now = time.monotonic() - self.started
        for line in lines[self.seen:]:
            if not line.endswith("\n"):
                break
            self.seen += 1
            try:
                e = json.loads(line)
            except ValueError:
                continue
            fields = e.get("fields", {})
            self.events.append((now, fields.get("message"), fields))
        return self.events

    def checkpoints(self):
        return [f for _, m, f in self.poll() if m == "checkpoint complete"]

    def wait_for(self, message, deadline, count=1):
        while time.monotonic() < deadline:
            hits = [t for t, m, _ in self.poll() if m == message]
            if len(hits) >= count:
                return hits[count - 1]
            if self.proc.poll() is not None:
                sys.exit(f"flinkw exited ({self.proc.returncode}) before {message!r}:\n" +
                         open(self.log.name).read()[-3000:])
            time.sleep(0.05)
        sys.exit(f"no {message!r} within the time allowed")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def stats(values):
    v = sorted(values)
    if not v:
        return "-"
    return f"{v[0]} / {v[len(v) // 2]} / {v[-1]}"


def throughput(a, flinkw, plugin, work, checkpoints):
    """Rate-unlimited run of THROUGHPUT_RECORDS over KEYS/10 keys: CPU-seconds."""
    d = tempfile.mkdtemp(dir=work)
    sets = [f"count={a.throughput_records}", f"keys={max(a.keys // 10, 1)}",
            f"value-bytes={a.value_bytes}", "rate=0"]
    if checkpoints:
        sets.append("checkpoint.interval-ms=1000")
    r = Run(a, flinkw, plugin, d, sets, checkpoints=checkpoints, cpu=a.cpu)
    t0 = os.times()
    r.proc.wait()
    t1 = os.times()
    if r.proc.returncode != 0:
        sys.exit(open(r.log.name).read()[-3000:])
    cpu = (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
    taken = len(r.checkpoints())
    shutil.rmtree(d, ignore_errors=True)
    return a.throughput_records / cpu, taken


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=4_000_000)
    ap.add_argument("--value-bytes", type=int, default=256)
    ap.add_argument("--rate", type=int, default=50_000, help="records/s once the state is full")
    ap.add_argument("--steady", type=int, default=60, help="seconds measured once the state is full")
    ap.add_argument("--interval-ms", type=int, default=10_000)
    ap.add_argument("--throughput-records", type=int, default=2_000_000)
    ap.add_argument("--cpu", default=None, help="pin the throughput runs to this core")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="fw-w5-", dir=os.environ.get("W5_DIR", "/tmp"))
    try:
        flinkw, plugin = build(work)
        size = a.keys * a.value_bytes
        print(f"W5: {a.keys:,} keys x {a.value_bytes} B = {size / 1e9:.2f} GB of keyed state, RocksDB, "
              f"checkpoints every {a.interval_ms} ms into a local directory", flush=True)
        # Fill as fast as it goes, then RATE records/s: one unbounded run.
        sets = ["count=0", f"keys={a.keys}", f"value-bytes={a.value_bytes}",
                f"checkpoint.interval-ms={a.interval_ms}", f"rate={a.rate}"]
        r = Run(a, flinkw, plugin, work, sets)
        fill_s = a.keys / a.rate
        print(f"  filling: {a.keys:,} records at {a.rate:,}/s (~{fill_s:.0f} s), then {a.steady} s measured", flush=True)
        time.sleep(fill_s)
        first = len(r.checkpoints())
        time.sleep(a.steady)
        cks = r.checkpoints()
        steady = cks[first:]
        if not steady:
            sys.exit("no checkpoint completed in the measured part")
        state_bytes = du(os.path.join(work, "state"))
        ck_bytes = du(os.path.join(work, "ck"))
        # kill -9 a few seconds after a checkpoint, then restart from it.
        r.wait_for("checkpoint complete", time.monotonic() + 3 * a.interval_ms / 1000, len(cks) + 1)
        time.sleep(2)
        r.kill()
        restarted = Run(a, flinkw, plugin, work, sets)
        # Both subtasks (the source's and the keyed one's) log it.
        restored = restarted.wait_for("subtask restored", time.monotonic() + 300, count=2)
        running = restarted.wait_for("checkpoint complete", time.monotonic() + 300 + 3 * a.interval_ms / 1000)
        restarted.kill()
        sync = [c["sync_ms"] for c in steady]
        align = [c["alignment_ms"] for c in steady]
        uploaded = [c["bytes"] for c in steady]
        total = [c["ms"] for c in steady]
        print(f"  checkpoints measured: {len(steady)} (ids {steady[0]['checkpoint']}-{steady[-1]['checkpoint']})")
        print(f"  pause (sync snapshot) ms min/med/max: {stats(sync)}; alignment ms: {stats(align)}")
        print(f"  checkpoint duration ms min/med/max: {stats(total)}")
        print(f"  uploaded per checkpoint MB min/med/max: "
              f"{stats([round(b / 1e6, 1) for b in uploaded])}")
        print(f"  RocksDB directory {state_bytes / 1e9:.2f} GB, checkpoint directory {ck_bytes / 1e9:.2f} GB")
        print(f"  recovery after kill -9: restored {restored:.2f} s after spawn, "
              f"first checkpoint {running:.2f} s after spawn")
        with_ck, n_ck = throughput(a, flinkw, plugin, work, True)
        without, _ = throughput(a, flinkw, plugin, work, False)
        print(f"  throughput, {a.throughput_records:,} records over {max(a.keys // 10, 1):,} keys: "
              f"{with_ck / 1e3:.1f} k rec/CPU-s with 1 s checkpoints ({n_ck} taken), "
              f"{without / 1e3:.1f} k without: {with_ck / without:.2f}x")
        if a.json:
            json.dump({"keys": a.keys, "value_bytes": a.value_bytes, "rate": a.rate,
                       "interval_ms": a.interval_ms, "checkpoints": steady,
                       "state_bytes": state_bytes, "checkpoint_dir_bytes": ck_bytes,
                       "restored_s": restored, "first_checkpoint_s": running,
                       "throughput_with_1s_checkpoints": with_ck, "throughput_without": without},
                      open(a.json, "w"), indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
