//! The Kafka source: each subtask reads the partitions assigned to it
//! (manually, by a fixed rule, never by a consumer-group rebalance) and
//! keeps its offsets in flinkw's checkpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flinkw_batch::{BatchBuilder, NO_TIMESTAMP};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::assign::owner;
use super::client::{Errors, Topics, all_topics, remote, require_topics};
use super::envelope;
use super::options::{Connection, bad, check, flag, required};
use crate::checkpoint::{KafkaOffset, SourcePosition};
use crate::connector::split_watermarks::SplitWatermarks;
use crate::connector::{ConnectorError, Poll, SourceReader, parse_option, wrong_position};
use crate::time::WatermarkStrategy;

const NAME: &str = "kafka source";

/// Which topics the source reads.
#[derive(Debug, Clone)]
pub enum TopicSelection {
    /// These topics (each must exist).
    Names(Vec<String>),
    /// Every topic whose whole name matches the pattern, now or later.
    Pattern(regex::Regex),
}

impl TopicSelection {
    fn matches(&self, topic: &str) -> bool {
        match self {
            TopicSelection::Names(n) => n.iter().any(|t| t == topic),
            TopicSelection::Pattern(p) => p.is_match(topic),
        }
    }
}

/// Where a source starts when there is no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record of each partition.
    Earliest,
    /// After the newest record (only records written from now on).
    Latest,
    /// The first record with a timestamp at or after this (ms since the epoch).
    Timestamp(i64),
    /// The offsets committed by the consumer group (`group-id`); earliest
    /// where it has none.
    GroupOffsets,
}

/// A checked Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSourceSpec {
    conn: Connection,
    topics: TopicSelection,
    start: StartFrom,
    group: Option<String>,
    commit_offsets: bool,
    bounded: bool,
    discovery: Option<Duration>,
    isolation: String,
    /// Headers go into each value (`headers=in-value`), else are dropped.
    headers_in_value: bool,
    max_record_bytes: usize,
}

