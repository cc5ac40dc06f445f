//! [`Controller`]: reconciles the objects of a cache, one key at a time, on a rate-limited
//! [`WorkQueue`].

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, Stream, StreamExt};
use metrics::SharedString;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use super::action::{Action, Kind};
use super::context::{CacheMap, Context, Shared};
use super::telemetry::{ReconcileMetrics, StoreMetrics};
use crate::informer::SyncError;
use crate::leader::{ElectionState, LeaderElector, LeaderHandle, Leadership};
use crate::object::Object;
use crate::reflector::{Reflector, ReflectorStats};
use crate::store::CacheReader;
use crate::workqueue::{FacadeMetrics, RateLimiter, WorkQueue};
use crate::{panic_message, short_type_name};

/// The default number of reconciles a controller runs at once.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The default interval between two samples of the store metrics (objects, relists, watch
/// restarts).
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// What a trigger source hands the controller.
enum Trigger<K> {
    Keys(Vec<K>),
    All,
}

type Probe = Box<dyn Fn() -> StoreStatus + Send + Sync>;

/// What a controller reports about one store it reads, for its metrics: see
/// [`Controller::observe`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStatus {
    /// The number of objects in the store.
    pub objects: usize,
    /// The counters of the reflector that fills the store, if it has one.
    pub reflector: Option<ReflectorStats>,
}

impl StoreStatus {
    /// A store of `objects` objects, filled by a reflector with these counters (if any).
    pub fn new(objects: usize, reflector: Option<ReflectorStats>) -> Self {
        Self { objects, reflector }
    }
}

/// The counters of a controller's work: returned by [`Controller::run`] when it stops, and read
/// live from a [`ControllerHandle`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ControllerStats {
    /// Reconciles that finished (succeeded, failed or panicked).
    pub reconciles: u64,
    /// Of those, the ones that succeeded.
    pub successes: u64,
    /// Of those, the ones that returned an error or panicked.
    pub errors: u64,
    /// Of the errors, the panics.
    pub panics: u64,
    /// Keys whose object was gone from the cache when their turn came: not reconciled.
    pub skipped: u64,
    /// Reconciles still running when the shutdown timeout passed, and so dropped.
    pub aborted: u64,
    /// Reconciles stopped because this replica's leadership ended while they ran (see
    /// [`Controller::leader_election`]).
    pub interrupted: u64,
    /// Reconciles running now.
    pub in_flight: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the caches to sync (or not run yet).
    Starting,
    /// Taking work.
    Ready,
    /// Cancelled: waiting for the reconciles in flight.
    Stopping,
    /// `run` has returned.
    Stopped,
}

/// The state a controller shares with its handles.
struct Status {
    /// The controller's name, for the error of [`ControllerHandle::wait_for_sync`].
    name: Mutex<String>,
    phase: watch::Sender<Phase>,
    reconciles: AtomicU64,
    successes: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    skipped: AtomicU64,
    aborted: AtomicU64,
    interrupted: AtomicU64,
    in_flight: AtomicUsize,
}

