//! What the coordinator knows of a running job beyond its state: per-subtask
//! metrics with rates, the job graph as vertices (chained tasks) and edges,
//! the checkpoint history over attempts, exceptions and recent log lines;
//! and all of it as Prometheus text.
//!
//! Workers send [`SubtaskSample`]s (cumulative counters) with every
//! heartbeat; [`JobMetrics::observe`] keeps the newest per subtask and
//! derives rates and ratios from the difference to the one before
//! (records/s, busy, idle and backpressured share of wall time).
//!
//! Sinks report the latency markers they received; a vertex shows the
//! worst quantiles of its subtasks per source vertex. Per tenant, the
//! `/metrics` text sums the CPU, busy and guest time and the instance
//! memory of the tenant's jobs.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use flinkw_host::graph::{JobGraph, NodeKind};
use flinkw_host::runtime::{
    CheckpointCoordinator, CheckpointStats, CheckpointStatus, PhysicalPlan, SubtaskSample,
};
use serde::{Deserialize, Serialize};

/// Exceptions kept per job.
pub const EXCEPTIONS_KEPT: usize = 50;
/// Log lines kept per job.
pub const LOG_LINES_KEPT: usize = 2000;

/// Rates of one subtask between its two newest samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Records in per second.
    pub records_in_per_s: f64,
    /// Records out per second.
    pub records_out_per_s: f64,
    /// Bytes in per second.
    pub bytes_in_per_s: f64,
    /// Bytes out per second.
    pub bytes_out_per_s: f64,
    /// Share of the time busy (0..1).
    pub busy: f64,
    /// Share of the time waiting for input.
    pub idle: f64,
    /// Share of the time blocked on a full downstream channel.
    pub backpressured: f64,
    /// Share of the time inside guest calls.
    pub guest: f64,
}

impl Rates {
    /// The rates between two samples of the same subtask (`before` older).
    pub fn between(before: &SubtaskSample, after: &SubtaskSample) -> Rates {
        let wall = after.wall_ns.saturating_sub(before.wall_ns);
        if wall == 0 {
            return Rates::default();
        }
        let secs = wall as f64 / 1e9;
        let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let share = |a: u64, b: u64| (a.saturating_sub(b) as f64 / wall as f64).clamp(0.0, 1.0);
        Rates {
            records_in_per_s: per_s(after.records_in, before.records_in),
            records_out_per_s: per_s(after.records_out, before.records_out),
            bytes_in_per_s: per_s(after.bytes_in, before.bytes_in),
            bytes_out_per_s: per_s(after.bytes_out, before.bytes_out),
            busy: share(after.busy_ns, before.busy_ns),
            idle: share(after.idle_ns, before.idle_ns),
            backpressured: share(after.backpressured_ns, before.backpressured_ns),
            guest: share(after.guest_ns, before.guest_ns),
        }
    }
}

/// The newest sample of a subtask and its rates.
#[derive(Debug, Clone, Serialize)]
pub struct Observed {
    /// The worker it runs on.
    pub worker: u32,
    /// Cumulative counters.
    pub sample: SubtaskSample,
    /// Rates since the sample before.
    pub rates: Rates,
}

/// A failure of a job's part, as the UI lists it.
#[derive(Debug, Clone, Serialize)]
pub struct JobException {
    /// When it was reported, ms since the epoch.
    pub at_ms: i64,
    /// The attempt it ended (0 = first run).
    pub attempt: u32,
    /// The worker that reported it.
    pub worker: String,
    /// The error, with the guest's backtrace when the guest trapped.
    pub error: String,
}

/// One log line shipped from a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// Where it came from (`flinkw::guest` for the plugin's own lines).
    pub target: String,
    /// The task and subtask that logged it, if a subtask did.
    pub subtask: Option<(u32, u32)>,
    /// The worker (filled in by the coordinator).
    #[serde(default)]
    pub worker: String,
    /// The message and its fields.
    pub message: String,
}

