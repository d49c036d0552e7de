//! The window operator's accumulators, kept in memory per window in front
//! of the state backend.
//!
//! A record of an incremental aggregate reads and writes its window's
//! accumulator; through the state backend that is a lookup in one big table
//! keyed by key group, key and window (a RocksDB read and write on the
//! RocksDB backend), and firing or purging a window is one lookup per key.
//! The cache keeps the accumulators of each window in a small table of its
//! own instead: a record costs one lookup, a purged window is dropped whole,
//! and the backend sees a window's accumulators only when they must be
//! durable:
//!
//! - at a checkpoint barrier, [`AccCache::flush`] writes the accumulators
//!   changed since the last one (the backend's snapshot then holds exactly
//!   the state as of the barrier, as before);
//! - when the cache outgrows its budget (`window.cache-mb`, estimated from
//!   key and accumulator bytes plus a fixed cost per entry), it writes
//!   everything changed and starts empty (state larger than memory stays in
//!   RocksDB).
//!
//! Reads fall through to the backend only for windows it may hold entries
//! of — windows written by a flush or present when the job was restored —
//! so a window that never reached the backend costs it nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use smallvec::SmallVec;

use crate::keygroup::key_group;
use crate::state::{StateBackend, StateError, StateId};
use crate::window::Window;

/// Bytes held inline: a short key, a small accumulator.
type Inline = SmallVec<[u8; 24]>;

/// The default budget of a cache (`window.cache-mb`), for the tests.
#[cfg(test)]
const CACHE_BUDGET_BYTES: usize = 64 << 20;

/// Estimated fixed cost of one entry (the hash table's slot and inline
/// buffers), bytes.
const ENTRY_OVERHEAD: usize = 64;

/// One accumulator.
#[derive(Debug)]
struct Entry {
    acc: Inline,
    /// Changed since it was last written to the backend.
    dirty: bool,
}

/// The accumulators of one window, by key.
type WindowAccs = HashMap<Inline, Entry, foldhash::fast::RandomState>;

/// Where the cache writes through: the backend, the window operator's
/// table in it, and the max parallelism (for key groups).
pub(crate) struct Store<'a> {
    /// The subtask's state backend.
    pub backend: &'a mut dyn StateBackend,
    /// The window operator's table.
    pub table: StateId,
    /// Key groups of the job.
    pub max_parallelism: u32,
}

impl Store<'_> {
    /// The backend's key of `key`'s accumulator in `w`.
    fn state_key(&self, key: &[u8], w: &Window, out: &mut Vec<u8>) {
        let mut ns = [0u8; 16];
        ns[..8].copy_from_slice(&w.start.to_be_bytes());
        ns[8..].copy_from_slice(&w.end.to_be_bytes());
        crate::state::state_key(key_group(key, self.max_parallelism), key, &ns, out);
    }
}

/// Accumulators per window and key, written back to the state backend at
/// checkpoints and when over budget.
#[derive(Debug)]
pub(crate) struct AccCache {
    windows: BTreeMap<Window, WindowAccs>,
    /// Windows the backend may hold accumulators of.
    in_backend: BTreeSet<Window>,
    /// Estimated bytes held.
    bytes: usize,
    budget: usize,
    key_buf: Vec<u8>,
}

impl AccCache {
    /// An empty cache that may hold about `budget` bytes.
    pub fn new(budget: usize) -> Self {
        AccCache {
            windows: BTreeMap::new(),
            in_backend: BTreeSet::new(),
            bytes: 0,
            budget,
            key_buf: Vec::new(),
        }
    }

