//! [`Snapshot`]: one published version of a [`Cache`](super::Cache), and the iterators over
//! its index buckets.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use super::StoreError;
use crate::engine::{self, Bucket, ErasedTable, Table, Version};
use crate::index::{Index, IndexQuery, IndexValue, Lookup};
use crate::object::{Object, ResourceVersion};

/// One consistent, immutable view of a [`Cache`](super::Cache): its objects, every index, and the resource
/// version they reflect, all at the same point in time.
///
/// A snapshot is cheap to take and cheap to hold: it shares its structure with the cache. Holding
/// it never blocks the writer; it keeps alive the storage it sees, which the writer frees once
/// the snapshot is dropped.
pub struct Snapshot<T: Object> {
    pub(super) version: Version<T::Key, T>,
    pub(super) resource_version: Option<ResourceVersion>,
}

impl<T: Object> Clone for Snapshot<T> {
    fn clone(&self) -> Self {
        Self {
            version: self.version.clone(),
            resource_version: self.resource_version.clone(),
        }
    }
}

impl<T: Object> fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("len", &self.len())
            .field("indexes", &self.index_names().collect::<Vec<_>>())
            .field("resource_version", &self.resource_version)
            .finish()
    }
}

/// How many objects [`clone_all`] looks up before cloning them.
const CHUNK: usize = 16;

/// Appends a clone of every object of `objs` to `out`. The reference counts of a chunk of
/// objects are read before any is incremented: an atomic increment of a count that is not in
/// cache stalls until the line arrives and holds back the loads behind it, so touching a chunk
/// first lets those cache misses overlap.
fn clone_all<'a, T: 'a>(out: &mut Vec<Arc<T>>, mut objs: impl Iterator<Item = &'a Arc<T>>) {
    while let Some(first) = objs.next() {
        let mut chunk = [first; CHUNK];
        let mut n = 1;
        let mut sum = Arc::strong_count(first);
        for (slot, o) in chunk[1..].iter_mut().zip(objs.by_ref()) {
            sum = sum.wrapping_add(Arc::strong_count(o));
            *slot = o;
            n += 1;
        }
        std::hint::black_box(sum);
        out.extend(chunk[..n].iter().map(|o| Arc::clone(o)));
    }
}

impl<T: Object> Snapshot<T> {
    /// The index called `name`: its position and storage.
    fn find(&self, name: &str) -> Result<(usize, &dyn ErasedTable<T::Key, T>), StoreError> {
        self.version
            .tables
            .iter()
            .position(|t| t.name() == name)
            .map(|i| (i, &*self.version.tables[i]))
            .ok_or_else(|| StoreError::UnknownIndex {
                name: name.to_owned(),
            })
    }

    fn typed<V: IndexValue>(&self, name: &str) -> Option<(usize, &Table<T, V>)> {
        let (i, t) = self.find(name).ok()?;
        Some((i, t.as_any().downcast_ref()?))
    }

    fn typed_named<V: IndexValue>(&self, name: &str) -> Result<(usize, &Table<T, V>), StoreError> {
        let (i, index) = self.find(name)?;
        let typed = index
            .as_any()
            .downcast_ref()
            .ok_or_else(|| StoreError::IndexValueType {
                name: name.to_owned(),
                actual: index.value_type(),
                requested: std::any::type_name::<V>(),
            })?;
        Ok((i, typed))
    }

