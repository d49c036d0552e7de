//! Sinks: stdout, file, part files and blackhole (Kafka: see `kafka`).

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
    /// Part files in a directory, made visible only when a checkpoint
    /// completes (or the input ends): exactly-once output.
    PartFiles {
        /// The directory.
        dir: PathBuf,
    },
    /// A Kafka topic.
    Kafka(Box<super::kafka::KafkaSinkSpec>),
    /// Rolling part files in object storage, exactly once.
    Objects(Box<super::object_store::ObjectSinkSpec>),
}

impl std::fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkSpec::Stdout => f.write_str("stdout"),
            SinkSpec::File { path, .. } => write!(f, "file {}", path.display()),
            SinkSpec::Blackhole => f.write_str("blackhole"),
            SinkSpec::PartFiles { dir } => write!(f, "part files in {}", dir.display()),
            SinkSpec::Kafka(k) => write!(f, "{k:?}"),
            SinkSpec::Objects(o) => write!(f, "object-store sink {}", o.location.url),
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
            "part-files" => {
                check_options("part-files sink", &c.options, &["path"])?;
                let dir =
                    PathBuf::from(c.options.get("path").ok_or(ConnectorError::MissingOption {
                        connector: "part-files sink".into(),
                        option: "path",
                    })?);
                std::fs::create_dir_all(&dir).map_err(|source| ConnectorError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
                Ok(SinkSpec::PartFiles { dir })
            }
            "kafka" => {
                super::kafka::KafkaSinkSpec::new(&c.options).map(|k| SinkSpec::Kafka(Box::new(k)))
            }
            "object-store" => super::object_store::ObjectSinkSpec::new(&c.options)
                .map(|o| SinkSpec::Objects(Box::new(o))),
            other => Err(ConnectorError::UnknownKind {
                role: "sink",
                kind: other.to_owned(),
                known: "stdout, file, part-files, blackhole, kafka, object-store",
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

    /// Opens subtask `subtask`'s writer.
    pub fn open(&self, subtask: u32) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        Ok(match self {
            SinkSpec::Stdout => Box::new(LineWriter { out: Out::Stdout, buf: Vec::new() }),
            SinkSpec::File { path, file } => {
                Box::new(LineWriter { out: Out::File(path.clone(), file.clone()), buf: Vec::new() })
            }
            SinkSpec::Blackhole => Box::new(Blackhole { checksum: 0 }),
            SinkSpec::PartFiles { dir } => Box::new(PartFileWriter::new(dir, subtask)?),
            SinkSpec::Kafka(k) => return k.open(subtask),
            SinkSpec::Objects(o) => return o.open(subtask),
        })
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

/// A two-phase-commit file sink: each subtask writes a hidden in-progress
/// part file; at a barrier it is sealed (`.pending`), and when the
/// checkpoint completes it is renamed to its visible name `part-S-N`.
/// Readers of the directory see only committed output, so a job that fails
/// and restarts from its last checkpoint writes every record exactly once.
struct PartFileWriter {
    dir: PathBuf,
    subtask: u32,
    next_seq: u64,
    current: Option<(PathBuf, BufWriter<File>)>,
    /// Sealed files and the checkpoint that sealed them.
    pending: Vec<(u64, String)>,
}

impl PartFileWriter {
    fn new(dir: &std::path::Path, subtask: u32) -> Result<Self, ConnectorError> {
        let mut w = PartFileWriter {
            dir: dir.to_path_buf(),
            subtask,
            next_seq: 0,
            current: None,
            pending: Vec::new(),
        };
        // Continue numbering after every part file of this subtask.
        for name in w.own_files()? {
            if let Some(seq) = Self::seq_of(&name) {
                w.next_seq = w.next_seq.max(seq + 1);
            }
        }
        Ok(w)
    }

    fn io(&self, source: std::io::Error) -> ConnectorError {
        ConnectorError::Io { path: self.dir.display().to_string(), source }
    }

    fn prefix(&self) -> String {
        format!("part-{}-", self.subtask)
    }

    /// Names of this subtask's files, visible or not.
    fn own_files(&self) -> Result<Vec<String>, ConnectorError> {
        let prefix = self.prefix();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| self.io(e))?;
        Ok(entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.trim_start_matches('.').starts_with(&prefix))
            .collect())
    }

    fn seq_of(name: &str) -> Option<u64> {
        let rest = name.trim_start_matches('.').split('-').nth(2)?;
        rest.split('.').next()?.parse().ok()
    }

    fn seal(&mut self, id: u64) -> Result<(), ConnectorError> {
        let Some((path, mut file)) = self.current.take() else { return Ok(()) };
        file.flush().map_err(|e| self.io(e))?;
        file.get_ref().sync_all().map_err(|e| self.io(e))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let pending = name.replace(".inprogress", ".pending");
        std::fs::rename(&path, self.dir.join(&pending)).map_err(|e| self.io(e))?;
        self.pending.push((id, pending));
        Ok(())
    }

    fn publish(&self, pending: &str) -> Result<(), ConnectorError> {
        let visible = pending.trim_start_matches('.').trim_end_matches(".pending");
        match std::fs::rename(self.dir.join(pending), self.dir.join(visible)) {
            Ok(()) => Ok(()),
            // Published before a crash: committing again changes nothing.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && self.dir.join(visible).exists() =>
            {
                Ok(())
            }
            Err(e) => Err(self.io(e)),
        }
    }
}

impl SinkWriter for PartFileWriter {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), ConnectorError> {
        if self.current.is_none() {
            // A fresh file, never one another attempt (a zombie) still
            // writes: a taken number is skipped.
            let (path, file) = loop {
                let path = self.dir.join(format!(".{}{}.inprogress", self.prefix(), self.next_seq));
                self.next_seq += 1;
                match File::create_new(&path) {
                    Ok(f) => break (path, f),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(self.io(e)),
                }
            };
            self.current = Some((path, BufWriter::new(file)));
        }
        let Some((_, file)) = &mut self.current else { return Ok(()) };
        let mut result = Ok(());
        for r in batch.iter() {
            result = file.write_all(r.value).and_then(|_| file.write_all(b"\n"));
            if result.is_err() {
                break;
            }
        }
        result.map_err(|e| self.io(e))
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        // The input ended: everything written is final.
        self.seal(u64::MAX)?;
        self.commit(u64::MAX)
    }

    fn pre_commit(&mut self, id: u64) -> Result<Vec<Vec<u8>>, ConnectorError> {
        self.seal(id)?;
        let names = self.pending.iter().filter(|(c, _)| *c <= id);
        Ok(names.map(|(_, n)| n.as_bytes().to_vec()).collect())
    }

    fn commit(&mut self, id: u64) -> Result<(), ConnectorError> {
        let (done, rest): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|(c, _)| *c <= id);
        self.pending = rest;
        for (_, name) in done {
            self.publish(&name)?;
        }
        Ok(())
    }

    fn restore(&mut self, pending: &[Vec<u8>]) -> Result<(), ConnectorError> {
        // Sealed by the restored checkpoint, which completed: publish.
        for name in pending {
            self.publish(&String::from_utf8_lossy(name))?;
        }
        // Anything else hidden was written after it: abort.
        for name in self.own_files()? {
            if name.starts_with('.') {
                std::fs::remove_file(self.dir.join(&name)).map_err(|e| self.io(e))?;
            }
        }
        Ok(())
    }
}
