//! The bounded object-store source: the files under a URL that match a
//! glob, listed once when the job is checked, split over subtasks by their
//! sorted order (file `i` goes to subtask `i % parallelism`), read line by
//! line as a stream (Parquet: row by row, a row group at a time); each
//! subtask's position (what files are left, the byte offset and line in
//! the current one, or for Parquet the rows read) is kept in checkpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use flinkw_batch::{BatchBuilder, NO_TIMESTAMP};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use super::format::{Format, LineParser};
use super::glob::Glob;
use super::parquet_rows::{ParquetCursor, column, row_to_json};
use super::{check, format, open_store, remote};
use crate::checkpoint::{ObjectSplit, SourcePosition};
use crate::connector::{
    BadLinePolicy, ConnectorError, Poll, SourceDefaults, SourceReader, SourceStats, wrong_position,
};
use crate::objstore::{StoreLocation, block_on};

const NAME: &str = "object-store source";

/// A checked object-store source: the store, the files it reads and how.
#[derive(Debug, Clone)]
pub struct ObjectSourceSpec {
    /// Where the files are.
    pub location: StoreLocation,
    /// Which files under it are read.
    pub glob: Glob,
    /// How their lines become records.
    pub format: Format,
    /// The field holding each record's event time (ms since the epoch).
    pub timestamp_column: Option<String>,
    /// What to do with malformed lines.
    pub bad_lines: BadLinePolicy,
    /// Largest record, in bytes.
    pub max_record_bytes: usize,
    /// The matching files (paths in the store), sorted, listed at check time.
    pub files: Arc<Vec<String>>,
    /// Counters shared by the subtasks.
    pub stats: Arc<SourceStats>,
}

impl ObjectSourceSpec {
    /// Checks the options and lists the files (so a bad URL, a missing
    /// bucket or refused credentials fail before the job starts).
    pub fn new(
        options: &BTreeMap<String, String>,
        defaults: SourceDefaults,
    ) -> Result<Self, ConnectorError> {
        check(
            NAME,
            options,
            &[
                "url",
                "glob",
                "format",
                "csv.delimiter",
                "csv.header",
                "csv.columns",
                "timestamp-column",
                "bad-lines",
            ],
        )?;
        let bad = |option: &str, value: &str, reason: String| ConnectorError::BadOption {
            connector: NAME.into(),
            option: option.into(),
            value: value.into(),
            reason,
        };
        let pattern = options.get("glob").map(String::as_str).unwrap_or("**");
        let glob = Glob::new(pattern).map_err(|r| bad("glob", pattern, r))?;
        let format = format(NAME, options, "text")?;
        let timestamp_column = options.get("timestamp-column").cloned();
        if timestamp_column.is_some() && format == Format::Text {
            return Err(bad(
                "timestamp-column",
                options.get("timestamp-column").map(String::as_str).unwrap_or_default(),
                "text lines have no fields (use format csv or jsonl)".into(),
            ));
        }
        let bad_lines = match options.get("bad-lines").map(String::as_str) {
            None if defaults.skip_bad_lines => BadLinePolicy::Skip,
            None | Some("fail") => BadLinePolicy::Fail,
            Some("skip") => BadLinePolicy::Skip,
            Some(other) => return Err(bad("bad-lines", other, "expected fail or skip".into())),
        };
        let location = open_store(NAME, options)?;
        let files = list(&location, &glob)?;
        Ok(ObjectSourceSpec {
            location,
            glob,
            format,
            timestamp_column,
            bad_lines,
            max_record_bytes: defaults.max_record_bytes,
            files: Arc::new(files),
            stats: Arc::default(),
        })
    }

    /// Opens the reader of subtask `index` of `parallelism`.
    pub fn open(
        &self,
        index: u32,
        parallelism: u32,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let p = parallelism.max(1) as usize;
        let splits = self
            .files
            .iter()
            .enumerate()
            .filter(|(i, _)| i % p == index as usize)
            .map(|(_, f)| ObjectSplit { path: f.clone(), offset: 0, line: 0 })
            .collect();
        Ok(Box::new(ObjectReader {
            spec: self.clone(),
            index: index as usize,
            parallelism: p,
            splits,
            cursor: None,
            rows: None,
        }))
    }
}

/// The files under `location` whose path below it matches `glob`, sorted.
fn list(location: &StoreLocation, glob: &Glob) -> Result<Vec<String>, ConnectorError> {
    let store = location.store.clone();
    let prefix = location.prefix.clone();
    let metas = block_on(async move {
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        store.list(prefix.as_ref()).collect::<Vec<_>>().await
    });
    let mut files = Vec::new();
    for m in metas {
        let m = m.map_err(|e| remote(NAME, format!("cannot list {}: {e}", location.url)))?;
        let Some(parts) = m.location.prefix_match(&location.prefix) else { continue };
        let relative: Vec<String> = parts.map(|p| p.as_ref().to_owned()).collect();
        if glob.matches(&relative.join("/")) {
            files.push(m.location.to_string());
        }
    }
    if files.is_empty() {
        return Err(remote(
            NAME,
            format!("no file under {} matches the glob {:?}", location.url, glob.pattern()),
        ));
    }
    files.sort();
    Ok(files)
}

