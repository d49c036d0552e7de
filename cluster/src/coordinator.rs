//! `flinkw coordinator`: accepts jobs, places them on workers' slots,
//! starts, watches and restarts them.
//!
//! Workers connect over QUIC (mutual TLS) and keep a session open; the
//! coordinator drives each job's [`Lifecycle`] with what the workers report
//! and with its own clock (heartbeat timeouts, restart delays). Plugins
//! are stored by content hash in the data folder; workers fetch them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use flinkw_host::config::JobConfig;
use flinkw_host::engine::Engine;
use flinkw_host::graph::{JobGraph, NodeKind};
use flinkw_host::limits::Limits;
use flinkw_host::plugin::Plugin;
use flinkw_host::runtime::{CheckpointCoordinator, physical_plan, plan_job};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::control::{
    Deployment, PartReport, ToCoordinator, ToWorker, read_frame, read_raw, write_frame,
};
use crate::lifecycle::{Action, Event, JobState, Lifecycle};
use crate::scheduler::{Offer, TaskNeeds, place};
use crate::tls::Identity;

/// How a coordinator is started.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// QUIC address for workers.
    pub listen: SocketAddr,
    /// HTTP address of the REST API.
    pub rest: SocketAddr,
    /// Folder with `ca.pem`, `node.pem`, `node.key`.
    pub certs: PathBuf,
    /// The API token clients must send.
    pub token: String,
    /// Compiled plugins, tenants, the audit log; job records and plugins
    /// too unless `job_store` says otherwise.
    pub data_dir: PathBuf,
    /// Where job records and the plugins they run are kept: a directory or
    /// an object-store URL (`s3://`, `gs://`, `az://`; default: the data
    /// dir). A coordinator started elsewhere with the same store resumes
    /// the live jobs.
    pub job_store: Option<String>,
    /// A worker silent this long is lost.
    pub heartbeat_timeout: Duration,
    /// Tenants' checkpoint folders (default: `data-dir/storage`).
    pub tenant_storage: Option<PathBuf>,
}

/// A registered worker.
pub(crate) struct WorkerEntry {
    pub name: String,
    pub slots: u32,
    pub data_addr: SocketAddr,
    pub tx: mpsc::UnboundedSender<ToWorker>,
    pub last_seen: Instant,
    pub connection: quinn::Connection,
}

/// A job on the coordinator.
pub(crate) struct JobEntry {
    pub id: String,
    pub name: String,
    pub plugin: String,
    pub config: Vec<String>,
    pub needs: Vec<TaskNeeds>,
    pub lifecycle: Lifecycle,
    pub placement: Vec<Vec<u32>>,
    /// Slots taken per worker while the attempt is live.
    pub slots: BTreeMap<u32, u32>,
    pub report: PartReport,
    pub submitted: Instant,
    pub running_since: Option<Instant>,
    pub ended: Option<Instant>,
    pub memory_limit: usize,
    pub call_timeout_ms: u64,
    pub graph: JobGraph,
    pub job_config: JobConfig,
    pub checkpoint_dir: Option<PathBuf>,
    /// The checkpoint coordinator of the current attempt.
    pub checkpoints: Option<Arc<CheckpointCoordinator>>,
    /// Set once the current attempt's workers were told to start.
    pub started: Arc<AtomicBool>,
    /// What the client asked for (kept in the job's record).
    pub request: JobRequest,
    /// The savepoint the job stopped with.
    pub savepoint: Arc<Mutex<Option<PathBuf>>>,
    /// Per worker of the attempt: per node, records in and out so far.
    pub live: BTreeMap<u32, Vec<(String, u64, u64)>>,
    /// Per-subtask metrics, checkpoint history, exceptions, log lines.
    pub observed: crate::metrics::JobMetrics,
    /// How often its record was written (0: never; the first write is
    /// create-only).
    pub record_version: u64,
    /// The newest live upgrade.
    pub upgrade: Option<crate::live_upgrade::UpgradeStatus>,
}

/// What the coordinator keeps of a job in `data-dir/jobs/ID.json`, written
/// atomically at every change of state, so a restarted coordinator resumes
/// the jobs that were live.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct JobRecord {
    id: String,
    /// Counts the writes of this record.
    #[serde(default)]
    version: u64,
    request: JobRequest,
    state: String,
    error: Option<String>,
    attempt: u32,
    restarts: u32,
}

