//! [`DeltaFifo`]: a keyed queue that keeps every delta per key.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::signal::{Population, Signals};
use super::{Closed, DeletedObject, Delta, KnownObjects, Transformer, all_closed, tombstone};
use crate::index::Hasher;
use crate::object::{Object, ResourceVersion};
use crate::store::{Change, Store, StoreError, TransactionError};

/// The deltas of one key, oldest first, as [`DeltaFifo::pop`] hands them out (client-go's
/// `Deltas`).
pub struct Deltas<T: Object> {
    key: T::Key,
    deltas: Vec<Delta<T>>,
}

impl<T: Object> Deltas<T> {
    /// Deltas of `key`, oldest first.
    pub fn new(key: T::Key, deltas: Vec<Delta<T>>) -> Self {
        Self { key, deltas }
    }

    /// The key they concern.
    pub fn key(&self) -> &T::Key {
        &self.key
    }

    /// The oldest delta.
    pub fn oldest(&self) -> Option<&Delta<T>> {
        self.deltas.first()
    }

    /// The newest delta.
    pub fn newest(&self) -> Option<&Delta<T>> {
        self.deltas.last()
    }

    /// How many deltas.
    pub fn len(&self) -> usize {
        self.deltas.len()
    }

    /// Whether there are none (never the case for deltas popped from a queue).
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    /// The deltas, oldest first.
    pub fn iter(&self) -> std::slice::Iter<'_, Delta<T>> {
        self.deltas.iter()
    }

    /// The deltas, oldest first.
    pub fn as_slice(&self) -> &[Delta<T>] {
        &self.deltas
    }

    /// The deltas, oldest first.
    pub fn into_vec(self) -> Vec<Delta<T>> {
        self.deltas
    }
}

impl<T: Object> IntoIterator for Deltas<T> {
    type Item = Delta<T>;
    type IntoIter = std::vec::IntoIter<Delta<T>>;
    fn into_iter(self) -> Self::IntoIter {
        self.deltas.into_iter()
    }
}

impl<'a, T: Object> IntoIterator for &'a Deltas<T> {
    type Item = &'a Delta<T>;
    type IntoIter = std::slice::Iter<'a, Delta<T>>;
    fn into_iter(self) -> Self::IntoIter {
        self.deltas.iter()
    }
}

impl<T: Object> Clone for Deltas<T> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            deltas: self.deltas.clone(),
        }
    }
}

impl<T: Object + fmt::Debug> fmt::Debug for Deltas<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deltas")
            .field("key", &self.key)
            .field("deltas", &self.deltas)
            .finish()
    }
}

impl<T: Object + PartialEq> PartialEq for Deltas<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.deltas == other.deltas
    }
}

/// How a [`DeltaFifo`] is built. `Default` gives client-go's modern defaults minus the known
/// objects: `Replaced` deltas on a relist, no transformer.
pub struct DeltaFifoOptions<T: Object> {
    /// What is held downstream (usually the informer's [`Cache`](crate::Cache)). With it, a
    /// relist makes tombstones for known keys it no longer lists, a resync re-delivers known
    /// objects, and a delete of a key known there is kept. Without it, a delete of a key with
    /// nothing queued is dropped and a resync does nothing.
    pub known_objects: Option<Arc<dyn KnownObjects<T>>>,
    /// Whether a relist emits [`Delta::Replaced`] (true) or [`Delta::Sync`] (false) for each
    /// listed object.
    pub emit_replaced: bool,
    /// Applied once to every incoming object (see [`Transformer`]).
    pub transformer: Option<Transformer<T>>,
}

impl<T: Object> Default for DeltaFifoOptions<T> {
    fn default() -> Self {
        Self {
            known_objects: None,
            emit_replaced: true,
            transformer: None,
        }
    }
}

impl<T: Object> Clone for DeltaFifoOptions<T> {
    fn clone(&self) -> Self {
        Self {
            known_objects: self.known_objects.clone(),
            emit_replaced: self.emit_replaced,
            transformer: self.transformer.clone(),
        }
    }
}

