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

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;

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

/// One key of a window.
#[derive(Debug)]
struct Entry {
    key: Inline,
    /// The accumulator; `None` until the first write (the backend may hold
    /// one if the window is in it).
    acc: Option<Inline>,
    /// Changed since it was last written to the backend.
    dirty: bool,
    /// The batch ([`AccCache::generation`]) that last gave it a slot, and
    /// that slot.
    generation: u64,
    slot: u32,
}

/// The keys of one window with their accumulators, numbered: either by the
/// trigger (its [`Assignment::index`](crate::window::Assignment::index)) or,
/// for session windows, in order of first write here.
#[derive(Debug, Default)]
struct WindowAccs {
    entries: Vec<Option<Entry>>,
    /// Numbers of `entries`, by the hash of their keys.
    by_key: hashbrown::HashTable<u32>,
    /// Entries present.
    live: usize,
}

impl WindowAccs {
    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let entries = &self.entries;
        self.by_key
            .find(hash, |&i| entries[i as usize].as_ref().is_some_and(|e| e.key[..] == *key))
            .copied()
    }

    /// The entry numbered `index` for `key`, made (with no accumulator) if
    /// missing; returns whether it was made.
    fn make(&mut self, hasher: &Hasher, index: u32, key: &[u8]) -> bool {
        let i = index as usize;
        if self.entries.len() <= i {
            self.entries.resize_with(i + 1, || None);
        }
        if self.entries[i].is_some() {
            return false;
        }
        self.entries[i] =
            Some(Entry { key: key.into(), acc: None, dirty: false, generation: 0, slot: 0 });
        let entries = &self.entries;
        self.by_key.insert_unique(hasher.hash_one(key), index, |&j| {
            entries[j as usize].as_ref().map_or(0, |e| hasher.hash_one(&e.key[..]))
        });
        self.live += 1;
        true
    }
}

type Hasher = foldhash::fast::RandomState;

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
///
/// A batch of records is accumulated through **slots**: [`AccCache::slot`]
/// numbers each (key, window) a batch touches once, in order of first
/// touch, and hands out its accumulator; [`AccCache::put_slots`] stores
/// what the guest returned for each slot. A key whose number in its window
/// comes from the trigger costs no lookup here at all: the entry is at that
/// index, and it remembers its slot in the current batch.
#[derive(Debug)]
pub(crate) struct AccCache {
    windows: BTreeMap<Window, WindowAccs>,
    /// Windows the backend may hold accumulators of.
    in_backend: BTreeSet<Window>,
    /// Estimated bytes held.
    bytes: usize,
    budget: usize,
    hasher: Hasher,
    key_buf: Vec<u8>,
    /// The current batch's slots: window and entry number.
    slots: Vec<(Window, u32)>,
    /// The current batch's number (entries with it have a slot).
    generation: u64,
}

impl AccCache {
    /// An empty cache that may hold about `budget` bytes.
    pub fn new(budget: usize) -> Self {
        AccCache {
            windows: BTreeMap::new(),
            in_backend: BTreeSet::new(),
            bytes: 0,
            budget,
            hasher: Hasher::default(),
            key_buf: Vec::new(),
            slots: Vec::new(),
            generation: 1,
        }
    }

    /// Reads `key` in `w` from the backend, if the backend may hold it.
    fn read_backend(
        &mut self,
        store: &mut Store<'_>,
        key: &[u8],
        w: &Window,
    ) -> Result<Option<Vec<u8>>, StateError> {
        if !self.in_backend.contains(w) {
            return Ok(None);
        }
        store.state_key(key, w, &mut self.key_buf);
        store.backend.get(store.table, &self.key_buf)
    }

