//! The checkpoint coordinator of the embedded runtime: triggers barriers at
//! the sources every interval, collects every subtask's acknowledgement,
//! and completes the checkpoint by writing its metadata; sinks then commit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::checkpoint::{CheckpointError, CheckpointStorage, Metadata, RestorePoint, StateFile};
use crate::config::JobConfig;
use crate::graph::{JobGraph, NodeKind};
use crate::plugin::Plugin;
use crate::runtime::PhysicalPlan;
use crate::runtime::upgrade::{Swap, UpgradeCell, UpgradeOutcome, UpgradeResult, UpgradeSlot};

/// A subtask's answer to a barrier.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ack {
    /// Its snapshot is stored.
    Done {
        /// The checkpoint.
        id: u64,
        /// The state file it wrote.
        file: StateFile,
        /// How long the subtask's barrier alignment took, ms.
        #[serde(default)]
        alignment_ms: u64,
        /// How long its synchronous snapshot took (records waited), ms.
        #[serde(default)]
        sync_ms: u64,
        /// At a live upgrade's barrier: what the subtask did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        swap: Option<Swap>,
    },
    /// It could not take its snapshot.
    Failed {
        /// The checkpoint.
        id: u64,
        /// Why.
        reason: String,
    },
}

/// Checkpointing state shared by the subtasks of a job.
pub(crate) struct Checkpointing {
    pub storage: CheckpointStorage,
    /// This attempt's fencing epoch in `storage` (0: none, no fencing).
    pub epoch: u64,
    /// The newest barrier the sources should inject.
    pub requested: AtomicU64,
    /// The newest complete checkpoint (sinks commit up to it).
    pub completed: AtomicU64,
    /// The checkpoint or savepoint the job restores from, if any.
    pub restore: Option<RestorePoint>,
    pub acks: Mutex<Sender<Ack>>,
    /// Source subtasks in the job, and how many have read all their input.
    pub sources: usize,
    pub sources_finished: AtomicUsize,
    /// The final checkpoint, taken once every source has finished and every
    /// window has fired (0 = not yet triggered). Sinks publish their last
    /// output only when it completes, so a restart after the job's end
    /// replays nothing (Flink's final checkpoint).
    pub final_id: AtomicU64,
    /// Set when a savepoint completed and the job is stopping.
    pub halt: AtomicBool,
    /// Where the savepoint of a stop-with-savepoint went.
    pub savepoint: Mutex<Option<std::path::PathBuf>>,
    /// Set when too many checkpoints failed in a row: the job must fail.
    pub failure: Mutex<Option<CheckpointError>>,
    /// Every checkpoint's outcome (the coordinator's side).
    pub history: Arc<super::CheckpointHistory>,
    /// A live plugin upgrade, if one was asked for.
    pub upgrade: Mutex<UpgradeCell>,
}

impl Checkpointing {
    /// Fails once a newer attempt of the job claimed an epoch after this
    /// one's: a zombie attempt (cut off, paused, replaced) completes no
    /// checkpoint and commits no output.
    pub fn check_fence(&self) -> Result<(), CheckpointError> {
        if self.epoch == 0 {
            return Ok(());
        }
        match self.storage.superseded(self.epoch)? {
            None => Ok(()),
            Some(newer) => Err(CheckpointError::Superseded {
                epoch: self.epoch,
                newer,
                dir: self.storage.url().to_owned(),
            }),
        }
    }

    /// The live upgrade's state, locked.
    pub fn upgrade(&self) -> std::sync::MutexGuard<'_, UpgradeCell> {
        self.upgrade.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Acknowledges a barrier.
    pub fn ack(&self, ack: Ack) {
        let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        let _ = acks.send(ack);
    }
}

/// A job's shape, for matching checkpoints to jobs: the graph, every
/// task's parallelism and the number of key groups.
pub(crate) fn fingerprint(graph: &JobGraph, physical: &PhysicalPlan, config: &JobConfig) -> String {
    let mut h = Sha256::new();
    h.update(shape(graph, physical, config).as_bytes());
    for t in &physical.tasks {
        h.update(t.parallelism.to_le_bytes());
    }
    hex::encode(&h.finalize()[..12])
}

