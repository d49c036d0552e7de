//! Keyed state in hash maps.

use std::collections::HashMap;

use super::{StateBackend, StateError, StateId};

/// Keyed state held in memory: one map per named state.
#[derive(Debug, Default)]
pub struct MemoryState {
    ids: HashMap<String, StateId>,
    tables: Vec<HashMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryState {
    fn table(&mut self, id: StateId) -> Result<&mut HashMap<Vec<u8>, Vec<u8>>, StateError> {
        self.tables.get_mut(id as usize).ok_or(StateError::UnknownState(id))
    }

    /// Number of keys with a value, over all states.
    pub fn len(&self) -> usize {
        self.tables.iter().map(HashMap::len).sum()
    }

    /// Whether no state holds a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StateBackend for MemoryState {
    fn register(&mut self, name: &str) -> Result<StateId, StateError> {
        if let Some(id) = self.ids.get(name) {
            return Ok(*id);
        }
        let id = self.tables.len() as StateId;
        self.ids.insert(name.to_owned(), id);
        self.tables.push(HashMap::new());
        Ok(id)
    }

    fn get(&mut self, state: StateId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.table(state)?.get(key).cloned())
    }

    fn put(&mut self, state: StateId, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let t = self.table(state)?;
        match t.get_mut(key) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                t.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }

    fn remove(&mut self, state: StateId, key: &[u8]) -> Result<(), StateError> {
        self.table(state)?.remove(key);
        Ok(())
    }
}
