//! The cluster with real processes on loopback: a coordinator and workers
//! over QUIC with mutual TLS, jobs deployed through the REST API.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flinkw_tests::artifacts;

use crate::{assert_fails_with, flinkw};

const TOKEN: &str = "test-token-1234";

pub(crate) fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

pub(crate) fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_flinkw")
}

/// Makes a CA in `dir/NAME-ca` and a node certificate for each node.
pub(crate) fn certs(dir: &Path, ca: &str, nodes: &[&str]) {
    let ca_dir = dir.join(format!("{ca}-ca"));
    let run = flinkw(&["cert", "ca", "--out", ca_dir.to_str().unwrap()], dir);
    assert!(run.ok(), "{}", run.stderr);
    for n in nodes {
        let out = dir.join(n);
        let args = [
            "cert",
            "node",
            "--ca",
            ca_dir.to_str().unwrap(),
            "--name",
            n,
            "--out",
            out.to_str().unwrap(),
        ];
        let run = flinkw(&args, dir);
        assert!(run.ok(), "{}", run.stderr);
    }
}

/// A coordinator and workers; every process is killed on drop.
pub(crate) struct Cluster {
    pub(crate) dir: PathBuf,
    quic: SocketAddr,
    pub(crate) rest: String,
    coordinator: Child,
    pub(crate) workers: Vec<Child>,
    setup: Setup,
    /// Where workers join: the coordinator, or a relay in front of it.
    join: SocketAddr,
    /// Per worker (in order): the address its traffic leaves from.
    pub(crate) binds: Vec<SocketAddr>,
}

/// How a cluster's processes are started, beyond the defaults.
#[derive(Default)]
pub(crate) struct Setup {
    /// More arguments for the coordinator.
    pub(crate) coordinator_args: Vec<String>,
    /// Environment of every process.
    pub(crate) env: Vec<(String, String)>,
    /// Workers join the coordinator through a relay of this network, bind
    /// a known address and advertise a relay in front of it for data.
    pub(crate) net: Option<std::sync::Arc<crate::relay::Net>>,
}

impl Cluster {
    pub(crate) fn start(dir: &Path, workers: usize, slots: u32) -> Cluster {
        Self::start_with(dir, workers, slots, Setup::default())
    }

    pub(crate) fn start_with(dir: &Path, workers: usize, slots: u32, setup: Setup) -> Cluster {
        let names: Vec<String> = (1..=workers).map(|i| format!("w{i}")).collect();
        let mut nodes: Vec<&str> = names.iter().map(String::as_str).collect();
        nodes.push("coordinator");
        certs(dir, "cluster", &nodes);
        let quic = free_udp();
        let rest = free_tcp();
        let coordinator = coordinator(dir, quic, rest, "coordinator-data", &setup);
        let join = setup.net.as_ref().map_or(quic, |n| n.relay(quic));
        let mut cluster = Cluster {
            dir: dir.to_owned(),
            quic,
            rest: format!("http://{rest}"),
            coordinator,
            workers: Vec::new(),
            setup,
            join,
            binds: Vec::new(),
        };
        for name in &names {
            let w = cluster.worker(name, name, slots);
            cluster.workers.push(w);
        }
        cluster.await_workers(workers);
        cluster
    }

    /// Kills the coordinator with SIGKILL and starts it again on the same
    /// addresses and data folder.
    fn restart_coordinator(&mut self) {
        self.replace_coordinator("coordinator-data");
    }

    /// Kills the coordinator with SIGKILL and starts a new one on the same
    /// addresses, with the data folder `data` (under the cluster's folder).
    pub(crate) fn replace_coordinator(&mut self, data: &str) {
        self.coordinator.kill().unwrap();
        self.coordinator.wait().unwrap();
        let rest: SocketAddr = self.rest.trim_start_matches("http://").parse().unwrap();
        self.coordinator = coordinator(&self.dir, self.quic, rest, data, &self.setup);
    }

