//! A map bounded by count, least recently used out: what keeps sliding sync's in-memory state
//! (connections, bump stamps) from growing without end.

use std::{
    borrow::Borrow,
    collections::{BTreeMap, HashMap},
    hash::Hash,
};

pub(super) struct Lru<K, V> {
    /// Key → value and the tick of its last use.
    map: HashMap<K, (V, u64)>,
    /// Last use → key, oldest first.
    by_use: BTreeMap<u64, K>,
    tick: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub(super) fn new(capacity: usize) -> Self {
        Lru {
            map: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
            capacity: capacity.max(1),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The value, marked as just used.
    pub(super) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.tick += 1;
        let (value, used) = self.map.get_mut(key)?;
        let old = std::mem::replace(used, self.tick);
        if let Some(k) = self.by_use.remove(&old) {
            self.by_use.insert(self.tick, k);
        }
        Some(value)
    }

    /// Inserts (or replaces) as just used; returns what had to go to stay within capacity.
    pub(super) fn insert(&mut self, key: K, value: V) -> Vec<(K, V)> {
        self.tick += 1;
        if let Some((_, old)) = self.map.insert(key.clone(), (value, self.tick)) {
            self.by_use.remove(&old);
        }
        self.by_use.insert(self.tick, key);
        let mut evicted = Vec::new();
        while self.map.len() > self.capacity {
            match self.pop_oldest() {
                Some(entry) => evicted.push(entry),
                None => break,
            }
        }
        evicted
    }

    /// Removes and returns the least recently used entry.
    pub(super) fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.by_use.pop_first()?;
        let (value, _) = self.map.remove(&key)?;
        Some((key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn the_least_recently_used_goes_first() {
        let mut lru = Lru::new(2);
        assert!(lru.insert("a", 1).is_empty());
        assert!(lru.insert("b", 2).is_empty());
        // Using "a" makes "b" the oldest.
        assert_eq!(lru.get_mut("a"), Some(&mut 1));
        assert_eq!(lru.insert("c", 3), vec![("b", 2)]);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.pop_oldest(), Some(("a", 1)));
        assert_eq!(lru.pop_oldest(), Some(("c", 3)));
        assert_eq!(lru.pop_oldest(), None);
    }

    #[test]
    fn replacing_a_key_keeps_one_entry() {
        let mut lru = Lru::new(2);
        lru.insert("a", 1);
        lru.insert("a", 2);
        assert_eq!(lru.len(), 1);
        assert_eq!(lru.get_mut("a"), Some(&mut 2));
    }
}