/// What the coordinator observes of one job.
#[derive(Debug, Default)]
pub struct JobMetrics {
    attempt: u32,
    subtasks: BTreeMap<(u32, u32), Observed>,
    /// CPU time of the subtasks of the attempts before this one, ns.
    earlier_cpu_ns: u64,
    /// Checkpoints of every attempt seen, by attempt.
    checkpoints: BTreeMap<u32, Vec<CheckpointStats>>,
    exceptions: VecDeque<JobException>,
    logs: VecDeque<LogLine>,
}

impl JobMetrics {
    /// Takes a worker's samples of `attempt` (older attempts' samples are dropped).
    pub fn observe(&mut self, worker: u32, attempt: u32, samples: Vec<SubtaskSample>) {
        if attempt < self.attempt {
            return;
        }
        if attempt > self.attempt {
            self.attempt = attempt;
            self.earlier_cpu_ns += self.subtasks.values().map(|o| o.sample.cpu_ns).sum::<u64>();
            self.subtasks.clear();
        }
        for s in samples {
            let key = (s.task, s.subtask);
            let rates = match self.subtasks.get(&key) {
                Some(before) if before.sample.wall_ns < s.wall_ns => {
                    Rates::between(&before.sample, &s)
                }
                Some(before) => before.rates,
                None => Rates::between(&SubtaskSample::default(), &s),
            };
            self.subtasks.insert(key, Observed { worker, sample: s, rates });
        }
    }

    /// Copies the attempt's checkpoint history (called while it runs and
    /// when it ends, so nothing is lost when its coordinator goes).
    pub fn keep_checkpoints(&mut self, attempt: u32, c: Option<&CheckpointCoordinator>) {
        if let Some(c) = c {
            self.keep_history(attempt, c.history());
        }
    }

    /// Keeps `list` as the checkpoints of `attempt`.
    pub fn keep_history(&mut self, attempt: u32, list: Vec<CheckpointStats>) {
        self.checkpoints.insert(attempt, list);
    }

    /// Records a part's failure.
    pub fn exception(&mut self, attempt: u32, worker: String, error: String) {
        if self.exceptions.len() >= EXCEPTIONS_KEPT {
            self.exceptions.pop_front();
        }
        let at_ms = flinkw_host::time::now_millis();
        self.exceptions.push_back(JobException { at_ms, attempt, worker, error });
    }

    /// Adds log lines from a worker.
    pub fn log(&mut self, worker: &str, lines: Vec<LogLine>) {
        for mut l in lines {
            if self.logs.len() >= LOG_LINES_KEPT {
                self.logs.pop_front();
            }
            l.worker = worker.to_owned();
            self.logs.push_back(l);
        }
    }

    /// The newest log lines, oldest first (at most `limit`).
    pub fn logs(&self, limit: usize) -> Vec<LogLine> {
        let skip = self.logs.len().saturating_sub(limit);
        self.logs.iter().skip(skip).cloned().collect()
    }

    /// CPU time the subtasks of the earlier attempts used (as last
    /// reported), ns.
    pub fn earlier_cpu_ns(&self) -> u64 {
        self.earlier_cpu_ns
    }

    /// Every subtask's newest sample.
    pub fn subtasks(&self) -> impl Iterator<Item = &Observed> {
        self.subtasks.values()
    }

    /// Every checkpoint of every attempt, oldest first, with the current
    /// attempt's fresh from its coordinator.
    pub fn checkpoints(&self, current: Option<(u32, &CheckpointCoordinator)>) -> Vec<Attempted> {
        let mut all = self.checkpoints.clone();
        if let Some((attempt, c)) = current {
            all.insert(attempt, c.history());
        }
        all.into_iter()
            .flat_map(|(attempt, list)| list.into_iter().map(move |c| Attempted { attempt, c }))
            .collect()
    }

    /// The exceptions, oldest first.
    pub fn exceptions(&self) -> Vec<JobException> {
        self.exceptions.iter().cloned().collect()
    }
}

/// A checkpoint with the attempt that took it.
#[derive(Debug, Clone, Serialize)]
pub struct Attempted {
    /// The attempt.
    pub attempt: u32,
    /// The checkpoint.
    #[serde(flatten)]
    pub c: CheckpointStats,
}

/// One operator of a vertex.
#[derive(Debug, Clone, Serialize)]
pub struct Operator {
    /// Node id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// `source`, `transform`, `keyed`, `window` or `sink` (with the
    /// connector for sources and sinks).
    pub kind: String,
}

