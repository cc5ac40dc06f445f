//! [`Heap`]: a keyed priority queue with a user-given ordering (client-go's `Heap`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Closed;
use super::signal::Signals;
use crate::object::Object;

/// Whether the first object comes out of a [`Heap`] before the second.
type Less<T> = dyn Fn(&T, &T) -> bool + Send + Sync;

/// A thread-safe priority queue of objects keyed by [`Object::key`], ordered by a function you
/// give (client-go's `Heap`).
///
/// - A key is held once: [`add`](Self::add) and [`update`](Self::update) insert the object or
///   replace the one with the same key and move it to its new place;
///   [`add_if_not_present`](Self::add_if_not_present) never replaces.
/// - [`pop`](Self::pop) takes the first object in the ordering, waiting asynchronously for one
///   when the heap is empty. Ties come out in no particular order.
/// - [`delete`](Self::delete) takes an object out wherever it is.
/// - [`close`](Self::close) wakes every waiting `pop` with [`Closed`] and refuses writes; what was
///   held before the close can still be popped, deleted and read.
///
/// Every operation costs O(log n) in the number of held objects, except the reads that copy
/// everything ([`list`](Self::list), [`list_keys`](Self::list_keys)). The ordering function is
/// called with the heap's lock held: it must not call back into the heap.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{Object, ObjectKey};
/// use cache_core::fifo::Heap;
///
/// #[derive(Debug)]
/// struct Job { name: String, priority: u32 }
/// impl Object for Job {
///     type Key = ObjectKey;
///     fn key(&self) -> ObjectKey { ObjectKey::cluster(&self.name) }
/// }
/// let job = |name: &str, priority| Arc::new(Job { name: name.into(), priority });
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // Highest priority first.
/// let heap = Heap::new(|a: &Job, b: &Job| a.priority > b.priority);
/// heap.add(job("backup", 1))?;
/// heap.add(job("deploy", 5))?;
/// heap.add(job("report", 3))?;
/// heap.update(job("backup", 9))?; // same key: moves to the front
///
/// assert_eq!(heap.pop().await?.name, "backup");
/// assert_eq!(heap.pop().await?.name, "deploy");
/// heap.close();
/// assert_eq!(heap.pop().await?.name, "report"); // still held after the close
/// assert!(heap.pop().await.is_err()); // closed and empty
/// # Ok::<(), cache_core::fifo::Closed>(())
/// # }).unwrap();
/// ```
pub struct Heap<T: Object> {
    state: Mutex<State<T>>,
    less: Box<Less<T>>,
    signals: Signals,
}

struct State<T: Object> {
    /// A binary heap: every slot comes out no later than its children (`2i + 1`, `2i + 2`).
    slots: Vec<Slot<T>>,
    /// Where each key sits in `slots`.
    positions: HashMap<T::Key, usize, crate::engine::Hasher>,
}

struct Slot<T: Object> {
    key: T::Key,
    obj: Arc<T>,
}

impl<T: Object> fmt::Debug for Heap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<T: Object> Heap<T> {
    /// An empty, open heap whose [`pop`](Self::pop) hands out first the object that is `less`
    /// than the others (client-go's `LessFunc`). `less` must be a strict weak ordering.
    pub fn new(less: impl Fn(&T, &T) -> bool + Send + Sync + 'static) -> Self {
        Self {
            state: Mutex::new(State {
                slots: Vec::new(),
                positions: HashMap::default(),
            }),
            less: Box::new(less),
            signals: Signals::new(),
        }
    }

    /// An empty, open heap that hands out the object with the smallest `priority` first.
    pub fn by_key<P: Ord>(priority: impl Fn(&T) -> P + Send + Sync + 'static) -> Self {
        Self::new(move |a, b| priority(a) < priority(b))
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic inside `less` can interrupt a sift between two swaps; every swap keeps
        // `slots` and `positions` in agreement, so the heap still holds every object and the
        // state is safe to reuse.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state, for a write: refused once the heap is closed.
    fn open(&self) -> Result<MutexGuard<'_, State<T>>, Closed> {
        let state = self.lock();
        if self.signals.is_closed() {
            Err(Closed)
        } else {
            Ok(state)
        }
    }

    /// Inserts `obj`, or replaces the object with its key and moves it to its new place.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the heap is closed; nothing is written.
    pub fn add(&self, obj: Arc<T>) -> Result<(), Closed> {
        let mut state = self.open()?;
        self.upsert(&mut state, obj);
        drop(state);
        self.signals.item_ready();
        Ok(())
    }

    /// The same as [`add`](Self::add) (client-go's `Update`).
    ///
    /// # Errors
    ///
    /// [`Closed`] once the heap is closed.
    pub fn update(&self, obj: Arc<T>) -> Result<(), Closed> {
        self.add(obj)
    }

    /// Inserts or replaces every object of `objects`, in order, under one lock, then wakes a
    /// waiting [`pop`](Self::pop) once (client-go's `BulkAdd`).
    ///
    /// # Errors
    ///
    /// [`Closed`] once the heap is closed; nothing is written.
    pub fn bulk_add(&self, objects: impl IntoIterator<Item = Arc<T>>) -> Result<(), Closed> {
        let mut state = self.open()?;
        for obj in objects {
            self.upsert(&mut state, obj);
        }
        let any = !state.slots.is_empty();
        drop(state);
        if any {
            self.signals.item_ready();
        }
        Ok(())
    }

