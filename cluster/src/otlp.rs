//! OpenTelemetry export of log records: OTLP over HTTP with the JSON
//! encoding (`POST {endpoint}/v1/logs`, an `ExportLogsServiceRequest`),
//! one of the transports every OTLP receiver (the OpenTelemetry Collector,
//! Grafana Alloy, most vendors) accepts — without a gRPC stack.
//!
//! [`OtlpLayer`] turns tracing events into log records with the fields of
//! their spans as attributes (`job`, `job_name`, `task`, `subtask`,
//! `tenant`, `attempt`) plus `worker` and the event's own fields, and puts
//! them in a bounded queue; it never blocks the thread that logs (a full
//! queue drops the record and counts it). A thread of its own sends them in
//! batches (up to [`BATCH`] records, at least once a second). An endpoint
//! that does not answer is a warning on stderr, once per outage; the job
//! goes on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Records waiting to be sent, at most (more are dropped and counted).
pub const QUEUE: usize = 2048;
/// Records per request, at most.
pub const BATCH: usize = 512;
/// The longest a record waits before its batch is sent.
pub const DELAY: Duration = Duration::from_secs(1);
/// Per request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A bad `--otlp-endpoint`.
#[derive(Debug, thiserror::Error)]
#[error("bad --otlp-endpoint {endpoint:?}: {reason} (expected e.g. http://127.0.0.1:4318)")]
pub struct EndpointError {
    endpoint: String,
    reason: String,
}

