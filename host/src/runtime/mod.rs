//! The embedded runtime: runs a job's tasks on local threads.
//!
//! Each subtask is a thread with its own plugin instance. Subtasks pass
//! packed batches over bounded channels (a full channel blocks the sender:
//! backpressure), routed forward, round-robin or by key group. Bounded
//! sources end the job: when every sink has seen the end of its input, the
//! job is finished.

mod acc_cache;
mod checkpointing;
mod metrics;
mod physical;
mod restart;
mod router;
mod subtask;
mod upgrade;
mod window_op;
mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use checkpointing::{Ack, CheckpointCoordinator, CheckpointLink};
pub use metrics::{
    CheckpointHistory, CheckpointStats, CheckpointStatus, LATENCY_HISTORY, LatencySample,
    MetricsHandle, SubtaskMetrics, SubtaskSample, now_micros, quantile, thread_cpu_ns,
};
pub use physical::{PhysicalPlan, TaskOutput, TaskSpec, plan as physical_plan};
pub use restart::FailureWindow;
pub use upgrade::{Fit, Swap, UpgradeOutcome, UpgradeResult, fit as upgrade_fit};

use crate::config::{ConfigError, JobConfig};
use crate::connector::{ConnectorError, SinkSpec, SourceDefaults, SourceSpec};
use crate::graph::{GraphError, JobGraph, NodeKind};
use crate::plugin::{GuestError, Plugin};
use crate::state::{StateBackendKind, StateError};
pub use router::{Disconnected, Message};
use router::{Output, Router};
pub use wire::{WireError, decode as decode_message, encode as encode_message};

/// Settings of the embedded runtime that are not part of a job's config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where keyed state lives. For RocksDB, each run gets its own
    /// directory under the one given, removed when the job ends.
    pub state_backend: StateBackendKind,
    /// Skip malformed input lines (counting them) instead of failing.
    pub skip_bad_lines: bool,
    /// Largest record a source may produce, in bytes.
    pub max_record_bytes: usize,
    /// Batches buffered per channel before the sender blocks.
    pub channel_capacity: usize,
    /// Take checkpoints into this directory (every `checkpoint.interval-ms`)
    /// and, when it holds a complete one for this job, restore from it.
    pub checkpoint_dir: Option<std::path::PathBuf>,
    /// When `stop` is set, take a savepoint into this directory and stop.
    pub savepoint_dir: Option<std::path::PathBuf>,
    /// The stop-with-savepoint request (set by a signal handler).
    pub stop: Option<&'static AtomicBool>,
    /// Start from this savepoint (a `sp-N` folder), at any parallelism.
    pub from_savepoint: Option<std::path::PathBuf>,
    /// Deterministic replay: restore from checkpoint `N` of
    /// `checkpoint_dir` (0: the newest complete one), take no checkpoints,
    /// and send what every sink would write to stdout instead (nothing is
    /// written or committed). Sources seek to the checkpoint's positions,
    /// so the same records reach the plugin in the same order per channel.
    pub replay: Option<u64>,
    /// `Some(restore)`: another process (a cluster's coordinator) triggers
    /// and completes the checkpoints in `checkpoint_dir`, through the
    /// [`CheckpointLink`] of the prepared job; this process restores from
    /// checkpoint `restore`, if any.
    pub checkpoints_coordinated_elsewhere: Option<Option<u64>>,
    /// With checkpoints coordinated elsewhere: the attempt's fencing epoch,
    /// claimed by that coordinator ([`CheckpointCoordinator::epoch`]).
    /// Embedded runs claim their own. Sinks commit only while no newer
    /// attempt of the job claimed one.
    pub fencing_epoch: Option<u64>,
    /// Hears of each attempt's job once it is prepared, before it runs
    /// (`flinkw run --ui` shows its metrics).
    pub observer: Option<JobObserver>,
}

/// A callback that sees a prepared job before it runs.
#[derive(Clone)]
pub struct JobObserver(pub Arc<dyn Fn(&PreparedJob) + Send + Sync>);

