//! One subtask: a thread that runs a task's chain of operators over batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use flinkw_batch::{Batch, BatchBuilder};

use std::collections::VecDeque;

use super::checkpointing::{Ack, Checkpointing};
use super::metrics::SubtaskMetrics;
use super::router::{Message, Router};
use super::upgrade::Swap;
use super::window_op::{WindowOpError, WindowOperator};
use super::{JobError, Shared, TaskSpec};
use crate::checkpoint::{
    Alignment, BarrierAligner, CheckpointError, RestorePoint, SourcePosition, SubtaskSnapshot,
};
use crate::connector::{Poll, SinkWriter, SourceReader};
use crate::graph::NodeKind;
use crate::plugin::{GuestError, ImageRestoreError, Instance, Plugin};
use crate::time::{
    MAX_WATERMARK, MIN_WATERMARK, TimeDomain, WatermarkCombiner, WatermarkGenerator,
};

/// How often a waiting subtask checks whether the job was cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(100);
/// The longest a finished subtask waits for the final checkpoint.
const FINAL_CHECKPOINT_WAIT: Duration = Duration::from_secs(60);
/// How often processing-time timers are checked.
const PROCESSING_TIMER_CHECK: Duration = Duration::from_millis(10);
/// How often a subtask reads its thread's CPU time (a system call).
const CPU_READ_EVERY: Duration = Duration::from_millis(100);
/// The most windows a task with inputs fires at once when a watermark
/// makes many due: the rest fire in slices between input messages, so
/// records and latency markers behind the watermark are not held for the
/// whole burst (W4). The watermark goes on once they are all out.
const FIRE_SLICE: usize = 512;

enum Operator {
    Transform { node: u32, chain: u32 },
    Keyed { node: u32, function: u32 },
    Window { node: u32, op: Box<WindowOperator> },
    Sink { node: u32, writer: Box<dyn SinkWriter> },
}

impl Operator {
    fn node(&self) -> u32 {
        match self {
            Operator::Transform { node, .. }
            | Operator::Keyed { node, .. }
            | Operator::Window { node, .. }
            | Operator::Sink { node, .. } => *node,
        }
    }
}

/// Event time inside a subtask: where its watermarks come from and the
/// last one it sent on.
struct EventTime {
    /// A node of this task that derives watermarks from its output; then
    /// watermarks from the inputs are ignored, as Flink does.
    generator: Option<(u32, WatermarkGenerator)>,
    idle_timeout: Option<Duration>,
    combiner: WatermarkCombiner,
    sent: i64,
    idle: bool,
    /// Least time between two watermarks of the generator (0 = per record).
    interval: Duration,
    last_emit: Instant,
    /// Whether the generator is the task's last node and the interval is 0:
    /// then each output batch carries the watermark after each record.
    per_record: bool,
    /// Watermarks after each record of the batch being sent.
    pending: Option<Vec<i64>>,
    /// The source reader's own watermark (the least over its splits, e.g.
    /// Kafka partitions), which caps the generator's; `None` when the
    /// reader keeps none.
    split_cap: Option<i64>,
    /// Per-record watermarks of the input batch being processed, with its sender.
    incoming: Option<(u32, Vec<i64>)>,
}

/// A subtask's part in checkpoints.
struct Barriers {
    aligner: BarrierAligner,
    /// Messages of inputs that delivered the barrier being aligned.
    blocked: Vec<VecDeque<Message>>,
    /// Messages released after an alignment, to handle before new ones.
    replay: VecDeque<Message>,
    /// The newest barrier a source subtask injected.
    injected: u64,
    /// The newest checkpoint the sinks committed.
    committed: u64,
    /// When the first barrier of the alignment under way arrived.
    align_started: Option<Instant>,
    /// How long the last alignment took, ms (sent with the acknowledgement).
    alignment_ms: u64,
}

pub(super) struct Subtask {
    shared: Arc<Shared>,
    task: TaskSpec,
    index: u32,
    router: Router,
    input: Option<Receiver<Message>>,
    time: EventTime,
    barriers: Barriers,
    /// Which input edge of the head node the batch being processed came by.
    current_input: u32,
    /// This subtask's counters (records, bytes, time, watermark).
    metrics: Arc<SubtaskMetrics>,
    /// Whether the task ends in a sink (it records latency markers).
    has_sink: bool,
    /// When the thread's CPU time was last read.
    cpu_read: Instant,
    /// A window operator (`ops` index) whose windows due at a watermark
    /// are firing in slices; the watermark waits for them.
    firing: Option<(usize, i64)>,
    /// Whether watermarks' windows may fire in slices (a task with inputs).
    slice_windows: bool,
}

/// How a subtask stopped early.
enum Stop {
    /// It failed; the error is the job's failure unless another came first.
    Failed(JobError),
    /// The job was cancelled (by another subtask's failure).
    Cancelled,
}

impl From<JobError> for Stop {
    fn from(e: JobError) -> Self {
        Stop::Failed(e)
    }
}

/// Reads and decodes one subtask's state file of a checkpoint or savepoint.
/// With `as_tables`, the keyed state of an incremental RocksDB checkpoint is
/// read out into tables (to redistribute it by key group); otherwise its
/// files stay in `rocks` for [`restore_state`].
fn read_snapshot(
    point: &RestorePoint,
    name: &str,
    as_tables: bool,
) -> Result<SubtaskSnapshot, Stop> {
    let bytes = point.read_state(name).map_err(JobError::from)?;
    let corrupt = |reason| {
        Stop::Failed(JobError::Checkpoint(CheckpointError::Corrupt {
            id: point.metadata.id,
            reason,
        }))
    };
    let mut snap = SubtaskSnapshot::decode(&bytes).map_err(corrupt)?;
    if !as_tables {
        return Ok(snap);
    }
    if let Some(files) = snap.rocks.take() {
        snap.tables = crate::state::rocks_tables(&files, |key| point.read_shared(key))
            .map_err(|e| JobError::Checkpoint(e.for_checkpoint(point.metadata.id, name)))?;
    }
    Ok(snap)
}