    /// The bucket of `value` in `index`.
    fn bucket<V, L>(&self, index: Index<T, V>, value: L) -> Option<Bucket>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        let (i, table) = self.typed::<V>(index.name())?;
        table.bucket(&self.version, i, value.borrowed())
    }

    /// The objects of a bucket, in a new vector.
    fn collect(&self, bucket: Option<Bucket>) -> Vec<Arc<T>> {
        let mut out = Vec::new();
        if let Some(b) = bucket {
            out.reserve_exact(b.len as usize);
            clone_all(&mut out, self.version.ids(b).map(|e| e.obj()));
        }
        out
    }

    /// The number of objects.
    pub fn len(&self) -> usize {
        self.version.len()
    }

    /// Whether there are no objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The resource version this snapshot reflects: that of the last write, replace or bookmark
    /// carrying one.
    pub fn resource_version(&self) -> Option<&ResourceVersion> {
        self.resource_version.as_ref()
    }

    /// The object with this key.
    pub fn get(&self, key: &T::Key) -> Option<&Arc<T>> {
        self.version.get(key)
    }

    /// Whether an object has this key.
    pub fn contains_key(&self, key: &T::Key) -> bool {
        self.version.get(key).is_some()
    }

    /// Every object, in no particular order.
    pub fn list(&self) -> Vec<Arc<T>> {
        let mut out = Vec::with_capacity(self.len());
        clone_all(&mut out, self.version.objects());
        out
    }

    /// Every object, by reference, in no particular order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Arc<T>> {
        self.version.objects()
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &T::Key> {
        self.version.iter().map(|e| e.key())
    }

    /// Every key with its object, in no particular order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&T::Key, &Arc<T>)> {
        self.version.iter().map(|e| (e.key(), e.obj()))
    }

    /// The objects whose index `index` holds `value`, in no particular order. A `String` index
    /// accepts `&str`. An index that is not installed reads as empty.
    pub fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        self.collect(self.bucket(index, value))
    }

    /// Like [`by`](Self::by), without collecting: the objects are borrowed from the snapshot.
    pub fn by_iter<V, L>(&self, index: Index<T, V>, value: L) -> ByIter<'_, T>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        ByIter {
            inner: self.bucket(index, value).map(|b| self.version.ids(b)),
        }
    }

    /// How many objects hold `value` in `index`.
    pub fn count_by<V, L>(&self, index: Index<T, V>, value: L) -> usize
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        self.bucket(index, value).map_or(0, |b| b.len as usize)
    }

    /// The object holding `value` in a unique index (any one of them, for an index that is not
    /// unique).
    pub fn by_unique<V, L>(&self, index: Index<T, V>, value: L) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        let b = self.bucket(index, value)?;
        self.version.ids(b).next().map(|e| e.obj().clone())
    }

    /// The keys of the objects whose index `index` holds `value`, in no particular order.
    pub fn keys_by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<T::Key>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        self.bucket(index, value)
            .map(|b| self.version.ids(b).map(|e| e.key().clone()).collect())
            .unwrap_or_default()
    }

    /// Every value present in `index`, sorted.
    pub fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        let mut out: Vec<V> = self
            .typed::<V>(index.name())
            .map(|(i, t)| t.values_iter(&self.version, i).cloned().collect())
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// The bucket of a `String` value in the index `name`.
    fn bucket_str(&self, name: &str, value: &str) -> Result<Option<Bucket>, StoreError> {
        let (i, index) = self.find(name)?;
        index
            .bucket_str(&self.version, i, value)
            .ok_or_else(|| StoreError::IndexValueType {
                name: name.to_owned(),
                actual: index.value_type(),
                requested: std::any::type_name::<String>(),
            })
    }

    /// The objects whose `String`-valued index `name` holds `value` (client-go's `ByIndex`), in
    /// no particular order. An unknown value gives an empty list.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownIndex`]; [`StoreError::IndexValueType`] when the index's values are
    /// not strings (use [`by_index_value`](Self::by_index_value)).
    pub fn by_index(&self, name: &str, value: &str) -> Result<Vec<Arc<T>>, StoreError> {
        Ok(self.collect(self.bucket_str(name, value)?))
    }

    /// The objects whose index `name` holds `value`, for an index of any value type.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownIndex`]; [`StoreError::IndexValueType`] when `V` is not the index's
    /// value type.
    pub fn by_index_value<V: IndexValue>(
        &self,
        name: &str,
        value: &V,
    ) -> Result<Vec<Arc<T>>, StoreError> {
        let (i, index) = self.typed_named::<V>(name)?;
        Ok(self.collect(index.bucket(&self.version, i, value)))
    }

    /// The objects that share at least one value of index `name` with `obj` (client-go's
    /// `Index`), without duplicates, in no particular order.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownIndex`].
    pub fn index(&self, name: &str, obj: &T) -> Result<Vec<Arc<T>>, StoreError> {
        let (i, index) = self.find(name)?;
        let ids = index.matching(&self.version, i, obj);
        Ok(ids
            .into_iter()
            .map(|slot| self.version.obj(slot).clone())
            .collect())
    }

    /// The keys under `value` in the `String`-valued index `name` (client-go's `IndexKeys`).
    ///
    /// # Errors
    ///
    /// As [`by_index`](Self::by_index).
    pub fn index_keys(&self, name: &str, value: &str) -> Result<Vec<T::Key>, StoreError> {
        Ok(self
            .bucket_str(name, value)?
            .map(|b| self.version.ids(b).map(|e| e.key().clone()).collect())
            .unwrap_or_default())
    }

    /// Every value present in the `String`-valued index `name`, sorted (client-go's
    /// `ListIndexFuncValues`).
    ///
    /// # Errors
    ///
    /// As [`by_index`](Self::by_index).
    pub fn index_values(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let (i, index) = self.find(name)?;
        let mut values =
            index
                .values_str(&self.version, i)
                .ok_or_else(|| StoreError::IndexValueType {
                    name: name.to_owned(),
                    actual: index.value_type(),
                    requested: std::any::type_name::<String>(),
                })?;
        values.sort_unstable();
        Ok(values)
    }

    /// The names of the installed indexes.
    pub fn index_names(&self) -> impl Iterator<Item = &str> {
        self.version.tables.iter().map(|t| t.name())
    }

    /// Checks that every index agrees with the objects: each object sits in exactly the buckets
    /// of its values, each bucket entry is an object that has that value, and each bucket knows
    /// its size. Meant for tests of this crate and of code built on it.
    ///
    /// # Errors
    ///
    /// A description of the first disagreement.
    #[doc(hidden)]
    pub fn verify_indexes(&self) -> Result<(), String> {
        for (i, index) in self.version.tables.iter().enumerate() {
            let mut expected: Vec<(String, T::Key)> = Vec::new();
            for e in self.version.iter() {
                for v in index.debug_values(e.obj()) {
                    expected.push((v, e.key().clone()));
                }
            }
            let mut actual: Vec<(String, T::Key)> = Vec::new();
            for (value, slot) in index.debug_entries(&self.version, i) {
                let (key, obj) = (self.version.key(slot), self.version.obj(slot));
                if !self.get(key).is_some_and(|o| Arc::ptr_eq(o, obj)) {
                    return Err(format!(
                        "index {:?} holds under {value} an object for {:?} that is not the \
                         snapshot's",
                        index.name(),
                        key
                    ));
                }
                actual.push((value, key.clone()));
            }
            expected.sort();
            actual.sort();
            if expected != actual {
                return Err(format!(
                    "index {:?} disagrees with the objects: expected {} entries, found {}",
                    index.name(),
                    expected.len(),
                    actual.len()
                ));
            }
            if let Err(e) = index.verify_sizes(&self.version, i) {
                return Err(format!("index {:?}: {e}", index.name()));
            }
        }
        Ok(())
    }
}

