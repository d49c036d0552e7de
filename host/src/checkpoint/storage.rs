//! Where checkpoints live: a directory with one folder per checkpoint, its
//! state files, and a `_metadata` file written last and atomically. A
//! checkpoint without metadata never existed; a file whose checksum does not
//! match makes the whole checkpoint invalid, and recovery falls back to the
//! one before.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a checkpoint operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the checkpoint directory failed.
    #[error("checkpoint storage {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A checkpoint is damaged.
    #[error("checkpoint {id} is corrupt: {reason}")]
    Corrupt {
        /// The checkpoint.
        id: u64,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint was taken by another job or a job of another shape.
    #[error(
        "checkpoint {id} in {dir} belongs to another job graph (its fingerprint is {found}, \
         this job's is {expected}); use another --checkpoint-dir or the same plugin, config \
         and parallelism"
    )]
    Mismatch {
        /// The checkpoint.
        id: u64,
        /// The directory.
        dir: String,
        /// The checkpoint's fingerprint.
        found: String,
        /// This job's fingerprint.
        expected: String,
    },
}

/// One state file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// File name inside the checkpoint's folder.
    pub name: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

/// What `_metadata` records about a complete checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Checkpoint id, increasing.
    pub id: u64,
    /// The job's name.
    pub job: String,
    /// Hash of the job graph and parallelism: a checkpoint restores only
    /// into the same shape.
    pub fingerprint: String,
    /// The state files, one per subtask.
    pub files: Vec<StateFile>,
    /// When it completed, ms since the epoch.
    pub completed_at: i64,
    /// Hash of the job graph without parallelism: a savepoint restores into
    /// the same shape at any parallelism.
    #[serde(default)]
    pub shape: String,
    /// Each task's parallelism, by task index.
    #[serde(default)]
    pub parallelism: Vec<u32>,
}

/// A complete checkpoint or savepoint to restore from: its folder and
/// metadata.
#[derive(Debug, Clone)]
pub struct RestorePoint {
    /// The folder holding `_metadata` and the state files.
    pub folder: PathBuf,
    /// Its metadata.
    pub metadata: Metadata,
}

impl RestorePoint {
    /// Opens a checkpoint or savepoint folder, checking its metadata.
    pub fn open(folder: &Path) -> Result<Self, CheckpointError> {
        let path = folder.join("_metadata");
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let metadata: Metadata = serde_json::from_slice(&bytes).map_err(|e| {
            CheckpointError::Corrupt { id: 0, reason: format!("bad {}: {e}", path.display()) }
        })?;
        Ok(RestorePoint { folder: folder.to_path_buf(), metadata })
    }

    /// Reads a state file, checking its checksum.
    pub fn read_state(&self, name: &str) -> Result<Vec<u8>, CheckpointError> {
        let id = self.metadata.id;
        let Some(f) = self.metadata.files.iter().find(|f| f.name == name) else {
            return Err(CheckpointError::Corrupt { id, reason: format!("no state file {name}") });
        };
        let path = self.folder.join(name);
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        if sha256(&bytes) != f.sha256 {
            return Err(CheckpointError::Corrupt {
                id,
                reason: format!("{name} does not match its checksum"),
            });
        }
        Ok(bytes)
    }

    /// Copies this checkpoint into `dir` as savepoint `sp-<id>`; returns its folder.
    pub fn copy_to(&self, dir: &Path) -> Result<PathBuf, CheckpointError> {
        let target = dir.join(format!("sp-{}", self.metadata.id));
        std::fs::create_dir_all(&target).map_err(|e| io(&target, e))?;
        for f in &self.metadata.files {
            let (from, to) = (self.folder.join(&f.name), target.join(&f.name));
            std::fs::copy(&from, &to).map_err(|e| io(&to, e))?;
        }
        let meta = target.join("_metadata");
        std::fs::copy(self.folder.join("_metadata"), &meta).map_err(|e| io(&meta, e))?;
        Ok(target)
    }
}

/// A directory of checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    dir: PathBuf,
}

