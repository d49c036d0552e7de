//! Host-side connectors: sources that make batches and sinks that take them.
//!
//! A plan names connectors by kind with options. [`SourceSpec`] and
//! [`SinkSpec`] check those options once, before the job starts, so a typo
//! or a missing file is reported before any record moves; each subtask then
//! opens its own reader or writer.

mod datagen;
mod file;
mod indexed;
pub mod kafka;
pub mod nexmark;
pub mod object_store;
mod sink;
pub mod split_watermarks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flinkw_batch::{Batch, BatchBuilder};

pub use datagen::DatagenSpec;
pub use file::{BadLinePolicy, FileFormat, FileSourceSpec};
pub use sink::SinkSpec;

use crate::checkpoint::SourcePosition;
use crate::graph::Connector;
use crate::time::WatermarkStrategy;

/// Why a connector failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A kind the host does not know.
    #[error("unknown {role} kind `{kind}` (known: {known})")]
    UnknownKind {
        /// `source` or `sink`.
        role: &'static str,
        /// The kind asked for.
        kind: String,
        /// The kinds there are.
        known: &'static str,
    },
    /// An option the connector does not know.
    #[error("{connector}: unknown option `{option}` (known: {known})")]
    UnknownOption {
        /// The connector kind.
        connector: String,
        /// The option given.
        option: String,
        /// The options there are.
        known: String,
    },
    /// A required option is missing.
    #[error("{connector}: missing option `{option}`")]
    MissingOption {
        /// The connector kind.
        connector: String,
        /// The missing option.
        option: &'static str,
    },
    /// An option has a value the connector cannot use.
    #[error("{connector}: bad value {value:?} for option `{option}`: {reason}")]
    BadOption {
        /// The connector kind.
        connector: String,
        /// The option.
        option: String,
        /// The value given.
        value: String,
        /// Why it is bad.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line of input could not be parsed.
    #[error("{path}:{line}: {reason} (run with --skip-bad-lines to skip and count such lines)")]
    BadLine {
        /// The file.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// An external system (e.g. a Kafka broker) failed or refused.
    #[error("{connector}: {reason}")]
    Remote {
        /// The connector kind.
        connector: String,
        /// What went wrong, naming the address or position concerned.
        reason: String,
    },
    /// A record too large for the batch limits.
    #[error("{path}:{line}: record of {size} bytes is over the limit of {limit} bytes")]
    Oversized {
        /// The file.
        path: String,
        /// 1-based line number.
        line: u64,
        /// The record's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// What a poll of a source produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The source may have more records.
    More,
    /// The source is exhausted (a bounded source finished).
    End,
}

/// One subtask's reader of a source.
pub trait SourceReader: Send {
    /// Appends up to `max` records to `out`, returning by `deadline` at the
    /// latest (so a batch closes on time at low rates).
    fn poll(
        &mut self,
        out: &mut BatchBuilder,
        max: usize,
        deadline: Instant,
    ) -> Result<Poll, ConnectorError>;

    /// How far it has read, for a checkpoint.
    fn position(&self) -> SourcePosition;

    /// Continues from a position taken by [`SourceReader::position`].
    fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError>;

    /// Asked when watermarks are set on the source itself: keep a watermark
    /// per split (e.g. Kafka partition) with `strategy`, as Flink's
    /// per-split watermarks; a split without records for `idle_timeout`
    /// does not hold the others back until it has records again. Returns
    /// whether the reader does (by default not: the runtime then derives
    /// one watermark from all the subtask's records).
    fn split_watermarks(
        &mut self,
        strategy: WatermarkStrategy,
        idle_timeout: Option<Duration>,
    ) -> bool {
        let _ = (strategy, idle_timeout);
        false
    }

    /// The least watermark of the splits that are not idle (never lower
    /// than before); asked after each poll once
    /// [`SourceReader::split_watermarks`] returned true.
    fn watermark(&mut self) -> i64 {
        crate::time::MAX_WATERMARK
    }
}

/// One subtask's writer to a sink.
///
/// A transactional sink (two-phase commit) makes output visible only when a
/// checkpoint completes: `pre_commit` at the barrier, `commit` once the
/// checkpoint is complete, `restore` to finish or abort what an earlier run
/// left behind. Plain sinks keep the default no-op methods.
pub trait SinkWriter: Send {
    /// Writes every record of `batch`.
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), ConnectorError>;
    /// Flushes buffered output and makes all of it final; called when the
    /// input ends.
    fn flush(&mut self) -> Result<(), ConnectorError>;
    /// Seals what was written since the last barrier as part of checkpoint
    /// `id`; returns what the checkpoint must remember to commit it later
    /// (opaque entries: file names, or a write-ahead sink's records). After
    /// a change of parallelism, the entries of several old subtasks may
    /// reach one writer's `restore`.
    fn pre_commit(&mut self, id: u64) -> Result<Vec<Vec<u8>>, ConnectorError> {
        let _ = id;
        Ok(Vec::new())
    }
    /// Checkpoint `id` is complete: make everything sealed up to it visible.
    fn commit(&mut self, id: u64) -> Result<(), ConnectorError> {
        let _ = id;
        Ok(())
    }
    /// After a restore from a checkpoint whose snapshot held `pending`:
    /// commit those, drop anything written after the checkpoint.
    fn restore(&mut self, pending: &[Vec<u8>]) -> Result<(), ConnectorError> {
        let _ = pending;
        Ok(())
    }
}

/// Counters a source keeps while it runs, shared by its subtasks.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Lines skipped as malformed.
    pub skipped: std::sync::atomic::AtomicU64,
    /// The first skipped line's error.
    pub first_skipped: std::sync::Mutex<Option<String>>,
}