/// Puts a snapshot's keyed state into the instance's backend: the files of
/// an incremental RocksDB checkpoint become the database itself when the
/// backend is RocksDB (no entry is read); otherwise entries are imported.
/// `node` and `file` (the subtask's state file) name what failed; `reuse`:
/// the point's shared files are in the store this job checkpoints to, so
/// its next checkpoint refers to them instead of uploading them again.
fn restore_state(
    point: &RestorePoint,
    inst: &mut Instance,
    snap: &mut SubtaskSnapshot,
    node: &str,
    file: &str,
    reuse: bool,
) -> Result<(), JobError> {
    let state_error = |error| JobError::State { node: node.to_owned(), error };
    let backend = inst.state_backend().0;
    let mut tables = std::mem::take(&mut snap.tables);
    if let Some(files) = snap.rocks.take() {
        let fetch = |key: &str| point.read_shared(key);
        if !backend.restore_files(&files, &fetch, reuse).map_err(state_error)? {
            tables = crate::state::rocks_tables(&files, fetch)
                .map_err(|e| JobError::Checkpoint(e.for_checkpoint(point.metadata.id, file)))?;
        }
    }
    backend.import(tables).map_err(state_error)
}

/// The input a message came from.
fn sender_of(m: &Message) -> Option<usize> {
    match m {
        Message::Batch { from, .. }
        | Message::Watermark { from, .. }
        | Message::Idle { from }
        | Message::Barrier { from, .. }
        | Message::End { from }
        | Message::LatencyMarker { from, .. } => Some(*from as usize),
    }
}

fn batch_len(bytes: &[u8]) -> u64 {
    bytes.get(4..8).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
}

impl Subtask {
    pub fn new(
        shared: Arc<Shared>,
        task: TaskSpec,
        index: u32,
        router: Router,
        input: Option<Receiver<Message>>,
        metrics: Arc<SubtaskMetrics>,
    ) -> Self {
        let watermarks = task.nodes.iter().find_map(|id| {
            let spec = shared.graph.node(*id)?.watermarks?;
            Some((*id, spec))
        });
        let time = EventTime {
            generator: watermarks.map(|(id, w)| (id, WatermarkGenerator::new(w.strategy))),
            idle_timeout: watermarks.and_then(|(_, w)| w.idle_timeout),
            combiner: WatermarkCombiner::new(task.expected_ends as usize),
            sent: MIN_WATERMARK,
            idle: false,
            interval: shared.config.watermark_interval,
            last_emit: Instant::now(),
            per_record: shared.config.watermark_interval.is_zero()
                && watermarks.is_some_and(|(id, _)| task.nodes.last() == Some(&id)),
            pending: None,
            incoming: None,
            split_cap: None,
        };
        let inputs = task.expected_ends as usize;
        let barriers = Barriers {
            aligner: BarrierAligner::new(inputs),
            blocked: (0..inputs).map(|_| VecDeque::new()).collect(),
            replay: VecDeque::new(),
            injected: 0,
            committed: 0,
            align_started: None,
            alignment_ms: 0,
        };
        Subtask {
            shared,
            task,
            index,
            router,
            input,
            time,
            barriers,
            current_input: 0,
            metrics,
            has_sink: false,
            cpu_read: Instant::now(),
            firing: None,
            slice_windows: false,
        }
    }

    fn label(&self, node: u32) -> String {
        let name = self.shared.graph.node(node).map_or("?", |n| n.name.as_str());
        format!("{name:?} (subtask {}/{})", self.index + 1, self.task.parallelism)
    }

    pub fn run(mut self) {
        let shared = self.shared.clone();
        let result = self.run_inner();
        // The failure first: upstream subtasks that find this one gone
        // look for it (see `stopped`).
        match result {
            Ok(()) => {}
            Err(Stop::Failed(e)) => shared.fail(e),
            Err(Stop::Cancelled) => {}
        }
        self.metrics.end();
    }

    fn run_inner(&mut self) -> Result<(), Stop> {
        let (mut instance, mut ops) = self.open()?;
        self.has_sink = ops.iter().any(|op| matches!(op, Operator::Sink { .. }));
        if let Some(inst) = &mut instance {
            inst.share_memory_gauge(self.metrics.memory_bytes.clone());
        }
        let head = self.task.nodes[0];
        let source = self.shared.sources.get(&head).cloned();
        match source {
            Some(spec) => {
                let mut reader = spec
                    .open(self.index, self.task.parallelism)
                    .map_err(|error| JobError::Connector { node: self.label(head), error })?;
                if let Some(pos) = self.restore(&mut instance, &mut ops)? {
                    reader
                        .seek(&pos)
                        .map_err(|error| JobError::Connector { node: self.label(head), error })?;
                }
                let run = self.run_source(head, &mut *reader, &mut instance, &mut ops);
                self.halted(run, &mut ops)?;
                self.finish_source(&*reader, &mut instance, &mut ops)?;
            }
            None => {
                self.restore(&mut instance, &mut ops)?;
                let run = self.run_input(&mut instance, &mut ops);
                self.halted(run, &mut ops)?;
                self.await_final_checkpoint(&mut ops)?;
            }
        }
        // The end of input publishes everything: not from a replaced attempt.
        self.check_fence(&ops)?;
        for op in &mut ops {
            if let Operator::Sink { node, writer } = op {
                let node = *node;
                writer
                    .flush()
                    .map_err(|error| JobError::Connector { node: self.label(node), error })?;
            }
        }
        if let Some(instance) = &instance {
            let mut counters = self.shared.counters.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in instance.counters() {
                *counters.entry(k.clone()).or_default() += v;
            }
        }
        self.router.end().map_err(|_| self.stopped())
    }

    /// After a stop-with-savepoint, sinks publish what the savepoint sealed
    /// before the subtask stops.
    fn halted(&mut self, run: Result<(), Stop>, ops: &mut [Operator]) -> Result<(), Stop> {
        let halted =
            self.shared.checkpoints.as_ref().is_some_and(|c| c.halt.load(Ordering::SeqCst));
        if matches!(run, Err(Stop::Cancelled)) && halted {
            self.commit_sinks(ops)?;
        }
        run
    }

    /// Instantiates the plugin (if the chain runs guest code) and the operators.
    fn open(&mut self) -> Result<(Option<Instance>, Vec<Operator>), Stop> {
        let mut ops = Vec::new();
        let mut needs_guest = false;
        for &id in &self.task.nodes {
            let Some(node) = self.shared.graph.node(id) else {
                continue;
            };
            match &node.kind {
                NodeKind::Source(_) => {}
                NodeKind::Transform { chain, .. } => {
                    needs_guest = true;
                    ops.push(Operator::Transform { node: id, chain: *chain });
                }
                NodeKind::KeyedProcess(f) => {
                    needs_guest = true;
                    ops.push(Operator::Keyed { node: id, function: *f });
                }
                NodeKind::Window(window) => {
                    needs_guest = true;
                    let late = self.router.has_side(id, "late");
                    let cache = self.shared.config.window_cache_bytes;
                    let op = WindowOperator::new(id, window, late, cache);
                    ops.push(Operator::Window { node: id, op: Box::new(op) });
                }
                NodeKind::Sink(_) => {
                    let writer = self.shared.sinks[&id]
                        .open(self.index)
                        .map_err(|error| JobError::Connector { node: self.label(id), error })?;
                    ops.push(Operator::Sink { node: id, writer });
                }
            }
        }
        let instance = if needs_guest {
            let node = self.task.nodes[0];
            let guest = |error| Stop::Failed(JobError::Guest { node: self.label(node), error });
            let label = format!("{}#{}", self.shared.graph.name, self.index);
            let mut instance = self.shared.plugin.instantiate(&label).map_err(guest)?;
            // Each instance runs `plan` so the guest knows its functions.
            instance.plan(&self.shared.config.pairs()).map_err(guest)?;
            let name = format!("t{}-s{}", self.task.index, self.index);
            let backend = crate::state::open(&self.shared.state_backend, &name)
                .map_err(|error| JobError::State { node: self.label(node), error })?;
            instance.set_state_backend(backend, self.shared.config.max_parallelism);
            Some(instance)
        } else {
            None
        };
        Ok((instance, ops))
    }

