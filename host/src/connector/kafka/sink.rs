//! The Kafka sink: `none`, `at-least-once` or `exactly-once` delivery.
//!
//! `exactly-once` is a write-ahead sink (see [`super::wal`]): records wait
//! in the sink and in the checkpoint until the checkpoint completes, then go
//! out in one Kafka transaction that also commits the checkpoint id as the
//! offset of a marker consumer group, atomically. After a crash at any
//! moment, the restore reads the marker and produces again exactly the
//! intervals it does not cover; `init_transactions` with the subtask's
//! transactional id first aborts whatever an earlier attempt left open.
//!
//! With `headers=in-value` each batch value is the envelope the source
//! writes with the same option (see [`super::envelope`]): the record's
//! value and its headers, which go out as Kafka record headers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flinkw_batch::{Batch, BatchBuilder, NO_TIMESTAMP};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::client::{Errors, LastError, all_topics, remote, require_topics};
use super::envelope;
use super::options::{Connection, bad, check, required};
use super::wal::{Entry, Recovery, Sealed, recoveries};
use crate::connector::{ConnectorError, SinkWriter, parse_option};

const NAME: &str = "kafka sink";

/// What the sink promises about its output across failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Records may be lost or doubled after a failure.
    None,
    /// Every record arrives; a failure may double some (flushed at each
    /// checkpoint).
    AtLeastOnce,
    /// Every record arrives once for `read_committed` readers (Kafka
    /// transactions, committed when a checkpoint completes).
    ExactlyOnce,
}

/// What to do with a record larger than `max-record-bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Oversized {
    /// Fail the job, naming the record.
    Fail,
    /// Drop it and count it.
    Skip,
    /// Write a short JSON description of it (not its value) to this topic.
    DeadLetter(String),
}

/// A checked Kafka sink.
#[derive(Debug, Clone)]
pub struct KafkaSinkSpec {
    conn: Connection,
    topic: String,
    delivery: Delivery,
    prefix: Option<String>,
    max_record_bytes: usize,
    oversized: Oversized,
    max_buffer_bytes: usize,
    transaction_timeout: Duration,
    /// Values are envelopes of value and headers (`headers=in-value`).
    headers_in_value: bool,
}

impl KafkaSinkSpec {
    /// Checks the options (no network yet).
    pub fn new(options: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        check(
            NAME,
            options,
            &[
                "topic",
                "delivery",
                "transactional-id-prefix",
                "max-record-bytes",
                "oversized",
                "max-buffer-bytes",
                "transaction.timeout-ms",
                "headers",
            ],
        )?;
        let conn = Connection::new(NAME, options)?;
        let topic = required(NAME, options, "topic")?;
        let delivery = match options.get("delivery").map(String::as_str).unwrap_or("at-least-once")
        {
            "none" => Delivery::None,
            "at-least-once" => Delivery::AtLeastOnce,
            "exactly-once" => Delivery::ExactlyOnce,
            other => {
                return Err(bad(
                    NAME,
                    "delivery",
                    other,
                    "expected none, at-least-once or exactly-once",
                ));
            }
        };
        let prefix = options.get("transactional-id-prefix").cloned();
        if delivery == Delivery::ExactlyOnce && prefix.is_none() {
            return Err(ConnectorError::MissingOption {
                connector: format!(
                    "{NAME} (exactly-once needs a transactional id prefix unique to this job \
                     and sink)"
                ),
                option: "transactional-id-prefix",
            });
        }
        let oversized = match options.get("oversized").map(String::as_str).unwrap_or("fail") {
            "fail" => Oversized::Fail,
            "skip" => Oversized::Skip,
            other => match other.strip_prefix("dead-letter:") {
                Some(t) if !t.is_empty() => Oversized::DeadLetter(t.to_owned()),
                _ => {
                    return Err(bad(
                        NAME,
                        "oversized",
                        other,
                        "expected fail, skip or dead-letter:<topic>",
                    ));
                }
            },
        };
        let headers_in_value = match options.get("headers").map(String::as_str).unwrap_or("none") {
            "none" => false,
            "in-value" => true,
            other => return Err(bad(NAME, "headers", other, "expected none or in-value")),
        };
        Ok(KafkaSinkSpec {
            headers_in_value,
            conn,
            topic,
            delivery,
            prefix,
            max_record_bytes: parse_option(NAME, options, "max-record-bytes", 1_000_000usize)?,
            oversized,
            max_buffer_bytes: parse_option(NAME, options, "max-buffer-bytes", 256usize << 20)?,
            transaction_timeout: Duration::from_millis(parse_option(
                NAME,
                options,
                "transaction.timeout-ms",
                60_000u64,
            )?),
        })
    }