impl KafkaSourceSpec {
    /// Checks the options (no network yet).
    pub fn new(
        options: &BTreeMap<String, String>,
        max_record_bytes: usize,
    ) -> Result<Self, ConnectorError> {
        check(
            NAME,
            options,
            &[
                "topic",
                "topic-pattern",
                "start",
                "group-id",
                "commit-offsets",
                "bounded",
                "partition-discovery-ms",
                "isolation-level",
                "headers",
            ],
        )?;
        let conn = Connection::new(NAME, options)?;
        let topics = match (options.get("topic"), options.get("topic-pattern")) {
            (Some(t), None) => TopicSelection::Names(
                t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect(),
            ),
            (None, Some(p)) => TopicSelection::Pattern(
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| bad(NAME, "topic-pattern", p, e.to_string()))?,
            ),
            (Some(t), Some(_)) => {
                return Err(bad(NAME, "topic", t, "give either `topic` or `topic-pattern`"));
            }
            (None, None) => required(NAME, options, "topic").map(|_| unreachable!())?,
        };
        if matches!(&topics, TopicSelection::Names(n) if n.is_empty()) {
            return Err(bad(NAME, "topic", "", "no topic named"));
        }
        let group = options.get("group-id").cloned();
        let start = match options.get("start").map(String::as_str).unwrap_or("earliest") {
            "earliest" => StartFrom::Earliest,
            "latest" => StartFrom::Latest,
            "group-offsets" if group.is_some() => StartFrom::GroupOffsets,
            "group-offsets" => {
                return Err(bad(NAME, "start", "group-offsets", "needs the option `group-id`"));
            }
            other => match other.strip_prefix("timestamp:").map(str::parse::<i64>) {
                Some(Ok(ts)) => StartFrom::Timestamp(ts),
                _ => {
                    return Err(bad(
                        NAME,
                        "start",
                        other,
                        "expected earliest, latest, group-offsets or timestamp:<ms since the epoch>",
                    ));
                }
            },
        };
        let bounded = match options.get("bounded").map(String::as_str).unwrap_or("false") {
            "false" => false,
            "latest" | "true" => true,
            other => return Err(bad(NAME, "bounded", other, "expected false or latest")),
        };
        let discovery_ms = parse_option(NAME, options, "partition-discovery-ms", 10_000u64)?;
        let isolation = options.get("isolation-level").cloned().unwrap_or("read_committed".into());
        if !["read_committed", "read_uncommitted"].contains(&isolation.as_str()) {
            return Err(bad(
                NAME,
                "isolation-level",
                &isolation,
                "expected read_committed or read_uncommitted",
            ));
        }
        let headers_in_value = match options.get("headers").map(String::as_str).unwrap_or("drop") {
            "drop" => false,
            "in-value" => true,
            other => return Err(bad(NAME, "headers", other, "expected drop or in-value")),
        };
        Ok(KafkaSourceSpec {
            conn,
            headers_in_value,
            topics,
            start,
            commit_offsets: flag(NAME, options, "commit-offsets", group.is_some())?,
            group,
            bounded,
            // Bounded sources read the partitions there are when they start.
            discovery: (discovery_ms > 0 && !bounded).then(|| Duration::from_millis(discovery_ms)),
            isolation,
            max_record_bytes,
        })
    }

    /// Opens subtask `index` of `parallelism`: connects, finds its
    /// partitions and where each starts.
    pub fn open(
        &self,
        index: u32,
        parallelism: u32,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        if self.commit_offsets && self.group.is_none() {
            return Err(bad(NAME, "commit-offsets", "true", "needs the option `group-id`"));
        }
        let mut config = self.conn.client_config();
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", if self.bounded { "true" } else { "false" })
            .set("isolation.level", &self.isolation)
            // An offset out of range must not silently jump (the default is
            // `latest`): it fails the job, naming the partition.
            .set("auto.offset.reset", "error")
            .set("group.id", self.group.as_deref().unwrap_or("flinkw-source"))
            .set("client.id", format!("flinkw-source-{index}").as_str());
        let consumer: BaseConsumer<Errors> = config
            .create_with_context(Errors::default())
            .map_err(|e| remote(NAME, e.to_string()))?;
        // Not assigned yet: a poll only serves events (errors).
        let serve = || {
            let _ = consumer.poll(Duration::ZERO);
        };
        let topics = all_topics(NAME, consumer.client(), &self.conn, &serve)?;
        if let TopicSelection::Names(names) = &self.topics {
            require_topics(NAME, &self.conn, &topics, names)?;
        }
        let mut reader = KafkaReader {
            spec: self.clone(),
            index,
            parallelism,
            consumer,
            parts: BTreeMap::new(),
            known: BTreeSet::new(),
            last_discovery: Instant::now(),
            watermarks: None,
            value: Vec::new(),
        };
        let mine = reader.take_new(&topics);
        let starts = reader.start_offsets(&mine)?;
        reader.add(starts)?;
        Ok(Box::new(reader))
    }
}

/// A partition: topic and number.
type PartitionId = (String, i32);

/// One partition a subtask reads.
#[derive(Debug, Clone, Copy)]
struct Part {
    /// The next offset to read.
    next: i64,
    /// Bounded: stop before this offset.
    end: Option<i64>,
    done: bool,
}

struct KafkaReader {
    spec: KafkaSourceSpec,
    index: u32,
    parallelism: u32,
    consumer: BaseConsumer<Errors>,
    parts: BTreeMap<(String, i32), Part>,
    /// Every partition seen (this subtask's or not), for discovery.
    known: BTreeSet<(String, i32)>,
    last_discovery: Instant,
    /// Watermarks per partition, when set on the source.
    watermarks: Option<SplitWatermarks<PartitionId>>,
    /// The value with its headers (`headers=in-value`), reused.
    value: Vec<u8>,
}

impl KafkaReader {
    /// Partitions of `topics` not seen before that this subtask owns.
    fn take_new(&mut self, topics: &Topics) -> Vec<(String, i32)> {
        let mut mine = Vec::new();
        for (topic, partitions) in topics.iter().filter(|(t, _)| self.spec.topics.matches(t)) {
            for p in partitions {
                if self.known.insert((topic.clone(), *p))
                    && owner(topic, *p, self.parallelism) == self.index
                {
                    mine.push((topic.clone(), *p));
                }
            }
        }
        mine
    }

