use std::borrow::Borrow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use super::{Change, Snapshot, Store, StoreError, TransactionError};
use crate::engine::{self, Conflict};
use crate::index::{Hasher, Index, IndexQuery, IndexValue, Indexed, Indexer, Indexers, Lookup};
use crate::object::{Object, ResourceVersion};

/// How many replaced snapshots the writer keeps before dropping them itself. A reader that loads
/// a snapshot just before it is replaced almost always lets go of it within this many writes, so
/// the writer, not a reader, pays for freeing it.
const RETIRED: usize = 4;

/// The thread-safe indexed store (client-go's `ThreadSafeStore` plus `Indexer`), whose readers
/// never block.
///
/// # Reads
///
/// Every read goes through a [`Snapshot`]: an immutable, consistent view of the objects, every
/// index and the resource version at one point in time. [`Cache::snapshot`] hands one out; the
/// shorthand reads on the cache itself ([`get_by_key`](Self::get_by_key), [`list`](Self::list),
/// [`by`](Self::by), ...) each use the current one. Loading a snapshot is an atomic load (through
/// `arc-swap`): a reader never waits for a writer, and never makes a writer wait, however long it
/// keeps the snapshot. A program that reads many keys at once reads them faster through one
/// snapshot than through the shorthands, which load one each.
///
/// Two calls on the cache may see two different snapshots; two calls on one snapshot always agree.
///
/// # Writes
///
/// Writers are serialized by a mutex that readers never touch. A write copies only the path to
/// what it changes (the indexes are persistent hash tries, and the objects a persistent vector,
/// whose nodes name each other by number, so a copy touches no reference count): O(log n),
/// never a copy of the whole map.
/// [`replace`](Self::replace) builds a fresh snapshot and publishes it once;
/// [`transaction`](Self::transaction) applies many changes with one publish.
///
/// # Memory
///
/// A held snapshot keeps exactly what it sees. Storage that no snapshot can reach any more is
/// reclaimed by the writer, never by a reader: once replaced objects exceed a tenth of the live
/// ones, the next write copies the live state into fresh storage (amortized O(1) per write), and
/// the old storage is freed as soon as no snapshot uses it.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{Cache, Indexer, Indexers, Object, ObjectKey};
///
/// #[derive(Debug)]
/// struct Pod { ns: String, name: String, node: String }
/// impl Object for Pod {
///     type Key = ObjectKey;
///     fn key(&self) -> ObjectKey { ObjectKey::new(&self.ns, &self.name) }
/// }
///
/// let cache = Cache::with_indexers(
///     Indexers::new().with(Indexer::new("node", |p: &Pod| [p.node.clone()])),
/// );
/// cache.add(Arc::new(Pod { ns: "a".into(), name: "web".into(), node: "n1".into() })).unwrap();
/// cache.add(Arc::new(Pod { ns: "a".into(), name: "db".into(), node: "n2".into() })).unwrap();
///
/// let snap = cache.snapshot();
/// assert_eq!(snap.len(), 2);
/// assert_eq!(snap.by_index("node", "n1").unwrap()[0].name, "web");
/// assert!(snap.by_index("zone", "z").is_err()); // unknown index: a typed error
/// ```
pub struct Cache<T: Object> {
    current: ArcSwap<Snapshot<T>>,
    writer: Mutex<Writer<T>>,
}

struct Writer<T: Object> {
    indexers: Indexers<T>,
    store: engine::Writer<T::Key, T>,
    resource_version: Option<ResourceVersion>,
    retired: VecDeque<Arc<Snapshot<T>>>,
}

impl<T: Object> fmt::Debug for Cache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cache")
            .field(&**self.current.load())
            .finish()
    }
}

impl<T: Indexed> Default for Cache<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Indexed> Cache<T> {
    /// An empty cache with the type's own indexes ([`Indexed::indexers`]).
    pub fn new() -> Self {
        Self::with_indexers(T::indexers())
    }
}

fn violation(c: Conflict) -> StoreError {
    StoreError::UniqueViolation {
        index: c.index,
        value: c.value,
        key: c.key,
        holder: c.holder,
    }
}