    /// The transactional id of sink subtask `subtask`.
    fn transactional_id(&self, subtask: u32) -> String {
        format!("{}-{subtask}", self.prefix.as_deref().unwrap_or("flinkw"))
    }

    /// The marker consumer group of sink subtask `subtask`: its committed
    /// offset is the newest checkpoint whose records are in Kafka.
    fn marker_group(&self, subtask: u32) -> String {
        format!("{}-{subtask}-checkpoints", self.prefix.as_deref().unwrap_or("flinkw"))
    }

    fn producer(&self, transactional_id: Option<&str>) -> Result<Producer_, ConnectorError> {
        let mut c = self.conn.client_config();
        c.set("enable.idempotence", "true")
            .set("message.max.bytes", (self.max_record_bytes + 64 * 1024).to_string())
            .set("queue.buffering.max.messages", "1000000");
        if !self.conn.properties.contains_key("linger.ms") {
            c.set("linger.ms", "5");
        }
        if let Some(id) = transactional_id {
            c.set("transactional.id", id)
                .set("transaction.timeout.ms", self.transaction_timeout.as_millis().to_string());
        }
        let ctx = Deliveries::default();
        c.create_with_context(ctx).map_err(|e| remote(NAME, e.to_string()))
    }

    /// Opens sink subtask `subtask`'s writer: connects and checks the topics.
    pub fn open(&self, subtask: u32) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        let id = self.transactional_id(subtask);
        let transactional = self.delivery == Delivery::ExactlyOnce;
        let producer = self.producer(transactional.then_some(id.as_str()))?;
        let serve = || producer.poll(Duration::ZERO);
        let topics = all_topics(NAME, producer.client(), &self.conn, &serve)?;
        let mut wanted = vec![self.topic.clone()];
        if let Oversized::DeadLetter(t) = &self.oversized {
            wanted.push(t.clone());
        }
        require_topics(NAME, &self.conn, &topics, &wanted)?;
        Ok(Box::new(KafkaWriter {
            spec: self.clone(),
            subtask,
            producer,
            initialized: false,
            current: BatchBuilder::new(),
            dead: BatchBuilder::new(),
            pending: Vec::new(),
            records: 0,
            skipped: 0,
        }))
    }
}

type Producer_ = BaseProducer<Deliveries>;

/// Counts failed deliveries (reported by the client's callback).
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first: Mutex<Option<String>>,
    errors: Errors,
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.record(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.errors.log(level, fac, message);
    }
}

impl LastError for Deliveries {
    fn last_error(&self) -> Option<String> {
        self.errors.last()
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result
            && self.failed.fetch_add(1, Ordering::SeqCst) == 0
        {
            let what = format!("{}/{}: {e}", m.topic(), m.partition());
            *self.first.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
        }
    }
}

struct KafkaWriter {
    spec: KafkaSinkSpec,
    subtask: u32,
    producer: Producer_,
    /// Whether `init_transactions` ran (exactly-once).
    initialized: bool,
    /// Exactly-once: records since the last barrier.
    current: BatchBuilder,
    /// Exactly-once: notes on oversized records since the last barrier.
    dead: BatchBuilder,
    /// Exactly-once: sealed intervals not yet committed.
    pending: Vec<Sealed>,
    /// Records this subtask was given, for naming a record in errors.
    records: u64,
    skipped: u64,
}

