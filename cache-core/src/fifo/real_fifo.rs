//! [`RealFifo`]: every event, in order, with no coalescing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::signal::{Population, Signals};
use super::{Closed, DeletedObject, Delta, KnownObjects, Transformer, all_closed, tombstone};
use crate::index::Hasher;
use crate::object::{Object, ResourceVersion};
use crate::store::{Change, Store, StoreError, TransactionError};

/// How a [`RealFifo`] turns a relist and a resync into deltas.
pub enum ReplaceMode<T: Object> {
    /// One [`Delta::ReplacedAll`] per relist and one [`Delta::SyncAll`] per resync: the
    /// consumer reconciles against its own cache (client-go's `AtomicFIFO`, the default).
    Atomic {
        /// Whether [`Store::bookmark`] queues a [`Delta::Bookmark`] (otherwise it only records
        /// the version).
        emit_bookmarks: bool,
    },
    /// Per object: a relist queues tombstone deletes for what the list lacks, first those for
    /// queued keys, then those for known keys, then a [`Delta::Replaced`] per listed object; a
    /// resync queues a [`Delta::Sync`] per known key with nothing queued.
    PerObject {
        /// What is held downstream, usually the informer's [`Cache`](crate::Cache).
        known_objects: Arc<dyn KnownObjects<T>>,
    },
}

impl<T: Object> Clone for ReplaceMode<T> {
    fn clone(&self) -> Self {
        match self {
            ReplaceMode::Atomic { emit_bookmarks } => ReplaceMode::Atomic {
                emit_bookmarks: *emit_bookmarks,
            },
            ReplaceMode::PerObject { known_objects } => ReplaceMode::PerObject {
                known_objects: known_objects.clone(),
            },
        }
    }
}

/// How a [`RealFifo`] is built. `Default` is the informer's default: atomic, with bookmarks, no
/// transformer.
///
/// client-go refuses some combinations of its options at run time (atomic events with known
/// objects, per-object events without them, bookmarks or unlocking without atomic events); here
/// [`ReplaceMode`] makes them unrepresentable, and processing never holds the queue's lock.
pub struct RealFifoOptions<T: Object> {
    /// Atomic or per-object relists and resyncs.
    pub mode: ReplaceMode<T>,
    /// Applied once to every incoming object (see [`Transformer`]).
    pub transformer: Option<Transformer<T>>,
}

impl<T: Object> Default for RealFifoOptions<T> {
    fn default() -> Self {
        Self {
            mode: ReplaceMode::Atomic {
                emit_bookmarks: true,
            },
            transformer: None,
        }
    }
}

impl<T: Object> Clone for RealFifoOptions<T> {
    fn clone(&self) -> Self {
        Self {
            mode: self.mode.clone(),
            transformer: self.transformer.clone(),
        }
    }
}

