//! Keyed state in RocksDB: one column family per named state, on local
//! disk, so state can outgrow memory.
//!
//! Checkpoints are incremental and mostly asynchronous
//! ([`RocksDbState::begin_checkpoint`]): at the barrier the memtables are
//! only switched (new writes go to fresh ones); the switched memtables are
//! flushed by RocksDB's background threads while records flow, and once
//! they are on disk the live SST files are hard-linked into a local
//! checkpoint ([`PendingCheckpoint::finish`]). Writes are counted per state
//! since the switch: the files are taken only once the switched memtables
//! are on disk while every write made after the barrier is still in the
//! active memtables, and that is checked again after they were taken (a
//! memtable that left the active ones could have been flushed): nothing
//! written after the barrier can reach the checkpoint. Writes wait only for
//! these two checks, not for the flush or the links.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options, WriteOptions};

use super::{Entries, StateBackend, StateError, StateId};
use crate::checkpoint::RocksFiles;

/// The database type: multi-threaded, because a pending checkpoint on
/// another thread reads its properties and links its files.
type Db = rocksdb::DBWithThreadMode<rocksdb::MultiThreaded>;

/// How long a pending checkpoint waits for the switched memtables to reach
/// disk before it gives up (the checkpoint then fails; the job goes on).
const FLUSH_WAIT: Duration = Duration::from_secs(60);

/// A RocksDB checkpoint on local disk (hard links to the live SST files),
/// ready to upload: the SST files are immutable and shared between
/// checkpoints; the few other files are small and go into the state file.
pub struct LocalCheckpoint {
    /// The directory holding it; deleted once uploaded.
    pub dir: PathBuf,
    /// What the state file records (instance id, small files, SST names).
    pub files: RocksFiles,
    /// How long the subtask's writes were held for it after the barrier,
    /// ms: the links, taken while no write may run (0 when the whole
    /// checkpoint was taken at the barrier).
    pub held_ms: u64,
}

/// Writes since the last memtable switch, shared by the database and its
/// pending checkpoint. Every write takes this lock, so a pending checkpoint
/// that holds it sees no write half done.
#[derive(Default)]
struct Writes {
    /// Counts memtable switches (one per checkpoint).
    generation: u64,
    /// The column families, by state id.
    names: Vec<String>,
    /// Writes (puts and deletes) to each state since the last switch.
    counts: Vec<u64>,
    /// Take the next checkpoint synchronously (flush, then link, while
    /// records wait): set when an asynchronous one could not prove its
    /// files free of later writes, so the next one surely succeeds.
    sync_next: bool,
}

/// A checkpoint begun at a barrier ([`RocksDbState::begin_checkpoint`]):
/// either already on local disk, or waiting for RocksDB to flush the
/// memtables switched at the barrier.
pub struct PendingCheckpoint(Pending);

enum Pending {
    Ready(LocalCheckpoint),
    Waiting(Box<Waiting>),
}

struct Waiting {
    db: Arc<Db>,
    writes: Arc<Mutex<Writes>>,
    generation: u64,
    dir: PathBuf,
    uid: String,
    adopted: Arc<HashMap<String, String>>,
    id: u64,
}

/// What the memtables say about the writes since the switch.
enum Flushed {
    /// Memtables switched at (or before) the barrier are still being
    /// flushed.
    Not,
    /// Everything before the barrier is in SST files and everything after
    /// is still in the active memtables: the live files are the barrier's.
    Exactly,
    /// Some write after the barrier was flushed too (its memtable filled
    /// up first): the live files hold more than the barrier's state.
    Past(String),
}

fn lock(writes: &Mutex<Writes>) -> std::sync::MutexGuard<'_, Writes> {
    writes.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether the live SST files hold exactly the state as of the last
