//! Kafka topics as sources and sinks: `Kafka::source`, `Kafka::sink`.
//!
//! The connectors run in the host; these builders only name them in the
//! plan. Options not covered by a method go through
//! [`KafkaSource::property`] / [`KafkaSink::property`] to the Kafka client
//! (librdkafka) as they are, e.g. `security.protocol` or `sasl.mechanism`.

use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bindings::flinkw::plugin::types::Connector;
use crate::codec::{Decoder, decode_json, decode_postcard, decode_utf8};
use crate::{Config, Data, Sink, Source, Stream};

/// Kafka connectors: `Kafka::source(servers, topics)`, `Kafka::sink(servers, topic)`.
pub struct Kafka;

/// A Kafka record with its key, headers and timestamp (see
/// [`KafkaSource::records`]; written with [`Stream::sink_records`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaRecord {
    /// The record's key; empty when it has none.
    pub key: Vec<u8>,
    /// The record's value.
    pub value: Vec<u8>,
    /// The record's timestamp (ms since the epoch), if it has one.
    pub timestamp: Option<i64>,
    /// The record's headers, name and value, in the record's order (a name
    /// may repeat; a header with a null value has an empty one).
    #[serde(default)]
    pub headers: Vec<(String, Vec<u8>)>,
}

impl KafkaRecord {
    /// The key as text (lossy).
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    /// The value as text (lossy).
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }

    /// The value of the first header named `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// A Kafka source; see [`Kafka::source`]. Each record's timestamp is its
/// Kafka timestamp, so `.watermarks(...)` right after the source works on
/// event time without `assign_timestamps`.
pub struct KafkaSource<T> {
    options: Vec<(String, String)>,
    format: &'static str,
    _out: PhantomData<T>,
}

/// A Kafka sink; see [`Kafka::sink`].
pub struct KafkaSink {
    options: Vec<(String, String)>,
}

impl Kafka {
    /// Reads the topics `topics` (comma-separated) from the brokers at
    /// `servers` (`host:port,...`); each value as UTF-8 text. From the
    /// earliest offsets unless told otherwise; offsets live in flinkw's
    /// checkpoints.
    pub fn source(servers: &str, topics: &str) -> KafkaSource<String> {
        KafkaSource::new(vec![
            ("bootstrap-servers".into(), servers.into()),
            ("topic".into(), topics.into()),
        ])
    }

    /// Reads every topic whose name matches the regular expression
    /// `pattern`, including topics created while the job runs.
    pub fn source_pattern(servers: &str, pattern: &str) -> KafkaSource<String> {
        KafkaSource::new(vec![
            ("bootstrap-servers".into(), servers.into()),
            ("topic-pattern".into(), pattern.into()),
        ])
    }

    /// Writes to `topic` at the brokers at `servers`: strings as they are,
    /// other values as JSON; at-least-once unless told otherwise.
    pub fn sink(servers: &str, topic: &str) -> KafkaSink {
        KafkaSink {
            options: vec![
                ("bootstrap-servers".into(), servers.into()),
                ("topic".into(), topic.into()),
            ],
        }
    }
}

impl KafkaSource<String> {
    fn new(options: Vec<(String, String)>) -> Self {
        KafkaSource { options, format: "text", _out: PhantomData }
    }

    /// Values as JSON, decoded into `U`.
    pub fn json<U: Data>(self) -> KafkaSource<U> {
        KafkaSource { options: self.options, format: "json", _out: PhantomData }
    }

    /// Values in postcard (what flinkw's own non-text sinks write).
    pub fn postcard<U: Data>(self) -> KafkaSource<U> {
        KafkaSource { options: self.options, format: "postcard", _out: PhantomData }
    }

    /// Whole records: key, value bytes, headers and timestamp. (Asks the
    /// host to carry the headers inside each value: option
    /// `headers=in-value`.)
    pub fn records(self) -> KafkaSource<KafkaRecord> {
        KafkaSource { options: self.options, format: "records", _out: PhantomData }
            .set("headers", "in-value")
    }
}

