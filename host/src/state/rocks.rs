//! Keyed state in RocksDB: one column family per named state, on local
//! disk, so state can outgrow memory.

use std::path::{Path, PathBuf};

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options, WriteOptions};

use super::{Entries, StateBackend, StateError, StateId};
use crate::checkpoint::RocksFiles;

/// A RocksDB checkpoint on local disk (hard links to the live SST files),
/// ready to upload: the SST files are immutable and shared between
/// checkpoints; the few other files are small and go into the state file.
pub struct LocalCheckpoint {
    /// The directory holding it; deleted once uploaded.
    pub dir: PathBuf,
    /// What the state file records (instance id, small files, SST names).
    pub files: RocksFiles,
}

/// A RocksDB database holding one subtask's keyed state.
pub struct RocksDbState {
    db: DB,
    path: String,
    /// Unique to this opening of the database: SST file names restart in
    /// every new database, so shared files are named `<uid>/<file>`.
    uid: String,
    names: Vec<String>,
    ordered: Vec<bool>,
    cf_options: Options,
    write: WriteOptions,
    block_cache_bytes: usize,
}

impl RocksDbState {
    /// Creates (or reopens) the database at `path`, with a block cache of
    /// `block_cache_bytes`.
    pub fn open(path: &Path, block_cache_bytes: usize) -> Result<Self, StateError> {
        let shown = path.display().to_string();
        let open_err = |reason: String| StateError::Open { path: shown.clone(), reason };
        std::fs::create_dir_all(path).map_err(|e| open_err(e.to_string()))?;
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(block_cache_bytes));
        // A bloom filter per SST file (10 bits a key, ~1 % false hits): a
        // lookup of a key that is not there (every new key and window) reads
        // no data block instead of one per level.
        table.set_bloom_filter(10.0, false);
        let mut cf_options = Options::default();
        cf_options.set_block_based_table_factory(&table);
        cf_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Memtables sized with the cache, so a small budget really spills
        // state to SST files on disk.
        cf_options.set_write_buffer_size((block_cache_bytes / 2).max(256 << 10));
        let mut options = cf_options.clone();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let existing = DB::list_cf(&options, path).unwrap_or_default();
        let cfs = existing.iter().map(|n| ColumnFamilyDescriptor::new(n, cf_options.clone()));
        let db =
            DB::open_cf_descriptors(&options, path, cfs).map_err(|e| open_err(e.to_string()))?;
        // Durability comes from checkpoints, as in Flink: no write-ahead log.
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        let names: Vec<String> = existing.into_iter().filter(|n| n != "default").collect();
        let ordered = names.iter().map(|n| n.starts_with("map/")).collect();
        let uid = {
            use std::hash::BuildHasher;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            let seed = (std::process::id(), now.map(|d| d.as_nanos()).unwrap_or(0), &shown);
            format!("{:016x}", std::collections::hash_map::RandomState::new().hash_one(seed))
        };
        Ok(RocksDbState {
            db,
            path: shown,
            uid,
            names,
            ordered,
            cf_options,
            write,
            block_cache_bytes,
        })
    }

    /// The database's directory.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn cf(&self, state: StateId) -> Result<(&rocksdb::ColumnFamily, &str), StateError> {
        let name = self.names.get(state as usize).ok_or(StateError::UnknownState(state))?;
        let cf = self.db.cf_handle(name).ok_or(StateError::UnknownState(state))?;
        Ok((cf, name))
    }
}

