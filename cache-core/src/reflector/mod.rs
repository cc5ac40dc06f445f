//! [`Reflector`]: keeps a [`Store`] equal to a remote collection by listing, then watching.
//!
//! The reflector follows client-go's semantics:
//!
//! - **The cycle.** It lists (in pages of 500 by default), replaces the store with the list at
//!   the list's resource version, then watches from that version with bookmarks and applies each
//!   event. Where the source offers the streaming initial list, it uses that instead of a list
//!   (the initial `Added` events fill a temporary map, which replaces the store at the bookmark
//!   that ends them; the watch stays open) and falls back to a list when it fails.
//! - **Versions.** It keeps the last version it has seen, bookmarks included. A watch from `""`
//!   or `"0"` starts with synthetic `Added` events out of version order: their versions are not
//!   kept until the first other event.
//! - **Recovery**, by the kind of [`SourceError`]:
//!
//!   | what failed | what the reflector does |
//!   |---|---|
//!   | a watch ends cleanly (timeout, closed connection) | re-watches from the last version, no relist |
//!   | expired or gone | relists at the last version |
//!   | resource version too large | relists at the latest version (`""`) |
//!   | too many requests, connection refused (watch) | re-watches after one backoff delay, no relist |
//!   | internal (watch) | re-watches at once while [`ReflectorOptions::max_internal_error_retry`] allows, then relists |
//!   | decode failure of one object | reports it, skips the object, goes on |
//!   | a continuation page expired | lists again in full, unpaginated |
//!   | anything else (a failed list, a watch that closes in under a second with no event, ...) | backs off, then relists |
//!
//! - **Backoff** between relists: 0.8 s doubling with jitter up to a 30 s base, starting over
//!   after 2 healthy minutes ([`BackoffConfig`]).
//! - **Batching.** Watch events that are already waiting are applied together with one
//!   [`Store::transaction`] (one publish on a [`Cache`](crate::Cache)).
//! - **Errors** go to the watch-error handler (and to `tracing`); none is fatal. The reflector
//!   stops only when its [`CancellationToken`] is cancelled. It spawns no task: everything runs
//!   inside [`Reflector::run`], so nothing is left behind when that returns.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use cache_core::reflector::Reflector;
//! use cache_core::source::memory::MemorySource;
//! use cache_core::{Cache, Object, ResourceVersion};
//! use tokio_util::sync::CancellationToken;
//!
//! #[derive(Clone, Debug)]
//! struct Item { name: String, rv: Option<ResourceVersion> }
//! impl Object for Item {
//!     type Key = String;
//!     fn key(&self) -> String { self.name.clone() }
//!     fn resource_version(&self) -> Option<ResourceVersion> { self.rv.clone() }
//!     fn set_resource_version(&mut self, rv: ResourceVersion) { self.rv = Some(rv); }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let source = MemorySource::new();
//! source.put(Item { name: "a".into(), rv: None });
//!
//! let cache = Arc::new(Cache::with_indexers(Default::default()));
//! let reflector = Reflector::builder(source.clone(), cache.clone()).name("items").build();
//! let stop = CancellationToken::new();
//! let task = tokio::spawn({
//!     let (reflector, stop) = (reflector.clone(), stop.clone());
//!     async move { reflector.run(stop).await }
//! });
//!
//! reflector.wait_for_sync().await;
//! assert_eq!(cache.len(), 1);
//!
//! let rv = source.put(Item { name: "b".into(), rv: None });
//! while reflector.last_sync_resource_version() != Some(rv.clone()) {
//!     tokio::task::yield_now().await;
//! }
//! assert_eq!(cache.len(), 2);
//!
//! stop.cancel();
//! task.await.unwrap();
//! # });
//! ```

mod backoff;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

pub use backoff::{Backoff, BackoffConfig, RetryWithDeadline};

use crate::object::{Object, ResourceVersion};
use crate::source::{
    ListOptions, ListerWatcher, ObjectList, SourceError, SourceErrorKind, VersionMatch, WatchEvent,
    WatchStream,
};
use crate::store::{Change, Store, StoreError, TransactionError};

/// The page size of a list when none is configured (client-go's pager default).
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// The shortest server-side watch timeout; each watch asks for a random one between this (or
/// [`ReflectorOptions::min_watch_timeout`], when longer) and twice that.
pub const MIN_WATCH_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How a reflector behaves. The defaults are client-go's, except where noted.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReflectorOptions {
    /// How often [`Store::resync`] is called while watching (when
    /// [`ReflectorBuilder::should_resync`] agrees). Zero: never. Default zero.
    pub resync_period: Duration,
    /// The page size of lists (client-go's `WatchListPageSize`). `None` follows client-go: 500
    /// for lists at `""`/`"0"`, unpaginated for lists at a given version (unless an earlier
    /// `"0"` list came back paginated, which means the source does not serve such lists from a
    /// cache). `Some(0)` never paginates.
    pub page_size: Option<u32>,
    /// The backoff between relists and before re-watches after "too many requests" or
    /// "connection refused".
    pub backoff: BackoffConfig,
    /// The lower bound of the random watch timeout, honoured only above
    /// [`MIN_WATCH_TIMEOUT`]. Default 5 minutes.
    pub min_watch_timeout: Duration,
    /// How long internal errors of a watch are retried by re-watching at once, before the
    /// reflector relists. Default 30 s (client-go's `MaxInternalErrorRetryDuration` defaults to
    /// zero, which never retries).
    pub max_internal_error_retry: Duration,
    /// Whether to use the streaming initial list when the source offers it. Default true.
    pub use_watch_list: bool,
    /// The most watch events applied in one store transaction. Default 1024.
    pub max_batch: usize,
}