/// The in-order queue (client-go's `RealFIFO`, its informers' default queue): every event is
/// kept, in the order it happened, with no coalescing and no dedup.
///
/// - [`add`](Store::add), [`update`](Store::update) and [`delete`](Store::delete) always queue a
///   delta, even a delete of a key never seen.
/// - A relist and a resync are queued as [`ReplaceMode`] says.
/// - [`pop`](Self::pop) hands out one delta; [`pop_batch`](Self::pop_batch) up to N with
///   distinct keys, never mixing the first list's deltas with later ones.
/// - Processing holds no lock: producers keep enqueueing while a consumer processes.
/// - [`has_synced`](Self::has_synced) turns true only when the first list's deltas have all been
///   popped **and** processed.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{Object, ObjectKey, Store};
/// use cache_core::fifo::{Delta, RealFifo};
///
/// #[derive(Debug)]
/// struct Pod { name: String, rv: u64 }
/// impl Object for Pod {
///     type Key = ObjectKey;
///     fn key(&self) -> ObjectKey { ObjectKey::new("default", &self.name) }
/// }
/// let pod = |name: &str, rv| Arc::new(Pod { name: name.into(), rv });
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let fifo = RealFifo::new(); // atomic, with bookmarks
/// fifo.replace(vec![pod("a", 1), pod("b", 2)], Some("2".into()))?;
/// fifo.add(pod("c", 3))?;
/// fifo.update(pod("c", 4))?;
///
/// // The relist, in one delta, belongs to the initial list.
/// let initial = fifo.pop(|delta, initial| {
///     assert!(matches!(delta, Delta::ReplacedAll { ref objects, .. } if objects.len() == 2));
///     initial
/// }).await?;
/// assert!(initial);
/// assert!(fifo.has_synced());
///
/// // Every event is kept: two deltas for "c", which a batch never puts together.
/// let versions = |batch: Vec<Delta<Pod>>, _| -> Vec<u64> {
///     batch.iter().filter_map(|d| d.object()).map(|p| p.rv).collect()
/// };
/// assert_eq!(fifo.pop_batch(10, versions).await?, [3]);
/// assert_eq!(fifo.pop_batch(10, versions).await?, [4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct RealFifo<T: Object> {
    state: Mutex<State<T>>,
    signals: Signals,
    mode: ReplaceMode<T>,
    transformer: Option<Transformer<T>>,
}

struct State<T: Object> {
    items: VecDeque<Delta<T>>,
    population: Population,
    /// The keys being processed with their newest object (`None` for a delete). Kept only in
    /// per-object mode, where a relist and a resync must count them as queued.
    in_flight: Vec<(T::Key, Option<Arc<T>>)>,
    last_rv: Option<ResourceVersion>,
}

impl<T: Object> Default for RealFifo<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Object> fmt::Debug for RealFifo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealFifo")
            .field("len", &self.len())
            .field("has_synced", &self.has_synced())
            .field("closed", &self.is_closed())
            .field(
                "mode",
                &match self.mode {
                    ReplaceMode::Atomic { emit_bookmarks } => {
                        if emit_bookmarks {
                            "atomic, bookmarks"
                        } else {
                            "atomic"
                        }
                    }
                    ReplaceMode::PerObject { .. } => "per object",
                },
            )
            .finish()
    }
}

impl<T: Object> RealFifo<T> {
    /// An empty queue with the default options: atomic, with bookmarks.
    pub fn new() -> Self {
        Self::with_options(RealFifoOptions::default())
    }

    /// An empty per-object queue reconciling relists against `known_objects` (client-go's
    /// non-atomic `RealFIFO`).
    pub fn per_object(known_objects: Arc<dyn KnownObjects<T>>) -> Self {
        Self::with_options(RealFifoOptions {
            mode: ReplaceMode::PerObject { known_objects },
            transformer: None,
        })
    }