impl std::fmt::Debug for JobObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobObserver")
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            state_backend: StateBackendKind::Memory,
            skip_bad_lines: false,
            max_record_bytes: 16 << 20,
            channel_capacity: 8,
            checkpoint_dir: None,
            savepoint_dir: None,
            stop: None,
            from_savepoint: None,
            replay: None,
            checkpoints_coordinated_elsewhere: None,
            fencing_epoch: None,
            observer: None,
        }
    }
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The plan is invalid.
    #[error("invalid job graph: {0}")]
    Graph(#[from] GraphError),
    /// The plugin failed while planning.
    #[error("{0}")]
    Plan(GuestError),
    /// A connector named in the plan is misconfigured or failed.
    #[error("{node}: {error}")]
    Connector {
        /// The node (and subtask).
        node: String,
        /// What went wrong.
        error: ConnectorError,
    },
    /// The guest failed while processing records.
    #[error("operator {node}: {error}")]
    Guest {
        /// The node (and subtask).
        node: String,
        /// What went wrong.
        error: GuestError,
    },
    /// A record cannot be processed as the job says (e.g. no timestamp where
    /// event time is needed).
    #[error("operator {node}: {reason}")]
    BadRecord {
        /// The node (and subtask).
        node: String,
        /// What is wrong with the record.
        reason: String,
    },
    /// The state backend failed.
    #[error("operator {node}: {error}")]
    State {
        /// The node (and subtask).
        node: String,
        /// What failed.
        error: crate::state::StateError,
    },
    /// The guest returned bytes that are not a valid batch.
    #[error("operator {node}: the plugin returned a malformed batch: {reason}")]
    MalformedBatch {
        /// The node (and subtask).
        node: String,
        /// Why it is malformed.
        reason: String,
    },
    /// Checkpoint storage failed (at start or restore).
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A thread of the runtime died unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// The job's name.
    pub name: String,
    /// Wall time from start to finish.
    pub duration: Duration,
    /// Per node: name, records in, records out.
    pub nodes: Vec<NodeReport>,
    /// Records that arrived after their windows closed, dropped.
    pub late_records: u64,
    /// Malformed lines skipped by sources, with the first one's error.
    pub skipped_lines: u64,
    /// The first skipped line's error.
    pub first_skipped: Option<String>,
    /// The guest's counters, summed over subtasks.
    pub counters: BTreeMap<String, u64>,
    /// The checkpoint the job restored from.
    pub restored_from: Option<u64>,
    /// The newest checkpoint completed during the run.
    pub last_checkpoint: Option<u64>,
    /// Problems with newer checkpoints that the restore skipped.
    pub skipped_checkpoints: Vec<String>,
    /// The savepoint the job stopped with, if it was stopped with one.
    pub savepoint: Option<std::path::PathBuf>,
}

/// Counts for one node.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// The node's name.
    pub name: String,
    /// Records that reached it.
    pub records_in: u64,
    /// Records it emitted (for sinks: written).
    pub records_out: u64,
}

/// Live counters of one node, shared by its subtasks.
#[derive(Debug, Default)]
pub(crate) struct NodeMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
}

/// State shared by every subtask of a running job.
pub(crate) struct Shared {
    pub graph: JobGraph,
    pub config: JobConfig,
    pub plugin: Plugin,
    pub sources: BTreeMap<u32, SourceSpec>,
    pub sinks: BTreeMap<u32, SinkSpec>,
    pub metrics: Arc<BTreeMap<u32, NodeMetrics>>,
    /// Per-subtask metrics of the subtasks in this process.
    pub subtask_metrics: MetricsHandle,
    pub cancelled: Arc<AtomicBool>,
    pub late_records: AtomicU64,
    /// The backend each subtask opens (RocksDB: in this run's directory).
    pub state_backend: StateBackendKind,
    /// Checkpointing, when the job has a checkpoint directory.
    pub checkpoints: Option<Arc<checkpointing::Checkpointing>>,
    pub failure: Mutex<Option<JobError>>,
    /// A deterministic replay ([`RunOptions::replay`]): no checkpoints.
    pub replay: bool,
    pub counters: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    /// Records the first failure and stops the job.
    pub fn fail(&self, error: JobError) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(error);
        }
        self.cancelled.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
            || self.checkpoints.as_ref().is_some_and(|c| c.halt.load(Ordering::Relaxed))
    }
}