impl Default for ReflectorOptions {
    fn default() -> Self {
        Self {
            resync_period: Duration::ZERO,
            page_size: None,
            backoff: BackoffConfig::default(),
            min_watch_timeout: MIN_WATCH_TIMEOUT,
            max_internal_error_retry: Duration::from_secs(30),
            use_watch_list: true,
            max_batch: 1024,
        }
    }
}

/// What went wrong, as reported to the watch-error handler. None of these stops the reflector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReflectorError {
    /// A list failed. The reflector backs off, then lists again.
    #[error("failed to list: {0}")]
    List(SourceError),
    /// A watch could not be opened.
    #[error("failed to watch: {0}")]
    WatchStart(SourceError),
    /// A watch ended with an error (an error event or a failed stream).
    #[error("watch ended with an error: {0}")]
    WatchEnded(SourceError),
    /// A watch closed in under a second without a single event.
    #[error("very short watch: the watch closed in under a second without any event")]
    VeryShortWatch,
    /// The source could not decode one object; it was skipped.
    #[error("skipped an object that failed to decode: {0}")]
    Decode(SourceError),
    /// An object was rejected by the reflector's validation (for example a wrong key); it was
    /// skipped.
    #[error("skipped invalid object {key}: {reason}")]
    InvalidObject {
        /// The object's key, rendered with `Debug`.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The store rejected some writes of a replace; the others were applied.
    #[error("the store rejected a write: {0}")]
    Store(StoreError),
    /// The store rejected some watch events of a batch; the others were applied.
    #[error("the store rejected watch events: {0}")]
    Transaction(TransactionError),
    /// [`Store::resync`] failed; the watch ends and the reflector relists.
    #[error("resync failed: {0}")]
    Resync(StoreError),
}

impl ReflectorError {
    /// The source error behind this one, if any.
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            ReflectorError::List(e)
            | ReflectorError::WatchStart(e)
            | ReflectorError::WatchEnded(e)
            | ReflectorError::Decode(e) => Some(e),
            _ => None,
        }
    }

    /// The kind of the source error behind this one, if any.
    pub fn source_kind(&self) -> Option<SourceErrorKind> {
        self.source_error().map(|e| e.kind)
    }
}

/// Counters of a reflector's work, for metrics. See [`Reflector::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReflectorStats {
    /// Completed initial syncs: lists and streaming initial lists that replaced the store.
    pub lists: u64,
    /// Of those, the ones after the first (relists).
    pub relists: u64,
    /// Watches opened (streaming initial lists included).
    pub watch_starts: u64,
    /// Of those, the ones after the first.
    pub watch_restarts: u64,
    /// Object events (added, modified, deleted) handed to the store.
    pub events: u64,
    /// Bookmarks received while watching.
    pub bookmarks: u64,
    /// Resyncs of the store.
    pub resyncs: u64,
    /// Errors reported to the watch-error handler.
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    lists: AtomicU64,
    watch_starts: AtomicU64,
    events: AtomicU64,
    bookmarks: AtomicU64,
    resyncs: AtomicU64,
    errors: AtomicU64,
}

type ErrorHandler = dyn Fn(&ReflectorError) + Send + Sync;
type Validator<T> = dyn Fn(&T) -> Result<(), String> + Send + Sync;
type ShouldResync = dyn Fn() -> bool + Send + Sync;

/// Lists, then watches a source, and keeps a [`Store`] equal to it. See the
/// [module documentation](self).
///
/// Cloning is cheap: clones share one reflector (its state, counters and store).
pub struct Reflector<T: Object> {
    inner: Arc<Inner<T>>,
}

impl<T: Object> Clone for Reflector<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Object> fmt::Debug for Reflector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reflector")
            .field("name", &self.inner.name)
            .field("has_synced", &self.has_synced())
            .field(
                "last_sync_resource_version",
                &self.last_sync_resource_version(),
            )
            .finish_non_exhaustive()
    }
}

