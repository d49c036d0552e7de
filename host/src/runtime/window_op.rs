//! The window operator of a subtask: assigns records to windows (with the
//! pure [`WindowTrigger`]), keeps one accumulator per key and window (in an
//! [`AccCache`] in front of the state backend), and asks the guest to
//! accumulate, merge and emit — one call per batch.

use flinkw_batch::{Batch, BatchBuilder, NO_TIMESTAMP};

use super::acc_cache::{AccCache, Store};
use crate::graph::WindowNode;
use crate::keygroup::key_group;
use crate::plugin::{FiredWindow, GuestError, Instance, WindowElements};
use crate::state::{StateError, StateId};
use crate::window::{Assignment, SessionMerge, Window, WindowTrigger};

/// Why the window operator stopped.
pub(crate) enum WindowOpError {
    /// The guest failed.
    Guest(GuestError),
    /// A record cannot be windowed.
    BadRecord(String),
    /// The state backend failed.
    State(StateError),
}

impl From<StateError> for WindowOpError {
    fn from(e: StateError) -> Self {
        WindowOpError::State(e)
    }
}

impl From<GuestError> for WindowOpError {
    fn from(e: GuestError) -> Self {
        WindowOpError::Guest(e)
    }
}

/// One subtask's window operator.
pub(crate) struct WindowOperator {
    function: u32,
    /// A full window function: keep every record, not an accumulator.
    full: bool,
    /// Windows follow the wall clock: records get their arrival time.
    pub processing_time: bool,
    trigger: WindowTrigger,
    name: String,
    table: Option<StateId>,
    /// Accumulators (incremental aggregates; element lists of full window
    /// functions go to the backend directly).
    cache: AccCache,
    /// Session windows (merging): state is removed key by key, never a
    /// whole window at once.
    merging: bool,
    /// Records that arrived after every window they belong to had closed,
    /// and were dropped (no late side output).
    pub late_records: u64,
    /// Late records for the `late` side output, when the job routes it.
    late: Option<BatchBuilder>,
    // Per-batch scratch space.
    assignments: Vec<Assignment>,
    merges: Vec<SessionMerge>,
    /// The windows due at the last watermark, and how many of them have
    /// fired and been cleaned up so far (see [`WindowOperator::fire_some`]).
    fire: Vec<(Vec<u8>, Window)>,
    purge: Vec<(Vec<u8>, Window)>,
    fired: usize,
    purged: usize,
    /// Whether a watermark's windows may fire in slices between input
    /// batches: only when a record arriving meanwhile cannot change a
    /// window that is due but not yet out (no allowed lateness, which
    /// fires again; no panes, which later windows share).
    sliceable: bool,
    slots: BatchSlots,
    key_buf: Vec<u8>,
    accumulators: Vec<Option<Vec<u8>>>,
    targets: Vec<(u32, u32)>,
    fire_now: Vec<u32>,
}

/// The (key, window) pairs one batch touches, numbered in order of first
/// touch (the accumulator slots of one `accumulate` call), with their state
/// keys kept end to end in one buffer: no allocation per slot.
#[derive(Default)]
struct BatchSlots {
    /// Slot numbers, by the hash of their state keys.
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// Every slot's state key, one after the other.
    keys: Vec<u8>,
    /// Where each slot's state key ends in `keys`, and its window.
    slots: Vec<(u32, Window)>,
}

impl BatchSlots {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn range(&self, slot: u32) -> std::ops::Range<usize> {
        let start = match slot {
            0 => 0,
            s => self.slots[s as usize - 1].0 as usize,
        };
        start..self.slots[slot as usize].0 as usize
    }

    /// The state key of `slot`.
    fn state_key(&self, slot: u32) -> &[u8] {
        &self.keys[self.range(slot)]
    }

    /// The key (without key group and window) and window of `slot`.
    fn key_and_window(&self, slot: u32) -> (Vec<u8>, Window) {
        let (key, w) = self.key_of(slot);
        (key.to_vec(), w)
    }