/// A vertex of the job graph: a task (a chain of operators) and its
/// subtasks' metrics, summed (rates, counts) or combined (watermark: the
/// smallest; ratios: the mean, and the largest backpressure).
#[derive(Debug, Clone, Serialize)]
pub struct Vertex {
    /// Task index.
    pub index: usize,
    /// The chained operators, head first.
    pub operators: Vec<Operator>,
    /// Subtasks.
    pub parallelism: u32,
    /// Subtasks that reported metrics.
    pub reporting: usize,
    /// Records in, summed.
    pub records_in: u64,
    /// Records out, summed.
    pub records_out: u64,
    /// Bytes in, summed.
    pub bytes_in: u64,
    /// Bytes out, summed.
    pub bytes_out: u64,
    /// Rates, summed (per second) or averaged (shares).
    pub rates: Rates,
    /// The largest backpressured share of a subtask.
    pub max_backpressured: f64,
    /// The smallest watermark of its subtasks (none before every subtask has one).
    pub watermark: Option<i64>,
    /// Guest call time, seconds, summed.
    pub guest_seconds: f64,
    /// The newest alignment of its subtasks, ms (the longest).
    pub alignment_ms: f64,
    /// CPU time of its subtasks' threads, seconds, summed.
    pub cpu_seconds: f64,
    /// Linear memory of its subtasks' plugin instances, bytes, summed.
    pub memory_bytes: u64,
    /// Latency markers its subtasks received (sinks), per source vertex.
    pub latency: Vec<VertexLatency>,
    /// Per subtask: its newest sample and rates.
    pub subtasks: Vec<Observed>,
}

/// Latency from one source vertex to a sink vertex: the worst of the
/// vertex's subtasks for each quantile, ms.
#[derive(Debug, Clone, Serialize)]
pub struct VertexLatency {
    /// The source's task (vertex) index.
    pub source_task: u32,
    /// Markers received, summed over the subtasks.
    pub markers: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// The latencies of a vertex's subtasks, combined per source vertex.
fn vertex_latency(subtasks: &[Observed]) -> Vec<VertexLatency> {
    let mut by_source: BTreeMap<u32, VertexLatency> = BTreeMap::new();
    let ms = |us: u64| us as f64 / 1e3;
    for o in subtasks {
        for l in &o.sample.latency {
            let v = by_source.entry(l.source_task).or_insert(VertexLatency {
                source_task: l.source_task,
                markers: 0,
                p50_ms: 0.0,
                p95_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
            });
            v.markers += l.markers;
            v.p50_ms = v.p50_ms.max(ms(l.p50_us));
            v.p95_ms = v.p95_ms.max(ms(l.p95_us));
            v.p99_ms = v.p99_ms.max(ms(l.p99_us));
            v.max_ms = v.max_ms.max(ms(l.max_us));
        }
    }
    by_source.into_values().collect()
}

/// An edge between two vertices.
#[derive(Debug, Clone, Serialize)]
pub struct VertexEdge {
    /// Upstream task.
    pub from: usize,
    /// Downstream task.
    pub to: usize,
    /// `forward`, `rebalance` or `hash`.
    pub partitioning: String,
    /// A side output's name, if it carries one.
    pub side_output: Option<String>,
}

/// The job graph as the UI draws it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct GraphView {
    /// Tasks with their operators and metrics.
    pub vertices: Vec<Vertex>,
    /// Edges between tasks.
    pub edges: Vec<VertexEdge>,
}

fn kind(n: &NodeKind) -> String {
    match n {
        NodeKind::Source(c) => format!("source {}", c.kind),
        NodeKind::Sink(c) => format!("sink {}", c.kind),
        NodeKind::Transform { .. } => "transform".into(),
        NodeKind::KeyedProcess(_) => "keyed".into(),
        NodeKind::Window(_) => "window".into(),
    }
}