    fn worker(&mut self, name: &str, certs: &str, slots: u32) -> Child {
        let mut cmd = Command::new(bin());
        cmd.args(["worker", "--join", &self.join.to_string(), "--name", name])
            .args(["--slots", &slots.to_string()])
            .args(["--certs", self.dir.join(certs).to_str().unwrap()])
            .args(["--cache-dir", self.dir.join(format!("{name}-cache")).to_str().unwrap()])
            .envs(self.setup.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap());
        if let Some(net) = &self.setup.net {
            // All of the worker's traffic leaves from `bind`; others reach
            // it through a relay.
            let bind = free_udp();
            cmd.args(["--bind", &bind.to_string(), "--advertise", &net.relay(bind).to_string()]);
            // A partition may outlast the default rejoin attempts.
            cmd.args(["--connect-timeout", "120"]);
            self.binds.push(bind);
        }
        cmd.spawn().unwrap()
    }

    pub(crate) fn cli(&self, args: &[&str]) -> flinkw_tests::Run {
        let mut all = args.to_vec();
        all.extend(["--coordinator", &self.rest, "--token", TOKEN]);
        if args.contains(&"--wait") {
            // Every wait is bounded: a stuck job fails the test with its state.
            all.extend(["--wait-timeout", "120"]);
        }
        flinkw(&all, &self.dir)
    }

    pub(crate) fn await_workers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = self.cli(&["workers", "--json"]);
            if run.ok() {
                let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
                if list.as_array().unwrap().len() == n {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{n} workers did not join:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                all.push_str(&format!("--- {}\n", entry.path().display()));
                all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        all
    }
}

/// The coordinators' heartbeat timeout in these tests, in ms.
pub(crate) const HEARTBEAT_TIMEOUT_MS: u64 = 2000;

fn coordinator(dir: &Path, quic: SocketAddr, rest: SocketAddr, data: &str, setup: &Setup) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("coordinator.log"))
        .unwrap();
    Command::new(bin())
        .args(["coordinator", "--listen", &quic.to_string(), "--rest", &rest.to_string()])
        .args(["--certs", dir.join("coordinator").to_str().unwrap()])
        .args(["--data-dir", dir.join(data).to_str().unwrap()])
        .args(["--token", TOKEN, "--heartbeat-timeout", &HEARTBEAT_TIMEOUT_MS.to_string()])
        .args(&setup.coordinator_args)
        .envs(setup.env.iter().map(|(k, v)| (k, v)))
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.workers.iter_mut().chain([&mut self.coordinator]) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A CSV of events over many keys, with some disorder.
pub(crate) fn events(dir: &Path, n: usize) -> String {
    let mut csv = String::from("ts,key,value\n");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let ts = 1_700_000_000_000 + i as i64 * 11 - (seed % 500) as i64;
        csv.push_str(&format!("{ts},key{},{}\n", seed % 23, seed % 1000));
    }
    let path = dir.join("events.csv");
    std::fs::write(&path, csv).unwrap();
    path.display().to_string()
}

pub(crate) fn sorted_file(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> =
        std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().count())
}

#[test]
fn a_job_on_three_workers_gives_the_embedded_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = events(dir.path(), 20_000);
    let cluster = Cluster::start(dir.path(), 3, 2);
    let config = |out: &Path| {
        vec![
            "--set".to_owned(),
            format!("input={input}"),
            "--set".to_owned(),
            format!("output={}", out.display()),
            "--set".to_owned(),
            "parallelism=4".to_owned(),
            "--set".to_owned(),
            "window=sliding".to_owned(),
        ]
    };
    // The embedded run is the reference.
    let local_out = dir.path().join("local.csv");
    let mut args = vec!["run".to_owned(), artifacts::WINDOWED_COUNT.to_owned()];
    args.extend(config(&local_out));
    let run = flinkw(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    assert!(run.ok(), "{}", run.stderr);
    let expected = sorted_file(&local_out);
    assert!(expected.len() > 100, "too little output to compare: {}", expected.len());

    let cluster_out = dir.path().join("cluster.csv");
    let mut args = vec![
        "deploy".to_owned(),
        artifacts::WINDOWED_COUNT.to_owned(),
        "--wait".to_owned(),
        "--json".to_owned(),
    ];
    args.extend(config(&cluster_out));
    let run = cluster.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.ok(), "{}\n{}", run.stderr, cluster.logs());
    assert_eq!(sorted_file(&cluster_out), expected);
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(status["state"]["state"], "finished");
    // The keyed windows ran on more than one worker.
    let placement: Vec<String> = status["placement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t.as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_owned()))
        .collect();
    let mut distinct = placement.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 2, "placement {placement:?}");
    let records_out: u64 = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n[0] == "file")
        .map(|n| n[1].as_u64().unwrap())
        .sum();
    assert_eq!(records_out, expected.len() as u64, "{status}");

    // Redeploying the same plugin downloads and compiles nothing new.
    let compiled: Vec<usize> =
        (1..=3).map(|i| files_in(&dir.path().join(format!("w{i}-cache/compiled")))).collect();
    let again = dir.path().join("again.csv");
    let mut args =
        vec!["deploy".to_owned(), artifacts::WINDOWED_COUNT.to_owned(), "--wait".to_owned()];
    args.extend(config(&again));
    let run = cluster.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.ok(), "{}\n{}", run.stderr, cluster.logs());
    assert_eq!(sorted_file(&again), expected);
    let after: Vec<usize> =
        (1..=3).map(|i| files_in(&dir.path().join(format!("w{i}-cache/compiled")))).collect();
    assert_eq!(after, compiled);
    assert_eq!(files_in(&dir.path().join("coordinator-data/plugins")), 1);

    let list = cluster.cli(&["list"]);
    assert!(list.ok(), "{}", list.stderr);
    assert_eq!(list.stdout.matches("finished").count(), 2, "{}", list.stdout);
    let metrics = cluster.cli(&["workers"]);
    assert!(metrics.stdout.contains("w1") && metrics.stdout.contains("w3"), "{}", metrics.stdout);
}

