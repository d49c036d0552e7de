//! Per-subtask metrics of a running job, and the checkpoint history.
//!
//! Every subtask owns one [`SubtaskMetrics`]: plain atomics that its
//! thread adds to (relaxed stores, no locks), and that anyone may read
//! while the job runs. Time is split three ways, as Flink does:
//!
//! - **idle**: waiting for input (an empty input channel, or a source poll
//!   that produced nothing);
//! - **backpressured**: blocked on a full downstream channel (for a channel
//!   to another process, the whole send: it blocks when the receiver's
//!   flow-control window is exhausted);
//! - **busy**: the rest of the subtask's wall time.
//!
//! Guest call time (inside `transform`, `keyed`, window and timer calls) is
//! part of busy time. [`MetricsHandle::sample`] turns the atomics into
//! [`SubtaskSample`]s, which a cluster worker sends with its heartbeats.
//!
//! A sink subtask also keeps the latencies of the latency markers it
//! received (the newest [`LATENCY_HISTORY`] per source vertex, as Flink's
//! `metrics.latency.history-size`), and every subtask its thread's CPU
//! time and its plugin instance's linear memory.
//!
//! Checkpoints are recorded once each in a bounded [`CheckpointHistory`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::time::MIN_WATERMARK;

/// Live counters of one subtask; every field is written by the subtask's
/// thread only.
#[derive(Debug)]
pub struct SubtaskMetrics {
    started: Instant,
    /// Records into the task's first operator (for a source: read).
    pub records_in: AtomicU64,
    /// Records the task sent downstream (for a sink task: written).
    pub records_out: AtomicU64,
    /// Packed bytes of the input batches.
    pub bytes_in: AtomicU64,
    /// Packed bytes of the batches sent downstream.
    pub bytes_out: AtomicU64,
    /// Nanoseconds spent waiting for input.
    pub idle_ns: AtomicU64,
    /// The highest busy time a sample reported (busy time is a counter:
    /// it never goes back).
    busy_reported_ns: AtomicU64,
    /// Nanoseconds spent blocked on a full downstream channel.
    pub backpressured_ns: AtomicU64,
    /// Nanoseconds spent inside guest calls.
    pub guest_ns: AtomicU64,
    /// Guest calls made.
    pub guest_calls: AtomicU64,
    /// The subtask's current watermark (`i64::MIN`: none yet).
    pub watermark: AtomicI64,
    /// The wall time of the newest barrier alignment, in microseconds.
    pub alignment_us: AtomicU64,
    /// Nanoseconds from the start until the subtask ended (0 while it runs).
    pub ended_ns: AtomicU64,
    /// CPU time of the subtask's thread, ns (read now and then by the thread).
    pub cpu_ns: AtomicU64,
    /// Bytes of linear memory of the subtask's plugin instance (written by
    /// its memory limiter as the memory grows; 0 without guest code).
    pub memory_bytes: Arc<AtomicU64>,
    /// Latency markers received, by source task (sinks only; markers are
    /// rare, so a lock is cheap here).
    latency: Mutex<BTreeMap<u32, LatencyWindow>>,
}

/// Latencies kept per source vertex in a sink subtask (Flink's default
/// `metrics.latency.history-size`).
pub const LATENCY_HISTORY: usize = 128;

/// The newest latencies from one source, and totals.
#[derive(Debug, Default)]
struct LatencyWindow {
    recent: VecDeque<u64>,
    markers: u64,
    sum_us: u64,
}

