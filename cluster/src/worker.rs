//! `flinkw worker`: offers task slots to a coordinator and runs the
//! subtasks placed on it.
//!
//! A worker keeps one session with the coordinator (register, heartbeats,
//! reports; commands back), fetches plugins by content hash into its cache
//! (so a redeploy of the same plugin neither downloads nor compiles
//! anything), and runs each job's subtasks on the embedded runtime's code,
//! with channels to other workers over the [`DataPlane`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use flinkw_host::config::JobConfig;
use flinkw_host::engine::Engine;
use flinkw_host::limits::Limits;
use flinkw_host::plugin::Plugin;
use flinkw_host::runtime::{
    Canceller, CheckpointLink, JobError, LiveCounts, MetricsHandle, PreparedJob, RunOptions,
    prepare_job,
};
use flinkw_host::state::StateBackendKind;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::control::{
    Deployment, PartReport, ToCoordinator, ToWorker, read_frame, write_frame, write_raw,
};
use crate::cpu_groups::CpuGroups;
use crate::data::DataPlane;
use crate::tls::{Identity, SERVER_NAME};

/// How often a worker says it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// The largest plugin a worker downloads.
const MAX_PLUGIN: usize = 512 << 20;

/// How a worker is started.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator's QUIC address.
    pub coordinator: SocketAddr,
    /// Where to take data from other workers.
    pub bind: SocketAddr,
    /// Task slots offered.
    pub slots: u32,
    /// The worker's name.
    pub name: String,
    /// Folder with `ca.pem`, `node.pem`, `node.key`.
    pub certs: PathBuf,
    /// Plugins and compiled plugins.
    pub cache_dir: PathBuf,
    /// How long to keep trying to reach the coordinator at start.
    pub connect_timeout: Duration,
    /// The data address other workers are told (default: the bound one);
    /// for a worker behind NAT, a proxy or a relay.
    pub advertise: Option<SocketAddr>,
    /// Put each tenant's threads in a cgroup of its own, with equal CPU
    /// shares ([`crate::cpu_groups`]); off: plain threads.
    pub cpu_groups: bool,
}

/// Runs a worker until its coordinator goes away for good.
pub fn run(options: WorkerOptions) -> anyhow::Result<()> {
    let groups = if options.cpu_groups { CpuGroups::open(&options.name) } else { CpuGroups::off() };
    remove_groups_on_signal(&groups);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("flinkw-net")
        .build()
        .context("cannot start the network runtime")?;
    let result = runtime.block_on(serve(options, groups.clone()));
    crate::cpu_groups::remove_now(&groups);
    result
}

/// Set by SIGTERM/SIGINT: remove the tenants' cgroups and exit.
static TERMINATED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: libc::c_int) {
    TERMINATED.store(true, Ordering::SeqCst);
}

/// With cgroups in use, SIGTERM and SIGINT remove them before the worker
/// exits (a watcher thread does the work: a signal handler may not).
fn remove_groups_on_signal(groups: &CpuGroups) {
    if !groups.enabled() {
        return;
    }
    let handler = on_terminate as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
    let groups = groups.clone();
    let _ = std::thread::Builder::new().name("flinkw-signals".into()).spawn(move || {
        while !TERMINATED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        crate::cpu_groups::remove_now(&groups);
        std::process::exit(143);
    });
}

/// A job attempt on this worker.
enum Part {
    Prepared(Box<PreparedJob>),
    Running(Canceller),
}

struct Worker {
    options: WorkerOptions,
    plane: Arc<DataPlane>,
    connection: quinn::Connection,
    events: mpsc::UnboundedSender<ToCoordinator>,
    parts: Mutex<HashMap<String, (u32, Part, Deployment)>>,
    engine: Mutex<Option<Engine>>,
    links: Mutex<HashMap<(String, u32), Arc<CheckpointLink>>>,
    live: Mutex<HashMap<(String, u32), (LiveCounts, MetricsHandle)>>,
    /// One lock per plugin hash being downloaded: concurrent deploys of a
    /// plugin download it once (they used to race on one `.part` file).
    downloads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Each tenant's threads in a cgroup of its own.
    groups: CpuGroups,
    id: u32,
}