    fn stopped(&self) -> Stop {
        // A downstream subtask that failed records why as it stops; give it
        // a moment so the job reports that reason, not this one.
        let start = Instant::now();
        while !self.shared.is_cancelled() && start.elapsed() < Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if self.shared.is_cancelled() {
            Stop::Cancelled
        } else {
            Stop::Failed(JobError::Internal("a downstream subtask stopped".into()))
        }
    }

    fn run_source(
        &mut self,
        head: u32,
        reader: &mut dyn SourceReader,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        let batch_size = self.shared.config.batch_size;
        let timeout = self.shared.config.batch_timeout;
        let mut builder = BatchBuilder::with_capacity(batch_size, batch_size * 32);
        let mut last_record = Instant::now();
        // Watermarks set on the source itself: per split, if the reader can.
        if self.time.generator.as_ref().is_some_and(|(node, _)| *node == head)
            && let Some(w) = self.shared.graph.node(head).and_then(|n| n.watermarks)
            && reader.split_watermarks(w.strategy, w.idle_timeout)
        {
            self.time.split_cap = Some(MIN_WATERMARK);
        }
        let latency_every = self.shared.config.latency_interval;
        let mut last_marker = Instant::now();
        loop {
            if self.shared.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            self.read_cpu();
            if !latency_every.is_zero() && last_marker.elapsed() >= latency_every {
                last_marker = Instant::now();
                let source_task = self.task.index as u32;
                self.latency_marker(super::metrics::now_micros(), source_task)?;
            }
            self.commit_sinks(ops)?;
            if let Some(ck) = &self.shared.checkpoints {
                let requested = ck.requested.load(Ordering::SeqCst);
                if requested > self.barriers.injected {
                    self.barriers.injected = requested;
                    self.checkpoint(requested, Some(reader.position()), instance, ops)?;
                }
            }
            let polled = Instant::now();
            let deadline = polled + timeout;
            let poll = reader
                .poll(&mut builder, batch_size, deadline)
                .map_err(|error| JobError::Connector { node: self.label(head), error })?;
            let got = !builder.is_empty();
            // A poll that ended before the batch filled waited for input
            // (or for a rate limit): idle, not busy.
            if builder.len() < batch_size && poll != Poll::End {
                self.metrics.add_idle(polled);
            }
            if got {
                last_record = Instant::now();
                let bytes = builder.finish();
                self.metrics.add_input(batch_len(&bytes), bytes.len());
                self.shared.metrics[&head]
                    .records_out
                    .fetch_add(batch_len(&bytes), Ordering::Relaxed);
                self.observe(head, &bytes);
                self.run_chain(bytes, 0, instance, ops)?;
            }
            // A split going idle can move the reader's watermark without records.
            if self.time.split_cap.is_some() {
                self.time.split_cap = Some(reader.watermark());
            }
            if got || (self.time.split_cap.is_some() && !self.time.idle) {
                self.emit_watermark(instance, ops)?;
            }
            if !got
                && let Some(idle) = self.time.idle_timeout
                && !self.time.idle
                && last_record.elapsed() >= idle
            {
                self.time.idle = true;
                self.router.idle().map_err(|_| self.stopped())?;
            }
            if poll == Poll::End {
                return Ok(());
            }
        }
    }