    /// An empty queue with these options.
    pub fn with_options(options: RealFifoOptions<T>) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                population: Population::default(),
                in_flight: Vec::new(),
                last_rv: None,
            }),
            signals: Signals::new(),
            mode: options.mode,
            transformer: options.transformer,
        }
    }

    queue_lifecycle!();

    fn transform(&self, obj: Arc<T>) -> Arc<T> {
        match &self.transformer {
            Some(t) => t(obj),
            None => obj,
        }
    }

    fn known(&self) -> Option<&Arc<dyn KnownObjects<T>>> {
        match &self.mode {
            ReplaceMode::PerObject { known_objects } => Some(known_objects),
            ReplaceMode::Atomic { .. } => None,
        }
    }

    /// Waits for the next delta and hands it to `process` with whether it belongs to the first
    /// list (`is_in_initial_list`); returns what `process` returned.
    ///
    /// No lock is held while `process` runs; the delta counts as processed when `process`
    /// returns (or unwinds), so [`has_synced`](Self::has_synced) is not true while the last
    /// delta of the first list is still being processed. Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the queue is closed and drained.
    pub async fn pop<R>(&self, process: impl FnOnce(Delta<T>, bool) -> R) -> Result<R, Closed> {
        let _turn = self.signals.turn().await;
        let (delta, initial) = self
            .signals
            .wait_for(|| {
                let mut state = self.lock();
                let state = &mut *state;
                let Some(delta) = state.items.pop_front() else {
                    return self.signals.is_closed().then_some(Err(Closed));
                };
                let initial = !state.population.is_synced();
                self.note_in_flight(state, std::slice::from_ref(&delta));
                Some(Ok((delta, initial)))
            })
            .await?;
        let _done = Processed {
            fifo: self,
            count: 1,
        };
        Ok(process(delta, initial))
    }

    /// Waits for deltas and hands up to `max` of them (at least one) to `process`, oldest
    /// first, with whether they belong to the first list; returns what `process` returned.
    ///
    /// A batch is the longest run at the head of the queue such that:
    /// - every delta concerns one object (Added, Updated, Deleted, Replaced, Sync), with keys
    ///   all distinct: the batch ends before a second delta of a key already in it;
    /// - it does not cross the end of the first list: the first list's deltas and later ones
    ///   never share a batch.
    ///
    /// A collection-wide delta ([`ReplacedAll`](Delta::ReplacedAll),
    /// [`SyncAll`](Delta::SyncAll), [`Bookmark`](Delta::Bookmark)) ends a batch and is handed
    /// out alone when it is at the head. Keys here are infallible ([`Object::key`]), so
    /// client-go's rule for a delta whose key cannot be computed (it ends the batch it joins)
    /// has no case to apply to.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the queue is closed and drained.
    pub async fn pop_batch<R>(
        &self,
        max: usize,
        process: impl FnOnce(Vec<Delta<T>>, bool) -> R,
    ) -> Result<R, Closed> {
        let _turn = self.signals.turn().await;
        let (batch, initial) = self.take(max.max(1)).await?;
        let _done = Processed {
            fifo: self,
            count: batch.len(),
        };
        Ok(process(batch, initial))
    }

    /// Waits for and takes the next batch of at most `max` deltas.
    async fn take(&self, max: usize) -> Result<(Vec<Delta<T>>, bool), Closed> {
        self.signals
            .wait_for(|| {
                let mut state = self.lock();
                let state = &mut *state;
                if state.items.is_empty() {
                    return self.signals.is_closed().then_some(Err(Closed));
                }
                let initial = !state.population.is_synced();
                let limit = match state.population.remaining() {
                    0 => max,
                    remaining => max.min(remaining),
                };
                let n = batch_len(&state.items, limit);
                let batch: Vec<Delta<T>> = state.items.drain(..n).collect();
                self.note_in_flight(state, &batch);
                Some(Ok((batch, initial)))
            })
            .await
    }

    /// In per-object mode, remembers what is being processed, for relists and resyncs.
    fn note_in_flight(&self, state: &mut State<T>, batch: &[Delta<T>]) {
        if self.known().is_none() {
            return;
        }
        state.in_flight.clear();
        for delta in batch {
            if let Some(key) = delta.key() {
                let newest = delta.object().filter(|_| !delta.is_deleted()).cloned();
                state.in_flight.push((key, newest));
            }
        }
    }

    /// How many deltas are queued.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// A copy of the queued deltas, oldest first.
    pub fn queued(&self) -> Vec<Delta<T>> {
        self.lock().items.iter().cloned().collect()
    }

    /// The transformer, if any.
    pub fn transformer(&self) -> Option<&Transformer<T>> {
        self.transformer.as_ref()
    }

    fn push(&self, state: &mut State<T>, delta: Delta<T>) {
        state.population.populate(&self.signals);
        if let Some(rv) = delta.object().and_then(|o| o.resource_version()) {
            state.last_rv = Some(rv);
        }
        state.items.push_back(delta);
    }

    /// client-go's `reconcileReplacement`: tombstones for queued keys the list lacks (unless
    /// their last delta is a delete), then for known keys the list lacks with nothing queued,
    /// then `Replaced` for each listed object.
    fn replace_per_object(state: &mut State<T>, known: &dyn KnownObjects<T>, items: Vec<Arc<T>>) {
        let listed: HashSet<T::Key, Hasher> = items.iter().map(|o| o.key()).collect();
        // Each queued (or in-flight) key, in order of first appearance, with its last object
        // (`None` when its last delta is a delete).
        let mut order: Vec<T::Key> = Vec::new();
        let mut last: HashMap<T::Key, Option<Arc<T>>, Hasher> = HashMap::default();
        let queued = state
            .in_flight
            .iter()
            .cloned()
            .chain(state.items.iter().filter_map(|d| {
                let key = d.key()?;
                Some((key, d.object().filter(|_| !d.is_deleted()).cloned()))
            }));
        for (key, obj) in queued {
            if last.insert(key.clone(), obj).is_none() {
                order.push(key);
            }
        }
        for key in order {
            if listed.contains(&key) {
                continue;
            }
            if let Some(Some(obj)) = last.get(&key) {
                let delta = tombstone(key.clone(), Some(obj.clone()));
                state.items.push_back(delta);
            }
        }
        let mut gone: Vec<T::Key> = known
            .list_keys()
            .into_iter()
            .filter(|k| !listed.contains(k) && !last.contains_key(k))
            .collect();
        gone.sort();
        for key in gone {
            let obj = known.get_by_key(&key);
            state.items.push_back(tombstone(key, obj));
        }
        state.items.extend(items.into_iter().map(Delta::Replaced));
    }
}