impl<T: Object> Cache<T> {
    /// An empty cache with these indexes. When two share a name, the first is kept.
    pub fn with_indexers(indexers: Indexers<T>) -> Self {
        let mut kept = Indexers::new();
        for ix in indexers.iter() {
            if !kept.names().any(|n| n == ix.name()) {
                kept.push(ix.clone());
            }
        }
        let mut store =
            engine::Writer::new(kept.iter().map(Indexer::build).collect(), Hasher::default());
        let snapshot = Snapshot {
            version: store.publish(),
            resource_version: None,
        };
        Self {
            current: ArcSwap::from_pointee(snapshot),
            writer: Mutex::new(Writer {
                indexers: kept,
                store,
                resource_version: None,
                retired: VecDeque::new(),
            }),
        }
    }

    /// The current snapshot. It never changes; later writes publish new ones.
    pub fn snapshot(&self) -> Arc<Snapshot<T>> {
        self.current.load_full()
    }

    fn lock(&self) -> MutexGuard<'_, Writer<T>> {
        match self.writer.lock() {
            Ok(writer) => writer,
            Err(poisoned) => {
                // A panic (in an index function) interrupted a write: the writer's unpublished
                // state may be half-changed, but the published snapshot is whole. Start again
                // from it.
                let mut writer = poisoned.into_inner();
                let current = self.current.load();
                let items = current
                    .version
                    .iter()
                    .map(|e| (e.key().clone(), e.obj().clone()))
                    .collect();
                writer.store.replace(items);
                writer.resource_version = current.resource_version.clone();
                self.writer.clear_poison();
                writer
            }
        }
    }

    /// Runs `f` on the writer and publishes what it wrote, unless it returns an error (it then
    /// has written nothing).
    fn write<R, E>(&self, f: impl FnOnce(&mut Writer<T>) -> Result<R, E>) -> Result<R, E> {
        let mut writer = self.lock();
        let out = f(&mut writer)?;
        self.publish(&mut writer);
        Ok(out)
    }

    fn publish(&self, writer: &mut Writer<T>) {
        let next = Snapshot {
            version: writer.store.publish(),
            resource_version: writer.resource_version.clone(),
        };
        // The oldest replaced snapshot, when no reader holds it any more, carries the new one:
        // its allocation is reused instead of freed and allocated again.
        let full = writer.retired.len() >= RETIRED;
        let next = match writer.retired.front_mut().and_then(Arc::get_mut) {
            Some(spare) if full => {
                *spare = next;
                match writer.retired.pop_front() {
                    Some(arc) => arc,
                    None => unreachable!("the front was just written"),
                }
            }
            _ => Arc::new(next),
        };
        let old = self.current.swap(next);
        writer.retire(old);
        writer.store.free_unused();
    }

    /// Inserts or replaces `obj`.
    ///
    /// # Errors
    ///
    /// [`StoreError::UniqueViolation`]; nothing is written then.
    pub fn add(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.write(|w| w.put(obj))
    }

    /// Same as [`add`](Self::add), as in client-go.
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub fn update(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.add(obj)
    }

    /// Removes `obj`'s key; `obj`'s resource version, if any, becomes the cache's.
    ///
    /// # Errors
    ///
    /// Never fails today; the signature matches [`Store::delete`].
    pub fn delete(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.write(|w| {
            w.remove(&obj.key(), Some(&obj));
            Ok(())
        })
    }

    /// Removes the object with this key. The cache's resource version does not change
    /// (client-go's `Delete(key)`).
    pub fn delete_key(&self, key: &T::Key) {
        let _ = self.write(|w| {
            w.remove(key, None);
            Ok::<(), StoreError>(())
        });
    }

    /// Applies `changes` in order with one publish. Failed changes are reported with their
    /// positions; the rest are applied. The cache's resource version becomes that of the last
    /// applied change that carries one.
    ///
    /// # Errors
    ///
    /// [`TransactionError`] listing the failed changes.
    pub fn transaction(
        &self,
        changes: impl IntoIterator<Item = Change<T>>,
    ) -> Result<(), TransactionError> {
        let (total, errors) = self
            .write(|w| Ok::<_, StoreError>(w.apply_all(changes)))
            .unwrap_or_else(|_| (0, Vec::new()));
        TransactionError::check(total, errors)
    }

    /// Replaces the whole content with `items` as of `resource_version`, in one publish. A later
    /// item wins over an earlier one with the same key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Partial`] listing items rejected by a unique index; the rest are applied.
    pub fn replace(
        &self,
        items: Vec<Arc<T>>,
        resource_version: Option<ResourceVersion>,
    ) -> Result<(), StoreError> {
        let mut writer = self.lock();
        let total = items.len();
        let mut errors = Vec::new();
        if writer.store.has_unique() {
            // Unique indexes decide, in input order, which items are kept.
            writer.store.clear();
            for (i, obj) in items.into_iter().enumerate() {
                if let Err(e) = writer.store.put(obj.key(), obj) {
                    errors.push((i, violation(e)));
                }
            }
        } else {
            writer
                .store
                .replace(items.into_iter().map(|obj| (obj.key(), obj)).collect());
        }
        writer.resource_version = resource_version;
        self.publish(&mut writer);
        TransactionError::check(total, errors).map_err(StoreError::Partial)
    }

    /// Records that the source reached `resource_version` with no change here.
    pub fn bookmark(&self, resource_version: ResourceVersion) {
        let _ = self.write(|w| {
            w.resource_version = Some(resource_version);
            Ok::<(), StoreError>(())
        });
    }

    /// Adds indexes. Allowed while objects are present: they are indexed at once, in the same
    /// publish.
    ///
    /// # Errors
    ///
    /// [`StoreError::IndexConflict`] when a name is taken (or repeated); nothing is added then.
    pub fn add_indexers(&self, indexers: Indexers<T>) -> Result<(), StoreError> {
        self.write(|w| {
            let mut seen: Vec<&str> = w.indexers.names().collect();
            for name in indexers.names() {
                if seen.contains(&name) {
                    return Err(StoreError::IndexConflict {
                        name: name.to_owned(),
                    });
                }
                seen.push(name);
            }
            w.store
                .add_tables(indexers.iter().map(Indexer::build).collect());
            w.indexers.extend(indexers.iter().cloned());
            Ok(())
        })
    }

    /// Compacts the storage now (it otherwise happens by itself once replaced objects exceed a
    /// tenth of the live ones), and publishes. For tests.
    #[doc(hidden)]
    pub fn compact(&self) {
        let _ = self.write(|w| {
            w.store.compact();
            Ok::<(), StoreError>(())
        });
    }

    /// How many times the writer has compacted the storage (copied the live state into fresh
    /// storage to reclaim what replaced objects used). For tests and benchmarks.
    #[doc(hidden)]
    pub fn compactions(&self) -> u64 {
        self.lock().store.compactions()
    }

    /// The installed index definitions (client-go's `GetIndexers`).
    pub fn indexers(&self) -> Indexers<T> {
        self.lock().indexers.clone()
    }

    /// The object with this key, from the current snapshot.
    pub fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        self.current.load().get(key).cloned()
    }

    /// The object with `obj`'s key.
    pub fn get(&self, obj: &T) -> Option<Arc<T>> {
        self.get_by_key(&obj.key())
    }

    /// Every object of the current snapshot.
    pub fn list(&self) -> Vec<Arc<T>> {
        self.current.load().list()
    }

    /// Every key of the current snapshot.
    pub fn list_keys(&self) -> Vec<T::Key> {
        self.current.load().keys().cloned().collect()
    }

    /// The number of objects.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The resource version of the current snapshot.
    pub fn resource_version(&self) -> Option<ResourceVersion> {
        self.current.load().resource_version.clone()
    }

    /// Typed index query on the current snapshot: see [`Snapshot::by`].
    pub fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        self.current.load().by(index, value)
    }

    /// Unique-index lookup on the current snapshot: see [`Snapshot::by_unique`].
    pub fn by_unique<V, L>(&self, index: Index<T, V>, value: L) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        self.current.load().by_unique(index, value)
    }

    /// The values of an index on the current snapshot: see [`Snapshot::values`].
    pub fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        self.current.load().values(index)
    }

    /// Named query on the current snapshot: see [`Snapshot::by_index`].
    ///
    /// # Errors
    ///
    /// As [`Snapshot::by_index`].
    pub fn by_index(&self, name: &str, value: &str) -> Result<Vec<Arc<T>>, StoreError> {
        self.current.load().by_index(name, value)
    }

    /// Named query on the current snapshot: see [`Snapshot::by_index_value`].
    ///
    /// # Errors
    ///
    /// As [`Snapshot::by_index_value`].
    pub fn by_index_value<V: IndexValue>(
        &self,
        name: &str,
        value: &V,
    ) -> Result<Vec<Arc<T>>, StoreError> {
        self.current.load().by_index_value(name, value)
    }

    /// Named query on the current snapshot: see [`Snapshot::index`].
    ///
    /// # Errors
    ///
    /// As [`Snapshot::index`].
    pub fn index(&self, name: &str, obj: &T) -> Result<Vec<Arc<T>>, StoreError> {
        self.current.load().index(name, obj)
    }

    /// Named query on the current snapshot: see [`Snapshot::index_keys`].
    ///
    /// # Errors
    ///
    /// As [`Snapshot::index_keys`].
    pub fn index_keys(&self, name: &str, value: &str) -> Result<Vec<T::Key>, StoreError> {
        self.current.load().index_keys(name, value)
    }

    /// Named query on the current snapshot: see [`Snapshot::index_values`].
    ///
    /// # Errors
    ///
    /// As [`Snapshot::index_values`].
    pub fn index_values(&self, name: &str) -> Result<Vec<String>, StoreError> {
        self.current.load().index_values(name)
    }
}

