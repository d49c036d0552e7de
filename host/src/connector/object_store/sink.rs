//! The rolling, exactly-once object-store sink.
//!
//! Each subtask fills one part in memory and rolls it — when it reaches
//! `rolling.max-bytes`, when it has been open `rolling.interval-ms`, and
//! always at a checkpoint barrier — by uploading it as a **staged** object
//! `<prefix>/.pending/part-<subtask>-<n><suffix>` (hidden: readers and the
//! object-store source skip `.`-names). When the checkpoint that covers it
//! completes, the staged object is copied to its visible name
//! `<prefix>/part-<subtask>-<n><suffix>` (one atomic object write) and the
//! staged one deleted. The checkpoint keeps the names waiting for that and
//! the next part number, so after a crash:
//!
//! - parts of the restored checkpoint are published (again: a copy of the
//!   same bytes to the same name changes nothing);
//! - staged parts written after it are deleted, and visible parts of this
//!   subtask numbered from the restored next number on (published by a
//!   newer checkpoint that the restore fell back from) are deleted too;
//! - numbering continues at the restored next number, so the replayed
//!   output gets the same names: a restart never leaves a duplicate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flinkw_batch::Batch;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::format::{Format, LineEncoder};
use super::{check, format, open_store, remote};
use crate::connector::{ConnectorError, SinkWriter, parse_option};
use crate::objstore::{StoreLocation, block_on};

const NAME: &str = "object-store sink";

/// Where staged parts wait, under the sink's prefix.
const STAGING: &str = ".pending";

/// A checked object-store sink.
#[derive(Debug, Clone)]
pub struct ObjectSinkSpec {
    /// Where the parts go.
    pub location: StoreLocation,
    /// How records become lines.
    pub format: Format,
    /// The part name prefix (`part`).
    pub part_prefix: String,
    /// Roll a part at this size, in bytes.
    pub max_bytes: usize,
    /// Roll a part open this long (none: only by size and at checkpoints).
    pub interval: Option<Duration>,
}

impl ObjectSinkSpec {
    /// Checks the options and opens the store.
    pub fn new(options: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        check(
            NAME,
            options,
            &[
                "url",
                "format",
                "csv.delimiter",
                "csv.header",
                "csv.columns",
                "part-prefix",
                "rolling.max-bytes",
                "rolling.interval-ms",
            ],
        )?;
        let format = format(NAME, options, "jsonl")?;
        if format == Format::Parquet {
            return Err(ConnectorError::BadOption {
                connector: NAME.into(),
                option: "format".into(),
                value: "parquet".into(),
                reason: "the sink writes jsonl, csv or text".into(),
            });
        }
        let max_bytes: usize = parse_option(NAME, options, "rolling.max-bytes", 64 << 20)?;
        if max_bytes == 0 || max_bytes > 1 << 30 {
            return Err(ConnectorError::BadOption {
                connector: NAME.into(),
                option: "rolling.max-bytes".into(),
                value: max_bytes.to_string(),
                reason: "expected 1 byte to 1 GiB (a part is kept in memory until it rolls)".into(),
            });
        }
        let interval_ms: u64 = parse_option(NAME, options, "rolling.interval-ms", 0)?;
        let part_prefix = options.get("part-prefix").cloned().unwrap_or_else(|| "part".into());
        if part_prefix.is_empty()
            || part_prefix.contains('/')
            || part_prefix.starts_with(['.', '_'])
        {
            return Err(ConnectorError::BadOption {
                connector: NAME.into(),
                option: "part-prefix".into(),
                value: part_prefix,
                reason: "expected a plain name (no `/`, not starting with `.` or `_`)".into(),
            });
        }
        Ok(ObjectSinkSpec {
            location: open_store(NAME, options)?,
            format,
            part_prefix,
            max_bytes,
            interval: (interval_ms > 0).then(|| Duration::from_millis(interval_ms)),
        })
    }

    /// Opens subtask `subtask`'s writer; numbering continues after the
    /// parts of this subtask already there (a restore sets it exactly).
    pub fn open(&self, subtask: u32) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        let mut w = ObjectSinkWriter {
            spec: self.clone(),
            subtask,
            next_seq: 0,
            encoder: LineEncoder::new(&self.format),
            buf: Vec::new(),
            opened: None,
            records: 0,
            sealed: Vec::new(),
            pending: Vec::new(),
        };
        let existing = w.own_objects()?;
        w.next_seq = existing.iter().map(|(_, seq, _)| seq + 1).max().unwrap_or(0);
        Ok(Box::new(w))
    }
}

/// What a checkpoint keeps for one sink subtask.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    subtask: u32,
    /// The number of the next part.
    next: u64,
    /// Staged parts (names) to publish when the checkpoint completes.
    pending: Vec<String>,
}

struct ObjectSinkWriter {
    spec: ObjectSinkSpec,
    subtask: u32,
    next_seq: u64,
    encoder: LineEncoder,
    /// The open part's bytes.
    buf: Vec<u8>,
    opened: Option<Instant>,
    /// Records written by this subtask, for messages.
    records: u64,
    /// Staged parts not in a checkpoint yet.
    sealed: Vec<String>,
    /// Staged parts and the checkpoint that holds them.
    pending: Vec<(u64, String)>,
}

impl ObjectSinkWriter {
    fn name(&self, seq: u64) -> String {
        format!("{}-{}-{seq}{}", self.spec.part_prefix, self.subtask, self.spec.format.suffix())
    }

    fn staged(&self, name: &str) -> Path {
        self.spec.location.child(&format!("{STAGING}/{name}"))
    }

    fn fail(&self, what: &str, path: &Path, e: impl std::fmt::Display) -> ConnectorError {
        remote(NAME, format!("cannot {what} {}: {e}", self.spec.location.display(path)))
    }