struct Inner<T: Object> {
    name: String,
    source: Box<dyn ListerWatcher<T>>,
    store: Arc<dyn Store<T>>,
    options: ReflectorOptions,
    on_error: Option<Box<ErrorHandler>>,
    validate: Option<Box<Validator<T>>>,
    should_resync: Option<Box<ShouldResync>>,
    state: Mutex<SyncState>,
    backoff: Mutex<Backoff>,
    synced: tokio::sync::watch::Sender<bool>,
    counters: Counters,
    running: AtomicBool,
}

#[derive(Default)]
struct SyncState {
    last_sync: Option<ResourceVersion>,
    /// The last version was refused (expired, too large): the next list or streaming list asks
    /// for the latest state.
    unavailable: bool,
    /// A list at "0" came back in pages: the source does not serve lists from a cache.
    paginated_result: bool,
}

/// Builds a [`Reflector`]; from [`Reflector::builder`].
pub struct ReflectorBuilder<T: Object> {
    name: String,
    source: Box<dyn ListerWatcher<T>>,
    store: Arc<dyn Store<T>>,
    options: ReflectorOptions,
    on_error: Option<Box<ErrorHandler>>,
    validate: Option<Box<Validator<T>>>,
    should_resync: Option<Box<ShouldResync>>,
}

impl<T: Object> fmt::Debug for ReflectorBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReflectorBuilder")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T: Object> ReflectorBuilder<T> {
    /// The name in logs (default: the `file:line` that called [`Reflector::builder`], as
    /// client-go's).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// All options at once.
    #[must_use]
    pub fn options(mut self, options: ReflectorOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets [`ReflectorOptions::resync_period`].
    #[must_use]
    pub fn resync_period(mut self, period: Duration) -> Self {
        self.options.resync_period = period;
        self
    }

    /// Asked at each resync tick; the store is resynced only when it returns true (client-go's
    /// `ShouldResync`). Without it, every tick resyncs.
    #[must_use]
    pub fn should_resync(mut self, f: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.should_resync = Some(Box::new(f));
        self
    }

    /// Sets [`ReflectorOptions::page_size`].
    #[must_use]
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.options.page_size = Some(page_size);
        self
    }

    /// Sets [`ReflectorOptions::backoff`].
    #[must_use]
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.options.backoff = backoff;
        self
    }

    /// Sets [`ReflectorOptions::use_watch_list`].
    #[must_use]
    pub fn use_watch_list(mut self, enabled: bool) -> Self {
        self.options.use_watch_list = enabled;
        self
    }

    /// Sets [`ReflectorOptions::max_internal_error_retry`].
    #[must_use]
    pub fn max_internal_error_retry(mut self, window: Duration) -> Self {
        self.options.max_internal_error_retry = window;
        self
    }

    /// Sets [`ReflectorOptions::max_batch`].
    #[must_use]
    pub fn max_batch(mut self, events: usize) -> Self {
        self.options.max_batch = events;
        self
    }

    /// Receives every error (client-go's watch-error handler). Without one, errors are logged
    /// through `tracing` (expired versions at debug level, the rest as warnings); they are
    /// logged at debug level either way.
    #[must_use]
    pub fn watch_error_handler(
        mut self,
        handler: impl Fn(&ReflectorError) + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Box::new(handler));
        self
    }

    /// Checks every object from the source before it reaches the store; a rejected object is
    /// skipped and reported as [`ReflectorError::InvalidObject`] (for example an object whose
    /// key is not one this collection may hold).
    #[must_use]
    pub fn validate(
        mut self,
        check: impl Fn(&T) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.validate = Some(Box::new(check));
        self
    }

    /// The reflector.
    pub fn build(self) -> Reflector<T> {
        let backoff = Backoff::new(self.options.backoff.clone());
        Reflector {
            inner: Arc::new(Inner {
                name: self.name,
                source: self.source,
                store: self.store,
                options: self.options,
                on_error: self.on_error,
                validate: self.validate,
                should_resync: self.should_resync,
                state: Mutex::new(SyncState::default()),
                backoff: Mutex::new(backoff),
                synced: tokio::sync::watch::Sender::new(false),
                counters: Counters::default(),
                running: AtomicBool::new(false),
            }),
        }
    }
}

/// How one watch ended without an error.
enum WatchEnd {
    Closed,
    Cancelled,
}

/// Runs `f` unless `cancel` fires first.
async fn or_cancel<F: Future>(cancel: &CancellationToken, f: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        out = f => Some(out),
    }
}

/// Sleeps for `delay`; false when cancelled first.
async fn sleep_or_cancel(cancel: &CancellationToken, delay: Duration) -> bool {
    or_cancel(cancel, tokio::time::sleep(delay)).await.is_some()
}

fn is_unset(rv: Option<&ResourceVersion>) -> bool {
    matches!(rv.map(ResourceVersion::as_str), None | Some("") | Some("0"))
}

/// Whether a watch that failed this way is opened again after a backoff, without a relist.
fn rewatch_after_backoff(kind: SourceErrorKind) -> bool {
    matches!(
        kind,
        SourceErrorKind::TooManyRequests | SourceErrorKind::ConnectionRefused
    )
}

