//! The event-time trigger of a window operator, with allowed lateness and
//! session merging (Flink's `WindowOperator` + `EventTimeTrigger` +
//! `MergingWindowSet`), as a pure state machine over keys, timestamps and
//! watermarks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Window, WindowAssigner};
use crate::time::MIN_WATERMARK;

/// A window a record was added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// The window.
    pub window: Window,
    /// The watermark has passed the window's end already (the record is late
    /// but within the allowed lateness): fire the window right after adding.
    pub fire_now: bool,
    /// The key's number in this window (tumbling and sliding windows, and
    /// panes): keys are numbered from 0 in order of arrival, and a key keeps
    /// its number for as long as the window lives, so the window operator
    /// can keep the key's state at that index (no second lookup by key).
    /// `None` for session windows.
    pub index: Option<u32>,
}

/// Session windows of one key that merged: the state of `merged` must be
/// folded into `into`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMerge {
    /// The covering window that now holds the state.
    pub into: Window,
    /// The windows whose state moves into `into` (never `into` itself).
    pub merged: Vec<Window>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
enum TimerKind {
    Fire,
    Cleanup,
}

type Timer = (i64, Vec<u8>, Window, TimerKind);

/// The keys of one window of a non-merging assigner. Every key here has a
/// cleanup timer (at the window's end plus the allowed lateness); its flag
/// says whether its firing timer (at the window's end) is still pending.
///
/// Keys are numbered in order of arrival (their index in `keys`); the
/// numbers are [`Assignment::index`].
#[derive(Clone, Default)]
struct WindowKeys {
    /// Each key with its flag. Keys are held inline when short, so a lookup
    /// does not chase a pointer to compare them.
    keys: Vec<(smallvec::SmallVec<[u8; 24]>, bool)>,
    /// Indexes into `keys`, by the hash of their key.
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// How many flags are set.
    pending: usize,
}

impl std::fmt::Debug for WindowKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowKeys")
            .field("keys", &self.keys)
            .field("pending", &self.pending)
            .finish()
    }
}

impl WindowKeys {
    /// Adds `key` (setting its flag when `fire`); returns its number.
    fn add(&mut self, key: &[u8], fire: bool) -> u32 {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(key);
        let WindowKeys { keys, index, hasher, pending } = self;
        if let Some(&i) = index.find(hash, |&i| keys[i as usize].0[..] == *key) {
            let flag = &mut keys[i as usize].1;
            if fire && !*flag {
                *flag = true;
                *pending += 1;
            }
            return i;
        }
        let i = keys.len() as u32;
        index.insert_unique(hash, i, |&i| hasher.hash_one(&keys[i as usize].0[..]));
        keys.push((key.into(), fire));
        *pending += usize::from(fire);
        i
    }

    /// Keeps only the keys for which `keep` holds (numbering them anew).
    fn retain(&mut self, keep: &dyn Fn(&[u8]) -> bool) {
        let old = std::mem::take(&mut self.keys);
        self.index.clear();
        self.pending = 0;
        for (k, fire) in old.into_iter().filter(|(k, _)| keep(k)) {
            self.add(&k, fire);
        }
    }
}

/// Decides, per key, which windows a record joins and when windows fire and
/// are cleaned up. Serializable: it is part of a checkpoint.
///
/// Flink keeps one timer per key and window. So does this trigger for
/// session windows; for tumbling and sliding windows, whose every window of
/// one assigner has its own end, it keeps the keys of each window instead
/// (one hash lookup per record and window, no ordered insert) and sorts them
/// by key when the window fires, so windows fire in the same order as with
/// one timer each: by time, then key. Checkpoints hold the timers either way.
#[derive(Debug, Clone)]
pub struct WindowTrigger {
    assigner: WindowAssigner,
    allowed_lateness: i64,
    watermark: i64,
    /// Session windows: one timer per key, window and kind.
    timers: BTreeSet<Timer>,
    sessions: HashMap<Vec<u8>, Vec<Window>>,
    /// Tumbling and sliding windows: the keys of each window, in window
    /// order (which is also the order of their ends and cleanup times).
    /// With panes: the keys of each pane instead.
    windows: BTreeMap<Window, WindowKeys>,
    /// Sliding windows kept as panes of one slide: `(size, slide)`.
    panes: Option<(i64, i64)>,
    /// Windows the last record's pane belongs to that had fired already
    /// and must fire again with it (panes only).
    refire: Vec<Window>,
    scratch: Vec<Window>,
}

/// The checkpointed form of a [`WindowTrigger`]: one timer per key, window
/// and kind, whatever the trigger keeps in memory.
#[derive(serde::Serialize)]
struct TriggerRef<'a> {
    assigner: &'a WindowAssigner,
    allowed_lateness: i64,
    watermark: i64,
    timers: Vec<(i64, &'a [u8], Window, TimerKind)>,
    sessions: &'a HashMap<Vec<u8>, Vec<Window>>,
}