    fn run_input(
        &mut self,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        let Some(input) = self.input.take() else {
            return Err(JobError::Internal("a task without a source has no input".into()).into());
        };
        let mut ends = 0;
        let has_keyed = ops.iter().any(|op| match op {
            Operator::Keyed { .. } => true,
            Operator::Window { op, .. } => op.processing_time,
            _ => false,
        });
        let mut timers_checked = Instant::now();
        self.slice_windows = true;
        while ends < self.task.expected_ends {
            self.read_cpu();
            // Windows due at a watermark fire a slice between messages.
            self.continue_firing(FIRE_SLICE, instance, ops)?;
            if has_keyed && timers_checked.elapsed() >= PROCESSING_TIMER_CHECK {
                timers_checked = Instant::now();
                self.processing_time(instance, ops)?;
            }
            self.commit_sinks(ops)?;
            let wait = if has_keyed { PROCESSING_TIMER_CHECK } else { CANCEL_CHECK };
            let message = match self.barriers.replay.pop_front() {
                Some(m) => Ok(m),
                // While windows fire in slices, an idle input lets them go on.
                None if self.firing.is_some() => match input.try_recv() {
                    Ok(m) => Ok(m),
                    Err(TryRecvError::Empty) => continue,
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                },
                None => {
                    let waited = Instant::now();
                    let m = input.recv_timeout(wait);
                    self.metrics.add_idle(waited);
                    m
                }
            };
            // Inputs that delivered the barrier being aligned wait.
            if let Ok(m) = &message
                && let Some(from) = sender_of(m)
                && self.barriers.aligner.is_blocked(from)
            {
                if let Ok(m) = message {
                    self.barriers.blocked[from].push_back(m);
                }
                continue;
            }
            match message {
                Ok(Message::Barrier { from, id }) => {
                    let first = *self.barriers.align_started.get_or_insert_with(Instant::now);
                    if let Alignment::Complete(id) =
                        self.barriers.aligner.on_barrier(from as usize, id)
                    {
                        self.barriers.alignment_ms = first.elapsed().as_millis() as u64;
                        self.barriers.align_started = None;
                        self.metrics
                            .alignment_us
                            .store(first.elapsed().as_micros() as u64, Ordering::Relaxed);
                        self.checkpoint(id, None, instance, ops)?;
                    }
                }
                Ok(Message::Batch { from, bytes, watermarks }) => {
                    self.metrics.add_input(batch_len(&bytes), bytes.len());
                    // Watermarks inside the batch move time record by record.
                    if watermarks.is_some() {
                        self.drain_firing(instance, ops)?;
                    }
                    self.current_input = self
                        .task
                        .inputs
                        .iter()
                        .position(|(base, n)| from >= *base && from < base + n)
                        .unwrap_or(0) as u32;
                    let last = watermarks.as_ref().and_then(|w| w.last().copied());
                    self.time.incoming = watermarks.map(|w| (from, w));
                    self.run_chain(bytes, 0, instance, ops)?;
                    // Not taken by a window at the head: apply the batch's last
                    // watermark now that its records are through.
                    if self.time.incoming.take().is_some()
                        && let Some(wm) = last
                    {
                        let advanced = self.time.combiner.update(from as usize, wm);
                        self.input_watermark(advanced, instance, ops)?;
                    }
                    self.emit_watermark(instance, ops)?;
                }
                Ok(Message::Watermark { from, watermark }) => {
                    let advanced = self.time.combiner.update(from as usize, watermark);
                    self.input_watermark(advanced, instance, ops)?;
                }
                Ok(Message::Idle { from }) => {
                    let advanced = self.time.combiner.set_idle(from as usize);
                    self.input_watermark(advanced, instance, ops)?;
                }
                Ok(Message::LatencyMarker { marked_us, source_task, .. }) => {
                    self.latency_marker(marked_us, source_task)?;
                }
                Ok(Message::End { from }) => {
                    ends += 1;
                    let advanced = self.time.combiner.end(from as usize);
                    self.input_watermark(advanced, instance, ops)?;
                    if let Alignment::Complete(id) = self.barriers.aligner.on_end(from as usize) {
                        self.checkpoint(id, None, instance, ops)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) if self.shared.is_cancelled() => {
                    return Err(Stop::Cancelled);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.stopped()),
            }
        }
        self.drain_firing(instance, ops)
    }

    /// Reads the thread's CPU time if it has not for a while.
    fn read_cpu(&mut self) {
        if self.cpu_read.elapsed() >= CPU_READ_EVERY {
            self.cpu_read = Instant::now();
            self.metrics.read_cpu();
        }
    }

    /// A latency marker passes: a task with a sink records how long it took
    /// from its source, and it goes on downstream at once — past windows
    /// and buffered batches, as a watermark does, never into user code.
    fn latency_marker(&mut self, marked_us: i64, source_task: u32) -> Result<(), Stop> {
        if self.has_sink {
            self.metrics.record_latency(source_task, marked_us);
        }
        self.router.latency_marker(marked_us, source_task).map_err(|_| self.stopped())
    }

    /// The name of this subtask's state file in a checkpoint.
    fn state_file(&self) -> String {
        format!("t{}-s{}.state", self.task.index, self.index)
    }

    /// Takes this subtask's part of checkpoint `id`, acknowledges it, sends
    /// the barrier on and lets blocked inputs go. A snapshot that cannot be
    /// taken fails the checkpoint, not the job.
    fn checkpoint(
        &mut self,
        id: u64,
        source: Option<SourcePosition>,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        let Some(ck) = self.shared.checkpoints.clone() else { return Ok(()) };
        // The trigger has moved past windows still firing: they go out
        // before the snapshot, which does not hold them.
        self.drain_firing(instance, ops)?;
        let sync = std::time::Instant::now();
        let snapshot = self.snapshot(id, source, instance, ops);
        let swap = match &snapshot {
            Ok((snap, _)) => self.upgrade_at(id, &ck, snap, instance, sync),
            Err(_) => None,
        };
        let sync_ms = sync.elapsed().as_millis() as u64;
        let alignment_ms = std::mem::take(&mut self.barriers.alignment_ms);
        self.barriers.align_started = None;
        let label = self.label(self.task.nodes[0]);
        match snapshot {
            // The upload runs while the subtask goes on (Flink's asynchronous
            // phase); the acknowledgement follows once the file is stored.
            // RocksDB's files are linked in it too, once the memtables
            // switched at the barrier are flushed.
            Ok((mut snap, pending)) => {
                let name = self.state_file();
                crate::objstore::runtime().spawn(async move {
                    let stored = async {
                        let local = match pending {
                            Some(p) => Some(
                                tokio::task::spawn_blocking(move || p.finish())
                                    .await
                                    .map_err(|e| e.to_string())?
                                    .map_err(|e| e.to_string())?,
                            ),
                            None => None,
                        };
                        // Writes wait while the files are linked: part of the pause.
                        let held_ms = local.as_ref().map_or(0, |l| l.held_ms);
                        snap.rocks = local.as_ref().map(|l| l.files.clone());
                        let bytes = snap.encode()?;
                        let put = ck.storage.put_subtask(id, &name, bytes, local).await;
                        put.map(|file| (file, held_ms)).map_err(|e| e.to_string())
                    };
                    let ack = match stored.await {
                        Ok((file, held_ms)) => {
                            Ack::Done { id, file, alignment_ms, sync_ms: sync_ms + held_ms, swap }
                        }
                        Err(e) => Ack::Failed { id, reason: format!("{label}: {e}") },
                    };
                    ck.ack(ack);
                });
            }
            Err(reason) => ck.ack(Ack::Failed { id, reason: format!("{label}: {reason}") }),
        }
        self.router.barrier(id).map_err(|_| self.stopped())?;
        for queue in &mut self.barriers.blocked {
            self.barriers.replay.extend(queue.drain(..));
        }
        Ok(())
    }

    /// At a live upgrade's barrier (checkpoint `id`, whose snapshot `snap`
    /// was just taken): goes on with an instance of the new plugin, which
    /// gets the guest state of the snapshot (through its `migrate` when
    /// the version differs); keyed state, timers and windows stay where
    /// they are. If the new plugin cannot take over, the old instance goes
    /// on. `None` at any other checkpoint.
    fn upgrade_at(
        &self,
        id: u64,
        ck: &Checkpointing,
        snap: &SubtaskSnapshot,
        instance: &mut Option<Instance>,
        held: Instant,
    ) -> Option<Swap> {
        let plugin = ck.upgrade().at(id)?.clone();
        let Some(inst) = instance.as_mut() else { return Some(Swap::NoGuest) };
        let node = self.label(self.task.nodes[0]);
        let refused = |why: String| Some(Swap::Refused { reason: format!("{node}: {why}") });
        let plugin = match plugin {
            Ok(p) => p,
            Err(why) => return refused(why),
        };
        if snap.memory.is_some() {
            return refused(
                "the running plugin keeps its state by whole-memory capture, which only the \
                 same build of the plugin can restore"
                    .to_owned(),
            );
        }
        let then = snap.guest_version.clone();
        let fresh = |p: &Plugin| -> Result<(Instance, Option<Vec<u8>>), GuestError> {
            let mut fresh = p.instantiate(&format!("{}#{}", self.shared.graph.name, self.index))?;
            fresh.plan(&self.shared.config.pairs())?;
            let guest = match snap.guest.clone().filter(|g| !g.is_empty()) {
                Some(g) => Some(fresh.carry_over(then.as_deref(), g)?),
                None => None,
            };
            Ok((fresh, guest))
        };
        let (fresh, guest) = match fresh(&plugin) {
            Ok(made) => made,
            Err(e) => return refused(format!("the new plugin cannot take over: {e}")),
        };
        let old = inst.exchange(fresh);
        if let Some(guest) = guest
            && let Err(e) = inst.restore(&guest)
        {
            drop(inst.exchange(old));
            return refused(format!("the new plugin cannot take over: {e}"));
        }
        drop(old);
        let to = inst.version().ok().flatten();
        let micros = held.elapsed().as_micros() as u64;
        tracing::info!(checkpoint = id, subtask = %node, ?then, ?to, micros, "switched to the new plugin");
        Some(Swap::Swapped { micros, from: then, to })
    }

    fn snapshot(
        &mut self,
        id: u64,
        source: Option<SourcePosition>,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(SubtaskSnapshot, Option<crate::state::PendingCheckpoint>), String> {
        let mut snap = SubtaskSnapshot { source, watermark: self.time.sent, ..Default::default() };
        let mut local = None;
        if let Some(inst) = instance.as_mut() {
            // Window accumulators held in memory go to the backend first.
            for op in ops.iter_mut() {
                if let Operator::Window { op, .. } = op {
                    op.before_snapshot(inst).map_err(|e| e.to_string())?;
                }
            }
            let backend = inst.state_backend().0;
            // RocksDB: its files (incremental, linked after the barrier);
            // otherwise every entry.
            local = backend.begin_checkpoint(id).map_err(|e| e.to_string())?;
            if local.is_none() {
                snap.tables = backend.export().map_err(|e| e.to_string())?;
            }
            snap.timers = inst.timers();
            // A plugin that declared whole-memory capture: its memories and
            // globals instead of its `snapshot` export.
            let started = Instant::now();
            match inst.capture_memory().map_err(|e| e.to_string())? {
                Some(image) => {
                    tracing::debug!(
                        checkpoint = id,
                        memory_bytes = image.memory_bytes(),
                        stored_bytes = image.stored_bytes(),
                        micros = started.elapsed().as_micros() as u64,
                        "captured guest memory"
                    );
                    snap.memory = Some(image);
                }
                None => snap.guest = Some(inst.snapshot().map_err(|e| e.to_string())?),
            }
            snap.guest_version = inst.version().map_err(|e| e.to_string())?;
        }
        snap.max_timestamp = self.time.generator.as_ref().and_then(|(_, g)| g.max_timestamp());
        for op in ops.iter_mut() {
            match op {
                Operator::Window { node, op } => snap.windows.push((*node, op.trigger().clone())),
                Operator::Sink { node, writer } => {
                    snap.sinks.push((*node, writer.pre_commit(id).map_err(|e| e.to_string())?))
                }
                _ => {}
            }
        }
        Ok((snap, local))
    }

    /// Restores this subtask from the checkpoint the job restarts from, if
    /// any; returns the source position to seek to.
    fn restore(
        &mut self,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<Option<SourcePosition>, Stop> {
        let Some(ck) = self.shared.checkpoints.clone() else { return Ok(None) };
        let node = self.label(self.task.nodes[0]);
        let Some(metadata) = &ck.restore else {
            // No checkpoint: abort whatever an earlier run left uncommitted.
            for op in ops.iter_mut() {
                if let Operator::Sink { writer, .. } = op {
                    writer
                        .restore(&[])
                        .map_err(|error| JobError::Connector { node: node.clone(), error })?;
                }
            }
            return Ok(None);
        };
        let point = metadata;
        let old = point.metadata.parallelism.get(self.task.index).copied();
        let mut snap = match old {
            Some(p) if p != self.task.parallelism => self.rescaled_snapshot(point, p)?,
            _ => read_snapshot(point, &self.state_file(), false)?,
        };
        if let Some(inst) = instance.as_mut() {
            // A memory image becomes a fresh instance that goes on in place
            // of this one (whose `restore` export is not called).
            if let Some(image) = &snap.memory {
                let label = format!("{}#{}", self.shared.graph.name, self.index);
                let fresh = self.shared.plugin.instantiate_from_image(&label, image).map_err(
                    |e| match e {
                        ImageRestoreError::Unfit(reason) => {
                            JobError::Checkpoint(CheckpointError::MemoryCapture {
                                id: point.metadata.id,
                                reason: format!("{} ({node}): {reason}", self.state_file()),
                            })
                        }
                        ImageRestoreError::Failed(reason) => JobError::Guest {
                            node: node.clone(),
                            error: GuestError::Instantiate(reason),
                        },
                    },
                )?;
                inst.continue_as(fresh);
                // An empty `restore`: the host handles (state) the guest
                // held belong to the old instance; the SDK opens them again.
                inst.restore(&[]).map_err(|error| JobError::Guest { node: node.clone(), error })?;
            }
            let reuse = ck.storage.holds(point);
            restore_state(point, inst, &mut snap, &node, &self.state_file(), reuse)?;
            inst.set_timers(snap.timers);
            if let Some(guest) = snap.guest.filter(|g| !g.is_empty()) {
                let guest_error = |error| JobError::Guest { node: node.clone(), error };
                let guest =
                    inst.carry_over(snap.guest_version.as_deref(), guest).map_err(guest_error)?;
                inst.restore(&guest).map_err(guest_error)?;
            }
        }
        for op in ops.iter_mut() {
            match op {
                Operator::Window { node: id, op } => {
                    if let Some((_, t)) = snap.windows.iter().find(|(n, _)| n == id) {
                        op.set_trigger(t.clone());
                    }
                }
                Operator::Sink { node: id, writer } => {
                    let pending =
                        snap.sinks.iter().find(|(n, _)| n == id).map_or(&[][..], |(_, p)| p);
                    writer
                        .restore(pending)
                        .map_err(|error| JobError::Connector { node: node.clone(), error })?;
                }
                _ => {}
            }
        }
        if let Some((_, g)) = &mut self.time.generator {
            g.set_max_timestamp(snap.max_timestamp);
        }
        self.time.sent = snap.watermark;
        self.barriers.committed = point.metadata.id;
        tracing::info!(checkpoint = point.metadata.id, subtask = %node, "subtask restored");
        Ok(snap.source)
    }

    /// This subtask's share of a snapshot taken at another parallelism
    /// (`old`): keyed state, windows and timers of its key groups from every
    /// old subtask, the positions of every old source subtask, the guest
    /// state and sink files of the old subtask with the same index.
    fn rescaled_snapshot(&self, point: &RestorePoint, old: u32) -> Result<SubtaskSnapshot, Stop> {
        let max_p = self.shared.config.max_parallelism;
        let (first, last) =
            crate::keygroup::key_group_range(self.index, max_p, self.task.parallelism);
        let mine = |key_group: u32| key_group >= first && key_group <= last;
        let mine_key = |key: &[u8]| mine(crate::keygroup::key_group(key, max_p));
        let mut merged = SubtaskSnapshot { watermark: i64::MAX, ..Default::default() };
        let mut positions = Vec::new();
        for i in 0..old {
            let snap = read_snapshot(point, &format!("t{}-s{i}.state", self.task.index), true)?;
            if snap.memory.is_some() {
                return Err(Stop::Failed(JobError::Checkpoint(CheckpointError::MemoryCapture {
                    id: point.metadata.id,
                    reason: format!(
                        "{} was taken at parallelism {old} from a plugin with whole-memory \
                         capture, and a captured memory cannot be split by key group; restore \
                         it at parallelism {old} (now {})",
                        self.label(self.task.nodes[0]),
                        self.task.parallelism
                    ),
                })));
            }
            for mut table in snap.tables {
                table.entries.retain(|(k, _)| {
                    k.get(..2).is_some_and(|kg| mine(u16::from_be_bytes([kg[0], kg[1]]) as u32))
                });
                match merged.tables.iter_mut().find(|t| t.name == table.name) {
                    Some(t) => t.entries.extend(table.entries),
                    None => merged.tables.push(table),
                }
            }
            for (node, mut trigger) in snap.windows {
                trigger.retain_keys(&mine_key);
                match merged.windows.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, t)) => t.absorb(trigger),
                    None => merged.windows.push((node, trigger)),
                }
            }
            for (function, mut timers) in snap.timers {
                timers.retain_keys(&mine_key);
                match merged.timers.iter_mut().find(|(f, _)| *f == function) {
                    Some((_, t)) => t.absorb(timers),
                    None => merged.timers.push((function, timers)),
                }
            }
            positions.extend(snap.source);
            if i == self.index {
                merged.guest = snap.guest;
                merged.guest_version = snap.guest_version;
            }
            // Old subtasks beyond the new parallelism hand their files to subtask 0.
            if i == self.index || (self.index == 0 && i >= self.task.parallelism) {
                for (node, files) in snap.sinks {
                    match merged.sinks.iter_mut().find(|(n, _)| *n == node) {
                        Some((_, f)) => f.extend(files),
                        None => merged.sinks.push((node, files)),
                    }
                }
            }
            merged.max_timestamp = match (merged.max_timestamp, snap.max_timestamp) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            merged.watermark = merged.watermark.min(snap.watermark);
        }
        if !positions.is_empty() {
            merged.source = Some(SourcePosition::Rescaled { positions });
        }
        Ok(merged)
    }