/// Removes a run's state directory when the job ends (no checkpoint refers
/// to it yet).
struct RunDir(Option<std::path::PathBuf>);

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Plans `plugin` with `config` and returns its graph without running it.
pub fn plan_job(plugin: &Plugin, config: &JobConfig) -> Result<JobGraph, JobError> {
    let mut instance = plugin.instantiate("plan").map_err(JobError::Plan)?;
    let graph = instance.plan(&config.pairs()).map_err(JobError::Plan)?;
    config.check_keys(&graph.config_keys)?;
    Ok(graph)
}

/// When and how often a failed job is restarted (from its latest
/// checkpoint, when it has a checkpoint directory; from the start otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartStrategy {
    /// Restarts allowed (0 = fail at the first failure).
    pub attempts: u32,
    /// Wait before the first restart.
    pub delay: Duration,
    /// Each further wait is the previous one times this (1 = fixed delay).
    pub backoff: f64,
    /// Longest wait.
    pub max_delay: Duration,
    /// Flink's failure-rate strategy: `attempts` restarts per this much
    /// time (a sliding window) instead of in all; `None`: in all.
    pub window: Option<Duration>,
}

impl Default for RestartStrategy {
    fn default() -> Self {
        RestartStrategy {
            attempts: 0,
            delay: Duration::from_secs(1),
            backoff: 1.0,
            max_delay: Duration::from_secs(60),
            window: None,
        }
    }
}

impl JobError {
    /// Whether running the job again may succeed: failures while running,
    /// not a bad plugin, config or graph.
    pub fn is_restartable(&self) -> bool {
        matches!(
            self,
            JobError::Guest { .. }
                | JobError::Connector { .. }
                | JobError::State { .. }
                | JobError::MalformedBatch { .. }
                | JobError::Internal(_)
        )
    }
}

/// What [`run_with_restarts`] tells its caller of a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Restart {
    /// The job starts again as this attempt after the wait.
    After {
        /// The new attempt's number (1 = the first restart).
        attempt: u32,
        /// The wait before it.
        wait: Duration,
    },
    /// The failure ends the job: the strategy allows no more restarts (why).
    Exhausted(String),
}

/// Runs a job, restarting it on failure as `strategy` allows; `on_failure`
/// hears of each restartable failure and what follows it.
pub fn run_with_restarts(
    plugin: &Plugin,
    config: &JobConfig,
    options: RunOptions,
    strategy: RestartStrategy,
    mut on_failure: impl FnMut(&JobError, Restart),
) -> Result<JobReport, JobError> {
    let mut config = config.clone();
    let mut delay = strategy.delay;
    let started = Instant::now();
    let mut rate =
        strategy.window.map(|w| FailureWindow::new(strategy.attempts, w.as_millis() as u64));
    loop {
        let result = run_job(plugin, &config, options.clone());
        let Err(e) = &result else { return result };
        if !e.is_restartable() {
            return result;
        }
        let allowed = match &mut rate {
            Some(w) => w.failed(started.elapsed().as_millis() as u64),
            None => config.attempt < strategy.attempts,
        };
        if !allowed {
            let why = match &rate {
                Some(w) => w.exhausted(),
                None => format!("--restarts {} used up", strategy.attempts),
            };
            if strategy.attempts > 0 || rate.is_some() {
                on_failure(e, Restart::Exhausted(why));
            }
            return result;
        }
        config.attempt += 1;
        on_failure(e, Restart::After { attempt: config.attempt, wait: delay });
        std::thread::sleep(delay);
        delay = delay.mul_f64(strategy.backoff.max(1.0)).min(strategy.max_delay);
    }
}

