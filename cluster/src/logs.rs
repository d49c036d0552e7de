//! Logging: the `flinkw` command's tracing setup (human text or JSON
//! lines on stderr) and the capture of each job's log lines on a worker,
//! which ships them to the coordinator with its heartbeats (`flinkw logs`).
//!
//! A worker runs each job attempt inside a span with a `job_id` field; the
//! runtime runs each subtask inside a `subtask` span with `task` and
//! `subtask` fields. The [`Capture`] layer keeps every event (at `info`
//! and above for flinkw's own targets and the guest, `warn` for the rest)
//! that happens inside a `job_id` span in a bounded per-job buffer until
//! [`take`] collects it.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::metrics::LogLine;

/// Lines kept per job between two shipments (older ones are dropped).
pub const PENDING_LINES: usize = 1000;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line, with the span fields (job, task, subtask).
    Json,
}

/// Sets up logging for the `flinkw` command: `FLINKW_LOG` filters (default
/// `warn,flinkw::guest=info`), `format` chooses text or JSON, and job log
/// lines are captured for shipment to the coordinator. With `otlp` (a base
/// URL), log records also go to that OpenTelemetry endpoint (see
/// [`crate::otlp`]); a malformed URL is an error.
pub fn init(format: LogFormat, otlp: Option<&str>) -> Result<(), crate::otlp::EndpointError> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("FLINKW_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,flinkw::guest=info"))
    };
    // What is kept per job and exported: info and above from flinkw and the
    // guest, warnings from libraries.
    let kept = || {
        tracing_subscriber::filter::Targets::new()
            .with_default(Level::WARN)
            .with_target("flinkw", Level::INFO)
            .with_target("flinkw_host", Level::INFO)
            .with_target("flinkw_cluster", Level::INFO)
    };
    let otlp = match otlp.map(str::trim).filter(|e| !e.is_empty()) {
        Some(endpoint) => Some(crate::otlp::start(endpoint)?.with_filter(kept())),
        None => None,
    };
    let registry = tracing_subscriber::registry().with(Capture.with_filter(kept())).with(otlp);
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(std::io::stderr)
                    .with_filter(filter()),
            )
            .try_init(),
    };
    let _ = result;
    Ok(())
}

/// The job and subtask a span names.
#[derive(Default, Clone)]
struct SpanFields {
    job_id: Option<String>,
    task: Option<u32>,
    subtask: Option<u32>,
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "job_id" {
            self.job_id = Some(value.to_owned());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "task" => self.task = u32::try_from(value).ok(),
            "subtask" => self.subtask = u32::try_from(value).ok(),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if value >= 0 {
            self.record_u64(field, value as u64);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "job_id" {
            self.job_id = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

/// An event's message and other fields as one line.
#[derive(Default)]
struct Message(String, String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.1, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.1, " {}={value}", field.name());
        }
    }
}

static PENDING: Mutex<Option<HashMap<String, VecDeque<LogLine>>>> = Mutex::new(None);

/// The log lines of job `job` captured since the last call.
pub fn take(job: &str) -> Vec<LogLine> {
    let mut p = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    p.as_mut().and_then(|m| m.remove(job)).map(Vec::from).unwrap_or_default()
}

/// A tracing layer that keeps the events of job spans (see the module docs).
pub struct Capture;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if fields.job_id.is_none() && fields.task.is_none() {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else { return };
        let mut found = SpanFields::default();
        for span in scope {
            if let Some(f) = span.extensions().get::<SpanFields>() {
                found.job_id = found.job_id.or_else(|| f.job_id.clone());
                found.task = found.task.or(f.task);
                found.subtask = found.subtask.or(f.subtask);
            }
        }
        let Some(job) = found.job_id else { return };
        let mut m = Message::default();
        event.record(&mut m);
        let meta = event.metadata();
        let line = LogLine {
            at_ms: flinkw_host::time::now_millis(),
            level: meta.level().to_string(),
            target: meta.target().to_owned(),
            subtask: found.task.zip(found.subtask),
            worker: String::new(),
            message: format!("{}{}", m.0, m.1),
        };
        let mut p = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        let lines = p.get_or_insert_with(HashMap::new).entry(job).or_default();
        if lines.len() >= PENDING_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_inside_a_job_span_are_captured_with_their_subtask() {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::with_default(subscriber, || {
            let job = tracing::error_span!("job", job_id = "job-test-1", attempt = 0);
            let _j = job.enter();
            let sub = tracing::error_span!("subtask", job = "wc", task = 2u32, subtask = 1u32);
            sub.in_scope(
                || tracing::info!(target: "flinkw::guest", plugin = "wc#1", "hello {}", 7),
            );
            tracing::warn!("outside a subtask");
        });
        tracing::info!("no job: not captured");
        let lines = take("job-test-1");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].message, "hello 7 plugin=wc#1");
        assert_eq!((lines[0].subtask, lines[0].level.as_str()), (Some((2, 1)), "INFO"));
        assert_eq!(lines[1].subtask, None);
        assert!(take("job-test-1").is_empty());
    }
}