    /// [`BatchSlots::key_and_window`], borrowed.
    fn key_of(&self, slot: u32) -> (&[u8], Window) {
        let sk = self.state_key(slot);
        (&sk[2..sk.len() - 16], self.slots[slot as usize].1)
    }

    /// The slot of `state_key` (made by [`state_key_into`] for `window`),
    /// and whether it is new.
    fn find_or_insert(&mut self, state_key: &[u8], window: Window) -> (u32, bool) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(state_key);
        let BatchSlots { index, hasher, keys, slots } = self;
        let key_of = |s: u32| {
            let start = if s == 0 { 0 } else { slots[s as usize - 1].0 as usize };
            &keys[start..slots[s as usize].0 as usize]
        };
        if let Some(s) = index.find(hash, |s| key_of(*s) == state_key) {
            return (*s, false);
        }
        let s = slots.len() as u32;
        index.insert_unique(hash, s, |s| {
            let start = if *s == 0 { 0 } else { slots[*s as usize - 1].0 as usize };
            hasher.hash_one(&keys[start..slots[*s as usize].0 as usize])
        });
        keys.extend_from_slice(state_key);
        slots.push((keys.len() as u32, window));
        (s, true)
    }

    fn clear(&mut self) {
        self.index.clear();
        self.keys.clear();
        self.slots.clear();
    }
}

/// The state key of a key's window: key group, key bytes, then the window
/// (start and end) as the namespace.
fn state_key(key: &[u8], w: &Window, max_parallelism: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 18);
    state_key_into(key_group(key, max_parallelism), key, w, &mut k);
    k
}

/// [`state_key`] into a reused buffer, with the key group computed once.
fn state_key_into(key_group: u32, key: &[u8], w: &Window, out: &mut Vec<u8>) {
    let mut ns = [0u8; 16];
    ns[..8].copy_from_slice(&w.start.to_be_bytes());
    ns[8..].copy_from_slice(&w.end.to_be_bytes());
    crate::state::state_key(key_group, key, &ns, out);
}

/// The instance's state backend, with this operator's table registered.
macro_rules! backend {
    ($self:ident, $instance:ident) => {{
        let (backend, max_parallelism) = $instance.state_backend();
        let table = match $self.table {
            Some(t) => t,
            None => {
                let t = backend.register(&$self.name)?;
                $self.table = Some(t);
                t
            }
        };
        (backend, table, max_parallelism)
    }};
}

/// The operator's [`Store`] in the instance's state backend.
macro_rules! store {
    ($self:ident, $instance:ident) => {{
        let (backend, table, max_parallelism) = backend!($self, $instance);
        Store { backend, table, max_parallelism }
    }};
}

impl WindowOperator {
    /// The operator of window node `node`; `late_output`: the job routes
    /// its late records; `cache_bytes`: the budget of its accumulator cache.
    pub fn new(node: u32, window: &WindowNode, late_output: bool, cache_bytes: usize) -> Self {
        let &WindowNode { full, processing_time, assigner, allowed_lateness, function, mergeable } =
            window;
        // A mergeable aggregate over sliding windows is kept per pane.
        let trigger = if mergeable && !full {
            WindowTrigger::with_panes(assigner, allowed_lateness)
        } else {
            WindowTrigger::new(assigner, allowed_lateness)
        };
        let sliceable = allowed_lateness == 0 && !trigger.uses_panes();
        WindowOperator {
            full,
            processing_time,
            late: late_output.then(BatchBuilder::new),
            function,
            trigger,
            name: format!("window/{node}"),
            table: None,
            cache: AccCache::new(cache_bytes),
            merging: assigner.is_merging(),
            late_records: 0,
            assignments: Vec::new(),
            merges: Vec::new(),
            sliceable,
            fire: Vec::new(),
            purge: Vec::new(),
            fired: 0,
            purged: 0,
            slots: BatchSlots::default(),
            key_buf: Vec::new(),
            accumulators: Vec::new(),
            targets: Vec::new(),
            fire_now: Vec::new(),
        }
    }