/// The resync timer of one watch phase.
struct ResyncTimer {
    period: Duration,
    sleep: Option<std::pin::Pin<Box<Sleep>>>,
}

impl ResyncTimer {
    fn new(period: Duration) -> Self {
        let sleep = (!period.is_zero()).then(|| Box::pin(tokio::time::sleep(period)));
        Self { period, sleep }
    }

    async fn tick(&mut self) {
        match &mut self.sleep {
            Some(sleep) => {
                sleep.as_mut().await;
                let period = self.period;
                sleep.as_mut().reset(Instant::now() + period);
            }
            None => std::future::pending().await,
        }
    }
}

/// Watch events gathered for one store transaction.
struct Batch<T> {
    changes: Vec<Change<T>>,
    resource_version: Option<ResourceVersion>,
}

impl<T: Object> Reflector<T> {
    /// A reflector from `source` into `store`, to configure.
    #[track_caller]
    pub fn builder<L, S>(source: L, store: Arc<S>) -> ReflectorBuilder<T>
    where
        L: ListerWatcher<T>,
        S: Store<T> + 'static,
    {
        let caller = std::panic::Location::caller();
        ReflectorBuilder {
            name: format!("{}:{}", caller.file(), caller.line()),
            source: Box::new(source),
            store,
            options: ReflectorOptions::default(),
            on_error: None,
            validate: None,
            should_resync: None,
        }
    }

    /// A reflector from `source` into `store` with the default options.
    #[track_caller]
    pub fn new<L, S>(source: L, store: Arc<S>) -> Self
    where
        L: ListerWatcher<T>,
        S: Store<T> + 'static,
    {
        Self::builder(source, store).build()
    }

    /// The name in logs.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The options.
    pub fn options(&self) -> &ReflectorOptions {
        &self.inner.options
    }

