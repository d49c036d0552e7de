//! Sinks: stdout, file and blackhole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use flinkw_batch::Batch;

use super::{ConnectorError, SinkWriter, check_options};
use crate::graph::Connector;

/// A checked sink, shared by its subtasks.
#[derive(Clone)]
pub enum SinkSpec {
    /// Lines on standard output.
    Stdout,
    /// Lines in one file, shared by all subtasks.
    File {
        /// The file.
        path: PathBuf,
        /// The open file.
        file: Arc<Mutex<BufWriter<File>>>,
    },
    /// Nothing, after reading every byte.
    Blackhole,
}

impl std::fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkSpec::Stdout => f.write_str("stdout"),
            SinkSpec::File { path, .. } => write!(f, "file {}", path.display()),
            SinkSpec::Blackhole => f.write_str("blackhole"),
        }
    }
}

impl SinkSpec {
    /// Checks a sink connector and opens what it writes to.
    pub fn new(c: &Connector) -> Result<Self, ConnectorError> {
        let none: &[&str] = &[];
        match c.kind.as_str() {
            "stdout" => check_options("stdout sink", &c.options, none).map(|_| SinkSpec::Stdout),
            "blackhole" => {
                check_options("blackhole sink", &c.options, none).map(|_| SinkSpec::Blackhole)
            }
            "file" => Self::file(&c.options),
            other => Err(ConnectorError::UnknownKind {
                role: "sink",
                kind: other.to_owned(),
                known: "stdout, file, blackhole",
            }),
        }
    }

    fn file(options: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        check_options("file sink", options, &["path"])?;
        let path = PathBuf::from(options.get("path").ok_or(ConnectorError::MissingOption {
            connector: "file sink".into(),
            option: "path",
        })?);
        let file = File::create(&path)
            .map_err(|source| ConnectorError::Io { path: path.display().to_string(), source })?;
        Ok(SinkSpec::File { path, file: Arc::new(Mutex::new(BufWriter::new(file))) })
    }

    /// Opens one subtask's writer.
    pub fn open(&self) -> Box<dyn SinkWriter> {
        match self {
            SinkSpec::Stdout => Box::new(LineWriter { out: Out::Stdout, buf: Vec::new() }),
            SinkSpec::File { path, file } => {
                Box::new(LineWriter { out: Out::File(path.clone(), file.clone()), buf: Vec::new() })
            }
            SinkSpec::Blackhole => Box::new(Blackhole { checksum: 0 }),
        }
    }
}

enum Out {
    Stdout,
    File(PathBuf, Arc<Mutex<BufWriter<File>>>),
}

/// Writes each record's value as a line; a batch is written in one piece so
/// lines of different subtasks never interleave.
struct LineWriter {
    out: Out,
    buf: Vec<u8>,
}

impl LineWriter {
    fn io(&self, source: std::io::Error) -> ConnectorError {
        let path = match &self.out {
            Out::Stdout => "stdout".to_owned(),
            Out::File(p, _) => p.display().to_string(),
        };
        ConnectorError::Io { path, source }
    }
}

impl SinkWriter for LineWriter {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), ConnectorError> {
        self.buf.clear();
        for r in batch.iter() {
            self.buf.extend_from_slice(r.value);
            self.buf.push(b'\n');
        }
        let result = match &self.out {
            Out::Stdout => std::io::stdout().lock().write_all(&self.buf),
            Out::File(_, f) => f.lock().unwrap_or_else(|p| p.into_inner()).write_all(&self.buf),
        };
        result.map_err(|e| self.io(e))
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        let result = match &self.out {
            Out::Stdout => std::io::stdout().lock().flush(),
            Out::File(_, f) => f.lock().unwrap_or_else(|p| p.into_inner()).flush(),
        };
        result.map_err(|e| self.io(e))
    }
}

/// Reads every byte so the work before it cannot be optimised away.
struct Blackhole {
    checksum: u64,
}

impl SinkWriter for Blackhole {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), ConnectorError> {
        for r in batch.iter() {
            for b in r.key.iter().chain(r.value) {
                self.checksum = self.checksum.wrapping_mul(31).wrapping_add(*b as u64);
            }
        }
        std::hint::black_box(self.checksum);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}