impl KafkaWriter {
    fn error(&self, what: &str, e: impl std::fmt::Display) -> ConnectorError {
        remote(NAME, format!("{what} (subtask {}, {}): {e}", self.subtask, self.spec.conn.servers))
    }

    /// Fails if the client reported a failed delivery.
    fn check_deliveries(&self) -> Result<(), ConnectorError> {
        let ctx = self.producer.context();
        let failed = ctx.failed.load(Ordering::SeqCst);
        if failed == 0 {
            return Ok(());
        }
        let first = ctx.first.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Err(self.error(
            &format!("{failed} record(s) could not be delivered"),
            first.unwrap_or_default(),
        ))
    }

    /// Hands one record to the client, waiting while its queue is full.
    /// With `in_value`, `value` is an envelope of the value and headers
    /// (checked by `write` before: a damaged one fails here).
    fn send(
        producer: &Producer_,
        topic: &str,
        ts: i64,
        key: &[u8],
        value: &[u8],
        in_value: bool,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let (value, headers) = if in_value {
            let (v, list) = envelope::decode(value).map_err(|e| {
                tracing::error!(
                    "a value of the kafka sink is not a headers=in-value envelope: {e}"
                );
                KafkaError::MessageProduction(RDKafkaErrorCode::InvalidMessage)
            })?;
            let mut h = OwnedHeaders::new_with_capacity(list.len());
            for (name, v) in list {
                h = h.insert(Header { key: name, value: Some(v) });
            }
            (v, Some(h))
        } else {
            (value, None)
        };
        let mut record = BaseRecord::to(topic).payload(value);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        if !key.is_empty() {
            record = record.key(key);
        }
        if ts != NO_TIMESTAMP && ts >= 0 {
            record = record.timestamp(ts);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// A record over the size limit: fails, or returns the note for the
    /// dead-letter topic (`None`: skip it).
    fn oversized(
        &mut self,
        ts: i64,
        key: &[u8],
        size: usize,
    ) -> Result<Option<Vec<u8>>, ConnectorError> {
        let what = format!(
            "record {} of sink subtask {} (key {:?}, timestamp {ts}) has {size} bytes, over \
             max-record-bytes = {}",
            self.records,
            self.subtask,
            String::from_utf8_lossy(&key[..key.len().min(64)]),
            self.spec.max_record_bytes
        );
        match &self.spec.oversized {
            Oversized::Fail => Err(remote(
                NAME,
                format!("{what} (option oversized=skip or dead-letter:<topic> lets the job go on)"),
            )),
            Oversized::Skip => {
                self.skipped += 1;
                if self.skipped == 1 {
                    tracing::warn!("{what}: skipped (oversized=skip); later ones are not logged");
                }
                Ok(None)
            }
            Oversized::DeadLetter(_) => {
                let note = serde_json::json!({
                    "topic": self.spec.topic,
                    "subtask": self.subtask,
                    "record": self.records,
                    "bytes": size,
                    "key": String::from_utf8_lossy(key),
                    "timestamp": ts,
                    "reason": format!("over max-record-bytes = {}", self.spec.max_record_bytes),
                });
                Ok(Some(note.to_string().into_bytes()))
            }
        }
    }

    fn dead_topic(&self) -> &str {
        match &self.spec.oversized {
            Oversized::DeadLetter(t) => t,
            _ => &self.spec.topic,
        }
    }

    /// Produces every record of `intervals` inside the open transaction.
    fn produce(&self, producer: &Producer_, intervals: &[&Sealed]) -> Result<u64, KafkaError> {
        let timeout = self.spec.transaction_timeout;
        let mut n = 0;
        for s in intervals {
            let parts = [
                (self.spec.topic.as_str(), &s.batches, self.spec.headers_in_value),
                (self.dead_topic(), &s.dead_letters, false),
            ];
            for (topic, batches, in_value) in parts {
                for bytes in batches {
                    // Checked by `transaction` before it began.
                    let Ok(batch) = Batch::new(bytes) else { continue };
                    for r in batch.iter() {
                        Self::send(
                            producer,
                            topic,
                            r.timestamp,
                            r.key,
                            r.value,
                            in_value,
                            timeout,
                        )?;
                        n += 1;
                    }
                    producer.poll(Duration::ZERO);
                }
            }
        }
        Ok(n)
    }

    fn marker_consumer(&self, origin: u32) -> Result<BaseConsumer, ConnectorError> {
        let mut c = self.spec.conn.client_config();
        c.set("group.id", self.spec.marker_group(origin))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        c.create().map_err(|e| self.error("cannot create the marker consumer", e))
    }

    /// The newest checkpoint whose records sink subtask `origin` committed.
    fn marker(&self, consumer: &BaseConsumer) -> Result<u64, ConnectorError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.spec.topic, 0);
        let got = consumer
            .committed_offsets(tpl, self.spec.conn.request_timeout)
            .map_err(|e| self.error("cannot read the sink's commit marker", e))?;
        Ok(got
            .elements()
            .first()
            .and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o as u64),
                _ => None,
            })
            .unwrap_or(0))
    }

    /// One transaction: the records of `intervals`, and the marker set to
    /// `marker` (if given). Returns the records produced.
    fn transaction(
        &self,
        producer: &Producer_,
        intervals: &[&Sealed],
        marker: Option<(u64, &BaseConsumer)>,
        what: &str,
    ) -> Result<u64, ConnectorError> {
        for s in intervals {
            for b in s.batches.iter().chain(&s.dead_letters) {
                Batch::new(b)
                    .map_err(|e| self.error("a batch of the sink's checkpoint is damaged", e))?;
            }
        }
        let timeout = self.spec.transaction_timeout;
        let marker = match marker {
            Some((id, consumer)) => {
                let group = consumer.group_metadata().ok_or_else(|| {
                    self.error("cannot commit", "the marker consumer has no group metadata")
                })?;
                Some((id, group))
            }
            None => None,
        };
        let run = || -> Result<u64, KafkaError> {
            producer.begin_transaction()?;
            let n = self.produce(producer, intervals)?;
            if let Some((id, group)) = &marker {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&self.spec.topic, 0, Offset::Offset(*id as i64))?;
                producer.send_offsets_to_transaction(&tpl, group, timeout)?;
            }
            producer.commit_transaction(timeout)?;
            Ok(n)
        };
        run().map_err(|e| {
            if let KafkaError::Transaction(t) = &e
                && t.txn_requires_abort()
            {
                let _ = producer.abort_transaction(timeout);
            }
            self.error(&format!("cannot commit the Kafka transaction of {what}"), e)
        })
    }

    fn init(&mut self) -> Result<(), ConnectorError> {
        if !self.initialized {
            self.producer
                .init_transactions(self.spec.transaction_timeout)
                .map_err(|e| self.error("cannot initialize Kafka transactions", e))?;
            self.initialized = true;
        }
        Ok(())
    }

    /// Restores old sink subtask `r.origin`: aborts what it left open,
    /// produces what its marker does not cover, and sets its marker to the
    /// restored checkpoint, in one transaction.
    fn recover(&mut self, r: &Recovery) -> Result<(), ConnectorError> {
        let other;
        let producer = if r.origin == self.subtask {
            self.init()?;
            &self.producer
        } else {
            // An old subtask beyond the new parallelism: its transactional
            // id must be fenced too, or its open transaction blocks readers.
            other = self.spec.producer(Some(&self.spec.transactional_id(r.origin)))?;
            other
                .init_transactions(self.spec.transaction_timeout)
                .map_err(|e| self.error("cannot initialize Kafka transactions", e))?;
            &other
        };
        let consumer = self.marker_consumer(r.origin)?;
        let marker = self.marker(&consumer)?;
        if marker > r.checkpoint && r.checkpoint > 0 {
            tracing::warn!(
                origin = r.origin,
                marker,
                checkpoint = r.checkpoint,
                "the Kafka sink had committed a checkpoint newer than the one restored (was a \
                 newer checkpoint damaged?); its records are written again"
            );
        }
        let intervals: Vec<&Sealed> = r.replay(marker).collect();
        let what = format!("checkpoints up to {} (restore)", r.checkpoint);
        let n = self.transaction(producer, &intervals, Some((r.checkpoint, &consumer)), &what)?;
        tracing::info!(
            origin = r.origin,
            marker,
            checkpoint = r.checkpoint,
            records = n,
            "kafka sink restored"
        );
        Ok(())
    }

    /// Seals the records since the last barrier as part of checkpoint `id`.
    fn seal(&mut self, id: u64) {
        if self.current.is_empty() && self.dead.is_empty() {
            return;
        }
        let mut s = Sealed { checkpoint: id, ..Default::default() };
        if !self.current.is_empty() {
            s.batches.push(self.current.finish());
        }
        if !self.dead.is_empty() {
            s.dead_letters.push(self.dead.finish());
        }
        self.pending.push(s);
    }
}