impl<T> KafkaSource<T> {
    fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.options.retain(|(k, _)| k != key);
        self.options.push((key.into(), value.into()));
        self
    }

    /// Starts at the oldest records (the default).
    pub fn start_earliest(self) -> Self {
        self.set("start", "earliest")
    }

    /// Starts after the newest records: only records written from now on.
    pub fn start_latest(self) -> Self {
        self.set("start", "latest")
    }

    /// Starts at the first record with a timestamp at or after `ms`.
    pub fn start_at_timestamp(self, ms: i64) -> Self {
        self.set("start", format!("timestamp:{ms}"))
    }

    /// Starts at the offsets committed by the consumer group (see
    /// [`KafkaSource::group_id`]); earliest where it has none.
    pub fn start_from_group_offsets(self) -> Self {
        self.set("start", "group-offsets")
    }

    /// The consumer group whose offsets `start_from_group_offsets` reads,
    /// and to which the source commits its checkpointed offsets (for
    /// monitoring lag; flinkw itself restores from its checkpoints).
    pub fn group_id(self, group: &str) -> Self {
        self.set("group-id", group)
    }

    /// Stops at the newest offsets seen when the job starts (a bounded job).
    pub fn bounded(self) -> Self {
        self.set("bounded", "latest")
    }

    /// How often to look for new partitions and topics (0: never).
    pub fn partition_discovery(self, every: Duration) -> Self {
        self.set("partition-discovery-ms", every.as_millis().to_string())
    }

    /// Reads records of open or aborted transactions too (default: only
    /// committed ones).
    pub fn read_uncommitted(self) -> Self {
        self.set("isolation-level", "read_uncommitted")
    }

    /// Sets a Kafka client property (librdkafka), e.g. `security.protocol`.
    pub fn property(self, key: &str, value: &str) -> Self {
        self.set(&format!("properties.{key}"), value)
    }

    /// Sets a connector option by name (see docs/connectors.md).
    pub fn option(self, key: &str, value: &str) -> Self {
        self.set(key, value)
    }

    /// Passes every config key starting with `prefix` (e.g. `kafka.`) to
    /// the client, without the prefix: `--set kafka.sasl.mechanism=PLAIN`.
    pub fn properties_from(mut self, config: &Config, prefix: &str) -> Self {
        for (k, v) in config.with_prefix(prefix) {
            self = self.property(&k, &v);
        }
        self
    }
}

impl<T: Data> Source for KafkaSource<T> {
    type Out = T;
    fn name(&self) -> String {
        "kafka".into()
    }
    fn connector(self) -> Connector {
        Connector { kind: "kafka".into(), options: self.options }
    }
    fn decoder(&self) -> Decoder<T> {
        match self.format {
            "text" => decode_utf8::<T>,
            "json" => decode_json::<T>,
            // Records are decoded by `record_decoder`.
            _ => decode_postcard::<T>,
        }
    }
    fn record_decoder(&self) -> Option<crate::connector::RecordDecoder<T>> {
        (self.format == "records")
            .then_some(decode_record::<T> as crate::connector::RecordDecoder<T>)
    }
    fn is_text(&self) -> bool {
        self.format == "text"
    }
}

/// A whole record as a `KafkaRecord` (through serde, so `T` is one); the
/// value is the host's `headers=in-value` envelope: postcard of
/// `(value, [(name, value)])`.
fn decode_record<T: Data>(key: &[u8], value: &[u8], ts: i64) -> Result<T, String> {
    let (value, headers): (Vec<u8>, Vec<(String, Vec<u8>)>) = postcard::from_bytes(value)
        .map_err(|e| format!("a Kafka record's value and headers cannot be decoded: {e}"))?;
    let r = KafkaRecord {
        key: key.to_vec(),
        value,
        timestamp: (ts != flinkw_batch::NO_TIMESTAMP).then_some(ts),
        headers,
    };
    let bytes = postcard::to_allocvec(&r).map_err(|e| e.to_string())?;
    decode_postcard::<T>(&bytes)
}