    /// Whether the store has been filled once (by a list or a streaming initial list).
    pub fn has_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Waits until [`has_synced`](Self::has_synced).
    pub async fn wait_for_sync(&self) {
        let mut rx = self.inner.synced.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// The version of the collection the store reflects: that of the last list, event or
    /// bookmark applied (client-go's `LastSyncResourceVersion`).
    pub fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.state().last_sync.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ReflectorStats {
        let c = &self.inner.counters;
        let lists = c.lists.load(Ordering::Relaxed);
        let watch_starts = c.watch_starts.load(Ordering::Relaxed);
        ReflectorStats {
            lists,
            relists: lists.saturating_sub(1),
            watch_starts,
            watch_restarts: watch_starts.saturating_sub(1),
            events: c.events.load(Ordering::Relaxed),
            bookmarks: c.bookmarks.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    fn state(&self) -> MutexGuard<'_, SyncState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next_delay(&self) -> Duration {
        self.inner
            .backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next_delay()
    }

    /// Whether `rv` is older than the last version synced. Versions are opaque, so this is only
    /// known when both are numbers (etcd revisions, the in-memory source, Kubernetes in
    /// practice); otherwise nothing is behind.
    fn is_behind(&self, rv: &ResourceVersion) -> bool {
        let last = self
            .state()
            .last_sync
            .as_ref()
            .and_then(ResourceVersion::as_u64);
        matches!((rv.as_u64(), last), (Some(rv), Some(last)) if rv < last)
    }

    fn set_last_sync(&self, rv: ResourceVersion) {
        self.state().last_sync = Some(rv);
    }

    fn report(&self, error: &ReflectorError) {
        self.inner.counters.errors.fetch_add(1, Ordering::Relaxed);
        debug!(reflector = %self.inner.name, %error, "reflector error");
        match &self.inner.on_error {
            Some(handler) => handler(error),
            None if error.source_error().is_some_and(SourceError::is_expired) => {}
            None => warn!(reflector = %self.inner.name, %error, "reflector error"),
        }
    }

    /// Lists and watches until `cancel` fires, recovering from every failure. After each
    /// list-and-watch cycle ends (a relist is due), waits one backoff delay. Returns when
    /// cancelled; the source's futures and streams are dropped by then.
    ///
    /// A reflector runs once at a time: a second `run` while one is going (on any clone) logs a
    /// warning and returns at once.
    pub async fn run(&self, cancel: CancellationToken) {
        let span = tracing::info_span!("reflector", name = %self.inner.name);
        if self.inner.running.swap(true, Ordering::AcqRel) {
            let _entered = span.enter();
            warn!("the reflector is already running");
            return;
        }
        // Cleared however `run` ends, dropped future included.
        let _running = Running(&self.inner.running);
        async {
            info!("Starting reflector");
            while !cancel.is_cancelled() {
                if let Err(error) = self.list_and_watch(&cancel).await {
                    self.report(&error);
                }
                if cancel.is_cancelled() || !sleep_or_cancel(&cancel, self.next_delay()).await {
                    break;
                }
            }
            info!("Stopping reflector");
        }
        .instrument(span)
        .await;
    }

    /// One cycle: fills the store (streaming initial list, or list), then watches until a relist
    /// is due or `cancel` fires (client-go's `ListAndWatch`). Returns `Ok` when cancelled. Errors
    /// handled within the cycle (re-watches after a backoff, internal errors retried, skipped
    /// objects, writes the store refused) have been reported to the watch-error handler already.
    ///
    /// # Errors
    ///
    /// The error that ended the cycle, after which [`run`](Self::run) backs off and relists: a
    /// failed list, a watch that could not be opened or that ended with an error (an expired
    /// version included), a very short watch, a failed resync.
    pub async fn list_and_watch(&self, cancel: &CancellationToken) -> Result<(), ReflectorError> {
        if cancel.is_cancelled() {
            return Ok(());
        }
        debug!(reflector = %self.inner.name, "Listing and watching");
        let mut stream = None;
        if self.inner.options.use_watch_list && self.inner.source.supports_watch_list() {
            match self.watch_list(cancel).await {
                Ok(Some(s)) => stream = Some(s),
                Ok(None) => return Ok(()),
                Err(error) => {
                    debug!(reflector = %self.inner.name, %error, "streaming list failed, falling back to a list");
                }
            }
        }
        if stream.is_none() && !self.list(cancel).await? {
            return Ok(());
        }
        self.inner.synced.send_replace(true);
        debug!(reflector = %self.inner.name, "Caches populated");
        self.watch(stream, cancel).await
    }

    fn relist_resource_version(&self) -> Option<ResourceVersion> {
        let state = self.state();
        if state.unavailable {
            None
        } else {
            Some(state.last_sync.clone().unwrap_or_else(|| "0".into()))
        }
    }

    fn page_size_for(&self, rv: Option<&ResourceVersion>) -> u32 {
        match self.inner.options.page_size {
            Some(size) => size,
            None if self.state().paginated_result => DEFAULT_PAGE_SIZE,
            None if !is_unset(rv) => 0,
            None => DEFAULT_PAGE_SIZE,
        }
    }

    fn watch_timeout(&self) -> Duration {
        let min = self.inner.options.min_watch_timeout.max(MIN_WATCH_TIMEOUT);
        min + min.mul_f64(rand::random::<f64>())
    }

    /// Lists into the store. `Ok(false)` when cancelled.
    async fn list(&self, cancel: &CancellationToken) -> Result<bool, ReflectorError> {
        let rv = self.relist_resource_version();
        let result = match or_cancel(cancel, self.paged_list(rv.clone())).await {
            None => return Ok(false),
            Some(result) => result,
        };
        let (list, paginated) = match result {
            Ok(out) => out,
            Err(error) if error.is_expired() => {
                // The version is gone or in the future: ask for the latest state at once.
                debug!(reflector = %self.inner.name, %error, "list version unavailable, listing the latest");
                self.state().unavailable = true;
                match or_cancel(cancel, self.paged_list(None)).await {
                    None => return Ok(false),
                    Some(result) => result.map_err(ReflectorError::List)?,
                }
            }
            Err(error) => return Err(ReflectorError::List(error)),
        };
        {
            let mut state = self.state();
            if paginated && rv.as_ref().is_some_and(|rv| rv.as_str() == "0") {
                state.paginated_result = true;
            }
            state.unavailable = false;
        }
        let ObjectList {
            items,
            resource_version,
            skipped,
            ..
        } = list;
        for error in skipped {
            self.report(&ReflectorError::Decode(error));
        }
        let items = self.valid(items);
        if let Err(error) = self.inner.store.replace(items, resource_version.clone()) {
            self.report(&ReflectorError::Store(error));
        }
        self.inner.counters.lists.fetch_add(1, Ordering::Relaxed);
        if let Some(rv) = resource_version {
            self.set_last_sync(rv);
        }
        Ok(true)
    }

    /// A list, paginated by `page_size` (client-go's pager): the pages are merged; a
    /// continuation page that expired makes one full, unpaginated list at `rv`. Also tells
    /// whether the result came in several pages.
    async fn paged_list(
        &self,
        rv: Option<ResourceVersion>,
    ) -> Result<(ObjectList<T>, bool), SourceError> {
        let limit = Some(self.page_size_for(rv.as_ref())).filter(|l| *l > 0);
        let first = self
            .inner
            .source
            .list(ListOptions {
                resource_version: rv.clone(),
                limit,
                ..ListOptions::default()
            })
            .await?;
        let mut token = first.continue_token.clone().filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok((first, false));
        }
        let mut merged = first;
        while let Some(t) = token.take() {
            let page = self
                .inner
                .source
                .list(ListOptions {
                    limit,
                    continue_token: Some(t),
                    ..ListOptions::default()
                })
                .await;
            match page {
                Ok(page) => {
                    merged.items.extend(page.items);
                    merged.skipped.extend(page.skipped);
                    token = page.continue_token.filter(|t| !t.is_empty());
                }
                Err(error) if error.kind == SourceErrorKind::Expired => {
                    debug!(reflector = %self.inner.name, %error, "continue token expired, listing in full");
                    let full = self
                        .inner
                        .source
                        .list(ListOptions {
                            resource_version: rv,
                            ..ListOptions::default()
                        })
                        .await?;
                    return Ok((full, false));
                }
                Err(error) => return Err(error),
            }
        }
        merged.continue_token = None;
        Ok((merged, true))
    }

    fn valid(&self, items: Vec<Arc<T>>) -> Vec<Arc<T>> {
        if self.inner.validate.is_none() {
            return items;
        }
        items.into_iter().filter(|o| self.check(o)).collect()
    }

    /// Whether `obj` passes validation; reports it when not.
    fn check(&self, obj: &T) -> bool {
        let Some(validate) = &self.inner.validate else {
            return true;
        };
        match validate(obj) {
            Ok(()) => true,
            Err(reason) => {
                self.report(&ReflectorError::InvalidObject {
                    key: format!("{:?}", obj.key()),
                    reason,
                });
                false
            }
        }
    }

    /// The streaming initial list. `Ok(Some(stream))`: the store was replaced and the watch is
    /// still open; `Ok(None)`: cancelled; `Err`: fall back to a list.
    async fn watch_list(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<WatchStream<T>>, SourceError> {
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let rv = {
                let state = self.state();
                if state.unavailable {
                    None
                } else {
                    state.last_sync.clone()
                }
            };
            let options = ListOptions {
                resource_version: rv,
                version_match: VersionMatch::NotOlderThan,
                allow_bookmarks: true,
                send_initial_events: true,
                timeout: Some(self.watch_timeout()),
                ..ListOptions::default()
            };
            let opened = match or_cancel(cancel, self.inner.source.watch(options)).await {
                None => return Ok(None),
                Some(opened) => opened,
            };
            let failure = match opened {
                Ok(stream) => {
                    self.inner
                        .counters
                        .watch_starts
                        .fetch_add(1, Ordering::Relaxed);
                    match self.stream_initial(stream, cancel).await {
                        Initial::Done(stream) => return Ok(Some(stream)),
                        Initial::Cancelled => return Ok(None),
                        Initial::Closed => None,
                        Initial::Failed(error) => Some(error),
                    }
                }
                Err(error) => Some(error),
            };
            match failure {
                None => {
                    // Closed before the end of the initial events: start over.
                    debug!(reflector = %self.inner.name, "streaming list closed early, retrying");
                    if !sleep_or_cancel(cancel, self.next_delay()).await {
                        return Ok(None);
                    }
                }
                Some(error) if rewatch_after_backoff(error.kind) => {
                    self.report(&ReflectorError::WatchStart(error));
                    if !sleep_or_cancel(cancel, self.next_delay()).await {
                        return Ok(None);
                    }
                }
                Some(error) if error.is_expired() => {
                    debug!(reflector = %self.inner.name, %error, "streaming list version unavailable");
                    self.state().unavailable = true;
                }
                Some(error) => return Err(error),
            }
        }
    }

    /// Reads the initial events of a streaming list into a temporary map, then replaces the
    /// store at the bookmark that ends them.
    async fn stream_initial(
        &self,
        mut stream: WatchStream<T>,
        cancel: &CancellationToken,
    ) -> Initial<T> {
        let mut temp = Initials::new();
        let started = Instant::now();
        let mut last_event: Option<Instant> = None;
        let mut ticker =
            tokio::time::interval_at(started + Duration::from_secs(10), Duration::from_secs(10));
        loop {
            let first = tokio::select! {
                biased;
                () = cancel.cancelled() => return Initial::Cancelled,
                item = stream.next() => item,
                _ = ticker.tick() => {
                    match last_event {
                        None => warn!(reflector = %self.inner.name, waited = ?started.elapsed(),
                            "awaiting required bookmark event for initial events stream, no events received"),
                        Some(at) => warn!(reflector = %self.inner.name, since = ?at.elapsed(),
                            "hasn't received required bookmark event marking the end of initial events stream"),
                    }
                    continue;
                }
            };
            last_event = Some(Instant::now());
            // Take what is already waiting without going back to the select.
            let mut next = Some(first);
            while let Some(item) = next.take() {
                match item {
                    None => return Initial::Closed,
                    Some(Ok(WatchEvent::Added(obj))) => {
                        if self.check(&obj) {
                            temp.add(obj);
                        }
                    }
                    Some(Ok(WatchEvent::Modified(obj))) => {
                        if self.check(&obj) {
                            temp.keyed().insert(obj.key(), obj);
                        }
                    }
                    Some(Ok(WatchEvent::Deleted(obj))) => {
                        temp.keyed().remove(&obj.key());
                    }
                    Some(Ok(WatchEvent::Bookmark {
                        resource_version,
                        initial_events_end: true,
                    })) => {
                        self.state().unavailable = false;
                        let items = temp.into_items();
                        if let Err(error) = self
                            .inner
                            .store
                            .replace(items, Some(resource_version.clone()))
                        {
                            self.report(&ReflectorError::Store(error));
                        }
                        self.inner.counters.lists.fetch_add(1, Ordering::Relaxed);
                        self.set_last_sync(resource_version);
                        return Initial::Done(stream);
                    }
                    Some(Ok(WatchEvent::Bookmark { .. })) => {}
                    Some(Err(error)) if error.kind == SourceErrorKind::Decode => {
                        self.report(&ReflectorError::Decode(error));
                    }
                    Some(Ok(WatchEvent::Error(error)) | Err(error)) => {
                        return Initial::Failed(error);
                    }
                }
                next = stream.next().now_or_never();
            }
        }
    }

    /// Watches from the last version (or goes on with `stream`, left open by a streaming list)
    /// until a relist is due or `cancel` fires.
    async fn watch(
        &self,
        mut stream: Option<WatchStream<T>>,
        cancel: &CancellationToken,
    ) -> Result<(), ReflectorError> {
        let mut resync = ResyncTimer::new(self.inner.options.resync_period);
        let mut retry = RetryWithDeadline::new(
            self.inner.options.max_internal_error_retry,
            Duration::from_secs(60),
        );
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let (watch, from) = match stream.take() {
                Some(watch) => (watch, self.last_sync_resource_version()),
                None => {
                    let from = self.last_sync_resource_version();
                    let options = ListOptions {
                        resource_version: from.clone(),
                        allow_bookmarks: true,
                        timeout: Some(self.watch_timeout()),
                        ..ListOptions::default()
                    };
                    match or_cancel(cancel, self.inner.source.watch(options)).await {
                        None => return Ok(()),
                        Some(Ok(watch)) => {
                            self.inner
                                .counters
                                .watch_starts
                                .fetch_add(1, Ordering::Relaxed);
                            (watch, from)
                        }
                        Some(Err(error)) if rewatch_after_backoff(error.kind) => {
                            self.report(&ReflectorError::WatchStart(error));
                            if !sleep_or_cancel(cancel, self.next_delay()).await {
                                return Ok(());
                            }
                            continue;
                        }
                        Some(Err(error)) => {
                            if error.kind == SourceErrorKind::TooLargeResourceVersion {
                                self.state().unavailable = true;
                            }
                            return Err(ReflectorError::WatchStart(error));
                        }
                    }
                }
            };
            let error = match self
                .handle_watch(watch, !is_unset(from.as_ref()), &mut resync, cancel)
                .await
            {
                Ok(WatchEnd::Closed) => continue,
                Ok(WatchEnd::Cancelled) => return Ok(()),
                Err(error) => error,
            };
            let kind = error.source_kind();
            retry.after(kind == Some(SourceErrorKind::Internal));
            match kind {
                Some(SourceErrorKind::Expired) => {
                    debug!(reflector = %self.inner.name, %error, "watch closed, relisting");
                    return Err(error);
                }
                Some(SourceErrorKind::TooLargeResourceVersion) => {
                    self.state().unavailable = true;
                    return Err(error);
                }
                Some(k) if rewatch_after_backoff(k) => {
                    self.report(&error);
                    if !sleep_or_cancel(cancel, self.next_delay()).await {
                        return Ok(());
                    }
                }
                Some(SourceErrorKind::Internal) if retry.should_retry() => {
                    self.report(&error);
                }
                _ => {
                    debug!(reflector = %self.inner.name, %error, "watch ended with error, relisting");
                    return Err(error);
                }
            }
        }
    }