/// Runs a job to completion on local threads.
pub fn run_job(
    plugin: &Plugin,
    config: &JobConfig,
    options: RunOptions,
) -> Result<JobReport, JobError> {
    let observer = options.observer.clone();
    let prepared = prepare_job(plugin, config, options, None)?;
    if let Some(o) = observer {
        (o.0)(&prepared);
    }
    prepared.run(&|id| {
        Err(format!("channel {id:?} leads out of this process, but the job runs only here"))
    })
}

/// A channel to a subtask in another process: a cluster's data plane.
pub trait RemoteChannel: Send {
    /// Sends one message, blocking while the receiver has no room for it
    /// (so a slow receiver slows its senders and nothing piles up).
    fn send(&mut self, message: Message) -> Result<(), Disconnected>;
}

/// One channel: from output edge `output` of subtask `from_subtask` of task
/// `from_task` to subtask `to_subtask` of task `to_task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    /// The sending task.
    pub from_task: u32,
    /// The sending subtask.
    pub from_subtask: u32,
    /// The index of the edge in the sending task's outputs.
    pub output: u32,
    /// The receiving task.
    pub to_task: u32,
    /// The receiving subtask.
    pub to_subtask: u32,
}

/// Opens a channel to a subtask that runs in another process.
pub type Connect<'a> = &'a (dyn Fn(ChannelId) -> Result<Box<dyn RemoteChannel>, String> + Sync);

/// Which subtasks run in this process: `(task index, subtask index)`.
pub type Placement<'a> = &'a dyn Fn(usize, u32) -> bool;

/// The input of a subtask of this process, for messages that arrive from
/// other processes.
#[derive(Clone)]
pub struct InputSender(SyncSender<Message>);

impl InputSender {
    /// Delivers a message, blocking while the subtask's input is full.
    pub fn send(&self, message: Message) -> Result<(), Disconnected> {
        self.0.send(message).map_err(|_| Disconnected)
    }
}

/// Reads a running job's per-node record counts in this process.
#[derive(Clone)]
pub struct LiveCounts {
    names: Vec<(u32, String)>,
    metrics: Arc<BTreeMap<u32, NodeMetrics>>,
}

impl LiveCounts {
    /// Per node, in graph order: name, records in, records out so far.
    pub fn read(&self) -> Vec<(String, u64, u64)> {
        self.names
            .iter()
            .map(|(id, name)| {
                let m = &self.metrics[id];
                let (i, o) =
                    (m.records_in.load(Ordering::Relaxed), m.records_out.load(Ordering::Relaxed));
                (name.clone(), i, o)
            })
            .collect()
    }
}

/// Stops a running job from outside (every subtask stops soon after).
#[derive(Clone)]
pub struct Canceller(Arc<AtomicBool>);

