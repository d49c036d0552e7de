//! The audit log: who deployed, cancelled, upgraded, savepointed, uploaded
//! or changed tenants, when, with which plugin, and what the coordinator
//! answered. One JSON object per line in `data-dir/audit.jsonl`, appended
//! and never rewritten; `GET /v1/audit` (admin only) reads it back.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When (ms since the Unix epoch).
    pub time_ms: u64,
    /// Who: a tenant's name, or `admin`.
    pub tenant: String,
    /// What: `deploy`, `cancel`, `savepoint`, `upload`, `tenant-create`, …
    pub action: String,
    /// The job it concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The plugin's SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The error, when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The append-only audit file.
pub struct AuditLog {
    path: PathBuf,
    lock: Mutex<()>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl AuditLog {
    /// The log in `data_dir`.
    pub fn new(data_dir: &Path) -> AuditLog {
        AuditLog { path: data_dir.join("audit.jsonl"), lock: Mutex::new(()) }
    }

    /// Appends one event (a failure to write is logged, not fatal: the
    /// request it records has happened).
    pub fn append(&self, event: &AuditEvent) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut line = serde_json::to_vec(event)?;
            line.push(b'\n');
            std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?.write_all(&line)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot append to the audit log");
        }
    }

    /// The last `limit` events, oldest first, optionally only `tenant`'s.
    pub fn read(&self, tenant: Option<&str>, limit: usize) -> Vec<AuditEvent> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(file) = std::fs::File::open(&self.path) else { return Vec::new() };
        let mut all: Vec<AuditEvent> = std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .filter(|e: &AuditEvent| tenant.is_none_or(|t| e.tenant == t))
            .collect();
        let skip = all.len().saturating_sub(limit);
        all.drain(..skip);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path());
        for (i, t) in ["a", "b", "a"].iter().enumerate() {
            log.append(&AuditEvent {
                time_ms: i as u64,
                tenant: (*t).to_owned(),
                action: "deploy".into(),
                job: Some(format!("job-{i}")),
                plugin: None,
                status: 201,
                error: None,
            });
        }
        assert_eq!(log.read(None, 100).len(), 3);
        let a = log.read(Some("a"), 100);
        assert_eq!(a.iter().map(|e| e.time_ms).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(log.read(None, 1)[0].time_ms, 2);
        let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 3);
    }
}
