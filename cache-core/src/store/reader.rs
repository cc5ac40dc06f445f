//! [`CacheReader`]: the read-only handle to a [`Cache`].

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use super::{Cache, Snapshot, StoreError};
use crate::index::{Index, IndexQuery, IndexValue, Indexers, Lookup};
use crate::object::{Object, ResourceVersion};

/// A read-only handle to a [`Cache`]: it reads and takes snapshots, and cannot write.
///
/// Whoever fills a cache (an informer, a reflector) keeps the [`Cache`]; handlers, listers and
/// controller contexts get a `CacheReader`, so that only the writer writes (kube-runtime splits
/// its store into a reader and a writer the same way). It sees every write to the cache as soon
/// as it is published. Cloning is cheap: clones share the cache.
///
/// The typed queries of `#[derive(Indexed)]` work on it directly and on its
/// [`snapshot`](Self::snapshot).
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{Cache, CacheReader, Indexed};
///
/// #[derive(Debug, Indexed)]
/// struct Pod { #[key] name: String, #[index] node: String }
///
/// let cache = Arc::new(Cache::<Pod>::new());
/// let reader: CacheReader<Pod> = cache.reader();
/// cache.add(Arc::new(Pod { name: "web".into(), node: "n1".into() })).unwrap();
/// assert_eq!(reader.by_node("n1").len(), 1); // sees the write
/// assert_eq!(reader.snapshot().by_node("n1")[0].name, "web");
/// ```
///
/// It has no write methods:
///
/// ```compile_fail
/// use std::sync::Arc;
/// use cache_core::{Cache, Indexed};
///
/// #[derive(Debug, Indexed)]
/// struct Pod { #[key] name: String }
///
/// let reader = Arc::new(Cache::<Pod>::new()).reader();
/// reader.add(Arc::new(Pod { name: "web".into() })).unwrap();
/// ```
///
/// ```compile_fail
/// use std::sync::Arc;
/// use cache_core::{Cache, Indexed};
///
/// #[derive(Debug, Indexed)]
/// struct Pod { #[key] name: String }
///
/// let reader = Arc::new(Cache::<Pod>::new()).reader();
/// reader.replace(Vec::new(), None).unwrap();
/// ```
pub struct CacheReader<T: Object> {
    cache: Arc<Cache<T>>,
}

impl<T: Object> Clone for CacheReader<T> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
        }
    }
}

impl<T: Object> fmt::Debug for CacheReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CacheReader")
            .field(&*self.cache.snapshot())
            .finish()
    }
}

impl<T: Object> From<Arc<Cache<T>>> for CacheReader<T> {
    fn from(cache: Arc<Cache<T>>) -> Self {
        Self { cache }
    }
}

impl<T: Object> From<&Arc<Cache<T>>> for CacheReader<T> {
    fn from(cache: &Arc<Cache<T>>) -> Self {
        Self {
            cache: cache.clone(),
        }
    }
}

impl<T: Object> From<&CacheReader<T>> for CacheReader<T> {
    fn from(reader: &CacheReader<T>) -> Self {
        reader.clone()
    }
}

impl<T: Object> Cache<T> {
    /// A read-only handle to this cache.
    pub fn reader(self: &Arc<Self>) -> CacheReader<T> {
        CacheReader::from(self)
    }
}

impl<T: Object> CacheReader<T> {
    /// Whether two handles read the same cache.
    pub fn same_cache(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cache, &other.cache)
    }

    /// Whether this handle reads `cache`.
    pub fn reads(&self, cache: &Arc<Cache<T>>) -> bool {
        Arc::ptr_eq(&self.cache, cache)
    }

    /// The current snapshot: see [`Cache::snapshot`].
    pub fn snapshot(&self) -> Arc<Snapshot<T>> {
        self.cache.snapshot()
    }

    /// The object with this key, from the current snapshot.
    pub fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        self.cache.get_by_key(key)
    }

    /// The object with `obj`'s key.
    pub fn get(&self, obj: &T) -> Option<Arc<T>> {
        self.cache.get(obj)
    }

    /// Every object of the current snapshot.
    pub fn list(&self) -> Vec<Arc<T>> {
        self.cache.list()
    }

    /// Every key of the current snapshot.
    pub fn list_keys(&self) -> Vec<T::Key> {
        self.cache.list_keys()
    }

    /// The number of objects.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The resource version of the current snapshot.
    pub fn resource_version(&self) -> Option<ResourceVersion> {
        self.cache.resource_version()
    }

    /// The installed index definitions.
    pub fn indexers(&self) -> Indexers<T> {
        self.cache.indexers()
    }

    /// Typed index query on the current snapshot: see [`Snapshot::by`].
    pub fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        self.cache.by(index, value)
    }

    /// Unique-index lookup on the current snapshot: see [`Snapshot::by_unique`].
    pub fn by_unique<V, L>(&self, index: Index<T, V>, value: L) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        self.cache.by_unique(index, value)
    }

    /// The values of an index on the current snapshot: see [`Snapshot::values`].
    pub fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        self.cache.values(index)
    }

    /// Named query on the current snapshot: see [`Snapshot::by_index`].
    ///
    /// # Errors
    ///
    /// As [`Snapshot::by_index`].
    pub fn by_index(&self, name: &str, value: &str) -> Result<Vec<Arc<T>>, StoreError> {
        self.cache.by_index(name, value)
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
        self.cache.by_index_value(name, value)
    }

    /// Named query on the current snapshot: see [`Snapshot::index`].
    ///
    /// # Errors
    ///
    /// As [`Snapshot::index`].
    pub fn index(&self, name: &str, obj: &T) -> Result<Vec<Arc<T>>, StoreError> {
        self.cache.index(name, obj)
    }

    /// Named query on the current snapshot: see [`Snapshot::index_keys`].
    ///
    /// # Errors
    ///
    /// As [`Snapshot::index_keys`].
    pub fn index_keys(&self, name: &str, value: &str) -> Result<Vec<T::Key>, StoreError> {
        self.cache.index_keys(name, value)
    }

    /// Named query on the current snapshot: see [`Snapshot::index_values`].
    ///
    /// # Errors
    ///
    /// As [`Snapshot::index_values`].
    pub fn index_values(&self, name: &str) -> Result<Vec<String>, StoreError> {
        self.cache.index_values(name)
    }
}

impl<T: Object> IndexQuery<T> for CacheReader<T> {
    fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        CacheReader::by(self, index, value)
    }

    fn by_unique<V, L>(&self, index: Index<T, V>, value: L) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        CacheReader::by_unique(self, index, value)
    }

    fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        CacheReader::values(self, index)
    }
}