#[test]
fn strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 1, 1);
    // A worker whose certificate comes from another CA cannot join.
    certs(dir.path(), "other", &["intruder"]);
    let mut intruder = cluster.worker("intruder", "intruder", 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = intruder.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the intruder is still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut log = String::new();
    std::fs::File::open(dir.path().join("intruder.log")).unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("certificate"), "{log}");
    cluster.await_workers(1);

    // A deploy without the right token is refused.
    let run = flinkw(
        &["deploy", artifacts::WORDCOUNT, "--coordinator", &cluster.rest, "--token", "wrong"],
        dir.path(),
    );
    assert_fails_with(&run, &["missing or wrong API token", "401"]);
    let run = flinkw(&["list", "--coordinator", &cluster.rest], dir.path());
    assert_fails_with(&run, &["missing or wrong API token"]);

    // A job that needs more slots than the cluster has fails with the reason.
    let input = flinkw_tests::example("data/words.txt");
    let input = format!("input={}", input.display());
    let run = cluster.cli(&[
        "deploy",
        artifacts::WORDCOUNT,
        "--set",
        &input,
        "--set",
        "parallelism=3",
        "--wait",
    ]);
    assert_fails_with(&run, &["needs 3 task slot(s)", "1 free"]);
    // A plugin that is not one fails at deploy.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let run = cluster.cli(&["deploy", junk.to_str().unwrap()]);
    assert_fails_with(&run, &["HTTP 400"]);
}

/// Visible lines of every part file in `dir`, sorted.
pub(crate) fn part_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        if !name.starts_with('.') {
            lines.extend(std::fs::read_to_string(e.path()).unwrap().lines().map(str::to_owned));
        }
    }
    lines.sort();
    lines
}

/// Settings of the W2 job (1 s windows per auction over `count` generated
/// bids, parallelism 2) writing part files exactly once into `out`.
fn w2_settings(count: u64, out: &Path) -> Vec<String> {
    vec![
        format!("count={count}"),
        "parallelism=2".to_owned(),
        "checkpoint.interval-ms=200".to_owned(),
        format!("output={}", out.display()),
    ]
}

/// The W2 job's output from one embedded run: the reference.
pub(crate) fn embedded_w2(dir: &Path, count: u64) -> Vec<String> {
    let out = dir.join("local");
    let mut args = vec!["run".to_owned(), artifacts::NEXMARK_WINDOWS.to_owned()];
    for s in w2_settings(count, &out) {
        args.extend(["--set".to_owned(), s]);
    }
    let run = flinkw(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir);
    assert!(run.ok(), "{}", run.stderr);
    let lines = part_lines(&out);
    assert!(lines.len() > 1000, "too little output to compare: {}", lines.len());
    lines
}

