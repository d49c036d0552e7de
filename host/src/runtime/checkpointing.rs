//! The checkpoint coordinator of the embedded runtime: triggers barriers at
//! the sources every interval, collects every subtask's acknowledgement,
//! and completes the checkpoint by writing its metadata; sinks then commit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::checkpoint::{CheckpointStorage, Metadata, RestorePoint, StateFile};
use crate::config::JobConfig;
use crate::graph::JobGraph;
use crate::runtime::PhysicalPlan;

/// A subtask's answer to a barrier.
pub(crate) enum Ack {
    /// Its snapshot is stored.
    Done {
        /// The checkpoint.
        id: u64,
        /// The state file it wrote.
        file: StateFile,
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
}

impl Checkpointing {
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
}

/// Runs until `finished`: one checkpoint at a time, every `interval`.
pub(crate) fn coordinate(args: CoordinatorArgs) {
    let ck = &args.checkpointing;
    let mut id = args.first_id;
    let mut savepoint_id: Option<u64> = None;
    let mut next = Instant::now() + args.interval;
    while !args.finished.load(Ordering::Relaxed) {
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
        if now < next && !final_due && !savepoint_due {
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
        let mut files = Vec::with_capacity(args.subtasks);
        let mut failed = None;
        // Bounded wait: a checkpoint that cannot complete is abandoned.
        let deadline = started + (args.interval * 10).max(Duration::from_secs(10));
        while files.len() < args.subtasks && failed.is_none() {
            if args.finished.load(Ordering::Relaxed) || Instant::now() >= deadline {
                failed = Some("not every subtask acknowledged it in time".to_owned());
                break;
            }
            match args.acks.recv_timeout(Duration::from_millis(20)) {
                Ok(Ack::Done { id: a, file }) if a == id => files.push(file),
                Ok(Ack::Failed { id: a, reason }) if a == id => failed = Some(reason),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        match failed {
            Some(reason) => {
                if !args.finished.load(Ordering::Relaxed) {
                    tracing::warn!(checkpoint = id, %reason, "checkpoint failed; the job goes on");
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
                };
                match ck.storage.commit(&metadata) {
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
                            "checkpoint complete"
                        );
                        if let Err(e) = ck.storage.retain(args.retain) {
                            tracing::warn!(error = %e, "cannot delete old checkpoints");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(checkpoint = id, error = %e, "cannot complete checkpoint")
                    }
                }
            }
        }
        id += 1;
    }
}