/// A job's shape without parallelism: a savepoint restores into any job of
/// the same shape.
pub(crate) fn shape(graph: &JobGraph, physical: &PhysicalPlan, config: &JobConfig) -> String {
    let mut h = Sha256::new();
    let mut g = graph.clone();
    g.parallelism = None;
    h.update(format!("{g:?}").as_bytes());
    for t in &physical.tasks {
        h.update(format!("{}:{:?};", t.index, t.nodes).as_bytes());
    }
    h.update(config.max_parallelism.to_le_bytes());
    hex::encode(&h.finalize()[..12])
}

/// Settings of one coordinator run.
pub(crate) struct CoordinatorArgs {
    pub checkpointing: Arc<Checkpointing>,
    pub acks: Receiver<Ack>,
    pub subtasks: usize,
    pub first_id: u64,
    pub interval: Duration,
    pub retain: usize,
    pub job: String,
    pub fingerprint: String,
    pub shape: String,
    pub parallelism: Vec<u32>,
    pub finished: Arc<AtomicBool>,
    /// Stop with a savepoint into the directory once the flag is set.
    pub savepoint: Option<(std::path::PathBuf, &'static AtomicBool)>,
    /// Checkpoints that may fail in a row; one more fails the job.
    pub tolerable_failures: u32,
    /// Called once too many checkpoints failed in a row (the reason is in
    /// [`Checkpointing::failure`]); the coordinator then stops.
    pub on_failure: Box<dyn FnOnce() + Send>,
}

/// The newest complete checkpoint of a job with `fingerprint` in
/// `storage`, and the problems of newer ones it skipped (logged).
pub(crate) fn latest_point(
    storage: &CheckpointStorage,
    fingerprint: &str,
) -> Result<(Option<RestorePoint>, Vec<String>), CheckpointError> {
    let (latest, skipped) = storage.latest(fingerprint)?;
    for s in &skipped {
        tracing::warn!(problem = %s, "skipping a damaged checkpoint");
    }
    let point = latest.map(|m| RestorePoint { folder: storage.folder(m.id), metadata: m });
    Ok((point, skipped.iter().map(ToString::to_string).collect()))
}

/// Opens a savepoint for a job of `shape`, refusing one of another job.
pub(crate) fn open_savepoint(
    path: &std::path::Path,
    shape: &str,
) -> Result<RestorePoint, CheckpointError> {
    let point = RestorePoint::open(path)?;
    if point.metadata.shape != shape {
        return Err(CheckpointError::Mismatch {
            id: point.metadata.id,
            dir: path.display().to_string(),
            found: point.metadata.shape,
            expected: shape.to_owned(),
        });
    }
    Ok(point)
}

/// Builds a job's checkpointing state and the settings of its coordinator.
#[allow(clippy::too_many_arguments)]
pub(crate) fn setup(
    graph: &JobGraph,
    physical: &PhysicalPlan,
    config: &JobConfig,
    (storage, epoch): (CheckpointStorage, u64),
    restore: Option<RestorePoint>,
    (fingerprint, shape): (String, String),
    savepoint: Option<(std::path::PathBuf, &'static AtomicBool)>,
) -> Result<(Arc<Checkpointing>, CoordinatorArgs), CheckpointError> {
    // Ids go on after the restored checkpoint's even in a fresh directory
    // (a savepoint): sinks commit by id (the Kafka sink's marker, part files).
    let first_id = storage.next_id()?.max(restore.as_ref().map_or(1, |p| p.metadata.id + 1));
    let (tx, rx) = std::sync::mpsc::channel();
    let ck = Arc::new(Checkpointing {
        storage,
        epoch,
        requested: AtomicU64::new(0),
        completed: AtomicU64::new(restore.as_ref().map_or(0, |p| p.metadata.id)),
        restore,
        acks: Mutex::new(tx),
        sources: physical
            .tasks
            .iter()
            .filter(|t| {
                matches!(graph.node(t.nodes[0]).map(|n| &n.kind), Some(NodeKind::Source(_)))
            })
            .map(|t| t.parallelism as usize)
            .sum(),
        sources_finished: AtomicUsize::new(0),
        final_id: AtomicU64::new(0),
        halt: AtomicBool::new(false),
        savepoint: Mutex::new(None),
        failure: Mutex::new(None),
        history: Arc::default(),
        upgrade: Mutex::default(),
    });
    let args = CoordinatorArgs {
        checkpointing: ck.clone(),
        acks: rx,
        subtasks: physical.tasks.iter().map(|t| t.parallelism as usize).sum(),
        first_id,
        interval: config.checkpoint_interval,
        retain: config.checkpoint_retain,
        job: graph.name.clone(),
        fingerprint,
        shape,
        parallelism: physical.tasks.iter().map(|t| t.parallelism).collect(),
        finished: Arc::new(AtomicBool::new(false)),
        savepoint,
        tolerable_failures: config.checkpoint_tolerable_failures,
        on_failure: Box::new(|| {}),
    };
    Ok((ck, args))
}

/// One process's end of checkpoints that a coordinator in another process
/// triggers and completes (a cluster worker's): it hears of barriers to
/// inject and of completed checkpoints, and hands out its subtasks'
/// acknowledgements.
pub struct CheckpointLink {
    pub(crate) ck: Arc<Checkpointing>,
    pub(crate) acks: Mutex<Receiver<Ack>>,
}

impl CheckpointLink {
    /// The sources inject barrier `id` (the final checkpoint if `is_final`).
    pub fn trigger(&self, id: u64, is_final: bool) {
        if is_final {
            self.ck.final_id.store(id, Ordering::SeqCst);
        }
        self.ck.requested.fetch_max(id, Ordering::SeqCst);
    }

    /// Checkpoint `id` is a live upgrade's: at its barrier the subtasks
    /// here switch to `plugin`, or, if it could not be loaded here, each
    /// refuses with the reason. Comes before [`CheckpointLink::trigger`].
    pub fn upgrade_at(&self, id: u64, plugin: Result<Plugin, String>) {
        self.ck.upgrade().local = Some((id, plugin));
    }

    /// Checkpoint `id` is complete: sinks may publish up to it.
    pub fn complete(&self, id: u64) {
        self.ck.completed.fetch_max(id, Ordering::SeqCst);
    }

    /// A savepoint completed: subtasks publish what it sealed and stop.
    pub fn halt(&self) {
        self.ck.halt.store(true, Ordering::SeqCst);
    }

    /// Source subtasks here that read all their input so far.
    pub fn sources_finished(&self) -> usize {
        self.ck.sources_finished.load(Ordering::SeqCst)
    }

    /// The next acknowledgement of a subtask here, waiting up to `wait`.
    pub fn next_ack(&self, wait: Duration) -> Option<Ack> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).recv_timeout(wait).ok()
    }
}