    /// Applies the events of one watch until it ends. `propagate`: whether `Added` events carry
    /// versions to keep (false for a watch from `""`/`"0"`, until its first other event).
    async fn handle_watch(
        &self,
        mut stream: WatchStream<T>,
        mut propagate: bool,
        resync: &mut ResyncTimer,
        cancel: &CancellationToken,
    ) -> Result<WatchEnd, ReflectorError> {
        let started = Instant::now();
        let mut seen = 0usize;
        let max_batch = self.inner.options.max_batch.max(1);
        loop {
            let first = tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(WatchEnd::Cancelled),
                () = resync.tick() => {
                    self.resync()?;
                    continue;
                }
                item = stream.next() => item,
            };
            let Some(first) = first else {
                if seen == 0 && started.elapsed() < Duration::from_secs(1) {
                    return Err(ReflectorError::VeryShortWatch);
                }
                return Ok(WatchEnd::Closed);
            };
            // Drain what is already waiting, then apply it in one transaction.
            let mut batch = Batch {
                changes: Vec::new(),
                resource_version: None,
            };
            let mut next = Some(first);
            let mut ended = false;
            let mut taken = 0;
            while let Some(item) = next.take() {
                seen += 1;
                taken += 1;
                if let Err(error) = self.absorb(item, &mut batch, &mut propagate) {
                    self.flush(&mut batch);
                    return Err(error);
                }
                if taken < max_batch {
                    match stream.next().now_or_never() {
                        Some(Some(item)) => next = Some(item),
                        Some(None) => ended = true,
                        None => {}
                    }
                }
            }
            self.flush(&mut batch);
            if ended {
                return Ok(WatchEnd::Closed);
            }
        }
    }

    /// Adds one watch item to `batch`; bookmarks flush it first. An error ends the watch.
    fn absorb(
        &self,
        item: Result<WatchEvent<T>, SourceError>,
        batch: &mut Batch<T>,
        propagate: &mut bool,
    ) -> Result<(), ReflectorError> {
        let (change, added) = match item {
            Ok(WatchEvent::Added(obj)) => (Change::Add(obj), true),
            Ok(WatchEvent::Modified(obj)) => (Change::Update(obj), false),
            Ok(WatchEvent::Deleted(obj)) => (Change::Delete(obj), false),
            Ok(WatchEvent::Bookmark {
                resource_version, ..
            }) => {
                self.flush(batch);
                if self.is_behind(&resource_version) {
                    // A lagging or restarted etcd member can report progress below what this
                    // watch has already seen; applying it would move the version backwards.
                    debug!(reflector = %self.inner.name, bookmark = %resource_version,
                        last = ?self.last_sync_resource_version(), "ignoring a stale bookmark");
                    return Ok(());
                }
                self.inner
                    .counters
                    .bookmarks
                    .fetch_add(1, Ordering::Relaxed);
                self.inner.store.bookmark(resource_version.clone());
                *propagate = true;
                self.set_last_sync(resource_version);
                return Ok(());
            }
            Ok(WatchEvent::Error(error)) => return Err(ReflectorError::WatchEnded(error)),
            Err(error) if error.kind == SourceErrorKind::Decode => {
                self.report(&ReflectorError::Decode(error));
                return Ok(());
            }
            Err(error) => return Err(ReflectorError::WatchEnded(error)),
        };
        if !added {
            *propagate = true;
        }
        if !self.check(change.object()) {
            return Ok(());
        }
        if *propagate && let Some(rv) = change.object().resource_version() {
            batch.resource_version = Some(rv);
        }
        batch.changes.push(change);
        Ok(())
    }

    /// Applies the gathered events in one transaction and records their version.
    fn flush(&self, batch: &mut Batch<T>) {
        if !batch.changes.is_empty() {
            let changes = std::mem::take(&mut batch.changes);
            self.inner
                .counters
                .events
                .fetch_add(changes.len() as u64, Ordering::Relaxed);
            if let Err(error) = self.inner.store.transaction(changes) {
                self.report(&ReflectorError::Transaction(error));
            }
        }
        if let Some(rv) = batch.resource_version.take() {
            self.set_last_sync(rv);
        }
    }

    fn resync(&self) -> Result<(), ReflectorError> {
        if self.inner.should_resync.as_ref().is_none_or(|f| f()) {
            self.inner.counters.resyncs.fetch_add(1, Ordering::Relaxed);
            self.inner.store.resync().map_err(ReflectorError::Resync)?;
        }
        Ok(())
    }
}