    /// The subtask number and part number of a part name of this sink.
    fn parse_name(&self, name: &str) -> Option<(u32, u64)> {
        let rest = name.strip_prefix(&self.spec.part_prefix)?.strip_prefix('-')?;
        let rest = rest.strip_suffix(self.spec.format.suffix())?;
        let (s, n) = rest.split_once('-')?;
        Some((s.parse().ok()?, n.parse().ok()?))
    }

    /// This subtask's parts: (path, number, staged?).
    fn own_objects(&self) -> Result<Vec<(Path, u64, bool)>, ConnectorError> {
        let store = self.spec.location.store.clone();
        let prefix = self.spec.location.prefix.clone();
        let listed = block_on(async move {
            let p = (!prefix.as_ref().is_empty()).then_some(prefix);
            store.list(p.as_ref()).collect::<Vec<_>>().await
        });
        let mut out = Vec::new();
        for m in listed {
            let m = m.map_err(|e| self.fail("list", &self.spec.location.prefix, e))?;
            let Some(parts) = m.location.prefix_match(&self.spec.location.prefix) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_owned()).collect();
            let (name, staged) = match parts.as_slice() {
                [name] => (name, false),
                [dir, name] if dir == STAGING => (name, true),
                _ => continue,
            };
            if let Some((s, n)) = self.parse_name(name)
                && s == self.subtask
            {
                out.push((m.location, n, staged));
            }
        }
        Ok(out)
    }

    /// Uploads the open part as a staged object.
    fn roll(&mut self) -> Result<(), ConnectorError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let name = self.name(self.next_seq);
        let path = self.staged(&name);
        let body = std::mem::take(&mut self.buf);
        block_on(self.spec.location.store.put(&path, body.into()))
            .map_err(|e| self.fail("write", &path, e))?;
        self.next_seq += 1;
        self.sealed.push(name);
        self.encoder = LineEncoder::new(&self.spec.format);
        self.opened = None;
        Ok(())
    }

    /// Makes a staged part visible.
    fn publish(&self, name: &str) -> Result<(), ConnectorError> {
        let store = &self.spec.location.store;
        let staged = self.staged(name);
        let visible = self.spec.location.child(name);
        match block_on(store.copy(&staged, &visible)) {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => {
                // Published before a crash, and its staged copy deleted.
                return match block_on(store.head(&visible)) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.fail("find the staged or the published part", &staged, e)),
                };
            }
            Err(e) => return Err(self.fail("publish", &staged, e)),
        }
        delete(&**store, &staged).map_err(|e| self.fail("delete", &staged, e))
    }
}

/// Deletes an object; one that is gone already is fine.
fn delete(store: &dyn ObjectStore, path: &Path) -> object_store::Result<()> {
    match block_on(store.delete(path)) {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

impl SinkWriter for ObjectSinkWriter {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), ConnectorError> {
        for r in batch.iter() {
            self.records += 1;
            let first = self.buf.is_empty();
            if first {
                self.opened = Some(Instant::now());
            }
            self.encoder.encode(r.value, first, &mut self.buf).map_err(|reason| {
                remote(
                    NAME,
                    format!("record {} of sink subtask {}: {reason}", self.records, self.subtask),
                )
            })?;
            if self.buf.len() >= self.spec.max_bytes {
                self.roll()?;
            }
        }
        if let (Some(every), Some(opened)) = (self.spec.interval, self.opened)
            && opened.elapsed() >= every
        {
            self.roll()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        // The input ended: everything written is final.
        self.roll()?;
        let sealed = std::mem::take(&mut self.sealed);
        self.pending.extend(sealed.into_iter().map(|n| (u64::MAX, n)));
        self.commit(u64::MAX)
    }

    fn pre_commit(&mut self, id: u64) -> Result<Vec<Vec<u8>>, ConnectorError> {
        self.roll()?;
        let sealed = std::mem::take(&mut self.sealed);
        self.pending.extend(sealed.into_iter().map(|n| (id, n)));
        let entry = Entry {
            subtask: self.subtask,
            next: self.next_seq,
            pending: self.pending.iter().map(|(_, n)| n.clone()).collect(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| remote(NAME, e))?;
        Ok(vec![bytes])
    }

    fn commit(&mut self, id: u64) -> Result<(), ConnectorError> {
        while let Some((c, name)) = self.pending.first() {
            if *c > id {
                break;
            }
            self.publish(&name.clone())?;
            self.pending.remove(0);
        }
        Ok(())
    }

    fn restore(&mut self, pending: &[Vec<u8>]) -> Result<(), ConnectorError> {
        let mut own_next = None;
        for bytes in pending {
            let entry: Entry = serde_json::from_slice(bytes).map_err(|e| {
                remote(NAME, format!("a checkpoint entry of sink subtask {}: {e}", self.subtask))
            })?;
            // The restored checkpoint completed: publish what it held.
            for name in &entry.pending {
                self.publish(name)?;
            }
            if entry.subtask == self.subtask {
                own_next = Some(entry.next);
            }
        }
        // Anything else of this subtask staged was written after it: abort.
        let objects = self.own_objects()?;
        for (path, seq, staged) in &objects {
            let newer = own_next.is_some_and(|next| *seq >= next);
            if *staged || newer {
                if !staged {
                    tracing::warn!(
                        "object-store sink: deleting {} (published after the checkpoint restored)",
                        self.spec.location.display(path)
                    );
                }
                delete(&*self.spec.location.store, path)
                    .map_err(|e| self.fail("delete", path, e))?;
            }
        }
        self.next_seq = match own_next {
            Some(next) => next,
            None => objects.iter().filter(|o| !o.2).map(|o| o.1 + 1).max().unwrap_or(0),
        };
        Ok(())
    }
}