    /// The accumulator of `key` in `w`, if it has one.
    pub fn get(
        &mut self,
        store: &mut Store<'_>,
        key: &[u8],
        w: &Window,
    ) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(accs) = self.windows.get(w) {
            let hash = self.hasher.hash_one(key);
            if let Some(i) = accs.find(hash, key)
                && let Some(acc) = accs.entries[i as usize].as_ref().and_then(|e| e.acc.as_ref())
            {
                return Ok(Some(acc.to_vec()));
            }
        }
        self.read_backend(store, key, w)
    }

    /// The slot of `key` in `w` in the current batch. `index` is the key's
    /// number in `w` from the trigger (`None`: session windows, numbered
    /// here). A new slot's accumulator (`None`: the key has none yet) is
    /// pushed onto `accs`, so slot `s` is `accs[s]`.
    pub fn slot(
        &mut self,
        store: &mut Store<'_>,
        key: &[u8],
        w: Window,
        index: Option<u32>,
        accs: &mut Vec<Option<Vec<u8>>>,
    ) -> Result<u32, StateError> {
        let accs_of_w = self.windows.entry(w).or_default();
        // The trigger's number when its entry holds this key (no lookup);
        // else by key, and a new key goes to the trigger's number if that
        // is free, or to the end. So an entry is never shared by two keys,
        // whatever the numbers.
        let at = |i: u32| accs_of_w.entries.get(i as usize).and_then(Option::as_ref);
        let i = match index {
            Some(i) if at(i).is_some_and(|e| e.key[..] == *key) => i,
            _ => {
                let hash = self.hasher.hash_one(key);
                match accs_of_w.find(hash, key) {
                    Some(i) => i,
                    None => {
                        let free = index.filter(|&i| at(i).is_none());
                        let i = free.unwrap_or(accs_of_w.entries.len() as u32);
                        accs_of_w.make(&self.hasher, i, key);
                        self.bytes += key.len() + ENTRY_OVERHEAD;
                        i
                    }
                }
            }
        };
        let Some(e) = accs_of_w.entries[i as usize].as_mut() else {
            unreachable!("entry {i} was just made")
        };
        if e.generation == self.generation {
            return Ok(e.slot);
        }
        let slot = self.slots.len() as u32;
        e.generation = self.generation;
        e.slot = slot;
        self.slots.push((w, i));
        let acc = match e.acc.as_ref().map(|a| a.to_vec()) {
            Some(acc) => Some(acc),
            None => self.read_backend(store, key, &w)?,
        };
        accs.push(acc);
        Ok(slot)
    }

    /// Slots handed out in the current batch.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The key and window of `slot` of the current batch.
    pub fn slot_key(&self, slot: u32) -> Option<(&[u8], Window)> {
        let &(w, i) = self.slots.get(slot as usize)?;
        let e = self.windows.get(&w)?.entries.get(i as usize)?.as_ref()?;
        Some((&e.key[..], w))
    }

    /// Stores the current batch's accumulators (`updated[s]` for slot `s`)
    /// and starts the next batch.
    pub fn put_slots(&mut self, updated: &[Vec<u8>]) {
        debug_assert_eq!(updated.len(), self.slots.len());
        for (&(w, i), acc) in self.slots.iter().zip(updated) {
            let Some(Some(e)) =
                self.windows.get_mut(&w).and_then(|a| a.entries.get_mut(i as usize))
            else {
                continue;
            };
            let old = e.acc.as_ref().map_or(0, |a| a.len());
            self.bytes = self.bytes - old + acc.len();
            match &mut e.acc {
                Some(a) => {
                    a.clear();
                    a.extend_from_slice(acc);
                }
                None => e.acc = Some(acc[..].into()),
            }
            e.dirty = true;
        }
        self.end_batch();
    }

    /// Forgets the current batch's slots (its accumulators were not
    /// returned).
    pub fn end_batch(&mut self) {
        self.slots.clear();
        self.generation += 1;
    }

    /// Sets the accumulator of `key` in `w` (session windows: keys numbered
    /// here; windows numbered by the trigger only get keys through
    /// [`AccCache::slot`]).
    pub fn put(&mut self, key: &[u8], w: Window, acc: &[u8]) {
        let accs = self.windows.entry(w).or_default();
        let hash = self.hasher.hash_one(key);
        let i = match accs.find(hash, key) {
            Some(i) => i,
            None => {
                let i = accs.entries.len() as u32;
                accs.make(&self.hasher, i, key);
                self.bytes += key.len() + ENTRY_OVERHEAD;
                i
            }
        };
        if let Some(Some(e)) = accs.entries.get_mut(i as usize) {
            let old = e.acc.as_ref().map_or(0, |a| a.len());
            self.bytes = self.bytes - old + acc.len();
            e.acc = Some(acc.into());
            e.dirty = true;
        }
    }

    /// Removes the accumulator of `key` in `w` (a session that merged
    /// into another).
    pub fn remove(
        &mut self,
        store: &mut Store<'_>,
        key: &[u8],
        w: &Window,
    ) -> Result<(), StateError> {
        if let Some(accs) = self.windows.get_mut(w) {
            let hash = self.hasher.hash_one(key);
            if let Some(i) = accs.find(hash, key) {
                accs.by_key.find_entry(hash, |&j| j == i).ok().map(|e| e.remove());
                if let Some(e) = accs.entries[i as usize].take() {
                    self.bytes -= key.len() + e.acc.map_or(0, |a| a.len()) + ENTRY_OVERHEAD;
                    accs.live -= 1;
                }
            }
            if accs.live == 0 {
                self.windows.remove(w);
            }
        }
        if self.in_backend.contains(w) {
            store.state_key(key, w, &mut self.key_buf);
            store.backend.remove(store.table, &self.key_buf)?;
        }
        Ok(())
    }

    /// Removes `key` in `w` when the trigger cleans `w` up: every key of
    /// `w` goes, so the first drops the window's table whole (the backend,
    /// if it may hold some, loses them one by one).
    pub fn purge(
        &mut self,
        store: &mut Store<'_>,
        key: &[u8],
        w: &Window,
    ) -> Result<(), StateError> {
        if let Some(accs) = self.windows.remove(w) {
            for e in accs.entries.into_iter().flatten() {
                self.bytes -= e.key.len() + e.acc.map_or(0, |a| a.len()) + ENTRY_OVERHEAD;
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
            for e in accs.entries.iter_mut().flatten().filter(|e| e.dirty) {
                let Some(acc) = &e.acc else { continue };
                store.state_key(&e.key, w, &mut self.key_buf);
                store.backend.put(store.table, &self.key_buf, acc)?;
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
    /// it did. Only between batches (no slots handed out).
    pub fn trim(&mut self, store: &mut Store<'_>) -> Result<bool, StateError> {
        if self.bytes <= self.budget {
            return Ok(false);
        }
        debug_assert!(self.slots.is_empty(), "trim during a batch");
        self.flush(store)?;
        self.windows.clear();
        self.bytes = 0;
        Ok(true)
    }

    /// Starts over after a restore: empty, with the backend holding the
    /// accumulators of `windows` (those of the restored trigger).
    pub fn restored(&mut self, windows: impl IntoIterator<Item = Window>) {
        self.windows.clear();
        self.slots.clear();
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

    /// One batch: each (key, window, trigger number) gets a slot; the
    /// guest's answer is the slot's number as text.
    fn batch(
        cache: &mut AccCache,
        backend: &mut MemoryState,
        records: &[(&[u8], Window, Option<u32>)],
    ) -> Vec<Option<Vec<u8>>> {
        let mut accs = Vec::new();
        for (key, w, index) in records {
            cache.slot(&mut store(backend), key, *w, *index, &mut accs).unwrap();
        }
        let updated: Vec<Vec<u8>> = (0..accs.len()).map(|s| format!("{s}").into_bytes()).collect();
        cache.put_slots(&updated);
        accs
    }

    #[test]
    fn slots_follow_the_trigger_numbers_and_never_share_an_entry() {
        let mut backend = MemoryState::default();
        let mut cache = AccCache::new(CACHE_BUDGET_BYTES);
        // Numbered by the trigger: a, b in W1; a again in W2.
        let accs = batch(
            &mut cache,
            &mut backend,
            &[(b"a", W1, Some(0)), (b"b", W1, Some(1)), (b"a", W1, Some(0)), (b"a", W2, Some(0))],
        );
        assert_eq!(accs, vec![None, None, None]);
        let get = |c: &mut AccCache, b: &mut MemoryState, k: &[u8], w| {
            c.get(&mut store(b), k, &w).unwrap().map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(get(&mut cache, &mut backend, b"a", W1).as_deref(), Some("0"));
        assert_eq!(get(&mut cache, &mut backend, b"b", W1).as_deref(), Some("1"));
        assert_eq!(get(&mut cache, &mut backend, b"a", W2).as_deref(), Some("2"));
        // Numbers that disagree with the entries (another key at 0, a known
        // key under a new number) still reach each key's own accumulator.
        let accs = batch(
            &mut cache,
            &mut backend,
            &[(b"c", W1, Some(0)), (b"b", W1, Some(5)), (b"c", W1, Some(0))],
        );
        assert_eq!(accs, vec![None, Some(b"1".to_vec())]);
        assert_eq!(get(&mut cache, &mut backend, b"a", W1).as_deref(), Some("0"));
        assert_eq!(get(&mut cache, &mut backend, b"c", W1).as_deref(), Some("0"));
        assert_eq!(get(&mut cache, &mut backend, b"b", W1).as_deref(), Some("1"));
        // Session windows: numbered here.
        let accs = batch(&mut cache, &mut backend, &[(b"a", W2, None), (b"z", W2, None)]);
        assert_eq!(accs, vec![Some(b"2".to_vec()), None]);
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
