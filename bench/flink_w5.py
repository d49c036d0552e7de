#!/usr/bin/env python3
"""W5 (BENCHMARKS.md) on Apache Flink: the Flink side of bench/w5.py.

Runs the job of plugins/keyed-state, ported line for line to Flink's Java DataStream API
(bench/flink_w5/KeyedState.java: a rate-limited sequence source, key n % KEYS, one
ValueState<byte[]> of VALUE_BYTES pseudo-random bytes per key, one byte rewritten per record)
on a standalone Flink session cluster (one JobManager JVM, one TaskManager JVM, one slot,
parallelism 1) started from the distribution bundled in the PyPI package apache-flink.
State backend RocksDB, incremental checkpoints every INTERVAL ms into a local file:// folder.
It reports, like bench/w5.py:

- the pause per checkpoint: each subtask's synchronous snapshot duration (`sync_duration`:
  the task thread does not process records meanwhile), its alignment and the barrier's
  start delay, from the REST API's checkpoint statistics
  (/jobs/:id/checkpoints/details/:ck/subtasks/:vertex);
- the bytes each incremental checkpoint persisted (`checkpointed_size`) and the full state
  size (`state_size`), from the same statistics, and the RocksDB and checkpoint folders' sizes;
- recovery after `kill -9` of the TaskManager: a new TaskManager is spawned right away (as a
  supervisor would); times from the kill and from the spawn until the JobManager noticed,
  until every subtask is RUNNING again (restored: Flink's INITIALIZING state covers the
  restore of RocksDB from the checkpoint) and until the first checkpoint after it;
- throughput with 1 s checkpoints against none: THROUGHPUT_RECORDS records over KEYS/10 keys,
  rate unlimited, in records per CPU-second (JobManager + TaskManager JVMs, from
  /proc/<pid>/stat) and per wall-second (job RUNNING -> FINISHED).

Run it through bench/flink_w5.sh (installs Java 17 and the venv with apache-flink, finds a
javac). Directly: FLINK_HOME=<.../site-packages/pyflink> JAVA_HOME=<jdk17> JAVAC=<javac>
  python3 bench/flink_w5.py [--keys N] [--value-bytes B] [--rate R] [--steady S]
       [--interval-ms I] [--throughput-records N] [--throughput-reps N] [--json FILE]
"""
import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from w5 import du

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, flush=True)


def uptime():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_seconds(pid):
    """utime + stime of a whole process (all threads) in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def stats(values):
    v = sorted(values)
    if not v:
        return "-"
    return f"{v[0]} / {v[len(v) // 2]} / {v[-1]}"


def build_job(work, javac, flink_home):
    """Compiles bench/flink_w5/KeyedState.java against the distribution's jars into a jar."""
    classes = os.path.join(work, "classes")
    os.makedirs(classes)
    src = os.path.join(HERE, "flink_w5", "KeyedState.java")
    cp = os.path.join(flink_home, "lib", "*")
    subprocess.run([javac, "--release", "17", "-nowarn", "-cp", cp, "-d", classes, src], check=True)
    jar = os.path.join(work, "keyed-state.jar")
    jar_tool = os.path.join(os.path.dirname(javac), "jar")
    subprocess.run([jar_tool, "--create", "--file", jar, "-C", classes, "."], check=True)
    return jar


