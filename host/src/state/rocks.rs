//! Keyed state in RocksDB: one column family per named state, on local
//! disk, so state can outgrow memory.

use std::path::Path;

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options, WriteOptions};

use super::{Entries, StateBackend, StateError, StateId};

/// A RocksDB database holding one subtask's keyed state.
pub struct RocksDbState {
    db: DB,
    path: String,
    names: Vec<String>,
    ordered: Vec<bool>,
    cf_options: Options,
    write: WriteOptions,
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
        Ok(RocksDbState { db, path: shown, names, ordered, cf_options, write })
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
