//! Queues between a reflector and the processing: client-go's `FIFO`, `DeltaFIFO` and `RealFIFO`,
//! typed.
//!
//! A reflector writes into a queue through the [`Store`] trait (add, update, delete, replace,
//! resync, bookmark); a consumer takes what was written with `pop`. The three queues differ in
//! what they keep:
//!
//! | queue | keeps | `pop` hands out |
//! |---|---|---|
//! | [`Fifo`] | the latest object per key, keys in first-queued order | one object |
//! | [`DeltaFifo`] | every [`Delta`] per key, keys in first-queued order | all the deltas of one key ([`Deltas`]) |
//! | [`RealFifo`] | every delta, in the order it happened, with no coalescing | one delta, or a batch of deltas with distinct keys |
//!
//! Beside them, [`Heap`] is a keyed priority queue: objects come out in an order you give, not
//! in the order they came in (client-go's `Heap`). It is not fed by a reflector.
//!
//! [`RealFifo`] in its atomic mode is what an informer uses by default (client-go's default
//! since 1.33); [`DeltaFifo`] is the older per-key queue. Both implement [`Queue`], the small
//! shape an informer drives.
//!
//! # Deletes that were missed
//!
//! When a relist shows that an object is gone but its delete was never seen, a queue emits a
//! [`Delta::Deleted`] carrying a tombstone ([`DeletedObject::Tombstone`]): the key and the last
//! known state, if any. [`DeletedObject`] is an enum, so a consumer cannot forget that case.
//!
//! # Waiting, closing and processing
//!
//! `pop` waits asynchronously for an item or for [`close`](RealFifo::close). It is cancel-safe:
//! a `pop` dropped while waiting takes nothing. Its `process` callback runs synchronously, with
//! no lock held, so producers keep enqueueing while it runs. Pops are served one at a time, in
//! order, even when several tasks pop at once. What `process` returns is handed back untouched:
//! an error is the caller's to handle and nothing is re-queued (client-go's controller ignores
//! processing errors too).
//!
//! After `close`, every waiting `pop` returns [`Closed`], writes are refused with
//! [`StoreError::Closed`], and what was queued before the close can
//! still be popped; once it is drained, `pop` returns [`Closed`] at once.
//!
//! # Synced
//!
//! `has_synced` follows client-go's rule: the queue has synced once it has been populated (by a
//! first `replace`, or by any add, update or delete before one) and every item queued by that
//! first `replace` has been popped **and processed**. The `is_in_initial_list` flag handed to
//! `process` is true while the queue has not synced.

/// The lifecycle every queue shares, written once: the state lock, the closed check for writes,
/// and the public `has_synced`, `wait_synced`, `close`, `is_closed` and `is_empty`. Expanded
/// inside an inherent `impl` of a queue with fields `state: Mutex<State<T>>` and
/// `signals: Signals` and a `len` method.
macro_rules! queue_lifecycle {
    () => {
        fn lock(&self) -> MutexGuard<'_, State<T>> {
            // Every change to the state completes in small steps without calling user code; a
            // poisoned lock (a panic elsewhere while holding it) leaves it consistent.
            self.state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        /// The state, for a write: refused once the queue is closed.
        fn open(&self) -> Result<MutexGuard<'_, State<T>>, StoreError> {
            let state = self.lock();
            if self.signals.is_closed() {
                Err(StoreError::Closed)
            } else {
                Ok(state)
            }
        }

        /// Applies `write` to the open state, then wakes a waiting pop if `write` says it
        /// queued something.
        fn write(&self, write: impl FnOnce(&mut State<T>) -> bool) -> Result<(), StoreError> {
            let mut state = self.open()?;
            let queued = write(&mut state);
            drop(state);
            if queued {
                self.signals.item_ready();
            }
            Ok(())
        }

        /// Applies a batch of `total` changes with `write` to the open state, then wakes a
        /// waiting pop; every change is refused if the queue is closed.
        fn write_batch(
            &self,
            total: usize,
            write: impl FnOnce(&mut State<T>),
        ) -> Result<(), TransactionError> {
            let Ok(mut state) = self.open() else {
                return Err(all_closed(total));
            };
            write(&mut state);
            drop(state);
            self.signals.item_ready();
            Ok(())
        }

        /// Whether the first list has been popped and processed (see the [module docs](super)).
        pub fn has_synced(&self) -> bool {
            self.signals.has_synced()
        }

        /// Waits until [`has_synced`](Self::has_synced).
        ///
        /// # Errors
        ///
        /// [`Closed`] if the queue is closed before it syncs.
        pub async fn wait_synced(&self) -> Result<(), Closed> {
            self.signals.wait_synced().await
        }

        /// Closes the queue: waiting pops return [`Closed`], writes are refused. What is queued
        /// can still be popped.
        pub fn close(&self) {
            let _state = self.lock();
            self.signals.close();
        }

        /// Whether [`close`](Self::close) was called.
        pub fn is_closed(&self) -> bool {
            self.signals.is_closed()
        }

        /// Whether nothing is queued.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    };
}