/// What [`TriggerRef`] deserializes to.
#[derive(serde::Deserialize)]
struct TriggerRepr {
    assigner: WindowAssigner,
    allowed_lateness: i64,
    watermark: i64,
    timers: BTreeSet<Timer>,
    sessions: HashMap<Vec<u8>, Vec<Window>>,
}

impl serde::Serialize for WindowTrigger {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let timers = if self.assigner.is_merging() {
            self.timers.iter().map(|(t, k, w, kind)| (*t, &k[..], *w, *kind)).collect()
        } else {
            let mut timers = Vec::new();
            for (w, e) in &self.windows {
                let cleanup = self.window_cleanup_time(w);
                for (k, fire) in &e.keys {
                    if *fire {
                        timers.push((w.max_timestamp(), &k[..], *w, TimerKind::Fire));
                    }
                    timers.push((cleanup, &k[..], *w, TimerKind::Cleanup));
                }
            }
            timers.sort_unstable();
            timers
        };
        TriggerRef {
            assigner: &self.assigner,
            allowed_lateness: self.allowed_lateness,
            watermark: self.watermark,
            timers,
            sessions: &self.sessions,
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for WindowTrigger {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = TriggerRepr::deserialize(d)?;
        let mut t = WindowTrigger::new(r.assigner, r.allowed_lateness);
        t.watermark = r.watermark;
        t.sessions = r.sessions;
        if t.assigner.is_merging() {
            t.timers = r.timers;
        } else {
            for (_, key, w, kind) in r.timers {
                t.windows.entry(w).or_default().add(&key, kind == TimerKind::Fire);
            }
        }
        Ok(t)
    }
}

impl WindowTrigger {
    /// A trigger for windows of `assigner`, keeping windows open for
    /// `allowed_lateness` ms after they first fire.
    pub fn new(assigner: WindowAssigner, allowed_lateness: i64) -> Self {
        WindowTrigger {
            assigner,
            allowed_lateness: allowed_lateness.max(0),
            watermark: MIN_WATERMARK,
            timers: BTreeSet::new(),
            sessions: HashMap::new(),
            windows: BTreeMap::new(),
            panes: None,
            refire: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// A trigger that keeps sliding windows as panes of one slide when
    /// `assigner` allows it (see [`WindowAssigner::panes`]): a record joins
    /// one pane; a window fires for every key of its panes. The state of a
    /// pane is cleaned up with the last window it belongs to.
    pub fn with_panes(assigner: WindowAssigner, allowed_lateness: i64) -> Self {
        let mut t = Self::new(assigner, allowed_lateness);
        t.panes = assigner.panes();
        t
    }

    /// Whether windows are kept as panes: assignments then name panes, and
    /// fired windows must combine the state of their panes.
    pub fn uses_panes(&self) -> bool {
        self.panes.is_some()
    }

    /// Makes this trigger keep panes as `other` does (a trigger restored
    /// from a checkpoint takes the mode of the operator).
    pub fn set_panes_like(&mut self, other: &WindowTrigger) {
        self.panes = other.panes;
    }

    /// Windows the record just placed must fire again at once (it is late
    /// but within the allowed lateness); panes only.
    pub fn refire(&self) -> &[Window] {
        &self.refire
    }

    /// The panes of window `w`, in time order (panes only).
    pub fn panes_of(&self, w: &Window) -> impl Iterator<Item = Window> + use<> {
        let slide = self.panes.map_or(w.end - w.start, |(_, slide)| slide);
        let end = w.end;
        (w.start..end)
            .step_by(slide.max(1) as usize)
            .map(move |s| Window { start: s, end: s + slide })
    }

    /// Every window (or pane) some key has state in.
    pub fn windows(&self) -> Vec<Window> {
        let mut all: Vec<Window> = self.windows.keys().copied().collect();
        all.extend(self.timers.iter().map(|(_, _, w, _)| *w));
        all.extend(self.sessions.values().flatten());
        all
    }

    /// The current watermark.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Keeps only the windows and timers of keys for which `keep` holds
    /// (when state is redistributed to another parallelism).
    pub fn retain_keys(&mut self, keep: &dyn Fn(&[u8]) -> bool) {
        self.timers.retain(|(_, key, _, _)| keep(key));
        self.sessions.retain(|key, _| keep(key));
        self.windows.retain(|_, e| {
            e.retain(keep);
            !e.keys.is_empty()
        });
    }

    /// Takes over the windows and timers of `other` (disjoint keys); the
    /// watermark is the smaller of the two.
    pub fn absorb(&mut self, other: WindowTrigger) {
        self.timers.extend(other.timers);
        self.sessions.extend(other.sessions);
        for (w, e) in other.windows {
            let mine = self.windows.entry(w).or_default();
            for (k, fire) in e.keys {
                mine.add(&k, fire);
            }
        }
        self.watermark = self.watermark.min(other.watermark);
    }

    fn cleanup_time(&self, w: &Window) -> i64 {
        w.max_timestamp().saturating_add(self.allowed_lateness)
    }

    /// When the state of an entry of `windows` goes: a window's cleanup
    /// time, or for a pane that of the last window it belongs to.
    fn window_cleanup_time(&self, w: &Window) -> i64 {
        match self.panes {
            Some((size, _)) => self.cleanup_time(&Window { start: w.start, end: w.start + size }),
            None => self.cleanup_time(w),
        }
    }

    /// The ends of the windows of pane `p`, in order.
    fn window_ends(&self, p: &Window) -> impl Iterator<Item = i64> + use<> {
        let (size, slide) = self.panes.unwrap_or((p.end - p.start, p.end - p.start));
        (p.end..=p.start + size).step_by(slide.max(1) as usize)
    }

    /// The time of the earliest timer (firing or cleanup), if any.
    pub fn next_timer(&self) -> Option<i64> {
        if self.assigner.is_merging() {
            return self.timers.first().map(|t| t.0);
        }
        let (first, _) = self.windows.first_key_value()?;
        if self.panes.is_some() {
            // The first pane cleans up first; a window fires at its end - 1.
            let mut next = self.window_cleanup_time(first);
            for p in self.windows.keys() {
                if p.max_timestamp() >= next {
                    break;
                }
                if let Some(end) = self.window_ends(p).find(|e| e - 1 > self.watermark) {
                    next = next.min(end - 1);
                }
            }
            return Some(next);
        }
        // The first window cleans up first; a window fires before it cleans up.
        let mut next = self.cleanup_time(first);
        for (w, e) in &self.windows {
            if w.max_timestamp() >= next {
                break;
            }
            if e.pending > 0 {
                next = w.max_timestamp();
                break;
            }
        }
        Some(next)
    }

    /// Number of windows waiting to fire or be cleaned up.
    pub fn pending_timers(&self) -> usize {
        self.timers.len() + self.windows.values().map(|e| e.keys.len() + e.pending).sum::<usize>()
    }

    fn is_late(&self, w: &Window) -> bool {
        self.cleanup_time(w) <= self.watermark
    }

    /// Registers the timers of `key` in `w`; returns the key's number in
    /// the window (non-merging windows).
    fn register(&mut self, key: &[u8], w: Window) -> Option<u32> {
        // A window the watermark has passed fires at once, not by timer.
        let fire = w.max_timestamp() > self.watermark;
        if !self.assigner.is_merging() {
            return Some(self.windows.entry(w).or_default().add(key, fire));
        }
        if fire {
            self.timers.insert((w.max_timestamp(), key.to_vec(), w, TimerKind::Fire));
        }
        self.timers.insert((self.cleanup_time(&w), key.to_vec(), w, TimerKind::Cleanup));
        None
    }

    fn unregister(&mut self, key: &[u8], w: Window) {
        self.timers.remove(&(w.max_timestamp(), key.to_vec(), w, TimerKind::Fire));
        self.timers.remove(&(self.cleanup_time(&w), key.to_vec(), w, TimerKind::Cleanup));
    }

    /// Places a record of `key` at `timestamp` into its windows. `out` gets
    /// the windows it joins (none: the record is too late and is dropped or
    /// sent to the late side output); `merges` gets session merges to apply
    /// to the state before the record is added.
    pub fn on_record(
        &mut self,
        key: &[u8],
        timestamp: i64,
        out: &mut Vec<Assignment>,
        merges: &mut Vec<SessionMerge>,
    ) {
        out.clear();
        merges.clear();
        if self.panes.is_some() {
            return self.on_record_in_pane(key, timestamp, out);
        }
        let mut windows = std::mem::take(&mut self.scratch);
        self.assigner.assign(timestamp, &mut windows);
        for w in windows.drain(..) {
            // As Flink's WindowOperator: a session is judged late only after
            // merging, so a record behind the watermark still joins a live
            // session it overlaps (and may extend its start).
            // (A live session is never late, so a late result merged nothing.)
            let w = if self.assigner.is_merging() {
                let merged = self.merge_session(key, w, merges);
                if self.is_late(&merged) {
                    self.retire_session(key, merged);
                    continue;
                }
                merged
            } else if self.is_late(&w) {
                continue;
            } else {
                w
            };
            let index = self.register(key, w);
            out.push(Assignment {
                window: w,
                fire_now: w.max_timestamp() <= self.watermark,
                index,
            });
        }
        self.scratch = windows;
    }

    /// [`WindowTrigger::on_record`] with panes: the record joins its pane
    /// unless every window of the pane has been cleaned up; windows of the
    /// pane that fired already fire again.
    fn on_record_in_pane(&mut self, key: &[u8], timestamp: i64, out: &mut Vec<Assignment>) {
        self.refire.clear();
        let Some(pane) = self.assigner.pane(timestamp) else { return };
        if self.window_cleanup_time(&pane) <= self.watermark {
            return;
        }
        let index = self.windows.entry(pane).or_default().add(key, false);
        out.push(Assignment { window: pane, fire_now: false, index: Some(index) });
        let size = self.panes.map_or(0, |(size, _)| size);
        for end in self.window_ends(&pane) {
            let w = Window { start: end - size, end };
            if w.max_timestamp() <= self.watermark && !self.is_late(&w) {
                self.refire.push(w);
            }
        }
    }

    /// Forgets session `w` of `key` (a late record's window that merged
    /// with nothing).
    fn retire_session(&mut self, key: &[u8], w: Window) {
        if let Some(active) = self.sessions.get_mut(key) {
            active.retain(|s| *s != w);
            if active.is_empty() {
                self.sessions.remove(key);
            }
        }
    }

    fn merge_session(&mut self, key: &[u8], new: Window, merges: &mut Vec<SessionMerge>) -> Window {
        let active = self.sessions.entry(key.to_vec()).or_default();
        let mut into = new;
        let mut merged = Vec::new();
        active.retain(|w| {
            if w.intersects(&new) {
                into = into.cover(w);
                merged.push(*w);
                false
            } else {
                true
            }
        });
        active.push(into);
        merged.retain(|w| *w != into);
        merged.sort();
        if !merged.is_empty() {
            for w in &merged {
                self.unregister(key, *w);
            }
            merges.push(SessionMerge { into, merged });
        }
        into
    }

    /// Advances the watermark. `fire` gets the windows to emit, in time
    /// order (then key order); `purge` the windows whose state can be
    /// dropped (after any firing at the same time).
    pub fn on_watermark(
        &mut self,
        watermark: i64,
        fire: &mut Vec<(Vec<u8>, Window)>,
        purge: &mut Vec<(Vec<u8>, Window)>,
    ) {
        fire.clear();
        purge.clear();
        if watermark <= self.watermark {
            return;
        }
        let before = std::mem::replace(&mut self.watermark, watermark);
        if self.panes.is_some() {
            self.fire_panes(before, watermark, fire, purge);
            return;
        }
        if !self.assigner.is_merging() {
            self.fire_windows(watermark, fire, purge);
            return;
        }
        while let Some(first) = self.timers.first() {
            if first.0 > watermark {
                break;
            }
            let Some((_, key, w, kind)) = self.timers.pop_first() else { break };
            match kind {
                TimerKind::Fire => fire.push((key, w)),
                TimerKind::Cleanup => {
                    self.retire_session(&key, w);
                    purge.push((key, w));
                }
            }
        }
    }

    /// [`WindowTrigger::on_watermark`] with panes: every window that ends
    /// after `before` and at most at `watermark`, in order, for the keys of
    /// its panes in key order; then the panes whose last window is cleaned
    /// up.
    fn fire_panes(
        &mut self,
        before: i64,
        watermark: i64,
        fire: &mut Vec<(Vec<u8>, Window)>,
        purge: &mut Vec<(Vec<u8>, Window)>,
    ) {
        let Some((size, _)) = self.panes else { return };
        let ends: BTreeSet<i64> = self
            .windows
            .keys()
            .flat_map(|p| self.window_ends(p))
            .filter(|e| e - 1 > before && e - 1 <= watermark)
            .collect();
        let mut keys: Vec<&[u8]> = Vec::new();
        for end in ends {
            let w = Window { start: end - size, end };
            keys.clear();
            let from = Window { start: w.start, end: i64::MIN };
            let to = Window { start: w.end, end: i64::MIN };
            for e in self.windows.range(from..to).map(|(_, e)| e) {
                keys.extend(e.keys.iter().map(|(k, _)| &k[..]));
            }
            keys.sort_unstable();
            keys.dedup();
            fire.extend(keys.iter().map(|k| (k.to_vec(), w)));
        }
        let mut done = Vec::new();
        for (p, e) in &self.windows {
            if self.window_cleanup_time(p) > watermark {
                break;
            }
            purge.extend(e.keys.iter().map(|(k, _)| (k.to_vec(), *p)));
            done.push(*p);
        }
        for p in done {
            self.windows.remove(&p);
        }
    }

    /// [`WindowTrigger::on_watermark`] for non-merging windows: windows in
    /// order (their ends and cleanup times grow with their starts), keys
    /// sorted within each.
    fn fire_windows(
        &mut self,
        watermark: i64,
        fire: &mut Vec<(Vec<u8>, Window)>,
        purge: &mut Vec<(Vec<u8>, Window)>,
    ) {
        let mut done = Vec::new();
        for (w, e) in self.windows.iter_mut() {
            if w.max_timestamp() > watermark {
                break;
            }
            let cleanup = w.max_timestamp().saturating_add(self.allowed_lateness) <= watermark;
            if e.pending == 0 && !cleanup {
                continue;
            }
            let mut keys: Vec<(&[u8], &mut bool)> = e
                .keys
                .iter_mut()
                .filter(|(_, f)| cleanup || *f)
                .map(|(k, f)| (&k[..], f))
                .collect();
            keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (k, f) in keys {
                if *f {
                    *f = false;
                    fire.push((k.to_vec(), *w));
                }
                if cleanup {
                    purge.push((k.to_vec(), *w));
                }
            }
            e.pending = 0;
            if cleanup {
                done.push(*w);
            }
        }
        for w in done {
            self.windows.remove(&w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rand::xorshift;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    /// (key, window) pairs with readable keys.
    type Named = Vec<(String, Window)>;

    struct Harness {
        t: WindowTrigger,
        out: Vec<Assignment>,
        merges: Vec<SessionMerge>,
        fire: Vec<(Vec<u8>, Window)>,
        purge: Vec<(Vec<u8>, Window)>,
    }

    impl Harness {
        fn new(a: WindowAssigner, lateness: i64) -> Self {
            Harness {
                t: WindowTrigger::new(a, lateness),
                out: vec![],
                merges: vec![],
                fire: vec![],
                purge: vec![],
            }
        }
        fn record(&mut self, key: &str, ts: i64) -> Vec<(Window, bool)> {
            self.t.on_record(key.as_bytes(), ts, &mut self.out, &mut self.merges);
            self.out.iter().map(|a| (a.window, a.fire_now)).collect()
        }
        fn watermark(&mut self, wm: i64) -> (Named, Named) {
            self.t.on_watermark(wm, &mut self.fire, &mut self.purge);
            let s = |v: &Vec<(Vec<u8>, Window)>| {
                v.iter().map(|(k, w)| (String::from_utf8_lossy(k).into_owned(), *w)).collect()
            };
            (s(&self.fire), s(&self.purge))
        }
    }

    #[test]
    fn tumbling_windows_fire_when_the_watermark_passes_their_end() {
        let mut h = Harness::new(WindowAssigner::Tumbling { size: 10, offset: 0 }, 0);
        assert_eq!(h.record("a", 3), vec![(w(0, 10), false)]);
        assert_eq!(h.record("b", 12), vec![(w(10, 20), false)]);
        assert_eq!(h.watermark(8), (vec![], vec![]));
        let (fire, purge) = h.watermark(9);
        assert_eq!(fire, vec![("a".into(), w(0, 10))]);
        assert_eq!(purge, vec![("a".into(), w(0, 10))]);
        // A record for a window that has fired and been cleaned up is late.
        assert_eq!(h.record("a", 5), vec![]);
        assert_eq!(h.watermark(100).0, vec![("b".into(), w(10, 20))]);
        assert_eq!(h.t.pending_timers(), 0);
    }

    #[test]
    fn allowed_lateness_refires_then_cleans_up() {
        let mut h = Harness::new(WindowAssigner::Tumbling { size: 10, offset: 0 }, 5);
        h.record("a", 1);
        let (fire, purge) = h.watermark(9);
        assert_eq!(fire.len(), 1);
        assert!(purge.is_empty(), "kept for the allowed lateness");
        // Late but allowed: joins the window and fires it at once.
        assert_eq!(h.record("a", 2), vec![(w(0, 10), true)]);
        let (fire, purge) = h.watermark(14);
        assert!(fire.is_empty());
        assert_eq!(purge, vec![("a".into(), w(0, 10))]);
        assert_eq!(h.record("a", 3), vec![], "past the allowed lateness");
    }

    #[test]
    fn sliding_records_join_every_covering_window() {
        let mut h = Harness::new(WindowAssigner::Sliding { size: 10, slide: 5, offset: 0 }, 0);
        assert_eq!(h.record("k", 7), vec![(w(0, 10), false), (w(5, 15), false)]);
        let (fire, _) = h.watermark(100);
        assert_eq!(fire, vec![("k".into(), w(0, 10)), ("k".into(), w(5, 15))]);
    }

    #[test]
    fn session_windows_merge_when_they_touch() {
        let mut h = Harness::new(WindowAssigner::Session { gap: 10 }, 0);
        assert_eq!(h.record("k", 0), vec![(w(0, 10), false)]);
        assert_eq!(h.record("k", 30), vec![(w(30, 40), false)]);
        assert!(h.merges.is_empty());
        // 15..25 touches neither; 10..20 touches the first and 20..30 bridges.
        assert_eq!(h.record("k", 10), vec![(w(0, 20), false)]);
        assert_eq!(h.merges, vec![SessionMerge { into: w(0, 20), merged: vec![w(0, 10)] }]);
        assert_eq!(h.record("k", 20), vec![(w(0, 40), false)]);
        assert_eq!(
            h.merges,
            vec![SessionMerge { into: w(0, 40), merged: vec![w(0, 20), w(30, 40)] }]
        );
        // Another key is separate.
        assert_eq!(h.record("j", 5), vec![(w(5, 15), false)]);
        let (fire, purge) = h.watermark(39);
        assert_eq!(fire, vec![("j".into(), w(5, 15)), ("k".into(), w(0, 40))]);
        assert_eq!(purge.len(), 2);
        assert_eq!(h.t.pending_timers(), 0);
    }

    /// As in Flink, a session record is judged late after merging: one whose
    /// own window the watermark has passed still joins (and extends) a live
    /// session it overlaps; one that overlaps nothing is late.
    #[test]
    fn a_record_behind_the_watermark_joins_a_live_session() {
        let mut h = Harness::new(WindowAssigner::Session { gap: 10 }, 0);
        h.record("k", 50);
        assert_eq!(h.record("k", 58), vec![(w(50, 68), false)]);
        h.watermark(57);
        // 47..57 ends before the watermark but overlaps 50..68.
        assert_eq!(h.record("k", 47), vec![(w(47, 68), false)]);
        assert_eq!(h.merges, vec![SessionMerge { into: w(47, 68), merged: vec![w(50, 68)] }]);
        // 20..30 overlaps nothing live: late, and leaves no session behind.
        assert_eq!(h.record("k", 20), vec![]);
        assert_eq!(h.record("j", 20), vec![]);
        let (fire, purge) = h.watermark(67);
        assert_eq!(fire, vec![("k".into(), w(47, 68))]);
        assert_eq!(purge, vec![("k".into(), w(47, 68))]);
        assert_eq!(h.t.pending_timers(), 0);
    }

    /// The trigger agrees with a brute-force model on random inputs:
    /// every on-time record is counted in exactly the windows it belongs to.
    #[test]
    fn matches_a_reference_model_on_random_out_of_order_input() {
        let mut rand = xorshift(0x2545_f491_4f6c_dd1du64);
        for _ in 0..50 {
            let a = WindowAssigner::Sliding { size: 20, slide: 5, offset: 0 };
            let mut h = Harness::new(a, 0);
            let mut counts: std::collections::BTreeMap<(String, Window), u64> = Default::default();
            let mut fired: std::collections::BTreeMap<(String, Window), u64> = Default::default();
            let mut model: std::collections::BTreeMap<(String, Window), u64> = Default::default();
            let mut max_ts = 0i64;
            for _ in 0..300 {
                let key = format!("k{}", rand(3));
                let ts = max_ts + rand(10) as i64 - 6;
                max_ts = max_ts.max(ts);
                let wm = h.t.watermark();
                let mut ws = Vec::new();
                a.assign(ts, &mut ws);
                for win in ws.iter().filter(|win| win.max_timestamp() > wm) {
                    *model.entry((key.clone(), *win)).or_default() += 1;
                }
                for (win, _) in h.record(&key, ts) {
                    *counts.entry((key.clone(), win)).or_default() += 1;
                }
                if rand(4) == 0 {
                    for f in h.watermark(max_ts - 5).0 {
                        fired.insert(f.clone(), counts.remove(&f).unwrap_or(0));
                    }
                }
            }
            for f in h.watermark(i64::MAX).0 {
                fired.insert(f.clone(), counts.remove(&f).unwrap_or(0));
            }
            assert_eq!(fired, model);
        }
    }

    /// The trigger as it was before it kept keys per window: one timer per
    /// key, window and kind in one ordered set. The reference for the
    /// per-window form of tumbling and sliding windows.
    #[derive(serde::Serialize)]
    struct TimerModel {
        assigner: WindowAssigner,
        allowed_lateness: i64,
        watermark: i64,
        timers: BTreeSet<Timer>,
        sessions: HashMap<Vec<u8>, Vec<Window>>,
    }

    type Fired = Vec<(Vec<u8>, Window)>;

    impl TimerModel {
        fn record(&mut self, key: &[u8], ts: i64) -> Vec<(Window, bool)> {
            let mut ws = Vec::new();
            self.assigner.assign(ts, &mut ws);
            let mut out = Vec::new();
            for w in ws {
                let cleanup = w.max_timestamp().saturating_add(self.allowed_lateness);
                if cleanup <= self.watermark {
                    continue;
                }
                if w.max_timestamp() > self.watermark {
                    self.timers.insert((w.max_timestamp(), key.to_vec(), w, TimerKind::Fire));
                }
                self.timers.insert((cleanup, key.to_vec(), w, TimerKind::Cleanup));
                out.push((w, w.max_timestamp() <= self.watermark));
            }
            out
        }

        fn watermark(&mut self, wm: i64) -> (Fired, Fired) {
            let (mut fire, mut purge) = (vec![], vec![]);
            if wm <= self.watermark {
                return (fire, purge);
            }
            self.watermark = wm;
            while self.timers.first().is_some_and(|t| t.0 <= wm) {
                let (_, key, w, kind) = self.timers.pop_first().unwrap();
                match kind {
                    TimerKind::Fire => fire.push((key, w)),
                    TimerKind::Cleanup => purge.push((key, w)),
                }
            }
            (fire, purge)
        }
    }

    /// Tumbling and sliding windows, with and without allowed lateness, on
    /// random out-of-order input: the per-window trigger fires and purges
    /// exactly what one timer per key and window would, in the same order,
    /// checkpoints to the same bytes, and goes on the same after a restore,
    /// a split by key and a merge of the parts.
    #[test]
    fn keys_per_window_behave_like_one_timer_per_key_and_window() {
        let mut rand = xorshift(0x9e37_79b9_7f4a_7c15u64);
        let assigners = [
            WindowAssigner::Tumbling { size: 10, offset: 3 },
            WindowAssigner::Sliding { size: 20, slide: 5, offset: 0 },
            WindowAssigner::Sliding { size: 9, slide: 3, offset: -1 },
        ];
        for round in 0..60 {
            let a = assigners[round % assigners.len()];
            let lateness = [0, 4, 25][round % 3];
            let mut t = WindowTrigger::new(a, lateness);
            let mut m = TimerModel {
                assigner: a,
                allowed_lateness: lateness,
                watermark: MIN_WATERMARK,
                timers: BTreeSet::new(),
                sessions: HashMap::new(),
            };
            let (mut out, mut merges, mut fire, mut purge) = (vec![], vec![], vec![], vec![]);
            let mut max_ts = 0i64;
            for step in 0..400 {
                let key = format!("k{}", rand(7)).into_bytes();
                let ts = max_ts + rand(12) as i64 - 8;
                max_ts = max_ts.max(ts);
                t.on_record(&key, ts, &mut out, &mut merges);
                let got: Vec<_> = out.iter().map(|a| (a.window, a.fire_now)).collect();
                assert_eq!(got, m.record(&key, ts), "round {round} step {step}");
                if rand(5) == 0 {
                    let wm = max_ts - rand(15) as i64;
                    t.on_watermark(wm, &mut fire, &mut purge);
                    let (want_fire, mut want_purge) = m.watermark(wm);
                    assert_eq!(fire, want_fire, "round {round} step {step}");
                    // Purges come window by window, keys sorted: the same set.
                    purge.sort_by_key(|(k, w)| (*w, k.clone()));
                    want_purge.sort_by_key(|(k, w)| (*w, k.clone()));
                    assert_eq!(purge, want_purge, "round {round} step {step}");
                    let expected = m.timers.first().map(|x| x.0);
                    assert_eq!(t.next_timer(), expected);
                    assert_eq!(t.pending_timers(), m.timers.len());
                }
                if rand(50) == 0 {
                    // Checkpoint: the same bytes; restore and split by key.
                    let bytes = postcard::to_allocvec(&t).unwrap();
                    assert_eq!(bytes, postcard::to_allocvec(&m).unwrap());
                    let restored: WindowTrigger = postcard::from_bytes(&bytes).unwrap();
                    let (mut even, mut odd) = (restored.clone(), restored);
                    even.retain_keys(&|k| k.last().is_some_and(|b| b % 2 == 0));
                    odd.retain_keys(&|k| k.last().is_some_and(|b| b % 2 == 1));
                    even.absorb(odd);
                    assert_eq!(postcard::to_allocvec(&even).unwrap(), bytes);
                    t = even;
                }
            }
            t.on_watermark(i64::MAX, &mut fire, &mut purge);
            assert_eq!(fire, m.watermark(i64::MAX).0);
            assert_eq!(t.pending_timers(), 0);
        }
    }

    /// Sliding windows kept as panes, with and without allowed lateness, on
    /// random out-of-order input: every window fires (on time and again for
    /// late records) exactly when, for exactly the keys, and with exactly
    /// the count of records that one accumulator per window gives; state
    /// is purged; a checkpoint restores, splits by key and merges.
    #[test]
    fn panes_give_what_one_accumulator_per_window_gives() {
        let mut rand = xorshift(0x1234_5678_9abc_def1u64);
        let assigners = [
            WindowAssigner::Sliding { size: 20, slide: 5, offset: 0 },
            WindowAssigner::Sliding { size: 9, slide: 3, offset: -1 },
            WindowAssigner::Sliding { size: 10, slide: 2, offset: 1 },
        ];
        type Counts = BTreeMap<(Vec<u8>, Window), u64>;
        for round in 0..60 {
            let a = assigners[round % assigners.len()];
            let lateness = [0, 4, 25][round % 3];
            let mut t = WindowTrigger::with_panes(a, lateness);
            assert!(t.uses_panes());
            let mut m = TimerModel {
                assigner: a,
                allowed_lateness: lateness,
                watermark: MIN_WATERMARK,
                timers: BTreeSet::new(),
                sessions: HashMap::new(),
            };
            let (mut per_window, mut per_pane) = (Counts::new(), Counts::new());
            // What each fired, with the window's count at that moment.
            let (mut got, mut want) = (Vec::new(), Vec::new());
            let (mut out, mut merges, mut fire, mut purge) = (vec![], vec![], vec![], vec![]);
            let fired_panes = |t: &WindowTrigger, p: &Counts, k: &[u8], w: Window| {
                let n = t.panes_of(&w).map(|pane| p.get(&(k.to_vec(), pane)).copied().unwrap_or(0));
                (k.to_vec(), w, n.sum::<u64>())
            };
            let mut max_ts = 0i64;
            for step in 0..400 {
                let key = format!("k{}", rand(7)).into_bytes();
                let ts = max_ts + rand(12) as i64 - 8;
                max_ts = max_ts.max(ts);
                t.on_record(&key, ts, &mut out, &mut merges);
                assert!(out.len() <= 1 && merges.is_empty());
                for a in &out {
                    *per_pane.entry((key.clone(), a.window)).or_default() += 1;
                }
                for w in t.refire() {
                    got.push(fired_panes(&t, &per_pane, &key, *w));
                }
                for (w, now) in m.record(&key, ts) {
                    let n = per_window.entry((key.clone(), w)).or_default();
                    *n += 1;
                    if now {
                        want.push((key.clone(), w, *n));
                    }
                }
                assert_eq!(got, want, "round {round} step {step}");
                if rand(5) == 0 {
                    let wm = max_ts - rand(15) as i64;
                    let next = t.next_timer();
                    t.on_watermark(wm, &mut fire, &mut purge);
                    if !fire.is_empty() || !purge.is_empty() {
                        assert!(next.is_some_and(|n| n <= wm), "round {round} step {step}");
                    }
                    got.extend(fire.iter().map(|(k, w)| fired_panes(&t, &per_pane, k, *w)));
                    for (k, p) in &purge {
                        assert!(per_pane.remove(&(k.clone(), *p)).is_some());
                    }
                    let (want_fire, want_purge) = m.watermark(wm);
                    want.extend(
                        want_fire
                            .iter()
                            .map(|(k, w)| (k.clone(), *w, per_window[&(k.clone(), *w)])),
                    );
                    for f in want_purge {
                        per_window.remove(&f);
                    }
                    assert_eq!(got, want, "round {round} step {step}");
                }
                if rand(50) == 0 {
                    let bytes = postcard::to_allocvec(&t).unwrap();
                    let restored: WindowTrigger = postcard::from_bytes(&bytes).unwrap();
                    let (mut even, mut odd) = (restored.clone(), restored);
                    even.retain_keys(&|k| k.last().is_some_and(|b| b % 2 == 0));
                    odd.retain_keys(&|k| k.last().is_some_and(|b| b % 2 == 1));
                    even.absorb(odd);
                    even.set_panes_like(&t);
                    assert_eq!(postcard::to_allocvec(&even).unwrap(), bytes);
                    t = even;
                }
            }
            t.on_watermark(i64::MAX, &mut fire, &mut purge);
            got.extend(fire.iter().map(|(k, w)| fired_panes(&t, &per_pane, k, *w)));
            want.extend(
                m.watermark(i64::MAX)
                    .0
                    .iter()
                    .map(|(k, w)| (k.clone(), *w, per_window[&(k.clone(), *w)])),
            );
            assert_eq!(got, want, "round {round}");
            assert_eq!(t.pending_timers(), 0);
        }
    }
}