/// What a client asks to run.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
pub struct JobRequest {
    /// The plugin's SHA-256, uploaded before.
    pub plugin: String,
    /// `key=value` config.
    #[serde(default)]
    pub config: Vec<String>,
    /// Restarts allowed after failures.
    #[serde(default)]
    pub restarts: u32,
    /// Wait before a restart, in ms.
    #[serde(default = "default_delay")]
    pub restart_delay_ms: u64,
    /// Multiply the wait by this for each attempt in a row that failed
    /// within a minute (1: a fixed delay; a tenant's jobs: at least 2).
    #[serde(default = "default_backoff")]
    pub restart_backoff: f64,
    /// The longest wait before a restart, in ms.
    #[serde(default = "default_max_delay")]
    pub restart_max_delay_ms: u64,
    /// Flink's failure-rate strategy: `restarts` restarts per this many
    /// ms (a sliding window) instead of in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_window_ms: Option<u64>,
    /// Memory limit of each plugin instance, in MiB.
    #[serde(default = "default_memory")]
    pub memory_limit_mib: usize,
    /// Longest guest call, in ms.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_ms: u64,
    /// Take checkpoints into this folder (one every workers can reach) and
    /// restart from the newest one after a failure: exactly-once with
    /// transactional sinks.
    #[serde(default)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Start from this savepoint (at any parallelism).
    #[serde(default)]
    pub from_savepoint: Option<PathBuf>,
    /// The tenant the job belongs to (none: the admin's); set by the
    /// coordinator from the token, never taken from the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Whether guests read the real WASI clocks (the tenant's policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clocks: Option<bool>,
    /// Where keyed state lives: `memory` (the default) or `rocksdb` (on
    /// each worker's disk, under its cache folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_backend: Option<String>,
}

fn default_delay() -> u64 {
    1000
}
fn default_backoff() -> f64 {
    1.0
}
fn default_max_delay() -> u64 {
    60_000
}
// 0: not given; the tenant's quota or the admin's default decides.
fn default_memory() -> usize {
    0
}
fn default_call_timeout() -> u64 {
    0
}

/// A job as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// Its id.
    pub id: String,
    /// The job's name (from the plugin).
    pub name: String,
    /// Its state and details.
    pub state: JobState,
    /// The attempt (0 = first run).
    pub attempt: u32,
    /// Worker names per task: `placement[task][subtask]`.
    pub placement: Vec<Vec<String>>,
    /// Per node: name, records in, records out so far (the current
    /// attempt's, over its workers; updated with every heartbeat).
    pub nodes: Vec<(String, u64, u64)>,
    /// Records dropped as late.
    pub late_records: u64,
    /// Seconds since it was submitted (until it ended).
    pub seconds: f64,
    /// Milliseconds from submission to running.
    pub start_ms: Option<u64>,
    /// The savepoint it stopped with.
    pub savepoint: Option<PathBuf>,
    /// What was asked for (plugin hash, config, restarts, folders).
    pub request: JobRequest,
    /// The newest live upgrade (`flinkw upgrade`), if any.
    pub upgrade: Option<crate::live_upgrade::UpgradeStatus>,
}

/// A worker as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    /// Its id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Slots offered.
    pub slots: u32,
    /// Slots taken by live jobs.
    pub used: u32,
    /// Where it takes data.
    pub data_addr: SocketAddr,
}

/// The coordinator's state, shared by its sessions, clock and REST API.
pub struct Coordinator {
    pub(crate) workers: Mutex<BTreeMap<u32, WorkerEntry>>,
    pub(crate) jobs: Mutex<BTreeMap<String, JobEntry>>,
    next_worker: Mutex<u32>,
    next_job: Mutex<u64>,
    pub(crate) options: CoordinatorOptions,
    /// Tenants, their tokens and quotas.
    pub(crate) tenants: crate::tenant::TenantStore,
    /// What was deployed, cancelled, … by whom.
    pub(crate) audit: crate::audit::AuditLog,
    /// Job records and plugins.
    job_store: crate::records::JobStore,
    engine: Engine,
    started: Instant,
}

/// Deployments to send once the job's state says it waits for them.
type Deploys = Vec<(mpsc::UnboundedSender<ToWorker>, ToWorker)>;
impl Coordinator {
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn plugin_path(&self, hash: &str) -> PathBuf {
        self.options.data_dir.join("plugins").join(format!("{hash}.wasm"))
    }

    /// Stores a plugin by its content hash; returns the hash.
    pub fn store_plugin(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let hash = hex::encode(Sha256::digest(bytes));
        self.cache_plugin(&hash, bytes)?;
        self.job_store.put_plugin(&hash, bytes)?;
        Ok(hash)
    }

