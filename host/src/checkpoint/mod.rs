//! Checkpoints: aligned barriers, snapshots of every subtask, and their
//! storage. See `docs/checkpoints.md`.

mod aligner;
mod memory;
mod snapshot;
mod storage;

pub use aligner::{Alignment, BarrierAligner};
pub use memory::{Bytes, CapturedValue, ImageError, MemoryImage};
pub use snapshot::{
    KafkaOffset, ObjectSplit, RocksFiles, SourcePosition, SubtaskSnapshot, TableDump,
};
pub use storage::{CheckpointError, CheckpointStorage, Metadata, RestorePoint, StateFile};