/// The file being read: a byte stream cut into lines.
struct Cursor {
    /// The file, for messages.
    name: String,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    buf: Vec<u8>,
    /// Where in `buf` the next line starts.
    start: usize,
    eof: bool,
    /// The byte offset of the next line in the file.
    offset: u64,
    /// Lines read.
    line: u64,
    parser: LineParser,
}

impl Cursor {
    /// The next line (without its newline) as a range of `buf`; `None` at
    /// the end of the file.
    fn next_line(&mut self, limit: usize) -> Result<Option<(usize, usize)>, ConnectorError> {
        loop {
            if let Some(n) = memchr(&self.buf[self.start..]) {
                let range = (self.start, self.start + n);
                self.start += n + 1;
                self.offset += n as u64 + 1;
                self.line += 1;
                return Ok(Some(range));
            }
            if self.eof {
                if self.start < self.buf.len() {
                    let range = (self.start, self.buf.len());
                    self.offset += (self.buf.len() - self.start) as u64;
                    self.start = self.buf.len();
                    self.line += 1;
                    return Ok(Some(range));
                }
                return Ok(None);
            }
            if self.buf.len() - self.start > limit {
                return Err(ConnectorError::Oversized {
                    path: self.name.clone(),
                    line: self.line + 1,
                    size: self.buf.len() - self.start,
                    limit,
                });
            }
            self.buf.drain(..self.start);
            self.start = 0;
            match block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Err(remote(NAME, format!("cannot read {}: {e}", self.name)));
                }
                None => self.eof = true,
            }
        }
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

struct ObjectReader {
    spec: ObjectSourceSpec,
    index: usize,
    parallelism: usize,
    /// Files left, in order; the first is the one `cursor` reads.
    splits: Vec<ObjectSplit>,
    cursor: Option<Cursor>,
    /// The Parquet file being read (format `parquet`).
    rows: Option<ParquetCursor>,
}

impl ObjectReader {
    /// Opens `splits[0]` at its offset.
    fn open_cursor(&self) -> Result<Cursor, ConnectorError> {
        let split = &self.splits[0];
        let store = self.spec.location.store.clone();
        let path = Path::from(split.path.as_str());
        let name = self.spec.location.display(&path);
        let fail = |e: object_store::Error| remote(NAME, format!("cannot read {name}: {e}"));
        let mut parser = LineParser::new(&self.spec.format, self.spec.timestamp_column.as_deref());
        let mut eof = false;
        if split.offset > 0 {
            let meta = block_on(store.head(&path)).map_err(fail)?;
            eof = split.offset >= meta.size;
            if parser.wants_header() {
                let header = read_header(&*store, &path, meta.size).map_err(fail)?;
                parser.set_header(&header).map_err(|reason| ConnectorError::BadLine {
                    path: name.clone(),
                    line: 1,
                    reason,
                })?;
            }
        }
        let stream = if eof {
            futures::stream::empty().boxed()
        } else {
            let options = GetOptions {
                range: (split.offset > 0).then_some(GetRange::Offset(split.offset)),
                ..GetOptions::default()
            };
            block_on(store.get_opts(&path, options)).map_err(fail)?.into_stream()
        };
        Ok(Cursor {
            name,
            stream,
            buf: Vec::new(),
            start: 0,
            eof,
            offset: split.offset,
            line: split.line,
            parser,
        })
    }

    /// Opens `splits[0]` as a Parquet file, at its row (`offset`).
    fn open_rows(&self) -> Result<ParquetCursor, ConnectorError> {
        let split = &self.splits[0];
        let store = self.spec.location.store.clone();
        let path = Path::from(split.path.as_str());
        let name = self.spec.location.display(&path);
        let meta = block_on(store.head(&path))
            .map_err(|e| remote(NAME, format!("cannot read {name}: {e}")))?;
        ParquetCursor::open(store, path, name, meta.size, split.offset)
            .map_err(|reason| remote(NAME, reason))
    }