/// The [`Queue`] methods that forward to a queue's inherent lifecycle methods of the same name.
macro_rules! forward_queue_lifecycle {
    ($queue:ident) => {
        fn has_synced(&self) -> bool {
            $queue::has_synced(self)
        }

        async fn wait_synced(&self) -> Result<(), Closed> {
            $queue::wait_synced(self).await
        }

        fn close(&self) {
            $queue::close(self);
        }

        fn is_closed(&self) -> bool {
            $queue::is_closed(self)
        }
    };
}

mod delta_fifo;
mod fifo;
mod heap;
mod real_fifo;
mod signal;

#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub use delta_fifo::{DeltaFifo, DeltaFifoOptions, Deltas};
pub use fifo::Fifo;
pub use heap::Heap;
pub use real_fifo::{RealFifo, RealFifoOptions, ReplaceMode};

use crate::object::{Object, ResourceVersion};
use crate::store::{Cache, Store, StoreError, TransactionError};

/// The queue has been closed: nothing more will come out of it.
///
/// Returned by `pop` once the queue is closed and drained, and by every `pop` that was waiting
/// when [`close`](RealFifo::close) was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("the queue is closed")]
pub struct Closed;

impl From<Closed> for crate::StoreError {
    fn from(_: Closed) -> Self {
        crate::StoreError::Closed
    }
}

/// A change, as a queue hands it to its consumer (client-go's `Delta`).
///
/// The first five cases concern one object; the last three concern the whole collection and are
/// emitted only by a [`RealFifo`] in its atomic mode.
pub enum Delta<T: Object> {
    /// The object was created.
    Added(Arc<T>),
    /// The object was changed.
    Updated(Arc<T>),
    /// The object was deleted. It is either its last state as the source sent it, or a
    /// tombstone for a delete the watch missed.
    Deleted(DeletedObject<T>),
    /// The object is part of a relist ([`Store::replace`]), when the queue is asked to say so
    /// instead of [`Sync`](Self::Sync).
    Replaced(Arc<T>),
    /// The object is part of a relist, or is re-delivered by a resync.
    Sync(Arc<T>),
    /// A whole relist in one delta: the consumer replaces its content with `objects`, and
    /// announces as deleted whatever it holds that is not among them.
    ReplacedAll {
        /// The version of the list.
        resource_version: Option<ResourceVersion>,
        /// Every object of the list, transformed.
        objects: Vec<Arc<T>>,
    },
    /// A whole resync in one delta: the consumer re-delivers everything it holds.
    SyncAll,
    /// The source reached `resource_version` with no change to the collection.
    Bookmark {
        /// The version reached.
        resource_version: ResourceVersion,
    },
}

impl<T: Object> Delta<T> {
    /// The key of the object the delta concerns; `None` for the collection-wide
    /// [`ReplacedAll`](Self::ReplacedAll), [`SyncAll`](Self::SyncAll) and
    /// [`Bookmark`](Self::Bookmark).
    pub fn key(&self) -> Option<T::Key> {
        match self {
            Delta::Added(o) | Delta::Updated(o) | Delta::Replaced(o) | Delta::Sync(o) => {
                Some(o.key())
            }
            Delta::Deleted(d) => Some(d.key()),
            Delta::ReplacedAll { .. } | Delta::SyncAll | Delta::Bookmark { .. } => None,
        }
    }