/// Marks a reflector as not running when dropped.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The objects of a streaming initial list so far.
///
/// While only `Added` events come (one per object, as a server sends its initial events), they
/// are kept in arrival order without computing a key. The first `Modified` or `Deleted` event
/// switches to a map by key (in key order, which keeps the replace walking memory in the order
/// the objects came).
struct Initials<T: Object> {
    added: Vec<Arc<T>>,
    keyed: Option<BTreeMap<T::Key, Arc<T>>>,
}

impl<T: Object> Initials<T> {
    fn new() -> Self {
        Self {
            added: Vec::new(),
            keyed: None,
        }
    }

    fn add(&mut self, obj: Arc<T>) {
        match &mut self.keyed {
            Some(map) => {
                map.insert(obj.key(), obj);
            }
            None => self.added.push(obj),
        }
    }

    fn keyed(&mut self) -> &mut BTreeMap<T::Key, Arc<T>> {
        let added = &mut self.added;
        self.keyed.get_or_insert_with(|| {
            std::mem::take(added)
                .into_iter()
                .map(|o| (o.key(), o))
                .collect()
        })
    }

    fn into_items(self) -> Vec<Arc<T>> {
        match self.keyed {
            Some(map) => map.into_values().collect(),
            None => self.added,
        }
    }
}

/// How a streaming initial list ended.
enum Initial<T> {
    Done(WatchStream<T>),
    Cancelled,
    Closed,
    Failed(SourceError),
}

#[cfg(test)]
mod tests;