    fn error(&self, what: &str, e: KafkaError) -> ConnectorError {
        remote(NAME, format!("{what} at {}: {e}", self.spec.conn.servers))
    }

    /// Where each partition starts when nothing was checkpointed.
    fn start_offsets(
        &self,
        parts: &[(String, i32)],
    ) -> Result<Vec<(PartitionId, Part)>, ConnectorError> {
        let timeout = self.spec.conn.request_timeout;
        let mut out = Vec::with_capacity(parts.len());
        let mut committed = BTreeMap::new();
        if self.spec.start == StartFrom::GroupOffsets && !parts.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in parts {
                tpl.add_partition(t, *p);
            }
            let got = self
                .consumer
                .committed_offsets(tpl, timeout)
                .map_err(|e| self.error("cannot read the group's committed offsets", e))?;
            for e in got.elements() {
                if let Offset::Offset(o) = e.offset() {
                    committed.insert((e.topic().to_owned(), e.partition()), o);
                }
            }
        }
        let mut by_time = BTreeMap::new();
        if let StartFrom::Timestamp(ts) = self.spec.start
            && !parts.is_empty()
        {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in parts {
                tpl.add_partition_offset(t, *p, Offset::Offset(ts))
                    .map_err(|e| self.error("bad timestamp", e))?;
            }
            let got = self
                .consumer
                .offsets_for_times(tpl, timeout)
                .map_err(|e| self.error("cannot look up offsets by timestamp", e))?;
            for e in got.elements() {
                by_time.insert((e.topic().to_owned(), e.partition()), e.offset());
            }
        }
        for (t, p) in parts {
            let (low, high) = self
                .consumer
                .fetch_watermarks(t, *p, timeout)
                .map_err(|e| self.error(&format!("cannot read the offsets of {t}/{p}"), e))?;
            let key = (t.clone(), *p);
            let next = match self.spec.start {
                StartFrom::Earliest => low,
                StartFrom::Latest => high,
                StartFrom::GroupOffsets => committed.get(&key).copied().unwrap_or(low),
                StartFrom::Timestamp(_) => match by_time.get(&key) {
                    Some(Offset::Offset(o)) => *o,
                    // No record that late: start after the newest.
                    _ => high,
                },
            };
            let end = self.spec.bounded.then_some(high);
            tracing::debug!(topic = %t, partition = p, low, high, next, "offsets");
            out.push((key, Part { next, end, done: end.is_some_and(|e| next >= e) }));
        }
        Ok(out)
    }

    /// Adds partitions to the assignment.
    fn add(&mut self, parts: Vec<(PartitionId, Part)>) -> Result<(), ConnectorError> {
        if parts.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), part) in &parts {
            if !part.done {
                tpl.add_partition_offset(t, *p, Offset::Offset(part.next))
                    .map_err(|e| self.error("bad offset", e))?;
            }
        }
        let now = Instant::now();
        for (k, part) in parts {
            tracing::debug!(subtask = self.index, topic = %k.0, partition = k.1, next = part.next, "reading");
            if let Some(w) = &mut self.watermarks
                && !part.done
            {
                w.add(k.clone(), now);
            }
            self.parts.insert(k, part);
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| self.error("cannot assign partitions", e))
    }

    /// Replaces the assignment with the partitions and offsets in `offsets`
    /// that this subtask owns; partitions it owns that are not there (new
    /// since the checkpoint) start at the earliest offset.
    fn reassign(&mut self, offsets: &[KafkaOffset]) -> Result<(), ConnectorError> {
        self.consumer.unassign().map_err(|e| self.error("cannot unassign partitions", e))?;
        let owned: Vec<(String, i32)> = self.parts.keys().cloned().collect();
        self.parts.clear();
        if let Some(w) = &mut self.watermarks {
            w.clear();
        }
        let mut restored = Vec::new();
        let mut fresh = Vec::new();
        for k in owned {
            match offsets.iter().find(|o| o.topic == k.0 && o.partition == k.1) {
                Some(o) => restored.push((
                    k,
                    Part { next: o.next, end: o.end, done: o.end.is_some_and(|e| o.next >= e) },
                )),
                None => fresh.push(k),
            }
        }
        // Checkpointed partitions this subtask had not seen (e.g. deleted
        // since) are left out; fresh ones start at the earliest offset.
        let start = self.spec.start;
        self.spec.start = StartFrom::Earliest;
        let fresh = self.start_offsets(&fresh);
        self.spec.start = start;
        restored.extend(fresh?);
        self.add(restored)
    }

    /// Looks for partitions created since the last look.
    fn discover(&mut self) -> Result<(), ConnectorError> {
        self.last_discovery = Instant::now();
        let topics = match all_topics(NAME, self.consumer.client(), &self.spec.conn, &|| {}) {
            Ok(t) => t,
            Err(e) => {
                // The next look may succeed; reading goes on meanwhile.
                tracing::warn!(error = %e, "partition discovery failed");
                return Ok(());
            }
        };
        let new = self.take_new(&topics);
        if new.is_empty() {
            return Ok(());
        }
        tracing::info!(subtask = self.index, partitions = ?new, "new Kafka partitions");
        // New partitions are read from their start, as Flink does.
        let start = self.spec.start;
        self.spec.start = StartFrom::Earliest;
        let parts = self.start_offsets(&new);
        self.spec.start = start;
        self.add(parts?)
    }

    /// Marks bounded partitions whose position reached their end.
    fn check_ends(&mut self) {
        let Ok(positions) = self.consumer.position() else { return };
        for e in positions.elements() {
            if let (Offset::Offset(o), Some(part)) =
                (e.offset(), self.parts.get_mut(&(e.topic().to_owned(), e.partition())))
            {
                // Past transaction markers, the position can move beyond the
                // last record read.
                part.next = part.next.max(o.min(part.end.unwrap_or(i64::MAX)));
                if part.end.is_some_and(|end| part.next >= end) {
                    part.done = true;
                    if let Some(w) = &mut self.watermarks {
                        w.remove(&(e.topic().to_owned(), e.partition()));
                    }
                }
            }
        }
    }

    fn all_done(&self) -> bool {
        self.parts.values().all(|p| p.done)
    }
}