impl Cluster {
    /// Deploys the W2 job with its sources held to 80,000 bids/s (so it
    /// runs long enough to be disturbed), plus `extra` deploy arguments;
    /// returns the job's id.
    pub(crate) fn deploy_w2(&self, count: u64, out: &Path, extra: &[&str]) -> String {
        let mut args = vec!["deploy", artifacts::NEXMARK_WINDOWS, "--set", "rate=80000"];
        args.extend(extra);
        let settings = w2_settings(count, out);
        for s in &settings {
            args.extend(["--set", s.as_str()]);
        }
        let run = self.cli(&args);
        assert!(run.ok(), "{}", run.stderr);
        run.stdout.trim().to_owned()
    }

    /// A job's status, or none while the API does not answer.
    pub(crate) fn status(&self, job: &str) -> Option<serde_json::Value> {
        let run = self.cli(&["status", job, "--json"]);
        run.ok().then(|| serde_json::from_str(&run.stdout).unwrap())
    }

    /// Waits (until `deadline`) for the job to be in one of `states`.
    pub(crate) fn await_state(
        &self,
        job: &str,
        states: &[&str],
        deadline: Instant,
    ) -> serde_json::Value {
        loop {
            if let Some(s) = self.status(job)
                && states.iter().any(|w| s["state"]["state"] == *w)
            {
                return s;
            }
            assert!(Instant::now() < deadline, "job {job} not {states:?}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the job to end and checks it finished after a restart.
    pub(crate) fn await_recovered_end(&self, job: &str, deadline: Instant) -> serde_json::Value {
        let last = self.await_state(job, &["finished", "failed", "cancelled"], deadline);
        assert_eq!(last["state"]["state"], "finished", "{last}\n{}", self.logs());
        assert!(last["attempt"].as_u64().unwrap() >= 1, "{last}");
        last
    }

    /// Kills worker `name` (`wN`) with SIGKILL.
    fn kill_worker(&mut self, name: &str) {
        let index = worker_index(name);
        self.workers[index].kill().unwrap();
        self.workers[index].wait().unwrap();
    }

    /// Starts one more worker with a fresh certificate from the cluster's CA.
    fn add_worker(&mut self) {
        let name = format!("w{}", self.workers.len() + 1);
        let ca = self.dir.join("cluster-ca");
        let certs = self.dir.join(&name);
        let args = [
            "cert",
            "node",
            "--ca",
            ca.to_str().unwrap(),
            "--name",
            &name,
            "--out",
            certs.to_str().unwrap(),
        ];
        let run = flinkw(&args, &self.dir);
        assert!(run.ok(), "{}", run.stderr);
        let fresh = self.worker(&name, &name, 1);
        self.workers.push(fresh);
    }
}

/// The index in [`Cluster::workers`] of worker `wN`.
pub(crate) fn worker_index(name: &str) -> usize {
    name.trim_start_matches('w').parse::<usize>().unwrap() - 1
}

/// The worker running subtask `subtask` of the job's first task.
pub(crate) fn worker_of(status: &serde_json::Value, subtask: usize) -> String {
    status["placement"][0][subtask].as_str().unwrap().to_owned()
}

#[test]
fn a_killed_worker_makes_the_job_restart_on_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, 1);
    let expected = embedded_w2(dir.path(), 300_000);
    let out = dir.path().join("cluster");
    let job = cluster.deploy_w2(300_000, &out, &["--restarts", "3", "--restart-delay", "200"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    // Once it runs, kill -9 a worker that has some of its subtasks.
    let running = cluster.await_state(&job, &["running"], deadline);
    let victim = worker_of(&running, 1);
    std::thread::sleep(Duration::from_millis(700));
    cluster.kill_worker(&victim);
    let last = cluster.await_recovered_end(&job, deadline);
    let placed: Vec<&str> =
        last["placement"][0].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert!(!placed.contains(&victim.as_str()), "{placed:?} still uses {victim}");
    // Without checkpoints the new attempt starts over; the part files of
    // the killed attempt were never published.
    assert_eq!(part_lines(&out), expected);
}

/// `flinkw deploy --state-backend rocksdb`: the workers keep the job's keyed
/// state in RocksDB under their cache folders (seen there while it runs);
/// after a worker is killed the job restores its RocksDB state from the
/// newest checkpoint elsewhere, and the output is exactly the embedded run's.
#[test]
fn a_cluster_job_keeps_its_state_in_rocksdb_through_a_worker_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, 1);
    let expected = embedded_w2(dir.path(), 400_000);
    let out = dir.path().join("cluster");
    let checkpoints = dir.path().join("checkpoints");
    let extra = [
        "--state-backend",
        "rocksdb",
        "--restarts",
        "3",
        "--restart-delay",
        "100",
        "--checkpoint-dir",
        checkpoints.to_str().unwrap(),
    ];
    let job = cluster.deploy_w2(400_000, &out, &extra);
    let deadline = Instant::now() + Duration::from_secs(120);
    let running = cluster.await_state(&job, &["running"], deadline);
    let victim = worker_of(&running, 1);
    std::thread::sleep(Duration::from_millis(1200));
    // RocksDB's files of the keyed subtask, under the worker's cache folder.
    let state = dir.path().join(format!("{victim}-cache")).join("state");
    let sst_or_log = walk(&state).iter().any(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.ends_with(".sst") || name.ends_with(".log") || name.starts_with("MANIFEST")
    });
    assert!(sst_or_log, "no RocksDB files under {}", state.display());
    cluster.kill_worker(&victim);
    cluster.await_recovered_end(&job, deadline);
    assert_eq!(part_lines(&out), expected);
    // A backend flinkw does not have is refused before anything runs.
    let run = cluster.cli(&["deploy", artifacts::WORDCOUNT, "--state-backend", "lmdb"]);
    assert!(!run.ok() && run.stderr.contains("invalid value 'lmdb'"), "{}", run.stderr);
    assert!(run.stderr.contains("memory, rocksdb"), "{}", run.stderr);
}

