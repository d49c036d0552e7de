//! Where checkpoints live: a folder per checkpoint in a directory or an
//! object store (`s3://`, `gs://bucket/prefix`, `az://container/prefix`),
//! holding its state files and a `_metadata` object written last and
//! create-only. A checkpoint without
//! metadata never existed; a file whose checksum does not match makes the
//! whole checkpoint invalid, and recovery falls back to the one before.

use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::objstore::{self, StoreLocation, StoreOptions};

/// Why a checkpoint operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the checkpoint directory or store failed.
    #[error("checkpoint storage {path}: {reason}")]
    Io {
        /// The file, folder or object.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// This machine's disk failed while a checkpoint was read into a local
    /// copy (full, read-only): the checkpoint itself is not damaged.
    #[error(
        "checkpoint {id} could not be restored on this machine: {path}: {reason} (the \
         checkpoint itself was not found damaged)"
    )]
    LocalDisk {
        /// The checkpoint.
        id: u64,
        /// The local file or folder.
        path: String,
        /// The operating system's message.
        reason: String,
    },
    /// A checkpoint is damaged.
    #[error("checkpoint {id} is corrupt: {reason}")]
    Corrupt {
        /// The checkpoint.
        id: u64,
        /// What is wrong.
        reason: String,
    },
    /// Too many checkpoints failed in a row: the job fails.
    #[error(
        "{failures} checkpoints in a row failed, more than checkpoint.tolerable-failures = \
         {tolerable}; the last one: {last}"
    )]
    TooManyFailures {
        /// Failures in a row.
        failures: u32,
        /// The setting.
        tolerable: u32,
        /// Why the last one failed.
        last: String,
    },
    /// A newer attempt of the job claimed a fencing epoch after this
    /// attempt's: this one is a zombie and must commit nothing more.
    #[error(
        "this attempt of the job (fencing epoch {epoch}) was replaced by a newer one (epoch \
         {newer}) in {dir}: it commits nothing more and stops"
    )]
    Superseded {
        /// This attempt's epoch.
        epoch: u64,
        /// The newer attempt's.
        newer: u64,
        /// The checkpoint directory.
        dir: String,
    },
    /// A checkpoint holds whole-memory captures (`plugin/capture.rs`) that
    /// cannot be restored as asked: at another parallelism, or into
    /// another build of the plugin.
    #[error("checkpoint {id} cannot be restored: {reason}")]
    MemoryCapture {
        /// The checkpoint or savepoint.
        id: u64,
        /// Why not, and what to do instead.
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
    /// Its size, plus the size of the shared files first uploaded with it
    /// (what this checkpoint added to the store).
    pub bytes: u64,
    /// The shared files it refers to (`<uid>/<name>` under `shared/`): a
    /// RocksDB subtask's SST files, kept while any checkpoint refers to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<String>,
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
    /// Whether the shared files are inside the folder (a savepoint, which
    /// stands alone) rather than in `shared/` beside the checkpoint folders.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_inside: bool,
}

/// A complete checkpoint or savepoint to restore from: its folder and
/// metadata.
#[derive(Debug, Clone)]
pub struct RestorePoint {
    /// The folder holding `_metadata` and the state files.
    pub folder: StoreLocation,
    /// Its metadata.
    pub metadata: Metadata,
}