    /// Reads up to `max` Parquet rows into `out`.
    fn poll_rows(
        &mut self,
        out: &mut BatchBuilder,
        max: usize,
        deadline: Instant,
    ) -> Result<Poll, ConnectorError> {
        let mut added = 0;
        while added < max {
            if self.rows.is_none() {
                if self.splits.is_empty() {
                    return Ok(Poll::End);
                }
                self.rows = Some(self.open_rows()?);
            }
            let Some(c) = self.rows.as_mut() else { continue };
            let Some(row) = c.next_row().map_err(|reason| remote(NAME, reason))? else {
                self.rows = None;
                self.splits.remove(0);
                continue;
            };
            let ts = match &self.spec.timestamp_column {
                None => Ok(NO_TIMESTAMP),
                Some(col) => super::format::timestamp(column(&row, col).as_ref(), col),
            };
            let bytes = row_to_json(&row);
            let err = |reason: String| ConnectorError::Remote {
                connector: NAME.into(),
                reason: format!("{}, {}: {reason}", c.name, c.place_of_last()),
            };
            if bytes.len() > self.spec.max_record_bytes {
                return Err(err(format!(
                    "row of {} bytes is over the limit of {} bytes (--max-record-bytes)",
                    bytes.len(),
                    self.spec.max_record_bytes
                )));
            }
            match ts {
                Ok(ts) => {
                    out.push(ts, b"", &bytes);
                    added += 1;
                }
                Err(reason) => {
                    let e = err(reason);
                    self.bad_line(e)?;
                }
            }
            if added % 256 == 0 && Instant::now() >= deadline {
                break;
            }
        }
        Ok(Poll::More)
    }

    fn bad_line(&self, err: ConnectorError) -> Result<(), ConnectorError> {
        match self.spec.bad_lines {
            BadLinePolicy::Fail => Err(err),
            BadLinePolicy::Skip => {
                self.spec.stats.skipped.fetch_add(1, Ordering::Relaxed);
                let mut first =
                    self.spec.stats.first_skipped.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| err.to_string());
                Ok(())
            }
        }
    }
}

/// The first line of a CSV file (read from its start, growing the range
/// until a newline turns up).
fn read_header(store: &dyn ObjectStore, path: &Path, size: u64) -> object_store::Result<String> {
    let mut len = 4096u64;
    loop {
        let end = len.min(size);
        let bytes = block_on(store.get_range(path, 0..end))?;
        if let Some(n) = memchr(&bytes) {
            return Ok(String::from_utf8_lossy(&bytes[..n]).into_owned());
        }
        if end == size {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        len *= 4;
    }
}

impl SourceReader for ObjectReader {
    fn poll(
        &mut self,
        out: &mut BatchBuilder,
        max: usize,
        deadline: Instant,
    ) -> Result<Poll, ConnectorError> {
        if self.spec.format == Format::Parquet {
            return self.poll_rows(out, max, deadline);
        }
        let mut added = 0;
        while added < max {
            if self.cursor.is_none() {
                if self.splits.is_empty() {
                    return Ok(Poll::End);
                }
                self.cursor = Some(self.open_cursor()?);
            }
            let Some(c) = self.cursor.as_mut() else { continue };
            let Some((a, b)) = c.next_line(self.spec.max_record_bytes)? else {
                self.cursor = None;
                self.splits.remove(0);
                continue;
            };
            if b - a > self.spec.max_record_bytes {
                return Err(ConnectorError::Oversized {
                    path: c.name.clone(),
                    line: c.line,
                    size: b - a,
                    limit: self.spec.max_record_bytes,
                });
            }
            let parsed = match std::str::from_utf8(&c.buf[a..b]) {
                Err(e) => Err(format!("not UTF-8: {e}")),
                Ok(text) if c.parser.wants_header() => {
                    c.parser.set_header(text.strip_suffix('\r').unwrap_or(text)).map(|()| None)
                }
                Ok(text) => c.parser.parse(text),
            };
            match parsed {
                Ok(Some((ts, value))) => {
                    out.push(ts, b"", &value);
                    added += 1;
                }
                Ok(None) => {}
                Err(reason) => {
                    let err =
                        ConnectorError::BadLine { path: c.name.clone(), line: c.line, reason };
                    self.bad_line(err)?;
                }
            }
            if added % 256 == 0 && Instant::now() >= deadline {
                break;
            }
        }
        Ok(Poll::More)
    }

    fn position(&self) -> SourcePosition {
        let mut splits = self.splits.clone();
        if let (Some(c), Some(first)) = (&self.cursor, splits.first_mut()) {
            first.offset = c.offset;
            first.line = c.line;
        }
        if let (Some(c), Some(first)) = (&self.rows, splits.first_mut()) {
            first.offset = c.row;
            first.line = c.row;
        }
        SourcePosition::Objects { splits }
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        self.cursor = None;
        self.rows = None;
        match position {
            SourcePosition::Objects { splits } => {
                self.splits = splits.clone();
                Ok(())
            }
            // Another parallelism: every old subtask's files left, merged
            // in path order, dealt out again.
            SourcePosition::Rescaled { positions } => {
                let mut all = Vec::new();
                for p in positions {
                    match p {
                        SourcePosition::Objects { splits } => all.extend(splits.iter().cloned()),
                        other => return Err(wrong_position(NAME, other)),
                    }
                }
                all.sort_by(|a, b| a.path.cmp(&b.path));
                self.splits = all
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| i % self.parallelism == self.index)
                    .map(|(_, s)| s)
                    .collect();
                Ok(())
            }
            other => Err(wrong_position(NAME, other)),
        }
    }
}