    /// Keeps a plugin in the data dir, where workers' downloads read it.
    fn cache_plugin(&self, hash: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.plugin_path(hash);
        if !path.exists() {
            std::fs::create_dir_all(path.parent().context("no plugin folder")?)?;
            let tmp = path.with_extension(format!("part{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    /// A stored plugin's bytes (`GET /v1/plugins/{hash}`).
    pub fn stored_plugin(&self, hash: &str) -> anyhow::Result<Vec<u8>> {
        self.plugin_bytes(hash)
    }

    /// A stored plugin: from the data dir, else from the job store (a
    /// coordinator taking over another's jobs), then kept in the data dir.
    fn plugin_bytes(&self, hash: &str) -> anyhow::Result<Vec<u8>> {
        if let Ok(bytes) = std::fs::read(self.plugin_path(hash)) {
            return Ok(bytes);
        }
        match self.job_store.plugin(hash)? {
            Some(bytes) => {
                self.cache_plugin(hash, &bytes)?;
                Ok(bytes)
            }
            None => anyhow::bail!("no plugin {hash} was uploaded"),
        }
    }

    /// Checks and plans a job, then schedules it; returns its id.
    pub fn submit(self: &Arc<Self>, request: JobRequest) -> anyhow::Result<String> {
        // A tenant's deploy rate and crash-loop backoff, before planning.
        crate::tenant_api::before_plan(self, &request, self.now_ms())?;
        let id = self.next_id();
        // Planning runs the tenant's code here: its CPU time is the tenant's.
        let tenant = request.tenant.clone();
        let cpu = flinkw_host::runtime::thread_cpu_ns();
        let entry = self.entry(&id, request);
        if let Some(t) = &tenant {
            let used = flinkw_host::runtime::thread_cpu_ns().saturating_sub(cpu);
            self.tenants.charge_plan(t, used);
        }
        let entry = entry?;
        // Quotas: refused here, nothing started; admitted under a lock
        // held until the job is registered.
        let _admitted = crate::tenant_api::admit(self, &entry)?;
        let mut entry = entry;
        let actions = entry.lifecycle.start();
        // A job store shared with another coordinator may hold this id
        // already: the record is created create-only, else the next id.
        let mut id = id;
        for _ in 0..1000 {
            if self.persist(&mut entry) {
                break;
            }
            id = self.next_id();
            entry.id = id.clone();
        }
        tracing::info!(job = %id, name = %entry.name, "job submitted");
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), entry);
        self.act(&id, actions);
        Ok(id)
    }

    fn next_id(&self) -> String {
        let mut next = self.next_job.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        format!("job-{}", *next)
    }

    /// Writes a job's record to the job store, whole in one put (never
    /// half written); its first write is create-only. False if that found
    /// a record with the job's id.
    pub(crate) fn persist(&self, j: &mut JobEntry) -> bool {
        let (state, error) = match &j.lifecycle.state {
            JobState::Failed { error } => ("failed", Some(error.clone())),
            s => (s.name(), None),
        };
        j.record_version += 1;
        let record = JobRecord {
            id: j.id.clone(),
            version: j.record_version,
            request: j.request.clone(),
            state: state.to_owned(),
            error,
            attempt: j.lifecycle.attempt,
            restarts: j.lifecycle.restarts,
        };
        let bytes = match serde_json::to_vec_pretty(&record) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(job = %j.id, error = %e, "cannot encode the job's record");
                return true;
            }
        };
        let written = if record.version == 1 {
            self.job_store.create_record(&j.id, bytes)
        } else {
            self.job_store.put_record(&j.id, bytes).map(|()| true)
        };
        match written {
            Ok(created) => {
                if !created {
                    j.record_version = 0;
                }
                created
            }
            Err(e) => {
                tracing::warn!(job = %j.id, error = %e, "cannot write the job's record");
                true
            }
        }
    }