    /// The object the delta carries: for a delete, the last known state (`None` for a tombstone
    /// without one); `None` for the collection-wide cases.
    pub fn object(&self) -> Option<&Arc<T>> {
        match self {
            Delta::Added(o) | Delta::Updated(o) | Delta::Replaced(o) | Delta::Sync(o) => Some(o),
            Delta::Deleted(d) => d.object(),
            Delta::ReplacedAll { .. } | Delta::SyncAll | Delta::Bookmark { .. } => None,
        }
    }

    /// Whether this is a [`Deleted`](Self::Deleted).
    pub fn is_deleted(&self) -> bool {
        matches!(self, Delta::Deleted(_))
    }

    /// The name of the case, as client-go spells its `DeltaType` (`"Added"`, `"Deleted"`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Delta::Added(_) => "Added",
            Delta::Updated(_) => "Updated",
            Delta::Deleted(_) => "Deleted",
            Delta::Replaced(_) => "Replaced",
            Delta::Sync(_) => "Sync",
            Delta::ReplacedAll { .. } => "ReplacedAll",
            Delta::SyncAll => "SyncAll",
            Delta::Bookmark { .. } => "Bookmark",
        }
    }

    /// Whether the delta concerns one object, so that it can be processed in a batch with
    /// others (client-go's batchable types).
    pub(crate) fn is_per_object(&self) -> bool {
        !matches!(
            self,
            Delta::ReplacedAll { .. } | Delta::SyncAll | Delta::Bookmark { .. }
        )
    }
}

impl<T: Object> Clone for Delta<T> {
    fn clone(&self) -> Self {
        match self {
            Delta::Added(o) => Delta::Added(o.clone()),
            Delta::Updated(o) => Delta::Updated(o.clone()),
            Delta::Deleted(d) => Delta::Deleted(d.clone()),
            Delta::Replaced(o) => Delta::Replaced(o.clone()),
            Delta::Sync(o) => Delta::Sync(o.clone()),
            Delta::ReplacedAll {
                resource_version,
                objects,
            } => Delta::ReplacedAll {
                resource_version: resource_version.clone(),
                objects: objects.clone(),
            },
            Delta::SyncAll => Delta::SyncAll,
            Delta::Bookmark { resource_version } => Delta::Bookmark {
                resource_version: resource_version.clone(),
            },
        }
    }
}

impl<T: Object + fmt::Debug> fmt::Debug for Delta<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delta::Added(o) => f.debug_tuple("Added").field(o).finish(),
            Delta::Updated(o) => f.debug_tuple("Updated").field(o).finish(),
            Delta::Deleted(d) => f.debug_tuple("Deleted").field(d).finish(),
            Delta::Replaced(o) => f.debug_tuple("Replaced").field(o).finish(),
            Delta::Sync(o) => f.debug_tuple("Sync").field(o).finish(),
            Delta::ReplacedAll {
                resource_version,
                objects,
            } => f
                .debug_struct("ReplacedAll")
                .field("resource_version", resource_version)
                .field("objects", objects)
                .finish(),
            Delta::SyncAll => f.write_str("SyncAll"),
            Delta::Bookmark { resource_version } => f
                .debug_struct("Bookmark")
                .field("resource_version", resource_version)
                .finish(),
        }
    }
}

impl<T: Object + PartialEq> PartialEq for Delta<T> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Delta::Added(a), Delta::Added(b))
            | (Delta::Updated(a), Delta::Updated(b))
            | (Delta::Replaced(a), Delta::Replaced(b))
            | (Delta::Sync(a), Delta::Sync(b)) => a == b,
            (Delta::Deleted(a), Delta::Deleted(b)) => a == b,
            (
                Delta::ReplacedAll {
                    resource_version: ra,
                    objects: a,
                },
                Delta::ReplacedAll {
                    resource_version: rb,
                    objects: b,
                },
            ) => ra == rb && a == b,
            (Delta::SyncAll, Delta::SyncAll) => true,
            (
                Delta::Bookmark {
                    resource_version: a,
                },
                Delta::Bookmark {
                    resource_version: b,
                },
            ) => a == b,
            _ => false,
        }
    }
}

