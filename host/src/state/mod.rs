//! Keyed state backends.
//!
//! A backend stores named states (one column family each in RocksDB), each
//! a map from a state key to bytes. A state key is laid out as
//! `key group (u16, big-endian) ++ key ++ namespace`, so all state of a key
//! group is contiguous and a range of key groups can later be cut out (for
//! rescaling) — the layout Flink's RocksDB backend uses. The namespace is
//! empty for plain keyed state and the window for window state.

mod memory;
mod rocks;
pub mod ttl;

use std::path::PathBuf;

pub use memory::MemoryState;
pub use rocks::{LocalCheckpoint, PendingCheckpoint, ReadOutError, RocksDbState, rocks_tables};

/// Identifies a named state inside one backend.
pub type StateId = u32;

/// Entries of a prefix scan: (rest of the key, value).
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The RocksDB directory cannot be created or opened.
    #[error("cannot open RocksDB state at {path}: {reason}")]
    Open {
        /// The directory.
        path: String,
        /// RocksDB's or the OS's reason.
        reason: String,
    },
    /// A read or write failed.
    #[error("state backend error in state `{state}`: {reason}")]
    Io {
        /// The state's name.
        state: String,
        /// The reason.
        reason: String,
    },
    /// An id that was never registered.
    #[error("unknown state id {0}")]
    UnknownState(StateId),
}

/// Where keyed state lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateBackendKind {
    /// Hash maps in memory: fastest, bounded by memory.
    #[default]
    Memory,
    /// RocksDB on local disk: state larger than memory.
    RocksDb {
        /// Directory under which each subtask gets its own database.
        dir: PathBuf,
        /// Size of each database's block cache, bytes.
        block_cache_bytes: usize,
    },
}