/// How many deltas at the head of `items` make one batch of at most `limit`.
fn batch_len<T: Object>(items: &VecDeque<Delta<T>>, limit: usize) -> usize {
    match items.front() {
        None => return 0,
        Some(first) if !first.is_per_object() || limit <= 1 => return 1,
        Some(_) => {}
    }
    let mut keys: HashSet<T::Key, Hasher> =
        HashSet::with_capacity_and_hasher(limit.min(items.len()), Hasher::default());
    let mut n = 0;
    for delta in items.iter().take(limit) {
        let fresh = delta.key().is_some_and(|key| keys.insert(key));
        if !fresh {
            break;
        }
        n += 1;
    }
    n
}

/// Counts popped deltas as processed when dropped, even if `process` panicked.
struct Processed<'a, T: Object> {
    fifo: &'a RealFifo<T>,
    count: usize,
}

impl<T: Object> Drop for Processed<'_, T> {
    fn drop(&mut self) {
        let mut state = self.fifo.lock();
        state.in_flight.clear();
        state.population.processed(self.count, &self.fifo.signals);
    }
}

impl<T: Object> Store<T> for RealFifo<T> {
    fn add(&self, obj: Arc<T>) -> Result<(), StoreError> {
        let obj = self.transform(obj);
        self.write(|state| {
            self.push(state, Delta::Added(obj));
            true
        })
    }

    fn update(&self, obj: Arc<T>) -> Result<(), StoreError> {
        let obj = self.transform(obj);
        self.write(|state| {
            self.push(state, Delta::Updated(obj));
            true
        })
    }

    fn delete(&self, obj: Arc<T>) -> Result<(), StoreError> {
        let obj = self.transform(obj);
        self.write(|state| {
            self.push(state, Delta::Deleted(DeletedObject::Object(obj)));
            true
        })
    }

    /// The newest object queued for each key (a tombstone's last known state; none when it
    /// has none), in order of first appearance.
    fn list(&self) -> Vec<Arc<T>> {
        let state = self.lock();
        let mut order: Vec<T::Key> = Vec::new();
        let mut newest: HashMap<T::Key, Option<Arc<T>>, Hasher> = HashMap::default();
        for delta in &state.items {
            if let Some(key) = delta.key()
                && newest
                    .insert(key.clone(), delta.object().cloned())
                    .is_none()
            {
                order.push(key);
            }
        }
        order
            .iter()
            .filter_map(|k| newest.get(k).cloned().flatten())
            .collect()
    }