/// A checked source, ready to open per subtask.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// Lines of a file.
    File(FileSourceSpec),
    /// Generated records.
    Datagen(DatagenSpec),
    /// Records of Kafka topics.
    Kafka(kafka::KafkaSourceSpec),
    /// Nexmark events.
    Nexmark(nexmark::NexmarkSpec),
    /// Files in object storage or a local directory.
    Objects(object_store::ObjectSourceSpec),
}

/// Runtime settings that apply to sources.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceDefaults {
    /// Skip malformed lines instead of failing, unless a source says otherwise.
    pub skip_bad_lines: bool,
    /// Largest record a source may produce, in bytes.
    pub max_record_bytes: usize,
}

impl SourceSpec {
    /// Checks a source connector's kind and options.
    pub fn new(c: &Connector, defaults: SourceDefaults) -> Result<Self, ConnectorError> {
        match c.kind.as_str() {
            "file" => FileSourceSpec::new(&c.options, defaults).map(SourceSpec::File),
            "datagen" => DatagenSpec::new(&c.options).map(SourceSpec::Datagen),
            "kafka" => kafka::KafkaSourceSpec::new(&c.options, defaults.max_record_bytes)
                .map(SourceSpec::Kafka),
            "nexmark" => nexmark::NexmarkSpec::new(&c.options).map(SourceSpec::Nexmark),
            "object-store" => {
                object_store::ObjectSourceSpec::new(&c.options, defaults).map(SourceSpec::Objects)
            }
            other => Err(ConnectorError::UnknownKind {
                role: "source",
                kind: other.to_owned(),
                known: "file, datagen, kafka, nexmark, object-store",
            }),
        }
    }

    /// Opens the reader of subtask `index` of `parallelism`.
    pub fn open(
        &self,
        index: u32,
        parallelism: u32,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        match self {
            SourceSpec::File(f) => f.open(index, parallelism),
            SourceSpec::Datagen(d) => Ok(d.open(index, parallelism)),
            SourceSpec::Kafka(k) => k.open(index, parallelism),
            SourceSpec::Nexmark(n) => Ok(n.open(index, parallelism)),
            SourceSpec::Objects(o) => o.open(index, parallelism),
        }
    }

    /// The source's counters.
    pub fn stats(&self) -> Option<Arc<SourceStats>> {
        match self {
            SourceSpec::File(f) => Some(f.stats.clone()),
            SourceSpec::Objects(o) => Some(o.stats.clone()),
            SourceSpec::Datagen(_) | SourceSpec::Kafka(_) | SourceSpec::Nexmark(_) => None,
        }
    }
}

/// The error for a checkpointed position of another kind of source.
pub(crate) fn wrong_position(connector: &str, position: &SourcePosition) -> ConnectorError {
    ConnectorError::BadOption {
        connector: connector.to_owned(),
        option: "checkpoint".into(),
        value: format!("{position:?}"),
        reason: "the checkpoint holds another kind of source".into(),
    }
}

/// The progress of every old subtask in a rescaled position, each read by
/// `progress` from one old position (none: a position of another kind).
pub(crate) fn old_progress(
    connector: &str,
    positions: &[SourcePosition],
    progress: impl Fn(&SourcePosition) -> Option<u64>,
) -> Result<Vec<u64>, ConnectorError> {
    positions.iter().map(|p| progress(p).ok_or_else(|| wrong_position(connector, p))).collect()
}

/// Checks that `options` only has keys from `known`.
pub(crate) fn check_options(
    connector: &str,
    options: &BTreeMap<String, String>,
    known: &[&str],
) -> Result<(), ConnectorError> {
    match options.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ConnectorError::UnknownOption {
            connector: connector.to_owned(),
            option: k.clone(),
            known: known.join(", "),
        }),
        None => Ok(()),
    }
}

/// Parses option `key` as a number, with a default.
pub(crate) fn parse_option<T: std::str::FromStr>(
    connector: &str,
    options: &BTreeMap<String, String>,
    key: &str,
    default: T,
) -> Result<T, ConnectorError>
where
    T::Err: std::fmt::Display,
{
    match options.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConnectorError::BadOption {
            connector: connector.to_owned(),
            option: key.to_owned(),
            value: v.clone(),
            reason: e.to_string(),
        }),
    }
}