async fn serve(options: WorkerOptions, groups: CpuGroups) -> anyhow::Result<()> {
    let identity = Identity::load(&options.certs)?;
    let endpoint = identity.endpoint(options.bind)?;
    let plane = DataPlane::new(endpoint.clone(), tokio::runtime::Handle::current());
    tokio::spawn(plane.clone().serve());
    // A lost coordinator (restarted, or cut off) is joined again; a
    // coordinator that cannot be reached within the timeout ends the worker.
    loop {
        let lost = session(&options, &endpoint, &plane, &groups).await?;
        eprintln!("lost the coordinator at {}: {lost}; joining again", options.coordinator);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One session with the coordinator: returns why it ended once it was
/// registered, fails if it could not register.
async fn session(
    options: &WorkerOptions,
    endpoint: &quinn::Endpoint,
    plane: &Arc<DataPlane>,
    groups: &CpuGroups,
) -> anyhow::Result<String> {
    let data_addr = match options.advertise {
        Some(a) => a,
        None => endpoint.local_addr().context("no local address")?,
    };
    let connection = connect(endpoint, options.coordinator, options.connect_timeout).await?;
    let (mut send, mut recv) = connection.open_bi().await.context("cannot open a session")?;
    write_frame(
        &mut send,
        &ToCoordinator::Register { name: options.name.clone(), slots: options.slots, data_addr },
    )
    .await?;
    let id = match read_frame(&mut recv).await {
        Ok(ToWorker::Registered { worker }) => worker,
        Ok(other) => bail!("the coordinator answered {other:?} to registration"),
        Err(e) => bail!("the coordinator at {} closed the session: {e}", options.coordinator),
    };
    tracing::info!(worker = id, %data_addr, "registered with the coordinator");
    eprintln!("worker {} registered as {id}, data on {data_addr}", options.name);
    let (events, mut outbox) = mpsc::unbounded_channel();
    let worker = Arc::new(Worker {
        options: options.clone(),
        plane: plane.clone(),
        connection: connection.clone(),
        events,
        parts: Mutex::new(HashMap::new()),
        engine: Mutex::new(None),
        links: Mutex::new(HashMap::new()),
        live: Mutex::new(HashMap::new()),
        downloads: Mutex::new(HashMap::new()),
        groups: groups.clone(),
        id,
    });
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    // Cancel-safe: a read inside the `select!` could be dropped halfway.
    let mut inbox = crate::coordinator::read_frames::<ToWorker>(recv);
    let lost = loop {
        let written = tokio::select! {
            command = inbox.recv() => match command.unwrap_or(Err(crate::control::FrameError::Closed)) {
                Ok(command) => {
                    worker.clone().handle(command);
                    Ok(())
                }
                Err(e) => break e.to_string(),
            },
            Some(event) = outbox.recv() => write_frame(&mut send, &event).await,
            _ = heartbeat.tick() => {
                for m in worker.progress() {
                    if let Err(e) = write_frame(&mut send, &m).await {
                        return Ok(e.to_string());
                    }
                }
                write_frame(&mut send, &ToCoordinator::Heartbeat).await
            }
        };
        if let Err(e) = written {
            break e.to_string();
        }
    };
    // Without a coordinator nothing can complete: stop every job here.
    worker.cancel_all();
    connection.close(quinn::VarInt::from_u32(0), b"session lost");
    Ok(lost)
}

/// Connects to the coordinator, retrying with backoff until `timeout`; a
/// refused certificate fails at once.
async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<quinn::Connection> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = Duration::from_millis(50);
    loop {
        let error = match endpoint.connect(addr, SERVER_NAME)?.await {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        let text = error.to_string();
        if text.contains("certificate") || text.contains("crypto") || text.contains("alert") {
            bail!(
                "the coordinator at {addr} refused this node's certificate, or presented one \
                 this node does not trust ({text}); both need certificates from the same \
                 cluster CA (`flinkw cert`)"
            );
        }
        if tokio::time::Instant::now() + wait > deadline {
            bail!("cannot reach the coordinator at {addr}: {text} (gave up after {timeout:?})");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// A part's report of its progress.
fn progress(job: &str, attempt: u32, counts: &LiveCounts, m: &MetricsHandle) -> ToCoordinator {
    ToCoordinator::Progress {
        job: job.to_owned(),
        attempt,
        nodes: counts.read(),
        subtasks: m.sample(),
        logs: crate::logs::take(job),
    }
}

impl Worker {
    fn handle(self: Arc<Self>, command: ToWorker) {
        match command {
            ToWorker::Registered { .. } => {}
            ToWorker::Deploy(d) => {
                tokio::spawn(async move {
                    let (job, attempt) = (d.job.clone(), d.attempt);
                    if let Err(e) = self.clone().deploy(*d).await {
                        let restartable =
                            e.downcast_ref::<JobError>().is_none_or(|j| j.is_restartable());
                        let _ = self.events.send(ToCoordinator::Failed {
                            job,
                            attempt,
                            error: format!("worker {}: {e:#}", self.options.name),
                            restartable,
                        });
                    }
                });
            }
            ToWorker::Start { job, attempt } => self.start(&job, attempt),
            ToWorker::Trigger { job, attempt, id, is_final, upgrade } => {
                let Some(link) = self.link(&job, attempt) else { return };
                let Some(hash) = upgrade else { return link.trigger(id, is_final) };
                // A live upgrade's barrier: the new plugin is loaded first,
                // while the subtasks go on with the old one.
                tokio::spawn(async move {
                    let plugin = self.upgrade_plugin(&job, &hash).await.map_err(|e| {
                        format!("worker {}: cannot load plugin {hash}: {e:#}", self.options.name)
                    });
                    link.upgrade_at(id, plugin);
                    link.trigger(id, is_final);
                });
            }
            ToWorker::Complete { job, attempt, id } => {
                if let Some(link) = self.link(&job, attempt) {
                    link.complete(id);
                }
            }
            ToWorker::Halt { job, attempt } => {
                if let Some(link) = self.link(&job, attempt) {
                    link.halt();
                }
            }
            ToWorker::Cancel { job } => {
                let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
                match parts.get(&job) {
                    // The run's thread reports when its subtasks stopped.
                    Some((_, Part::Running(c), _)) => c.cancel(),
                    Some((attempt, Part::Prepared(_), _)) => {
                        let attempt = *attempt;
                        parts.remove(&job);
                        self.plane.unregister(&job, attempt);
                        let report = PartReport::default();
                        let _ = self.events.send(ToCoordinator::Finished { job, attempt, report });
                    }
                    None => {}
                }
            }
        }
    }

    fn link(&self, job: &str, attempt: u32) -> Option<Arc<CheckpointLink>> {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(job.to_owned(), attempt))
            .cloned()
    }

    /// Relays a job attempt's checkpoint acknowledgements and finished
    /// sources to the coordinator until `done`.
    fn relay(&self, job: &str, attempt: u32, link: &CheckpointLink, done: &AtomicBool) {
        let mut finished = 0;
        loop {
            let stop = done.load(Ordering::SeqCst);
            while let Some(ack) = link.next_ack(Duration::from_millis(if stop { 0 } else { 10 })) {
                let _ = self.events.send(ToCoordinator::Ack { job: job.to_owned(), attempt, ack });
            }
            let now = link.sources_finished();
            if now > finished {
                let count = now - finished;
                finished = now;
                let _ = self.events.send(ToCoordinator::SourcesFinished {
                    job: job.to_owned(),
                    attempt,
                    count,
                });
            }
            if stop {
                return;
            }
        }
    }

    /// The records so far, per-subtask metrics and new log lines of every
    /// running part.
    fn progress(&self) -> Vec<ToCoordinator> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.iter().map(|((job, attempt), (c, m))| progress(job, *attempt, c, m)).collect()
    }

    /// Stops every part of this session: running ones are cancelled (their
    /// threads end by themselves), prepared ones dropped.
    fn cancel_all(&self) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        if !parts.is_empty() {
            eprintln!(
                "worker {}: stopping {} stale job part(s) ({}); the coordinator restarts them elsewhere",
                self.options.name,
                parts.len(),
                parts
                    .iter()
                    .map(|(j, (a, _, _))| format!("{j} attempt {a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        parts.retain(|job, (attempt, part, _)| match part {
            Part::Running(c) => {
                c.cancel();
                true
            }
            Part::Prepared(_) => {
                self.plane.unregister(job, *attempt);
                false
            }
        });
    }

    async fn deploy(self: Arc<Self>, d: Deployment) -> anyhow::Result<()> {
        let bytes = self.plugin(&d.plugin).await?;
        let me = self.id;
        let worker = self.clone();
        let d2 = d.clone();
        let mut prepared = tokio::task::spawn_blocking(move || -> anyhow::Result<PreparedJob> {
            // Compiling and planning the tenant's plugin is the tenant's CPU.
            let _group = worker.groups.enter(d2.tenant.as_deref(), d2.cpu_percent);
            let engine = worker.engine(d2.memory_limit, d2.call_timeout_ms, d2.clocks)?;
            let plugin = Plugin::load(&engine, &d2.plugin, &bytes)?;
            let mut config = JobConfig::parse(&d2.config)?;
            // The plugin sees which attempt it runs in (`flinkw.attempt`).
            config.attempt = d2.attempt;
            let placement = d2.placement.clone();
            let local = move |t: usize, s: u32| {
                placement.get(t).and_then(|p| p.get(s as usize)) == Some(&me)
            };
            // RocksDB under the worker's cache folder; each run gets its own
            // directory there, removed when the run ends.
            let state_backend = match d2.state_backend.as_deref() {
                Some("rocksdb") => StateBackendKind::RocksDb {
                    dir: worker.options.cache_dir.join("state"),
                    block_cache_bytes: 64 << 20,
                },
                _ => StateBackendKind::Memory,
            };
            let options = RunOptions {
                state_backend,
                checkpoint_dir: d2.checkpoint_dir.clone(),
                checkpoints_coordinated_elsewhere: d2.checkpoint_dir.as_ref().map(|_| d2.restore),
                from_savepoint: d2.from_savepoint.clone(),
                fencing_epoch: d2.epoch,
                ..RunOptions::default()
            };
            Ok(prepare_job(&plugin, &config, options, Some(&local))?)
        })
        .await
        .context("the deploy thread died")??;
        if let Some(link) = prepared.checkpoint_link() {
            self.links
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((d.job.clone(), d.attempt), Arc::new(link));
        }
        let inputs: Vec<Vec<_>> = prepared
            .physical()
            .tasks
            .iter()
            .map(|t| (0..t.parallelism).map(|s| prepared.input(t.index, s)).collect())
            .collect();
        let inputs = Arc::new(inputs);
        self.plane.register(
            &d.job,
            d.attempt,
            Arc::new(move |t, s| inputs.get(t).and_then(|i| i.get(s as usize)).cloned().flatten()),
        );
        let (job, attempt) = (d.job.clone(), d.attempt);
        self.parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.clone(), (attempt, Part::Prepared(Box::new(prepared)), d));
        let _ = self.events.send(ToCoordinator::Ready { job, attempt });
        Ok(())
    }

    /// A live upgrade's new plugin, loaded under the limits of `job`'s
    /// deployment here.
    async fn upgrade_plugin(self: &Arc<Self>, job: &str, hash: &str) -> anyhow::Result<Plugin> {
        let bytes = self.plugin(hash).await?;
        let d = self.parts.lock().unwrap_or_else(|p| p.into_inner()).get(job).map(|p| p.2.clone());
        let d = d.with_context(|| format!("no part of job {job} runs here"))?;
        let (worker, hash) = (self.clone(), hash.to_owned());
        tokio::task::spawn_blocking(move || {
            let _group = worker.groups.enter(d.tenant.as_deref(), d.cpu_percent);
            let engine = worker.engine(d.memory_limit, d.call_timeout_ms, d.clocks)?;
            Ok(Plugin::load(&engine, &hash, &bytes)?)
        })
        .await
        .context("the loading thread died")?
    }

    /// The worker's one engine, with the job's limits for its instances.
    fn engine(&self, memory: usize, call_timeout_ms: u64, clocks: bool) -> anyhow::Result<Engine> {
        let limits = Limits {
            memory_bytes: memory,
            call_timeout: Duration::from_millis(call_timeout_ms),
            clocks,
            ..Limits::default()
        };
        let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        if engine.is_none() {
            let cache = Some(self.options.cache_dir.join("compiled"));
            *engine = Some(Engine::new(Limits::default(), cache)?);
        }
        engine.as_ref().map(|e| e.with_limits(limits)).context("no engine")
    }

    /// The plugin with SHA-256 `hash`, from the cache or the coordinator.
    async fn plugin(&self, hash: &str) -> anyhow::Result<Vec<u8>> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("bad plugin hash {hash:?}");
        }
        let path = self.options.cache_dir.join("plugins").join(format!("{hash}.wasm"));
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(bytes);
        }
        let lock = {
            let mut downloads = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
            downloads.entry(hash.to_owned()).or_default().clone()
        };
        let _single = lock.lock().await;
        // Another deploy may have fetched it while this one waited.
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(bytes);
        }
        let (mut send, mut recv) = self.connection.open_bi().await?;
        write_raw(&mut send, hash.as_bytes()).await?;
        send.finish()?;
        let bytes = recv.read_to_end(MAX_PLUGIN).await.context("cannot download the plugin")?;
        let got = hex::encode(Sha256::digest(&bytes));
        if got != hash {
            bail!("the plugin downloaded has SHA-256 {got}, not {hash}");
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("{}.part", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)?;
        self.downloads.lock().unwrap_or_else(|p| p.into_inner()).remove(hash);
        Ok(bytes)
    }

    fn start(self: &Arc<Self>, job: &str, attempt: u32) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let Some((a, part, d)) = parts.remove(job) else { return };
        let Part::Prepared(prepared) = part else {
            parts.insert(job.to_owned(), (a, part, d));
            return;
        };
        if a != attempt {
            return;
        }
        parts.insert(job.to_owned(), (a, Part::Running(prepared.canceller()), d.clone()));
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((job.to_owned(), attempt), (prepared.live_counts(), prepared.metrics()));
        drop(parts);
        let worker = self.clone();
        let job = job.to_owned();
        let spawned =
            std::thread::Builder::new().name(format!("flinkw-job-{job}")).spawn(move || {
                // The subtask threads (and theirs) start in the tenant's group.
                let group = worker.groups.enter(d.tenant.as_deref(), d.cpu_percent);
                let plane = worker.plane.clone();
                let connect = |id: flinkw_host::runtime::ChannelId| {
                    let w = d.placement[id.to_task as usize][id.to_subtask as usize];
                    let peer =
                        d.workers.get(&w).ok_or_else(|| format!("no address for worker {w}"))?;
                    Ok(plane.channel(&d.job, d.attempt, id, *peer))
                };
                let done = Arc::new(AtomicBool::new(false));
                let relay = worker.link(&job, attempt).map(|link| {
                    let (w, j, done) = (worker.clone(), job.clone(), done.clone());
                    std::thread::spawn(move || w.relay(&j, attempt, &link, &done))
                });
                let (counts, metrics) = (prepared.live_counts(), prepared.metrics());
                // Log lines of the job's subtasks name it (shipped to the coordinator).
                let tenant = d.tenant.as_deref().unwrap_or("");
                let span = tracing::error_span!("job", job_id = %job, attempt, tenant);
                let result = span.in_scope(|| prepared.run(&connect));
                // The final counts and log lines, before the end is reported.
                let _ = worker.events.send(progress(&job, attempt, &counts, &metrics));
                done.store(true, Ordering::SeqCst);
                if let Some(r) = relay {
                    let _ = r.join();
                }
                worker
                    .links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(job.clone(), attempt));
                worker
                    .live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(job.clone(), attempt));
                worker.plane.unregister(&job, attempt);
                worker.parts.lock().unwrap_or_else(|p| p.into_inner()).remove(&job);
                // Out of the group (removed if it was the tenant's last job
                // here) before the coordinator hears that the job ended.
                drop(group);
                let event = match result {
                    Ok(r) => ToCoordinator::Finished {
                        job,
                        attempt,
                        report: PartReport {
                            nodes: r
                                .nodes
                                .iter()
                                .map(|n| (n.name.clone(), n.records_in, n.records_out))
                                .collect(),
                            late_records: r.late_records,
                            skipped_lines: r.skipped_lines,
                            counters: r.counters,
                        },
                    },
                    Err(e) => ToCoordinator::Failed {
                        job,
                        attempt,
                        error: format!("worker {}: {e}", worker.options.name),
                        restartable: e.is_restartable(),
                    },
                };
                let _ = worker.events.send(event);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a job thread");
        }
    }
}