    /// Adds a batch to its windows; windows that must fire at once (late
    /// records within the allowed lateness) are emitted into `out`.
    ///
    /// With `watermarks` (a watermark interval of 0), event time advances
    /// between records as the sender saw it: `watermarks(i)` returns the
    /// combined watermark after record `i` if it advanced. Windows fire in
    /// between, exactly where Flink would fire them. Returns the last
    /// watermark it advanced to.
    pub fn process(
        &mut self,
        instance: &mut Instance,
        bytes: &Vec<u8>,
        out: &mut Vec<Vec<u8>>,
        mut watermarks: Option<&mut dyn FnMut(usize) -> Option<i64>>,
    ) -> Result<Option<i64>, WindowOpError> {
        let batch = Batch::new(bytes).map_err(|e| WindowOpError::BadRecord(e.to_string()))?;
        let mut advanced = None;
        for i in 0..batch.len() {
            if i > 0
                && let Some(next) = watermarks.as_mut()
                && let Some(wm) = next(i - 1)
            {
                advanced = Some(wm);
                if self.trigger.next_timer().is_some_and(|t| t <= wm) {
                    self.flush(instance, bytes)?;
                }
                self.on_watermark(instance, wm, out)?;
            }
            let mut r = batch.get(i);
            if self.processing_time {
                r.timestamp = crate::time::now_millis();
            }
            if r.timestamp == NO_TIMESTAMP {
                return Err(WindowOpError::BadRecord(format!(
                    "record {i} of a batch has no event time; give the stream timestamps \
                     (assign_timestamps) before an event-time window"
                )));
            }
            self.trigger.on_record(r.key, r.timestamp, &mut self.assignments, &mut self.merges);
            if self.assignments.is_empty() {
                match &mut self.late {
                    Some(late) => late.push(r.timestamp, r.key, r.value),
                    None => self.late_records += 1,
                }
                continue;
            }
            if !self.merges.is_empty() {
                // Merge stored state; the pending records go first.
                self.flush(instance, bytes)?;
                let merges = std::mem::take(&mut self.merges);
                for m in &merges {
                    self.merge(instance, r.key, m)?;
                }
                self.merges = merges;
            }
            let mut key_group = None;
            for a in &self.assignments {
                let (backend, table, max_parallelism) = backend!(self, instance);
                let slot = if self.full {
                    let kg = *key_group
                        .get_or_insert_with(|| crate::keygroup::key_group(r.key, max_parallelism));
                    state_key_into(kg, r.key, &a.window, &mut self.key_buf);
                    self.slots.find_or_insert(&self.key_buf, a.window).0
                } else {
                    // The accumulator's slot: by the key's number in the
                    // window when the trigger gave one (no lookup by key).
                    let mut store = Store { backend, table, max_parallelism };
                    let accs = &mut self.accumulators;
                    self.cache.slot(&mut store, r.key, a.window, a.index, accs)?
                };
                self.targets.push((i as u32, slot));
                if a.fire_now {
                    self.fire_now.push(slot);
                }
            }
            if !self.fire_now.is_empty() || !self.trigger.refire().is_empty() {
                let mut fire: Vec<(Vec<u8>, Window)> =
                    self.fire_now.iter().filter_map(|s| self.slot_key(*s)).collect();
                fire.extend(self.trigger.refire().iter().map(|w| (r.key.to_vec(), *w)));
                self.fire_now.clear();
                self.flush(instance, bytes)?;
                self.emit(instance, &fire, out)?;
            }
        }
        self.flush(instance, bytes)?;
        if let Some(next) = watermarks.as_mut()
            && !batch.is_empty()
            && let Some(wm) = next(batch.len() - 1)
        {
            advanced = Some(wm);
        }
        Ok(advanced)
    }

