//! The file source: text lines, CSV rows or JSON lines, split over subtasks
//! by line number.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use flinkw_batch::{BatchBuilder, NO_TIMESTAMP};

use super::{
    ConnectorError, Poll, SourceDefaults, SourceReader, SourceStats, check_options, old_progress,
    wrong_position,
};
use crate::checkpoint::SourcePosition;

/// How a file's lines become records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Each line is a record, as UTF-8 text.
    Text,
    /// Each row after the header is a record: a JSON object of its fields.
    Csv,
    /// Each line is a JSON value.
    JsonLines,
}

/// What to do with a line that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadLinePolicy {
    /// Fail the job, naming the line.
    Fail,
    /// Skip it and count it.
    Skip,
}

/// A checked file source.
#[derive(Debug, Clone)]
pub struct FileSourceSpec {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: FileFormat,
    /// What to do with malformed lines.
    pub bad_lines: BadLinePolicy,
    /// Largest record, in bytes.
    pub max_record_bytes: usize,
    /// Counters shared by the subtasks.
    pub stats: Arc<SourceStats>,
}

impl FileSourceSpec {
    pub(super) fn new(
        options: &BTreeMap<String, String>,
        defaults: SourceDefaults,
    ) -> Result<Self, ConnectorError> {
        check_options("file source", options, &["path", "format", "bad-lines"])?;
        let bad = |option: &str, value: &str, reason: &str| ConnectorError::BadOption {
            connector: "file source".into(),
            option: option.into(),
            value: value.into(),
            reason: reason.into(),
        };
        let path = options.get("path").ok_or(ConnectorError::MissingOption {
            connector: "file source".into(),
            option: "path",
        })?;
        let format = match options.get("format").map(String::as_str).unwrap_or("text") {
            "text" => FileFormat::Text,
            "csv" => FileFormat::Csv,
            "jsonl" | "json" => FileFormat::JsonLines,
            other => return Err(bad("format", other, "expected text, csv or jsonl")),
        };
        let bad_lines = match options.get("bad-lines").map(String::as_str) {
            None if defaults.skip_bad_lines => BadLinePolicy::Skip,
            None | Some("fail") => BadLinePolicy::Fail,
            Some("skip") => BadLinePolicy::Skip,
            Some(other) => return Err(bad("bad-lines", other, "expected fail or skip")),
        };
        let path = PathBuf::from(path);
        // Fail before the job starts if the file cannot be opened.
        File::open(&path)
            .map_err(|source| ConnectorError::Io { path: path.display().to_string(), source })?;
        Ok(FileSourceSpec {
            path,
            format,
            bad_lines,
            max_record_bytes: defaults.max_record_bytes,
            stats: Arc::default(),
        })
    }

    pub(super) fn open(
        &self,
        index: u32,
        parallelism: u32,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let file = File::open(&self.path).map_err(|source| self.io(source))?;
        Ok(Box::new(FileReader {
            spec: self.clone(),
            lines: BufReader::with_capacity(1 << 16, file),
            line: 0,
            index: index as u64,
            parallelism: parallelism as u64,
            header: None,
            buf: String::new(),
            done: None,
        }))
    }

    fn io(&self, source: std::io::Error) -> ConnectorError {
        ConnectorError::Io { path: self.path.display().to_string(), source }
    }
}

struct FileReader {
    spec: FileSourceSpec,
    lines: BufReader<File>,
    /// 1-based number of the last line read.
    line: u64,
    index: u64,
    parallelism: u64,
    header: Option<Vec<String>>,
    buf: String,
    /// After a change of parallelism: lines read by each old subtask; a
    /// data line its old owner had read is skipped.
    done: Option<Vec<u64>>,
}

impl FileReader {
    /// Turns line `self.buf` into a record value, or says why it is bad.
    fn parse(&mut self) -> Result<Option<Vec<u8>>, String> {
        let text = self.buf.trim_end_matches(['\n', '\r']);
        match self.spec.format {
            FileFormat::Text => Ok(Some(text.as_bytes().to_vec())),
            FileFormat::JsonLines => {
                if text.trim().is_empty() {
                    return Ok(None);
                }
                serde_json::from_str::<serde::de::IgnoredAny>(text)
                    .map_err(|e| format!("not valid JSON: {e}"))?;
                Ok(Some(text.as_bytes().to_vec()))
            }
            FileFormat::Csv => {
                if text.trim().is_empty() {
                    return Ok(None);
                }
                let fields = parse_csv_line(text)?;
                let Some(header) = &self.header else {
                    return Ok(None);
                };
                if fields.len() != header.len() {
                    return Err(format!(
                        "expected {} fields (as in the header), found {}",
                        header.len(),
                        fields.len()
                    ));
                }
                let obj: serde_json::Map<String, serde_json::Value> =
                    header.iter().cloned().zip(fields.into_iter().map(csv_value)).collect();
                serde_json::to_vec(&obj).map(Some).map_err(|e| e.to_string())
            }
        }
    }
}