/// The checkpoint coordinator of a job whose subtasks run in other
/// processes: it runs the same loop as the embedded runtime's, and the
/// caller relays barriers, acknowledgements and completions.
pub struct CheckpointCoordinator {
    ck: Arc<Checkpointing>,
    finished: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    restore: Option<u64>,
    stop: Option<&'static AtomicBool>,
}

impl CheckpointCoordinator {
    /// Starts coordinating checkpoints into `dir` for a job of `graph`;
    /// the job restores from the newest complete checkpoint there, else
    /// from `from_savepoint`. With `savepoint_dir`,
    /// [`CheckpointCoordinator::stop_with_savepoint`] takes a savepoint there.
    pub fn start(
        graph: &JobGraph,
        config: &JobConfig,
        dir: &std::path::Path,
        savepoint_dir: Option<std::path::PathBuf>,
        from_savepoint: Option<&std::path::Path>,
    ) -> Result<CheckpointCoordinator, super::JobError> {
        let physical = super::physical_plan(graph, config.parallelism)?;
        let storage = CheckpointStorage::open(dir)?;
        // The epoch first: a checkpoint an older attempt completes after
        // this point is either seen below or refused by its fence.
        let epoch = storage.claim_epoch()?;
        let fingerprint = fingerprint(graph, &physical, config);
        let shape = shape(graph, &physical, config);
        let (mut restore, _) = latest_point(&storage, &fingerprint)?;
        let restore_id = restore.as_ref().map(|p| p.metadata.id);
        if let (None, Some(path)) = (&restore, from_savepoint) {
            restore = Some(open_savepoint(path, &shape)?);
        }
        // One flag per coordinator that may stop with a savepoint; the
        // checkpoint loop reads it for the job's whole life.
        let stop: Option<&'static AtomicBool> =
            savepoint_dir.as_ref().map(|_| &*Box::leak(Box::new(AtomicBool::new(false))));
        let savepoint = savepoint_dir.zip(stop);
        let (ck, args) = setup(
            graph,
            &physical,
            config,
            (storage, epoch),
            restore,
            (fingerprint, shape),
            savepoint,
        )?;
        let finished = args.finished.clone();
        let thread = std::thread::Builder::new()
            .name("flinkw-checkpoints".into())
            .spawn(move || coordinate(args))
            .map_err(|e| super::JobError::Internal(format!("cannot start a thread: {e}")))?;
        Ok(CheckpointCoordinator { ck, finished, thread: Some(thread), restore: restore_id, stop })
    }