    /// After a restart: takes back the jobs of the records; the live ones
    /// restart (from their newest checkpoint) once workers offer slots.
    fn recover(&self) -> anyhow::Result<()> {
        let records = self
            .job_store
            .records()
            .with_context(|| format!("cannot read the job records in {}", self.job_store.url()))?;
        for (name, bytes) in records {
            let record: JobRecord = match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                Err(err) => {
                    tracing::warn!(file = %name, error = %err, "skipping a job record");
                    continue;
                }
            };
            let n: u64 = record.id.trim_start_matches("job-").parse().unwrap_or(0);
            {
                let mut next = self.next_job.lock().unwrap_or_else(|p| p.into_inner());
                *next = (*next).max(n);
            }
            let mut entry = match self.entry(&record.id, record.request.clone()) {
                Ok(j) => j,
                Err(err) => {
                    tracing::warn!(job = %record.id, error = %err, "cannot take a job back");
                    continue;
                }
            };
            entry.lifecycle.state = match record.state.as_str() {
                "finished" => JobState::Finished,
                "cancelled" => JobState::Cancelled,
                "failed" => JobState::Failed { error: record.error.unwrap_or_default() },
                _ => {
                    // A new attempt that does not count against the restarts.
                    entry.lifecycle.attempt = record.attempt + 1;
                    entry.lifecycle.restarts = record.restarts + 1;
                    eprintln!(
                        "coordinator: resuming job {} (attempt {})",
                        record.id,
                        record.attempt + 2
                    );
                    JobState::Restarting { error: "the coordinator restarted".into(), at_ms: 0 }
                }
            };
            if entry.lifecycle.state.is_terminal() {
                entry.ended = Some(Instant::now());
            }
            entry.record_version = record.version.max(1);
            self.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(record.id, entry);
        }
        Ok(())
    }

    /// Loads and plans a job's plugin into a new job entry.
    /// Loads stored plugin `hash` to plan with, under the limits of a job
    /// of `request`; a tenant's plugin is untrusted and compiled with limits.
    pub(crate) fn load_plugin(&self, hash: &str, request: &JobRequest) -> anyhow::Result<Plugin> {
        let bytes = self.plugin_bytes(hash)?;
        let (memory_mib, call_ms) = limits_of(request);
        // `plan` runs here under the job's own limits.
        let engine = self.engine.with_limits(Limits {
            memory_bytes: memory_mib << 20,
            call_timeout: Duration::from_millis(call_ms),
            clocks: request.clocks.unwrap_or(true),
            ..Limits::default()
        });
        Ok(match request.tenant {
            Some(_) => crate::compile_guard::load(
                &engine,
                hash,
                bytes,
                &crate::compile_guard::CompileLimits::default(),
            )?,
            None => Plugin::load(&engine, hash, &bytes)?,
        })
    }

    fn entry(&self, id: &str, request: JobRequest) -> anyhow::Result<JobEntry> {
        if let Some(b) =
            request.state_backend.as_deref().filter(|b| !["memory", "rocksdb"].contains(b))
        {
            anyhow::bail!("state backend {b:?} is not one flinkw has: memory or rocksdb");
        }
        let plugin = self.load_plugin(&request.plugin, &request)?;
        let (memory_mib, call_ms) = limits_of(&request);
        let config = JobConfig::parse(&request.config)?;
        let graph = plan_job(&plugin, &config)?;
        let physical = physical_plan(&graph, config.parallelism)?;
        let needs = physical
            .tasks
            .iter()
            .map(|t| TaskNeeds {
                parallelism: t.parallelism,
                // One file or stdout written by several processes would
                // interleave or clobber: keep such sinks in one process.
                single_process: t.nodes.iter().any(|n| {
                    graph.node(*n).is_some_and(|n| {
                        matches!(&n.kind, NodeKind::Sink(c) if c.kind == "file" || c.kind == "stdout")
                    })
                }),
            })
            .collect();
        let lifecycle = Lifecycle::new(request.restarts, request.restart_delay_ms)
            .with_backoff(request.restart_backoff, request.restart_max_delay_ms)
            .with_failure_window(request.restart_window_ms);
        Ok(JobEntry {
            id: id.to_owned(),
            name: graph.name.clone(),
            plugin: request.plugin.clone(),
            config: request.config.clone(),
            needs,
            lifecycle,
            placement: Vec::new(),
            slots: BTreeMap::new(),
            report: PartReport::default(),
            submitted: Instant::now(),
            running_since: None,
            ended: None,
            memory_limit: memory_mib << 20,
            call_timeout_ms: call_ms,
            graph: graph.clone(),
            job_config: config,
            checkpoint_dir: request.checkpoint_dir.clone(),
            checkpoints: None,
            started: Arc::new(AtomicBool::new(false)),
            request,
            savepoint: Arc::new(Mutex::new(None)),
            live: BTreeMap::new(),
            observed: Default::default(),
            record_version: 0,
            upgrade: None,
        })
    }

    /// Applies an event to a job and carries out what follows.
    pub(crate) fn event(&self, job: &str, event: Event) {
        let actions = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let Some(j) = jobs.get_mut(job) else { return };
            let before = j.lifecycle.state.name();
            let actions = j.lifecycle.on(event, self.now_ms());
            let after = j.lifecycle.state.name();
            if before != after {
                tracing::info!(job, from = before, to = after, "job state");
                if after == "running" {
                    j.running_since.get_or_insert_with(Instant::now);
                }
                if j.lifecycle.state.is_terminal() || after == "restarting" {
                    j.slots.clear();
                }
                if j.lifecycle.state.is_terminal() {
                    j.ended = Some(Instant::now());
                    if let Some(tenant) = &j.request.tenant {
                        let error = match &j.lifecycle.state {
                            JobState::Failed { error } => Some(error.as_str()),
                            _ => None,
                        };
                        let ran_ms = j.submitted.elapsed().as_millis() as u64;
                        self.tenants.job_ended(
                            tenant,
                            error.is_some(),
                            ran_ms,
                            self.now_ms(),
                            error.unwrap_or_default(),
                        );
                    }
                }
                if j.lifecycle.state.is_terminal() || after == "failing" {
                    j.checkpoints = None;
                }
                self.persist(j);
            }
            actions
        };
        self.act(job, actions);
    }

    fn act(&self, job: &str, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Schedule => {
                    let (event, sends) = self.schedule(job);
                    // The job waits for its workers before they hear of it: a
                    // fast worker's `Ready` must not come before `Placed`.
                    self.event(job, event);
                    for (tx, deploy) in sends {
                        let _ = tx.send(deploy);
                    }
                }
                Action::Start(ws) => {
                    let attempt = self.attempt(job);
                    if let Some(j) = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).get(job) {
                        j.started.store(true, Ordering::SeqCst);
                    }
                    self.send(&ws, |_| ToWorker::Start { job: job.to_owned(), attempt });
                }
                Action::Cancel(ws) => self.send(&ws, |_| ToWorker::Cancel { job: job.to_owned() }),
            }
        }
    }

    fn attempt(&self, job: &str) -> u32 {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(job)
            .map_or(0, |j| j.lifecycle.attempt)
    }

    fn send(&self, ws: &BTreeSet<u32>, make: impl Fn(u32) -> ToWorker) {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        for w in ws {
            if let Some(entry) = workers.get(w) {
                let _ = entry.tx.send(make(*w));
            }
        }
    }

    /// Places a job's attempt and sends its deployment to the workers.
    fn schedule(&self, job: &str) -> (Event, Deploys) {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut used: BTreeMap<u32, u32> = BTreeMap::new();
        for j in jobs.values() {
            for (w, n) in &j.slots {
                *used.entry(*w).or_default() += n;
            }
        }
        let Some((tenant, needs)) =
            jobs.get(job).map(|j| (j.request.tenant.clone(), j.needs.clone()))
        else {
            return (Event::NoSlots { reason: "the job is gone".into() }, Vec::new());
        };
        let offers: Vec<Offer> = workers
            .iter()
            .map(|(id, w)| Offer {
                worker: *id,
                free: w.slots.saturating_sub(used.get(id).copied().unwrap_or(0)),
            })
            .collect();
        // A tenant's jobs spread: workers where it holds fewest slots first.
        let placed = match tenant {
            Some(t) => {
                let mut busy: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
                for other in jobs.values().filter(|o| o.request.tenant.as_ref() == Some(&t)) {
                    for (w, n) in &other.slots {
                        busy.entry(*w).or_default().0 += n;
                    }
                }
                for (w, n) in &used {
                    busy.entry(*w).or_default().1 += n;
                }
                crate::scheduler::place_spread(&needs, &offers, &busy)
            }
            None => place(&needs, &offers),
        };
        let Some(j) = jobs.get_mut(job) else {
            return (Event::NoSlots { reason: "the job is gone".into() }, Vec::new());
        };
        let (slots, placement) = match placed {
            Ok(p) => (p.slots, p.tasks),
            Err(e) => return (Event::NoSlots { reason: e.to_string() }, Vec::new()),
        };
        j.slots.clear();
        for w in slots {
            *j.slots.entry(w).or_default() += 1;
        }
        let involved: BTreeSet<u32> = placement.iter().flatten().copied().collect();
        // A fresh checkpoint coordinator per attempt, restoring from the
        // newest complete checkpoint.
        j.checkpoints = None;
        j.started = Arc::new(AtomicBool::new(false));
        let mut restore = None;
        let mut from_savepoint = None;
        let mut epoch = None;
        if let Some(dir) = &j.checkpoint_dir {
            let savepoints = Some(dir.join("savepoints"));
            let from = j.request.from_savepoint.as_deref();
            match CheckpointCoordinator::start(&j.graph, &j.job_config, dir, savepoints, from) {
                Ok(c) => {
                    restore = c.restore_id();
                    epoch = Some(c.epoch());
                    from_savepoint =
                        if restore.is_none() { from.map(Path::to_path_buf) } else { None };
                    let c = Arc::new(c);
                    j.checkpoints = Some(c.clone());
                    tokio::spawn(relay_checkpoints(
                        c,
                        j.started.clone(),
                        j.savepoint.clone(),
                        workers
                            .iter()
                            .filter(|(id, _)| involved.contains(id))
                            .map(|(_, w)| w.tx.clone())
                            .collect(),
                        job.to_owned(),
                        j.lifecycle.attempt,
                    ));
                }
                Err(e) => {
                    return (Event::NoSlots { reason: format!("checkpoints: {e}") }, Vec::new());
                }
            }
        }
        let deployment = Deployment {
            job: job.to_owned(),
            attempt: j.lifecycle.attempt,
            plugin: j.plugin.clone(),
            config: j.config.clone(),
            placement: placement.clone(),
            workers: workers.iter().map(|(id, w)| (*id, w.data_addr)).collect(),
            memory_limit: j.memory_limit,
            call_timeout_ms: j.call_timeout_ms,
            checkpoint_dir: j.checkpoint_dir.clone(),
            restore,
            from_savepoint,
            epoch,
            clocks: j.request.clocks.unwrap_or(true),
            state_backend: j.request.state_backend.clone(),
            tenant: j.request.tenant.clone(),
            cpu_percent: j
                .request
                .tenant
                .as_deref()
                .and_then(|t| self.tenants.get(t))
                .map(|t| t.quota.max_cpu_percent)
                .filter(|p| *p > 0),
        };
        j.placement = placement;
        j.report = PartReport::default();
        j.live.clear();
        let sends = involved
            .iter()
            .map(|w| (workers[w].tx.clone(), ToWorker::Deploy(Box::new(deployment.clone()))))
            .collect();
        (Event::Placed { workers: involved }, sends)
    }

    /// A worker's report.
    fn report(&self, worker: u32, message: ToCoordinator) {
        let (job, attempt, event) = match message {
            ToCoordinator::Ready { job, attempt } => (job, attempt, Event::Ready(worker)),
            ToCoordinator::Finished { job, attempt, report } => {
                if let Some(j) = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&job)
                    && j.lifecycle.attempt == attempt
                {
                    j.report.add(&report);
                    j.live.insert(worker, report.nodes.clone());
                    j.observed.keep_checkpoints(attempt, j.checkpoints.as_deref());
                }
                (job, attempt, Event::Finished(worker))
            }
            ToCoordinator::Failed { job, attempt, error, restartable } => {
                tracing::warn!(job, worker, %error, "a job part failed");
                crate::ui::on_failure(self, worker, &job, attempt, &error);
                (job, attempt, Event::Failed { worker, error, restartable })
            }
            ToCoordinator::Ack { job, attempt, ack } => {
                if let Some(c) = self.checkpoints_of(&job, attempt) {
                    c.ack(ack);
                }
                return;
            }
            ToCoordinator::Progress { job, attempt, nodes, subtasks, logs } => {
                let name = crate::ui::worker_name(self, worker);
                let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(j) = jobs.get_mut(&job) {
                    j.observed.log(&name, logs);
                }
                if let Some(j) = jobs.get_mut(&job).filter(|j| j.lifecycle.attempt == attempt) {
                    j.live.insert(worker, nodes);
                    j.observed.observe(worker, attempt, subtasks);
                    j.observed.keep_checkpoints(attempt, j.checkpoints.as_deref());
                }
                return;
            }
            ToCoordinator::SourcesFinished { job, attempt, count } => {
                if let Some(c) = self.checkpoints_of(&job, attempt) {
                    c.sources_finished(count);
                }
                return;
            }
            ToCoordinator::Register { .. } | ToCoordinator::Heartbeat => return,
        };
        if self.attempt(&job) == attempt {
            self.event(&job, event);
        }
    }

    fn checkpoints_of(&self, job: &str, attempt: u32) -> Option<Arc<CheckpointCoordinator>> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let j = jobs.get(job).filter(|j| j.lifecycle.attempt == attempt)?;
        j.checkpoints.clone()
    }

    /// Forgets a worker and tells its jobs.
    fn lose(&self, worker: u32, why: &str) {
        let removed = self.workers.lock().unwrap_or_else(|p| p.into_inner()).remove(&worker);
        if let Some(w) = removed {
            tracing::warn!(worker, name = %w.name, why, "worker lost");
            w.connection.close(quinn::VarInt::from_u32(1), b"lost");
            let ids: Vec<String> =
                self.jobs.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
            for id in ids {
                self.event(&id, Event::WorkerLost(worker));
            }
        }
    }

    /// Every job, newest last.
    pub fn job_statuses(&self) -> Vec<JobStatus> {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<JobStatus> = jobs.values().map(|j| status(j, &workers)).collect();
        all.sort_by_key(|s| s.id.trim_start_matches("job-").parse::<u64>().unwrap_or(0));
        all
    }

    /// One job.
    pub fn job_status(&self, id: &str) -> Option<JobStatus> {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.get(id).map(|j| status(j, &workers))
    }

    /// Every worker.
    pub fn worker_statuses(&self) -> Vec<WorkerStatus> {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        workers
            .iter()
            .map(|(id, w)| WorkerStatus {
                id: *id,
                name: w.name.clone(),
                slots: w.slots,
                used: jobs.values().filter_map(|j| j.slots.get(id)).sum(),
                data_addr: w.data_addr,
            })
            .collect()
    }

    /// Stops a running job with a savepoint (into its checkpoint folder's
    /// `savepoints/`); the job then finishes and its status names the savepoint.
    pub fn stop_with_savepoint(&self, id: &str) -> anyhow::Result<()> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let j = jobs.get(id).ok_or_else(|| anyhow::anyhow!("no job {id}"))?;
        if j.checkpoint_dir.is_none() {
            anyhow::bail!(
                "job {id} has no checkpoint folder: deploy it with --checkpoint-dir to take savepoints"
            );
        }
        match (&j.lifecycle.state, &j.checkpoints) {
            (JobState::Running { .. }, Some(c)) if c.stop_with_savepoint() => Ok(()),
            (s, _) => anyhow::bail!("job {id} is {}, not running", s.name()),
        }
    }

    /// Cancels a job; false if there is no such job.
    pub fn cancel(&self, id: &str) -> bool {
        if !self.jobs.lock().unwrap_or_else(|p| p.into_inner()).contains_key(id) {
            return false;
        }
        self.event(id, Event::Cancel);
        true
    }
}