/// Every file below `dir` (none if it does not exist).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { todo.push(p) } else { files.push(p) }
        }
    }
    files
}

#[test]
fn exactly_once_through_repeated_worker_kills() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, 1);
    let expected = embedded_w2(dir.path(), 500_000);
    let out = dir.path().join("cluster");
    let checkpoints = dir.path().join("checkpoints");
    let extra = [
        "--restarts",
        "10",
        "--restart-delay",
        "100",
        "--checkpoint-dir",
        checkpoints.to_str().unwrap(),
    ];
    let job = cluster.deploy_w2(500_000, &out, &extra);
    // Three times: once an attempt runs and has checkpointed, kill -9 one
    // of its workers and start a fresh one in its place. (Alone this takes
    // ~20 s; the bound leaves room for a loaded CI machine.)
    let deadline = Instant::now() + Duration::from_secs(300);
    for killed in 0..3u64 {
        let s = loop {
            let s = cluster.await_state(&job, &["running", "finished"], deadline);
            if s["state"]["state"] == "finished" || s["attempt"].as_u64().unwrap() == killed {
                break s;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if s["state"]["state"] == "finished" {
            assert!(killed > 0, "the job ended before the first kill: {s}");
            break;
        }
        std::thread::sleep(Duration::from_millis(900));
        cluster.kill_worker(&worker_of(&s, (killed % 2) as usize));
        cluster.add_worker();
    }
    cluster.await_recovered_end(&job, deadline);
    let got = part_lines(&out);
    // Nothing lost, nothing twice.
    assert_eq!(got.len(), expected.len(), "lines: {} vs {}", got.len(), expected.len());
    assert_eq!(got, expected);
}

#[test]
fn a_restarted_coordinator_resumes_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 2, 1);
    let expected = embedded_w2(dir.path(), 400_000);
    let out = dir.path().join("cluster");
    let checkpoints = dir.path().join("checkpoints");
    let job =
        cluster.deploy_w2(400_000, &out, &["--checkpoint-dir", checkpoints.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(90);
    cluster.await_state(&job, &["running"], deadline);
    std::thread::sleep(Duration::from_millis(1500));
    cluster.restart_coordinator();
    cluster.await_recovered_end(&job, deadline);
    assert!(cluster.logs().contains(&format!("resuming job {job}")), "{}", cluster.logs());
    assert_eq!(part_lines(&out), expected);
}

/// Resident memory of a process, in bytes.
pub(crate) fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn a_slow_consumer_slows_its_producers_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 2, 1);
    let count = 400_000u64;
    let run = cluster.cli(&[
        "deploy",
        artifacts::BAD_GUEST,
        "--set",
        "mode=slow",
        "--set",
        &format!("count={count}"),
        "--set",
        "parallelism=2",
    ]);
    assert!(run.ok(), "{}", run.stderr);
    let job = run.stdout.trim().to_owned();
    // 400 MB of records cross a shuffle (half of them between the two
    // processes) into a consumer far slower than the source.
    let pids: Vec<u32> = cluster.workers.iter().map(Child::id).collect();
    let mut peak = 0;
    let mut seen_running = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let sink_in = |s: &serde_json::Value| -> u64 {
        let nodes = s["nodes"].as_array().unwrap();
        nodes.iter().filter(|n| n[0] == "blackhole").map(|n| n[1].as_u64().unwrap()).sum()
    };
    let last = loop {
        peak = pids.iter().map(|p| rss(*p)).max().unwrap().max(peak);
        let run = cluster.cli(&["status", &job, "--json"]);
        assert!(run.ok(), "{}", run.stderr);
        let s: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let state = s["state"]["state"].as_str().unwrap().to_owned();
        if state == "running" {
            seen_running.push(sink_in(&s));
        }
        if state == "finished" || state == "failed" {
            break s;
        }
        assert!(Instant::now() < deadline, "the job did not end: {s}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(last["state"]["state"], "finished", "{last}\n{}", cluster.logs());
    assert_eq!(sink_in(&last), count, "{last}");
    // Counts arrive with the heartbeats while the job runs.
    assert!(
        seen_running.iter().any(|n| *n > 0 && *n < count),
        "no progress seen while running: {seen_running:?}"
    );
    assert!(peak > 0);
    assert!(peak < 200 << 20, "a worker grew to {} MiB", peak >> 20);
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} failed");
}