impl Status {
    fn new(name: String) -> Self {
        Self {
            name: Mutex::new(name),
            phase: watch::Sender::new(Phase::Starting),
            reconciles: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            interrupted: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn stats(&self) -> ControllerStats {
        ControllerStats {
            reconciles: self.reconciles.load(Ordering::Relaxed),
            successes: self.successes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            aborted: self.aborted.load(Ordering::Relaxed),
            interrupted: self.interrupted.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    fn name(&self) -> String {
        self.name
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }
}

/// A handle on a controller's health and counters, usable while it runs (for a readiness
/// probe, a status page or a test). Cloning is cheap.
#[derive(Clone)]
pub struct ControllerHandle {
    status: Arc<Status>,
}

impl fmt::Debug for ControllerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerHandle")
            .field("phase", &*self.status.phase.borrow())
            .field("stats", &self.status.stats())
            .finish()
    }
}

impl ControllerHandle {
    /// Whether the controller is ready: it is running, its caches have synced, and it takes
    /// work. False before, and again from the moment it is cancelled.
    pub fn is_ready(&self) -> bool {
        *self.status.phase.borrow() == Phase::Ready
    }

    /// Waits until the controller is ready (its caches have synced), or stopping.
    ///
    /// # Errors
    ///
    /// A [`SyncError`] naming the controller if it was cancelled before its caches synced.
    pub async fn wait_for_sync(&self) -> Result<(), SyncError> {
        let mut rx = self.status.phase.subscribe();
        // The sender lives in `self.status`: the wait cannot fail.
        let phase = rx
            .wait_for(|phase| *phase != Phase::Starting)
            .await
            .map_or(Phase::Stopped, |phase| *phase);
        if phase == Phase::Ready {
            Ok(())
        } else {
            Err(SyncError::stopped(self.status.name()))
        }
    }

    /// Whether [`Controller::run`] has returned: every reconcile it started has ended.
    pub fn is_stopped(&self) -> bool {
        *self.status.phase.borrow() == Phase::Stopped
    }

    /// Waits until [`Controller::run`] has returned.
    pub async fn wait_stopped(&self) {
        let mut rx = self.status.phase.subscribe();
        let _ = rx.wait_for(|phase| *phase == Phase::Stopped).await;
    }

    /// The counters so far.
    pub fn stats(&self) -> ControllerStats {
        self.status.stats()
    }
}

pub(crate) struct ObservedStore {
    pub(crate) name: String,
    pub(crate) probe: Probe,
}

/// A controller: it keeps a work queue of keys, fed by triggers (changes of the primary
/// objects, of other objects mapped to primary keys, requeues), and runs a reconcile function
/// on the current object of each key, read from the primary cache.
///
/// Built from its parts, it needs no informer: a primary [`Cache`](crate::Cache), readiness futures (the
/// caches' syncs), and trigger streams. Its guarantees:
///
/// - **Startup.** It waits for every readiness future ([`wait_for`](Self::wait_for),
///   [`reflector`](Self::reflector)) before the first reconcile; then every object of the
///   primary cache is queued once, so that each is reconciled at least once. Triggers that arrive
///   before are queued, not lost.
/// - **One key at a time.** An object is never reconciled twice at once; a trigger that arrives
///   while it is reconciled queues it again for after (the [`WorkQueue`]'s rules). Triggers for a
///   key that waits are merged.
/// - **Concurrency.** At most [`concurrency`](Self::concurrency) reconciles run at once, each in
///   its own task (so they use every core).
/// - **Gone objects.** A key whose object is no longer in the cache when its turn comes is
///   skipped quietly (counted in [`ControllerStats::skipped`]): deletes are normal.
/// - **Outcomes.** A successful reconcile returns an [`Action`] and resets the key's backoff; a
///   failed one goes through the error policy, by default [`Action::requeue_rate_limited`]. A
///   reconcile that panics is logged and retried with backoff; the controller goes on.
/// - **No deadlock when work piles up.** Triggers and requeues go straight into the work queue,
///   which merges them per key; nothing waits for a bounded buffer.
/// - **Shutdown.** When the [`CancellationToken`] is cancelled it takes no new work, lets the
///   reconciles in flight finish (or drops them after [`shutdown_timeout`](Self::shutdown_timeout)),
///   and returns: no task of it is left running.
/// - **Metrics** through the [`metrics`] facade, labelled with the controller's name: reconciles,
///   errors and their latency, the work queue's depth, adds, retries and latencies, and for each
///   store its size, relists and watch restarts. See [`names`](super::names).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cache_core::controller::{Action, Context, Controller};
/// use cache_core::{Cache, Indexed};
/// use tokio_util::sync::CancellationToken;
///
/// #[derive(Debug, Indexed)]
/// struct Pod { #[key] name: String, ready: bool }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("not ready yet")]
/// struct NotReady;
///
/// async fn reconcile(pod: Arc<Pod>, _ctx: Context<Pod, ()>) -> Result<Action, NotReady> {
///     if pod.ready { Ok(Action::requeue(Duration::from_secs(300))) } else { Err(NotReady) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = Arc::new(Cache::<Pod>::new());
/// cache.add(Arc::new(Pod { name: "web".into(), ready: true }))?;
/// // Any stream of keys triggers reconciles; an informer's changes, here a channel.
/// let (changed, changes) = futures::channel::mpsc::unbounded::<String>();
///
/// let controller = Controller::for_cache(cache.clone())
///     .name("pods")
///     .concurrency(4)
///     .trigger(changes);
/// let handle = controller.handle();
/// let stop = CancellationToken::new();
/// let run = tokio::spawn(controller.run(reconcile, Arc::new(()), stop.clone()));
///
/// handle.wait_for_sync().await?;
/// cache.add(Arc::new(Pod { name: "db".into(), ready: false }))?;
/// changed.unbounded_send("db".into()).unwrap();
/// while handle.stats().reconciles < 2 {
///     tokio::task::yield_now().await;
/// }
/// stop.cancel();
/// let stats = run.await.unwrap();
/// assert_eq!(stats.successes, 1); // "web"
/// assert!(stats.errors >= 1); // "db", retried with backoff until the stop
/// # Ok(())
/// # }
/// ```
pub struct Controller<T: Object> {
    name: String,
    cache: CacheReader<T>,
    ready: Vec<BoxFuture<'static, ()>>,
    triggers: Vec<BoxStream<'static, Trigger<T::Key>>>,
    /// The stores whose metrics are reported; the primary cache first.
    pub(crate) stores: Vec<ObservedStore>,
    caches: CacheMap,
    concurrency: usize,
    rate_limiter: Option<Box<dyn RateLimiter<T::Key>>>,
    metrics_interval: Duration,
    shutdown_timeout: Option<Duration>,
    elector: Option<LeaderElector>,
    status: Arc<Status>,
}

impl<T: Object> fmt::Debug for Controller<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("name", &self.name)
            .field("readiness_gates", &self.ready.len())
            .field("triggers", &self.triggers.len())
            .field("concurrency", &self.concurrency)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl<T: Object> Controller<T> {
    /// A controller of the objects in `cache`. It is named after the type (`Pod` for
    /// `my_crate::Pod`) until [`name`](Self::name) says otherwise.
    ///
    /// Nothing triggers a reconcile yet but the initial pass over the cache and requeues: add
    /// the readiness of the cache ([`reflector`](Self::reflector) or
    /// [`wait_for`](Self::wait_for)) and the sources of changes ([`trigger`](Self::trigger),
    /// [`watches_stream`](Self::watches_stream)).
    /// It reads `cache` (a [`CacheReader`], or the `Arc<Cache>` it reads) and never writes to
    /// it.
    pub fn for_cache(cache: impl Into<CacheReader<T>>) -> Self {
        let cache = cache.into();
        let mut caches = CacheMap::default();
        caches.insert(cache.clone());
        let probe_cache = cache.clone();
        Self {
            name: short_type_name::<T>().to_owned(),
            stores: vec![ObservedStore {
                name: short_type_name::<T>().to_owned(),
                probe: Box::new(move || StoreStatus::new(probe_cache.len(), None)),
            }],
            cache,
            ready: Vec::new(),
            triggers: Vec::new(),
            caches,
            concurrency: DEFAULT_CONCURRENCY,
            rate_limiter: None,
            metrics_interval: DEFAULT_METRICS_INTERVAL,
            shutdown_timeout: None,
            elector: None,
            status: Arc::new(Status::new(short_type_name::<T>().to_owned())),
        }
    }

    /// The controller's name: the `controller` label of its metrics and the name in its logs.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.status
            .name
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone_from(&self.name);
        self
    }

    /// How many reconciles may run at once (default [`DEFAULT_CONCURRENCY`]); 0 counts as 1.
    /// `usize::MAX` leaves it unbounded.
    #[must_use]
    pub fn concurrency(mut self, reconciles: usize) -> Self {
        self.concurrency = reconciles.max(1);
        self
    }

    /// The rate limiter of failed keys. The default is
    /// [`default_rate_limiter`](crate::workqueue::default_rate_limiter): 5 ms doubling up to 1000 s per
    /// key, at most 10 retries per second overall after a burst of 100.
    #[must_use]
    pub fn rate_limiter(mut self, limiter: impl RateLimiter<T::Key> + 'static) -> Self {
        self.rate_limiter = Some(Box::new(limiter));
        self
    }

    /// How often the store metrics are sampled while running (default
    /// [`DEFAULT_METRICS_INTERVAL`]); they are also sampled at start and at stop.
    #[must_use]
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.metrics_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long a shutdown waits for the reconciles in flight before it drops them (at their
    /// next `.await`). By default it waits for them however long they take.
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
        self
    }

    /// Waits for `ready` to complete before the first reconcile, as for a cache's initial sync.
    /// Every such future must complete.
    #[must_use]
    pub fn wait_for(mut self, ready: impl Future<Output = ()> + Send + 'static) -> Self {
        self.ready.push(ready.boxed());
        self
    }

    /// The reflector that fills the primary cache: the controller waits for its initial sync
    /// before the first reconcile, and reports its relists, watch restarts, events and errors
    /// with the primary store's metrics.
    #[must_use]
    pub fn reflector(mut self, reflector: &Reflector<T>) -> Self {
        let waiting = reflector.clone();
        self = self.wait_for(async move { waiting.wait_for_sync().await });
        let (cache, reflector) = (self.cache.clone(), reflector.clone());
        self.stores[0].probe =
            Box::new(move || StoreStatus::new(cache.len(), Some(reflector.stats())));
        self
    }

    /// Reconciles the primary objects whose keys `keys` yields (a change feed of the primary
    /// objects, a channel, a timer). Keys of objects not in the cache are skipped when their
    /// turn comes.
    #[must_use]
    pub fn trigger(mut self, keys: impl Stream<Item = T::Key> + Send + 'static) -> Self {
        self.triggers
            .push(keys.map(|key| Trigger::Keys(vec![key])).boxed());
        self
    }

    /// Reconciles the primary objects that `mapper` maps each item of `stream` to: a secondary
    /// watch, where another kind of object triggers the reconcile of the ones it relates to
    /// (the owner of a changed child, the pods of a changed node).
    #[must_use]
    pub fn watches_stream<U, I>(
        mut self,
        stream: impl Stream<Item = U> + Send + 'static,
        mapper: impl Fn(&U) -> I + Send + 'static,
    ) -> Self
    where
        I: IntoIterator<Item = T::Key>,
    {
        self.triggers.push(
            stream
                .map(move |item| Trigger::Keys(mapper(&item).into_iter().collect()))
                .boxed(),
        );
        self
    }

    /// Reconciles every object of the primary cache each time `stream` yields (a periodic
    /// full pass, a configuration change).
    #[must_use]
    pub fn reconcile_all_on<S>(mut self, stream: impl Stream<Item = S> + Send + 'static) -> Self {
        self.triggers.push(stream.map(|_| Trigger::All).boxed());
        self
    }

    /// Makes `cache` available to reconciles as [`Context::cache_of::<U>`](Context::cache_of)
    /// (unless a cache of `U` is known already).
    #[must_use]
    pub fn with_cache<U: Object>(mut self, cache: impl Into<CacheReader<U>>) -> Self {
        self.caches.insert(cache.into());
        self
    }

    /// Reports another store's size and reflector counters with the controller's metrics,
    /// labelled `store = name`, sampling them with `probe`.
    #[must_use]
    pub fn observe(
        mut self,
        name: impl Into<String>,
        probe: impl Fn() -> StoreStatus + Send + Sync + 'static,
    ) -> Self {
        self.stores.push(ObservedStore {
            name: name.into(),
            probe: Box::new(probe),
        });
        self
    }

    /// Runs the controller as one replica among several: `elector` campaigns for leadership
    /// while the controller runs, and only the leader reconciles.
    ///
    /// - **Warm standby.** Every replica waits for its caches and follows its triggers; a
    ///   follower queues keys but reconciles nothing. A replica that becomes leader reconciles
    ///   every object of its primary cache once, then follows its triggers.
    /// - **Stops in time.** When its term ends (the renew deadline passed, another holder,
    ///   cancellation), every reconcile of that term is stopped at its next `.await` and counted
    ///   in [`ControllerStats::interrupted`]: by then no other replica can have taken over (the
    ///   lease duration is longer than the renew deadline).
    /// - **Fencing.** A reconcile reads its term from [`Context::leadership`] and its token
    ///   from [`Context::fencing_token`], to guard its writes.
    /// - **Shutdown.** On cancellation the reconciles in flight finish under the current term,
    ///   then the elector ends it (releasing the lock if so configured).
    /// - **Metrics.** The elector reports `leader_election_master_status` and
    ///   `leader_election_transitions_total` ([`leader::names`](crate::leader::names)).
    ///
    /// Keep [`LeaderElector::handle`] (before passing the elector) to watch the election.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::controller::{Action, Context, Controller};
    /// use cache_core::leader::{LeaderElectionOptions, LeaderElector, MemoryLock};
    /// use cache_core::{Cache, Indexed};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// #[derive(Debug, Indexed)]
    /// struct Pod { #[key] name: String }
    ///
    /// async fn reconcile(pod: Arc<Pod>, ctx: Context<Pod, ()>) -> Result<Action, std::convert::Infallible> {
    ///     let token = ctx.fencing_token().expect("only the leader reconciles");
    ///     println!("{} under token {token}", pod.name);
    ///     Ok(Action::await_change())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = Arc::new(Cache::<Pod>::new());
    /// cache.add(Arc::new(Pod { name: "web".into() }))?;
    /// let lock = MemoryLock::new(); // an etcd or a Kubernetes lock across processes
    /// let elector = LeaderElector::new(lock.connect(), LeaderElectionOptions::new("replica-a"))?;
    /// let leader = elector.handle();
    /// let controller = Controller::for_cache(cache).leader_election(elector);
    /// let handle = controller.handle();
    /// let stop = CancellationToken::new();
    /// let run = tokio::spawn(controller.run(reconcile, Arc::new(()), stop.clone()));
    /// leader.started_leading().await;
    /// while handle.stats().reconciles < 1 {
    ///     tokio::task::yield_now().await;
    /// }
    /// stop.cancel();
    /// run.await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn leader_election(mut self, elector: LeaderElector) -> Self {
        self.elector = Some(elector);
        self
    }