    /// Inserts `obj` unless an object with its key is held; a held object is left as it is.
    /// Returns whether `obj` was inserted.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the heap is closed.
    pub fn add_if_not_present(&self, obj: Arc<T>) -> Result<bool, Closed> {
        let mut state = self.open()?;
        let key = obj.key();
        if state.positions.contains_key(&key) {
            return Ok(false);
        }
        self.push(&mut state, key, obj);
        drop(state);
        self.signals.item_ready();
        Ok(true)
    }

    /// Takes out the object with `obj`'s key and returns it; `None` when no such key is held
    /// (client-go reports "object not found"). Allowed after [`close`](Self::close).
    pub fn delete(&self, obj: &T) -> Option<Arc<T>> {
        self.delete_by_key(&obj.key())
    }

    /// Takes out the object with this key and returns it; `None` when the key is not held.
    pub fn delete_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        let mut state = self.lock();
        let at = *state.positions.get(key)?;
        Some(self.remove_at(&mut state, at))
    }

    /// Waits for the first object in the ordering and takes it out.
    ///
    /// Pops are served one at a time, in the order they were called. Cancel-safe: a `pop`
    /// dropped while waiting takes nothing.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the heap is closed and empty; a `pop` waiting on an empty heap gets it
    /// when the heap is closed.
    pub async fn pop(&self) -> Result<Arc<T>, Closed> {
        let _turn = self.signals.turn().await;
        self.signals
            .wait_for(|| {
                let mut state = self.lock();
                if !state.slots.is_empty() {
                    return Some(Ok(self.remove_at(&mut state, 0)));
                }
                self.signals.is_closed().then_some(Err(Closed))
            })
            .await
    }

    /// The object that [`pop`](Self::pop) would hand out now, without taking it out.
    pub fn peek(&self) -> Option<Arc<T>> {
        self.lock().slots.first().map(|s| s.obj.clone())
    }

    /// Every held object, in no particular order.
    pub fn list(&self) -> Vec<Arc<T>> {
        self.lock().slots.iter().map(|s| s.obj.clone()).collect()
    }

    /// Every held key, in no particular order.
    pub fn list_keys(&self) -> Vec<T::Key> {
        self.lock().slots.iter().map(|s| s.key.clone()).collect()
    }

    /// The held object with `obj`'s key.
    pub fn get(&self, obj: &T) -> Option<Arc<T>> {
        self.get_by_key(&obj.key())
    }

    /// The held object with this key.
    pub fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        let state = self.lock();
        state
            .positions
            .get(key)
            .map(|&i| state.slots[i].obj.clone())
    }

    /// How many objects are held.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the heap: every waiting [`pop`](Self::pop) returns [`Closed`] once the heap is
    /// empty, and writes are refused. Held objects can still be popped.
    pub fn close(&self) {
        let _state = self.lock();
        self.signals.close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.signals.is_closed()
    }

    fn upsert(&self, state: &mut State<T>, obj: Arc<T>) {
        let key = obj.key();
        match state.positions.get(&key) {
            Some(&at) => {
                state.slots[at].obj = obj;
                self.fix(state, at);
            }
            None => self.push(state, key, obj),
        }
    }

    fn push(&self, state: &mut State<T>, key: T::Key, obj: Arc<T>) {
        let at = state.slots.len();
        state.positions.insert(key.clone(), at);
        state.slots.push(Slot { key, obj });
        self.sift_up(state, at);
    }

    fn remove_at(&self, state: &mut State<T>, at: usize) -> Arc<T> {
        let last = state.slots.len() - 1;
        swap(state, at, last);
        let Some(slot) = state.slots.pop() else {
            unreachable!("remove_at is called with a held position")
        };
        state.positions.remove(&slot.key);
        if at < state.slots.len() {
            self.fix(state, at);
        }
        slot.obj
    }

    /// Restores the order around `at`, whose object changed (Go's `heap.Fix`).
    fn fix(&self, state: &mut State<T>, at: usize) {
        if !self.sift_down(state, at) {
            self.sift_up(state, at);
        }
    }

    fn before(&self, state: &State<T>, a: usize, b: usize) -> bool {
        (self.less)(&state.slots[a].obj, &state.slots[b].obj)
    }

    fn sift_up(&self, state: &mut State<T>, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if !self.before(state, at, parent) {
                break;
            }
            swap(state, at, parent);
            at = parent;
        }
    }

    /// Moves the object at `at` down to its place; whether it moved.
    fn sift_down(&self, state: &mut State<T>, start: usize) -> bool {
        let len = state.slots.len();
        let mut at = start;
        loop {
            let left = 2 * at + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.before(state, right, left) {
                right
            } else {
                left
            };
            if !self.before(state, child, at) {
                break;
            }
            swap(state, at, child);
            at = child;
        }
        at > start
    }
}

/// Swaps two slots and keeps their positions in agreement.
fn swap<T: Object>(state: &mut State<T>, a: usize, b: usize) {
    if a == b {
        return;
    }
    state.slots.swap(a, b);
    for i in [a, b] {
        if let Some(p) = state.positions.get_mut(&state.slots[i].key) {
            *p = i;
        }
    }
}
