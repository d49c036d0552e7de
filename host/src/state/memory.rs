//! Keyed state in hash maps.

use std::collections::HashMap;

/// Keyed value state held in memory: one map per named state.
#[derive(Debug, Default)]
pub struct MemoryState {
    ids: HashMap<String, u32>,
    tables: Vec<HashMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryState {
    /// The id of the state called `name`, creating it on first use.
    pub fn register(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.tables.len() as u32;
        self.ids.insert(name.to_owned(), id);
        self.tables.push(HashMap::new());
        id
    }

    /// The value of `key` in state `id`.
    pub fn get(&self, id: u32, key: &[u8]) -> Option<&[u8]> {
        self.tables.get(id as usize)?.get(key).map(Vec::as_slice)
    }

    /// Sets the value of `key` in state `id`.
    pub fn put(&mut self, id: u32, key: &[u8], value: Vec<u8>) {
        if let Some(t) = self.tables.get_mut(id as usize) {
            match t.get_mut(key) {
                Some(v) => *v = value,
                None => {
                    t.insert(key.to_vec(), value);
                }
            }
        }
    }

    /// Removes `key` from state `id`.
    pub fn remove(&mut self, id: u32, key: &[u8]) {
        if let Some(t) = self.tables.get_mut(id as usize) {
            t.remove(key);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_separate_and_scoped_by_key() {
        let mut s = MemoryState::default();
        let a = s.register("a");
        let b = s.register("b");
        assert_eq!(s.register("a"), a);
        s.put(a, b"k", b"1".to_vec());
        s.put(b, b"k", b"2".to_vec());
        s.put(a, b"k", b"3".to_vec());
        assert_eq!(s.get(a, b"k"), Some(&b"3"[..]));
        assert_eq!(s.get(b, b"k"), Some(&b"2"[..]));
        assert_eq!(s.get(a, b"other"), None);
        s.remove(a, b"k");
        assert_eq!(s.get(a, b"k"), None);
        assert_eq!(s.len(), 1);
    }
}