impl<T: Object> Writer<T> {
    fn put(&mut self, obj: Arc<T>) -> Result<(), StoreError> {
        let rv = obj.resource_version();
        self.store.put(obj.key(), obj).map_err(violation)?;
        if let Some(rv) = rv {
            self.resource_version = Some(rv);
        }
        Ok(())
    }

    fn remove(&mut self, key: &T::Key, last: Option<&Arc<T>>) {
        if let Some(rv) = last.and_then(|o| o.resource_version()) {
            self.resource_version = Some(rv);
        }
        self.store.remove(key);
    }

    fn apply_all(
        &mut self,
        changes: impl IntoIterator<Item = Change<T>>,
    ) -> (usize, Vec<(usize, StoreError)>) {
        let mut errors = Vec::new();
        let mut total = 0;
        for (i, change) in changes.into_iter().enumerate() {
            total += 1;
            match change {
                Change::Add(o) | Change::Update(o) => {
                    if let Err(e) = self.put(o) {
                        errors.push((i, e));
                    }
                }
                Change::Delete(o) => self.remove(&o.key(), Some(&o)),
            }
        }
        (total, errors)
    }

    fn retire(&mut self, old: Arc<Snapshot<T>>) {
        self.retired.push_back(old);
        if self.retired.len() > RETIRED {
            // Dropped here, by the writer, unless a reader still holds it.
            self.retired.pop_front();
        }
    }
}

