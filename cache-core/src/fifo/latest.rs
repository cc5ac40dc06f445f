//! [`Fifo`]: a keyed queue that keeps the latest object per key.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::signal::{Population, Signals};
use super::{Closed, all_closed};
use crate::index::Hasher;
use crate::object::{Object, ResourceVersion};
use crate::store::{Change, Store, StoreError, TransactionError};

/// A keyed FIFO that coalesces (client-go's `FIFO`): it holds the latest object per key, and
/// hands keys out in the order they were first queued.
///
/// - [`add`](Store::add) and [`update`](Store::update) queue a key once and overwrite its
///   object: a key updated ten times before a pop is popped once, with its last state, at the
///   place it was first queued.
/// - [`delete`](Store::delete) drops the key's object; nothing is popped for it.
/// - [`replace`](Store::replace) swaps the whole content, queued in list order.
/// - [`resync`](Store::resync) re-queues nothing: every object a `Fifo` holds is already queued.
///
/// Reads ([`list`](Store::list), [`get_by_key`](Store::get_by_key), ...) see what is queued and
/// not yet popped.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{Object, ObjectKey, Store};
/// use cache_core::fifo::Fifo;
///
/// #[derive(Debug)]
/// struct Pod { name: String, rv: u64 }
/// impl Object for Pod {
///     type Key = ObjectKey;
///     fn key(&self) -> ObjectKey { ObjectKey::new("default", &self.name) }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let fifo = Fifo::new();
/// fifo.add(Arc::new(Pod { name: "web".into(), rv: 1 }))?;
/// fifo.add(Arc::new(Pod { name: "db".into(), rv: 2 }))?;
/// fifo.update(Arc::new(Pod { name: "web".into(), rv: 3 }))?;
///
/// let first = fifo.pop(|pod, _initial| pod.rv).await?;
/// assert_eq!(first, 3); // web, first queued, with its latest state
/// assert_eq!(fifo.pop(|pod, _| pod.name.clone()).await?, "db");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Fifo<T: Object> {
    state: Mutex<State<T>>,
    signals: Signals,
}

struct State<T: Object> {
    /// Every queued key, with its object; `None` once deleted (the key is skipped at its turn).
    items: HashMap<T::Key, Option<Arc<T>>, Hasher>,
    queue: VecDeque<T::Key>,
    population: Population,
    last_rv: Option<ResourceVersion>,
}

impl<T: Object> Default for Fifo<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Object> fmt::Debug for Fifo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fifo")
            .field("len", &self.len())
            .field("has_synced", &self.has_synced())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T: Object> Fifo<T> {
    /// An empty, open queue.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                items: HashMap::with_hasher(Hasher::default()),
                queue: VecDeque::new(),
                population: Population::default(),
                last_rv: None,
            }),
            signals: Signals::new(),
        }
    }

    queue_lifecycle!();

    /// Waits for the next object and hands it to `process` with whether it belongs to the first
    /// list (`is_in_initial_list`); returns what `process` returned.
    ///
    /// No lock is held while `process` runs. The queue counts the object as processed when
    /// `process` returns (or unwinds), which is when [`has_synced`](Self::has_synced) can turn
    /// true. Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the queue is closed and drained.
    pub async fn pop<R>(&self, process: impl FnOnce(Arc<T>, bool) -> R) -> Result<R, Closed> {
        let _turn = self.signals.turn().await;
        let (obj, initial) = self
            .signals
            .wait_for(|| {
                let mut state = self.lock();
                let state = &mut *state;
                while let Some(key) = state.queue.pop_front() {
                    let initial = !state.population.is_synced();
                    match state.items.remove(&key).flatten() {
                        Some(obj) => return Some(Ok((obj, initial))),
                        // Deleted while queued: nothing to hand out, but it was counted.
                        None => state.population.processed(1, &self.signals),
                    }
                }
                self.signals.is_closed().then_some(Err(Closed))
            })
            .await?;
        let _done = Processed { fifo: self };
        Ok(process(obj, initial))
    }

    /// How many keys are queued.
    pub fn len(&self) -> usize {
        self.lock().items.values().filter(|o| o.is_some()).count()
    }

    fn put(&self, state: &mut State<T>, obj: Arc<T>) {
        state.population.populate(&self.signals);
        if let Some(rv) = obj.resource_version() {
            state.last_rv = Some(rv);
        }
        match state.items.get_mut(&obj.key()) {
            Some(slot) => *slot = Some(obj),
            None => {
                let key = obj.key();
                state.queue.push_back(key.clone());
                state.items.insert(key, Some(obj));
            }
        }
    }

    fn remove(&self, state: &mut State<T>, obj: &Arc<T>) {
        state.population.populate(&self.signals);
        if let Some(rv) = obj.resource_version() {
            state.last_rv = Some(rv);
        }
        if let Some(slot) = state.items.get_mut(&obj.key()) {
            *slot = None;
        }
    }
}

/// Counts a popped object as processed when dropped, even if `process` panicked.
struct Processed<'a, T: Object> {
    fifo: &'a Fifo<T>,
}

impl<T: Object> Drop for Processed<'_, T> {
    fn drop(&mut self) {
        let mut state = self.fifo.lock();
        state.population.processed(1, &self.fifo.signals);
    }
}

impl<T: Object> Store<T> for Fifo<T> {
    fn add(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.write(|state| {
            self.put(state, obj);
            true
        })
    }

    fn update(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.add(obj)
    }

    fn delete(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.write(|state| {
            self.remove(state, &obj);
            false
        })
    }

    fn list(&self) -> Vec<Arc<T>> {
        let state = self.lock();
        state
            .queue
            .iter()
            .filter_map(|k| state.items.get(k).cloned().flatten())
            .collect()
    }

    fn list_keys(&self) -> Vec<T::Key> {
        let state = self.lock();
        state
            .queue
            .iter()
            .filter(|k| matches!(state.items.get(*k), Some(Some(_))))
            .cloned()
            .collect()
    }

    fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        self.lock().items.get(key).cloned().flatten()
    }

    fn replace(
        &self,
        items: Vec<Arc<T>>,
        resource_version: Option<ResourceVersion>,
    ) -> Result<(), StoreError> {
        let mut state = self.open()?;
        let state = &mut *state;
        state.items.clear();
        state.queue.clear();
        for obj in items {
            let key = obj.key();
            if state.items.insert(key.clone(), Some(obj)).is_none() {
                state.queue.push_back(key);
            }
        }
        if resource_version.is_some() {
            state.last_rv = resource_version;
        }
        state
            .population
            .first_list(state.queue.len(), &self.signals);
        if !state.queue.is_empty() {
            self.signals.item_ready();
        }
        Ok(())
    }

    fn resync(&self) -> Result<(), StoreError> {
        // Every object held is queued: there is nothing to re-queue.
        drop(self.open()?);
        Ok(())
    }

    fn bookmark(&self, resource_version: ResourceVersion) {
        self.lock().last_rv = Some(resource_version);
    }

    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.lock().last_rv.clone()
    }

    fn transaction(&self, changes: Vec<Change<T>>) -> Result<(), TransactionError> {
        self.write_batch(changes.len(), |state| {
            for change in changes {
                match change {
                    Change::Add(o) | Change::Update(o) => self.put(state, o),
                    Change::Delete(o) => self.remove(state, &o),
                }
            }
        })
    }
}
