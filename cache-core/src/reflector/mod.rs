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
//!   The streaming initial list follows the same rules, except that an expired or too-large
//!   version makes it start over at once from the latest state, and any other failure falls
//!   back to a list. The rules are one function of where the failure happened and what kind it
//!   was, shared by the watch and the streaming list.
//!
//! - **Backoff** between relists: 0.8 s doubling with jitter up to a 30 s base, starting over
//!   after 2 healthy minutes ([`BackoffOptions`]).
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
mod list;
mod options;
mod recovery;
mod watch;
mod watch_list;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

pub use backoff::{Backoff, BackoffOptions, RetryWithDeadline};
pub use options::{DEFAULT_PAGE_SIZE, MIN_WATCH_TIMEOUT, ReflectorBuilder, ReflectorOptions};

use crate::object::{Object, ResourceVersion};
use crate::source::{ListerWatcher, SourceError, SourceErrorKind};
use crate::store::{Store, StoreError, TransactionError};

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

impl<T: Object> Reflector<T> {
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

    /// Waits until [`has_synced`](Self::has_synced). Only [`run`](Self::run) makes a reflector
    /// sync: while it is not running, the wait logs a warning, with the reflector's name, every
    /// [`NEVER_RUN_WARNING_PERIOD`](crate::informer::NEVER_RUN_WARNING_PERIOD).
    pub async fn wait_for_sync(&self) {
        let period = crate::informer::NEVER_RUN_WARNING_PERIOD;
        let mut rx = self.inner.synced.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let wait = rx.wait_for(|synced| *synced);
        let mut wait = std::pin::pin!(wait);
        let mut warn_at = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = &mut wait => return,
                _ = warn_at.tick() => {
                    if !self.inner.running.load(Ordering::Acquire) {
                        warn!(
                            reflector = %self.inner.name,
                            "waiting for a reflector to sync, but it is not running: call `run` on it"
                        );
                    }
                }
            }
        }
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

    fn watch_timeout(&self) -> Duration {
        let min = self.inner.options.min_watch_timeout.max(MIN_WATCH_TIMEOUT);
        min + min.mul_f64(rand::random::<f64>())
    }
}

/// Marks a reflector as not running when dropped.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
