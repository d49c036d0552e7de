//! Keyed state backends.
//!
//! State is addressed by state id (one per named state of a subtask) and key
//! bytes. The memory backend keeps hash maps; RocksDB comes with the
//! state-backend work.

mod memory;

pub use memory::MemoryState;
