//! The [`Store`] contract (client-go's `Store`, typed) and its main implementation, the indexed,
//! snapshot-published [`Cache`].

mod cache;
mod reader;
mod snapshot;
mod undelta;

mod expiration;
mod mutation;
mod mutation_detector;

use std::fmt;
use std::sync::Arc;

pub use cache::Cache;
pub use expiration::{
    Clock, ExpirationCache, ExpirationPolicy, FakeClock, RealClock, TimestampedEntry, TtlPolicy,
};
pub use mutation::{MutationCache, MutationCacheOptions, UncomparableVersion};
pub use mutation_detector::{MutatedObject, MutationDetector, MutationDetectorError};
pub use reader::CacheReader;
pub use snapshot::{ByEntries, ByIter, Snapshot};
pub use undelta::UndeltaStore;

use crate::object::{Object, ResourceVersion};

/// A client-side store of objects keyed by [`Object::key`]: client-go's `Store`, typed.
///
/// Writes take `Arc<T>`: an object is shared, never deep-cloned, on its way from the source to
/// the store and on to readers. Reads hand out `Arc<T>`.
///
/// Implemented by [`Cache`] (the indexed store), by the queues (which consume writes as events)
/// and by wrappers such as an undelta store.
pub trait Store<T: Object>: Send + Sync {
    /// Inserts `obj`, or replaces the object with the same key.
    ///
    /// # Errors
    ///
    /// Implementation-specific; the [`Cache`] fails on a unique-index violation.
    fn add(&self, obj: Arc<T>) -> Result<(), StoreError>;

    /// Replaces the object with `obj`'s key (inserting it when absent, as client-go does).
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    fn update(&self, obj: Arc<T>) -> Result<(), StoreError>;

    /// Removes the object with `obj`'s key. `obj` is its last known state; its resource version,
    /// if any, becomes the store's. Deleting an absent key is not an error.
    ///
    /// # Errors
    ///
    /// Implementation-specific.
    fn delete(&self, obj: Arc<T>) -> Result<(), StoreError>;

    /// Every object, in no particular order.
    fn list(&self) -> Vec<Arc<T>>;

    /// Every key, in no particular order.
    fn list_keys(&self) -> Vec<T::Key>;

    /// The stored object with `obj`'s key.
    fn get(&self, obj: &T) -> Option<Arc<T>> {
        self.get_by_key(&obj.key())
    }

    /// The stored object with this key.
    fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>>;

    /// Replaces the whole content with `items`, as of `resource_version` (a relist).
    ///
    /// # Errors
    ///
    /// [`StoreError::Partial`] when some items were rejected; the others are applied.
    fn replace(
        &self,
        items: Vec<Arc<T>>,
        resource_version: Option<ResourceVersion>,
    ) -> Result<(), StoreError>;

    /// Asks the store to re-deliver what it holds. A no-op for plain stores; queues emit `Sync`
    /// events.
    ///
    /// # Errors
    ///
    /// Implementation-specific.
    fn resync(&self) -> Result<(), StoreError>;

    /// Records that the source has reached `resource_version` with no change to this store.
    fn bookmark(&self, resource_version: ResourceVersion);

    /// The resource version of the last write, replace or bookmark (client-go's
    /// `LastStoreSyncResourceVersion`). `None` until one carries a version.
    fn last_sync_resource_version(&self) -> Option<ResourceVersion>;

    /// Applies many changes at once. Changes that fail are reported with their position; the
    /// others are applied, in order. A [`Cache`] publishes them as one snapshot; the default
    /// applies them one by one.
    ///
    /// # Errors
    ///
    /// [`TransactionError`] listing the failed changes.
    fn transaction(&self, changes: Vec<Change<T>>) -> Result<(), TransactionError> {
        let total = changes.len();
        let mut errors = Vec::new();
        for (i, change) in changes.into_iter().enumerate() {
            let result = match change {
                Change::Add(o) => self.add(o),
                Change::Update(o) => self.update(o),
                Change::Delete(o) => self.delete(o),
            };
            if let Err(e) = result {
                errors.push((i, e));
            }
        }
        TransactionError::check(total, errors)
    }
}