impl KafkaSink {
    fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.options.retain(|(k, _)| k != key);
        self.options.push((key.into(), value.into()));
        self
    }

    /// Exactly once for `read_committed` readers: output goes out in Kafka
    /// transactions when checkpoints complete (run with
    /// `--checkpoint-dir`). `prefix` names the transactions and must be
    /// unique to this job and sink.
    pub fn exactly_once(self, prefix: &str) -> Self {
        self.set("delivery", "exactly-once").set("transactional-id-prefix", prefix)
    }

    /// Every record arrives; a failure may repeat some (the default).
    pub fn at_least_once(self) -> Self {
        self.set("delivery", "at-least-once")
    }

    /// No promise across failures (no flush at checkpoints).
    pub fn no_guarantee(self) -> Self {
        self.set("delivery", "none")
    }

    /// The largest record (key + value) written; larger ones fail the job
    /// unless [`KafkaSink::skip_oversized`] or [`KafkaSink::dead_letter`].
    pub fn max_record_bytes(self, bytes: usize) -> Self {
        self.set("max-record-bytes", bytes.to_string())
    }

    /// Drops records over the size limit instead of failing.
    pub fn skip_oversized(self) -> Self {
        self.set("oversized", "skip")
    }

    /// Writes a JSON note about each record over the size limit (its key,
    /// size and position, not its value) to `topic` instead of failing.
    pub fn dead_letter(self, topic: &str) -> Self {
        self.set("oversized", format!("dead-letter:{topic}"))
    }

    /// Sets a Kafka client property (librdkafka), e.g. `compression.type`.
    pub fn property(self, key: &str, value: &str) -> Self {
        self.set(&format!("properties.{key}"), value)
    }

    /// Passes every config key starting with `prefix` to the client.
    pub fn properties_from(mut self, config: &Config, prefix: &str) -> Self {
        for (k, v) in config.with_prefix(prefix) {
            self = self.property(&k, &v);
        }
        self
    }

    /// Sets a connector option by name (see docs/connectors.md).
    pub fn option(self, key: &str, value: &str) -> Self {
        self.set(key, value)
    }
}

impl Stream<KafkaRecord> {
    /// Sends whole records to a Kafka sink: each record's key, value and
    /// headers (in order; a name may repeat) become the Kafka record's.
    /// The Kafka timestamp is the element's event time, as for every sink
    /// (the record's `timestamp` field is not read). Asks the host to read
    /// the headers from each value: sink option `headers=in-value`, the
    /// same envelope the source writes.
    ///
    /// ```no_run
    /// # use flinkw::prelude::*;
    /// # fn job(env: &mut Env) -> Result<(), Error> {
    /// env.source(Kafka::source("127.0.0.1:9092", "in").records())
    ///     .map(|mut r: KafkaRecord| {
    ///         r.headers.push(("seen-by".into(), b"flinkw".to_vec()));
    ///         r
    ///     })
    ///     .sink_records(Kafka::sink("127.0.0.1:9092", "out"));
    /// # Ok(()) }
    /// ```
    pub fn sink_records(self, sink: KafkaSink) {
        let sink = sink.set("headers", "in-value");
        self.sink_encoded(
            sink,
            Box::new(|r: &KafkaRecord, out: &mut Vec<u8>| {
                out.extend_from_slice(&r.key);
                Ok(())
            }),
            encode_record,
        );
    }
}

/// The `headers=in-value` envelope of a record: postcard of
/// `(value, [(name, value)])`.
fn encode_record(r: &KafkaRecord, out: &mut Vec<u8>) -> Result<(), String> {
    let bytes = postcard::to_allocvec(&(&r.value, &r.headers)).map_err(|e| e.to_string())?;
    out.extend_from_slice(&bytes);
    Ok(())
}

impl Sink for KafkaSink {
    fn name(&self) -> String {
        "kafka".into()
    }
    fn connector(self) -> Connector {
        Connector { kind: "kafka".into(), options: self.options }
    }
    fn is_text(&self) -> bool {
        true
    }
}