    /// Takes a savepoint, after which the job stops; false if the
    /// coordinator was started without a savepoint folder.
    pub fn stop_with_savepoint(&self) -> bool {
        self.stop.inspect(|s| s.store(true, Ordering::SeqCst)).is_some()
    }

    /// The savepoint taken, once it is complete (the job then halts).
    pub fn savepoint(&self) -> Option<std::path::PathBuf> {
        if !self.ck.halt.load(Ordering::SeqCst) {
            return None;
        }
        self.ck.savepoint.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The attempt's fencing epoch: the workers' subtasks commit only while
    /// no newer attempt claimed one ([`RunOptions::fencing_epoch`](super::RunOptions)).
    pub fn epoch(&self) -> u64 {
        self.ck.epoch
    }

    /// The checkpoint the job restores from.
    pub fn restore_id(&self) -> Option<u64> {
        self.restore
    }

    /// The newest barrier requested and the final checkpoint's id (0: none yet).
    pub fn requested(&self) -> (u64, u64) {
        (self.ck.requested.load(Ordering::SeqCst), self.ck.final_id.load(Ordering::SeqCst))
    }

    /// The checkpoints of this attempt so far (id, duration, size,
    /// alignment, status, failure reason).
    pub fn history(&self) -> Vec<super::CheckpointStats> {
        self.ck.history.list()
    }

    /// Why the job must fail, once too many checkpoints failed in a row
    /// (`checkpoint.tolerable-failures`).
    pub fn failure(&self) -> Option<String> {
        self.ck.failure.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(ToString::to_string)
    }

    /// The newest complete checkpoint.
    pub fn completed(&self) -> u64 {
        self.ck.completed.load(Ordering::SeqCst)
    }

    /// A subtask's acknowledgement, relayed.
    pub fn ack(&self, ack: Ack) {
        self.ck.ack(ack);
    }

    /// Asks for a live upgrade to the plugin with SHA-256 `plugin`: the
    /// next checkpoint, started at once, is the upgrade's. Refused while
    /// another upgrade is under way or not yet settled.
    pub fn request_upgrade(&self, plugin: &str) -> Result<(), String> {
        let mut cell = self.ck.upgrade();
        match &cell.slot {
            UpgradeSlot::Idle => {
                cell.slot = UpgradeSlot::Requested;
                cell.plugin = plugin.to_owned();
                Ok(())
            }
            _ => Err("another live upgrade of the job is under way".to_owned()),
        }
    }

    /// The upgrade's checkpoint and the new plugin's hash, once its
    /// barrier is triggered and until the upgrade ends.
    pub fn upgrade_barrier(&self) -> Option<(u64, String)> {
        let cell = self.ck.upgrade();
        match cell.slot {
            UpgradeSlot::Barrier(id) => Some((id, cell.plugin.clone())),
            _ => None,
        }
    }

    /// How the upgrade ended, once it did; no checkpoint starts until
    /// [`CheckpointCoordinator::release_upgrade`].
    pub fn upgrade_outcome(&self) -> Option<UpgradeOutcome> {
        match &self.ck.upgrade().slot {
            UpgradeSlot::Done(outcome) => Some(outcome.clone()),
            _ => None,
        }
    }

    /// Whether an upgrade was asked for and has not ended.
    pub fn upgrade_pending(&self) -> bool {
        matches!(self.ck.upgrade().slot, UpgradeSlot::Requested | UpgradeSlot::Barrier(_))
    }

    /// The owner recorded the upgrade's outcome: checkpoints go on.
    pub fn release_upgrade(&self) {
        self.ck.upgrade().slot = UpgradeSlot::Idle;
    }

    /// `n` more source subtasks read all their input.
    pub fn sources_finished(&self, n: usize) {
        self.ck.sources_finished.fetch_add(n, Ordering::SeqCst);
    }
}

impl Drop for CheckpointCoordinator {
    fn drop(&mut self) {
        self.finished.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs until `finished`: one checkpoint at a time, every `interval`.
pub(crate) fn coordinate(args: CoordinatorArgs) {
    let ck = &args.checkpointing;
    let mut id = args.first_id;
    let mut savepoint_id: Option<u64> = None;
    let mut next = Instant::now() + args.interval;
    let mut failures_in_a_row = 0;
    while !args.finished.load(Ordering::Relaxed) {
        if failures_in_a_row > args.tolerable_failures {
            let last = ck.history.list().last().and_then(|s| s.failure.clone());
            *ck.failure.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(CheckpointError::TooManyFailures {
                    failures: failures_in_a_row,
                    tolerable: args.tolerable_failures,
                    last: last.unwrap_or_default(),
                });
            (args.on_failure)();
            return;
        }
        let now = Instant::now();
        let all_done = ck.sources_finished.load(Ordering::SeqCst) >= ck.sources;
        let final_due = all_done && ck.final_id.load(Ordering::SeqCst) == 0;
        let savepoint_due =
            args.savepoint.as_ref().is_some_and(|(_, stop)| stop.load(Ordering::SeqCst))
                && savepoint_id.is_none()
                && !all_done;
        if savepoint_due {
            savepoint_id = Some(id);
        }
        // A live upgrade takes the next checkpoint, started at once; one
        // that ended holds checkpoints until its owner has recorded it.
        let upgrade_due = {
            let mut cell = ck.upgrade();
            match &cell.slot {
                UpgradeSlot::Done(_) => {
                    drop(cell);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                UpgradeSlot::Requested if all_done || savepoint_id.is_some() => {
                    let why = if all_done {
                        "the job's input ended before the upgrade's barrier"
                    } else {
                        "the job is stopping with a savepoint"
                    };
                    let result = UpgradeResult::Refused(why.to_owned());
                    let outcome = UpgradeOutcome { checkpoint: 0, result, pause_us: 0, swapped: 0 };
                    cell.slot = UpgradeSlot::Done(outcome);
                    continue;
                }
                UpgradeSlot::Requested => {
                    cell.slot = UpgradeSlot::Barrier(id);
                    true
                }
                _ => false,
            }
        };
        if now < next && !final_due && !savepoint_due && !upgrade_due {
            std::thread::sleep((next - now).min(Duration::from_millis(5)));
            continue;
        }
        next = now + args.interval;
        if all_done && !final_due {
            continue;
        }
        if final_due {
            ck.final_id.store(id, Ordering::SeqCst);
        }
        ck.requested.store(id, Ordering::SeqCst);
        let started = Instant::now();
        let triggered_at = crate::time::now_millis();
        let mut files = Vec::with_capacity(args.subtasks);
        let mut task_ms = vec![0; args.parallelism.len()];
        let (mut alignment_ms, mut sync_ms) = (0, 0);
        let mut swaps = Vec::new();
        let mut failed = None;
        // Bounded wait: a checkpoint that cannot complete is abandoned.
        let deadline = started + (args.interval * 10).max(Duration::from_secs(10));
        while files.len() < args.subtasks && failed.is_none() {
            if args.finished.load(Ordering::Relaxed) || Instant::now() >= deadline {
                failed = Some("not every subtask acknowledged it in time".to_owned());
                break;
            }
            match args.acks.recv_timeout(Duration::from_millis(20)) {
                Ok(Ack::Done { id: a, file, alignment_ms: align, sync_ms: sync, swap })
                    if a == id =>
                {
                    swaps.extend(swap);
                    alignment_ms = alignment_ms.max(align);
                    sync_ms = sync_ms.max(sync);
                    // State files are `t<task>-s<subtask>.state`.
                    let task = file.name.strip_prefix('t').and_then(|r| r.split('-').next());
                    if let Some(t) = task.and_then(|t| t.parse::<usize>().ok())
                        && let Some(ms) = task_ms.get_mut(t)
                    {
                        *ms = (*ms).max(started.elapsed().as_millis() as u64);
                    }
                    files.push(file);
                }
                Ok(Ack::Failed { id: a, reason }) if a == id => failed = Some(reason),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let mut stats = super::CheckpointStats {
            id,
            triggered_at,
            duration_ms: 0,
            bytes: files.iter().map(|f| f.bytes).sum(),
            alignment_ms,
            sync_ms,
            acknowledged: files.len(),
            subtasks: args.subtasks,
            status: super::CheckpointStatus::Completed,
            failure: failed.clone(),
            savepoint: savepoint_id == Some(id),
            task_ms,
        };
        let mut ended = Ok(());
        match failed {
            Some(reason) => {
                ended = Err(reason.clone());
                if !args.finished.load(Ordering::Relaxed) {
                    stats.status = super::CheckpointStatus::Failed;
                    stats.duration_ms = started.elapsed().as_millis() as u64;
                    ck.history.push(stats);
                    tracing::warn!(checkpoint = id, %reason, "checkpoint failed; the job goes on");
                    failures_in_a_row += 1;
                }
            }
            None => {
                files.sort_by(|a, b| a.name.cmp(&b.name));
                let metadata = Metadata {
                    id,
                    job: args.job.clone(),
                    fingerprint: args.fingerprint.clone(),
                    files,
                    completed_at: crate::time::now_millis(),
                    shape: args.shape.clone(),
                    parallelism: args.parallelism.clone(),
                    shared_inside: false,
                };
                // A replaced attempt completes nothing: the job fails. A
                // store that cannot be asked fails this checkpoint only.
                let fence = ck.check_fence();
                if let Err(e @ CheckpointError::Superseded { .. }) = fence {
                    tracing::warn!(checkpoint = id, error = %e, "not completing the checkpoint");
                    *ck.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    (args.on_failure)();
                    return;
                }
                match fence.and_then(|()| ck.storage.commit(&metadata)) {
                    Ok(()) => {
                        ck.completed.store(id, Ordering::SeqCst);
                        if savepoint_id == Some(id)
                            && let Some((dir, _)) = &args.savepoint
                        {
                            let folder = ck.storage.folder(id);
                            let point = RestorePoint { folder, metadata: metadata.clone() };
                            match point.copy_to(dir) {
                                Ok(path) => {
                                    let mut sp =
                                        ck.savepoint.lock().unwrap_or_else(|p| p.into_inner());
                                    *sp = Some(path);
                                    ck.halt.store(true, Ordering::SeqCst);
                                }
                                Err(e) => tracing::warn!(error = %e, "cannot write the savepoint"),
                            }
                        }
                        tracing::info!(
                            checkpoint = id,
                            ms = started.elapsed().as_millis() as u64,
                            sync_ms,
                            alignment_ms,
                            bytes = stats.bytes,
                            "checkpoint complete"
                        );
                        stats.duration_ms = started.elapsed().as_millis() as u64;
                        ck.history.push(stats);
                        failures_in_a_row = 0;
                        if let Err(e) = ck.storage.retain(args.retain) {
                            tracing::warn!(error = %e, "cannot delete old checkpoints");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(checkpoint = id, error = %e, "cannot complete checkpoint");
                        stats.status = super::CheckpointStatus::Failed;
                        stats.failure = Some(format!("cannot write its metadata: {e}"));
                        ended = Err(format!("cannot write its metadata: {e}"));
                        stats.duration_ms = started.elapsed().as_millis() as u64;
                        ck.history.push(stats);
                        failures_in_a_row += 1;
                    }
                }
            }
        }
        if upgrade_due {
            let outcome = upgrade_outcome(id, &swaps, args.subtasks, ended);
            tracing::info!(checkpoint = id, result = ?outcome.result, "live upgrade ended");
            ck.upgrade().slot = UpgradeSlot::Done(outcome);
        }
        id += 1;
    }
}

/// How the live upgrade of checkpoint `id` ended, from the swaps of the
/// subtasks that answered (of `subtasks`) and the checkpoint's fate. A
/// subtask that did not answer may have switched: unless every one did,
/// a refusal is only trusted if the checkpoint completed.
fn upgrade_outcome(
    id: u64,
    swaps: &[Swap],
    subtasks: usize,
    checkpoint: Result<(), String>,
) -> UpgradeOutcome {
    let unheard = swaps.len() < subtasks;
    let mut result = super::upgrade::decide(swaps, checkpoint);
    if let (UpgradeResult::Refused(why), true) = (&result, unheard) {
        result = UpgradeResult::Failed(format!(
            "{why}; {} of {subtasks} subtask(s) did not answer and may run the new plugin",
            subtasks - swaps.len()
        ));
    }
    let pause_us = swaps
        .iter()
        .map(|s| match s {
            Swap::Swapped { micros, .. } => *micros,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let swapped = swaps.iter().filter(|s| matches!(s, Swap::Swapped { .. })).count();
    UpgradeOutcome { checkpoint: id, result, pause_us, swapped }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swapped(micros: u64) -> Swap {
        Swap::Swapped { micros, from: Some("1".into()), to: Some("2".into()) }
    }

    #[test]
    fn an_upgrade_every_subtask_answered_is_decided_by_their_swaps() {
        let o = upgrade_outcome(7, &[swapped(900), Swap::NoGuest, swapped(2500)], 3, Ok(()));
        assert_eq!(
            o,
            UpgradeOutcome {
                checkpoint: 7,
                result: UpgradeResult::Committed,
                pause_us: 2500,
                swapped: 2
            }
        );
        let refused = Swap::Refused { reason: "migrate: no".into() };
        let o = upgrade_outcome(7, &[refused.clone(), refused], 2, Ok(()));
        assert_eq!(o.result, UpgradeResult::Refused("migrate: no".into()));
        assert_eq!(o.swapped, 0);
    }

    #[test]
    fn an_upgrade_with_unheard_subtasks_is_not_trusted_as_refused() {
        // One subtask refused, then the checkpoint failed before the other
        // answered: it may have switched, so the job must fail over.
        let refused = Swap::Refused { reason: "migrate: no".into() };
        let o = upgrade_outcome(3, &[refused], 2, Err("store down".into()));
        let UpgradeResult::Failed(why) = &o.result else { panic!("{o:?}") };
        assert!(why.contains("1 of 2 subtask(s) did not answer"), "{why}");
        // Every subtask answered and none switched: refused, even though
        // the checkpoint failed.
        let o = upgrade_outcome(3, &[Swap::NoGuest], 1, Err("store down".into()));
        assert_eq!(o.result, UpgradeResult::Refused("store down".into()));
    }
}
