//! The queue itself, [`WorkQueue`], and the [`MetricsSink`] it reports to.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::rate_limit::{RateLimiter, default_rate_limiter};

use crate::engine::Hasher;

/// Where a [`WorkQueue`] reports what it does (client-go's workqueue metrics). Every method has a
/// no-op default, so an implementation picks what it records.
///
/// The hooks are called while the queue's lock is held, so that gauges are reported in the order
/// the queue changed: they must be cheap (an atomic update, a `metrics` macro) and must not call
/// back into the queue.
pub trait MetricsSink: Send + Sync {
    /// The number of keys waiting to be handed out changed to `depth`. A key re-added while it
    /// is being processed counts: it waits for its `done`. Delayed keys do not count until they
    /// are due.
    fn depth(&self, depth: usize) {
        let _ = depth;
    }

    /// A key was queued (an add that was not absorbed by the same key already waiting).
    fn add(&self) {}

    /// A key waited `latency` between being queued and being handed out by `get`.
    fn queue_latency(&self, latency: Duration) {
        let _ = latency;
    }

    /// A key was processed for `duration`: from `get` to `done`.
    fn work_duration(&self, duration: Duration) {
        let _ = duration;
    }

    /// A key was requeued with a delay ([`WorkQueue::add_after`] or
    /// [`WorkQueue::add_rate_limited`]).
    fn retry(&self) {}
}

/// Records nothing: the default [`MetricsSink`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl MetricsSink for NoMetrics {}

impl<M: MetricsSink + ?Sized> MetricsSink for Arc<M> {
    fn depth(&self, depth: usize) {
        (**self).depth(depth);
    }
    fn add(&self) {
        (**self).add();
    }
    fn queue_latency(&self, latency: Duration) {
        (**self).queue_latency(latency);
    }
    fn work_duration(&self, duration: Duration) {
        (**self).work_duration(duration);
    }
    fn retry(&self) {
        (**self).retry();
    }
}

/// A queue of keys to process, with client-go's workqueue rules.
///
/// - **A queued key is never queued twice**: adding a key that is already waiting does nothing.
/// - **A key is never handed out twice at once**: while a key is being processed (between
///   [`get`](Self::get) and [`done`](Self::done)), adding it again marks it, and it is queued
///   again only when `done` is called. So two workers never work on one key together, and no
///   change is lost.
/// - Keys are handed out in the order they were queued.
/// - [`add_after`](Self::add_after) queues a key later; of two pending delays for one key, the
///   earlier wins. [`add_rate_limited`](Self::add_rate_limited) asks the [`RateLimiter`] for the
///   delay (by default client-go's: per-key exponential backoff from 5 ms to 1000 s, and at most
///   10 requeues per second overall after a burst of 100); [`forget`](Self::forget) resets a key's
///   backoff once it succeeds.
/// - [`shut_down`](Self::shut_down) refuses new keys and wakes every waiting `get`; keys already
///   queued are still handed out, then `get` returns `None`.
///   [`shut_down_with_drain`](Self::shut_down_with_drain) also waits until every key being
///   processed is `done`.
///
/// The queue is a cheap handle: clones share one queue. It runs no task of its own: delayed keys
/// are moved to the queue by the operations on it and by a waiting `get`, whose timer is a tokio
/// timer (so paused time in tests drives it): a `get` that waits for a delayed key needs a tokio
/// runtime with time enabled, as `#[tokio::main]` builds. Dropping the last handle drops
/// everything.
///
/// # Examples
///
/// ```
/// use cache_core::workqueue::WorkQueue;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let queue = WorkQueue::new();
/// queue.add("default/web");
/// queue.add("default/web"); // already queued: nothing happens
/// assert_eq!(queue.len(), 1);
///
/// let key = queue.get().await.unwrap();
/// queue.add(key); // changed while being processed: queued again after done()
/// assert_eq!(queue.len(), 0);
/// queue.done(&key);
/// assert_eq!(queue.len(), 1);
///
/// // A failure: retry with backoff, then forget the key once it succeeds.
/// let key = queue.get().await.unwrap();
/// queue.add_rate_limited(key);
/// queue.done(&key);
/// assert_eq!(queue.num_requeues(&key), 1);
/// let key = queue.get().await.unwrap(); // 5 ms later
/// queue.forget(&key);
/// queue.done(&key);
///
/// queue.shut_down();
/// assert_eq!(queue.get().await, None);
/// # }
/// ```
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    state: Mutex<State<K>>,
    /// Wakes a `get` waiting for a key (and all of them at shutdown).
    ready: Notify,
    /// Wakes the `get` that sleeps until the next delayed key is due, when an earlier one comes.
    timer: Notify,
    /// Wakes `shut_down_with_drain` when the last key being processed is done.
    drained: Notify,
    limiter: Box<dyn RateLimiter<K>>,
    metrics: Box<dyn MetricsSink>,
}