/// A keyed queue of deltas (client-go's `DeltaFIFO`): every change to a key is kept, in order,
/// and a key is handed out once with all its deltas.
///
/// - Keys come out in the order they were first queued; a key popped and queued again goes to
///   the back.
/// - Only two consecutive deletes of a key collapse into one, keeping the one that is not a
///   tombstone.
/// - [`replace`](Store::replace) (a relist) queues [`Replaced`](Delta::Replaced) (or
///   [`Sync`](Delta::Sync), see [`DeltaFifoOptions::emit_replaced`]) for each listed object, then
///   a tombstone delete for each queued key the list lacks, then one for each known key the list
///   lacks and with nothing queued (in key order).
/// - [`resync`](Store::resync) queues [`Sync`](Delta::Sync) for each known key with nothing
///   queued.
/// - A [`delete`](Store::delete) of a key that is neither queued nor known is dropped.
/// - The transformer runs exactly once on every incoming object, listed ones included; never on
///   what a resync re-delivers, nor on tombstones.
///
/// While a popped key is being processed, a relist, a resync or a delete treat it as queued,
/// with its newest delta: they see what they would see if processing had held the queue's lock,
/// yet producers are never blocked by it.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{Cache, Indexers, Object, ObjectKey, Store};
/// use cache_core::fifo::{Delta, DeltaFifo, DeltaFifoOptions};
///
/// #[derive(Debug, PartialEq)]
/// struct Pod { name: String, rv: u64 }
/// impl Object for Pod {
///     type Key = ObjectKey;
///     fn key(&self) -> ObjectKey { ObjectKey::new("default", &self.name) }
/// }
/// let pod = |name: &str, rv| Arc::new(Pod { name: name.into(), rv });
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // The informer's cache already holds "old", which the next relist no longer lists.
/// let known = Arc::new(Cache::with_indexers(Indexers::new()));
/// known.add(pod("old", 1))?;
/// let fifo = DeltaFifo::with_options(DeltaFifoOptions {
///     known_objects: Some(known.clone()),
///     ..Default::default()
/// });
///
/// fifo.add(pod("web", 2))?;
/// fifo.update(pod("web", 3))?;
/// fifo.replace(vec![pod("web", 3)], Some("3".into()))?;
///
/// let web = fifo.pop(|deltas, _initial| deltas).await?;
/// assert_eq!(web.len(), 3); // Added, Updated, Replaced: nothing coalesced
/// assert!(matches!(web.newest(), Some(Delta::Replaced(p)) if p.rv == 3));
///
/// let old = fifo.pop(|deltas, _| deltas).await?;
/// match old.newest() {
///     Some(Delta::Deleted(d)) => {
///         assert!(d.is_tombstone());
///         assert_eq!(d.object().map(|p| p.rv), Some(1)); // the last known state
///     }
///     other => panic!("expected a tombstone, got {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct DeltaFifo<T: Object> {
    state: Mutex<State<T>>,
    signals: Signals,
    known: Option<Arc<dyn KnownObjects<T>>>,
    emit_replaced: bool,
    transformer: Option<Transformer<T>>,
}

struct State<T: Object> {
    items: HashMap<T::Key, Vec<Delta<T>>, Hasher>,
    queue: VecDeque<T::Key>,
    population: Population,
    /// The key being processed and its newest object, `None` when that was a delete. Kept only
    /// with known objects, where it matters.
    in_flight: Option<(T::Key, Option<Arc<T>>)>,
    last_rv: Option<ResourceVersion>,
}

impl<T: Object> State<T> {
    fn enqueue(&mut self, key: T::Key, delta: Delta<T>) {
        match self.items.get_mut(&key) {
            Some(deltas) => {
                deltas.push(delta);
                dedup_deletes(deltas);
            }
            None => {
                self.queue.push_back(key.clone());
                self.items.insert(key, vec![delta]);
            }
        }
    }

    fn in_flight(&self, key: &T::Key) -> Option<&Option<Arc<T>>> {
        match &self.in_flight {
            Some((k, obj)) if k == key => Some(obj),
            _ => None,
        }
    }
}

/// Two consecutive deletes collapse into one: the older, unless it is a tombstone.
fn dedup_deletes<T: Object>(deltas: &mut Vec<Delta<T>>) {
    let n = deltas.len();
    if n < 2 {
        return;
    }
    if let (Delta::Deleted(older), Delta::Deleted(_)) = (&deltas[n - 2], &deltas[n - 1]) {
        if older.is_tombstone() {
            deltas.swap_remove(n - 2);
        } else {
            deltas.pop();
        }
    }
}

impl<T: Object> Default for DeltaFifo<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Object> fmt::Debug for DeltaFifo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeltaFifo")
            .field("len", &self.len())
            .field("has_synced", &self.has_synced())
            .field("closed", &self.is_closed())
            .field("known_objects", &self.known.is_some())
            .field("emit_replaced", &self.emit_replaced)
            .finish()
    }
}

impl<T: Object> DeltaFifo<T> {
    /// An empty queue with the default options (no known objects, `Replaced` on relist).
    pub fn new() -> Self {
        Self::with_options(DeltaFifoOptions::default())
    }