    /// A source subtask read all its input. With checkpoints, event time
    /// ends (every window fires) and the subtask then serves checkpoints
    /// until the final one, so its last output is published only through
    /// a checkpoint that remembers the input is done.
    fn finish_source(
        &mut self,
        reader: &dyn SourceReader,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        let Some(ck) = self.shared.checkpoints.clone().filter(|_| !self.shared.replay) else {
            return Ok(());
        };
        self.advance(crate::time::MAX_WATERMARK, instance, ops)?;
        ck.sources_finished.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + FINAL_CHECKPOINT_WAIT;
        while Instant::now() < deadline {
            if self.shared.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            self.commit_sinks(ops)?;
            let requested = ck.requested.load(Ordering::SeqCst);
            if requested > self.barriers.injected {
                self.barriers.injected = requested;
                self.checkpoint(requested, Some(reader.position()), instance, ops)?;
            }
            let final_id = ck.final_id.load(Ordering::SeqCst);
            if final_id != 0 && self.barriers.injected >= final_id {
                return self.await_final_checkpoint(ops);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        tracing::warn!("no final checkpoint in time; publishing the output without one");
        Ok(())
    }

    /// Waits (bounded) for the final checkpoint to complete and commits up
    /// to it.
    fn await_final_checkpoint(&mut self, ops: &mut [Operator]) -> Result<(), Stop> {
        let Some(ck) = self.shared.checkpoints.clone() else { return Ok(()) };
        let deadline = Instant::now() + FINAL_CHECKPOINT_WAIT;
        while Instant::now() < deadline {
            if self.shared.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            let final_id = ck.final_id.load(Ordering::SeqCst);
            if final_id != 0 && ck.completed.load(Ordering::SeqCst) >= final_id {
                return self.commit_sinks(ops);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        tracing::warn!("the final checkpoint did not complete in time");
        Ok(())
    }

    /// Fails if this subtask has sinks and a newer attempt of the job
    /// started (fencing): a zombie's output must never become visible.
    fn check_fence(&self, ops: &[Operator]) -> Result<(), Stop> {
        let Some(ck) = &self.shared.checkpoints else { return Ok(()) };
        if !ops.iter().any(|op| matches!(op, Operator::Sink { .. })) {
            return Ok(());
        }
        ck.check_fence().map_err(|e| Stop::Failed(JobError::Checkpoint(e)))
    }

    /// Commits sinks up to the newest complete checkpoint.
    fn commit_sinks(&mut self, ops: &mut [Operator]) -> Result<(), Stop> {
        let Some(ck) = &self.shared.checkpoints else { return Ok(()) };
        let completed = ck.completed.load(Ordering::SeqCst);
        if completed <= self.barriers.committed {
            return Ok(());
        }
        // A store that cannot be asked now: commit on a later pass (the
        // checkpoints fail meanwhile, up to `checkpoint.tolerable-failures`).
        match ck.check_fence() {
            Err(e @ CheckpointError::Superseded { .. }) => {
                return Err(Stop::Failed(JobError::Checkpoint(e)));
            }
            Err(e) if ops.iter().any(|op| matches!(op, Operator::Sink { .. })) => {
                tracing::warn!(error = %e, "cannot check the fence; committing later");
                return Ok(());
            }
            _ => {}
        }
        self.barriers.committed = completed;
        for op in ops.iter_mut() {
            if let Operator::Sink { node, writer } = op {
                let node = *node;
                writer
                    .commit(completed)
                    .map_err(|error| JobError::Connector { node: self.label(node), error })?;
            }
        }
        Ok(())
    }

    /// Counts a node's output timestamps toward its watermark.
    fn observe(&mut self, node: u32, bytes: &[u8]) {
        let Some((gen_node, generator)) = &mut self.time.generator else { return };
        if *gen_node != node {
            return;
        }
        let mut pending = self.time.per_record.then(Vec::new);
        // The reader's watermark from before this batch: never ahead of it.
        let cap = self.time.split_cap.unwrap_or(MAX_WATERMARK);
        if let Ok(batch) = Batch::new(bytes) {
            for r in batch.iter() {
                if r.timestamp != flinkw_batch::NO_TIMESTAMP {
                    generator.on_record(r.timestamp);
                }
                if let Some(p) = &mut pending {
                    p.push(generator.current().min(cap));
                }
            }
        }
        self.time.pending = pending;
    }

    /// Sends this task's own watermark on if it advanced (or to mark the
    /// subtask active again after idling).
    fn emit_watermark(
        &mut self,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        let Some((_, generator)) = &self.time.generator else { return Ok(()) };
        let wm = generator.current().min(self.time.split_cap.unwrap_or(MAX_WATERMARK));
        let due = self.time.last_emit.elapsed() >= self.time.interval;
        if (wm > self.time.sent && due) || (self.time.idle && wm > MIN_WATERMARK) {
            self.time.idle = false;
            self.time.last_emit = Instant::now();
            self.advance(wm, instance, ops)?;
        }
        Ok(())
    }

    /// Applies a combined input watermark, unless this task makes its own.
    fn input_watermark(
        &mut self,
        advanced: Option<i64>,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        match advanced {
            Some(wm) if self.time.generator.is_none() => self.advance(wm, instance, ops),
            _ => Ok(()),
        }
    }

    /// Event time reached `wm`: windows fire, then the watermark goes on.
    fn advance(
        &mut self,
        wm: i64,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        // A newer watermark waits until the last one's windows are out.
        self.drain_firing(instance, ops)?;
        self.advance_from(0, wm, instance, ops)
    }

    /// Fires up to `max` more windows of the watermark whose windows fire
    /// in slices; once all are out, the watermark goes on through the
    /// operators after it and downstream.
    fn continue_firing(
        &mut self,
        max: usize,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        let Some((idx, wm)) = self.firing else { return Ok(()) };
        let node = ops[idx].node();
        let mut out = Vec::new();
        let (Operator::Window { op, .. }, Some(inst)) = (&mut ops[idx], instance.as_mut()) else {
            unreachable!("only a window operator with an instance fires in slices")
        };
        let called = Instant::now();
        let done = op.fire_some(inst, max, &mut out);
        self.metrics.add_guest(called);
        let done = done.map_err(|e| self.window_error(node, e))?;
        for bytes in out {
            self.after(node, &bytes)?;
            self.run_chain(bytes, idx + 1, instance, ops)?;
        }
        if done {
            self.firing = None;
            self.advance_from(idx + 1, wm, instance, ops)?;
        }
        Ok(())
    }

    /// Fires every window still due at the watermark firing in slices.
    fn drain_firing(
        &mut self,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        while self.firing.is_some() {
            self.continue_firing(usize::MAX, instance, ops)?;
        }
        Ok(())
    }

    /// Moves operators `ops[start..]` and the output to watermark `wm`.
    fn advance_from(
        &mut self,
        start: usize,
        wm: i64,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        for idx in start..ops.len() {
            let node = ops[idx].node();
            let mut out = Vec::new();
            let mut pending = false;
            match &mut ops[idx] {
                // Processing-time windows follow the clock, not watermarks,
                // but fire everything at the end of the input.
                Operator::Window { op, .. } if !op.processing_time || wm == MAX_WATERMARK => {
                    let Some(inst) = instance.as_mut() else {
                        unreachable!("window without instance")
                    };
                    let called = Instant::now();
                    op.start_watermark(wm);
                    let max = if self.slice_windows { FIRE_SLICE } else { usize::MAX };
                    let fired = op.fire_some(inst, max, &mut out);
                    self.metrics.add_guest(called);
                    pending = !fired.map_err(|e| self.window_error(node, e))?;
                }
                Operator::Keyed { function, .. } => {
                    let Some(inst) = instance.as_mut() else {
                        unreachable!("keyed without instance")
                    };
                    inst.set_watermark(wm);
                    out.extend(self.fire_timers(
                        inst,
                        node,
                        *function,
                        TimeDomain::EventTime,
                        wm,
                    )?);
                }
                _ => continue,
            }
            for bytes in out {
                self.after(node, &bytes)?;
                self.run_chain(bytes, idx + 1, instance, ops)?;
            }
            if pending {
                self.firing = Some((idx, wm));
                return Ok(());
            }
        }
        self.time.sent = self.time.sent.max(wm);
        self.metrics.set_watermark(self.time.sent);
        self.router.watermark(wm).map_err(|_| self.stopped())
    }

    /// A keyed function fed a batch that carries the watermark after each
    /// record (a watermark interval of 0): each record is processed with
    /// the watermark before it, and timers fire between records exactly
    /// where Flink would fire them.
    fn keyed_per_record(
        &mut self,
        (node, function, input): (u32, u32, u32),
        (from, wms): (u32, Vec<i64>),
        bytes: &[u8],
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        let batch = Batch::new(bytes).map_err(|e| JobError::MalformedBatch {
            node: self.label(node),
            reason: e.to_string(),
        })?;
        let guest = |s: &Self, error| Stop::Failed(JobError::Guest { node: s.label(node), error });
        let mut last = None;
        for (i, r) in batch.iter().enumerate() {
            let mut one = BatchBuilder::with_capacity(1, r.key.len() + r.value.len());
            one.push(r.timestamp, r.key, r.value);
            let Some(inst) = instance.as_mut() else { unreachable!("keyed without instance") };
            let called = Instant::now();
            let out = inst.keyed(function + input, function, Arc::new(one.finish()));
            self.metrics.add_guest(called);
            let out = out.map_err(|e| guest(self, e))?;
            if self.after(node, &out)? > 0 {
                self.run_chain(out, 1, instance, ops)?;
            }
            if let Some(wm) = wms.get(i).and_then(|w| self.time.combiner.update(from as usize, *w))
            {
                last = Some(wm);
                let Some(inst) = instance.as_mut() else { unreachable!("keyed without instance") };
                inst.set_watermark(wm);
                if let Some(out) =
                    self.fire_timers(inst, node, function, TimeDomain::EventTime, wm)?
                {
                    self.after(node, &out)?;
                    self.run_chain(out, 1, instance, ops)?;
                }
            }
        }
        match last {
            Some(wm) if self.time.generator.is_none() => self.advance(wm, instance, ops),
            _ => Ok(()),
        }
    }

    /// Runs the guest's timer callback for the timers due at `time`.
    fn fire_timers(
        &self,
        inst: &mut Instance,
        node: u32,
        function: u32,
        domain: TimeDomain,
        time: i64,
    ) -> Result<Option<Vec<u8>>, Stop> {
        let due = inst.due_timers(function, domain, time);
        if due.is_empty() {
            return Ok(None);
        }
        let guest = |error| Stop::Failed(JobError::Guest { node: self.label(node), error });
        let called = Instant::now();
        let out = inst.on_timer(function, domain, &due);
        self.metrics.add_guest(called);
        out.map(Some).map_err(guest)
    }

    /// Fires processing-time timers that the wall clock has passed.
    fn processing_time(
        &mut self,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        // Processing-time windows fire through the whole-watermark path.
        self.drain_firing(instance, ops)?;
        let now = crate::time::now_millis();
        for idx in 0..ops.len() {
            let node = ops[idx].node();
            let Some(inst) = instance.as_mut() else { continue };
            let mut out = Vec::new();
            match &mut ops[idx] {
                Operator::Keyed { function, .. } => {
                    let function = *function;
                    out.extend(self.fire_timers(
                        inst,
                        node,
                        function,
                        TimeDomain::ProcessingTime,
                        now,
                    )?);
                }
                Operator::Window { op, .. } if op.processing_time => {
                    op.on_watermark(inst, now, &mut out).map_err(|e| self.window_error(node, e))?;
                }
                _ => continue,
            }
            for bytes in out {
                self.after(node, &bytes)?;
                self.run_chain(bytes, idx + 1, instance, ops)?;
            }
        }
        Ok(())
    }

    fn window_error(&self, node: u32, e: WindowOpError) -> Stop {
        Stop::Failed(match e {
            WindowOpError::Guest(error) => JobError::Guest { node: self.label(node), error },
            WindowOpError::BadRecord(reason) => {
                JobError::BadRecord { node: self.label(node), reason }
            }
            WindowOpError::State(error) => JobError::State { node: self.label(node), error },
        })
    }

    /// Checks an operator's output and counts it.
    fn after(&self, node: u32, bytes: &[u8]) -> Result<usize, Stop> {
        let out = Batch::new(bytes).map_err(|e| JobError::MalformedBatch {
            node: self.label(node),
            reason: e.to_string(),
        })?;
        self.shared.metrics[&node].records_out.fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out.len())
    }

    /// Runs `ops[from..]` over one batch and sends the result on.
    fn run_chain(
        &mut self,
        mut bytes: Vec<u8>,
        from: usize,
        instance: &mut Option<Instance>,
        ops: &mut [Operator],
    ) -> Result<(), Stop> {
        if from == 0 {
            self.time.pending = None;
        }
        for idx in from..ops.len() {
            let node = ops[idx].node();
            let m = &self.shared.metrics[&node];
            m.records_in.fetch_add(batch_len(&bytes), Ordering::Relaxed);
            let guest = |error| Stop::Failed(JobError::Guest { node: self.label(node), error });
            bytes = match &mut ops[idx] {
                Operator::Sink { writer, .. } => {
                    let batch = Batch::new(&bytes)
                        .map_err(|e| JobError::Internal(format!("bad batch at a sink: {e}")))?;
                    writer
                        .write(&batch)
                        .map_err(|error| JobError::Connector { node: self.label(node), error })?;
                    m.records_out.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.metrics.add_output(batch.len() as u64, bytes.len());
                    return Ok(());
                }
                Operator::Transform { chain, .. } => {
                    let Some(inst) = instance.as_mut() else {
                        unreachable!("guest op without instance")
                    };
                    let called = Instant::now();
                    let out = inst.transform(*chain, &bytes);
                    self.metrics.add_guest(called);
                    out.map_err(guest)?
                }
                Operator::Keyed { function, .. } => {
                    let Some(inst) = instance.as_mut() else {
                        unreachable!("guest op without instance")
                    };
                    // A node with two inputs: the second goes to `function + 1`.
                    let input = if idx == 0 { self.current_input } else { 0 };
                    let function = *function;
                    // Per-record watermarks: event time moves between records.
                    if idx == 0
                        && let Some((from, wms)) = self.time.incoming.take()
                    {
                        return self.keyed_per_record(
                            (node, function, input),
                            (from, wms),
                            &bytes,
                            instance,
                            ops,
                        );
                    }
                    let called = Instant::now();
                    let out = inst.keyed(function + input, function, Arc::new(bytes));
                    self.metrics.add_guest(called);
                    out.map_err(|error| {
                        Stop::Failed(JobError::Guest { node: self.label(node), error })
                    })?
                }
                Operator::Window { op, .. } => {
                    let Some(inst) = instance.as_mut() else {
                        unreachable!("guest op without instance")
                    };
                    let mut out = Vec::new();
                    let late_before = op.late_records;
                    // Per-record watermarks of the input, if it has them.
                    let incoming = if idx == 0 { self.time.incoming.take() } else { None };
                    let combiner = &mut self.time.combiner;
                    let called = Instant::now();
                    let result = match &incoming {
                        Some((from, wms)) => {
                            let mut next = |i: usize| combiner.update(*from as usize, wms[i]);
                            op.process(inst, &bytes, &mut out, Some(&mut next))
                        }
                        None => op.process(inst, &bytes, &mut out, None),
                    };
                    self.metrics.add_guest(called);
                    let advanced = result.map_err(|e| self.window_error(node, e))?;
                    let late = op.late_records - late_before;
                    self.shared.late_records.fetch_add(late, Ordering::Relaxed);
                    if let Some(late) = op.take_late() {
                        self.router.send_side(node, "late", late).map_err(|_| self.stopped())?;
                    }
                    for b in out {
                        self.after(node, &b)?;
                        self.run_chain(b, idx + 1, instance, ops)?;
                    }
                    if let Some(wm) = advanced {
                        // Windows fired in between; this sends the watermark on.
                        self.advance(wm, instance, ops)?;
                    }
                    return Ok(());
                }
            };
            // Guest output is checked before anything else reads it.
            if self.after(node, &bytes)? == 0 {
                return Ok(());
            }
            self.observe(node, &bytes);
        }
        let watermarks = self.time.pending.take();
        self.router.send(bytes, watermarks).map_err(|_| self.stopped())
    }
}
