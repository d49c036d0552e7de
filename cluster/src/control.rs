//! What the coordinator and the workers say to each other.
//!
//! A worker opens one QUIC connection to the coordinator and on it one
//! bidirectional stream, the session: it registers, then reports; the
//! coordinator sends commands back on the same stream. Plugins are fetched
//! on streams of their own. Every message is a length-prefixed JSON frame.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest control frame accepted (plugins travel as raw bytes, not
/// in frames).
pub const MAX_FRAME: usize = 16 << 20;

/// A worker's messages to the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToCoordinator {
    /// The first message of a session.
    Register {
        /// The worker's name (from its certificate folder or `--name`).
        name: String,
        /// Task slots it offers.
        slots: u32,
        /// Where other workers reach it for data.
        data_addr: SocketAddr,
    },
    /// The worker is alive (sent every heartbeat interval).
    Heartbeat,
    /// The worker set up its part of a job and waits for `Start`.
    Ready {
        /// The job.
        job: String,
        /// The attempt.
        attempt: u32,
    },
    /// The worker's subtasks of a job finished.
    Finished {
        /// The job.
        job: String,
        /// The attempt.
        attempt: u32,
        /// What they did.
        report: PartReport,
    },
    /// A subtask here answered a checkpoint barrier.
    Ack {
        /// The job.
        job: String,
        /// The attempt.
        attempt: u32,
        /// The answer.
        ack: flinkw_host::runtime::Ack,
    },
    /// Records so far of a running part (sent with each heartbeat).
    Progress {
        /// The job.
        job: String,
        /// The attempt.
        attempt: u32,
        /// Per node: name, records in, records out.
        nodes: Vec<(String, u64, u64)>,
        /// Per subtask here: records, bytes, time, watermark.
        #[serde(default)]
        subtasks: Vec<flinkw_host::runtime::SubtaskSample>,
        /// Log lines of the job here since the last report.
        #[serde(default)]
        logs: Vec<crate::metrics::LogLine>,
    },
    /// More source subtasks here read all their input.
    SourcesFinished {
        /// The job.
        job: String,
        /// The attempt.
        attempt: u32,
        /// How many more.
        count: usize,
    },
    /// The worker's part of a job failed (or could not be set up).
    Failed {
        /// The job.
        job: String,
        /// The attempt.
        attempt: u32,
        /// Why, as the worker's error text.
        error: String,
        /// Whether running again may help.
        restartable: bool,
    },
}

/// The coordinator's messages to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToWorker {
    /// The worker is registered under this id.
    Registered {
        /// The id.
        worker: u32,
    },
    /// Set up the subtasks of a job placed on this worker.
    Deploy(Box<Deployment>),
    /// Every worker is ready: start the job's subtasks.
    Start {
        /// The job.
        job: String,
        /// The attempt.
        attempt: u32,
    },
    /// Sources inject checkpoint barrier `id`.
    Trigger {
        /// The job.
        job: String,
        /// The attempt.
        attempt: u32,
        /// The checkpoint.
        id: u64,
        /// It is the final checkpoint (every source finished).
        is_final: bool,
        /// It is a live upgrade's: at its barrier the subtasks switch to
        /// the plugin with this SHA-256 (load it first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upgrade: Option<String>,
    },
    /// Checkpoint `id` is complete: sinks publish up to it.
    Complete {
        /// The job.
        job: String,
        /// The attempt.
        attempt: u32,
        /// The checkpoint.
        id: u64,
    },
    /// A savepoint completed: publish what it sealed and stop.
    Halt {
        /// The job.
        job: String,
        /// The attempt.
        attempt: u32,
    },
    /// Stop the job's subtasks.
    Cancel {
        /// The job.
        job: String,
    },
}