struct State<K> {
    /// The keys to hand out, in order. Each is in `dirty` and not in `processing`.
    queue: VecDeque<K>,
    /// Every key that needs processing, with the time it was queued.
    dirty: HashMap<K, Instant, Hasher>,
    /// Every key handed out and not yet done, with the time it was handed out.
    processing: HashMap<K, Instant, Hasher>,
    delayed: Delayed<K>,
    shutting_down: bool,
    draining: bool,
    /// The deadline a `get` is sleeping until for the delayed keys, if one is.
    timer_armed: Option<Instant>,
}

/// Keys waiting for their time, earliest first. A key has one pending time (`due`); entries of
/// the heap that no longer match it are stale and are skipped.
struct Delayed<K> {
    heap: BinaryHeap<DelayedEntry<K>>,
    due: HashMap<K, (Instant, u64), Hasher>,
    seq: u64,
}

struct DelayedEntry<K> {
    at: Instant,
    seq: u64,
    key: K,
}

impl<K> PartialEq for DelayedEntry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl<K> Eq for DelayedEntry<K> {}
impl<K> Ord for DelayedEntry<K> {
    /// Reversed, so that the max-heap pops the earliest entry (then the first added).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
impl<K> PartialOrd for DelayedEntry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Clone + Eq + Hash> Delayed<K> {
    fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            due: HashMap::with_hasher(Hasher::default()),
            seq: 0,
        }
    }

    fn len(&self) -> usize {
        self.due.len()
    }

    /// Schedules `key` at `at`, unless it is already due earlier. Returns whether this is a new
    /// or earlier time.
    fn insert(&mut self, key: K, at: Instant) -> bool {
        if let Some(&(existing, _)) = self.due.get(&key)
            && existing <= at
        {
            return false;
        }
        self.seq += 1;
        self.due.insert(key.clone(), (at, self.seq));
        self.heap.push(DelayedEntry {
            at,
            seq: self.seq,
            key,
        });
        true
    }

    fn is_current(&self, e: &DelayedEntry<K>) -> bool {
        self.due.get(&e.key) == Some(&(e.at, e.seq))
    }

    /// The earliest pending time, dropping stale entries on the way.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.heap.peek() {
            if self.is_current(top) {
                return Some(top.at);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the next key due at or before `now`, with the time it was due.
    fn pop_due(&mut self, now: Instant) -> Option<(K, Instant)> {
        while let Some(top) = self.heap.peek() {
            if !self.is_current(top) {
                self.heap.pop();
                continue;
            }
            if top.at > now {
                return None;
            }
            let entry = self.heap.pop()?;
            self.due.remove(&entry.key);
            return Some((entry.key, entry.at));
        }
        None
    }

    fn clear(&mut self) {
        self.heap.clear();
        self.due.clear();
    }
}

impl<K: Clone + Eq + Hash> State<K> {
    /// Marks `key` as needing processing; queues it unless it is being processed. Returns
    /// whether it was queued (a waiting `get` must be woken).
    fn add(&mut self, key: K, now: Instant, metrics: &dyn MetricsSink) -> bool {
        if self.shutting_down || self.dirty.contains_key(&key) {
            return false;
        }
        metrics.add();
        let processing = self.processing.contains_key(&key);
        if !processing {
            self.queue.push_back(key.clone());
        }
        self.dirty.insert(key, now);
        metrics.depth(self.dirty.len());
        !processing
    }

