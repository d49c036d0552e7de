//! The job store: where a coordinator keeps its job records and the
//! plugins they run, in a directory or an object store (`s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix`; see `flinkw_host::objstore`),
//! so that a coordinator started on another machine with the same store
//! takes the live jobs back.
//!
//! Layout under the store's URL: `jobs/<id>.json` (one record per job,
//! always written whole in one put, so a reader sees the old or the new
//! record, never half of one; a new record is written create-only, so two
//! coordinators never take the same id) and `plugins/<sha256>.wasm`.

use flinkw_host::objstore::object_store::{self, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use flinkw_host::objstore::{self as objstore, StoreLocation, StoreOptions};

/// Why the job store failed.
#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    /// The URL cannot be opened.
    #[error("job store: {0}")]
    Open(#[from] objstore::StoreError),
    /// A request failed.
    #[error("job store {path}: {reason}")]
    Io {
        /// The object.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// An opened job store.
#[derive(Debug, Clone)]
pub struct JobStore {
    loc: StoreLocation,
}

impl JobStore {
    /// Opens the store a URL or directory names (`AWS_*` variables give
    /// S3 endpoints and credentials). A local directory is created.
    pub fn open(url: &str) -> Result<JobStore, JobStoreError> {
        if !url.contains("://") {
            std::fs::create_dir_all(url)
                .map_err(|e| JobStoreError::Io { path: url.to_owned(), reason: e.to_string() })?;
        }
        Ok(JobStore { loc: objstore::open(url, &StoreOptions::default())? })
    }

    /// The URL, for messages.
    pub fn url(&self) -> &str {
        &self.loc.url
    }

    fn err(&self, path: &object_store::path::Path, e: impl std::fmt::Display) -> JobStoreError {
        JobStoreError::Io { path: self.loc.display(path), reason: e.to_string() }
    }

    /// Writes a new job's record only if no record has its id; false if
    /// one has (another coordinator took the id).
    pub fn create_record(&self, id: &str, bytes: Vec<u8>) -> Result<bool, JobStoreError> {
        let path = self.loc.child(&format!("jobs/{id}.json"));
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        let put = self.loc.store.put_opts(&path, PutPayload::from(bytes.clone()), opts);
        match objstore::block_on(put) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                // A store without conditional writes: check, then write.
                if objstore::block_on(self.loc.store.head(&path)).is_ok() {
                    return Ok(false);
                }
                self.put_record(id, bytes).map(|()| true)
            }
            Err(e) => Err(self.err(&path, e)),
        }
    }

    /// Replaces a job's record, whole, in one put.
    pub fn put_record(&self, id: &str, bytes: Vec<u8>) -> Result<(), JobStoreError> {
        let path = self.loc.child(&format!("jobs/{id}.json"));
        objstore::block_on(self.loc.store.put(&path, bytes.into()))
            .map(|_| ())
            .map_err(|e| self.err(&path, e))
    }

    /// Every job record: name and bytes.
    pub fn records(&self) -> Result<Vec<(String, Vec<u8>)>, JobStoreError> {
        let dir = self.loc.child("jobs");
        let store = &self.loc.store;
        let listed = match objstore::block_on(store.list_with_delimiter(Some(&dir))) {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(&dir, e)),
        };
        let mut all = Vec::new();
        for o in listed.objects {
            if !o.location.as_ref().ends_with(".json") {
                continue;
            }
            let bytes = objstore::block_on(async { store.get(&o.location).await?.bytes().await })
                .map_err(|e| self.err(&o.location, e))?;
            all.push((self.loc.display(&o.location), bytes.to_vec()));
        }
        Ok(all)
    }

    /// Stores a plugin under its hash (once).
    pub fn put_plugin(&self, hash: &str, bytes: &[u8]) -> Result<(), JobStoreError> {
        let path = self.loc.child(&format!("plugins/{hash}.wasm"));
        if objstore::block_on(self.loc.store.head(&path)).is_ok() {
            return Ok(());
        }
        objstore::block_on(self.loc.store.put(&path, bytes.to_vec().into()))
            .map(|_| ())
            .map_err(|e| self.err(&path, e))
    }

    /// A plugin by its hash; `None` if the store has none.
    pub fn plugin(&self, hash: &str) -> Result<Option<Vec<u8>>, JobStoreError> {
        let path = self.loc.child(&format!("plugins/{hash}.wasm"));
        let store = &self.loc.store;
        match objstore::block_on(async { store.get(&path).await?.bytes().await }) {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_created_once_then_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path().to_str().unwrap()).unwrap();
        assert!(store.records().unwrap().is_empty());
        assert!(store.create_record("job-1", b"{\"v\":1}".to_vec()).unwrap());
        assert!(!store.create_record("job-1", b"{\"v\":9}".to_vec()).unwrap());
        store.put_record("job-1", b"{\"v\":2}".to_vec()).unwrap();
        let records = store.records().unwrap();
        assert_eq!(records.len(), 1);
        assert!(records[0].0.ends_with("jobs/job-1.json"), "{}", records[0].0);
        assert_eq!(records[0].1, b"{\"v\":2}");
        // The default layout: the same files as a data dir's.
        assert!(dir.path().join("jobs/job-1.json").is_file());
        store.put_plugin("ab", b"wasm").unwrap();
        assert_eq!(store.plugin("ab").unwrap().as_deref(), Some(&b"wasm"[..]));
        assert_eq!(store.plugin("cd").unwrap(), None);
    }
}