/// A job's memory limit per instance (MiB) and call timeout (ms).
fn limits_of(request: &JobRequest) -> (usize, u64) {
    let memory_mib = if request.memory_limit_mib == 0 { 512 } else { request.memory_limit_mib };
    let call_ms = if request.call_timeout_ms == 0 { 10_000 } else { request.call_timeout_ms };
    (memory_mib, call_ms)
}

/// The per-node counts of every worker, summed.
fn live_nodes(live: &BTreeMap<u32, Vec<(String, u64, u64)>>) -> Vec<(String, u64, u64)> {
    let mut sum = PartReport::default();
    for nodes in live.values() {
        sum.add(&PartReport { nodes: nodes.clone(), ..PartReport::default() });
    }
    sum.nodes
}

fn status(j: &JobEntry, workers: &BTreeMap<u32, WorkerEntry>) -> JobStatus {
    let name =
        |w: &u32| workers.get(w).map_or_else(|| format!("worker {w} (lost)"), |e| e.name.clone());
    JobStatus {
        id: j.id.clone(),
        name: j.name.clone(),
        state: j.lifecycle.state.clone(),
        attempt: j.lifecycle.attempt,
        placement: j.placement.iter().map(|t| t.iter().map(name).collect()).collect(),
        nodes: live_nodes(&j.live),
        late_records: j.report.late_records,
        seconds: j.ended.unwrap_or_else(Instant::now).duration_since(j.submitted).as_secs_f64(),
        start_ms: j.running_since.map(|r| r.duration_since(j.submitted).as_millis() as u64),
        savepoint: j.savepoint.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        request: j.request.clone(),
        upgrade: j.upgrade.clone(),
    }
}