impl SinkWriter for KafkaWriter {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), ConnectorError> {
        let eo = self.spec.delivery == Delivery::ExactlyOnce;
        if !eo {
            self.check_deliveries()?;
        }
        let timeout = self.spec.transaction_timeout;
        for r in batch.iter() {
            self.records += 1;
            if self.spec.headers_in_value
                && let Err(e) = envelope::decode(r.value)
            {
                return Err(remote(
                    NAME,
                    format!(
                        "record {} of sink subtask {} (key {:?}, timestamp {}): its value is not \
                         a headers=in-value envelope of value and headers: {e}",
                        self.records,
                        self.subtask,
                        String::from_utf8_lossy(&r.key[..r.key.len().min(64)]),
                        r.timestamp
                    ),
                ));
            }
            let size = r.key.len() + r.value.len();
            if size > self.spec.max_record_bytes {
                let Some(note) = self.oversized(r.timestamp, r.key, size)? else { continue };
                if eo {
                    self.dead.push(r.timestamp, r.key, &note);
                } else {
                    Self::send(
                        &self.producer,
                        self.dead_topic(),
                        r.timestamp,
                        r.key,
                        &note,
                        false,
                        timeout,
                    )
                    .map_err(|e| self.error("cannot produce", e))?;
                }
            } else if eo {
                self.current.push(r.timestamp, r.key, r.value);
            } else {
                let in_value = self.spec.headers_in_value;
                Self::send(
                    &self.producer,
                    &self.spec.topic,
                    r.timestamp,
                    r.key,
                    r.value,
                    in_value,
                    timeout,
                )
                .map_err(|e| self.error("cannot produce", e))?;
            }
        }
        if eo && self.current.data_len() > self.spec.max_buffer_bytes {
            return Err(self.error(
                "exactly-once keeps a checkpoint interval's output until the checkpoint \
                 completes",
                format!(
                    "{} bytes since the last checkpoint are over max-buffer-bytes = {}; take \
                     checkpoints more often (checkpoint.interval-ms, --checkpoint-dir) or \
                     raise the limit",
                    self.current.data_len(),
                    self.spec.max_buffer_bytes
                ),
            ));
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        if self.spec.delivery == Delivery::ExactlyOnce {
            // The input ended. With checkpoints, the final checkpoint
            // committed everything already; without, this is the only commit.
            self.seal(u64::MAX);
            if self.pending.is_empty() {
                return Ok(());
            }
            self.init()?;
            let pending = std::mem::take(&mut self.pending);
            let refs: Vec<&Sealed> = pending.iter().collect();
            self.transaction(&self.producer, &refs, None, "the end of the input")?;
            return Ok(());
        }
        self.producer
            .flush(self.spec.transaction_timeout)
            .map_err(|e| self.error("cannot flush", e))?;
        self.check_deliveries()
    }