/// The keyed state of an incremental RocksDB checkpoint, as tables: the
/// files are fetched (`fetch` reads a shared file by key) into a scratch
/// database, read out and deleted. Restores go through this canonical form,
/// so they work at any parallelism and into either backend.
pub fn rocks_tables(
    files: &RocksFiles,
    fetch: impl Fn(&str) -> Result<Vec<u8>, crate::checkpoint::CheckpointError>,
) -> Result<Vec<crate::checkpoint::TableDump>, String> {
    static SCRATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "flinkw-restore-{}-{}-{n}",
        std::process::id(),
        files.uid
    ));
    let result = (|| {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for (name, bytes) in &files.private {
            std::fs::write(dir.join(name), bytes).map_err(|e| e.to_string())?;
        }
        for (name, key) in files.shared.iter().zip(files.keys()) {
            let bytes = fetch(&key).map_err(|e| e.to_string())?;
            std::fs::write(dir.join(name), bytes).map_err(|e| e.to_string())?;
        }
        let mut db = RocksDbState::open(&dir, 8 << 20).map_err(|e| e.to_string())?;
        db.export().map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn io(state: &str, e: rocksdb::Error) -> StateError {
    StateError::Io { state: state.to_owned(), reason: e.to_string() }
}

impl StateBackend for RocksDbState {
    fn register_with(&mut self, name: &str, ordered: bool) -> Result<StateId, StateError> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return Ok(i as StateId);
        }
        self.db.create_cf(name, &self.cf_options).map_err(|e| io(name, e))?;
        self.names.push(name.to_owned());
        self.ordered.push(ordered);
        Ok((self.names.len() - 1) as StateId)
    }

    fn get(&mut self, state: StateId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let (cf, name) = self.cf(state)?;
        self.db.get_cf(cf, key).map_err(|e| io(name, e))
    }

    fn put(&mut self, state: StateId, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let (cf, name) = self.cf(state)?;
        self.db.put_cf_opt(cf, key, value, &self.write).map_err(|e| io(name, e))
    }

    fn remove(&mut self, state: StateId, key: &[u8]) -> Result<(), StateError> {
        let (cf, name) = self.cf(state)?;
        self.db.delete_cf_opt(cf, key, &self.write).map_err(|e| io(name, e))
    }

    fn export(&mut self) -> Result<Vec<crate::checkpoint::TableDump>, StateError> {
        let mut tables = Vec::with_capacity(self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            let (cf, _) = self.cf(i as StateId)?;
            let mut entries = Vec::new();
            for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
                let (k, v) = item.map_err(|e| io(name, e))?;
                entries.push((k.to_vec(), v.to_vec()));
            }
            tables.push(crate::checkpoint::TableDump {
                name: name.clone(),
                ordered: self.ordered[i],
                entries,
            });
        }
        Ok(tables)
    }

    /// Becomes the database of a checkpoint: its files are written into a
    /// new directory beside this one and opened there (Flink's restore of
    /// an incremental RocksDB checkpoint), without reading a single entry;
    /// the (empty) database it replaces is deleted. States registered
    /// before keep their ids.
    fn restore_files(
        &mut self,
        files: &RocksFiles,
        fetch: &dyn Fn(&str) -> Result<Vec<u8>, crate::checkpoint::CheckpointError>,
    ) -> Result<bool, StateError> {
        let dir = PathBuf::from(format!("{}.restored-{}", self.path, files.uid));
        let failed = |reason: String| StateError::Io {
            state: format!("restore into {}", dir.display()),
            reason,
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
        for (name, bytes) in &files.private {
            std::fs::write(dir.join(name), bytes).map_err(|e| failed(e.to_string()))?;
        }
        for (name, key) in files.shared.iter().zip(files.keys()) {
            let bytes = fetch(&key).map_err(|e| failed(e.to_string()))?;
            std::fs::write(dir.join(name), bytes).map_err(|e| failed(e.to_string()))?;
        }
        let mut restored = RocksDbState::open(&dir, self.block_cache_bytes)?;
        // Ids handed out so far stay valid: those names first, in order.
        let mut names = Vec::with_capacity(restored.names.len());
        let mut ordered = Vec::with_capacity(restored.names.len());
        for (name, o) in self.names.iter().zip(&self.ordered) {
            if !restored.names.contains(name) {
                restored.db.create_cf(name, &restored.cf_options).map_err(|e| io(name, e))?;
            }
            names.push(name.clone());
            ordered.push(*o);
        }
        for (name, o) in restored.names.iter().zip(&restored.ordered) {
            if !names.contains(name) {
                names.push(name.clone());
                ordered.push(*o);
            }
        }
        restored.names = names;
        restored.ordered = ordered;
        let old = std::mem::replace(self, restored);
        let old_path = old.path.clone();
        drop(old);
        let _ = std::fs::remove_dir_all(old_path);
        Ok(true)
    }

    fn local_checkpoint(&mut self, id: u64) -> Result<Option<LocalCheckpoint>, StateError> {
        let failed = |reason: String| StateError::Io { state: format!("checkpoint {id}"), reason };
        let dir = PathBuf::from(format!("{}.checkpoints/{id}", self.path));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
        }
        std::fs::create_dir_all(dir.parent().unwrap_or(&dir)).map_err(|e| failed(e.to_string()))?;
        // Memtables go to SST files first (there is no write-ahead log).
        let cfs: Vec<_> = self.names.iter().filter_map(|n| self.db.cf_handle(n)).collect();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
            .map_err(|e| failed(e.to_string()))?;
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(&dir))
            .map_err(|e| failed(e.to_string()))?;
        let mut files = RocksFiles { uid: self.uid.clone(), ..RocksFiles::default() };
        for entry in std::fs::read_dir(&dir).map_err(|e| failed(e.to_string()))? {
            let entry = entry.map_err(|e| failed(e.to_string()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".sst") {
                files.shared.push(name);
            } else {
                let bytes = std::fs::read(entry.path()).map_err(|e| failed(e.to_string()))?;
                files.private.push((name, bytes));
            }
        }
        files.shared.sort();
        files.private.sort();
        Ok(Some(LocalCheckpoint { dir, files }))
    }

    fn scan_prefix(&mut self, state: StateId, prefix: &[u8]) -> Result<Entries, StateError> {
        let (cf, name) = self.cf(state)?;
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, mode) {
            let (k, v) = item.map_err(|e| io(name, e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k[prefix.len()..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}