impl<T: Object> Store<T> for Cache<T> {
    fn add(&self, obj: Arc<T>) -> Result<(), StoreError> {
        Cache::add(self, obj)
    }
    fn update(&self, obj: Arc<T>) -> Result<(), StoreError> {
        Cache::update(self, obj)
    }
    fn delete(&self, obj: Arc<T>) -> Result<(), StoreError> {
        Cache::delete(self, obj)
    }
    fn list(&self) -> Vec<Arc<T>> {
        Cache::list(self)
    }
    fn list_keys(&self) -> Vec<T::Key> {
        Cache::list_keys(self)
    }
    fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        Cache::get_by_key(self, key)
    }
    fn replace(
        &self,
        items: Vec<Arc<T>>,
        resource_version: Option<ResourceVersion>,
    ) -> Result<(), StoreError> {
        Cache::replace(self, items, resource_version)
    }
    fn resync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn bookmark(&self, resource_version: ResourceVersion) {
        Cache::bookmark(self, resource_version);
    }
    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.resource_version()
    }
    fn transaction(&self, changes: Vec<Change<T>>) -> Result<(), TransactionError> {
        Cache::transaction(self, changes)
    }
}

impl<T: Object> IndexQuery<T> for Cache<T> {
    fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        Cache::by(self, index, value)
    }

    fn by_unique<V, L>(&self, index: Index<T, V>, value: L) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        Cache::by_unique(self, index, value)
    }

    fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        Cache::values(self, index)
    }
}