    /// An empty queue with these options.
    pub fn with_options(options: DeltaFifoOptions<T>) -> Self {
        Self {
            state: Mutex::new(State {
                items: HashMap::with_hasher(Hasher::default()),
                queue: VecDeque::new(),
                population: Population::default(),
                in_flight: None,
                last_rv: None,
            }),
            signals: Signals::new(),
            known: options.known_objects,
            emit_replaced: options.emit_replaced,
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

    /// Waits for the next key and hands all its deltas, oldest first, to `process` with
    /// whether they belong to the first list (`is_in_initial_list`); returns what `process`
    /// returned.
    ///
    /// No lock is held while `process` runs; the key counts as processed when `process`
    /// returns (or unwinds). Nothing is re-queued whatever `process` returns. Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the queue is closed and drained.
    pub async fn pop<R>(&self, process: impl FnOnce(Deltas<T>, bool) -> R) -> Result<R, Closed> {
        let _turn = self.signals.turn().await;
        let (deltas, initial) = self
            .signals
            .wait_for(|| {
                let mut state = self.lock();
                let state = &mut *state;
                while let Some(key) = state.queue.pop_front() {
                    let Some(deltas) = state.items.remove(&key) else {
                        continue; // unreachable: queued keys always have deltas
                    };
                    let initial = !state.population.is_synced();
                    if self.known.is_some() {
                        let newest = deltas
                            .last()
                            .filter(|d| !d.is_deleted())
                            .and_then(|d| d.object().cloned());
                        state.in_flight = Some((key.clone(), newest));
                    }
                    return Some(Ok((Deltas { key, deltas }, initial)));
                }
                self.signals.is_closed().then_some(Err(Closed))
            })
            .await?;
        let _done = Processed { fifo: self };
        Ok(process(deltas, initial))
    }

    /// How many keys are queued.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// A copy of the deltas queued for `key`, oldest first.
    pub fn queued_deltas(&self, key: &T::Key) -> Option<Deltas<T>> {
        let state = self.lock();
        state.items.get(key).map(|d| Deltas {
            key: key.clone(),
            deltas: d.clone(),
        })
    }

    /// The transformer, if any.
    pub fn transformer(&self) -> Option<&Transformer<T>> {
        self.transformer.as_ref()
    }

    fn note_rv(state: &mut State<T>, obj: &T) {
        if let Some(rv) = obj.resource_version() {
            state.last_rv = Some(rv);
        }
    }

    /// Queues an add or update of an already transformed object.
    fn put(&self, state: &mut State<T>, delta: Delta<T>, obj: &Arc<T>) {
        state.population.populate(&self.signals);
        Self::note_rv(state, obj);
        state.enqueue(obj.key(), delta);
    }

    /// Queues a delete of an already transformed object, unless its key is unknown. Returns
    /// whether it was queued.
    fn remove(&self, state: &mut State<T>, obj: Arc<T>) -> bool {
        state.population.populate(&self.signals);
        Self::note_rv(state, &obj);
        let key = obj.key();
        let exists = state.items.contains_key(&key)
            || match (&self.known, state.in_flight(&key)) {
                (None, _) => false,
                // Being processed: known once processing ends, unless it is a delete.
                (Some(_), Some(newest)) => newest.is_some(),
                (Some(known), None) => known.get_by_key(&key).is_some(),
            };
        if exists {
            state.enqueue(key, Delta::Deleted(DeletedObject::Object(obj)));
        }
        exists
    }
}

/// Counts a popped key as processed when dropped, even if `process` panicked.
struct Processed<'a, T: Object> {
    fifo: &'a DeltaFifo<T>,
}

impl<T: Object> Drop for Processed<'_, T> {
    fn drop(&mut self) {
        let mut state = self.fifo.lock();
        state.in_flight = None;
        state.population.processed(1, &self.fifo.signals);
    }
}

impl<T: Object> Store<T> for DeltaFifo<T> {
    fn add(&self, obj: Arc<T>) -> Result<(), StoreError> {
        let obj = self.transform(obj);
        self.write(|state| {
            self.put(state, Delta::Added(obj.clone()), &obj);
            true
        })
    }

    fn update(&self, obj: Arc<T>) -> Result<(), StoreError> {
        let obj = self.transform(obj);
        self.write(|state| {
            self.put(state, Delta::Updated(obj.clone()), &obj);
            true
        })
    }

    fn delete(&self, obj: Arc<T>) -> Result<(), StoreError> {
        let obj = self.transform(obj);
        self.write(|state| self.remove(state, obj))
    }

