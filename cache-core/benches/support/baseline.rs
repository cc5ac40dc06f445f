//! The baseline every figure is compared with: an indexer built the way client-go builds its
//! `threadSafeMap`. One `RwLock` over a map from key string to object, plus, per index, a map
//! from index value to the set of key strings. Readers take the read lock for the whole copy
//! (as client-go's `List` and `ByIndex` do); writers take the write lock.
//!
//! It uses the same hasher as the cache (foldhash), so that the comparison is of the designs,
//! not of the hash functions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use cache_core::ResourceVersion;

use super::workload::Obj;

type H = foldhash::fast::RandomState;
type Set = HashSet<String, H>;
/// client-go's `index`: value -> set of keys.
type IndexMap = HashMap<String, Set, H>;
/// client-go's `IndexFunc`.
type IndexFunc = Box<dyn Fn(&Obj) -> Vec<String> + Send + Sync>;

pub struct Baseline {
    indexers: Vec<(String, IndexFunc)>,
    inner: RwLock<Inner>,
}

struct Inner {
    items: HashMap<String, Arc<Obj>, H>,
    /// Index name -> index, as client-go's `Indices`.
    indices: HashMap<String, IndexMap, H>,
    rv: Option<ResourceVersion>,
}

impl Baseline {
    /// The workload's two indexes: namespace and node.
    pub fn new() -> Self {
        Self::with_indexers(vec![
            (
                "namespace".into(),
                Box::new(|o: &Obj| vec![o.namespace.clone()]),
            ),
            ("node".into(), Box::new(|o: &Obj| vec![o.node.clone()])),
        ])
    }

    /// A plain store: no index.
    pub fn without_indexes() -> Self {
        Self::with_indexers(Vec::new())
    }

    fn with_indexers(indexers: Vec<(String, IndexFunc)>) -> Self {
        let mut indices = HashMap::with_hasher(H::default());
        for (name, _) in &indexers {
            indices.insert(name.clone(), IndexMap::with_hasher(H::default()));
        }
        Self {
            indexers,
            inner: RwLock::new(Inner {
                items: HashMap::with_hasher(H::default()),
                indices,
                rv: None,
            }),
        }
    }

    /// client-go's `Add`/`Update`: key function, then the write lock.
    pub fn update(&self, obj: Arc<Obj>) {
        let key = obj.key_string();
        let mut inner = self.inner.write().unwrap();
        let inner = &mut *inner;
        if let Some(rv) = cache_core::Object::resource_version(&*obj) {
            inner.rv = Some(rv);
        }
        let old = match inner.items.get_mut(&key) {
            Some(slot) => Some(std::mem::replace(slot, obj.clone())),
            None => {
                inner.items.insert(key.clone(), obj.clone());
                None
            }
        };
        self.update_indices(&mut inner.indices, old.as_deref(), Some(&obj), &key);
    }

    /// client-go's `Transaction`: many updates under one write lock.
    pub fn update_all(&self, objs: impl IntoIterator<Item = Arc<Obj>>) {
        let mut inner = self.inner.write().unwrap();
        let inner = &mut *inner;
        for obj in objs {
            let key = obj.key_string();
            if let Some(rv) = cache_core::Object::resource_version(&*obj) {
                inner.rv = Some(rv);
            }
            let old = match inner.items.get_mut(&key) {
                Some(slot) => Some(std::mem::replace(slot, obj.clone())),
                None => {
                    inner.items.insert(key.clone(), obj.clone());
                    None
                }
            };
            self.update_indices(&mut inner.indices, old.as_deref(), Some(&obj), &key);
        }
    }

    /// client-go's `Delete`.
    pub fn delete(&self, key: &str) {
        let mut inner = self.inner.write().unwrap();
        let inner = &mut *inner;
        if let Some(old) = inner.items.remove(key) {
            self.update_indices(&mut inner.indices, Some(&old), None, key);
        }
    }

    /// client-go's `updateIndices` / `updateSingleIndex`, with its fast path: when the old and
    /// the new object have the same single value, nothing changes.
    fn update_indices(
        &self,
        indices: &mut HashMap<String, IndexMap, H>,
        old: Option<&Obj>,
        new: Option<&Obj>,
        key: &str,
    ) {
        for (name, f) in &self.indexers {
            let old_values = old.map(f).unwrap_or_default();
            let new_values = new.map(f).unwrap_or_default();
            if old_values.len() == 1 && new_values.len() == 1 && old_values[0] == new_values[0] {
                continue;
            }
            let Some(index) = indices.get_mut(name.as_str()) else {
                continue;
            };
            for value in &old_values {
                if let Some(set) = index.get_mut(value) {
                    set.remove(key);
                    if set.is_empty() {
                        index.remove(value);
                    }
                }
            }
            for value in new_values {
                index
                    .entry(value)
                    .or_insert_with(|| Set::with_hasher(H::default()))
                    .insert(key.to_owned());
            }
        }
    }

    pub fn get_by_key(&self, key: &str) -> Option<Arc<Obj>> {
        self.inner.read().unwrap().items.get(key).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Obj>> {
        let inner = self.inner.read().unwrap();
        let mut out = Vec::with_capacity(inner.items.len());
        out.extend(inner.items.values().cloned());
        out
    }

    /// client-go's `ByIndex`: the key set, then one item lookup per key, under the read lock.
    pub fn by_index(&self, name: &str, value: &str) -> Option<Vec<Arc<Obj>>> {
        let inner = self.inner.read().unwrap();
        let index = inner.indices.get(name)?;
        let Some(set) = index.get(value) else {
            return Some(Vec::new());
        };
        let mut out = Vec::with_capacity(set.len());
        for key in set {
            if let Some(o) = inner.items.get(key) {
                out.push(o.clone());
            }
        }
        Some(out)
    }

    /// client-go's `Store.Replace` (key every item into a new map) followed by
    /// `threadSafeMap.Replace` (swap the map in, reset and rebuild every index under the lock).
    pub fn replace(&self, list: Vec<Arc<Obj>>, rv: Option<ResourceVersion>) {
        let mut items = HashMap::with_capacity_and_hasher(list.len(), H::default());
        for obj in list {
            items.insert(obj.key_string(), obj);
        }
        let (old_items, old_indices) = {
            let mut guard = self.inner.write().unwrap();
            let inner = &mut *guard;
            let old_items = std::mem::replace(&mut inner.items, items);
            let old_indices: Vec<IndexMap> =
                inner.indices.values_mut().map(std::mem::take).collect();
            for (key, obj) in &inner.items {
                self.update_indices(&mut inner.indices, None, Some(obj), key);
            }
            inner.rv = rv;
            (old_items, old_indices)
        };
        // Go's collector frees the old maps later; here they are freed after the lock is let go.
        drop(old_items);
        drop(old_indices);
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap().items.len()
    }
}