#[test]
fn a_cut_off_worker_is_failed_over_and_rejoins_when_healed() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, 1);
    let expected = embedded_w2(dir.path(), 300_000);
    let out = dir.path().join("cluster");
    let checkpoints = dir.path().join("checkpoints");
    let extra = [
        "--restarts",
        "3",
        "--restart-delay",
        "100",
        "--checkpoint-dir",
        checkpoints.to_str().unwrap(),
    ];
    let job = cluster.deploy_w2(300_000, &out, &extra);
    let deadline = Instant::now() + Duration::from_secs(90);
    let victim = worker_of(&cluster.await_state(&job, &["running"], deadline), 0);
    std::thread::sleep(Duration::from_millis(1000));
    // Cut the worker off: it sends and answers nothing (SIGSTOP).
    let index = worker_index(&victim);
    signal(&cluster.workers[index], "-STOP");
    cluster.await_recovered_end(&job, deadline);
    assert_eq!(part_lines(&out), expected);
    let workers = cluster.cli(&["workers", "--json"]);
    assert!(!workers.stdout.contains(&format!("\"{victim}\"")), "{}", workers.stdout);

    // Healed: the worker notices it lost its session, stops what it ran,
    // and joins again; the job's output stays exactly as it was.
    signal(&cluster.workers[index], "-CONT");
    cluster.await_workers(3);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(part_lines(&out), expected);
}