/// memtable switch. Called with the writes locked (no write under way).
/// With `switched` false, only whether every write since the switch is still
/// in the active memtables (so none of them was ever flushed).
fn flushed(db: &Db, writes: &Writes, switched: bool) -> Result<Flushed, String> {
    let int = |cf: &Arc<rocksdb::BoundColumnFamily>, p: &str| {
        db.property_int_value_cf(cf, p).map_err(|e| e.to_string()).map(|v| v.unwrap_or(0))
    };
    for (name, &count) in writes.names.iter().zip(&writes.counts) {
        let Some(cf) = db.cf_handle(name) else { continue };
        if switched && int(&cf, "rocksdb.num-immutable-mem-table")? > 0 {
            return Ok(Flushed::Not);
        }
        let active = int(&cf, "rocksdb.num-entries-active-mem-table")?;
        if active != count {
            return Ok(Flushed::Past(format!(
                "state {name}: {count} writes since the barrier, {active} of them still in memory"
            )));
        }
    }
    Ok(Flushed::Exactly)
}

/// Hard-links the live SST files (and copies the small files) of `db` into
/// `dir`, without flushing: what is in the memtables is left out.
fn link(
    db: &Db,
    dir: &Path,
    uid: &str,
    adopted: &HashMap<String, String>,
) -> Result<RocksFiles, String> {
    rocksdb::checkpoint::Checkpoint::new(db)
        .and_then(|c| c.create_checkpoint_with_log_size(dir, u64::MAX))
        .map_err(|e| e.to_string())?;
    let mut files = RocksFiles { uid: uid.to_owned(), ..RocksFiles::default() };
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sst") {
            // A file the database was restored from is already in the
            // store, under the key it was uploaded with.
            files.shared.push(adopted.get(&name).cloned().unwrap_or(name));
        } else {
            let bytes = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
            files.private.push((name, bytes));
        }
    }
    files.shared.sort();
    files.private.sort();
    Ok(files)
}