impl SourceReader for KafkaReader {
    fn poll(
        &mut self,
        out: &mut BatchBuilder,
        max: usize,
        deadline: Instant,
    ) -> Result<Poll, ConnectorError> {
        if let Some(every) = self.spec.discovery
            && self.last_discovery.elapsed() >= every
        {
            self.discover()?;
        }
        if self.spec.bounded && self.all_done() {
            return Ok(Poll::End);
        }
        let mut read = 0;
        while read < max {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            let message = match self.consumer.poll(wait) {
                None => continue,
                Some(Ok(m)) => m,
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    self.check_ends();
                    if self.all_done() {
                        break;
                    }
                    continue;
                }
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                    let at: Vec<String> = self
                        .parts
                        .iter()
                        .map(|((t, p), part)| format!("{t}/{p}@{}", part.next))
                        .collect();
                    return Err(remote(
                        NAME,
                        format!(
                            "an offset to read is out of range at {} (positions {}): records \
                             were deleted (retention) or the topic was recreated",
                            self.spec.conn.servers,
                            at.join(", ")
                        ),
                    ));
                }
                Some(Err(e)) => {
                    // The client reconnects by itself; say what happens.
                    tracing::warn!(servers = %self.spec.conn.servers, error = %e, "kafka source");
                    continue;
                }
            };
            let key = (message.topic().to_owned(), message.partition());
            let Some(part) = self.parts.get_mut(&key) else { continue };
            let offset = message.offset();
            if part.done || part.end.is_some_and(|e| offset >= e) || offset < part.next {
                continue;
            }
            let (k, mut v) =
                (message.key().unwrap_or_default(), message.payload().unwrap_or_default());
            if self.spec.headers_in_value {
                match message.headers() {
                    Some(h) => envelope::encode(
                        &mut self.value,
                        v,
                        (0..h.count()).map(|i| {
                            let h = h.get(i);
                            (h.key, h.value.unwrap_or_default())
                        }),
                    ),
                    None => envelope::encode(&mut self.value, v, std::iter::empty()),
                }
                v = &self.value;
            }
            if k.len() + v.len() > self.spec.max_record_bytes {
                return Err(remote(
                    NAME,
                    format!(
                        "record at {}/{}@{offset} has {} bytes, over the limit of {} bytes \
                         (--max-record-bytes)",
                        key.0,
                        key.1,
                        k.len() + v.len(),
                        self.spec.max_record_bytes
                    ),
                ));
            }
            let ts = message.timestamp().to_millis();
            out.push(ts.unwrap_or(NO_TIMESTAMP), k, v);
            read += 1;
            part.next = offset + 1;
            if let Some(w) = &mut self.watermarks {
                w.on_record(&key, ts, now);
            }
            if part.end.is_some_and(|e| part.next >= e) {
                part.done = true;
                if let Some(w) = &mut self.watermarks {
                    w.remove(&key);
                }
                if self.all_done() {
                    break;
                }
            }
        }
        if self.spec.bounded && self.all_done() && read == 0 {
            return Ok(Poll::End);
        }
        Ok(Poll::More)
    }

    fn position(&self) -> SourcePosition {
        let partitions: Vec<KafkaOffset> = self
            .parts
            .iter()
            .map(|((topic, partition), p)| KafkaOffset {
                topic: topic.clone(),
                partition: *partition,
                next: p.next,
                end: p.end,
            })
            .collect();
        if self.spec.commit_offsets && !partitions.is_empty() {
            // For monitoring only (lag): flinkw restores from its checkpoints.
            let mut tpl = TopicPartitionList::new();
            for o in &partitions {
                let _ = tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.next));
            }
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(error = %e, "cannot commit offsets to Kafka");
            }
        }
        SourcePosition::Kafka { partitions }
    }

    fn split_watermarks(
        &mut self,
        strategy: WatermarkStrategy,
        idle_timeout: Option<Duration>,
    ) -> bool {
        let mut w = SplitWatermarks::new(strategy, idle_timeout);
        let now = Instant::now();
        for (k, part) in &self.parts {
            if !part.done {
                w.add(k.clone(), now);
            }
        }
        self.watermarks = Some(w);
        true
    }

    fn watermark(&mut self) -> i64 {
        self.watermarks.as_mut().map_or(crate::time::MAX_WATERMARK, |w| w.current(Instant::now()))
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        match position {
            SourcePosition::Kafka { partitions } => self.reassign(partitions),
            SourcePosition::Rescaled { positions } => {
                let mut all = Vec::new();
                for p in positions {
                    match p {
                        SourcePosition::Kafka { partitions } => all.extend(partitions.clone()),
                        other => return Err(wrong_position(NAME, other)),
                    }
                }
                self.reassign(&all)
            }
            other => Err(wrong_position(NAME, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_topics_start_and_bounds() {
        let s = KafkaSourceSpec::new(
            &opts(&[
                ("bootstrap-servers", "127.0.0.1:9"),
                ("topic", "a, b"),
                ("start", "timestamp:1700000000000"),
                ("bounded", "latest"),
            ]),
            1 << 20,
        )
        .unwrap();
        assert!(matches!(&s.topics, TopicSelection::Names(n) if n == &["a", "b"]));
        assert_eq!(s.start, StartFrom::Timestamp(1_700_000_000_000));
        assert!(s.bounded && s.discovery.is_none());
        let p = KafkaSourceSpec::new(
            &opts(&[("bootstrap-servers", "x:1"), ("topic-pattern", "orders-.*")]),
            1,
        )
        .unwrap();
        assert!(p.topics.matches("orders-eu") && !p.topics.matches("my-orders-eu"));
    }

    #[test]
    fn refuses_bad_options() {
        let e = |pairs: &[(&str, &str)]| {
            let mut o = opts(pairs);
            o.insert("bootstrap-servers".into(), "x:1".into());
            KafkaSourceSpec::new(&o, 1).unwrap_err().to_string()
        };
        assert!(e(&[]).contains("missing option `topic`"));
        assert!(e(&[("topic", "a"), ("start", "yesterday")]).contains("expected earliest"));
        assert!(e(&[("topic", "a"), ("start", "group-offsets")]).contains("needs the option"));
        assert!(e(&[("topic-pattern", "(")]).contains("topic-pattern"));
    }
}