impl Canceller {
    /// Asks every subtask of the job to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A job planned and set up in this process, its subtasks not started yet.
///
/// The embedded runtime prepares every subtask; a cluster worker prepares
/// the ones placed on it, hands [`PreparedJob::input`] to its network side
/// and then [`PreparedJob::run`]s them with channels to the other workers.
pub struct PreparedJob {
    started: Instant,
    shared: Arc<Shared>,
    physical: PhysicalPlan,
    senders: Vec<Vec<SyncSender<Message>>>,
    receivers: Vec<Vec<Option<Receiver<Message>>>>,
    local: Vec<Vec<bool>>,
    coordinator_args: Option<checkpointing::CoordinatorArgs>,
    link: Option<CheckpointLink>,
    checkpoints: Option<Arc<checkpointing::Checkpointing>>,
    restored_from: Option<u64>,
    skipped_checkpoints: Vec<String>,
    _cleanup: RunDir,
}

/// The checkpoint a replay starts from: `id`, or the newest complete one
/// (`id` 0); it must belong to this job.
fn replay_point(
    storage: &crate::checkpoint::CheckpointStorage,
    fingerprint: &str,
    id: u64,
) -> Result<crate::checkpoint::RestorePoint, crate::checkpoint::CheckpointError> {
    let point = match id {
        0 => checkpointing::latest_point(storage, fingerprint)?.0.ok_or_else(|| {
            crate::checkpoint::CheckpointError::Io {
                path: storage.url().to_owned(),
                reason: "no complete checkpoint of this job to replay from".into(),
            }
        })?,
        id => storage.restore_point(id)?,
    };
    if point.metadata.fingerprint != fingerprint {
        return Err(crate::checkpoint::CheckpointError::Mismatch {
            id: point.metadata.id,
            dir: storage.url().to_owned(),
            found: point.metadata.fingerprint.clone(),
            expected: fingerprint.to_owned(),
        });
    }
    Ok(point)
}

/// Plans a job and sets up the subtasks `local` places here (all of them
/// when it is `None`): connectors, state, checkpoints and input channels.
pub fn prepare_job(
    plugin: &Plugin,
    config: &JobConfig,
    options: RunOptions,
    local: Option<Placement<'_>>,
) -> Result<PreparedJob, JobError> {
    let started = Instant::now();
    let graph = plan_job(plugin, config)?;
    let physical = physical_plan(&graph, config.parallelism)?;
    let defaults = SourceDefaults {
        skip_bad_lines: options.skip_bad_lines,
        max_record_bytes: options.max_record_bytes,
    };
    let is_local = |task: usize, subtask: u32| local.is_none_or(|f| f(task, subtask));
    // Connectors are opened only where one of their subtasks runs.
    let local_nodes: std::collections::BTreeSet<u32> = physical
        .tasks
        .iter()
        .filter(|t| (0..t.parallelism).any(|i| is_local(t.index, i)))
        .flat_map(|t| t.nodes.iter().copied())
        .collect();
    let mut sources = BTreeMap::new();
    let mut sinks = BTreeMap::new();
    for n in graph.nodes.iter().filter(|n| local_nodes.contains(&n.id)) {
        let err = |error| JobError::Connector { node: format!("{:?}", n.name), error };
        match &n.kind {
            NodeKind::Source(c) => {
                sources.insert(n.id, SourceSpec::new(c, defaults).map_err(err)?);
            }
            // A replay touches no sink: it must not truncate, write or commit.
            NodeKind::Sink(_) if options.replay.is_some() => {
                sinks.insert(n.id, SinkSpec::Stdout);
            }
            NodeKind::Sink(c) => {
                sinks.insert(n.id, SinkSpec::new(c).map_err(err)?);
            }
            _ => {}
        }
    }
    let run_state = match &options.state_backend {
        StateBackendKind::Memory => StateBackendKind::Memory,
        StateBackendKind::RocksDb { dir, block_cache_bytes } => {
            let millis = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let run = dir.join(format!("{}-{}-{millis}", graph.name, std::process::id()));
            std::fs::create_dir_all(&run).map_err(|e| JobError::State {
                node: "job".into(),
                error: StateError::Open { path: run.display().to_string(), reason: e.to_string() },
            })?;
            StateBackendKind::RocksDb { dir: run, block_cache_bytes: *block_cache_bytes }
        }
    };
    let _cleanup = RunDir(match &run_state {
        StateBackendKind::RocksDb { dir, .. } => Some(dir.clone()),
        StateBackendKind::Memory => None,
    });
    // Checkpointing: find what to restore from, and the next id.
    let mut coordinator_args = None;
    let mut skipped_checkpoints = Vec::new();
    // Savepoints need checkpointing: without a checkpoint directory, one
    // next to the savepoints (or a temporary one) is used.
    let checkpoint_dir = options.checkpoint_dir.clone().or_else(|| {
        match (&options.savepoint_dir, &options.from_savepoint) {
            (Some(dir), _) => Some(dir.join("checkpoints")),
            (None, Some(_)) => Some(std::env::temp_dir().join(format!(
                "flinkw-checkpoints-{}-{}",
                std::process::id(),
                crate::time::now_millis()
            ))),
            (None, None) => None,
        }
    });
    let mut link = None;
    if options.replay.is_some() && checkpoint_dir.is_none() {
        return Err(JobError::Internal("a replay needs the job's checkpoint directory".into()));
    }
    let checkpoints = match &checkpoint_dir {
        None => None,
        Some(dir) => {
            let storage = crate::checkpoint::CheckpointStorage::open(dir)?;
            // Claimed before the restore point is chosen (see
            // `CheckpointCoordinator::start`).
            let epoch = match (options.fencing_epoch, options.checkpoints_coordinated_elsewhere) {
                (Some(e), _) => e,
                (None, Some(_)) => 0,
                // A replay must not fence the job it replays.
                (None, None) if options.replay.is_some() => 0,
                (None, None) => storage.claim_epoch()?,
            };
            let fingerprint = checkpointing::fingerprint(&graph, &physical, config);
            let shape = checkpointing::shape(&graph, &physical, config);
            let restore = match (&options.from_savepoint, options.checkpoints_coordinated_elsewhere)
            {
                _ if options.replay.is_some() => {
                    Some(replay_point(&storage, &fingerprint, options.replay.unwrap_or(0))?)
                }
                (Some(path), _) => Some(checkpointing::open_savepoint(path, &shape)?),
                // The coordinator elsewhere chose the checkpoint.
                (None, Some(id)) => id.map(|id| storage.restore_point(id)).transpose()?,
                (None, None) => {
                    let (latest, skipped) = checkpointing::latest_point(&storage, &fingerprint)?;
                    skipped_checkpoints = skipped;
                    latest
                }
            };
            let (ck, args) = checkpointing::setup(
                &graph,
                &physical,
                config,
                (storage, epoch),
                restore,
                (fingerprint, shape),
                match (&options.savepoint_dir, options.stop) {
                    (Some(dir), Some(stop)) => Some((dir.clone(), stop)),
                    _ => None,
                },
            )?;
            if options.replay.is_some() {
                // No checkpoints: the replay only restores.
            } else if options.checkpoints_coordinated_elsewhere.is_some() {
                link = Some(CheckpointLink { ck: ck.clone(), acks: Mutex::new(args.acks) });
            } else {
                coordinator_args = Some(args);
            }
            Some(ck)
        }
    };
    let restored_from =
        checkpoints.as_ref().and_then(|c| c.restore.as_ref().map(|p| p.metadata.id));
    tracing::info!(job = %graph.name, tasks = physical.tasks.len(), "starting job");
    let metrics = Arc::new(graph.nodes.iter().map(|n| (n.id, NodeMetrics::default())).collect());
    let parallelism: Vec<u32> = physical.tasks.iter().map(|t| t.parallelism).collect();
    let subtask_metrics = MetricsHandle::new(&parallelism, is_local);
    let shared = Arc::new(Shared {
        graph,
        config: config.clone(),
        plugin: plugin.clone(),
        sources,
        sinks,
        metrics,
        subtask_metrics,
        cancelled: Arc::new(AtomicBool::new(false)),
        late_records: AtomicU64::new(0),
        state_backend: run_state.clone(),
        checkpoints: checkpoints.clone(),
        failure: Mutex::new(None),
        replay: options.replay.is_some(),
        counters: Mutex::new(BTreeMap::new()),
    });

    // One bounded channel per subtask (its input); senders go upstream.
    let mut senders: Vec<Vec<SyncSender<Message>>> = Vec::new();
    let mut receivers: Vec<Vec<Option<Receiver<Message>>>> = Vec::new();
    let mut placed = Vec::new();
    for t in &physical.tasks {
        let (s, r): (Vec<_>, Vec<_>) =
            (0..t.parallelism).map(|_| sync_channel(options.channel_capacity)).unzip();
        senders.push(s);
        receivers.push(r.into_iter().map(Some).collect());
        placed.push((0..t.parallelism).map(|i| is_local(t.index, i)).collect());
    }
    Ok(PreparedJob {
        started,
        shared,
        physical,
        senders,
        receivers,
        local: placed,
        coordinator_args,
        link,
        checkpoints,
        restored_from,
        skipped_checkpoints,
        _cleanup,
    })
}

impl PreparedJob {
    /// The job's graph.
    pub fn graph(&self) -> &JobGraph {
        &self.shared.graph
    }