impl PendingCheckpoint {
    /// Waits (up to a minute) until the memtables switched at the barrier
    /// are on disk, then links the files while no write is under way, and
    /// checks that no write after the barrier reached them. Blocks: run it
    /// off the subtask's thread. An error fails this checkpoint only; the
    /// database's next checkpoint is then taken synchronously.
    pub fn finish(self) -> Result<LocalCheckpoint, StateError> {
        let w = match self.0 {
            Pending::Ready(local) => return Ok(local),
            Pending::Waiting(w) => w,
        };
        let failed =
            |reason: String| StateError::Io { state: format!("checkpoint {}", w.id), reason };
        let started = Instant::now();
        let mut sync_next = |reason: String| {
            lock(&w.writes).sync_next = true;
            let _ = std::fs::remove_dir_all(&w.dir);
            failed(reason)
        };
        let past = |reason: String| {
            format!(
                "writes after the barrier were flushed before its files could be linked \
                 ({reason}); the next checkpoint flushes at the barrier"
            )
        };
        let later = || "a later checkpoint began before this one's files were on disk".to_owned();
        loop {
            // Under the lock no write runs: the memtables' counts are exact.
            let checked = Instant::now();
            let state = {
                let writes = lock(&w.writes);
                if writes.generation != w.generation {
                    drop(writes);
                    return Err(sync_next(later()));
                }
                flushed(&w.db, &writes, true).map_err(failed)?
            };
            match state {
                Flushed::Exactly => {
                    let mut held_ms = checked.elapsed().as_millis() as u64;
                    // Records flow meanwhile: RocksDB takes the live files
                    // first, then links and copies them (with fsyncs).
                    let linking = Instant::now();
                    let files = link(&w.db, &w.dir, &w.uid, &w.adopted).map_err(&mut sync_next)?;
                    let link_ms = linking.elapsed().as_millis() as u64;
                    // Every write since the barrier still in the active
                    // memtables: none was switched, so none flushed, while
                    // the files were taken.
                    let rechecked = Instant::now();
                    let after = {
                        let writes = lock(&w.writes);
                        if writes.generation != w.generation {
                            drop(writes);
                            return Err(sync_next(later()));
                        }
                        flushed(&w.db, &writes, false).map_err(failed)?
                    };
                    held_ms += rechecked.elapsed().as_millis() as u64;
                    if let Flushed::Past(reason) = after {
                        return Err(sync_next(past(reason)));
                    }
                    tracing::info!(
                        checkpoint = w.id,
                        flush_wait_ms = (linking - started).as_millis() as u64,
                        link_ms,
                        files = files.shared.len(),
                        "RocksDB checkpoint files linked"
                    );
                    return Ok(LocalCheckpoint { dir: w.dir, files, held_ms });
                }
                Flushed::Past(reason) => return Err(sync_next(past(reason))),
                Flushed::Not => {}
            }
            if started.elapsed() > FLUSH_WAIT {
                return Err(sync_next(format!(
                    "the memtables switched at the barrier were not flushed within {} s",
                    FLUSH_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A RocksDB database holding one subtask's keyed state.
pub struct RocksDbState {
    db: Arc<Db>,
    writes: Arc<Mutex<Writes>>,
    path: String,
    /// Unique to this opening of the database: SST file names restart in
    /// every new database, so shared files are named `<uid>/<file>`.
    uid: String,
    /// SST files this database was restored from that are already in the
    /// checkpoint store it writes to: file name → shared key. Checkpoints
    /// refer to them instead of uploading them again.
    adopted: Arc<HashMap<String, String>>,
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
        // Room for the memtable switched at a barrier (flushing while
        // records flow) and one that fills meanwhile, without stalling writes.
        cf_options.set_max_write_buffer_number(3);
        let mut options = cf_options.clone();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let existing = Db::list_cf(&options, path).unwrap_or_default();
        let cfs = existing.iter().map(|n| ColumnFamilyDescriptor::new(n, cf_options.clone()));
        let db =
            Db::open_cf_descriptors(&options, path, cfs).map_err(|e| open_err(e.to_string()))?;
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
        let writes =
            Writes { counts: vec![0; names.len()], names: names.clone(), ..Writes::default() };
        Ok(RocksDbState {
            db: Arc::new(db),
            writes: Arc::new(Mutex::new(writes)),
            path: shown,
            uid,
            adopted: Arc::default(),
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

    fn cf(
        &self,
        state: StateId,
    ) -> Result<(Arc<rocksdb::BoundColumnFamily<'_>>, &str), StateError> {
        let name = self.names.get(state as usize).ok_or(StateError::UnknownState(state))?;
        let cf = self.db.cf_handle(name).ok_or(StateError::UnknownState(state))?;
        Ok((cf, name))
    }

    /// Begins checkpoint `id` at its barrier. Normally this only switches
    /// the memtables (new writes go to fresh ones) and returns at once; the
    /// flush runs in RocksDB's background threads and
    /// [`PendingCheckpoint::finish`] links the files once it is done. After
    /// a checkpoint that could not be finished that way, the flush and the
    /// links are done here, while records wait.
    pub fn begin_checkpoint(&mut self, id: u64) -> Result<PendingCheckpoint, StateError> {
        let failed = |reason: String| StateError::Io { state: format!("checkpoint {id}"), reason };
        let dir = PathBuf::from(format!("{}.checkpoints/{id}", self.path));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
        }
        std::fs::create_dir_all(dir.parent().unwrap_or(&dir)).map_err(|e| failed(e.to_string()))?;
        let handles: Vec<_> = self.names.iter().filter_map(|n| self.db.cf_handle(n)).collect();
        let cfs: Vec<_> = handles.iter().collect();
        let mut writes = lock(&self.writes);
        writes.generation += 1;
        writes.counts.iter_mut().for_each(|c| *c = 0);
        let mut flush = rocksdb::FlushOptions::default();
        if std::mem::take(&mut writes.sync_next) {
            let started = Instant::now();
            self.db.flush_cfs_opt(&cfs, &flush).map_err(|e| failed(e.to_string()))?;
            let files = link(&self.db, &dir, &self.uid, &self.adopted).map_err(failed)?;
            tracing::info!(
                checkpoint = id,
                ms = started.elapsed().as_millis() as u64,
                "RocksDB flushed and linked at the barrier"
            );
            return Ok(PendingCheckpoint(Pending::Ready(LocalCheckpoint {
                dir,
                files,
                held_ms: 0,
            })));
        }
        // Switch the memtables; RocksDB flushes the old ones in the background.
        flush.set_wait(false);
        self.db.flush_cfs_opt(&cfs, &flush).map_err(|e| failed(e.to_string()))?;
        Ok(PendingCheckpoint(Pending::Waiting(Box::new(Waiting {
            db: self.db.clone(),
            writes: self.writes.clone(),
            generation: writes.generation,
            dir,
            uid: self.uid.clone(),
            adopted: self.adopted.clone(),
            id,
        }))))
    }
}

/// The keyed state of an incremental RocksDB checkpoint, as tables: the
/// files are fetched (`fetch` reads a shared file by key) into a scratch
/// database, read out and deleted. Restores go through this canonical form,
/// so they work at any parallelism and into either backend.
pub fn rocks_tables(
    files: &RocksFiles,
    fetch: impl Fn(&str) -> Result<Vec<u8>, crate::checkpoint::CheckpointError>,
) -> Result<Vec<crate::checkpoint::TableDump>, ReadOutError> {
    static SCRATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "flinkw-restore-{}-{}-{n}",
        std::process::id(),
        files.uid
    ));
    let local = |path: &Path, e: std::io::Error| ReadOutError::Local {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let result = (|| {
        std::fs::create_dir_all(&dir).map_err(|e| local(&dir, e))?;
        for (name, bytes) in &files.private {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| local(&path, e))?;
        }
        for (name, key) in files.file_names().zip(files.keys()) {
            let bytes = fetch(&key).map_err(ReadOutError::Fetch)?;
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| local(&path, e))?;
        }
        let rocks = |e: StateError| ReadOutError::from_rocks(&dir, e.to_string());
        let mut db = RocksDbState::open(&dir, 8 << 20).map_err(rocks)?;
        db.export().map_err(rocks)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Why [`rocks_tables`] could not read a checkpoint's files out.
#[derive(Debug)]
pub enum ReadOutError {
    /// Reading a file from the checkpoint's store failed (a checksum
    /// mismatch is [`CheckpointError::Corrupt`](crate::checkpoint::CheckpointError::Corrupt)).
    Fetch(crate::checkpoint::CheckpointError),
    /// This machine's scratch directory failed (a full or read-only disk):
    /// nothing is wrong with the checkpoint.
    Local {
        /// The file or folder.
        path: String,
        /// The operating system's message.
        reason: String,
    },
    /// RocksDB found the files damaged.
    Damaged(String),
}

impl ReadOutError {
    /// Sorts a RocksDB error while opening or reading the scratch database:
    /// its own file-system errors (`IO error: …`, e.g. no space left) are
    /// the machine's, anything else is the files'.
    fn from_rocks(dir: &Path, reason: String) -> ReadOutError {
        if reason.contains("IO error") {
            ReadOutError::Local { path: dir.display().to_string(), reason }
        } else {
            ReadOutError::Damaged(reason)
        }
    }
}

impl ReadOutError {
    /// The error of restoring checkpoint `id`'s state file `file`.
    pub fn for_checkpoint(self, id: u64, file: &str) -> crate::checkpoint::CheckpointError {
        use crate::checkpoint::CheckpointError;
        match self {
            ReadOutError::Fetch(e) => e,
            ReadOutError::Local { path, reason } => CheckpointError::LocalDisk { id, path, reason },
            ReadOutError::Damaged(reason) => {
                CheckpointError::Corrupt { id, reason: format!("{file}: {reason}") }
            }
        }
    }
}

impl std::fmt::Display for ReadOutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadOutError::Fetch(e) => write!(f, "{e}"),
            ReadOutError::Local { path, reason } => write!(f, "{path}: {reason}"),
            ReadOutError::Damaged(reason) => write!(f, "{reason}"),
        }
    }
}

fn io(state: &str, e: rocksdb::Error) -> StateError {
    StateError::Io { state: state.to_owned(), reason: e.to_string() }
}

impl StateBackend for RocksDbState {
    fn register_with(&mut self, name: &str, ordered: bool) -> Result<StateId, StateError> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return Ok(i as StateId);
        }
        let mut writes = lock(&self.writes);
        self.db.create_cf(name, &self.cf_options).map_err(|e| io(name, e))?;
        writes.names.push(name.to_owned());
        writes.counts.push(0);
        self.names.push(name.to_owned());
        self.ordered.push(ordered);
        Ok((self.names.len() - 1) as StateId)
    }

    fn get(&mut self, state: StateId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let (cf, name) = self.cf(state)?;
        self.db.get_cf(&cf, key).map_err(|e| io(name, e))
    }

    fn put(&mut self, state: StateId, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let (cf, name) = self.cf(state)?;
        let mut writes = lock(&self.writes);
        self.db.put_cf_opt(&cf, key, value, &self.write).map_err(|e| io(name, e))?;
        writes.counts[state as usize] += 1;
        Ok(())
    }

    fn remove(&mut self, state: StateId, key: &[u8]) -> Result<(), StateError> {
        let (cf, name) = self.cf(state)?;
        let mut writes = lock(&self.writes);
        self.db.delete_cf_opt(&cf, key, &self.write).map_err(|e| io(name, e))?;
        writes.counts[state as usize] += 1;
        Ok(())
    }

    fn export(&mut self) -> Result<Vec<crate::checkpoint::TableDump>, StateError> {
        let mut tables = Vec::with_capacity(self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            let (cf, _) = self.cf(i as StateId)?;
            let mut entries = Vec::new();
            for item in self.db.iterator_cf(&cf, rocksdb::IteratorMode::Start) {
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
    /// before keep their ids. With `reuse`, the SST files stay known by the
    /// keys they have in the store, and checkpoints refer to them instead
    /// of uploading them again.
    fn restore_files(
        &mut self,
        files: &RocksFiles,
        fetch: &dyn Fn(&str) -> Result<Vec<u8>, crate::checkpoint::CheckpointError>,
        reuse: bool,
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
        let mut adopted = HashMap::new();
        for (name, key) in files.file_names().zip(files.keys()) {
            let bytes = fetch(&key).map_err(|e| failed(e.to_string()))?;
            std::fs::write(dir.join(name), bytes).map_err(|e| failed(e.to_string()))?;
            adopted.insert(name.to_owned(), key);
        }
        let mut restored = RocksDbState::open(&dir, self.block_cache_bytes)?;
        if reuse {
            restored.adopted = Arc::new(adopted);
        }
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
        *lock(&restored.writes) =
            Writes { counts: vec![0; names.len()], names: names.clone(), ..Writes::default() };
        restored.names = names;
        restored.ordered = ordered;
        let old = std::mem::replace(self, restored);
        let old_path = old.path.clone();
        drop(old);
        let _ = std::fs::remove_dir_all(old_path);
        Ok(true)
    }

    fn begin_checkpoint(&mut self, id: u64) -> Result<Option<PendingCheckpoint>, StateError> {
        RocksDbState::begin_checkpoint(self, id).map(Some)
    }

    fn scan_prefix(&mut self, state: StateId, prefix: &[u8]) -> Result<Entries, StateError> {
        let (cf, name) = self.cf(state)?;
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(&cf, mode) {
            let (k, v) = item.map_err(|e| io(name, e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k[prefix.len()..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::TableDump;

    /// The entries of a local checkpoint, read back through a scratch database.
    fn contents(local: &LocalCheckpoint) -> Vec<TableDump> {
        let mut tables = rocks_tables(&local.files, |key| {
            let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
            Ok(std::fs::read(local.dir.join(name)).unwrap())
        })
        .unwrap();
        tables.retain(|t| !t.entries.is_empty());
        tables
    }

    fn fill(db: &mut RocksDbState, t: StateId, keys: std::ops::Range<u32>, tag: &[u8]) {
        for i in keys {
            db.put(t, &i.to_be_bytes(), &[tag, &[0u8; 200][..]].concat()).unwrap();
        }
    }

    fn nonempty(mut tables: Vec<TableDump>) -> Vec<TableDump> {
        tables.retain(|t| !t.entries.is_empty());
        tables
    }

    /// Puts, deletes, new states and new keys after the barrier (in the
    /// memtables, while the switched ones are flushed on another thread)
    /// are not in the checkpoint: it holds exactly the barrier's state.
    #[test]
    fn writes_after_the_barrier_stay_out_of_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = RocksDbState::open(&dir.path().join("db"), 8 << 20).unwrap();
        let t = db.register("t").unwrap();
        for round in 0..5u32 {
            fill(&mut db, t, 0..3_000, format!("round {round}").as_bytes());
            db.remove(t, &(round + 100_000).to_be_bytes()).unwrap();
            let at_barrier = nonempty(db.export().unwrap());
            let pending = db.begin_checkpoint(u64::from(round)).unwrap();
            let finisher = std::thread::spawn(move || pending.finish());
            // While it waits for the flush: rewrite, delete, add.
            fill(&mut db, t, 1_000..2_000, b"after the barrier");
            db.remove(t, &7u32.to_be_bytes()).unwrap();
            let u = db.register(&format!("new-{round}")).unwrap();
            fill(&mut db, u, 0..10, b"new state");
            fill(&mut db, t, 100_000..100_010, b"new key");
            let local = finisher.join().unwrap().unwrap();
            assert_eq!(contents(&local), at_barrier, "round {round}");
            std::fs::remove_dir_all(&local.dir).unwrap();
        }
    }

    /// When writes after the barrier fill their memtables and are flushed
    /// before the switched ones are linked, the checkpoint fails rather
    /// than hold them; the next one is taken at the barrier and is exact.
    #[test]
    fn a_checkpoint_whose_files_would_hold_later_writes_fails() {
        let dir = tempfile::tempdir().unwrap();
        // 512 KiB memtables: the writes below fill several.
        let mut db = RocksDbState::open(&dir.path().join("db"), 1 << 20).unwrap();
        let t = db.register("t").unwrap();
        fill(&mut db, t, 0..1_000, b"before");
        let pending = db.begin_checkpoint(1).unwrap();
        fill(&mut db, t, 0..20_000, b"after"); // 4 MB
        let error = pending.finish().err().expect("the later writes reached SST files");
        assert!(
            error.to_string().contains(
                "flushed before its files could be \
                             linked"
            ),
            "{error}"
        );
        assert!(!dir.path().join("db.checkpoints/1").exists());
        let at_barrier = nonempty(db.export().unwrap());
        let pending = db.begin_checkpoint(2).unwrap();
        fill(&mut db, t, 0..20_000, b"later still");
        let local = pending.finish().unwrap();
        assert_eq!(contents(&local), at_barrier);
        // And the one after goes back to linking off the barrier.
        let at_barrier = nonempty(db.export().unwrap());
        let pending = db.begin_checkpoint(3).unwrap();
        assert!(matches!(pending.0, Pending::Waiting(_)));
        let local = pending.finish().unwrap();
        assert_eq!(contents(&local), at_barrier);
    }
}