    /// The keys with a queued delta, in order of first appearance.
    fn list_keys(&self) -> Vec<T::Key> {
        let state = self.lock();
        let mut seen: HashSet<T::Key, Hasher> = HashSet::default();
        state
            .items
            .iter()
            .filter_map(Delta::key)
            .filter(|k| seen.insert(k.clone()))
            .collect()
    }

    /// The newest object queued for `key`.
    fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        let state = self.lock();
        state
            .items
            .iter()
            .rev()
            .find(|d| d.key().as_ref() == Some(key))
            .and_then(|d| d.object().cloned())
    }

    fn replace(
        &self,
        items: Vec<Arc<T>>,
        resource_version: Option<ResourceVersion>,
    ) -> Result<(), StoreError> {
        let items: Vec<Arc<T>> = items.into_iter().map(|o| self.transform(o)).collect();
        let mut state = self.open()?;
        let state = &mut *state;
        match &self.mode {
            ReplaceMode::Atomic { .. } => state.items.push_back(Delta::ReplacedAll {
                resource_version: resource_version.clone(),
                objects: items,
            }),
            ReplaceMode::PerObject { known_objects } => {
                Self::replace_per_object(state, &**known_objects, items);
            }
        }
        if resource_version.is_some() {
            state.last_rv = resource_version;
        }
        state
            .population
            .first_list(state.items.len(), &self.signals);
        if !state.items.is_empty() {
            self.signals.item_ready();
        }
        Ok(())
    }

    fn resync(&self) -> Result<(), StoreError> {
        let mut state = self.open()?;
        match &self.mode {
            ReplaceMode::Atomic { .. } => state.items.push_back(Delta::SyncAll),
            ReplaceMode::PerObject { known_objects } => {
                let queued: HashSet<T::Key, Hasher> = state
                    .in_flight
                    .iter()
                    .map(|(k, _)| k.clone())
                    .chain(state.items.iter().filter_map(Delta::key))
                    .collect();
                for key in known_objects.list_keys() {
                    if queued.contains(&key) {
                        continue;
                    }
                    // Already transformed on its way in: not transformed again.
                    if let Some(obj) = known_objects.get_by_key(&key) {
                        state.items.push_back(Delta::Sync(obj));
                    }
                }
            }
        }
        let any = !state.items.is_empty();
        drop(state);
        if any {
            self.signals.item_ready();
        }
        Ok(())
    }

    fn bookmark(&self, resource_version: ResourceVersion) {
        let mut state = self.lock();
        state.last_rv = Some(resource_version.clone());
        if matches!(
            self.mode,
            ReplaceMode::Atomic {
                emit_bookmarks: true
            }
        ) && !self.signals.is_closed()
        {
            state.items.push_back(Delta::Bookmark { resource_version });
            drop(state);
            self.signals.item_ready();
        }
    }

    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.lock().last_rv.clone()
    }

    fn transaction(&self, changes: Vec<Change<T>>) -> Result<(), TransactionError> {
        let total = changes.len();
        let deltas: Vec<Delta<T>> = changes
            .into_iter()
            .map(|c| Delta::from(c.map(|o| self.transform(o))))
            .collect();
        self.write_batch(total, |state| {
            for delta in deltas {
                self.push(state, delta);
            }
        })
    }
}

impl<T: Object> super::Queue<T> for RealFifo<T> {
    async fn pop_batch<R, F>(&self, max: usize, process: F) -> Result<R, Closed>
    where
        F: FnOnce(Vec<Delta<T>>, bool) -> R + Send,
        R: Send,
    {
        RealFifo::pop_batch(self, max, process).await
    }

    forward_queue_lifecycle!(RealFifo);
}