/// The URL logs are posted to: `endpoint` (a base URL, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT`) with `v1/logs` appended.
pub fn logs_url(endpoint: &str) -> Result<reqwest::Url, EndpointError> {
    let bad = |reason: String| EndpointError { endpoint: endpoint.to_owned(), reason };
    let mut url = reqwest::Url::parse(endpoint.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!("the scheme is {:?}, not http or https", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    let path = format!("{}/v1/logs", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A floating-point number.
    Double(f64),
}

impl AttrValue {
    fn to_json(&self) -> Value {
        match self {
            // int64 travels as a decimal string in OTLP/JSON (proto3 mapping).
            AttrValue::Str(s) => json!({ "stringValue": s }),
            AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
            AttrValue::Bool(b) => json!({ "boolValue": b }),
            AttrValue::Double(d) => json!({ "doubleValue": d }),
        }
    }
}

/// One log record, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// When, ns since the epoch.
    pub time_unix_nano: u64,
    /// Its level.
    pub level: Level,
    /// The tracing target (the instrumentation scope).
    pub target: String,
    /// The message.
    pub body: String,
    /// Span fields, the worker, the event's other fields.
    pub attributes: Vec<(String, AttrValue)>,
}

/// OTLP severity number of a tracing level (TRACE=1, DEBUG=5, INFO=9,
/// WARN=13, ERROR=17).
pub fn severity_number(level: Level) -> u8 {
    match level {
        Level::TRACE => 1,
        Level::DEBUG => 5,
        Level::INFO => 9,
        Level::WARN => 13,
        Level::ERROR => 17,
    }
}

fn attributes(list: &[(String, AttrValue)]) -> Value {
    Value::Array(list.iter().map(|(k, v)| json!({ "key": k, "value": v.to_json() })).collect())
}

/// An `ExportLogsServiceRequest` in OTLP/JSON: one resource (this process,
/// `resource` attributes), one scope per target.
pub fn encode_logs(resource: &[(String, AttrValue)], records: &[LogRecord]) -> Value {
    let mut scopes: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for r in records {
        let level = r.level.as_str();
        scopes.entry(&r.target).or_default().push(json!({
            "timeUnixNano": r.time_unix_nano.to_string(),
            "observedTimeUnixNano": r.time_unix_nano.to_string(),
            "severityNumber": severity_number(r.level),
            "severityText": level,
            "body": { "stringValue": r.body },
            "attributes": attributes(&r.attributes),
        }));
    }
    let scope_logs: Vec<Value> = scopes
        .into_iter()
        .map(|(target, records)| {
            json!({
                "scope": { "name": target, "version": env!("CARGO_PKG_VERSION") },
                "logRecords": records,
            })
        })
        .collect();
    json!({
        "resourceLogs": [{
            "resource": { "attributes": attributes(resource) },
            "scopeLogs": scope_logs,
        }]
    })
}

/// What the process is (resource attributes) and the worker name log
/// records carry.
static IDENTITY: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Names this process for the export: `role` (`coordinator`, `worker`,
/// `run`, ...) and `instance` (a worker's name). Records of a worker
/// carry `worker = instance`.
pub fn set_identity(role: &str, instance: &str) {
    *IDENTITY.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((role.to_owned(), instance.to_owned()));
}

fn identity() -> (String, String) {
    IDENTITY.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_else(|| {
        let command = std::env::args().nth(1).unwrap_or_else(|| "flinkw".into());
        (command, format!("{}-{}", hostname(), std::process::id()))
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn resource() -> Vec<(String, AttrValue)> {
    let (role, instance) = identity();
    vec![
        ("service.name".into(), AttrValue::Str("flinkw".into())),
        ("service.version".into(), AttrValue::Str(env!("CARGO_PKG_VERSION").into())),
        ("service.instance.id".into(), AttrValue::Str(instance)),
        ("flinkw.role".into(), AttrValue::Str(role)),
        ("host.name".into(), AttrValue::Str(hostname())),
    ]
}

enum Command {
    Record(Box<LogRecord>),
    Flush(SyncSender<()>),
}

/// The exporter's queue, once started.
static QUEUE_TX: OnceLock<SyncSender<Command>> = OnceLock::new();
/// Records dropped because the queue was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Starts the exporter thread posting to `endpoint`; returns the layer
/// that feeds it.
pub fn start(endpoint: &str) -> Result<OtlpLayer, EndpointError> {
    let url = logs_url(endpoint)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let _ = QUEUE_TX.set(tx.clone());
    let spawned =
        std::thread::Builder::new().name("flinkw-otlp".into()).spawn(move || exporter(url, rx));
    if let Err(e) = spawned {
        eprintln!("warning: cannot start the OTLP exporter: {e}");
    }
    Ok(OtlpLayer { tx })
}

/// Sends what is queued and waits for it, at most `within` (before the
/// process exits).
pub fn flush(within: Duration) {
    let Some(tx) = QUEUE_TX.get() else { return };
    let (done, wait) = std::sync::mpsc::sync_channel(1);
    if send_within(tx, Command::Flush(done), within).is_ok() {
        let _ = wait.recv_timeout(within);
    }
}

/// Sends `t`, waiting at most `within` for room in the queue.
fn send_within<T>(tx: &SyncSender<T>, mut t: T, within: Duration) -> Result<(), ()> {
    let deadline = Instant::now() + within;
    loop {
        match tx.try_send(t) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                t = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return Err(()),
        }
    }
}

/// The exporter thread: batches records and posts them.
fn exporter(url: reqwest::Url, rx: Receiver<Command>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return eprintln!("warning: OTLP export disabled: no runtime: {e}"),
    };
    let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => return eprintln!("warning: OTLP export disabled: no HTTP client: {e}"),
    };
    let mut batch: Vec<LogRecord> = Vec::with_capacity(BATCH);
    let mut first_at: Option<Instant> = None;
    let mut failing = false;
    loop {
        let wait = first_at.map_or(DELAY, |t| DELAY.saturating_sub(t.elapsed()));
        let mut flushed = None;
        let mut closed = false;
        match rx.recv_timeout(wait) {
            Ok(Command::Record(r)) => {
                first_at.get_or_insert_with(Instant::now);
                batch.push(*r);
                if batch.len() < BATCH {
                    continue;
                }
            }
            Ok(Command::Flush(done)) => flushed = Some(done),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => closed = true,
        }
        if !batch.is_empty() {
            // The resource is read per batch, not when the thread starts:
            // the process names itself (`set_identity`) after logging is set
            // up, and an early read raced with that.
            let body = encode_logs(&resource(), &batch);
            let n = batch.len();
            batch.clear();
            first_at = None;
            let sent = rt.block_on(post(&client, &url, body));
            match sent {
                Ok(()) if failing => {
                    failing = false;
                    eprintln!("OTLP export to {url} works again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    let dropped = DROPPED.load(Ordering::Relaxed);
                    eprintln!(
                        "warning: OTLP export to {url} failed: {e}; {n} log record(s) dropped \
                         ({dropped} more for a full queue so far); the job goes on"
                    );
                }
                Err(_) => {}
            }
        }
        if let Some(done) = flushed {
            let _ = done.try_send(());
        }
        if closed {
            return;
        }
    }
}

async fn post(client: &reqwest::Client, url: &reqwest::Url, body: Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let response = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .send()
        .await
        .map_err(|e| format!("{e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let text = response.text().await.unwrap_or_default();
        Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()))
    }
}

/// The span fields a record carries as attributes.
#[derive(Default, Clone)]
struct SpanAttrs(Vec<(&'static str, AttrValue)>);

/// Span field names exported, and the attribute each becomes.
const SPAN_FIELDS: [(&str, &str); 6] = [
    ("job_id", "job"),
    ("job", "job_name"),
    ("task", "task"),
    ("subtask", "subtask"),
    ("tenant", "tenant"),
    ("attempt", "attempt"),
];

impl SpanAttrs {
    fn put(&mut self, field: &Field, value: AttrValue) {
        if let Some((_, attr)) = SPAN_FIELDS.iter().find(|(f, _)| *f == field.name()) {
            if matches!(&value, AttrValue::Str(s) if s.is_empty()) {
                return;
            }
            self.0.push((attr, value));
        }
    }
}

impl Visit for SpanAttrs {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, AttrValue::Str(value.to_owned()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, AttrValue::Int(i64::try_from(value).unwrap_or(i64::MAX)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, AttrValue::Int(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        self.put(field, AttrValue::Str(text.trim_matches('"').to_owned()));
    }
}

/// An event's message and other fields.
#[derive(Default)]
struct EventFields {
    message: String,
    attributes: Vec<(String, AttrValue)>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.attributes.push((field.name().to_owned(), AttrValue::Str(value.to_owned())));
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let v = AttrValue::Int(i64::try_from(value).unwrap_or(i64::MAX));
        self.attributes.push((field.name().to_owned(), v));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes.push((field.name().to_owned(), AttrValue::Int(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes.push((field.name().to_owned(), AttrValue::Bool(value)));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes.push((field.name().to_owned(), AttrValue::Double(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            use std::fmt::Write;
            let _ = write!(self.message, "{value:?}");
        } else {
            self.attributes.push((field.name().to_owned(), AttrValue::Str(format!("{value:?}"))));
        }
    }
}

/// The tracing layer that queues log records for export (see the module
/// docs).
pub struct OtlpLayer {
    tx: SyncSender<Command>,
}

impl OtlpLayer {
    /// The record of `event` with the attributes of its spans, `spans`
    /// (innermost first).
    fn record(
        event: &Event<'_>,
        spans: impl Iterator<Item = Option<SpanAttrs>>,
        worker: Option<&str>,
    ) -> LogRecord {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let mut attributes: Vec<(String, AttrValue)> = Vec::new();
        for span in spans.flatten() {
            for (k, v) in span.0 {
                if !attributes.iter().any(|(a, _)| a == k) {
                    attributes.push((k.to_owned(), v));
                }
            }
        }
        if let Some(w) = worker {
            attributes.push(("worker".into(), AttrValue::Str(w.to_owned())));
        }
        attributes.extend(fields.attributes);
        let time_unix_nano = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let meta = event.metadata();
        LogRecord {
            time_unix_nano,
            level: *meta.level(),
            target: meta.target().to_owned(),
            body: fields.message,
            attributes,
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for OtlpLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = SpanAttrs::default();
        attrs.record(&mut fields);
        if fields.0.is_empty() {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let spans: Vec<Option<SpanAttrs>> = ctx
            .event_scope(event)
            .map(|scope| scope.map(|s| s.extensions().get::<SpanAttrs>().cloned()).collect())
            .unwrap_or_default();
        let (role, instance) = identity();
        let worker = (role == "worker").then_some(instance.as_str());
        let record = Self::record(event, spans.into_iter(), worker);
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Command::Record(Box::new(record))) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logs_url_is_the_base_with_v1_logs() {
        assert_eq!(
            logs_url("http://127.0.0.1:4318").unwrap().as_str(),
            "http://127.0.0.1:4318/v1/logs"
        );
        assert_eq!(
            logs_url("https://otel.example:4318/base/").unwrap().as_str(),
            "https://otel.example:4318/base/v1/logs"
        );
        let e = logs_url("localhost:4318").unwrap_err().to_string();
        assert!(e.contains("bad --otlp-endpoint \"localhost:4318\""), "{e}");
        assert!(logs_url("ftp://x/").unwrap_err().to_string().contains("not http or https"));
        assert!(logs_url("not a url").is_err());
    }

    #[test]
    fn records_encode_as_an_export_logs_service_request() {
        let records = vec![
            LogRecord {
                time_unix_nano: 1_700_000_000_123_456_789,
                level: Level::WARN,
                target: "flinkw::guest".into(),
                body: "hello".into(),
                attributes: vec![
                    ("job".into(), AttrValue::Str("job-1".into())),
                    ("subtask".into(), AttrValue::Int(2)),
                ],
            },
            LogRecord {
                time_unix_nano: 5,
                level: Level::INFO,
                target: "flinkw_cluster".into(),
                body: "b".into(),
                attributes: vec![],
            },
        ];
        let resource = vec![("service.name".into(), AttrValue::Str("flinkw".into()))];
        let v = encode_logs(&resource, &records);
        let rl = &v["resourceLogs"][0];
        assert_eq!(rl["resource"]["attributes"][0]["value"]["stringValue"], "flinkw");
        let scopes = rl["scopeLogs"].as_array().unwrap();
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[0]["scope"]["name"], "flinkw::guest");
        let r = &scopes[0]["logRecords"][0];
        assert_eq!(r["timeUnixNano"], "1700000000123456789");
        assert_eq!(
            (r["severityNumber"].as_u64(), r["severityText"].as_str()),
            (Some(13), Some("WARN"))
        );
        assert_eq!(r["body"]["stringValue"], "hello");
        assert_eq!(r["attributes"][1], json!({"key": "subtask", "value": {"intValue": "2"}}));
    }

    #[test]
    fn events_carry_the_fields_of_their_spans() {
        use tracing_subscriber::layer::SubscriberExt;
        let (tx, rx) = std::sync::mpsc::sync_channel(10);
        let subscriber = tracing_subscriber::registry().with(OtlpLayer { tx });
        tracing::subscriber::with_default(subscriber, || {
            let job =
                tracing::error_span!("job", job_id = "job-7", attempt = 1u32, tenant = "acme");
            let _j = job.enter();
            let sub = tracing::error_span!("subtask", job = "wc", task = 2u32, subtask = 1u32);
            sub.in_scope(|| tracing::info!(target: "flinkw::guest", plugin = "wc#1", "hi {}", 3));
        });
        let Ok(Command::Record(r)) = rx.try_recv() else { panic!("no record") };
        assert_eq!(
            (r.body.as_str(), r.level, r.target.as_str()),
            ("hi 3", Level::INFO, "flinkw::guest")
        );
        let get = |k: &str| r.attributes.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        assert_eq!(get("job"), Some(AttrValue::Str("job-7".into())));
        assert_eq!(get("job_name"), Some(AttrValue::Str("wc".into())));
        assert_eq!(get("task"), Some(AttrValue::Int(2)));
        assert_eq!(get("subtask"), Some(AttrValue::Int(1)));
        assert_eq!(get("tenant"), Some(AttrValue::Str("acme".into())));
        assert_eq!(get("attempt"), Some(AttrValue::Int(1)));
        assert_eq!(get("plugin"), Some(AttrValue::Str("wc#1".into())));
    }
}