/// Runs a coordinator until the process is stopped.
pub fn run(options: CoordinatorOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("flinkw-coord")
        .build()
        .context("cannot start the network runtime")?;
    runtime.block_on(serve(options))
}

async fn serve(options: CoordinatorOptions) -> anyhow::Result<()> {
    let identity = Identity::load(&options.certs)?;
    let endpoint = identity.endpoint(options.listen)?;
    let engine = Engine::new(Limits::default(), Some(options.data_dir.join("compiled")))?;
    let listener = tokio::net::TcpListener::bind(options.rest)
        .await
        .with_context(|| format!("cannot listen on {} for the REST API", options.rest))?;
    let quic_addr = endpoint.local_addr()?;
    let rest_addr = listener.local_addr()?;
    let storage =
        options.tenant_storage.clone().unwrap_or_else(|| options.data_dir.join("storage"));
    let tenants = crate::tenant::TenantStore::open(&options.data_dir, storage)?;
    let audit = crate::audit::AuditLog::new(&options.data_dir);
    let job_store = crate::records::JobStore::open(
        &options.job_store.clone().unwrap_or_else(|| options.data_dir.display().to_string()),
    )?;
    let coordinator = Arc::new(Coordinator {
        tenants,
        audit,
        job_store,
        workers: Mutex::new(BTreeMap::new()),
        jobs: Mutex::new(BTreeMap::new()),
        next_worker: Mutex::new(0),
        next_job: Mutex::new(0),
        options,
        engine,
        started: Instant::now(),
    });
    coordinator.recover()?;
    eprintln!(
        "coordinator: workers join at {quic_addr}, REST API on http://{rest_addr}, job records in {}",
        coordinator.job_store.url()
    );
    tokio::spawn(clock(coordinator.clone()));
    let app = crate::rest::router(coordinator.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the REST API stopped");
        }
    });
    while let Some(incoming) = endpoint.accept().await {
        let c = coordinator.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(connection) => c.session(connection).await,
                Err(e) => eprintln!("coordinator: refused a connection: {e}"),
            }
        });
    }
    Ok(())
}