/// One change in a [`Store::transaction`].
#[derive(Debug)]
pub enum Change<T> {
    /// Insert or replace.
    Add(Arc<T>),
    /// Replace (or insert).
    Update(Arc<T>),
    /// Remove, carrying the last known state.
    Delete(Arc<T>),
}

impl<T> Clone for Change<T> {
    fn clone(&self) -> Self {
        match self {
            Change::Add(o) => Change::Add(o.clone()),
            Change::Update(o) => Change::Update(o.clone()),
            Change::Delete(o) => Change::Delete(o.clone()),
        }
    }
}

impl<T> Change<T> {
    /// The object the change carries.
    pub fn object(&self) -> &Arc<T> {
        match self {
            Change::Add(o) | Change::Update(o) | Change::Delete(o) => o,
        }
    }

    /// The same change with `f` applied to its object: an add stays an add, an update an
    /// update, a delete a delete.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::Change;
    ///
    /// let change = Change::Update(Arc::new(1)).map(|n| Arc::new(*n + 1));
    /// assert!(matches!(change, Change::Update(n) if *n == 2));
    /// ```
    pub fn map<U>(self, f: impl FnOnce(Arc<T>) -> Arc<U>) -> Change<U> {
        match self {
            Change::Add(o) => Change::Add(f(o)),
            Change::Update(o) => Change::Update(f(o)),
            Change::Delete(o) => Change::Delete(f(o)),
        }
    }
}

/// Why a store write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A write would put a second object under a value of a unique index. Nothing was written.
    #[error("unique index {index:?}: value {value} is already held by {holder}, cannot add {key}")]
    UniqueViolation {
        /// The index.
        index: String,
        /// The value, rendered with `Debug`.
        value: String,
        /// The key being written, rendered with `Debug`.
        key: String,
        /// The key that holds the value, rendered with `Debug`.
        holder: String,
    },
    /// [`Cache::add_indexers`] was given a name already in use (client-go's "indexer conflict").
    #[error("indexer conflict: an index named {name:?} already exists")]
    IndexConflict {
        /// The conflicting name.
        name: String,
    },
    /// A query named an index that does not exist.
    #[error("index with name {name:?} does not exist")]
    UnknownIndex {
        /// The name asked for.
        name: String,
    },
    /// A query by name used a value type that is not the index's.
    #[error("index {name:?} holds values of type {actual}, not {requested}")]
    IndexValueType {
        /// The index.
        name: String,
        /// Its value type.
        actual: &'static str,
        /// The type the query used.
        requested: &'static str,
    },
    /// Some items of a replace were rejected; the others were applied.
    #[error("{0}")]
    Partial(TransactionError),
    /// The store (a queue) has been closed.
    #[error("the store is closed")]
    Closed,
}

/// The changes of a batch that failed (client-go's `TransactionError`). The other changes were
/// applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionError {
    /// How many changes the batch held.
    pub total: usize,
    /// The position and error of each failed change, in order.
    pub errors: Vec<(usize, StoreError)>,
}

impl TransactionError {
    /// The positions of the changes that were applied.
    pub fn successful(&self) -> Vec<usize> {
        let failed: std::collections::HashSet<usize> = self.errors.iter().map(|e| e.0).collect();
        (0..self.total).filter(|i| !failed.contains(i)).collect()
    }

    pub(crate) fn check(total: usize, errors: Vec<(usize, StoreError)>) -> Result<(), Self> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Self { total, errors })
        }
    }
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} changes failed:", self.errors.len(), self.total)?;
        for (i, e) in &self.errors {
            write!(f, " [{i}] {e};")?;
        }
        Ok(())
    }
}

impl std::error::Error for TransactionError {}

#[cfg(test)]
mod tests;