    /// The job's tasks.
    pub fn physical(&self) -> &PhysicalPlan {
        &self.physical
    }

    /// The checkpoint or savepoint the job restores from, if any.
    pub fn restored_from(&self) -> Option<u64> {
        self.restored_from
    }

    /// The input of subtask `subtask` of task `task`, if it runs here.
    pub fn input(&self, task: usize, subtask: u32) -> Option<InputSender> {
        if !*self.local.get(task)?.get(subtask as usize)? {
            return None;
        }
        Some(InputSender(self.senders[task][subtask as usize].clone()))
    }

    /// This process's end of checkpoints coordinated elsewhere (see
    /// [`RunOptions::checkpoints_coordinated_elsewhere`]); taken once.
    pub fn checkpoint_link(&mut self) -> Option<CheckpointLink> {
        self.link.take()
    }

    /// Live counts of this process's subtasks, readable while the job runs.
    pub fn live_counts(&self) -> LiveCounts {
        LiveCounts {
            names: self.shared.graph.nodes.iter().map(|n| (n.id, n.name.clone())).collect(),
            metrics: self.shared.metrics.clone(),
        }
    }

    /// Per-subtask metrics of this process's subtasks, readable while the
    /// job runs.
    pub fn metrics(&self) -> MetricsHandle {
        self.shared.subtask_metrics.clone()
    }