    /// A handle on the controller's readiness and counters, to keep while it runs.
    pub fn handle(&self) -> ControllerHandle {
        ControllerHandle {
            status: self.status.clone(),
        }
    }

    /// Runs the controller until `cancel` is cancelled, then stops gracefully, and returns its
    /// counters. Failed reconciles are retried with backoff
    /// ([`Action::requeue_rate_limited`]); [`run_with_error_policy`](Self::run_with_error_policy)
    /// decides otherwise.
    ///
    /// `reconcile` gets the current object and a [`Context`] holding `data`; it returns what
    /// to do next with the object, or an error (logged, then handed to the error policy).
    ///
    /// The metric handles are registered when `run` is called (not when the future is first
    /// polled), with the recorder installed then: the global one, or a thread-local one set with
    /// [`metrics::with_local_recorder`].
    ///
    /// Only cancelling `cancel` stops it: dropping the token (or every clone of it) stops
    /// nothing. To stop when a scope ends, hold a [`CancellationToken::drop_guard`].
    pub fn run<D, E, F, Fut>(
        self,
        reconcile: F,
        data: Arc<D>,
        cancel: CancellationToken,
    ) -> impl Future<Output = ControllerStats> + Send + 'static
    where
        D: Send + Sync + 'static,
        E: fmt::Display + Send + 'static,
        F: Fn(Arc<T>, Context<T, D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
    {
        self.run_with_error_policy(
            reconcile,
            |_: Arc<T>, _: &E, _: &Context<T, D>| Action::requeue_rate_limited(),
            data,
            cancel,
        )
    }

    /// [`run`](Self::run), with an error policy: after a failed reconcile, `error_policy` gets
    /// the object, the error and the context, and says what to do next (a fixed delay, backoff
    /// with [`Action::requeue_rate_limited`], or giving up until the object changes with
    /// [`Action::await_change`]). A reconcile that panics is retried with backoff, without the
    /// policy.
    pub fn run_with_error_policy<D, E, F, Fut, P>(
        self,
        reconcile: F,
        error_policy: P,
        data: Arc<D>,
        cancel: CancellationToken,
    ) -> impl Future<Output = ControllerStats> + Send + 'static
    where
        D: Send + Sync + 'static,
        E: fmt::Display + Send + 'static,
        F: Fn(Arc<T>, Context<T, D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<T>, &E, &Context<T, D>) -> Action + Send + Sync + 'static,
    {
        let name = SharedString::from(self.name.clone());
        let reconcile_metrics = ReconcileMetrics::new(&name);
        let stores: Vec<(StoreMetrics, Probe)> = self
            .stores
            .into_iter()
            .map(|store| (StoreMetrics::new(&name, &store.name), store.probe))
            .collect();
        let mut queue = WorkQueue::builder().metrics(FacadeMetrics::new(name));
        if let Some(limiter) = self.rate_limiter {
            queue = queue.rate_limiter(limiter);
        }
        let queue = queue.build();
        let shared = Arc::new(Shared {
            name: Arc::from(self.name.as_str()),
            cache: self.cache,
            caches: self.caches,
            queue: queue.clone(),
        });
        let worker = Arc::new(Worker {
            reconcile,
            error_policy,
            data,
            shared: shared.clone(),
            metrics: reconcile_metrics,
            status: self.status.clone(),
        });
        let runner = Runner {
            name: self.name,
            shared,
            queue,
            ready: self.ready,
            triggers: self.triggers,
            stores,
            concurrency: self.concurrency,
            metrics_interval: self.metrics_interval,
            shutdown_timeout: self.shutdown_timeout,
            // The elector's metrics are registered now, with the recorder installed now.
            elector: self.elector.map(|elector| {
                let stop = CancellationToken::new();
                let handle = elector.handle();
                (handle, elector.run(stop.clone()).boxed(), stop)
            }),
            status: self.status,
        };
        runner.run(worker, cancel)
    }
}

/// What every reconcile task shares.
struct Worker<T: Object, D, F, P> {
    reconcile: F,
    error_policy: P,
    data: Arc<D>,
    shared: Arc<Shared<T>>,
    metrics: ReconcileMetrics,
    status: Arc<Status>,
}

/// Counts a reconcile in flight, and marks its key done, however its task ends (aborted
/// included).
struct InFlight<'a, T: Object> {
    key: &'a T::Key,
    queue: &'a WorkQueue<T::Key>,
    status: &'a Status,
    metrics: &'a ReconcileMetrics,
}