/// `path` (a local path or an object-store URL) as text.
fn url_of(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Opens the store and folder a path or URL names (settings from the
/// `AWS_*`, `GOOGLE_*` or `AZURE_*` environment).
fn locate(path: &Path) -> Result<StoreLocation, CheckpointError> {
    objstore::open(&url_of(path), &StoreOptions::default())
        .map_err(|e| CheckpointError::Io { path: url_of(path), reason: e.to_string() })
}

/// Where the shared files of a checkpoint or savepoint in `folder` are.
fn shared_folder(folder: &StoreLocation, inside: bool) -> StoreLocation {
    if inside {
        return subfolder(folder, "shared");
    }
    let mut parts: Vec<_> = folder.prefix.parts().collect();
    parts.pop();
    parts.push(object_store::path::PathPart::from("shared"));
    let prefix: ObjectPath = parts.into_iter().collect();
    let url = folder.url.trim_end_matches('/');
    let url = format!("{}/shared", url.rsplit_once('/').map_or(url, |(p, _)| p));
    StoreLocation { url, store: folder.store.clone(), prefix }
}

/// Shared files uploaded by this process (by URL): a file is uploaded once
/// and then only referenced.
fn uploaded() -> &'static std::sync::Mutex<std::collections::HashSet<String>> {
    static UPLOADED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    UPLOADED.get_or_init(Default::default)
}

/// Hard-links `local` as `target` (a file of a local checkpoint directory),
/// replacing what an earlier run left there; its size, or `None` if it
/// cannot be linked (another file system): then it is copied.
fn link_local(local: &Path, target: &Path) -> Option<u64> {
    let size = std::fs::metadata(local).ok()?.len();
    std::fs::create_dir_all(target.parent()?).ok()?;
    match std::fs::remove_file(target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    std::fs::hard_link(local, target).ok()?;
    Some(size)
}

/// A sub-folder of a location.
fn subfolder(loc: &StoreLocation, name: &str) -> StoreLocation {
    let url = format!("{}/{name}", loc.url.trim_end_matches('/'));
    StoreLocation { url, store: loc.store.clone(), prefix: loc.child(name) }
}

fn io(loc: &StoreLocation, path: &ObjectPath, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io { path: loc.display(path), reason: e.to_string() }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads an object; `None` if it does not exist.
async fn read(loc: &StoreLocation, path: &ObjectPath) -> Result<Option<Vec<u8>>, CheckpointError> {
    match loc.store.get(path).await {
        Ok(r) => Ok(Some(r.bytes().await.map_err(|e| io(loc, path, e))?.to_vec())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(io(loc, path, e)),
    }
}

/// Writes `bytes` to `path` only if nothing is there: atomic create-only
/// where the store has it (local files, S3 with conditional writes).
async fn create(
    loc: &StoreLocation,
    path: &ObjectPath,
    bytes: Vec<u8>,
) -> Result<(), CheckpointError> {
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    match loc.store.put_opts(path, PutPayload::from(bytes.clone()), opts).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::NotImplemented { .. }) => {
            // A store without conditional writes: check, then write.
            if read(loc, path).await?.is_some() {
                return Err(io(loc, path, "already exists"));
            }
            loc.store.put(path, bytes.into()).await.map(|_| ()).map_err(|e| io(loc, path, e))
        }
        Err(e) => Err(io(loc, path, e)),
    }
}

/// Reads and checks a state file of a checkpoint's folder.
async fn read_checked(
    folder: &StoreLocation,
    metadata: &Metadata,
    name: &str,
) -> Result<Vec<u8>, CheckpointError> {
    let id = metadata.id;
    let Some(f) = metadata.files.iter().find(|f| f.name == name) else {
        return Err(CheckpointError::Corrupt { id, reason: format!("no state file {name}") });
    };
    let path = folder.child(name);
    let Some(bytes) = read(folder, &path).await? else {
        return Err(CheckpointError::Corrupt { id, reason: format!("{name} is missing") });
    };
    if sha256(&bytes) != f.sha256 {
        return Err(CheckpointError::Corrupt {
            id,
            reason: format!("{name} does not match its checksum"),
        });
    }
    Ok(bytes)
}

fn parse_metadata(id: u64, bytes: &[u8], what: &str) -> Result<Metadata, CheckpointError> {
    serde_json::from_slice(bytes)
        .map_err(|e| CheckpointError::Corrupt { id, reason: format!("bad {what}: {e}") })
}

impl RestorePoint {
    /// Opens a checkpoint or savepoint folder (a path or URL), checking its
    /// metadata.
    pub fn open(folder: &Path) -> Result<Self, CheckpointError> {
        let folder = locate(folder)?;
        let path = folder.child("_metadata");
        let what = folder.display(&path);
        let bytes =
            objstore::block_on(read(&folder, &path))?.ok_or_else(|| CheckpointError::Io {
                path: what.clone(),
                reason: "no such savepoint or checkpoint (no _metadata)".into(),
            })?;
        let metadata = parse_metadata(0, &bytes, &what)?;
        Ok(RestorePoint { folder, metadata })
    }

    /// The folder, for messages.
    pub fn url(&self) -> &str {
        &self.folder.url
    }

    /// Reads a state file, checking its checksum.
    pub fn read_state(&self, name: &str) -> Result<Vec<u8>, CheckpointError> {
        objstore::block_on(read_checked(&self.folder, &self.metadata, name))
    }

    /// Reads a shared file (`<uid>/<name>`) the checkpoint refers to.
    pub fn read_shared(&self, key: &str) -> Result<Vec<u8>, CheckpointError> {
        let shared = shared_folder(&self.folder, self.metadata.shared_inside);
        let path = shared.child(key);
        objstore::block_on(read(&shared, &path))?.ok_or_else(|| CheckpointError::Corrupt {
            id: self.metadata.id,
            reason: format!("its shared file {} is missing", shared.display(&path)),
        })
    }

    /// Copies this checkpoint into `dir` (a path or URL) as savepoint
    /// `sp-<id>`, with the shared files it refers to, so it stands alone;
    /// returns its folder.
    pub fn copy_to(&self, dir: &Path) -> Result<PathBuf, CheckpointError> {
        let target = subfolder(&locate(dir)?, &format!("sp-{}", self.metadata.id));
        let shared = subfolder(&target, "shared");
        objstore::block_on(async {
            for f in &self.metadata.files {
                let bytes = read_checked(&self.folder, &self.metadata, &f.name).await?;
                let to = target.child(&f.name);
                target.store.put(&to, bytes.into()).await.map_err(|e| io(&target, &to, e))?;
            }
            Ok::<_, CheckpointError>(())
        })?;
        for key in self.metadata.files.iter().flat_map(|f| &f.shared) {
            let bytes = self.read_shared(key)?;
            let to = shared.child(key);
            objstore::block_on(shared.store.put(&to, bytes.into()))
                .map_err(|e| io(&shared, &to, e))?;
        }
        let metadata = Metadata { shared_inside: true, ..self.metadata.clone() };
        objstore::block_on(async {
            let meta = serde_json::to_vec_pretty(&metadata).map_err(|e| {
                CheckpointError::Corrupt { id: self.metadata.id, reason: e.to_string() }
            })?;
            create(&target, &target.child("_metadata"), meta).await
        })?;
        Ok(PathBuf::from(target.url))
    }
}

/// A directory or object-store prefix of checkpoints (`chk-<id>` folders).
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    root: StoreLocation,
}

impl CheckpointStorage {
    /// Uses `dir`: a local directory (created as needed) or an object-store
    /// URL such as `s3://bucket/checkpoints/job`.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let root = locate(dir)?;
        if !url_of(dir).contains("://") {
            std::fs::create_dir_all(dir)
                .map_err(|e| CheckpointError::Io { path: url_of(dir), reason: e.to_string() })?;
        }
        Ok(CheckpointStorage { root })
    }

    /// The directory or URL, for messages.
    pub fn url(&self) -> &str {
        &self.root.url
    }

    /// The folder of checkpoint `id`.
    pub fn folder(&self, id: u64) -> StoreLocation {
        subfolder(&self.root, &format!("chk-{id}"))
    }

    /// Checkpoint `metadata`'s folder, to restore from.
    pub fn point(&self, metadata: Metadata) -> RestorePoint {
        RestorePoint { folder: self.folder(metadata.id), metadata }
    }

    /// Whether the shared files of `point` are this store's (it is one of
    /// these checkpoints, not a savepoint or another directory's), so that
    /// a database restored from it can refer to them without uploading.
    pub fn holds(&self, point: &RestorePoint) -> bool {
        let theirs = shared_folder(&point.folder, point.metadata.shared_inside);
        let ours = subfolder(&self.root, "shared");
        theirs.url.trim_end_matches('/') == ours.url.trim_end_matches('/')
            && theirs.prefix == ours.prefix
    }

    /// Complete checkpoint `id`, to restore from.
    pub fn restore_point(&self, id: u64) -> Result<RestorePoint, CheckpointError> {
        match self.metadata(id)? {
            Some(m) => Ok(self.point(m)),
            None => Err(CheckpointError::Corrupt { id, reason: "it has no _metadata".into() }),
        }
    }

    /// Writes one state file of checkpoint `id`.
    pub fn write_state(
        &self,
        id: u64,
        name: &str,
        bytes: &[u8],
    ) -> Result<StateFile, CheckpointError> {
        objstore::block_on(self.put_state(id, name, bytes.to_vec()))
    }

    /// Uploads one state file of checkpoint `id` (for uploads that run
    /// while the subtask goes on).
    pub async fn put_state(
        &self,
        id: u64,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<StateFile, CheckpointError> {
        let folder = self.folder(id);
        let path = folder.child(name);
        let file = StateFile {
            name: name.to_owned(),
            sha256: sha256(&bytes),
            bytes: bytes.len() as u64,
            shared: vec![],
        };
        folder.store.put(&path, bytes.into()).await.map_err(|e| io(&folder, &path, e))?;
        Ok(file)
    }

    /// Uploads a subtask's part of checkpoint `id`: the RocksDB files of
    /// `local` it has not uploaded before, then its state file `name` (which
    /// names them). The local copy is deleted afterwards.
    pub async fn put_subtask(
        &self,
        id: u64,
        name: &str,
        bytes: Vec<u8>,
        local: Option<crate::state::LocalCheckpoint>,
    ) -> Result<StateFile, CheckpointError> {
        let mut shared = Vec::new();
        let mut sent = 0;
        let mut result = Ok(());
        if let Some(l) = &local {
            for (i, (file, key)) in l.files.file_names().zip(l.files.keys()).enumerate() {
                if l.files.adopted(i) {
                    // Restored from this store: it is there already.
                    shared.push(key);
                    continue;
                }
                match self.put_shared(&key, &l.dir.join(file)).await {
                    Ok(n) => sent += n,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
                shared.push(key);
            }
        }
        let file = match result {
            Ok(()) => self.put_state(id, name, bytes).await,
            Err(e) => Err(e),
        };
        if let Some(l) = local {
            let _ = tokio::fs::remove_dir_all(&l.dir).await;
        }
        file.map(|f| StateFile { bytes: f.bytes + sent, shared, ..f })
    }

    /// Uploads the local file `local` as shared file `key` (`<uid>/<name>`)
    /// unless this process uploaded it before; returns the bytes sent.
    /// Into a local directory on the same file system the (immutable) file
    /// is hard-linked rather than copied.
    pub async fn put_shared(&self, key: &str, local: &Path) -> Result<u64, CheckpointError> {
        let shared = subfolder(&self.root, "shared");
        let path = shared.child(key);
        let url = shared.display(&path);
        if uploaded().lock().unwrap_or_else(|p| p.into_inner()).contains(&url) {
            return Ok(0);
        }
        // (`url` is the file's path when it names the same object.)
        if objstore::kind(&shared.url) == Some(objstore::StoreKind::Local)
            && ObjectPath::from_absolute_path(&url).ok().as_ref() == Some(&path)
            && let Some(size) = link_local(local, Path::new(&url))
        {
            uploaded().lock().unwrap_or_else(|p| p.into_inner()).insert(url);
            return Ok(size);
        }
        let bytes = tokio::fs::read(local).await.map_err(|e| CheckpointError::Io {
            path: local.display().to_string(),
            reason: e.to_string(),
        })?;
        let size = bytes.len() as u64;
        shared.store.put(&path, bytes.into()).await.map_err(|e| io(&shared, &path, e))?;
        uploaded().lock().unwrap_or_else(|p| p.into_inner()).insert(url);
        Ok(size)
    }

    /// Deletes the shared files no complete checkpoint refers to any more.
    /// Runs after a checkpoint completed and before the next starts, so no
    /// upload is under way.
    fn collect_shared(&self, kept: &[Metadata]) -> Result<(), CheckpointError> {
        let shared = subfolder(&self.root, "shared");
        let used: std::collections::HashSet<String> = kept
            .iter()
            .flat_map(|m| m.files.iter().flat_map(|f| &f.shared))
            .map(|key| shared.display(&shared.child(key)))
            .collect();
        objstore::block_on(async {
            let objects: Vec<_> = match shared.store.list(Some(&shared.prefix)).try_collect().await
            {
                Ok(o) => o,
                Err(object_store::Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(io(&shared, &shared.prefix, e)),
            };
            for o in objects {
                let url = shared.display(&o.location);
                if !used.contains(&url) {
                    match shared.store.delete(&o.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(io(&shared, &o.location, e)),
                    }
                    uploaded().lock().unwrap_or_else(|p| p.into_inner()).remove(&url);
                }
            }
            Ok(())
        })
    }

    /// Completes a checkpoint: writes its metadata last, atomically, and
    /// never over an existing one.
    pub fn commit(&self, metadata: &Metadata) -> Result<(), CheckpointError> {
        let folder = self.folder(metadata.id);
        let json = serde_json::to_vec_pretty(metadata)
            .map_err(|e| CheckpointError::Corrupt { id: metadata.id, reason: e.to_string() })?;
        objstore::block_on(create(&folder, &folder.child("_metadata"), json))
    }

    fn ids(&self) -> Result<Vec<u64>, CheckpointError> {
        let root = &self.root;
        let listed = objstore::block_on(root.store.list_with_delimiter(Some(&root.prefix)));
        let listed = match listed {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(io(root, &root.prefix, e)),
        };
        let mut ids: Vec<u64> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Reads and checks the metadata of checkpoint `id`: `None` if it never
    /// completed.
    pub fn metadata(&self, id: u64) -> Result<Option<Metadata>, CheckpointError> {
        let folder = self.folder(id);
        let Some(bytes) = objstore::block_on(read(&folder, &folder.child("_metadata")))? else {
            return Ok(None);
        };
        let m = parse_metadata(id, &bytes, "_metadata")?;
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
        objstore::block_on(read_checked(&self.folder(metadata.id), metadata, name))
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
                    dir: self.root.url.clone(),
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

    /// Claims the next fencing epoch for a new attempt of the job: creates
    /// `_epochs/<n>` create-only, so two attempts never share an epoch.
    /// An attempt whose epoch has a successor ([`CheckpointStorage::superseded`])
    /// was replaced and must not complete checkpoints or commit output.
    pub fn claim_epoch(&self) -> Result<u64, CheckpointError> {
        let mut last = Err(CheckpointError::Io {
            path: self.root.url.clone(),
            reason: "no epoch could be claimed".into(),
        });
        for _ in 0..16 {
            let next = self.epochs()?.last().map_or(1, |e| e + 1);
            let path = self.epoch_path(next);
            match objstore::block_on(create(&self.root, &path, next.to_string().into_bytes())) {
                Ok(()) => return Ok(next),
                // Another attempt took it at the same moment: the next one.
                Err(e) => last = Err(e),
            }
        }
        last
    }

    /// The newer epoch, if an attempt claimed one after `epoch`.
    pub fn superseded(&self, epoch: u64) -> Result<Option<u64>, CheckpointError> {
        let path = self.epoch_path(epoch + 1);
        match objstore::block_on(self.root.store.head(&path)) {
            Ok(_) => Ok(Some(epoch + 1)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io(&self.root, &path, e)),
        }
    }

    fn epoch_path(&self, epoch: u64) -> ObjectPath {
        self.root.child(&format!("_epochs/{epoch}"))
    }

    fn epochs(&self) -> Result<Vec<u64>, CheckpointError> {
        let dir = self.root.child("_epochs");
        let listed = match objstore::block_on(self.root.store.list_with_delimiter(Some(&dir))) {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.root, &dir, e)),
        };
        let mut epochs: Vec<u64> =
            listed.objects.iter().filter_map(|o| o.location.filename()?.parse().ok()).collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// The id the next checkpoint should take (after every existing one).
    pub fn next_id(&self) -> Result<u64, CheckpointError> {
        Ok(self.ids()?.last().map_or(1, |l| l + 1))
    }

    /// Deletes all but the newest `keep` complete checkpoints, and any
    /// incomplete one older than the newest complete.
    pub fn retain(&self, keep: usize) -> Result<(), CheckpointError> {
        let ids = self.ids()?;
        let complete: Vec<Metadata> =
            ids.iter().filter_map(|id| self.metadata(*id).ok().flatten()).collect();
        let Some(newest) = complete.last().map(|m| m.id) else { return Ok(()) };
        let kept: Vec<Metadata> = complete.into_iter().rev().take(keep.max(1)).collect();
        for id in ids {
            if id < newest && !kept.iter().any(|m| m.id == id) {
                self.delete(id)?;
            }
        }
        self.collect_shared(&kept)
    }

    /// Deletes checkpoint `id`'s folder, metadata first so a half-deleted
    /// checkpoint is never taken for a complete one.
    fn delete(&self, id: u64) -> Result<(), CheckpointError> {
        let folder = self.folder(id);
        let store = &folder.store;
        objstore::block_on(async {
            let meta = folder.child("_metadata");
            match store.delete(&meta).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io(&folder, &meta, e)),
            }
            let objects: Vec<_> = store
                .list(Some(&folder.prefix))
                .try_collect()
                .await
                .map_err(|e| io(&folder, &folder.prefix, e))?;
            for o in objects {
                match store.delete(&o.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(io(&folder, &o.location, e)),
                }
            }
            Ok(())
        })?;
        // A local folder may be left empty.
        let is_local = !folder.url.contains("://") || folder.url.starts_with("file://");
        if is_local && let Ok(local) = std::fs::canonicalize(format!("/{}", folder.prefix)) {
            let _ = std::fs::remove_dir_all(local);
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
            shared_inside: false,
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
    fn each_attempt_claims_a_new_epoch_and_older_ones_are_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStorage::open(dir.path()).unwrap();
        let first = s.claim_epoch().unwrap();
        assert_eq!(s.superseded(first).unwrap(), None);
        let second = CheckpointStorage::open(dir.path()).unwrap().claim_epoch().unwrap();
        assert_eq!((first, second), (1, 2));
        assert_eq!(s.superseded(first).unwrap(), Some(2));
        assert_eq!(s.superseded(second).unwrap(), None);
        // Epochs are not checkpoints.
        assert_eq!(s.next_id().unwrap(), 1);
        s.commit(&meta(&s, 1, &[("a", b"x")])).unwrap();
        s.retain(1).unwrap();
        assert_eq!(s.superseded(first).unwrap(), Some(2));
    }

    /// RocksDB state is checkpointed incrementally: the second checkpoint
    /// uploads only what changed, shared files outlive the checkpoint that
    /// uploaded them while a newer one needs them and are deleted after,
    /// and a restore (from the checkpoint or a savepoint copy) gives every
    /// entry back.
    #[test]
    fn rocksdb_checkpoints_upload_only_new_files() {
        use crate::checkpoint::SubtaskSnapshot;
        use crate::state::{RocksDbState, StateBackend, rocks_tables, state_key};
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStorage::open(&dir.path().join("ck")).unwrap();
        // Memtables (half the cache) hold all the state, so the files that
        // change are the flushes, not a compaction's rewrite (which a
        // checkpoint after a compaction does upload, as Flink's does).
        let mut db = RocksDbState::open(&dir.path().join("db"), 64 << 20).unwrap();
        let t = db.register("t").unwrap();
        let (mut k, mut seed) = (Vec::new(), 0x9e37_79b9_7f4a_7c15_u64);
        // Values that do not compress, so the SST files are as large as the state.
        let mut put = |db: &mut RocksDbState, range: std::ops::Range<u32>| {
            for i in range {
                let value: Vec<u8> = (0..64)
                    .flat_map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed.to_le_bytes()
                    })
                    .collect();
                state_key(i % 128, &i.to_be_bytes(), b"", &mut k);
                db.put(t, &k, &value).unwrap();
            }
        };
        let checkpoint = |db: &mut RocksDbState, id: u64| {
            let local = db.begin_checkpoint(id).unwrap().finish().unwrap();
            let snap = SubtaskSnapshot { rocks: Some(local.files.clone()), ..Default::default() };
            let bytes = snap.encode().unwrap();
            let put = s.put_subtask(id, "t0-s0.state", bytes, Some(local));
            let file = objstore::block_on(put).unwrap();
            let m = Metadata { files: vec![file], ..meta(&s, id, &[]) };
            s.commit(&m).unwrap();
            s.retain(1).unwrap();
            m
        };
        put(&mut db, 0..40_000); // 20 MB: several SST files
        let first = checkpoint(&mut db, 1);
        put(&mut db, 40_000..40_100);
        let second = checkpoint(&mut db, 2);
        let (full, added) = (first.files[0].bytes, second.files[0].bytes);
        assert!(full > 10 << 20, "the first checkpoint uploads everything: {full} bytes");
        assert!(added * 20 < full, "the second uploads what changed: {added} of {full} bytes");
        let shared: Vec<_> = std::fs::read_dir(dir.path().join("ck/shared"))
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .collect();
        assert_eq!(shared.len(), second.files[0].shared.len(), "unused shared files deleted");
        assert_eq!(s.ids().unwrap(), vec![2]);

        let tables = |point: &RestorePoint| {
            let snap = SubtaskSnapshot::decode(&point.read_state("t0-s0.state").unwrap()).unwrap();
            rocks_tables(&snap.rocks.unwrap(), |key| point.read_shared(key)).unwrap()
        };
        let point = s.restore_point(2).unwrap();
        let restored = tables(&point);
        assert_eq!(restored[0].entries.len(), 40_100);
        assert_eq!(restored, db.export().unwrap());
        let sp = point.copy_to(&dir.path().join("savepoints")).unwrap();
        std::fs::remove_dir_all(dir.path().join("ck")).unwrap();
        assert_eq!(tables(&RestorePoint::open(&sp).unwrap()), restored, "a savepoint stands alone");
    }

    /// A database restored from a checkpoint of this store refers to the
    /// files it was restored from: its next checkpoint uploads only what
    /// changed since, and those files outlive the checkpoint that first
    /// uploaded them. Restored from elsewhere (a savepoint), it uploads all.
    #[test]
    fn a_restored_database_reuses_its_uploaded_files() {
        use crate::checkpoint::SubtaskSnapshot;
        use crate::state::{RocksDbState, StateBackend, state_key};
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStorage::open(&dir.path().join("ck")).unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut put = |db: &mut RocksDbState, range: std::ops::Range<u32>| {
            let t = db.register("t").unwrap();
            let mut k = Vec::new();
            for i in range {
                let value: Vec<u8> = (0..64)
                    .flat_map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed.to_le_bytes()
                    })
                    .collect();
                state_key(i % 128, &i.to_be_bytes(), b"", &mut k);
                db.put(t, &k, &value).unwrap();
            }
        };
        let checkpoint = |db: &mut RocksDbState, id: u64| {
            let local = db.begin_checkpoint(id).unwrap().finish().unwrap();
            let snap = SubtaskSnapshot { rocks: Some(local.files.clone()), ..Default::default() };
            let put = s.put_subtask(id, "t0-s0.state", snap.encode().unwrap(), Some(local));
            let m = Metadata { files: vec![objstore::block_on(put).unwrap()], ..meta(&s, id, &[]) };
            s.commit(&m).unwrap();
            s.retain(1).unwrap();
            m
        };
        let restore = |point: &RestorePoint, path: &str, reuse: bool| {
            let snap = SubtaskSnapshot::decode(&point.read_state("t0-s0.state").unwrap()).unwrap();
            let mut db = RocksDbState::open(&dir.path().join(path), 64 << 20).unwrap();
            let fetch = |key: &str| point.read_shared(key);
            assert!(db.restore_files(&snap.rocks.unwrap(), &fetch, reuse).unwrap());
            db
        };
        let mut db = RocksDbState::open(&dir.path().join("db"), 64 << 20).unwrap();
        put(&mut db, 0..40_000); // 20 MB
        let first = checkpoint(&mut db, 1);
        let full = first.files[0].bytes;
        assert!(full > 10 << 20, "the first checkpoint uploads everything: {full} bytes");
        let before = db.export().unwrap();
        drop(db);

        // Restored from this store: the next checkpoint uploads the change only.
        let point = s.restore_point(1).unwrap();
        assert!(s.holds(&point));
        let mut db = restore(&point, "db2", true);
        assert_eq!(db.export().unwrap(), before);
        put(&mut db, 40_000..40_100);
        let second = checkpoint(&mut db, 2);
        let added = second.files[0].bytes;
        assert!(added * 20 < full, "only new files are uploaded: {added} of {full} bytes");
        let reused: Vec<_> =
            first.files[0].shared.iter().filter(|k| second.files[0].shared.contains(k)).collect();
        assert_eq!(reused.len(), first.files[0].shared.len(), "every restored file is reused");
        // Checkpoint 1 is gone (retain 1); its files live on for checkpoint 2.
        assert_eq!(s.ids().unwrap(), vec![2]);
        let point = s.restore_point(2).unwrap();
        let expected = db.export().unwrap();
        assert_eq!(expected[0].entries.len(), 40_100);
        drop(db);
        let mut again = restore(&point, "db3", true);
        assert_eq!(again.export().unwrap(), expected);
        drop(again);

        // A savepoint's files are not this store's: everything is uploaded.
        let sp = RestorePoint::open(&point.copy_to(&dir.path().join("sp")).unwrap()).unwrap();
        assert!(!s.holds(&sp));
        let mut db = restore(&sp, "db4", false);
        let third = checkpoint(&mut db, 3);
        assert!(third.files[0].bytes > 10 << 20, "{} bytes", third.files[0].bytes);
        assert_eq!(restore(&s.restore_point(3).unwrap(), "db5", true).export().unwrap(), expected);
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