/// The graph of `physical` with the metrics of `m`.
pub fn graph_view(graph: &JobGraph, physical: &PhysicalPlan, m: &JobMetrics) -> GraphView {
    let mut vertices = Vec::new();
    let mut edges = Vec::new();
    for t in &physical.tasks {
        let operators = t
            .nodes
            .iter()
            .filter_map(|id| graph.node(*id))
            .map(|n| Operator { id: n.id, name: n.name.clone(), kind: kind(&n.kind) })
            .collect();
        let subtasks: Vec<Observed> =
            m.subtasks().filter(|o| o.sample.task as usize == t.index).cloned().collect();
        let n = subtasks.len().max(1) as f64;
        let mut rates = Rates::default();
        for o in &subtasks {
            rates.records_in_per_s += o.rates.records_in_per_s;
            rates.records_out_per_s += o.rates.records_out_per_s;
            rates.bytes_in_per_s += o.rates.bytes_in_per_s;
            rates.bytes_out_per_s += o.rates.bytes_out_per_s;
            rates.busy += o.rates.busy / n;
            rates.idle += o.rates.idle / n;
            rates.backpressured += o.rates.backpressured / n;
            rates.guest += o.rates.guest / n;
        }
        let all_have_watermarks = subtasks.len() == t.parallelism as usize
            && subtasks.iter().all(|o| o.sample.watermark.is_some());
        vertices.push(Vertex {
            index: t.index,
            operators,
            parallelism: t.parallelism,
            reporting: subtasks.len(),
            records_in: subtasks.iter().map(|o| o.sample.records_in).sum(),
            records_out: subtasks.iter().map(|o| o.sample.records_out).sum(),
            bytes_in: subtasks.iter().map(|o| o.sample.bytes_in).sum(),
            bytes_out: subtasks.iter().map(|o| o.sample.bytes_out).sum(),
            rates,
            max_backpressured: subtasks.iter().map(|o| o.rates.backpressured).fold(0.0, f64::max),
            watermark: if all_have_watermarks {
                subtasks.iter().filter_map(|o| o.sample.watermark).min()
            } else {
                None
            },
            guest_seconds: subtasks.iter().map(|o| o.sample.guest_ns as f64 / 1e9).sum(),
            alignment_ms: subtasks
                .iter()
                .map(|o| o.sample.alignment_us as f64 / 1e3)
                .fold(0.0, f64::max),
            cpu_seconds: subtasks.iter().map(|o| o.sample.cpu_ns as f64 / 1e9).sum(),
            memory_bytes: subtasks.iter().map(|o| o.sample.memory_bytes).sum(),
            latency: vertex_latency(&subtasks),
            subtasks,
        });
        for o in &t.outputs {
            edges.push(VertexEdge {
                from: t.index,
                to: o.task,
                partitioning: o.partitioning.to_string(),
                side_output: o.side_output.clone(),
            });
        }
    }
    GraphView { vertices, edges }
}

/// Escapes a Prometheus label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One job's series, as the `/metrics` endpoint shows them.
pub struct JobSeries<'a> {
    /// The job's id.
    pub id: &'a str,
    /// The job's name.
    pub name: &'a str,
    /// The tenant it belongs to (none: the admin's).
    pub tenant: Option<&'a str>,
    /// Its graph with metrics.
    pub graph: GraphView,
    /// Its checkpoints.
    pub checkpoints: Vec<Attempted>,
    /// Exceptions so far.
    pub exceptions: usize,
    /// CPU time of its earlier attempts' subtasks, ns.
    pub earlier_cpu_ns: u64,
}