/// One attempt of a job, as a worker needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    /// The job's id.
    pub job: String,
    /// Which attempt (0 = the first run).
    pub attempt: u32,
    /// The plugin's SHA-256 (hex): fetch it from the coordinator if it is
    /// not cached.
    pub plugin: String,
    /// The job config, `key=value`.
    pub config: Vec<String>,
    /// Worker id of every subtask: `placement[task][subtask]`.
    pub placement: Vec<Vec<u32>>,
    /// Where each worker takes data.
    pub workers: BTreeMap<u32, SocketAddr>,
    /// Memory limit of each plugin instance, in bytes.
    pub memory_limit: usize,
    /// Longest guest call, in ms.
    pub call_timeout_ms: u64,
    /// Checkpoints go to this folder (reachable by every worker), and the
    /// coordinator triggers them.
    pub checkpoint_dir: Option<std::path::PathBuf>,
    /// The checkpoint the attempt restores from.
    pub restore: Option<u64>,
    /// Or, before its first checkpoint, the savepoint it starts from.
    pub from_savepoint: Option<std::path::PathBuf>,
    /// The attempt's fencing epoch in the checkpoint folder: its sinks
    /// commit only while no newer attempt of the job has started.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// Whether guests read the real WASI clocks (else a clock frozen at 0).
    #[serde(default = "granted")]
    pub clocks: bool,
    /// `rocksdb`: keyed state in RocksDB on the worker's disk (else memory).
    #[serde(default)]
    pub state_backend: Option<String>,
    /// The tenant the job belongs to (its log lines name it).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The tenant's CPU cap on each worker, percent of one core (its quota
    /// `max-cpu-percent`; none: no cap).
    #[serde(default)]
    pub cpu_percent: Option<u32>,
}

fn granted() -> bool {
    true
}

/// What one worker's subtasks of a job did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PartReport {
    /// Per node (in graph order): name, records in, records out.
    pub nodes: Vec<(String, u64, u64)>,
    /// Records dropped as late.
    pub late_records: u64,
    /// Malformed lines skipped.
    pub skipped_lines: u64,
    /// The guest's counters.
    pub counters: BTreeMap<String, u64>,
}

impl PartReport {
    /// Adds another worker's part to this one.
    pub fn add(&mut self, other: &PartReport) {
        if self.nodes.is_empty() {
            self.nodes = other.nodes.iter().map(|(n, _, _)| (n.clone(), 0, 0)).collect();
        }
        for (mine, theirs) in self.nodes.iter_mut().zip(&other.nodes) {
            mine.1 += theirs.1;
            mine.2 += theirs.2;
        }
        self.late_records += other.late_records;
        self.skipped_lines += other.skipped_lines;
        for (k, v) in &other.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the stream.
    #[error("the peer closed the stream")]
    Closed,
    /// The connection failed.
    #[error("connection: {0}")]
    Read(String),
    /// A frame too large or not the expected message.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Writes one message as a frame.
pub async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    message: &T,
) -> Result<(), FrameError> {
    let body = serde_json::to_vec(message).map_err(|e| FrameError::Malformed(e.to_string()))?;
    write_raw(send, &body).await
}

/// Writes bytes as one frame.
pub async fn write_raw(send: &mut quinn::SendStream, body: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(body.len()).map_err(|_| FrameError::Malformed("too large".into()))?;
    send.write_all(&len.to_le_bytes()).await.map_err(|e| FrameError::Read(e.to_string()))?;
    send.write_all(body).await.map_err(|e| FrameError::Read(e.to_string()))
}

/// Reads one frame's bytes (at most `max`); `Closed` at a clean end.
pub async fn read_raw(recv: &mut quinn::RecvStream, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Read(e.to_string())),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(FrameError::Malformed(format!("a frame of {len} bytes (limit {max})")));
    }
    let mut body = vec![0; len];
    recv.read_exact(&mut body).await.map_err(|e| FrameError::Read(e.to_string()))?;
    Ok(body)
}

/// Reads one message.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<T, FrameError> {
    let body = read_raw(recv, MAX_FRAME).await?;
    serde_json::from_slice(&body).map_err(|e| FrameError::Malformed(e.to_string()))
}