impl<T: Object> IndexQuery<T> for Snapshot<T> {
    fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        Snapshot::by(self, index, value)
    }

    fn by_unique<V, L>(&self, index: Index<T, V>, value: L) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        Snapshot::by_unique(self, index, value)
    }

    fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        Snapshot::values(self, index)
    }
}

/// The objects under one index value, borrowed from a [`Snapshot`]; see
/// [`Snapshot::by_iter`].
pub struct ByIter<'a, T: Object> {
    inner: Option<engine::Ids<'a, T::Key, T>>,
}

impl<'a, T: Object> Iterator for ByIter<'a, T> {
    type Item = &'a Arc<T>;
    fn next(&mut self) -> Option<&'a Arc<T>> {
        self.inner.as_mut()?.next().map(|e| e.obj())
    }
}

impl<'a, T: Object> ByIter<'a, T> {
    /// The same objects, each with its key.
    ///
    /// ```
    /// use cache_core::{Cache, Indexed, ObjectKey};
    ///
    /// #[derive(Debug, Indexed)]
    /// struct Pod {
    ///     #[key(namespace)] ns: String,
    ///     #[key(name)] name: String,
    ///     #[index] node: String,
    /// }
    ///
    /// let cache = Cache::<Pod>::new();
    /// cache.add(Pod { ns: "a".into(), name: "web".into(), node: "n1".into() }.into()).unwrap();
    /// let snap = cache.snapshot();
    /// let on_n1: Vec<(&ObjectKey, &str)> = snap
    ///     .by_iter(Pod::NODE, "n1")
    ///     .with_keys()
    ///     .map(|(key, pod)| (key, pod.name.as_str()))
    ///     .collect();
    /// assert_eq!(on_n1, [(&ObjectKey::new("a", "web"), "web")]);
    /// ```
    pub fn with_keys(self) -> ByEntries<'a, T> {
        ByEntries { inner: self }
    }
}

/// The objects under one index value with their keys, borrowed from a [`Snapshot`]; see
/// [`ByIter::with_keys`].
pub struct ByEntries<'a, T: Object> {
    inner: ByIter<'a, T>,
}

impl<'a, T: Object> Iterator for ByEntries<'a, T> {
    type Item = (&'a T::Key, &'a Arc<T>);
    fn next(&mut self) -> Option<Self::Item> {
        self.inner
            .inner
            .as_mut()?
            .next()
            .map(|e| (e.key(), e.obj()))
    }
}