    /// The checkpoint history, when this process coordinates the job's
    /// checkpoints (the embedded runtime).
    pub fn checkpoint_history(&self) -> Option<Arc<CheckpointHistory>> {
        self.coordinator_args.as_ref().map(|a| a.checkpointing.history.clone())
    }

    /// A handle that cancels the job once it runs.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.shared.cancelled.clone())
    }

    /// Runs this process's subtasks until they finish; `connect` opens the
    /// channels to subtasks elsewhere.
    pub fn run(self, connect: Connect<'_>) -> Result<JobReport, JobError> {
        let PreparedJob {
            started,
            shared,
            physical,
            senders,
            mut receivers,
            local,
            coordinator_args,
            link: _,
            checkpoints,
            restored_from,
            skipped_checkpoints,
            _cleanup,
        } = self;
        let config = &shared.config;
        let parent_span = tracing::Span::current();
        let mut threads = Vec::new();
        for task in &physical.tasks {
            for (i, input) in receivers[task.index].iter_mut().enumerate() {
                if !local[task.index][i] {
                    continue;
                }
                let sub_metrics =
                    shared.subtask_metrics.get(task.index, i as u32).unwrap_or_default();
                let mut outputs = Vec::with_capacity(task.outputs.len());
                for (edge, o) in task.outputs.iter().enumerate() {
                    let sender = match o.partitioning {
                        crate::graph::Partitioning::Forward => o.sender_base,
                        _ => o.sender_base + i as u32,
                    };
                    let mut channels = Vec::with_capacity(senders[o.task].len());
                    for (to, s) in senders[o.task].iter().enumerate() {
                        let forward_elsewhere =
                            o.partitioning == crate::graph::Partitioning::Forward && to != i;
                        channels.push(if local[o.task][to] || forward_elsewhere {
                            router::Channel::Local(s.clone())
                        } else {
                            let id = ChannelId {
                                from_task: task.index as u32,
                                from_subtask: i as u32,
                                output: edge as u32,
                                to_task: o.task as u32,
                                to_subtask: to as u32,
                            };
                            router::Channel::Remote(connect(id).map_err(JobError::Internal)?)
                        });
                    }
                    outputs.push(Output::new(
                        o.side_output.clone().map(|s| (o.from_node, s)),
                        o.partitioning,
                        sender,
                        channels,
                        config.max_parallelism,
                        sub_metrics.clone(),
                    ));
                }
                let router = Router { outputs, index: i };
                let input = input.take();
                let sub = subtask::Subtask::new(
                    shared.clone(),
                    task.clone(),
                    i as u32,
                    router,
                    input,
                    sub_metrics,
                );
                let name = format!("flinkw-t{}-{}", task.index, i);
                // Log lines of the subtask (the guest's too) carry the job,
                // task and subtask, inside the caller's span (a worker's job);
                // the span is at error level so that every filter keeps it.
                let span = tracing::error_span!(
                    parent: &parent_span,
                    "subtask",
                    job = %shared.graph.name,
                    task = task.index,
                    subtask = i
                );
                let handle = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || span.in_scope(|| sub.run()))
                    .map_err(|e| JobError::Internal(format!("cannot start a thread: {e}")))?;
                threads.push(handle);
            }
        }
        drop(senders);
        drop(receivers);
        let coordinator = match coordinator_args {
            Some(mut args) => {
                let finished = args.finished.clone();
                let (ck, failing) = (args.checkpointing.clone(), shared.clone());
                args.on_failure = Box::new(move || {
                    let failure = ck.failure.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(e) = failure {
                        failing.fail(JobError::Checkpoint(e));
                    }
                });
                let handle = std::thread::Builder::new()
                    .name("flinkw-checkpoints".into())
                    .spawn(move || checkpointing::coordinate(args))
                    .map_err(|e| JobError::Internal(format!("cannot start a thread: {e}")))?;
                Some((finished, handle))
            }
            None => None,
        };
        for t in threads {
            if t.join().is_err() {
                shared.fail(JobError::Internal("a subtask thread panicked".into()));
            }
        }
        if let Some((finished, handle)) = coordinator {
            finished.store(true, Ordering::SeqCst);
            let _ = handle.join();
        }
        let savepoint = checkpoints
            .as_ref()
            .and_then(|c| c.savepoint.lock().unwrap_or_else(|p| p.into_inner()).clone());
        let last_checkpoint = checkpoints
            .as_ref()
            .map(|c| c.completed.load(Ordering::SeqCst))
            .filter(|id| *id > 0 && Some(*id) != restored_from);
        drop(checkpoints);
        let shared = Arc::try_unwrap(shared)
            .map_err(|_| JobError::Internal("subtasks outlived the job".into()))?;
        if let Some(e) = shared.failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let (mut skipped_lines, mut first_skipped) = (0, None);
        for s in shared.sources.values() {
            if let Some(stats) = s.stats() {
                skipped_lines += stats.skipped.load(Ordering::Relaxed);
                let first = stats.first_skipped.lock().unwrap_or_else(|p| p.into_inner()).clone();
                first_skipped = first_skipped.or(first);
            }
        }
        let nodes = shared
            .graph
            .nodes
            .iter()
            .map(|n| {
                let m = &shared.metrics[&n.id];
                NodeReport {
                    name: n.name.clone(),
                    records_in: m.records_in.load(Ordering::Relaxed),
                    records_out: m.records_out.load(Ordering::Relaxed),
                }
            })
            .collect();
        Ok(JobReport {
            name: shared.graph.name,
            duration: started.elapsed(),
            nodes,
            late_records: shared.late_records.load(Ordering::Relaxed),
            skipped_lines,
            first_skipped,
            counters: shared.counters.into_inner().unwrap_or_else(|p| p.into_inner()),
            restored_from,
            last_checkpoint,
            skipped_checkpoints,
            savepoint,
        })
    }
}