    /// The accumulator of `key` in `w`, if it has one.
    pub fn get(
        &mut self,
        store: &mut Store<'_>,
        key: &[u8],
        w: &Window,
    ) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(e) = self.windows.get(w).and_then(|accs| accs.get(key)) {
            return Ok(Some(e.acc.to_vec()));
        }
        if !self.in_backend.contains(w) {
            return Ok(None);
        }
        store.state_key(key, w, &mut self.key_buf);
        store.backend.get(store.table, &self.key_buf)
    }

    /// Sets the accumulator of `key` in `w`.
    pub fn put(&mut self, key: &[u8], w: Window, acc: &[u8]) {
        let accs = self.windows.entry(w).or_default();
        match accs.get_mut(key) {
            Some(e) => {
                self.bytes = self.bytes + acc.len() - e.acc.len();
                e.acc.clear();
                e.acc.extend_from_slice(acc);
                e.dirty = true;
            }
            None => {
                self.bytes += key.len() + acc.len() + ENTRY_OVERHEAD;
                accs.insert(key.into(), Entry { acc: acc.into(), dirty: true });
            }
        }
    }

    /// Removes the accumulator of `key` in `w` (a session that merged
    /// into another, a purged window).
    pub fn remove(
        &mut self,
        store: &mut Store<'_>,
        key: &[u8],
        w: &Window,
    ) -> Result<(), StateError> {
        if let Some(accs) = self.windows.get_mut(w) {
            if let Some(e) = accs.remove(key) {
                self.bytes -= key.len() + e.acc.len() + ENTRY_OVERHEAD;
            }
            if accs.is_empty() {
                self.windows.remove(w);
            }
        }
        if self.in_backend.contains(w) {
            store.state_key(key, w, &mut self.key_buf);
            store.backend.remove(store.table, &self.key_buf)?;
        }
        Ok(())
    }

    /// Forgets that the backend may hold accumulators of `w`: the window
    /// is over for every key (the watermark passed its cleanup time) and
    /// each of its keys was removed.
    pub fn forget(&mut self, w: &Window) {
        self.in_backend.remove(w);
    }

    /// Writes every accumulator changed since the last flush to the
    /// backend (at a checkpoint barrier: the backend then holds the state
    /// as of the barrier).
    pub fn flush(&mut self, store: &mut Store<'_>) -> Result<(), StateError> {
        for (w, accs) in &mut self.windows {
            let mut wrote = false;
            for (key, e) in accs.iter_mut().filter(|(_, e)| e.dirty) {
                store.state_key(key, w, &mut self.key_buf);
                store.backend.put(store.table, &self.key_buf, &e.acc)?;
                e.dirty = false;
                wrote = true;
            }
            if wrote {
                self.in_backend.insert(*w);
            }
        }
        Ok(())
    }

    /// Over budget: writes what changed and starts empty. Returns whether
    /// it did.
    pub fn trim(&mut self, store: &mut Store<'_>) -> Result<bool, StateError> {
        if self.bytes <= self.budget {
            return Ok(false);
        }
        self.flush(store)?;
        self.windows.clear();
        self.bytes = 0;
        Ok(true)
    }

    /// Starts over after a restore: empty, with the backend holding the
    /// accumulators of `windows` (those of the restored trigger).
    pub fn restored(&mut self, windows: impl IntoIterator<Item = Window>) {
        self.windows.clear();
        self.bytes = 0;
        self.in_backend = windows.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryState;

    const W1: Window = Window { start: 0, end: 10 };
    const W2: Window = Window { start: 10, end: 20 };

    fn store(backend: &mut MemoryState) -> Store<'_> {
        let table = backend.register("window/1").unwrap();
        Store { backend, table, max_parallelism: 128 }
    }

    fn in_backend(backend: &mut MemoryState, key: &[u8], w: &Window) -> Option<Vec<u8>> {
        let s = store(backend);
        let mut k = Vec::new();
        s.state_key(key, w, &mut k);
        s.backend.get(s.table, &k).unwrap()
    }

    #[test]
    fn the_backend_sees_accumulators_only_when_flushed() {
        let mut backend = MemoryState::default();
        let mut cache = AccCache::new(CACHE_BUDGET_BYTES);
        cache.put(b"a", W1, b"1");
        cache.put(b"a", W1, b"2");
        cache.put(b"b", W2, b"7");
        assert_eq!(cache.get(&mut store(&mut backend), b"a", &W1).unwrap(), Some(b"2".to_vec()));
        assert_eq!(cache.get(&mut store(&mut backend), b"a", &W2).unwrap(), None);
        assert_eq!(in_backend(&mut backend, b"a", &W1), None);
        cache.flush(&mut store(&mut backend)).unwrap();
        assert_eq!(in_backend(&mut backend, b"a", &W1), Some(b"2".to_vec()));
        assert_eq!(in_backend(&mut backend, b"b", &W2), Some(b"7".to_vec()));
        // After the barrier the backend keeps the barrier's value until the
        // next flush.
        cache.put(b"a", W1, b"3");
        assert_eq!(in_backend(&mut backend, b"a", &W1), Some(b"2".to_vec()));
        cache.flush(&mut store(&mut backend)).unwrap();
        assert_eq!(in_backend(&mut backend, b"a", &W1), Some(b"3".to_vec()));
        // A removal reaches the backend at once.
        cache.remove(&mut store(&mut backend), b"a", &W1).unwrap();
        assert_eq!(in_backend(&mut backend, b"a", &W1), None);
        assert_eq!(cache.get(&mut store(&mut backend), b"a", &W1).unwrap(), None);
    }

    #[test]
    fn over_budget_it_writes_through_and_reads_back_from_the_backend() {
        let mut backend = MemoryState::default();
        let mut cache = AccCache::new(10 * (ENTRY_OVERHEAD + 2));
        for i in 0..10u8 {
            cache.put(&[i], W1, &[i]);
            assert!(!cache.trim(&mut store(&mut backend)).unwrap());
        }
        cache.put(&[10], W1, &[10]);
        assert!(cache.trim(&mut store(&mut backend)).unwrap());
        for i in 0..=10u8 {
            assert_eq!(in_backend(&mut backend, &[i], &W1), Some(vec![i]));
            assert_eq!(cache.get(&mut store(&mut backend), &[i], &W1).unwrap(), Some(vec![i]));
        }
        // A window it never flushed is not looked up in the backend.
        assert_eq!(cache.get(&mut store(&mut backend), &[1], &W2).unwrap(), None);
    }

    #[test]
    fn after_a_restore_it_reads_the_restored_windows_from_the_backend() {
        let mut backend = MemoryState::default();
        let mut first = AccCache::new(CACHE_BUDGET_BYTES);
        first.put(b"k", W1, b"5");
        first.flush(&mut store(&mut backend)).unwrap();
        let mut cache = AccCache::new(CACHE_BUDGET_BYTES);
        cache.restored([W1]);
        assert_eq!(cache.get(&mut store(&mut backend), b"k", &W1).unwrap(), Some(b"5".to_vec()));
        cache.remove(&mut store(&mut backend), b"k", &W1).unwrap();
        cache.forget(&W1);
        assert_eq!(in_backend(&mut backend, b"k", &W1), None);
        assert!(cache.in_backend.is_empty());
    }
}