/// A store of named keyed states.
pub trait StateBackend: Send {
    /// The id of the state called `name`, creating it on first use.
    /// `ordered` states support [`StateBackend::scan_prefix`] (map state).
    fn register_with(&mut self, name: &str, ordered: bool) -> Result<StateId, StateError>;
    /// The id of the (unordered) state called `name`.
    fn register(&mut self, name: &str) -> Result<StateId, StateError> {
        self.register_with(name, false)
    }
    /// Every entry of an ordered state whose key starts with `prefix`, in
    /// key order, as (rest of the key, value).
    fn scan_prefix(&mut self, state: StateId, prefix: &[u8]) -> Result<Entries, StateError>;
    /// The value stored under `key` in `state`.
    fn get(&mut self, state: StateId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Stores `value` under `key` in `state`.
    fn put(&mut self, state: StateId, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    /// Removes `key` from `state`.
    fn remove(&mut self, state: StateId, key: &[u8]) -> Result<(), StateError>;
    /// Every state in full, for a checkpoint.
    fn export(&mut self) -> Result<Vec<crate::checkpoint::TableDump>, StateError>;
    /// For a backend that checkpoints incrementally (RocksDB): begins
    /// checkpoint `id` at its barrier; the state as of now becomes files on
    /// local disk when [`PendingCheckpoint::finish`] returns (off the
    /// subtask's thread: it may wait for a flush). `None`: use
    /// [`StateBackend::export`].
    fn begin_checkpoint(&mut self, id: u64) -> Result<Option<PendingCheckpoint>, StateError> {
        let _ = id;
        Ok(None)
    }
    /// For a backend that checkpoints incrementally (RocksDB): replaces the
    /// whole state with the files of one of its checkpoints (`fetch` reads
    /// a shared file by key) without reading their entries, and returns
    /// true; false: this backend cannot, so the caller imports the entries
    /// ([`crate::state::rocks_tables`] and [`StateBackend::import`]).
    /// `reuse`: the files' shared keys are in the store this backend's
    /// checkpoints go to, so they need not be uploaded again.
    fn restore_files(
        &mut self,
        files: &crate::checkpoint::RocksFiles,
        fetch: &dyn Fn(&str) -> Result<Vec<u8>, crate::checkpoint::CheckpointError>,
        reuse: bool,
    ) -> Result<bool, StateError> {
        let _ = (files, fetch, reuse);
        Ok(false)
    }
    /// Loads states exported by [`StateBackend::export`] (on recovery).
    fn import(&mut self, tables: Vec<crate::checkpoint::TableDump>) -> Result<(), StateError> {
        for t in tables {
            let id = self.register_with(&t.name, t.ordered)?;
            for (k, v) in t.entries {
                self.put(id, &k, &v)?;
            }
        }
        Ok(())
    }
}

/// Writes the prefix of a map state's entries for `key`: the key group,
/// the key's length and the key (the length keeps keys that are prefixes of
/// each other apart), into `out`; the map key follows.
pub fn map_prefix(key_group: u32, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(key_group as u16).to_be_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
}

/// Writes the state key of (`key_group`, `key`, `namespace`) into `out`.
pub fn state_key(key_group: u32, key: &[u8], namespace: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(key_group as u16).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(namespace);
}

/// Opens a backend of `kind` for one subtask; `name` makes its directory
/// unique (RocksDB).
pub fn open(kind: &StateBackendKind, name: &str) -> Result<Box<dyn StateBackend>, StateError> {
    match kind {
        StateBackendKind::Memory => Ok(Box::new(MemoryState::default())),
        StateBackendKind::RocksDb { dir, block_cache_bytes } => {
            Ok(Box::new(RocksDbState::open(&dir.join(name), *block_cache_bytes)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both backends behave the same.
    fn exercise(b: &mut dyn StateBackend) {
        let a = b.register("a").unwrap();
        let c = b.register("c").unwrap();
        assert_eq!(b.register("a").unwrap(), a);
        let mut k = Vec::new();
        state_key(7, b"key", b"", &mut k);
        b.put(a, &k, b"1").unwrap();
        b.put(c, &k, b"2").unwrap();
        b.put(a, &k, b"3").unwrap();
        assert_eq!(b.get(a, &k).unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(b.get(c, &k).unwrap().as_deref(), Some(&b"2"[..]));
        state_key(7, b"other", b"", &mut k);
        assert_eq!(b.get(a, &k).unwrap(), None);
        state_key(7, b"key", b"", &mut k);
        b.remove(a, &k).unwrap();
        assert_eq!(b.get(a, &k).unwrap(), None);
        assert!(b.get(99, &k).is_err());
        // Ordered state: prefix scans see only their key's entries.
        let m = b.register_with("m", true).unwrap();
        let mut p = Vec::new();
        map_prefix(1, b"ab", &mut p);
        for (mk, v) in [(&b"y"[..], &b"2"[..]), (b"x", b"1")] {
            let mut full = p.clone();
            full.extend_from_slice(mk);
            b.put(m, &full, v).unwrap();
        }
        let mut other = Vec::new();
        map_prefix(1, b"abc", &mut other);
        other.extend_from_slice(b"z");
        b.put(m, &other, b"3").unwrap();
        assert_eq!(
            b.scan_prefix(m, &p).unwrap(),
            vec![(b"x".to_vec(), b"1".to_vec()), (b"y".to_vec(), b"2".to_vec())]
        );
    }

    #[test]
    fn memory_backend() {
        exercise(&mut MemoryState::default());
    }

    #[test]
    fn rocksdb_backend() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&mut RocksDbState::open(&dir.path().join("db"), 1 << 20).unwrap());
    }

    #[test]
    fn rocksdb_holds_state_far_larger_than_its_memory_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut db = RocksDbState::open(&path, 1 << 20).unwrap();
        let s = db.register("big").unwrap();
        let value = vec![7u8; 1000];
        let mut k = Vec::new();
        // 20 MB of state against a 1 MiB cache and 512 KiB memtables.
        for i in 0..20_000u32 {
            state_key(i % 128, &i.to_be_bytes(), b"", &mut k);
            db.put(s, &k, &value).unwrap();
        }
        let ssts = std::fs::read_dir(&path)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sst"))
            .count();
        assert!(ssts >= 2, "state spilled to {ssts} SST files");
        for i in (0..20_000u32).step_by(997) {
            state_key(i % 128, &i.to_be_bytes(), b"", &mut k);
            assert_eq!(db.get(s, &k).unwrap().as_deref(), Some(&value[..]));
        }
    }

    #[test]
    fn rocksdb_refuses_a_path_it_cannot_create() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = RocksDbState::open(&file.join("db"), 1 << 20).err().unwrap();
        assert!(err.to_string().contains("cannot open RocksDB state at"), "{err}");
    }

    #[test]
    fn state_keys_start_with_the_key_group() {
        let mut k = Vec::new();
        state_key(258, b"ab", b"ns", &mut k);
        assert_eq!(k, [1, 2, b'a', b'b', b'n', b's']);
    }
}