class Cluster:
    """A standalone Flink session cluster with a private configuration, logs and ports."""

    def __init__(self, a, work, flink_home):
        self.a = a
        self.work = work
        self.home = flink_home
        self.conf = os.path.join(work, "conf")
        shutil.copytree(os.path.join(flink_home, "conf"), self.conf)
        java_opts = ""
        with open(os.path.join(flink_home, "conf", "config.yaml")) as f:
            lines = f.read().splitlines()
        for line in lines:  # env: java: opts: all: --add-exports=... (the JVM flags Java 17 needs)
            if line.strip().startswith("all: --add-"):
                java_opts = line.strip()[len("all: "):]
        if not java_opts:
            sys.exit(f"no env.java.opts.all in {flink_home}/conf/config.yaml")
        self.settings = {
            "env.java.opts.all": java_opts,
            "jobmanager.rpc.address": "localhost",
            "jobmanager.rpc.port": str(a.rpc_port),
            "jobmanager.bind-host": "localhost",
            "taskmanager.bind-host": "localhost",
            "taskmanager.host": "localhost",
            "rest.address": "localhost",
            "rest.bind-address": "localhost",
            "rest.port": str(a.rest_port),
            "jobmanager.memory.process.size": "1024m",
            "taskmanager.memory.process.size": a.tm_memory,
            "taskmanager.numberOfTaskSlots": "1",
            "parallelism.default": "1",
            "state.backend.type": "rocksdb",
            "execution.checkpointing.incremental": "true",
            "execution.checkpointing.dir": "file://" + os.path.join(work, "ck"),
            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            "state.backend.rocksdb.localdir": os.path.join(work, "rocksdb"),
            "io.tmp.dirs": os.path.join(work, "tmp"),
            "web.checkpoints.history": "1000",
        }
        for kv in a.set:
            k, _, v = kv.partition("=")
            self.settings[k] = v
        with open(os.path.join(self.conf, "config.yaml"), "w") as f:
            for k, v in self.settings.items():
                f.write(f"{k}: {v}\n")
        for d in ("log", "tmp", "rocksdb", "ck"):
            os.makedirs(os.path.join(work, d), exist_ok=True)
        self.env = dict(os.environ, FLINK_CONF_DIR=self.conf, FLINK_LOG_DIR=os.path.join(work, "log"),
                        FLINK_PID_DIR=work, FLINK_HOME=flink_home)
        self.url = f"http://localhost:{a.rest_port}"
        self.jm = None
        self.tm = None
        self.tms = 0

    def spawn(self, script):
        out = open(os.path.join(self.work, "log", f"{script}-{time.time_ns()}.console"), "w")
        return subprocess.Popen([os.path.join(self.home, "bin", script), "start-foreground"],
                                env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def start(self):
        self.jm = self.spawn("jobmanager.sh")
        self.tm = self.spawn("taskmanager.sh")
        self.wait(lambda: self.get("/overview").get("slots-available", 0) >= 1, 120,
                  "a TaskManager with a free slot")

    def spawn_tm(self):
        self.tm = self.spawn("taskmanager.sh")
        return self.tm

    def stop(self):
        for p in (self.tm, self.jm):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def get(self, path, default=None):
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            if default is not None:
                return default
            return {}

    def patch(self, path):
        req = urllib.request.Request(self.url + path, method="PATCH")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def wait(self, cond, seconds, what):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for p, name in ((self.jm, "JobManager"), (self.tm, "TaskManager")):
                if p is not None and p.poll() is not None and name == "JobManager":
                    sys.exit(f"the {name} exited ({p.returncode}); logs in {self.work}/log")
            try:
                if cond():
                    return time.monotonic()
            except (KeyError, IndexError, TypeError):
                pass
            time.sleep(0.1)
        sys.exit(f"no {what} within {seconds} s; logs in {self.work}/log")

    def submit(self, jar, args, checkpoint_ms, detached):
        """`flink run` of the job; returns (job id, CLI process)."""
        cmd = [os.path.join(self.home, "bin", "flink"), "run"]
        if detached:
            cmd.append("-d")
        if checkpoint_ms:
            cmd.append(f"-Dexecution.checkpointing.interval={checkpoint_ms}ms")
        cmd += ["-c", "KeyedState", jar] + [str(x) for x in args]
        before = {j["id"] for j in self.get("/jobs", {"jobs": []}).get("jobs", [])}
        out = open(os.path.join(self.work, "log", f"cli-{time.time_ns()}.out"), "w+")
        proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        job = [None]

        def submitted():
            if proc.poll() not in (None, 0):
                out.seek(0)
                sys.exit(f"flink run failed ({proc.returncode}):\n{out.read()[-3000:]}")
            new = [j["id"] for j in self.get("/jobs", {"jobs": []}).get("jobs", []) if j["id"] not in before]
            if new:
                job[0] = new[0]
                return True
            return False

        self.wait(submitted, 180, "submitted job")
        return job[0], proc

    def job(self, jid):
        return self.get(f"/jobs/{jid}")

    def all_running(self, jid):
        j = self.job(jid)
        return j.get("state") == "RUNNING" and j.get("vertices") and all(
            v["status"] == "RUNNING" for v in j["vertices"])

    def completed_checkpoints(self, jid):
        h = self.get(f"/jobs/{jid}/checkpoints").get("history", [])
        return sorted((c for c in h if c.get("status") == "COMPLETED"), key=lambda c: c["id"])

    def checkpoint_detail(self, jid, ck, vertices):
        """Per vertex: the subtasks' sync, async, alignment and start delay (ms) and sizes."""
        out = {}
        for vid, name in vertices.items():
            d = self.get(f"/jobs/{jid}/checkpoints/details/{ck['id']}/subtasks/{vid}")
            subs = [s for s in d.get("subtasks", []) if s.get("status") == "completed"]
            out[name] = [{
                "sync_ms": s["checkpoint"]["sync"],
                "async_ms": s["checkpoint"]["async"],
                "alignment_ms": s["alignment"].get("duration", 0),
                "start_delay_ms": s["start_delay"],
                "checkpointed_size": s.get("checkpointed_size"),
                "state_size": s.get("state_size"),
                "end_to_end_ms": s.get("end_to_end_duration"),
            } for s in subs]
        return out


def vertices_of(cluster, jid):
    return {v["id"]: v["name"] for v in cluster.job(jid).get("vertices", [])}


def steady_run(a, cluster, jar):
    """Fill KEYS at RATE, then STEADY s measured, then kill -9 the TaskManager."""
    jid, _ = cluster.submit(jar, [0, a.rate, a.keys, a.value_bytes], a.interval_ms, detached=True)
    cluster.wait(lambda: cluster.all_running(jid), 180, "job running")
    vertices = vertices_of(cluster, jid)
    fill_s = a.keys / a.rate
    log(f"  job {jid}: vertices {list(vertices.values())}; filling {a.keys:,} keys at {a.rate:,}/s "
        f"(~{fill_s:.0f} s), then {a.steady} s measured; load {uptime()}")
    time.sleep(fill_s)
    first = {c["id"] for c in cluster.completed_checkpoints(jid)}
    loads = [uptime()]
    t_end = time.monotonic() + a.steady
    while time.monotonic() < t_end:
        time.sleep(min(10, max(0, t_end - time.monotonic())))
        loads.append(uptime())
    cks = [c for c in cluster.completed_checkpoints(jid) if c["id"] not in first]
    failed = [c for c in cluster.get(f"/jobs/{jid}/checkpoints").get("history", [])
              if c.get("status") == "FAILED"]
    if not cks:
        sys.exit(f"no checkpoint completed in the measured part; logs in {cluster.work}/log")
    details = []
    for c in cks:
        d = cluster.checkpoint_detail(jid, c, vertices)
        details.append({"id": c["id"], "end_to_end_ms": c["end_to_end_duration"],
                        "checkpointed_size": c["checkpointed_size"], "state_size": c["state_size"],
                        "alignment_buffered": c.get("alignment_buffered"), "subtasks": d})
    rocksdb_bytes = du(os.path.join(cluster.work, "rocksdb"))
    ck_bytes = du(os.path.join(cluster.work, "ck"))
    # kill -9 two seconds after a checkpoint completed, spawn a new TaskManager right away.
    last = max(c["id"] for c in cluster.completed_checkpoints(jid))
    cluster.wait(lambda: max(c["id"] for c in cluster.completed_checkpoints(jid)) > last,
                 3 * a.interval_ms / 1000 + 60, "the next checkpoint")
    time.sleep(2)
    before_kill = max(c["id"] for c in cluster.completed_checkpoints(jid))
    load_kill = uptime()
    old_tm = cluster.tm
    t_kill = time.monotonic()
    wall_kill_ms = time.time() * 1000
    os.kill(old_tm.pid, signal.SIGKILL)
    old_tm.wait()
    cluster.spawn_tm()
    t_spawn = time.monotonic()
    wall_spawn_ms = time.time() * 1000
    t_noticed = cluster.wait(lambda: cluster.job(jid).get("state") != "RUNNING" or any(
        v["status"] != "RUNNING" for v in cluster.job(jid)["vertices"]), 300, "the JobManager noticing the kill")
    t_running = cluster.wait(lambda: cluster.all_running(jid), 300, "the job running again")
    t_ck = cluster.wait(lambda: max(c["id"] for c in cluster.completed_checkpoints(jid)) > before_kill,
                        300 + 3 * a.interval_ms / 1000, "a checkpoint after the restore")
    restored = cluster.get(f"/jobs/{jid}/checkpoints").get("latest", {}).get("restored") or {}
    # The subtasks' own state timestamps (ms, JobManager clock): INITIALIZING (restore) -> RUNNING.
    restore_ms = {}
    for vid, name in vertices.items():
        t = cluster.get(f"/jobs/{jid}/vertices/{vid}/subtasktimes").get("subtasks", [])
        for s in t:
            ts = s.get("timestamps", {})
            if ts.get("INITIALIZING") and ts.get("RUNNING"):
                restore_ms[name] = ts["RUNNING"] - ts["INITIALIZING"]
    # The JobManager's own job state timestamps (ms): RESTARTING = it noticed the lost
    # TaskManager, RUNNING = restart after the backoff (then deployment and restore).
    jts = cluster.job(jid).get("timestamps", {})
    last_sub_running = max((ts for ts in (
        s.get("timestamps", {}).get("RUNNING", 0)
        for vid in vertices for s in cluster.get(f"/jobs/{jid}/vertices/{vid}/subtasktimes").get("subtasks", []))),
        default=0)
    after = [c for c in cluster.completed_checkpoints(jid) if c["id"] > before_kill]
    first_ack = after[0]["latest_ack_timestamp"] if after else 0
    phases = {"kill_to_restarting_s": (jts.get("RESTARTING", 0) - wall_kill_ms) / 1000,
              "kill_to_all_subtasks_running_s": (last_sub_running - wall_kill_ms) / 1000,
              "spawn_to_all_subtasks_running_s": (last_sub_running - wall_spawn_ms) / 1000,
              "spawn_to_first_checkpoint_s": (first_ack - wall_spawn_ms) / 1000,
              "restarting_to_running_s": (jts.get("RUNNING", 0) - jts.get("RESTARTING", 0)) / 1000,
              "job_running_to_all_subtasks_running_s": (last_sub_running - jts.get("RUNNING", 0)) / 1000}
    recovery = {"phases": phases, "noticed_after_kill_s": t_noticed - t_kill, "running_after_kill_s": t_running - t_kill,
                "running_after_spawn_s": t_running - t_spawn, "first_checkpoint_after_spawn_s": t_ck - t_spawn,
                "restored_checkpoint": restored.get("id"), "last_before_kill": before_kill,
                "initializing_to_running_ms": restore_ms, "load": load_kill}
    cluster.patch(f"/jobs/{jid}?mode=cancel")
    cluster.wait(lambda: cluster.job(jid).get("state") in ("CANCELED", "FAILED", "FINISHED"), 120, "cancel")
    return {"job": jid, "checkpoints": details, "failed_checkpoints": len(failed),
            "rocksdb_bytes": rocksdb_bytes, "checkpoint_dir_bytes": ck_bytes,
            "loads": loads, "recovery": recovery}


def throughput_run(a, cluster, jar, records, checkpoint_ms):
    """One bounded job, rate unlimited, over KEYS/10 keys; CPU of both JVMs and wall time."""
    pids = [cluster.jm.pid, cluster.tm.pid]
    c0 = [cpu_seconds(p) for p in pids]
    load0 = uptime()
    jid, proc = cluster.submit(jar, [records, 0, max(a.keys // 10, 1), a.value_bytes], checkpoint_ms,
                               detached=False)
    deadline = time.monotonic() + 1800
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
        sys.exit("throughput job did not finish within 1800 s")
    c1 = [cpu_seconds(p) for p in pids]
    j = cluster.job(jid)
    if j.get("state") != "FINISHED":
        sys.exit(f"throughput job {jid} ended {j.get('state')}; logs in {cluster.work}/log")
    ts = j["timestamps"]
    wall = (ts["FINISHED"] - ts["RUNNING"]) / 1000
    n_ck = len(cluster.completed_checkpoints(jid)) if checkpoint_ms else 0
    return {"checkpoint_ms": checkpoint_ms, "records": records, "wall_s": wall,
            "jm_cpu_s": c1[0] - c0[0], "tm_cpu_s": c1[1] - c0[1], "checkpoints": n_ck,
            "load_before": load0, "load_after": uptime()}


def report_steady(steady):
    cks = steady["checkpoints"]
    log(f"  checkpoints measured: {len(cks)} (ids {cks[0]['id']}-{cks[-1]['id']}), "
        f"failed in the whole run: {steady['failed_checkpoints']}; load during: {'; '.join(steady['loads'])}")
    names = list(cks[0]["subtasks"].keys())
    for name in names:
        subs = [c["subtasks"][name][0] for c in cks if c["subtasks"].get(name)]
        log(f"  [{name}] sync (pause) ms min/med/max: {stats([s['sync_ms'] for s in subs])}; "
            f"async ms: {stats([s['async_ms'] for s in subs])}; alignment ms: "
            f"{stats([s['alignment_ms'] for s in subs])}; start delay ms: {stats([s['start_delay_ms'] for s in subs])}")
    log(f"  checkpoint duration ms min/med/max: {stats([c['end_to_end_ms'] for c in cks])}")
    log(f"  checkpointed (uploaded) per checkpoint MB min/med/max: "
        f"{stats([round(c['checkpointed_size'] / 1e6, 1) for c in cks])}; full state size MB: "
        f"{stats([round(c['state_size'] / 1e6, 1) for c in cks])}")
    log(f"  RocksDB folder {steady['rocksdb_bytes'] / 1e9:.2f} GB, checkpoint folder "
        f"{steady['checkpoint_dir_bytes'] / 1e9:.2f} GB")
    r = steady["recovery"]
    # The polled times below lag by up to the REST cache's 3 s (web.refresh-interval); the
    # phases from the JobManager's timestamps do not.
    log(f"  recovery after kill -9 of the TaskManager (load {r['load']}), polled: JobManager noticed "
        f"{r['noticed_after_kill_s']:.2f} s after the kill; all subtasks RUNNING "
        f"{r['running_after_spawn_s']:.2f} s after the new TaskManager's spawn "
        f"({r['running_after_kill_s']:.2f} s after the kill); subtasks INITIALIZING->RUNNING ms "
        f"{r['initializing_to_running_ms']}; first checkpoint {r['first_checkpoint_after_spawn_s']:.2f} s "
        f"after spawn; restored checkpoint {r['restored_checkpoint']} (last before kill {r['last_before_kill']})")
    ph = r["phases"]
    log(f"    phases (JobManager timestamps): kill -> job RESTARTING {ph['kill_to_restarting_s']:.2f} s (heartbeat), "
        f"RESTARTING -> RUNNING {ph['restarting_to_running_s']:.2f} s (restart backoff), job RUNNING -> all "
        f"subtasks RUNNING {ph['job_running_to_all_subtasks_running_s']:.2f} s (deploy + restore); kill -> all "
        f"subtasks RUNNING {ph['kill_to_all_subtasks_running_s']:.2f} s, spawn -> all subtasks RUNNING "
        f"{ph['spawn_to_all_subtasks_running_s']:.2f} s, spawn -> first checkpoint acknowledged "
        f"{ph['spawn_to_first_checkpoint_s']:.2f} s")


def report_pairs(pairs):
    for p in pairs:
        for t in p:
            cpu = t["jm_cpu_s"] + t["tm_cpu_s"]
            log(f"  throughput {'1 s checkpoints' if t['checkpoint_ms'] else 'no checkpoints  '}: "
                f"{t['records'] / cpu / 1e3:.1f} k rec/CPU-s (JM+TM {cpu:.1f} CPU-s, TM {t['tm_cpu_s']:.1f}), "
                f"{t['records'] / t['wall_s'] / 1e3:.1f} k rec/s wall ({t['wall_s']:.1f} s), "
                f"{t['checkpoints']} checkpoints; load {t['load_before']} -> {t['load_after']}")
        if len(p) == 2:
            w, c = p
            rc = (c["records"] / (c["jm_cpu_s"] + c["tm_cpu_s"])) / (w["records"] / (w["jm_cpu_s"] + w["tm_cpu_s"]))
            log(f"    pair: with/without per CPU-s {rc:.2f}x, per wall-s {w['wall_s'] / c['wall_s']:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=4_000_000)
    ap.add_argument("--value-bytes", type=int, default=256)
    ap.add_argument("--rate", type=int, default=40_000, help="records/s, filling and then steady")
    ap.add_argument("--steady", type=int, default=60, help="seconds measured once the state is full")
    ap.add_argument("--interval-ms", type=int, default=10_000)
    ap.add_argument("--throughput-records", type=int, default=2_000_000)
    ap.add_argument("--throughput-reps", type=int, default=2, help="pairs (without, with 1 s checkpoints)")
    ap.add_argument("--no-steady", action="store_true", help="only the throughput pairs")
    ap.add_argument("--tm-memory", default="3g", help="taskmanager.memory.process.size")
    ap.add_argument("--rest-port", type=int, default=18391)
    ap.add_argument("--rpc-port", type=int, default=18392)
    ap.add_argument("--set", action="append", default=[], help="extra Flink setting key=value")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    flink_home = os.environ.get("FLINK_HOME") or sys.exit("FLINK_HOME (…/site-packages/pyflink) not set")
    javac = os.environ.get("JAVAC") or sys.exit("JAVAC (a javac of JDK >= 17) not set")
    work = tempfile.mkdtemp(prefix="flink-w5-", dir=os.environ.get("W5_DIR", "/tmp"))
    cluster = None
    try:
        jar = build_job(work, javac, flink_home)
        size = a.keys * a.value_bytes
        log(f"Flink W5: {a.keys:,} keys x {a.value_bytes} B = {size / 1e9:.2f} GB of keyed state, RocksDB, "
            f"incremental checkpoints every {a.interval_ms} ms into file://{work}/ck; load {uptime()}")
        cluster = Cluster(a, work, flink_home)
        t0 = time.monotonic()
        cluster.start()
        log(f"  cluster up in {time.monotonic() - t0:.1f} s (REST {cluster.url}); work folder {work}")
        steady = None
        if not a.no_steady:
            steady = steady_run(a, cluster, jar)
        # JIT warm-up on this TaskManager (the steady run's was killed), then the pairs.
        warm = throughput_run(a, cluster, jar, max(a.throughput_records // 4, 1), 0)
        log(f"  warm-up: {warm['records']:,} records in {warm['wall_s']:.1f} s")
        pairs = []
        for _ in range(a.throughput_reps):
            pairs.append([throughput_run(a, cluster, jar, a.throughput_records, 0),
                          throughput_run(a, cluster, jar, a.throughput_records, 1000)])
        log(f"Flink W5 results ({a.throughput_records:,} records over {max(a.keys // 10, 1):,} keys "
            f"for the throughput pairs):")
        if steady:
            report_steady(steady)
        report_pairs(pairs)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"args": vars(a), "settings": cluster.settings, "steady": steady,
                           "warm_up": warm, "pairs": pairs}, f, indent=1)
    finally:
        if cluster is not None:
            cluster.stop()
        if a.keep:
            log(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