    /// Queues the delayed keys that are due, as of the time they were due. Returns how many
    /// were queued.
    fn promote(&mut self, now: Instant, metrics: &dyn MetricsSink) -> usize {
        let mut queued = 0;
        while let Some((key, due)) = self.delayed.pop_due(now) {
            if self.add(key, due, metrics) {
                queued += 1;
            }
        }
        queued
    }

    /// Hands out the next key: it moves from the queue to the processing set.
    fn pop(&mut self, now: Instant, metrics: &dyn MetricsSink) -> Option<K> {
        let key = self.queue.pop_front()?;
        if let Some(queued) = self.dirty.remove(&key) {
            metrics.queue_latency(now.saturating_duration_since(queued));
        }
        metrics.depth(self.dirty.len());
        self.processing.insert(key.clone(), now);
        Some(key)
    }
}

/// The role of the one `get` that sleeps until the next delayed key is due. Giving it up (the
/// `get` returns, or is dropped while waiting) wakes another waiting `get` to take it over.
struct TimerRole<'a, K> {
    inner: &'a Inner<K>,
    held: bool,
}

impl<K> TimerRole<'_, K> {
    fn release(&mut self, state: &mut State<K>) {
        if self.held {
            self.held = false;
            state.timer_armed = None;
            if !state.delayed.due.is_empty() {
                self.inner.ready.notify_one();
            }
        }
    }
}

impl<K> Drop for TimerRole<'_, K> {
    fn drop(&mut self) {
        if self.held {
            let inner = self.inner;
            self.release(&mut inner.lock());
        }
    }
}

impl<K> Inner<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // Every method leaves the state consistent before it calls out (metrics, rate limiter),
        // so the state is valid after a panic in one of those; a poisoned lock is safe to reuse.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<K> Default for WorkQueue<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a [`WorkQueue`] with another rate limiter or with metrics.
///
/// ```
/// use std::time::Duration;
/// use cache_core::workqueue::{ItemExponentialRateLimiter, NoMetrics, WorkQueue};
///
/// let queue: WorkQueue<String> = WorkQueue::builder()
///     .rate_limiter(ItemExponentialRateLimiter::new(Duration::from_millis(1), Duration::from_secs(1)))
///     .metrics(NoMetrics)
///     .build();
/// assert!(queue.is_empty());
/// ```
pub struct WorkQueueBuilder<K> {
    limiter: Option<Box<dyn RateLimiter<K>>>,
    metrics: Option<Box<dyn MetricsSink>>,
}

impl<K> fmt::Debug for WorkQueueBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkQueueBuilder")
            .field("custom_rate_limiter", &self.limiter.is_some())
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl<K> WorkQueueBuilder<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    /// The limiter that [`WorkQueue::add_rate_limited`] asks for delays. The default is
    /// [`default_rate_limiter`].
    #[must_use]
    pub fn rate_limiter(mut self, limiter: impl RateLimiter<K> + 'static) -> Self {
        self.limiter = Some(Box::new(limiter));
        self
    }

    /// Where the queue reports its metrics. The default is [`NoMetrics`].
    #[must_use]
    pub fn metrics(mut self, metrics: impl MetricsSink + 'static) -> Self {
        self.metrics = Some(Box::new(metrics));
        self
    }

    /// The queue.
    pub fn build(self) -> WorkQueue<K> {
        WorkQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashMap::with_hasher(Hasher::default()),
                    processing: HashMap::with_hasher(Hasher::default()),
                    delayed: Delayed::new(),
                    shutting_down: false,
                    draining: false,
                    timer_armed: None,
                }),
                ready: Notify::new(),
                timer: Notify::new(),
                drained: Notify::new(),
                limiter: self
                    .limiter
                    .unwrap_or_else(|| Box::new(default_rate_limiter())),
                metrics: self.metrics.unwrap_or_else(|| Box::new(NoMetrics)),
            }),
        }
    }
}

