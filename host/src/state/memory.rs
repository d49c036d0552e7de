//! Keyed state in hash maps.

use std::collections::{BTreeMap, HashMap};

use smallvec::SmallVec;

use super::{Entries, StateBackend, StateError, StateId};

/// A state key or value of a hash table, held inline up to 32 bytes (a
/// short key with its key group and a window, or a small accumulator), so
/// that a lookup touches one place in memory and a write allocates nothing.
type Inline = SmallVec<[u8; 32]>;

/// One named state: a hash map, or a sorted map where prefix scans are
/// needed (map state).
#[derive(Debug)]
enum Table {
    Hash(HashMap<Inline, Inline, foldhash::fast::RandomState>),
    Sorted(BTreeMap<Vec<u8>, Vec<u8>>),
}

/// Keyed state held in memory: one map per named state.
#[derive(Debug, Default)]
pub struct MemoryState {
    ids: HashMap<String, StateId>,
    tables: Vec<Table>,
}

impl MemoryState {
    fn table(&mut self, id: StateId) -> Result<&mut Table, StateError> {
        self.tables.get_mut(id as usize).ok_or(StateError::UnknownState(id))
    }

    /// Number of keys with a value, over all states.
    pub fn len(&self) -> usize {
        self.tables
            .iter()
            .map(|t| match t {
                Table::Hash(h) => h.len(),
                Table::Sorted(s) => s.len(),
            })
            .sum()
    }

    /// Whether no state holds a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StateBackend for MemoryState {
    fn register_with(&mut self, name: &str, ordered: bool) -> Result<StateId, StateError> {
        if let Some(id) = self.ids.get(name) {
            return Ok(*id);
        }
        let id = self.tables.len() as StateId;
        self.ids.insert(name.to_owned(), id);
        self.tables.push(if ordered {
            Table::Sorted(BTreeMap::new())
        } else {
            Table::Hash(HashMap::default())
        });
        Ok(id)
    }

    fn get(&mut self, state: StateId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(match self.table(state)? {
            Table::Hash(h) => h.get(key).map(|v| v.to_vec()),
            Table::Sorted(s) => s.get(key).cloned(),
        })
    }

    fn put(&mut self, state: StateId, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        match self.table(state)? {
            Table::Hash(h) => match h.get_mut(key) {
                Some(v) => {
                    v.clear();
                    v.extend_from_slice(value);
                }
                None => {
                    h.insert(key.into(), value.into());
                }
            },
            Table::Sorted(s) => match s.get_mut(key) {
                Some(v) => {
                    v.clear();
                    v.extend_from_slice(value);
                }
                None => {
                    s.insert(key.to_vec(), value.to_vec());
                }
            },
        }
        Ok(())
    }

    fn remove(&mut self, state: StateId, key: &[u8]) -> Result<(), StateError> {
        match self.table(state)? {
            Table::Hash(h) => {
                h.remove(key);
            }
            Table::Sorted(s) => {
                s.remove(key);
            }
        }
        Ok(())
    }

    fn export(&mut self) -> Result<Vec<crate::checkpoint::TableDump>, StateError> {
        let mut names: Vec<(&String, &StateId)> = self.ids.iter().collect();
        names.sort_by_key(|(_, id)| **id);
        Ok(names
            .into_iter()
            .map(|(name, id)| {
                let (ordered, entries) = match &self.tables[*id as usize] {
                    Table::Hash(h) => {
                        (false, h.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
                    }
                    Table::Sorted(s) => {
                        (true, s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    }
                };
                crate::checkpoint::TableDump { name: name.clone(), ordered, entries }
            })
            .collect())
    }

    fn scan_prefix(&mut self, state: StateId, prefix: &[u8]) -> Result<Entries, StateError> {
        match self.table(state)? {
            Table::Sorted(s) => Ok(s
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k[prefix.len()..].to_vec(), v.clone()))
                .collect()),
            Table::Hash(_) => Err(StateError::Io {
                state: format!("#{state}"),
                reason: "prefix scan of an unordered state".into(),
            }),
        }
    }
}