/// Prometheus text for per-job, per-vertex and per-subtask metrics.
pub fn prometheus(jobs: &[JobSeries<'_>], now_ms: i64) -> String {
    let mut out = String::new();
    let series: &[(&str, &str, &str)] = &[
        ("flinkw_subtask_records_in_total", "counter", "Records into a subtask's first operator."),
        (
            "flinkw_subtask_records_out_total",
            "counter",
            "Records a subtask sent downstream (sinks: wrote).",
        ),
        ("flinkw_subtask_bytes_in_total", "counter", "Bytes of the batches a subtask received."),
        ("flinkw_subtask_bytes_out_total", "counter", "Bytes of the batches a subtask sent."),
        ("flinkw_subtask_busy_seconds_total", "counter", "Time a subtask spent working."),
        ("flinkw_subtask_idle_seconds_total", "counter", "Time a subtask spent waiting for input."),
        (
            "flinkw_subtask_backpressured_seconds_total",
            "counter",
            "Time a subtask spent blocked on a full downstream channel.",
        ),
        (
            "flinkw_subtask_guest_seconds_total",
            "counter",
            "Time a subtask spent inside guest (plugin) calls.",
        ),
        ("flinkw_subtask_guest_calls_total", "counter", "Guest calls a subtask made."),
        ("flinkw_subtask_busy_ratio", "gauge", "Share of the last interval a subtask was busy."),
        (
            "flinkw_subtask_backpressure_ratio",
            "gauge",
            "Share of the last interval a subtask was backpressured.",
        ),
        (
            "flinkw_subtask_records_in_per_second",
            "gauge",
            "Records in per second over the last interval.",
        ),
        (
            "flinkw_subtask_records_out_per_second",
            "gauge",
            "Records out per second over the last interval.",
        ),
        (
            "flinkw_subtask_watermark_ms",
            "gauge",
            "A subtask's current watermark, ms since the epoch.",
        ),
        (
            "flinkw_subtask_watermark_lag_seconds",
            "gauge",
            "Wall clock minus a subtask's watermark.",
        ),
        ("flinkw_subtask_cpu_seconds_total", "counter", "CPU time of a subtask's thread."),
        ("flinkw_subtask_memory_bytes", "gauge", "Linear memory of a subtask's plugin instance."),
        (
            "flinkw_latency_seconds",
            "summary",
            "Source-to-sink latency of latency markers, over a sink subtask's newest 128.",
        ),
    ];
    let mut lines: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for j in jobs {
        for v in &j.graph.vertices {
            let vertex =
                v.operators.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(" -> ");
            for o in &v.subtasks {
                let s = &o.sample;
                let l = format!(
                    "job=\"{}\",job_name=\"{}\",task=\"{}\",vertex=\"{}\",subtask=\"{}\"",
                    label(j.id),
                    label(j.name),
                    v.index,
                    label(&vertex),
                    s.subtask
                );
                let mut put = |name: &'static str, value: String| {
                    lines.entry(name).or_default().push(format!("{name}{{{l}}} {value}"));
                };
                put("flinkw_subtask_records_in_total", s.records_in.to_string());
                put("flinkw_subtask_records_out_total", s.records_out.to_string());
                put("flinkw_subtask_bytes_in_total", s.bytes_in.to_string());
                put("flinkw_subtask_bytes_out_total", s.bytes_out.to_string());
                put("flinkw_subtask_busy_seconds_total", secs(s.busy_ns));
                put("flinkw_subtask_idle_seconds_total", secs(s.idle_ns));
                put("flinkw_subtask_backpressured_seconds_total", secs(s.backpressured_ns));
                put("flinkw_subtask_guest_seconds_total", secs(s.guest_ns));
                put("flinkw_subtask_guest_calls_total", s.guest_calls.to_string());
                put("flinkw_subtask_busy_ratio", format!("{:.4}", o.rates.busy));
                put("flinkw_subtask_backpressure_ratio", format!("{:.4}", o.rates.backpressured));
                put(
                    "flinkw_subtask_records_in_per_second",
                    format!("{:.1}", o.rates.records_in_per_s),
                );
                put(
                    "flinkw_subtask_records_out_per_second",
                    format!("{:.1}", o.rates.records_out_per_s),
                );
                if let Some(wm) = s.watermark {
                    put("flinkw_subtask_watermark_ms", wm.to_string());
                    let lag = (now_ms.saturating_sub(wm)) as f64 / 1e3;
                    put("flinkw_subtask_watermark_lag_seconds", format!("{lag:.3}"));
                }
                put("flinkw_subtask_cpu_seconds_total", secs(s.cpu_ns));
                put("flinkw_subtask_memory_bytes", s.memory_bytes.to_string());
                // A summary: quantiles, then the sum and count of every marker.
                for lat in &s.latency {
                    let source = j
                        .graph
                        .vertices
                        .get(lat.source_task as usize)
                        .and_then(|v| v.operators.first())
                        .map_or("?", |o| o.name.as_str());
                    let l = format!(
                        "{l},source_task=\"{}\",source=\"{}\"",
                        lat.source_task,
                        label(source)
                    );
                    let summary = lines.entry("flinkw_latency_seconds").or_default();
                    for (q, us) in [("0.5", lat.p50_us), ("0.95", lat.p95_us), ("0.99", lat.p99_us)]
                    {
                        summary.push(format!(
                            "flinkw_latency_seconds{{{l},quantile=\"{q}\"}} {}",
                            secs(us * 1000)
                        ));
                    }
                    summary.push(format!(
                        "flinkw_latency_seconds_sum{{{l}}} {}",
                        secs(lat.sum_us.saturating_mul(1000))
                    ));
                    summary.push(format!("flinkw_latency_seconds_count{{{l}}} {}", lat.markers));
                }
            }
        }
    }
    for (name, kind, help) in series {
        if let Some(l) = lines.get(name) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for line in l {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    // Checkpoints: counts by status, the newest completed one's figures.
    let _ = writeln!(
        out,
        "# HELP flinkw_checkpoints_total Checkpoints by status.\n# TYPE flinkw_checkpoints_total counter"
    );
    for j in jobs {
        for (status, which) in
            [("completed", CheckpointStatus::Completed), ("failed", CheckpointStatus::Failed)]
        {
            let n = j.checkpoints.iter().filter(|c| c.c.status == which).count();
            let _ = writeln!(
                out,
                "flinkw_checkpoints_total{{job=\"{}\",status=\"{status}\"}} {n}",
                label(j.id)
            );
        }
    }
    let last: Vec<(&JobSeries<'_>, &Attempted)> = jobs
        .iter()
        .filter_map(|j| {
            j.checkpoints
                .iter()
                .rev()
                .find(|c| c.c.status == CheckpointStatus::Completed)
                .map(|c| (j, c))
        })
        .collect();
    for (name, help, value) in [
        (
            "flinkw_last_checkpoint_duration_seconds",
            "Duration of the newest completed checkpoint.",
            &(|c: &Attempted| format!("{:.3}", c.c.duration_ms as f64 / 1e3))
                as &dyn Fn(&Attempted) -> String,
        ),
        (
            "flinkw_last_checkpoint_size_bytes",
            "State size of the newest completed checkpoint.",
            &|c: &Attempted| c.c.bytes.to_string(),
        ),
        (
            "flinkw_last_checkpoint_alignment_seconds",
            "Longest barrier alignment of the newest completed checkpoint.",
            &|c: &Attempted| format!("{:.3}", c.c.alignment_ms as f64 / 1e3),
        ),
        (
            "flinkw_last_checkpoint_id",
            "Id of the newest completed checkpoint.",
            &|c: &Attempted| c.c.id.to_string(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (j, c) in &last {
            let _ = writeln!(out, "{name}{{job=\"{}\"}} {}", label(j.id), value(c));
        }
    }
    let name = "flinkw_last_checkpoint_task_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} From the trigger of the newest completed checkpoint until a task's last \
         subtask acknowledged it.\n# TYPE {name} gauge"
    );
    for (j, c) in &last {
        for (task, ms) in c.c.task_ms.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{job=\"{}\",task=\"{task}\"}} {:.3}",
                label(j.id),
                *ms as f64 / 1e3
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP flinkw_job_exceptions_total Failures of a job's parts.\n# TYPE flinkw_job_exceptions_total counter"
    );
    for j in jobs {
        let _ = writeln!(
            out,
            "flinkw_job_exceptions_total{{job=\"{}\"}} {}",
            label(j.id),
            j.exceptions
        );
    }
    out.push_str(&tenant_series(jobs));
    out
}

/// The tenant label of a job: its tenant, or `_admin` (no tenant name can
/// start with `_`).
pub fn tenant_label(tenant: Option<&str>) -> &str {
    tenant.unwrap_or("_admin")
}

/// Per tenant, summed over its jobs' current subtasks: CPU (with the
/// earlier attempts'), busy and guest time, and the linear memory of their
/// plugin instances.
fn tenant_series(jobs: &[JobSeries<'_>]) -> String {
    #[derive(Default)]
    struct Sum {
        cpu: u64,
        busy: u64,
        guest: u64,
        memory: u64,
        subtasks: u64,
    }
    let mut sums: BTreeMap<&str, Sum> = BTreeMap::new();
    for j in jobs {
        let sum = sums.entry(tenant_label(j.tenant)).or_default();
        sum.cpu += j.earlier_cpu_ns;
        for o in j.graph.vertices.iter().flat_map(|v| &v.subtasks) {
            sum.cpu += o.sample.cpu_ns;
            sum.busy += o.sample.busy_ns;
            sum.guest += o.sample.guest_ns;
            sum.memory += o.sample.memory_bytes;
            sum.subtasks += u64::from(!o.sample.ended);
        }
    }
    let mut out = String::new();
    type Row<'a> = (&'a str, &'a str, &'a str, &'a dyn Fn(&Sum) -> String);
    let rows: [Row<'_>; 5] = [
        (
            "flinkw_tenant_cpu_seconds_total",
            "counter",
            "CPU time of a tenant's subtask threads (every attempt of its jobs).",
            &|s| secs(s.cpu),
        ),
        (
            "flinkw_tenant_busy_seconds_total",
            "counter",
            "Busy time of a tenant's subtasks.",
            &|s| secs(s.busy),
        ),
        (
            "flinkw_tenant_guest_seconds_total",
            "counter",
            "Time a tenant's subtasks spent inside plugin calls.",
            &|s| secs(s.guest),
        ),
        (
            "flinkw_tenant_memory_bytes",
            "gauge",
            "Linear memory of a tenant's running plugin instances.",
            &|s| s.memory.to_string(),
        ),
        (
            "flinkw_tenant_running_subtasks",
            "gauge",
            "A tenant's subtasks that are running.",
            &|s| s.subtasks.to_string(),
        ),
    ];
    for (name, kind, help, value) in rows {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (tenant, sum) in &sums {
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", label(tenant), value(sum));
        }
    }
    out
}

fn secs(ns: u64) -> String {
    format!("{:.6}", ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(records: u64, wall_ms: u64, idle_ms: u64, bp_ms: u64) -> SubtaskSample {
        SubtaskSample {
            records_in: records,
            records_out: records,
            wall_ns: wall_ms * 1_000_000,
            idle_ns: idle_ms * 1_000_000,
            backpressured_ns: bp_ms * 1_000_000,
            busy_ns: (wall_ms - idle_ms - bp_ms) * 1_000_000,
            ..SubtaskSample::default()
        }
    }

    #[test]
    fn rates_come_from_the_difference_of_two_samples() {
        let r = Rates::between(&sample(100, 1000, 500, 0), &sample(1100, 1500, 600, 250));
        assert_eq!(r.records_in_per_s, 2000.0);
        assert!((r.idle - 0.2).abs() < 1e-9 && (r.backpressured - 0.5).abs() < 1e-9);
        assert!((r.busy - 0.3).abs() < 1e-9);
        assert_eq!(Rates::between(&sample(5, 10, 0, 0), &sample(5, 10, 0, 0)), Rates::default());
    }

    #[test]
    fn a_new_attempt_drops_the_old_samples() {
        let mut m = JobMetrics::default();
        m.observe(1, 0, vec![sample(10, 100, 0, 0)]);
        m.observe(1, 0, vec![sample(30, 200, 0, 0)]);
        let o: Vec<_> = m.subtasks().collect();
        assert_eq!(o[0].rates.records_in_per_s, 200.0);
        m.observe(2, 1, vec![sample(1, 100, 0, 0)]);
        m.observe(1, 0, vec![sample(99, 300, 0, 0)]); // late, of the old attempt
        assert_eq!(m.subtasks().map(|o| o.sample.records_in).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn logs_and_exceptions_are_bounded() {
        let mut m = JobMetrics::default();
        for i in 0..(EXCEPTIONS_KEPT + 3) {
            m.exception(0, "w1".into(), format!("e{i}"));
        }
        assert_eq!(m.exceptions().len(), EXCEPTIONS_KEPT);
        assert_eq!(m.exceptions()[0].error, "e3");
        let line = |i: usize| LogLine {
            at_ms: i as i64,
            level: "INFO".into(),
            target: "t".into(),
            subtask: None,
            worker: String::new(),
            message: format!("m{i}"),
        };
        m.log("w1", (0..LOG_LINES_KEPT + 10).map(line).collect());
        assert_eq!(m.logs(usize::MAX).len(), LOG_LINES_KEPT);
        let last = m.logs(2);
        assert_eq!((last[0].message.as_str(), last[1].worker.as_str()), ("m2008", "w1"));
    }

    #[test]
    fn latency_and_tenant_sums_in_the_prometheus_text() {
        use flinkw_host::runtime::LatencySample;
        let observed = |task: u32, subtask: u32, cpu_ms: u64, memory: u64, ended: bool| Observed {
            worker: 1,
            sample: SubtaskSample {
                task,
                subtask,
                cpu_ns: cpu_ms * 1_000_000,
                memory_bytes: memory,
                ended,
                latency: if task == 1 {
                    vec![LatencySample {
                        source_task: 0,
                        markers: 4,
                        sum_us: 10_000,
                        p50_us: 2_000,
                        p95_us: 3_000,
                        p99_us: 4_000,
                        max_us: 4_000,
                    }]
                } else {
                    Vec::new()
                },
                ..sample(0, 1000, 0, 0)
            },
            rates: Rates::default(),
        };
        let vertex = |index: usize, name: &str, subtasks: Vec<Observed>| Vertex {
            index,
            operators: vec![Operator { id: index as u32, name: name.into(), kind: "x".into() }],
            parallelism: subtasks.len() as u32,
            reporting: subtasks.len(),
            records_in: 0,
            records_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            rates: Rates::default(),
            max_backpressured: 0.0,
            watermark: None,
            guest_seconds: 0.0,
            alignment_ms: 0.0,
            cpu_seconds: 0.0,
            memory_bytes: 0,
            latency: vertex_latency(&subtasks),
            subtasks,
        };
        let graph = |subtasks: Vec<Observed>| GraphView {
            vertices: vec![
                vertex(0, "src", subtasks[..1].to_vec()),
                vertex(1, "sink", subtasks[1..].to_vec()),
            ],
            edges: vec![],
        };
        let job = |id, tenant, g| JobSeries {
            id,
            name: "j",
            tenant,
            graph: g,
            checkpoints: vec![],
            exceptions: 0,
            earlier_cpu_ns: if id == "b" { 5_000_000 } else { 0 },
        };
        let a = graph(vec![observed(0, 0, 100, 1000, false), observed(1, 0, 50, 500, false)]);
        assert_eq!(a.vertices[1].latency[0].p99_ms, 4.0);
        let b = graph(vec![observed(0, 0, 10, 0, true), observed(1, 0, 20, 300, false)]);
        let c = graph(vec![observed(0, 0, 1, 7, false), observed(1, 0, 1, 0, false)]);
        let text = prometheus(
            &[job("a", Some("acme"), a), job("b", Some("acme"), b), job("c", None, c)],
            0,
        );
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        has("# TYPE flinkw_latency_seconds summary");
        let labels = "job=\"a\",job_name=\"j\",task=\"1\",vertex=\"sink\",subtask=\"0\",\
                      source_task=\"0\",source=\"src\"";
        has(&format!("flinkw_latency_seconds{{{labels},quantile=\"0.99\"}} 0.004000"));
        has(&format!("flinkw_latency_seconds_count{{{labels}}} 4"));
        has(&format!("flinkw_latency_seconds_sum{{{labels}}} 0.010000"));
        has("flinkw_tenant_cpu_seconds_total{tenant=\"acme\"} 0.185000");
        has("flinkw_tenant_memory_bytes{tenant=\"acme\"} 1800");
        has("flinkw_tenant_running_subtasks{tenant=\"acme\"} 3");
        has("flinkw_tenant_memory_bytes{tenant=\"_admin\"} 7");
        has(
            "flinkw_subtask_memory_bytes{job=\"a\",job_name=\"j\",task=\"0\",vertex=\"src\",subtask=\"0\"} 1000",
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