#[test]
fn rescale_stops_with_a_savepoint_and_resumes_at_the_new_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, 2);
    let expected = embedded_w2(dir.path(), 400_000);
    let out = dir.path().join("cluster");
    let checkpoints = dir.path().join("checkpoints");
    let job =
        cluster.deploy_w2(400_000, &out, &["--checkpoint-dir", checkpoints.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(90);
    cluster.await_state(&job, &["running"], deadline);
    std::thread::sleep(Duration::from_millis(1500));
    let run = cluster.cli(&["rescale", &job, "--parallelism", "3", "--json"]);
    assert!(run.ok(), "{}\n{}", run.stderr, cluster.logs());
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let new = answer["job"].as_str().unwrap().to_owned();
    assert!(answer["savepoint"].as_str().unwrap().contains("savepoints"), "{answer}");
    assert_eq!(cluster.status(&job).unwrap()["state"]["state"], "finished");
    let last = cluster.await_state(&new, &["finished", "failed"], deadline);
    assert_eq!(last["state"]["state"], "finished", "{last}\n{}", cluster.logs());
    assert_eq!(last["placement"][0].as_array().unwrap().len(), 3, "{last}");
    // The two jobs together wrote every result exactly once.
    assert_eq!(part_lines(&out), expected);

    // A job without a checkpoint folder cannot take a savepoint.
    let input = format!("input={}", flinkw_tests::example("data/words.txt").display());
    let run = cluster.cli(&["deploy", artifacts::WORDCOUNT, "--set", &input]);
    let plain = run.stdout.trim().to_owned();
    let run = cluster.cli(&["savepoint", &plain]);
    assert_fails_with(&run, &["--checkpoint-dir"]);
}

/// The upgrade test plugin's settings: `count` numbers at `rate` per
/// second into part files in `out`.
fn upgrade_settings(out: &Path, count: u64, rate: u64) -> Vec<String> {
    [format!("count={count}"), format!("rate={rate}"), format!("output={}", out.display())]
        .into_iter()
        .flat_map(|s| ["--set".to_owned(), s])
        .collect()
}

/// Runs version 1 of the upgrade plugin on this machine; its output lines.
fn upgrade_reference(dir: &Path, count: u64) -> Vec<String> {
    let reference = dir.join("reference");
    let mut args = vec!["run".to_owned(), artifacts::UPGRADE_V1.to_owned()];
    args.extend(upgrade_settings(&reference, count, 0));
    let run = flinkw(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir);
    assert!(run.ok(), "{}", run.stderr);
    part_lines(&reference)
}

/// Deploys version 1 of the upgrade plugin with checkpoints; waits until
/// it runs and returns its id.
fn deploy_upgrade_v1(cluster: &Cluster, dir: &Path, out: &Path, count: u64) -> String {
    let checkpoints = dir.join("checkpoints");
    let mut args = vec!["deploy", artifacts::UPGRADE_V1, "--checkpoint-dir"];
    args.push(checkpoints.to_str().unwrap());
    let s = upgrade_settings(out, count, 1000);
    args.extend(s.iter().map(String::as_str));
    let run = cluster.cli(&args);
    assert!(run.ok(), "{}", run.stderr);
    let job = run.stdout.trim().to_owned();
    cluster.await_state(&job, &["running"], Instant::now() + Duration::from_secs(90));
    job
}

/// Checks the output of a job that moved from version 1 to version 2:
/// both versions wrote lines, version 2's state came from version 1
/// (migrated), and together they are the uninterrupted run's output.
fn assert_upgraded_output(out: &Path, reference: &[String]) {
    // Version 2 appends the version its guest state came from: 1, migrated.
    let lines = part_lines(out);
    let (v2, v1): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|l| l.split(',').count() == 5);
    assert!(!v1.is_empty() && !v2.is_empty(), "{} v1 and {} v2 lines", v1.len(), v2.len());
    assert!(v2.iter().all(|l| l.ends_with(",1")), "guest state not migrated: {:?}", &v2[..3]);
    let mut got: Vec<String> = lines
        .iter()
        .map(|l| l.strip_suffix(",1").filter(|_| l.split(',').count() == 5).unwrap_or(l).to_owned())
        .collect();
    got.sort();
    assert!(got == reference, "output across the upgrade differs from one run");
}