impl SourceReader for FileReader {
    fn position(&self) -> SourcePosition {
        SourcePosition::File { lines: self.line }
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        if let SourcePosition::Rescaled { positions } = position {
            let lines = |p: &SourcePosition| match p {
                SourcePosition::File { lines } => Some(*lines),
                _ => None,
            };
            self.done = Some(old_progress("file source", positions, lines)?);
            return Ok(());
        }
        let SourcePosition::File { lines } = position else {
            return Err(wrong_position("file source", position));
        };
        while self.line < *lines {
            self.buf.clear();
            let n = self.lines.read_line(&mut self.buf).map_err(|e| self.spec.io(e))?;
            if n == 0 {
                break;
            }
            self.line += 1;
            if self.line == 1 && self.spec.format == FileFormat::Csv {
                let text = self.buf.trim_end_matches(['\n', '\r']);
                self.header = parse_csv_line(text).ok();
            }
        }
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut BatchBuilder,
        max: usize,
        deadline: Instant,
    ) -> Result<Poll, ConnectorError> {
        let mut added = 0;
        while added < max {
            self.buf.clear();
            let n = self.lines.read_line(&mut self.buf).map_err(|e| self.spec.io(e))?;
            if n == 0 {
                return Ok(Poll::End);
            }
            self.line += 1;
            if self.spec.format == FileFormat::Csv && self.header.is_none() {
                let text = self.buf.trim_end_matches(['\n', '\r']);
                let header = parse_csv_line(text).map_err(|reason| ConnectorError::BadLine {
                    path: self.spec.path.display().to_string(),
                    line: self.line,
                    reason: format!("bad CSV header: {reason}"),
                })?;
                self.header = Some(header);
                continue;
            }
            // Every subtask reads the file; each keeps its share of lines.
            let data_line = self.line - u64::from(self.spec.format == FileFormat::Csv);
            if (data_line - 1) % self.parallelism != self.index {
                continue;
            }
            if let Some(done) = &self.done
                && self.line <= done[((data_line - 1) % done.len() as u64) as usize]
            {
                continue;
            }
            if self.buf.len() > self.spec.max_record_bytes {
                return Err(ConnectorError::Oversized {
                    path: self.spec.path.display().to_string(),
                    line: self.line,
                    size: self.buf.len(),
                    limit: self.spec.max_record_bytes,
                });
            }
            match self.parse() {
                Ok(Some(value)) => {
                    out.push(NO_TIMESTAMP, b"", &value);
                    added += 1;
                }
                Ok(None) => {}
                Err(reason) => {
                    let err = ConnectorError::BadLine {
                        path: self.spec.path.display().to_string(),
                        line: self.line,
                        reason,
                    };
                    match self.spec.bad_lines {
                        BadLinePolicy::Fail => return Err(err),
                        BadLinePolicy::Skip => {
                            self.spec.stats.skipped.fetch_add(1, Ordering::Relaxed);
                            let mut first = self
                                .spec
                                .stats
                                .first_skipped
                                .lock()
                                .unwrap_or_else(|p| p.into_inner());
                            first.get_or_insert_with(|| err.to_string());
                        }
                    }
                }
            }
            if added % 256 == 0 && Instant::now() >= deadline {
                break;
            }
        }
        Ok(Poll::More)
    }
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
fn parse_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => {}
        Ok(false) => return Ok(Vec::new()),
        Err(e) => return Err(format!("not valid CSV: {e}")),
    }
    if !line.matches('"').count().is_multiple_of(2) {
        return Err("not valid CSV: unterminated quote".to_owned());
    }
    Ok(record.iter().map(str::to_owned).collect())
}

/// A CSV field as JSON: integers and floats as numbers, the rest as strings.
fn csv_value(field: String) -> serde_json::Value {
    if let Ok(i) = field.parse::<i64>() {
        return i.into();
    }
    if let Ok(f) = field.parse::<f64>()
        && f.is_finite()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return n.into();
    }
    field.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_and_types() {
        assert_eq!(parse_csv_line(r#"a,"b,c",3"#).unwrap(), vec!["a", "b,c", "3"]);
        assert!(parse_csv_line(r#"a,"b"#).is_err());
        assert_eq!(csv_value("12".into()), serde_json::json!(12));
        assert_eq!(csv_value("1.5".into()), serde_json::json!(1.5));
        assert_eq!(csv_value("x".into()), serde_json::json!("x"));
        assert_eq!(csv_value("NaN".into()), serde_json::json!("NaN"));
    }
}