/// Tells an attempt's workers of new barriers and completed checkpoints
/// until the attempt's checkpoint coordinator is dropped.
async fn relay_checkpoints(
    c: Arc<CheckpointCoordinator>,
    started: Arc<AtomicBool>,
    savepoint: Arc<Mutex<Option<PathBuf>>>,
    txs: Vec<mpsc::UnboundedSender<ToWorker>>,
    job: String,
    attempt: u32,
) {
    let (mut requested, mut completed) = (0, c.completed());
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    // The coordinator's entry holds the other reference while the attempt lives.
    while Arc::strong_count(&c) > 1 {
        tick.tick().await;
        // Barriers requested before the workers started are sent at the
        // start: a worker still setting up would not have heard them.
        if !started.load(Ordering::SeqCst) {
            continue;
        }
        let (r, final_id) = c.requested();
        if r > requested {
            requested = r;
            let upgrade = c.upgrade_barrier().filter(|(id, _)| *id == r).map(|(_, hash)| hash);
            for tx in &txs {
                let _ = tx.send(ToWorker::Trigger {
                    job: job.clone(),
                    attempt,
                    id: r,
                    is_final: final_id == r,
                    upgrade: upgrade.clone(),
                });
            }
        }
        let done = c.completed();
        if done > completed {
            completed = done;
            for tx in &txs {
                let _ = tx.send(ToWorker::Complete { job: job.clone(), attempt, id: done });
            }
        }
        // After the savepoint's completion: stop.
        if let Some(path) = c.savepoint() {
            let mut sp = savepoint.lock().unwrap_or_else(|p| p.into_inner());
            if sp.is_none() {
                *sp = Some(path);
                for tx in &txs {
                    let _ = tx.send(ToWorker::Halt { job: job.clone(), attempt });
                }
            }
        }
    }
}