/// What a delete carries: the object's last state, or a tombstone when the delete itself was
/// missed (client-go's `DeletedObject`, an enum so that no consumer forgets the tombstone).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{DeletedFinalStateUnknown, DeletedObject, Object, ObjectKey};
///
/// struct Pod { name: String }
/// impl Object for Pod {
///     type Key = ObjectKey;
///     fn key(&self) -> ObjectKey { ObjectKey::new("default", &self.name) }
/// }
///
/// fn on_delete(deleted: &DeletedObject<Pod>) -> String {
///     match deleted {
///         DeletedObject::Object(pod) => format!("deleted {}", pod.name),
///         DeletedObject::Tombstone(t) => format!("gone while unwatched: {}", t.key),
///     }
/// }
///
/// let tombstone = DeletedObject::Tombstone(DeletedFinalStateUnknown {
///     key: ObjectKey::new("default", "web"),
///     object: None,
/// });
/// assert_eq!(on_delete(&tombstone), "gone while unwatched: default/web");
/// assert_eq!(tombstone.key().to_string(), "default/web");
/// let pod = DeletedObject::Object(Arc::new(Pod { name: "db".into() }));
/// assert_eq!(pod.key().to_string(), "default/db");
/// ```
pub enum DeletedObject<T: Object> {
    /// The object's last state, as the source sent it with the delete.
    Object(Arc<T>),
    /// The delete was missed: a relist showed the object gone.
    Tombstone(DeletedFinalStateUnknown<T>),
}

impl<T: Object> DeletedObject<T> {
    /// The key of the deleted object; a tombstone's own key takes priority.
    pub fn key(&self) -> T::Key {
        match self {
            DeletedObject::Object(o) => o.key(),
            DeletedObject::Tombstone(t) => t.key.clone(),
        }
    }

    /// The last known state: the object, or the tombstone's (possibly stale) object, if any.
    pub fn object(&self) -> Option<&Arc<T>> {
        match self {
            DeletedObject::Object(o) => Some(o),
            DeletedObject::Tombstone(t) => t.object.as_ref(),
        }
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(self, DeletedObject::Tombstone(_))
    }
}

impl<T: Object> Clone for DeletedObject<T> {
    fn clone(&self) -> Self {
        match self {
            DeletedObject::Object(o) => DeletedObject::Object(o.clone()),
            DeletedObject::Tombstone(t) => DeletedObject::Tombstone(t.clone()),
        }
    }
}

impl<T: Object + fmt::Debug> fmt::Debug for DeletedObject<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeletedObject::Object(o) => f.debug_tuple("Object").field(o).finish(),
            DeletedObject::Tombstone(t) => f.debug_tuple("Tombstone").field(t).finish(),
        }
    }
}

impl<T: Object + PartialEq> PartialEq for DeletedObject<T> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (DeletedObject::Object(a), DeletedObject::Object(b)) => a == b,
            (DeletedObject::Tombstone(a), DeletedObject::Tombstone(b)) => a == b,
            _ => false,
        }
    }
}

/// A tombstone: an object was deleted while the watch was not looking, and a relist showed it
/// gone (client-go's `DeletedFinalStateUnknown`).
pub struct DeletedFinalStateUnknown<T: Object> {
    /// The key of the deleted object.
    pub key: T::Key,
    /// The last state this side knew of, which may be stale; `None` when there was none.
    pub object: Option<Arc<T>>,
}

impl<T: Object> Clone for DeletedFinalStateUnknown<T> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            object: self.object.clone(),
        }
    }
}

impl<T: Object + fmt::Debug> fmt::Debug for DeletedFinalStateUnknown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeletedFinalStateUnknown")
            .field("key", &self.key)
            .field("object", &self.object)
            .finish()
    }
}

impl<T: Object + PartialEq> PartialEq for DeletedFinalStateUnknown<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.object == other.object
    }
}