impl<T: Object> Drop for InFlight<'_, T> {
    fn drop(&mut self) {
        self.status.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.active.decrement(1.0);
        self.queue.done(self.key);
    }
}

impl<T, D, E, F, Fut, P> Worker<T, D, F, P>
where
    T: Object,
    D: Send + Sync + 'static,
    E: fmt::Display + Send + 'static,
    F: Fn(Arc<T>, Context<T, D>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    P: Fn(Arc<T>, &E, &Context<T, D>) -> Action + Send + Sync + 'static,
{
    /// Reconciles `obj`, whose key `key` was handed out by the queue, and applies the outcome.
    async fn reconcile(self: Arc<Self>, key: T::Key, obj: Arc<T>, term: Option<Leadership>) {
        let queue = &self.shared.queue;
        let _in_flight = InFlight::<T> {
            key: &key,
            queue,
            status: &self.status,
            metrics: &self.metrics,
        };
        let ctx = Context::new(self.shared.clone(), self.data.clone(), term.clone());
        let started = Instant::now();
        let run = AssertUnwindSafe(async { (self.reconcile)(obj.clone(), ctx.clone()).await })
            .catch_unwind();
        let outcome = match &term {
            None => run.await,
            Some(term) => {
                tokio::select! {
                    biased;
                    () = term.lost() => {
                        // The term ended: stop here; the next leader reconciles it again.
                        self.status.interrupted.fetch_add(1, Ordering::Relaxed);
                        debug!(?key, "leadership lost: reconcile stopped");
                        return;
                    }
                    outcome = run => outcome,
                }
            }
        };
        self.metrics.time.record(started.elapsed().as_secs_f64());
        self.status.reconciles.fetch_add(1, Ordering::Relaxed);
        let (action, succeeded) = match outcome {
            Ok(Ok(action)) => {
                self.status.successes.fetch_add(1, Ordering::Relaxed);
                self.metrics.success.increment(1);
                debug!(?key, ?action, "reconciled");
                (action, true)
            }
            Ok(Err(err)) => {
                self.count_failure();
                warn!(?key, error = %err, "reconcile failed");
                let policy = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    (self.error_policy)(obj, &err, &ctx)
                }));
                let action = policy.unwrap_or_else(|panic| {
                    error!(
                        ?key,
                        panic = panic_message(&*panic),
                        "the error policy panicked"
                    );
                    Action::requeue_rate_limited()
                });
                (action, false)
            }
            Err(panic) => {
                self.count_failure();
                self.status.panics.fetch_add(1, Ordering::Relaxed);
                error!(?key, panic = panic_message(&*panic), "reconcile panicked");
                (Action::requeue_rate_limited(), false)
            }
        };
        match action.kind() {
            Kind::Requeue(after) => {
                if succeeded {
                    queue.forget(&key);
                }
                queue.add_after(key.clone(), after);
            }
            Kind::AwaitChange => queue.forget(&key),
            Kind::RateLimited => queue.add_rate_limited(key.clone()),
        }
    }

    fn count_failure(&self) {
        self.status.errors.fetch_add(1, Ordering::Relaxed);
        self.metrics.failure.increment(1);
        self.metrics.errors.increment(1);
    }
}

