//! What one subtask's part of a checkpoint holds, and its encoding.

use serde::{Deserialize, Serialize};

use super::memory::MemoryImage;
use crate::time::TimerService;
use crate::window::WindowTrigger;

/// How far a source subtask had read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourcePosition {
    /// A file source: lines consumed (including those of other subtasks).
    File {
        /// Lines read from the start of the file.
        lines: u64,
    },
    /// A datagen source: the next record index and records made.
    Datagen {
        /// The next record's index.
        next: u64,
        /// Records made by this subtask.
        made: u64,
    },
    /// After a change of parallelism: the positions of every subtask of
    /// the old parallelism; a record is done if the old subtask that owned
    /// it had passed it.
    Rescaled {
        /// The positions, by old subtask index.
        positions: Vec<SourcePosition>,
    },
    /// A Kafka source: where this subtask goes on in each of its partitions.
    Kafka {
        /// One entry per partition the subtask reads.
        partitions: Vec<KafkaOffset>,
    },
    /// An object-store source: the files this subtask has still to read,
    /// in order; the first may be partly read.
    Objects {
        /// What is left, by file.
        splits: Vec<ObjectSplit>,
    },
}

/// A file of an object-store source and how far it has been read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSplit {
    /// The object's path in its store.
    pub path: String,
    /// The byte offset of the next line to read.
    pub offset: u64,
    /// Lines read before `offset` (a CSV header counts), for messages.
    pub line: u64,
}

/// How far a Kafka source subtask had read one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to read.
    pub next: i64,
    /// For a bounded source: the offset it stops at.
    pub end: Option<i64>,
}

/// One named keyed state, in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDump {
    /// The state's name.
    pub name: String,
    /// Whether it supports prefix scans (map state).
    pub ordered: bool,
    /// Every (state key, value).
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A RocksDB subtask's keyed state as files (an incremental checkpoint):
/// the SST files are uploaded once, as `shared/<uid>/<name>` beside the
/// checkpoint folders, and referenced by every checkpoint that still needs
/// them; the small files that name them travel in the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RocksFiles {
    /// The database instance the SST names belong to.
    pub uid: String,
    /// The SST files, by name; a name with a `/` is the whole shared key
    /// of a file uploaded by an earlier opening of the database (one it was
    /// restored from), which its checkpoints keep referring to.
    pub shared: Vec<String>,
    /// The other files (CURRENT, MANIFEST, OPTIONS), with their bytes.
    pub private: Vec<(String, Vec<u8>)>,
}

impl RocksFiles {
    /// The shared keys (`<uid>/<name>`) of the SST files.
    pub fn keys(&self) -> Vec<String> {
        self.shared
            .iter()
            .map(|n| if n.contains('/') { n.clone() } else { format!("{}/{n}", self.uid) })
            .collect()
    }

    /// The SST files' names in the database's directory, in the order of
    /// [`RocksFiles::keys`].
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.shared.iter().map(|n| n.rsplit_once('/').map_or(n.as_str(), |(_, f)| f))
    }

    /// Whether the `i`th SST file was uploaded by an earlier opening of the
    /// database (it is in the store already).
    pub fn adopted(&self, i: usize) -> bool {
        self.shared.get(i).is_some_and(|n| n.contains('/'))
    }
}

/// One subtask's part of a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubtaskSnapshot {
    /// The source's position, for a source subtask.
    pub source: Option<SourcePosition>,
    /// Keyed state (values, lists, maps, window accumulators).
    pub tables: Vec<TableDump>,
    /// Window triggers (pending windows and their timers), by node.
    pub windows: Vec<(u32, WindowTrigger)>,
    /// Timers of keyed functions, by function id.
    pub timers: Vec<(u32, TimerService)>,
    /// The largest timestamp the watermark generator had seen.
    pub max_timestamp: Option<i64>,
    /// The last watermark sent on.
    pub watermark: i64,
    /// State the guest keeps in its own memory (its `snapshot` export).
    pub guest: Option<Vec<u8>>,
    /// The plugin version that wrote `guest` (its `upgrade` export), if it
    /// names one: a restore by another version migrates the state first.
    pub guest_version: Option<String>,
    /// Sink state (what waits for the checkpoint to complete: file names,
    /// or a write-ahead sink's records), by node; opaque to the runtime.
    pub sinks: Vec<(u32, Vec<Vec<u8>>)>,
    /// Keyed state as RocksDB files instead of `tables` (incremental).
    pub rocks: Option<RocksFiles>,
    /// The guest's whole memory and globals, for a plugin that declares
    /// whole-memory capture (then `guest` is empty: its `snapshot` export
    /// is not called).
    pub memory: Option<MemoryImage>,
}

impl SubtaskSnapshot {
    /// Encodes the snapshot.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(self).map_err(|e| e.to_string())
    }

    /// Decodes a snapshot written by [`SubtaskSnapshot::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}