    fn pre_commit(&mut self, id: u64) -> Result<Vec<Vec<u8>>, ConnectorError> {
        match self.spec.delivery {
            Delivery::None => Ok(Vec::new()),
            Delivery::AtLeastOnce => {
                // Everything before the barrier is in Kafka before the
                // checkpoint counts.
                self.producer
                    .flush(self.spec.transaction_timeout)
                    .map_err(|e| self.error("cannot flush at a checkpoint", e))?;
                self.check_deliveries()?;
                Ok(Vec::new())
            }
            Delivery::ExactlyOnce => {
                self.seal(id);
                let encode = |e: Entry| e.encode().map_err(|r| self.error("cannot encode", r));
                let mut out = vec![encode(Entry::Header { origin: self.subtask, checkpoint: id })?];
                for s in self.pending.iter().filter(|s| s.checkpoint <= id) {
                    out.push(encode(Entry::Interval {
                        origin: self.subtask,
                        checkpoint: s.checkpoint,
                        batches: s.batches.clone(),
                        dead_letters: s.dead_letters.clone(),
                    })?);
                }
                Ok(out)
            }
        }
    }

    fn commit(&mut self, id: u64) -> Result<(), ConnectorError> {
        if self.spec.delivery != Delivery::ExactlyOnce {
            return Ok(());
        }
        let Some(newest) = self.pending.iter().map(|s| s.checkpoint).filter(|c| *c <= id).max()
        else {
            return Ok(());
        };
        self.init()?;
        let (done, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|s| s.checkpoint <= id);
        self.pending = rest;
        let refs: Vec<&Sealed> = done.iter().collect();
        let consumer = self.marker_consumer(self.subtask)?;
        let what = format!("checkpoint {newest}");
        let n = self.transaction(&self.producer, &refs, Some((newest, &consumer)), &what)?;
        tracing::debug!(subtask = self.subtask, checkpoint = newest, records = n, "committed");
        Ok(())
    }