    /// Sends the pending records to the guest and stores the accumulators.
    fn flush(&mut self, instance: &mut Instance, bytes: &Vec<u8>) -> Result<(), WindowOpError> {
        if self.targets.is_empty() {
            return Ok(());
        }
        if self.full {
            return self.flush_elements(instance, bytes);
        }
        let updated =
            instance.window_accumulate(self.function, &self.accumulators, bytes, &self.targets)?;
        if updated.len() != self.cache.slots() {
            return Err(WindowOpError::BadRecord(format!(
                "the plugin returned {} accumulators for {} windows",
                updated.len(),
                self.cache.slots()
            )));
        }
        self.cache.put_slots(&updated);
        self.cache.trim(&mut store!(self, instance))?;
        self.accumulators.clear();
        self.targets.clear();
        Ok(())
    }

    /// Full window functions: appends each record to its windows' lists
    /// (each element: u32 length, i64 timestamp, value).
    /// The key and window of a slot of the current batch.
    fn slot_key(&self, slot: u32) -> Option<(Vec<u8>, Window)> {
        if self.full {
            Some(self.slots.key_and_window(slot))
        } else {
            self.cache.slot_key(slot).map(|(k, w)| (k.to_vec(), w))
        }
    }

    fn flush_elements(
        &mut self,
        instance: &mut Instance,
        bytes: &[u8],
    ) -> Result<(), WindowOpError> {
        let batch = Batch::new(bytes).map_err(|e| WindowOpError::BadRecord(e.to_string()))?;
        let mut appended: Vec<Vec<u8>> = vec![Vec::new(); self.slots.len()];
        for &(record, slot) in &self.targets {
            let r = batch.get(record as usize);
            let list = &mut appended[slot as usize];
            list.extend_from_slice(&(r.value.len() as u32 + 8).to_le_bytes());
            list.extend_from_slice(&r.timestamp.to_le_bytes());
            list.extend_from_slice(r.value);
        }
        let (backend, table, _) = backend!(self, instance);
        for (slot, new) in appended.iter().enumerate() {
            let sk = self.slots.state_key(slot as u32);
            let mut list = backend.get(table, sk)?.unwrap_or_default();
            list.extend_from_slice(new);
            backend.put(table, sk, &list)?;
        }
        self.slots.clear();
        self.accumulators.clear();
        self.targets.clear();
        Ok(())
    }

    fn merge(
        &mut self,
        instance: &mut Instance,
        key: &[u8],
        m: &SessionMerge,
    ) -> Result<(), WindowOpError> {
        let mut accs = Vec::new();
        for w in m.merged.iter().chain([&m.into]) {
            accs.extend(self.read(instance, key, w)?);
            self.remove(instance, key, w)?;
        }
        let merged = match accs.len() {
            0 => return Ok(()),
            1 => accs.pop().unwrap_or_default(),
            // Element lists merge by concatenation.
            _ if self.full => accs.concat(),
            _ => instance.window_merge(self.function, &accs)?,
        };
        self.write(instance, key, m.into, &merged)?;
        Ok(())
    }

    /// The state of `key` in `w`: its accumulator, or its element list.
    fn read(
        &mut self,
        instance: &mut Instance,
        key: &[u8],
        w: &Window,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let mut store = store!(self, instance);
        if self.full {
            store.backend.get(store.table, &state_key(key, w, store.max_parallelism))
        } else {
            self.cache.get(&mut store, key, w)
        }
    }

    /// Sets the state of `key` in `w`.
    fn write(
        &mut self,
        instance: &mut Instance,
        key: &[u8],
        w: Window,
        value: &[u8],
    ) -> Result<(), StateError> {
        let store = store!(self, instance);
        if self.full {
            store.backend.put(store.table, &state_key(key, &w, store.max_parallelism), value)
        } else {
            self.cache.put(key, w, value);
            Ok(())
        }
    }