/// Marks the controller stopped and not ready when dropped.
struct StopOnDrop {
    status: Arc<Status>,
    ready: metrics::Gauge,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.ready.set(0.0);
        self.status.set_phase(Phase::Stopped);
    }
}

/// The controller's main loop and what it owns.
struct Runner<T: Object> {
    name: String,
    shared: Arc<Shared<T>>,
    queue: WorkQueue<T::Key>,
    ready: Vec<BoxFuture<'static, ()>>,
    triggers: Vec<BoxStream<'static, Trigger<T::Key>>>,
    stores: Vec<(StoreMetrics, Probe)>,
    concurrency: usize,
    metrics_interval: Duration,
    shutdown_timeout: Option<Duration>,
    /// The elector's handle, its `run` future and the token that stops it.
    elector: Option<(LeaderHandle, BoxFuture<'static, ()>, CancellationToken)>,
    status: Arc<Status>,
}

/// The next term of an election, when it changes; `None` once the elector is gone.
async fn next_term(
    election: &mut watch::Receiver<ElectionState>,
    current: Option<&Leadership>,
) -> Option<Option<Leadership>> {
    let token = |term: Option<&Leadership>| term.map(Leadership::fencing_token);
    let state = election
        .wait_for(|state| token(state.leadership.as_ref()) != token(current))
        .await
        .ok()?;
    Some(state.leadership.clone())
}

impl<T: Object> Runner<T> {
    fn sample_stores(&self) {
        for (metrics, probe) in &self.stores {
            let status = probe();
            metrics.record(status.objects, status.reflector.as_ref());
        }
    }