fn io(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io { path: path.display().to_string(), source }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl CheckpointStorage {
    /// Uses (and creates) `dir`.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        Ok(CheckpointStorage { dir: dir.to_path_buf() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of checkpoint `id`.
    pub fn folder(&self, id: u64) -> PathBuf {
        self.dir.join(format!("chk-{id}"))
    }

    /// Writes one state file of checkpoint `id`.
    pub fn write_state(
        &self,
        id: u64,
        name: &str,
        bytes: &[u8],
    ) -> Result<StateFile, CheckpointError> {
        let folder = self.folder(id);
        std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
        let path = folder.join(name);
        let tmp = folder.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        Ok(StateFile { name: name.to_owned(), sha256: sha256(bytes), bytes: bytes.len() as u64 })
    }

    /// Completes a checkpoint: writes its metadata last, atomically, and
    /// never over an existing one.
    pub fn commit(&self, metadata: &Metadata) -> Result<(), CheckpointError> {
        let folder = self.folder(metadata.id);
        std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
        let json = serde_json::to_vec_pretty(metadata)
            .map_err(|e| CheckpointError::Corrupt { id: metadata.id, reason: e.to_string() })?;
        let tmp = folder.join("._metadata.tmp");
        let path = folder.join("_metadata");
        std::fs::write(&tmp, &json).map_err(|e| io(&tmp, e))?;
        // A hard link fails if `_metadata` exists: create-only, atomic.
        std::fs::hard_link(&tmp, &path).map_err(|e| io(&path, e))?;
        let _ = std::fs::remove_file(&tmp);
        Ok(())
    }

    fn ids(&self) -> Result<Vec<u64>, CheckpointError> {
        let mut ids: Vec<u64> = std::fs::read_dir(&self.dir)
            .map_err(|e| io(&self.dir, e))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Reads and checks the metadata of checkpoint `id`: `None` if it never
    /// completed.
    pub fn metadata(&self, id: u64) -> Result<Option<Metadata>, CheckpointError> {
        let path = self.folder(id).join("_metadata");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        let m: Metadata = serde_json::from_slice(&bytes)
            .map_err(|e| CheckpointError::Corrupt { id, reason: format!("bad _metadata: {e}") })?;
        if m.id != id {
            return Err(CheckpointError::Corrupt {
                id,
                reason: "metadata names another id".into(),
            });
        }
        Ok(Some(m))
    }

    /// Reads a state file of checkpoint `metadata`, checking its checksum.
    pub fn read_state(&self, metadata: &Metadata, name: &str) -> Result<Vec<u8>, CheckpointError> {
        RestorePoint { folder: self.folder(metadata.id), metadata: metadata.clone() }
            .read_state(name)
    }

    /// The newest complete, undamaged checkpoint for a job with
    /// `fingerprint`, and the problems found with newer ones (reported as
    /// warnings: recovery falls back past them).
    pub fn latest(
        &self,
        fingerprint: &str,
    ) -> Result<(Option<Metadata>, Vec<CheckpointError>), CheckpointError> {
        let mut skipped = Vec::new();
        for id in self.ids()?.into_iter().rev() {
            let m = match self.metadata(id) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    skipped.push(e);
                    continue;
                }
            };
            if m.fingerprint != fingerprint {
                return Err(CheckpointError::Mismatch {
                    id,
                    dir: self.dir.display().to_string(),
                    found: m.fingerprint,
                    expected: fingerprint.to_owned(),
                });
            }
            match m.files.iter().try_for_each(|f| self.read_state(&m, &f.name).map(|_| ())) {
                Ok(()) => return Ok((Some(m), skipped)),
                Err(e) => skipped.push(e),
            }
        }
        Ok((None, skipped))
    }

    /// The id the next checkpoint should take (after every existing one).
    pub fn next_id(&self) -> Result<u64, CheckpointError> {
        Ok(self.ids()?.last().map_or(1, |l| l + 1))
    }

    /// Deletes all but the newest `keep` complete checkpoints, and any
    /// incomplete one older than the newest complete.
    pub fn retain(&self, keep: usize) -> Result<(), CheckpointError> {
        let ids = self.ids()?;
        let complete: Vec<u64> =
            ids.iter().copied().filter(|id| matches!(self.metadata(*id), Ok(Some(_)))).collect();
        let Some(&newest) = complete.last() else { return Ok(()) };
        let kept: Vec<u64> = complete.iter().rev().take(keep.max(1)).copied().collect();
        for id in ids {
            if id < newest && !kept.contains(&id) {
                let folder = self.folder(id);
                std::fs::remove_dir_all(&folder).map_err(|e| io(&folder, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(storage: &CheckpointStorage, id: u64, files: &[(&str, &[u8])]) -> Metadata {
        let files = files.iter().map(|(n, b)| storage.write_state(id, n, b).unwrap()).collect();
        Metadata {
            id,
            job: "j".into(),
            fingerprint: "f".into(),
            files,
            completed_at: 0,
            shape: "s".into(),
            parallelism: vec![1],
        }
    }

    #[test]
    fn a_checkpoint_exists_only_once_its_metadata_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStorage::open(dir.path()).unwrap();
        let m1 = meta(&s, 1, &[("a", b"one")]);
        s.commit(&m1).unwrap();
        let _m2 = meta(&s, 2, &[("a", b"two")]); // never committed
        let (latest, skipped) = s.latest("f").unwrap();
        assert_eq!(latest.unwrap().id, 1);
        assert!(skipped.is_empty());
        assert_eq!(s.read_state(&m1, "a").unwrap(), b"one");
        assert_eq!(s.next_id().unwrap(), 3);
        assert!(s.commit(&m1).is_err(), "metadata is never overwritten");
    }

    #[test]
    fn a_corrupt_checkpoint_falls_back_to_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStorage::open(dir.path()).unwrap();
        s.commit(&meta(&s, 1, &[("a", b"one")])).unwrap();
        s.commit(&meta(&s, 2, &[("a", b"two")])).unwrap();
        std::fs::write(dir.path().join("chk-2/a"), b"tw0").unwrap();
        let (latest, skipped) = s.latest("f").unwrap();
        assert_eq!(latest.unwrap().id, 1);
        assert!(skipped[0].to_string().contains("does not match its checksum"), "{}", skipped[0]);
    }

    #[test]
    fn another_jobs_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStorage::open(dir.path()).unwrap();
        s.commit(&meta(&s, 1, &[])).unwrap();
        assert!(matches!(s.latest("other"), Err(CheckpointError::Mismatch { .. })));
    }

    #[test]
    fn retains_the_newest_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStorage::open(dir.path()).unwrap();
        for id in 1..=4 {
            s.commit(&meta(&s, id, &[("a", b"x")])).unwrap();
        }
        s.retain(2).unwrap();
        assert_eq!(s.ids().unwrap(), vec![3, 4]);
    }
}