/// `flinkw upgrade` switches a running job to version 2 of its plugin at a
/// checkpoint barrier: the job keeps its id and attempt (its sources never
/// stop), version 2's `migrate` converts version 1's guest state, keyed
/// state stays, and the output is the uninterrupted run's. Plugins that
/// cannot take over are refused and the job goes on with version 1: one
/// that is not a component, one of another job graph, and version 3,
/// whose `migrate` refuses version 1's state at the barrier.
#[test]
fn upgrade_switches_a_running_job_to_a_new_plugin_version_live() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1, 2);
    let count = 15_000;
    let reference = upgrade_reference(dir.path(), count);
    let out = dir.path().join("out");
    let job = deploy_upgrade_v1(&cluster, dir.path(), &out, count);
    let v1 = cluster.status(&job).unwrap()["request"]["plugin"].as_str().unwrap().to_owned();

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0junk").unwrap();
    let run = cluster.cli(&["upgrade", &job, junk.to_str().unwrap()]);
    assert_fails_with(&run, &["cannot load plugin", "not a valid component"]);
    let run = cluster.cli(&["upgrade", &job, artifacts::MEMORY_PLAIN]);
    assert_fails_with(&run, &["job graph differs from the running job's"]);
    // Version 3 is planned fine, but its `migrate` refuses version 1's
    // state at the barrier: every subtask keeps version 1.
    let run = cluster.cli(&["upgrade", &job, artifacts::UPGRADE_V3]);
    assert_fails_with(&run, &["was refused", "cannot read the state of version 1", "old plugin"]);
    let status = cluster.status(&job).unwrap();
    assert_eq!(status["state"]["state"], "running", "{status}");
    assert_eq!(status["request"]["plugin"], v1.as_str(), "{status}");

    let run = cluster.cli(&["upgrade", &job, artifacts::UPGRADE_V2, "--json"]);
    assert!(run.ok(), "{}\n{}", run.stderr, cluster.logs());
    let done: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(done["state"], "committed", "{done}");
    assert_eq!(done["from_plugin"], v1.as_str(), "{done}");
    assert!(done["swapped"].as_u64().unwrap() >= 1, "{done}");
    assert!(done["checkpoint"].as_u64().is_some(), "{done}");
    let status = cluster.status(&job).unwrap();
    assert_eq!(status["request"]["plugin"], done["plugin"], "{status}");
    let shown = cluster.cli(&["status", &job]);
    assert!(shown.stdout.contains("upgrade    #2 committed: "), "{}", shown.stdout);
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = cluster.await_state(&job, &["finished", "failed"], deadline);
    assert_eq!(last["state"]["state"], "finished", "{last}\n{}", cluster.logs());
    // Never stopped: the first attempt ran the whole job.
    assert_eq!(last["attempt"], 0, "{last}");
    assert_upgraded_output(&out, &reference);
    // The audit log names the new plugin of each upgrade asked for.
    let run = cluster.cli(&["audit"]);
    let upgrades = run.stdout.lines().filter(|l| l.contains("upgrade")).count();
    assert!(upgrades >= 4, "{}", run.stdout);
    assert!(run.stdout.contains(&done["plugin"].as_str().unwrap()[..12]), "{}", run.stdout);
}

/// A live upgrade that switches some subtasks but not all fails over: the
/// job starts again from the upgrade's checkpoint (which holds the old
/// plugin's state) with the old plugin — without using a restart (it has
/// none) — and its output is exactly the uninterrupted run's. Version 4
/// refuses the empty counter of the source task's instance and takes the
/// keyed task's.
#[test]
fn a_live_upgrade_that_switches_only_some_subtasks_fails_over_to_the_old_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1, 2);
    let count = 12_000;
    let reference = upgrade_reference(dir.path(), count);
    let out = dir.path().join("out");
    let job = deploy_upgrade_v1(&cluster, dir.path(), &out, count);
    let v1 = cluster.status(&job).unwrap()["request"]["plugin"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(1000));
    let run = cluster.cli(&["upgrade", &job, artifacts::UPGRADE_V4]);
    let needles = ["the upgrade of", "failed", "version 4 takes no empty counter", "old plugin"];
    assert_fails_with(&run, &needles);
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = cluster.await_state(&job, &["finished", "failed"], deadline);
    assert_eq!(last["state"]["state"], "finished", "{last}\n{}", cluster.logs());
    assert_eq!(last["attempt"], 1, "one failover: {last}");
    assert_eq!(last["request"]["plugin"], v1.as_str(), "{last}");
    assert_eq!(last["upgrade"]["state"], "failed", "{last}");
    assert!(part_lines(&out) == reference, "output across the failover differs from one run");
}

/// `flinkw upgrade --via-savepoint` stops the job with a savepoint and
/// starts it again from there on version 2 as a new job; together the two
/// runs wrote the uninterrupted run's output.
#[test]
fn upgrade_via_savepoint_moves_a_job_to_a_new_plugin_version() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1, 2);
    let reference = upgrade_reference(dir.path(), 4000);
    let out = dir.path().join("out");
    let job = deploy_upgrade_v1(&cluster, dir.path(), &out, 4000);
    std::thread::sleep(Duration::from_millis(1000));
    let run = cluster.cli(&["upgrade", &job, artifacts::UPGRADE_V2, "--via-savepoint", "--json"]);
    assert!(run.ok(), "{}\n{}", run.stderr, cluster.logs());
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let new = answer["job"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    let last = cluster.await_state(&new, &["finished", "failed"], deadline);
    assert_eq!(last["state"]["state"], "finished", "{last}\n{}", cluster.logs());
    assert_upgraded_output(&out, &reference);
}