    fn restore(&mut self, pending: &[Vec<u8>]) -> Result<(), ConnectorError> {
        if self.spec.delivery != Delivery::ExactlyOnce {
            return Ok(());
        }
        let mut all = recoveries(pending).map_err(|e| self.error("cannot restore", e))?;
        if !all.iter().any(|r| r.origin == self.subtask) {
            // No checkpoint of this subtask: start afresh (marker 0), after
            // aborting whatever an earlier run left open.
            all.push(Recovery { origin: self.subtask, checkpoint: 0, intervals: Vec::new() });
        }
        for r in &all {
            self.recover(r)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut o: BTreeMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        o.insert("bootstrap-servers".into(), "127.0.0.1:9".into());
        o
    }

    #[test]
    fn reads_delivery_and_limits() {
        let s = KafkaSinkSpec::new(&opts(&[
            ("topic", "out"),
            ("delivery", "exactly-once"),
            ("transactional-id-prefix", "job-a"),
            ("oversized", "dead-letter:too-big"),
        ]))
        .unwrap();
        assert_eq!(s.delivery, Delivery::ExactlyOnce);
        assert_eq!(s.transactional_id(3), "job-a-3");
        assert_eq!(s.marker_group(3), "job-a-3-checkpoints");
        assert_eq!(s.oversized, Oversized::DeadLetter("too-big".into()));
        assert_eq!(
            KafkaSinkSpec::new(&opts(&[("topic", "o")])).unwrap().delivery,
            Delivery::AtLeastOnce
        );
    }

    #[test]
    fn exactly_once_needs_a_prefix() {
        let e = KafkaSinkSpec::new(&opts(&[("topic", "o"), ("delivery", "exactly-once")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("transactional-id-prefix"), "{e}");
        let e = KafkaSinkSpec::new(&opts(&[("topic", "o"), ("delivery", "twice")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected none, at-least-once or exactly-once"), "{e}");
    }

    #[test]
    fn reads_the_headers_option() {
        let s = KafkaSinkSpec::new(&opts(&[("topic", "o")])).unwrap();
        assert!(!s.headers_in_value);
        let s = KafkaSinkSpec::new(&opts(&[("topic", "o"), ("headers", "in-value")])).unwrap();
        assert!(s.headers_in_value);
        let e = KafkaSinkSpec::new(&opts(&[("topic", "o"), ("headers", "drop")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("headers") && e.contains("expected none or in-value"), "{e}");
    }
}