    /// Drops the state of `key` in `w`: a session merged into another, or
    /// the window's cleanup (which, but for sessions, drops every key of
    /// the window).
    fn remove(
        &mut self,
        instance: &mut Instance,
        key: &[u8],
        w: &Window,
    ) -> Result<(), StateError> {
        let mut store = store!(self, instance);
        if self.full {
            store.backend.remove(store.table, &state_key(key, w, store.max_parallelism))
        } else if self.merging {
            self.cache.remove(&mut store, key, w)
        } else {
            self.cache.purge(&mut store, key, w)
        }
    }

    fn emit(
        &mut self,
        instance: &mut Instance,
        windows: &[(Vec<u8>, Window)],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), WindowOpError> {
        if self.full {
            return self.emit_elements(instance, windows, out);
        }
        if self.trigger.uses_panes() {
            return self.emit_panes(instance, windows, out);
        }
        let mut fired = Vec::with_capacity(windows.len());
        for (key, w) in windows {
            if let Some(accumulator) = self.read(instance, key, w)? {
                fired.push(FiredWindow {
                    key: key.clone(),
                    start: w.start,
                    end: w.end,
                    accumulator,
                });
            }
        }
        if !fired.is_empty() {
            out.push(instance.window_emit(self.function, &fired)?);
        }
        Ok(())
    }

    /// [`WindowOperator::emit`] with panes: each window's accumulator is
    /// its panes' accumulators merged by the guest.
    fn emit_panes(
        &mut self,
        instance: &mut Instance,
        windows: &[(Vec<u8>, Window)],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), WindowOpError> {
        let mut fired = Vec::with_capacity(windows.len());
        let mut accs = Vec::new();
        for (key, w) in windows {
            accs.clear();
            for pane in self.trigger.panes_of(w) {
                accs.extend(self.read(instance, key, &pane)?);
            }
            let accumulator = match accs.len() {
                0 => continue,
                1 => accs.pop().unwrap_or_default(),
                _ => instance.window_merge(self.function, &accs)?,
            };
            fired.push(FiredWindow { key: key.clone(), start: w.start, end: w.end, accumulator });
        }
        if !fired.is_empty() {
            out.push(instance.window_emit(self.function, &fired)?);
        }
        Ok(())
    }

    fn emit_elements(
        &mut self,
        instance: &mut Instance,
        windows: &[(Vec<u8>, Window)],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), WindowOpError> {
        let mut fired = Vec::with_capacity(windows.len());
        for (key, w) in windows {
            let Some(list) = self.read(instance, key, w)? else {
                continue;
            };
            let mut elements = BatchBuilder::new();
            let mut rest = &list[..];
            while let Some((len, tail)) = rest.split_first_chunk::<4>() {
                let len = u32::from_le_bytes(*len) as usize;
                let (Some(ts), Some(value)) = (tail.get(..8), tail.get(8..len)) else {
                    return Err(WindowOpError::BadRecord("corrupt window element list".into()));
                };
                let ts = i64::from_le_bytes(ts.try_into().unwrap_or_default());
                elements.push(ts, key, value);
                rest = &tail[len..];
            }
            fired.push(WindowElements {
                key: key.clone(),
                start: w.start,
                end: w.end,
                elements: elements.finish(),
            });
        }
        if !fired.is_empty() {
            out.push(instance.window_process(self.function, &fired)?);
        }
        Ok(())
    }

    /// The trigger (pending windows, timers), for a checkpoint.
    pub fn trigger(&self) -> &WindowTrigger {
        &self.trigger
    }

    /// Restores a trigger taken by [`WindowOperator::trigger`], once the
    /// state backend holds the restored state.
    pub fn set_trigger(&mut self, mut trigger: WindowTrigger) {
        trigger.set_panes_like(&self.trigger);
        self.cache.restored(trigger.windows());
        self.trigger = trigger;
    }

    /// At a checkpoint barrier, before the backend's snapshot: writes the
    /// accumulators changed since the last one to the backend.
    pub fn before_snapshot(&mut self, instance: &mut Instance) -> Result<(), StateError> {
        self.cache.flush(&mut store!(self, instance))
    }