impl LatencyWindow {
    fn add(&mut self, us: u64) {
        if self.recent.len() >= LATENCY_HISTORY {
            self.recent.pop_front();
        }
        self.recent.push_back(us);
        self.markers += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    fn sample(&self, source_task: u32) -> LatencySample {
        let mut sorted: Vec<u64> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        LatencySample {
            source_task,
            markers: self.markers,
            sum_us: self.sum_us,
            p50_us: quantile(&sorted, 0.50),
            p95_us: quantile(&sorted, 0.95),
            p99_us: quantile(&sorted, 0.99),
            max_us: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// The nearest-rank `q` quantile of sorted values (0 when empty).
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latencies a sink subtask measured from one source vertex: quantiles of
/// the newest [`LATENCY_HISTORY`] markers, totals of all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySample {
    /// The source's task (vertex) index.
    pub source_task: u32,
    /// Markers received in all.
    pub markers: u64,
    /// Sum of their latencies, µs.
    pub sum_us: u64,
    /// Median of the newest, µs.
    pub p50_us: u64,
    /// 95th percentile of the newest, µs.
    pub p95_us: u64,
    /// 99th percentile of the newest, µs.
    pub p99_us: u64,
    /// Largest of the newest, µs.
    pub max_us: u64,
}

/// The wall clock in µs since the epoch (latency markers' stamps).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// CPU time the calling thread used, ns.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

impl Default for SubtaskMetrics {
    fn default() -> Self {
        SubtaskMetrics {
            started: Instant::now(),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            busy_reported_ns: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            guest_ns: AtomicU64::new(0),
            guest_calls: AtomicU64::new(0),
            watermark: AtomicI64::new(MIN_WATERMARK),
            alignment_us: AtomicU64::new(0),
            ended_ns: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            memory_bytes: Arc::new(AtomicU64::new(0)),
            latency: Mutex::new(BTreeMap::new()),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl SubtaskMetrics {
    /// Adds a wait for input that began at `since`.
    pub fn add_idle(&self, since: Instant) {
        self.idle_ns.fetch_add(nanos(since.elapsed()), Ordering::Relaxed);
    }

    /// Adds a blocked send that began at `since`.
    pub fn add_backpressure(&self, since: Instant) {
        self.backpressured_ns.fetch_add(nanos(since.elapsed()), Ordering::Relaxed);
    }

    /// Adds a guest call that began at `since`.
    pub fn add_guest(&self, since: Instant) {
        self.guest_ns.fetch_add(nanos(since.elapsed()), Ordering::Relaxed);
        self.guest_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an input batch of `records` records and `bytes` bytes.
    pub fn add_input(&self, records: u64, bytes: usize) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts a batch sent downstream.
    pub fn add_output(&self, records: u64, bytes: usize) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The subtask's event time advanced to `wm`.
    pub fn set_watermark(&self, wm: i64) {
        self.watermark.store(wm, Ordering::Relaxed);
    }

    /// Reads the calling thread's CPU time (call it from the subtask's own
    /// thread).
    pub fn read_cpu(&self) {
        self.cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
    }

    /// A latency marker from source task `source_task`, stamped
    /// `marked_us`, arrived now.
    pub fn record_latency(&self, source_task: u32, marked_us: i64) {
        let us = u64::try_from(now_micros().saturating_sub(marked_us)).unwrap_or(0);
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        l.entry(source_task).or_default().add(us);
    }

    /// Marks the subtask as ended (its wall time stops growing). Call it
    /// from the subtask's thread: it reads the thread's CPU time a last time.
    pub fn end(&self) {
        self.read_cpu();
        self.memory_bytes.store(0, Ordering::Relaxed);
        let _ = self.ended_ns.compare_exchange(
            0,
            nanos(self.started.elapsed()).max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// A reading of the counters.
    pub fn sample(&self, task: u32, subtask: u32) -> SubtaskSample {
        let ended = self.ended_ns.load(Ordering::Relaxed);
        let wall_ns = if ended > 0 { ended } else { nanos(self.started.elapsed()) };
        let idle_ns = self.idle_ns.load(Ordering::Relaxed);
        let backpressured_ns = self.backpressured_ns.load(Ordering::Relaxed);
        let wm = self.watermark.load(Ordering::Relaxed);
        SubtaskSample {
            task,
            subtask,
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            wall_ns,
            // A wait counts as idle only once it ended: the busy time a
            // sample during a wait reports is kept, not taken back.
            busy_ns: self
                .busy_reported_ns
                .fetch_max(wall_ns.saturating_sub(idle_ns + backpressured_ns), Ordering::Relaxed)
                .max(wall_ns.saturating_sub(idle_ns + backpressured_ns)),
            idle_ns,
            backpressured_ns,
            guest_ns: self.guest_ns.load(Ordering::Relaxed),
            guest_calls: self.guest_calls.load(Ordering::Relaxed),
            watermark: (wm > MIN_WATERMARK).then_some(wm),
            alignment_us: self.alignment_us.load(Ordering::Relaxed),
            ended: ended > 0,
            cpu_ns: self.cpu_ns.load(Ordering::Relaxed),
            memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
            latency: {
                let l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
                l.iter().map(|(t, w)| w.sample(*t)).collect()
            },
        }
    }
}

/// One reading of a subtask's counters (cumulative since it started).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskSample {
    /// The task (chained vertex) index.
    pub task: u32,
    /// The subtask index within the task.
    pub subtask: u32,
    /// Records into the task's first operator.
    pub records_in: u64,
    /// Records sent downstream (sinks: written).
    pub records_out: u64,
    /// Bytes of input batches.
    pub bytes_in: u64,
    /// Bytes of batches sent downstream.
    pub bytes_out: u64,
    /// Wall time since the subtask started (until it ended), ns.
    pub wall_ns: u64,
    /// Busy time, ns (wall minus idle minus backpressured).
    pub busy_ns: u64,
    /// Time waiting for input, ns.
    pub idle_ns: u64,
    /// Time blocked on a full downstream channel, ns.
    pub backpressured_ns: u64,
    /// Time inside guest calls, ns.
    pub guest_ns: u64,
    /// Guest calls made.
    pub guest_calls: u64,
    /// Current watermark (ms since the epoch), if any.
    pub watermark: Option<i64>,
    /// The newest barrier alignment's duration, µs.
    pub alignment_us: u64,
    /// Whether the subtask ended.
    pub ended: bool,
    /// CPU time of the subtask's thread, ns.
    #[serde(default)]
    pub cpu_ns: u64,
    /// Linear memory of its plugin instance, bytes (0 once ended).
    #[serde(default)]
    pub memory_bytes: u64,
    /// Latency markers received (sinks), by source vertex.
    #[serde(default)]
    pub latency: Vec<LatencySample>,
}

/// The metrics of every subtask of a job in this process:
/// `subtasks[task][subtask]`, `None` for subtasks placed elsewhere.
#[derive(Debug, Clone, Default)]
pub struct MetricsHandle {
    pub(crate) subtasks: Arc<Vec<Vec<Option<Arc<SubtaskMetrics>>>>>,
}

impl MetricsHandle {
    /// For a job of tasks with `parallelism[t]` subtasks; `local(t, s)`
    /// says which run here.
    pub fn new(parallelism: &[u32], local: impl Fn(usize, u32) -> bool) -> Self {
        let subtasks = parallelism
            .iter()
            .enumerate()
            .map(|(t, p)| {
                (0..*p).map(|s| local(t, s).then(|| Arc::new(SubtaskMetrics::default()))).collect()
            })
            .collect();
        MetricsHandle { subtasks: Arc::new(subtasks) }
    }

    /// The metrics of one local subtask.
    pub fn get(&self, task: usize, subtask: u32) -> Option<Arc<SubtaskMetrics>> {
        self.subtasks.get(task)?.get(subtask as usize)?.clone()
    }

    /// A reading of every local subtask.
    pub fn sample(&self) -> Vec<SubtaskSample> {
        let mut out = Vec::new();
        for (t, subtasks) in self.subtasks.iter().enumerate() {
            for (s, m) in subtasks.iter().enumerate() {
                if let Some(m) = m {
                    out.push(m.sample(t as u32, s as u32));
                }
            }
        }
        out
    }
}

/// How a checkpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointStatus {
    /// Every subtask acknowledged it and its metadata was written.
    Completed,
    /// It was abandoned (see the reason).
    Failed,
}

/// One checkpoint, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStats {
    /// Its id.
    pub id: u64,
    /// When it was triggered, ms since the epoch.
    pub triggered_at: i64,
    /// From trigger to completion (or abandonment), ms.
    pub duration_ms: u64,
    /// Bytes of the state files acknowledged.
    pub bytes: u64,
    /// The longest barrier alignment of a subtask, ms.
    pub alignment_ms: u64,
    /// The longest synchronous part of a subtask's snapshot (records wait
    /// meanwhile; the upload is asynchronous), ms.
    #[serde(default)]
    pub sync_ms: u64,
    /// Subtasks that acknowledged it, of how many.
    pub acknowledged: usize,
    /// Subtasks it needed.
    pub subtasks: usize,
    /// Completed or failed.
    pub status: CheckpointStatus,
    /// Why it failed.
    pub failure: Option<String>,
    /// Whether it was a savepoint.
    pub savepoint: bool,
    /// Per task (by index): from the trigger until its last subtask
    /// acknowledged, ms (0: none did).
    #[serde(default)]
    pub task_ms: Vec<u64>,
}

/// The most recent checkpoints of a job (bounded), newest last; written
/// once per checkpoint, never on the record path.
#[derive(Debug, Default)]
pub struct CheckpointHistory {
    entries: Mutex<VecDeque<CheckpointStats>>,
}

/// Checkpoints a history keeps.
pub const CHECKPOINT_HISTORY: usize = 100;

impl CheckpointHistory {
    /// Records a checkpoint, dropping the oldest beyond the bound.
    pub fn push(&self, stats: CheckpointStats) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() >= CHECKPOINT_HISTORY {
            e.pop_front();
        }
        e.push_back(stats);
    }

    /// Every checkpoint kept, oldest first.
    pub fn list(&self) -> Vec<CheckpointStats> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_wall_minus_idle_and_backpressure() {
        let m = SubtaskMetrics::default();
        m.idle_ns.store(3_000, Ordering::Relaxed);
        m.backpressured_ns.store(2_000, Ordering::Relaxed);
        m.ended_ns.store(10_000, Ordering::Relaxed);
        let s = m.sample(1, 2);
        assert_eq!((s.task, s.subtask, s.wall_ns, s.busy_ns), (1, 2, 10_000, 5_000));
        assert!(s.ended);
        // A wait that ended after the sample is idle from now on; busy time
        // already reported is not taken back (it is a counter).
        m.idle_ns.store(6_000, Ordering::Relaxed);
        assert_eq!(m.sample(1, 2).busy_ns, 5_000);
        assert_eq!(s.watermark, None);
        m.set_watermark(42);
        assert_eq!(m.sample(0, 0).watermark, Some(42));
    }

    #[test]
    fn latency_quantiles_cover_the_newest_markers() {
        assert_eq!(quantile(&[], 0.5), 0);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((quantile(&v, 0.5), quantile(&v, 0.95), quantile(&v, 0.99)), (50, 95, 99));
        assert_eq!(quantile(&[7], 0.99), 7);
        let m = SubtaskMetrics::default();
        let now = now_micros();
        // 200 markers 1..=200 ms old: the quantiles cover the newest 128.
        for i in 1..=200i64 {
            m.record_latency(3, now - (201 - i) * 1000);
        }
        let l = &m.sample(0, 0).latency[0];
        assert_eq!((l.source_task, l.markers), (3, 200));
        // The newest 128 are 1..=128 ms old (plus the µs since `now`).
        assert!((64_000..66_000).contains(&l.p50_us), "{l:?}");
        assert!((128_000..130_000).contains(&l.max_us), "{l:?}");
        assert!(l.p99_us <= l.max_us && l.p95_us <= l.p99_us);
    }

    #[test]
    fn cpu_time_of_the_thread_grows_with_work() {
        let m = SubtaskMetrics::default();
        m.read_cpu();
        let before = m.cpu_ns.load(Ordering::Relaxed);
        // Work until the thread's clock moved 5 ms (bounded in wall time).
        let mut x = 0u64;
        let start = Instant::now();
        while thread_cpu_ns() < before + 5_000_000 && start.elapsed() < Duration::from_secs(10) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert_eq!(m.sample(0, 0).cpu_ns, before, "read only when asked");
        m.end();
        assert!(m.sample(0, 0).cpu_ns >= before + 5_000_000, "{x}");
    }

    #[test]
    fn only_local_subtasks_are_sampled() {
        let h = MetricsHandle::new(&[2, 3], |t, s| t == 1 && s != 1);
        let s: Vec<(u32, u32)> = h.sample().iter().map(|s| (s.task, s.subtask)).collect();
        assert_eq!(s, vec![(1, 0), (1, 2)]);
        assert!(h.get(0, 0).is_none() && h.get(1, 2).is_some() && h.get(5, 0).is_none());
    }

    #[test]
    fn history_is_bounded() {
        let h = CheckpointHistory::default();
        for id in 0..(CHECKPOINT_HISTORY as u64 + 5) {
            h.push(CheckpointStats {
                id,
                triggered_at: 0,
                duration_ms: 1,
                bytes: 0,
                alignment_ms: 0,
                sync_ms: 0,
                acknowledged: 1,
                subtasks: 1,
                status: CheckpointStatus::Completed,
                failure: None,
                savepoint: false,
                task_ms: vec![1],
            });
        }
        let l = h.list();
        assert_eq!(l.len(), CHECKPOINT_HISTORY);
        assert_eq!(l[0].id, 5);
    }
}