/// Heartbeat timeouts and restart delays.
async fn clock(c: Arc<Coordinator>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let silent: Vec<u32> = c
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, w)| w.last_seen.elapsed() > c.options.heartbeat_timeout)
            .map(|(id, _)| *id)
            .collect();
        for w in silent {
            c.lose(w, "no heartbeat");
        }
        let ids: Vec<String> =
            c.jobs.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        for id in ids {
            c.event(&id, Event::Tick);
        }
        c.settle_upgrades();
    }
}

impl Coordinator {
    /// One worker's connection: its session stream and plugin downloads.
    async fn session(self: Arc<Self>, connection: quinn::Connection) {
        let (mut send, mut recv) = match connection.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "a connection closed before its session");
                return;
            }
        };
        let Ok(ToCoordinator::Register { name, slots, data_addr }) = read_frame(&mut recv).await
        else {
            return;
        };
        let id = {
            let mut next = self.next_worker.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _ = tx.send(ToWorker::Registered { worker: id });
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            WorkerEntry {
                name: name.clone(),
                slots,
                data_addr,
                tx,
                last_seen: Instant::now(),
                connection: connection.clone(),
            },
        );
        tracing::info!(worker = id, %name, slots, %data_addr, "worker joined");
        // Plugin downloads come on streams of their own.
        let me = self.clone();
        let downloads = connection.clone();
        tokio::spawn(async move {
            while let Ok((mut send, mut recv)) = downloads.accept_bi().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let Ok(hash) = read_raw(&mut recv, 64).await else { return };
                    let hash = String::from_utf8_lossy(&hash).into_owned();
                    if hash.bytes().all(|b| b.is_ascii_hexdigit())
                        && let Ok(bytes) = std::fs::read(me.plugin_path(&hash))
                    {
                        let _ = send.write_all(&bytes).await;
                    }
                    let _ = send.finish();
                });
            }
        });
        // Frames are read on a task of their own: a read in the `select!`
        // below would be dropped halfway whenever a command goes out first,
        // and the stream would lose its framing.
        let mut inbox = read_frames::<ToCoordinator>(recv);
        let why = loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(m) => if let Err(e) = write_frame(&mut send, &m).await { break e.to_string() },
                    None => break "dropped".to_owned(),
                },
                message = inbox.recv() => match message.unwrap_or(Err(crate::control::FrameError::Closed)) {
                    Ok(m) => {
                        if let Some(w) = self.workers.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
                            w.last_seen = Instant::now();
                        }
                        self.report(id, m);
                    }
                    Err(e) => break e.to_string(),
                },
            }
        };
        self.lose(id, &why);
    }
}

/// Reads frames from `recv` on a task of its own until the first error
/// (which is passed on too), so that receiving is cancel-safe in a `select!`.
pub(crate) fn read_frames<T: serde::de::DeserializeOwned + Send + 'static>(
    mut recv: quinn::RecvStream,
) -> mpsc::UnboundedReceiver<Result<T, crate::control::FrameError>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let frame = read_frame::<T>(&mut recv).await;
            let end = frame.is_err();
            if tx.send(frame).is_err() || end {
                return;
            }
        }
    });
    rx
}