impl<K> WorkQueue<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    /// An empty queue with client-go's default rate limiter ([`default_rate_limiter`]) and no
    /// metrics.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, to choose the rate limiter or the metrics.
    pub fn builder() -> WorkQueueBuilder<K> {
        WorkQueueBuilder {
            limiter: None,
            metrics: None,
        }
    }

    fn metrics(&self) -> &dyn MetricsSink {
        &*self.inner.metrics
    }

    /// Marks `key` as needing processing. Does nothing if it already waits, or after shutdown.
    /// If it is being processed, it is queued again when [`done`](Self::done) is called.
    pub fn add(&self, key: K) {
        let inner = &*self.inner;
        let mut state = inner.lock();
        let now = Instant::now();
        let mut wake = state.promote(now, self.metrics());
        wake += usize::from(state.add(key, now, self.metrics()));
        drop(state);
        for _ in 0..wake {
            inner.ready.notify_one();
        }
    }

    /// Adds `key` once `delay` has passed (at once for a zero delay). If the key already waits
    /// for a delay, the earlier of the two times is kept. Does nothing after shutdown.
    pub fn add_after(&self, key: K, delay: Duration) {
        let inner = &*self.inner;
        let mut state = inner.lock();
        if state.shutting_down {
            return;
        }
        self.metrics().retry();
        let now = Instant::now();
        let mut wake = state.promote(now, self.metrics());
        // A delay too long to represent is as good as never; keep the key ~30 years out.
        let at = now
            .checked_add(delay)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        if delay.is_zero() {
            wake += usize::from(state.add(key, now, self.metrics()));
        } else if state.delayed.insert(key, at) {
            match state.timer_armed {
                // The sleeping `get` must wake earlier.
                Some(armed) if at < armed => inner.timer.notify_one(),
                Some(_) => {}
                // No `get` sleeps for the delayed keys: let a waiting one take the timer.
                None => wake += 1,
            }
        }
        drop(state);
        for _ in 0..wake {
            inner.ready.notify_one();
        }
    }

    /// Adds `key` after the delay the rate limiter gives it (client-go's `AddRateLimited`): by
    /// default, exponential backoff per key combined with an overall token bucket.
    pub fn add_rate_limited(&self, key: K) {
        if self.is_shutting_down() {
            return;
        }
        let delay = self.inner.limiter.when(&key);
        self.add_after(key, delay);
    }

    /// Stops the rate limiter tracking `key`: its next rate-limited requeue starts from the
    /// shortest delay. Call it when the key was processed successfully. It does not remove the
    /// key from the queue.
    pub fn forget(&self, key: &K) {
        self.inner.limiter.forget(key);
    }

    /// How many times `key` was requeued with [`add_rate_limited`](Self::add_rate_limited)
    /// since it was last forgotten.
    pub fn num_requeues(&self, key: &K) -> u32 {
        self.inner.limiter.num_requeues(key)
    }

    /// Waits for a key to process and hands it out; it counts as being processed until
    /// [`done`](Self::done) is called with it. Returns `None` once the queue is shut down and
    /// holds no more keys.
    ///
    /// Cancel-safe: a `get` dropped before it returns takes no key.
    pub async fn get(&self) -> Option<K> {
        let inner = &*self.inner;
        let mut role = TimerRole { inner, held: false };
        loop {
            let mut ready = pin!(inner.ready.notified());
            // Registered before the state is read, so that a shutdown in between is not missed.
            ready.as_mut().enable();
            let sleep_until = {
                let mut state = inner.lock();
                let now = Instant::now();
                let queued = state.promote(now, &*inner.metrics);
                if let Some(key) = state.pop(now, &*inner.metrics) {
                    // Wake others for what just came due (one wake too many is only a spurious
                    // loop; one too few would leave a key waiting).
                    for _ in 0..queued {
                        inner.ready.notify_one();
                    }
                    role.release(&mut state);
                    return Some(key);
                }
                if state.shutting_down {
                    role.release(&mut state);
                    return None;
                }
                match state.delayed.next_deadline() {
                    Some(deadline) if role.held || state.timer_armed.is_none() => {
                        role.held = true;
                        state.timer_armed = Some(deadline);
                        Some(deadline)
                    }
                    Some(_) => None,
                    None => {
                        role.release(&mut state);
                        None
                    }
                }
            };
            match sleep_until {
                Some(deadline) => {
                    tokio::select! {
                        () = &mut ready => {}
                        () = inner.timer.notified() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => ready.await,
            }
        }
    }

    /// Hands out the next key if one is queued now, without waiting. See [`get`](Self::get).
    pub fn try_get(&self) -> Option<K> {
        let inner = &*self.inner;
        let mut state = inner.lock();
        let now = Instant::now();
        let queued = state.promote(now, &*inner.metrics);
        let key = state.pop(now, &*inner.metrics);
        drop(state);
        for _ in 0..queued {
            inner.ready.notify_one();
        }
        key
    }

    /// Marks `key` as processed. If it was added again meanwhile, it is queued again now.
    /// Does nothing for a key that is not being processed.
    pub fn done(&self, key: &K) {
        let inner = &*self.inner;
        let mut state = inner.lock();
        let now = Instant::now();
        let Some(started) = state.processing.remove(key) else {
            return;
        };
        inner
            .metrics
            .work_duration(now.saturating_duration_since(started));
        if state.dirty.contains_key(key) {
            state.queue.push_back(key.clone());
            inner.ready.notify_one();
        }
        if state.draining && state.processing.is_empty() {
            inner.drained.notify_waiters();
        }
    }

    /// The number of keys ready to be handed out (not counting delayed keys that are not due
    /// yet, nor keys re-added while being processed).
    pub fn len(&self) -> usize {
        let mut state = self.inner.lock();
        let queued = state.promote(Instant::now(), &*self.inner.metrics);
        let len = state.queue.len();
        drop(state);
        for _ in 0..queued {
            self.inner.ready.notify_one();
        }
        len
    }

    /// Whether no key is ready to be handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of keys waiting for a delay to pass.
    pub fn num_delayed(&self) -> usize {
        let mut state = self.inner.lock();
        let queued = state.promote(Instant::now(), &*self.inner.metrics);
        let delayed = state.delayed.len();
        drop(state);
        for _ in 0..queued {
            self.inner.ready.notify_one();
        }
        delayed
    }

    /// The number of keys handed out and not yet done.
    pub fn num_processing(&self) -> usize {
        self.inner.lock().processing.len()
    }

    /// Stops the queue: new keys are ignored, delayed keys are dropped, and every waiting
    /// [`get`](Self::get) wakes. Keys already queued are still handed out (so that workers can
    /// finish them); after them `get` returns `None`. Called during
    /// [`shut_down_with_drain`](Self::shut_down_with_drain), it makes that return at once.
    pub fn shut_down(&self) {
        self.stop(false);
    }

    /// Like [`shut_down`](Self::shut_down), then waits until every key being processed is
    /// [`done`](Self::done). Workers must call `done` for every key they got, or this never
    /// returns; a later `shut_down` ends the wait.
    pub async fn shut_down_with_drain(&self) {
        self.stop(true);
        let inner = &*self.inner;
        loop {
            let mut drained = pin!(inner.drained.notified());
            drained.as_mut().enable();
            {
                let state = inner.lock();
                if !state.draining || state.processing.is_empty() {
                    return;
                }
            }
            drained.await;
        }
    }

    fn stop(&self, drain: bool) {
        let inner = &*self.inner;
        {
            let mut state = inner.lock();
            state.shutting_down = true;
            state.draining = drain;
            state.delayed.clear();
        }
        inner.ready.notify_waiters();
        inner.drained.notify_waiters();
    }

    /// Whether [`shut_down`](Self::shut_down) or
    /// [`shut_down_with_drain`](Self::shut_down_with_drain) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.lock().shutting_down
    }
}

impl<K> fmt::Debug for WorkQueue<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("WorkQueue")
            .field("queued", &state.queue.len())
            .field("processing", &state.processing.len())
            .field("delayed", &state.delayed.due.len())
            .field("shutting_down", &state.shutting_down)
            .finish()
    }
}