    /// The newest object queued for each key (a tombstone's last known state; none when it
    /// has none), in queue order.
    fn list(&self) -> Vec<Arc<T>> {
        let state = self.lock();
        state
            .queue
            .iter()
            .filter_map(|k| state.items.get(k)?.last()?.object().cloned())
            .collect()
    }

    /// The queued keys, in queue order.
    fn list_keys(&self) -> Vec<T::Key> {
        self.lock().queue.iter().cloned().collect()
    }

    /// The newest object queued for `key`.
    fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        self.lock().items.get(key)?.last()?.object().cloned()
    }

    fn replace(
        &self,
        items: Vec<Arc<T>>,
        resource_version: Option<ResourceVersion>,
    ) -> Result<(), StoreError> {
        let items: Vec<Arc<T>> = items.into_iter().map(|o| self.transform(o)).collect();
        let mut state = self.open()?;
        let state = &mut *state;

        let mut listed: HashSet<T::Key, Hasher> =
            HashSet::with_capacity_and_hasher(items.len(), Hasher::default());
        for obj in items {
            let key = obj.key();
            listed.insert(key.clone());
            let delta = if self.emit_replaced {
                Delta::Replaced(obj)
            } else {
                Delta::Sync(obj)
            };
            state.enqueue(key, delta);
        }

        // Queued keys the list lacks: deleted while unwatched.
        let mut deletions = 0;
        let missing: Vec<T::Key> = state
            .queue
            .iter()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect();
        for key in missing {
            let last = state
                .items
                .get(&key)
                .and_then(|d| d.last())
                .and_then(|d| d.object().cloned());
            deletions += 1;
            state.enqueue(key.clone(), tombstone(key, last));
        }

        // Known keys the list lacks, with nothing queued.
        if let Some(known) = &self.known {
            if let Some((key, newest)) = &state.in_flight
                && !listed.contains(key)
                && !state.items.contains_key(key)
                && let Some(obj) = newest
            {
                // Processing will make it known: it needs a tombstone as a known key would.
                deletions += 1;
                let (key, obj) = (key.clone(), obj.clone());
                state.enqueue(key.clone(), tombstone(key, Some(obj)));
            }
            let mut gone: Vec<T::Key> = known
                .list_keys()
                .into_iter()
                .filter(|k| {
                    !listed.contains(k)
                        && !state.items.contains_key(k)
                        && state.in_flight(k).is_none()
                })
                .collect();
            gone.sort();
            for key in gone {
                let last = known.get_by_key(&key);
                deletions += 1;
                state.enqueue(key.clone(), tombstone(key, last));
            }
        }

        if resource_version.is_some() {
            state.last_rv = resource_version;
        }
        state
            .population
            .first_list(listed.len() + deletions, &self.signals);
        if !state.queue.is_empty() {
            self.signals.item_ready();
        }
        Ok(())
    }

    fn resync(&self) -> Result<(), StoreError> {
        let mut state = self.open()?;
        let Some(known) = &self.known else {
            return Ok(());
        };
        let mut queued = false;
        for key in known.list_keys() {
            if state.items.contains_key(&key) || state.in_flight(&key).is_some() {
                continue;
            }
            // Already transformed on its way in: not transformed again.
            if let Some(obj) = known.get_by_key(&key) {
                state.enqueue(key, Delta::Sync(obj));
                queued = true;
            }
        }
        drop(state);
        if queued {
            self.signals.item_ready();
        }
        Ok(())
    }

    fn bookmark(&self, resource_version: ResourceVersion) {
        self.lock().last_rv = Some(resource_version);
    }

    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.lock().last_rv.clone()
    }

    fn transaction(&self, changes: Vec<Change<T>>) -> Result<(), TransactionError> {
        let total = changes.len();
        let changes: Vec<Change<T>> = changes
            .into_iter()
            .map(|c| c.map(|o| self.transform(o)))
            .collect();
        self.write_batch(total, |state| {
            for change in changes {
                match change {
                    Change::Add(o) => self.put(state, Delta::Added(o.clone()), &o),
                    Change::Update(o) => self.put(state, Delta::Updated(o.clone()), &o),
                    Change::Delete(o) => {
                        self.remove(state, o);
                    }
                }
            }
        })
    }
}

impl<T: Object> super::Queue<T> for DeltaFifo<T> {
    async fn pop_batch<R, F>(&self, _max: usize, process: F) -> Result<R, Closed>
    where
        F: FnOnce(Vec<Delta<T>>, bool) -> R + Send,
        R: Send,
    {
        self.pop(|deltas, initial| process(deltas.into_vec(), initial))
            .await
    }

    forward_queue_lifecycle!(DeltaFifo);
}