    /// Takes the late records collected for the side output, if any.
    pub fn take_late(&mut self) -> Option<Vec<u8>> {
        self.late.as_mut().filter(|b| !b.is_empty()).map(BatchBuilder::finish)
    }

    /// Advances event time: fires and cleans up windows.
    pub fn on_watermark(
        &mut self,
        instance: &mut Instance,
        watermark: i64,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), WindowOpError> {
        self.start_watermark(watermark);
        while !self.fire_some(instance, usize::MAX, out)? {}
        Ok(())
    }

    /// Advances the trigger to `watermark`: the windows it makes due fire
    /// through [`WindowOperator::fire_some`]. The windows of the watermark
    /// before must all be out.
    pub fn start_watermark(&mut self, watermark: i64) {
        debug_assert!(!self.firing(), "a watermark's windows are not all out");
        self.trigger.on_watermark(watermark, &mut self.fire, &mut self.purge);
        (self.fired, self.purged) = (0, 0);
    }

    /// Whether windows of the last watermark wait to fire or be cleaned up.
    pub fn firing(&self) -> bool {
        self.fired < self.fire.len() || self.purged < self.purge.len()
    }

    /// Emits up to `max` of the windows due (all of them unless the
    /// operator is sliceable), then cleans up; true
    /// once every window of the watermark is out and cleaned up.
    pub fn fire_some(
        &mut self,
        instance: &mut Instance,
        max: usize,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<bool, WindowOpError> {
        let max = if self.sliceable { max.max(1) } else { usize::MAX };
        if self.fired < self.fire.len() {
            let fire = std::mem::take(&mut self.fire);
            let end = self.fired.saturating_add(max).min(fire.len());
            // Emit in bounded chunks so one watermark does not make a huge batch.
            let emitted = fire[self.fired..end]
                .chunks(4096)
                .try_for_each(|chunk| self.emit(instance, chunk, out));
            self.fire = fire;
            emitted?;
            self.fired = end;
            if end < self.fire.len() {
                return Ok(false);
            }
        }
        let purge = std::mem::take(&mut self.purge);
        let end = self.purged.saturating_add(max).min(purge.len());
        let removed =
            purge[self.purged..end].iter().try_for_each(|(key, w)| self.remove(instance, key, w));
        self.purge = purge;
        removed?;
        self.purged = end;
        if end < self.purge.len() {
            return Ok(false);
        }
        // The watermark passed these windows' cleanup: every key of each
        // was purged just now, and none can join them again.
        for (_, w) in &self.purge {
            self.cache.forget(w);
        }
        self.fire.clear();
        self.purge.clear();
        (self.fired, self.purged) = (0, 0);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_slots_number_each_key_and_window_once_in_order_of_first_touch() {
        let mut slots = BatchSlots::default();
        let (w1, w2) = (Window { start: 0, end: 10 }, Window { start: 5, end: 15 });
        let mut sk = Vec::new();
        let mut touch = |slots: &mut BatchSlots, key: &[u8], w: Window| {
            state_key_into(key_group(key, 128), key, &w, &mut sk);
            slots.find_or_insert(&sk, w)
        };
        // Enough slots that the index grows and rehashes from the buffer.
        for i in 0..1000u32 {
            assert_eq!(touch(&mut slots, &i.to_be_bytes(), w1), (2 * i, true));
            assert_eq!(touch(&mut slots, &i.to_be_bytes(), w2), (2 * i + 1, true));
        }
        for i in (0..1000u32).rev() {
            assert_eq!(touch(&mut slots, &i.to_be_bytes(), w2), (2 * i + 1, false));
        }
        assert_eq!(slots.len(), 2000);
        assert_eq!(slots.key_and_window(7), (3u32.to_be_bytes().to_vec(), w2));
        assert_eq!(slots.state_key(6), state_key(&3u32.to_be_bytes(), &w1, 128));
        slots.clear();
        assert_eq!(touch(&mut slots, b"x", w2), (0, true));
        assert_eq!(slots.key_and_window(0), (b"x".to_vec(), w2));
    }
}