    fn trigger(&self, trigger: Trigger<T::Key>) {
        match trigger {
            Trigger::Keys(keys) => {
                for key in keys {
                    self.queue.add(key);
                }
            }
            Trigger::All => self.queue_all(),
        }
    }

    fn queue_all(&self) {
        for key in self.shared.cache.snapshot().keys() {
            self.queue.add(key.clone());
        }
    }

    async fn run<D, E, F, Fut, P>(
        mut self,
        worker: Arc<Worker<T, D, F, P>>,
        cancel: CancellationToken,
    ) -> ControllerStats
    where
        D: Send + Sync + 'static,
        E: fmt::Display + Send + 'static,
        F: Fn(Arc<T>, Context<T, D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<T>, &E, &Context<T, D>) -> Action + Send + Sync + 'static,
    {
        let span = tracing::info_span!("controller", name = %self.name);
        // However `run` ends (the future dropped included), the handles see it stopped.
        let _stopped = StopOnDrop {
            status: self.status.clone(),
            ready: worker.metrics.ready.clone(),
        };
        async move {
            info!("Starting controller");
            let mut ready = pin!(join_all(std::mem::take(&mut self.ready)));
            let mut is_ready = false;
            let mut triggers: SelectAll<_> = std::mem::take(&mut self.triggers)
                .into_iter()
                .collect();
            let mut tasks = JoinSet::new();
            let mut tick = tokio::time::interval(self.metrics_interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            // Under leader election: the elector runs beside the loop, and `term` is this
            // replica's current term (reconciles only while it is valid).
            let (elector, elector_stop) = match self.elector.take() {
                Some((handle, run, stop)) => (Some((handle, run)), stop),
                None => (None, CancellationToken::new()),
            };
            let _elector_guard = elector_stop.clone().drop_guard();
            let mut election = elector.map(|(handle, run)| {
                let task = tokio::spawn(run.in_current_span());
                (handle.watch(), task)
            });
            let elected = election.is_some();
            let mut term: Option<Leadership> = None;
            loop {
                let leading = !elected || term.as_ref().is_some_and(Leadership::is_valid);
                let take_work = is_ready && leading && tasks.len() < self.concurrency;
                tokio::select! {
                    () = cancel.cancelled() => break,
                    next = async {
                        match election.as_mut() {
                            Some((rx, _)) => next_term(rx, term.as_ref()).await,
                            None => std::future::pending().await,
                        }
                    } => match next {
                        Some(next) => {
                            if let Some(old) = &term {
                                info!(token = old.fencing_token(), "Leadership ended: reconciles stopped");
                            }
                            if let Some(new) = &next {
                                info!(token = new.fencing_token(), "Leading: reconciling every object");
                                self.queue_all();
                            }
                            term = next;
                        }
                        None => {
                            error!("the leader elector stopped: this replica reconciles no more");
                            term = None;
                            election = None;
                        }
                    },
                    _ = &mut ready, if !is_ready => {
                        is_ready = true;
                        self.queue_all();
                        self.status.set_phase(Phase::Ready);
                        worker.metrics.ready.set(1.0);
                        info!(objects = self.shared.cache.len(), "Caches are synced; reconciling");
                    }
                    Some(trigger) = triggers.next(), if !triggers.is_empty() => self.trigger(trigger),
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    key = self.queue.get(), if take_work => {
                        // The queue is shut down only below.
                        let Some(key) = key else { break };
                        self.dispatch(&worker, &mut tasks, key, term.clone());
                    }
                    _ = tick.tick() => self.sample_stores(),
                }
            }
            // Stop: take no new work, let the reconciles in flight finish.
            self.status.set_phase(Phase::Stopping);
            worker.metrics.ready.set(0.0);
            self.queue.shut_down();
            drop(triggers);
            if !tasks.is_empty() {
                info!(in_flight = tasks.len(), "Stopping: waiting for the reconciles in flight");
            }
            let drain = async { while tasks.join_next().await.is_some() {} };
            let drained = match self.shutdown_timeout {
                None => {
                    drain.await;
                    true
                }
                Some(timeout) => tokio::time::timeout(timeout, drain).await.is_ok(),
            };
            if !drained {
                let aborted = tasks.len();
                warn!(aborted, "Reconciles still running at the shutdown timeout: dropping them");
                self.status
                    .aborted
                    .fetch_add(aborted as u64, Ordering::Relaxed);
                tasks.shutdown().await;
            }
            // The reconciles are over: now the term may end, and the lock be released.
            elector_stop.cancel();
            if let Some((_, task)) = election {
                let _ = task.await;
            }
            self.sample_stores();
            self.status.set_phase(Phase::Stopped);
            let stats = self.status.stats();
            info!(
                reconciles = stats.reconciles,
                errors = stats.errors,
                "Stopped controller"
            );
            stats
        }
        .instrument(span)
        .await
    }

    /// Starts the reconcile of `key`, or skips it if its object is gone.
    fn dispatch<D, E, F, Fut, P>(
        &self,
        worker: &Arc<Worker<T, D, F, P>>,
        tasks: &mut JoinSet<()>,
        key: T::Key,
        term: Option<Leadership>,
    ) where
        D: Send + Sync + 'static,
        E: fmt::Display + Send + 'static,
        F: Fn(Arc<T>, Context<T, D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<T>, &E, &Context<T, D>) -> Action + Send + Sync + 'static,
    {
        let Some(obj) = self.shared.cache.get_by_key(&key) else {
            debug!(?key, "the object is gone from the cache: skipped");
            self.status.skipped.fetch_add(1, Ordering::Relaxed);
            worker.metrics.skipped.increment(1);
            self.queue.forget(&key);
            self.queue.done(&key);
            return;
        };
        self.status.in_flight.fetch_add(1, Ordering::Relaxed);
        worker.metrics.active.increment(1.0);
        tasks.spawn(worker.clone().reconcile(key, obj, term).in_current_span());
    }
}