/// What a queue knows to be held downstream, usually the informer's [`Cache`] (client-go's
/// `KeyListerGetter`). A relist makes tombstones for known keys that it no longer lists, and a
/// resync re-delivers known objects.
pub trait KnownObjects<T: Object>: Send + Sync {
    /// Every known key.
    fn list_keys(&self) -> Vec<T::Key>;

    /// The known object with this key.
    fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>>;
}

impl<T: Object> KnownObjects<T> for Cache<T> {
    fn list_keys(&self) -> Vec<T::Key> {
        Cache::list_keys(self)
    }

    fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        Cache::get_by_key(self, key)
    }
}

/// A function applied exactly once to every object entering a queue, before it is queued
/// (client-go's `TransformFunc`): to strip what the program never reads, or to normalise.
///
/// It is never applied to what a resync re-delivers, nor to tombstones: those objects have
/// been through it already.
pub type Transformer<T> = Arc<dyn Fn(Arc<T>) -> Arc<T> + Send + Sync>;

/// The shape an informer drives: a [`Store`] that a reflector writes into, and a consumer side
/// that hands out deltas. Implemented by [`RealFifo`] and [`DeltaFifo`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{Cache, Delta, Indexers, Object, ObjectKey, Queue, RealFifo, Store};
///
/// #[derive(Debug)]
/// struct Pod { name: String }
/// impl Object for Pod {
///     type Key = ObjectKey;
///     fn key(&self) -> ObjectKey { ObjectKey::new("default", &self.name) }
/// }
///
/// // Drains a queue into a cache, whichever queue it is.
/// async fn drain<Q: Queue<Pod>>(queue: &Q, cache: &Cache<Pod>) {
///     while !queue.has_synced() {
///         queue
///             .pop_batch(100, |deltas, _initial| {
///                 for delta in deltas {
///                     match delta {
///                         Delta::Deleted(d) => cache.delete_key(&d.key()),
///                         Delta::ReplacedAll { objects, resource_version } => {
///                             cache.replace(objects, resource_version).unwrap()
///                         }
///                         other => {
///                             if let Some(obj) = other.object() {
///                                 cache.add(obj.clone()).unwrap();
///                             }
///                         }
///                     }
///                 }
///             })
///             .await
///             .unwrap();
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let queue = RealFifo::new();
/// queue.replace(vec![Arc::new(Pod { name: "web".into() })], Some("7".into())).unwrap();
/// let cache = Cache::with_indexers(Indexers::new());
/// drain(&queue, &cache).await;
/// assert_eq!(cache.len(), 1);
/// # });
/// ```
pub trait Queue<T: Object>: Store<T> {
    /// Waits for the next deltas and hands them to `process`, with whether they belong to the
    /// initial list; returns what `process` returned, or [`Closed`].
    ///
    /// A [`RealFifo`] hands out up to `max` deltas with distinct keys (see
    /// [`RealFifo::pop_batch`]); a [`DeltaFifo`] hands out all the deltas of one key, oldest
    /// first, whatever `max` is.
    fn pop_batch<R, F>(
        &self,
        max: usize,
        process: F,
    ) -> impl Future<Output = Result<R, Closed>> + Send
    where
        F: FnOnce(Vec<Delta<T>>, bool) -> R + Send,
        R: Send;

    /// Whether everything of the first list has been popped and processed.
    fn has_synced(&self) -> bool;

    /// Waits until [`has_synced`](Self::has_synced); [`Closed`] if the queue is closed first.
    fn wait_synced(&self) -> impl Future<Output = Result<(), Closed>> + Send;

    /// Closes the queue: every waiting `pop` returns [`Closed`] and writes are refused.
    fn close(&self);

    /// Whether [`close`](Self::close) was called.
    fn is_closed(&self) -> bool;
}

/// Every change of a batch refused because the queue is closed.
fn all_closed(total: usize) -> TransactionError {
    TransactionError {
        total,
        errors: (0..total).map(|i| (i, StoreError::Closed)).collect(),
    }
}

/// A delete the watch missed: `key` with its last known state, if any.
fn tombstone<T: Object>(key: T::Key, object: Option<Arc<T>>) -> Delta<T> {
    Delta::Deleted(DeletedObject::Tombstone(DeletedFinalStateUnknown {
        key,
        object,
    }))
}
