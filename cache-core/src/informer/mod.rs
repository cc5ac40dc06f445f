//! [`SharedIndexInformer`]: one list+watch of a collection, shared by every part of a program
//! that needs it, as an indexed [`Cache`] and as notifications (client-go's
//! `SharedIndexInformer`, typed).
//!
//! # The pipeline
//!
//! ```text
//! source ──list/watch──▶ Reflector ──▶ queue ──pop_batch──▶ Cache ──▶ handler 1 (own buffer, own task)
//!                                     (RealFifo                  ├──▶ handler 2 (own buffer, own task)
//!                                      by default)               └──▶ event stream (own buffer)
//! ```
//!
//! - The [`Reflector`] lists and watches the source into a queue: a [`RealFifo`] by default
//!   (every event in order, a relist as one delta), a [`DeltaFifo`] on request
//!   ([`QueueKind`]). The transform, if any, runs there, exactly once per incoming object.
//! - The informer pops batches from the queue, applies them to its [`Cache`] and then
//!   notifies the handlers. **The cache is updated before any handler hears of the change.**
//!   A batch of watch events goes to the cache as one transaction (one publish), and only the
//!   changes the cache accepted are announced.
//! - A relist is one delta: the cache is replaced at once, then the handlers hear of the
//!   objects that disappeared (tombstones, [`DeletedObject::Tombstone`](crate::DeletedObject::Tombstone)) first, then of the
//!   listed objects in list order (an update for what was cached, an add for the rest).
//! - Each handler has its own unbounded buffer and its own task: a slow handler delays neither
//!   the others nor the reflector, only itself. A handler that panics loses that notification
//!   (logged through `tracing`) and goes on with the next.
//!
//! # Handlers
//!
//! A handler implements [`EventHandler`] (every method defaults to nothing), or is built from
//! closures with [`HandlerFns`]; [`FilteringHandler`] narrows one to the objects a predicate
//! accepts. Async code can take the notifications as a [`Stream`](futures::Stream) of
//! [`InformerEvent`]s instead ([`SharedIndexInformer::events`]).
//!
//! Handlers can be added and removed at any time, before or after the start:
//!
//! - A handler added to a running informer first gets an add, with `is_in_initial_list` true,
//!   for every object cached at that moment, then every later change: the registration and the
//!   processing of changes exclude each other, so nothing is missed and nothing comes twice.
//! - [`add_event_handler`](SharedIndexInformer::add_event_handler) returns a
//!   [`HandlerRegistration`] whose [`has_synced`](HandlerRegistration::has_synced) turns true
//!   once the informer has synced and that handler has handled its initial adds.
//! - [`remove_event_handler`](SharedIndexInformer::remove_event_handler) is idempotent and
//!   ignores registrations of other informers. It does not wait: a callback in progress
//!   finishes afterwards. [`HandlerRegistration::wait_stopped`] (or
//!   [`shut_down_event_handler`](SharedIndexInformer::shut_down_event_handler)) waits for it.
//! - A stopped informer refuses new handlers with [`InformerError::HandlerAfterStop`].
//!
//! # Resync
//!
//! A resync re-delivers every cached object to a handler as an update whose old and new
//! objects are the same. Each handler has its own period ([`HandlerOptions::resync_period`],
//! by default the informer's, [`SharedIndexInformerBuilder::resync`]), and only the handlers
//! that are due receive a resync. The informer checks every *resync check period* which
//! handlers are due. client-go's rules:
//!
//! - a period of zero never resyncs; a period below [`MINIMUM_RESYNC_PERIOD`] (1 s) is raised
//!   to it;
//! - the check period starts as the informer's default period. A handler added **before the
//!   start** with a shorter period lowers the check period to its own; a handler added **after
//!   the start** with a shorter period gets the check period instead;
//! - a handler's period below the check period is raised to it, and an informer whose check
//!   period is zero resyncs no handler.
//!
//! An update from a relist whose old and new objects carry the same resource version counts as
//! a resync too, as in client-go: only the handlers due for a resync receive it.
//!
//! # Running and stopping
//!
//! [`run`](SharedIndexInformer::run) runs everything until its [`CancellationToken`] is
//! cancelled, then stops the handlers (a callback in progress finishes; what is still buffered
//! for a handler is dropped; an event stream yields what it has, then ends) and waits for
//! their tasks before it returns: nothing is left running. An informer runs once;
//! [`wait_for_sync`](SharedIndexInformer::wait_for_sync) waits for the first list
//! without polling.
//!
//! # Several informers
//!
//! [`wait_for_sync`] waits for several informers (of any types) at once, and
//! [`wait_for_named_sync`] also logs, by name, the ones that are late. An
//! [`InformerFactory`] hands out one shared informer per type, source and options to every
//! controller that asks, starts them together and has one wait for all.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use cache_core::informer::{HandlerFns, InformerEvent, SharedIndexInformer};
//! use cache_core::source::memory::MemorySource;
//! use cache_core::{Indexed, ResourceVersion};
//! use futures::StreamExt;
//! use tokio_util::sync::CancellationToken;
//!
//! #[derive(Clone, Debug, Indexed)]
//! struct Pod {
//!     #[key(namespace)] namespace: String,
//!     #[key(name)] name: String,
//!     #[index] node: String,
//!     #[resource_version] rv: Option<ResourceVersion>,
//! }
//! let pod = |name: &str, node: &str| Pod {
//!     namespace: "default".into(), name: name.into(), node: node.into(), rv: None,
//! };
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let source = MemorySource::new();
//! source.put(pod("web-1", "n1"));
//!
//! let pods = SharedIndexInformer::builder(source.clone()).name("pods").build();
//! let (tx, mut added) = tokio::sync::mpsc::unbounded_channel();
//! pods.add_event_handler(HandlerFns::new().added(move |pod: Arc<Pod>, initial| {
//!     let _ = tx.send((pod.name.clone(), initial));
//! }))?;
//! let mut events = pods.events()?; // the same notifications, as a Stream
//!
//! let stop = CancellationToken::new();
//! let task = tokio::spawn({
//!     let (pods, stop) = (pods.clone(), stop.clone());
//!     async move { pods.run(stop).await }
//! });
//! pods.wait_for_sync().await?;
//! assert_eq!(added.recv().await, Some(("web-1".into(), true)));
//!
//! source.put(pod("web-2", "n1"));
//! assert_eq!(added.recv().await, Some(("web-2".into(), false)));
//! // The cache had the pod before the handler heard of it; its indexes are the derived ones.
//! assert_eq!(pods.cache().by_node("n1").len(), 2);
//!
//! assert!(matches!(events.next().await, Some(InformerEvent::Added { is_in_initial_list: true, .. })));
//! assert!(matches!(events.next().await, Some(InformerEvent::Added { is_in_initial_list: false, .. })));
//!
//! stop.cancel();
//! task.await.unwrap();
//! assert!(pods.is_stopped());
//! assert!(pods.add_event_handler(HandlerFns::new()).is_err()); // "... has stopped already"
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod apply;
mod factory;
mod handler;
mod listeners;
mod sync;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

pub use factory::{InformerFactory, InformerOptions};
pub use handler::{EventHandler, FilteringHandler, HandlerFns, HandlerOptions, InformerEvent};
pub use listeners::{EventStream, HandlerRegistration, MINIMUM_RESYNC_PERIOD};
pub use sync::{
    CacheSync, DEFAULT_SYNC_REPORT_INTERVAL, SyncError, pending_syncs, wait_for_named_sync,
    wait_for_named_sync_every, wait_for_sync,
};

use listeners::Processor;

use crate::fifo::{
    DeltaFifo, DeltaFifoOptions, Queue, RealFifo, RealFifoOptions, ReplaceMode, Transformer,
};
use crate::index::{Indexed, Indexers};
use crate::lister::{Labels, Lister};
use crate::object::{Object, ObjectKey, ResourceVersion};
use crate::reflector::{Reflector, ReflectorError, ReflectorOptions, ReflectorStats};
use crate::short_type_name;
use crate::source::ListerWatcher;
use crate::store::{Cache, CacheReader, StoreError};

/// The most deltas applied to the cache in one batch (client-go's batch size).
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// How often a [`wait_for_sync`](SharedIndexInformer::wait_for_sync) on an informer that was
/// never [run](SharedIndexInformer::run) logs a warning: such a wait would otherwise hang in
/// silence.
pub const NEVER_RUN_WARNING_PERIOD: Duration = Duration::from_secs(10);

/// Which queue sits between the reflector and the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueKind {
    /// A [`RealFifo`] in its atomic mode, with bookmarks: every event in order, a relist as one
    /// delta, batches applied as one cache transaction. client-go's default.
    #[default]
    Real,
    /// A [`RealFifo`] in its per-object mode: a relist queues a tombstone for each object that
    /// is gone, then each listed object.
    RealPerObject,
    /// A [`DeltaFifo`]: deltas coalesced per key, one key at a time (client-go's queue before
    /// 1.33).
    Delta,
}

/// Why an informer refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InformerError {
    /// A handler (or an event stream) was added after the informer stopped.
    #[error("handler {handler} was not added to shared informer because it has stopped already")]
    HandlerAfterStop {
        /// The handler's name.
        handler: String,
    },
    /// Indexes were added after the informer stopped.
    #[error("indexers were not added to shared informer because it has stopped already")]
    IndexersAfterStop,
    /// The cache refused the indexes (a name already in use); nothing was added.
    #[error("indexers were not added: {0}")]
    Indexers(StoreError),
}

type ErrorHandler = dyn Fn(&ReflectorError) + Send + Sync;

/// One list+watch of a collection, kept in an indexed [`Cache`] and announced to any number of
/// handlers. See the [module documentation](self).
///
/// Cloning is cheap: clones share one informer.
pub struct SharedIndexInformer<T: Object> {
    inner: Arc<Inner<T>>,
}

impl<T: Object> Clone for SharedIndexInformer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Object> fmt::Debug for SharedIndexInformer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedIndexInformer")
            .field("name", &self.inner.processor.name)
            .field("queue", &self.inner.queue)
            .field("started", &self.is_started())
            .field("stopped", &self.is_stopped())
            .field("has_synced", &self.has_synced())
            .field("handlers", &self.handler_count())
            .field("cached", &self.inner.processor.cache.len())
            .finish()
    }
}

struct Inner<T: Object> {
    source: Arc<dyn ListerWatcher<T>>,
    processor: Arc<Processor<T>>,
    /// The read-only handle to the processor's cache, handed out by `cache()`.
    reader: CacheReader<T>,
    queue: QueueKind,
    transformer: Option<Transformer<T>>,
    on_error: Option<Arc<ErrorHandler>>,
    reflector_options: ReflectorOptions,
    batch_size: usize,
    reflector: Mutex<Option<Reflector<T>>>,
}

/// Builds a [`SharedIndexInformer`]; from [`SharedIndexInformer::builder`] or
/// [`SharedIndexInformer::builder_with_indexers`].
pub struct SharedIndexInformerBuilder<T: Object> {
    name: String,
    source: Arc<dyn ListerWatcher<T>>,
    indexers: Indexers<T>,
    resync: Duration,
    queue: QueueKind,
    transformer: Option<Transformer<T>>,
    on_error: Option<Arc<ErrorHandler>>,
    reflector_options: ReflectorOptions,
    batch_size: usize,
}

impl<T: Object> fmt::Debug for SharedIndexInformerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedIndexInformerBuilder")
            .field("name", &self.name)
            .field("resync", &self.resync)
            .field("queue", &self.queue)
            .field("transform", &self.transformer.is_some())
            .field("reflector_options", &self.reflector_options)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl<T: Object> SharedIndexInformerBuilder<T> {
    /// The name in logs and in the reflector's logs (default: the type's short name, `Pod` for
    /// `my_crate::model::Pod`, as for a controller).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The default resync period of handlers, and the first resync check period (see the
    /// [module documentation](self#resync)). Zero (the default): no resync.
    #[must_use]
    pub fn resync(mut self, period: Duration) -> Self {
        self.resync = period;
        self
    }

    /// Which queue to use (default [`QueueKind::Real`]).
    #[must_use]
    pub fn queue(mut self, kind: QueueKind) -> Self {
        self.queue = kind;
        self
    }

    /// Applied exactly once to every object that comes from the source, before it is queued
    /// and cached (client-go's `SetTransform`): never to what a resync re-delivers, nor to
    /// tombstones. Use it to strip what the program never reads.
    #[must_use]
    pub fn transform(mut self, f: impl Fn(Arc<T>) -> Arc<T> + Send + Sync + 'static) -> Self {
        self.transformer = Some(Arc::new(f));
        self
    }

    /// Receives every error of the reflector: failed lists, failed watches, skipped objects
    /// (client-go's `SetWatchErrorHandler`). None is fatal.
    #[must_use]
    pub fn watch_error_handler(
        mut self,
        handler: impl Fn(&ReflectorError) + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(handler));
        self
    }

    /// The reflector's options. Their `resync_period` is ignored: the informer's resync check
    /// period takes its place. They replace the options set so far, a
    /// [`page_size`](Self::page_size) included: set that after.
    #[must_use]
    pub fn reflector_options(mut self, options: ReflectorOptions) -> Self {
        self.reflector_options = options;
        self
    }

    /// The page size of the reflector's lists ([`ReflectorOptions::page_size`]); zero never
    /// paginates. By default client-go's choice: 500 for a first list, unpaginated for a relist
    /// at a known version.
    #[must_use]
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.reflector_options.page_size = Some(page_size);
        self
    }

    /// Adds indexes to those the cache starts with.
    #[must_use]
    pub fn indexers(mut self, indexers: Indexers<T>) -> Self {
        self.indexers.extend(indexers.iter().cloned());
        self
    }

    /// The most deltas applied to the cache in one batch (default [`DEFAULT_BATCH_SIZE`]).
    #[must_use]
    pub fn batch_size(mut self, deltas: usize) -> Self {
        self.batch_size = deltas.max(1);
        self
    }

    /// The informer, not running yet.
    pub fn build(self) -> SharedIndexInformer<T> {
        let cache = Arc::new(Cache::with_indexers(self.indexers));
        SharedIndexInformer {
            inner: Arc::new(Inner {
                source: self.source,
                reader: cache.reader(),
                processor: Arc::new(Processor::new(self.name, cache, self.resync)),
                queue: self.queue,
                transformer: self.transformer,
                on_error: self.on_error,
                reflector_options: self.reflector_options,
                batch_size: self.batch_size,
                reflector: Mutex::new(None),
            }),
        }
    }
}

impl<T: Indexed> SharedIndexInformer<T> {
    /// An informer over `source` with the defaults and the type's own indexes.
    pub fn new(source: impl ListerWatcher<T>) -> Self {
        Self::builder(source).build()
    }

    /// An informer over `source` whose cache has the type's own indexes
    /// ([`Indexed::indexers`]), to configure.
    pub fn builder(source: impl ListerWatcher<T>) -> SharedIndexInformerBuilder<T> {
        Self::builder_with_indexers(source, T::indexers())
    }
}

impl<T: Object> SharedIndexInformer<T> {
    /// An informer over `source` whose cache has these indexes, to configure.
    pub fn builder_with_indexers(
        source: impl ListerWatcher<T>,
        indexers: Indexers<T>,
    ) -> SharedIndexInformerBuilder<T> {
        SharedIndexInformerBuilder {
            name: short_type_name::<T>().to_owned(),
            source: Arc::new(source),
            indexers,
            resync: Duration::ZERO,
            queue: QueueKind::default(),
            transformer: None,
            on_error: None,
            reflector_options: ReflectorOptions::default(),
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    /// The name in logs.
    pub fn name(&self) -> &str {
        &self.inner.processor.name
    }

    /// Adds a handler with the informer's default resync period. On a running informer, it
    /// first gets an add for every cached object (see the [module documentation](self)).
    ///
    /// # Errors
    ///
    /// [`InformerError::HandlerAfterStop`] once the informer has stopped.
    pub fn add_event_handler<H: EventHandler<T>>(
        &self,
        handler: H,
    ) -> Result<HandlerRegistration, InformerError> {
        self.add_event_handler_with(handler, HandlerOptions::default())
    }

    /// Adds a handler with these options (its resync period, its name in logs).
    ///
    /// # Errors
    ///
    /// [`InformerError::HandlerAfterStop`] once the informer has stopped.
    pub fn add_event_handler_with<H: EventHandler<T>>(
        &self,
        handler: H,
        options: HandlerOptions,
    ) -> Result<HandlerRegistration, InformerError> {
        self.inner.processor.add_handler(handler, &options)
    }

    /// The notifications as a stream, registered like a handler with the default options.
    /// Dropping the stream removes it.
    ///
    /// # Errors
    ///
    /// [`InformerError::HandlerAfterStop`] once the informer has stopped.
    pub fn events(&self) -> Result<EventStream<T>, InformerError> {
        self.events_with(HandlerOptions::default())
    }

    /// [`events`](Self::events) with these options.
    ///
    /// # Errors
    ///
    /// [`InformerError::HandlerAfterStop`] once the informer has stopped.
    pub fn events_with(&self, options: HandlerOptions) -> Result<EventStream<T>, InformerError> {
        self.inner.processor.add_stream(&options)
    }

    /// Removes a handler: it gets nothing more, except that a callback in progress finishes.
    /// True when it was registered here; removing it again, or removing another informer's
    /// registration, does nothing and returns false.
    pub fn remove_event_handler(&self, registration: &HandlerRegistration) -> bool {
        self.inner.processor.remove(registration)
    }

    /// Removes a handler and waits until its task has ended (client-go's
    /// `ShutDownEventHandler`). Returns promptly for a handler of an informer that never ran.
    /// A registration of another informer is left alone and not waited for.
    ///
    /// Do not call it from inside the handler: it would wait for itself.
    pub async fn shut_down_event_handler(&self, registration: &HandlerRegistration) {
        if registration.is_removed() || self.remove_event_handler(registration) {
            registration.wait_stopped().await;
        }
    }

    /// How many handlers and streams are registered.
    pub fn handler_count(&self) -> usize {
        self.inner.processor.handler_count()
    }

    /// How often the informer checks which handlers are due for a resync (see the
    /// [module documentation](self#resync)); zero when it never resyncs.
    pub fn resync_check_period(&self) -> Duration {
        self.inner.processor.resync_check_period()
    }

    /// Adds indexes to the cache, populated at once from what it holds; allowed while running.
    ///
    /// # Errors
    ///
    /// [`InformerError::IndexersAfterStop`] once the informer has stopped;
    /// [`InformerError::Indexers`] when a name is already in use (nothing is added then).
    pub fn add_indexers(&self, indexers: Indexers<T>) -> Result<(), InformerError> {
        if self.inner.processor.is_stopped() {
            return Err(InformerError::IndexersAfterStop);
        }
        self.inner
            .processor
            .cache
            .add_indexers(indexers)
            .map_err(InformerError::Indexers)
    }

    /// A read-only handle to the informer's cache: only the informer writes to it, so the
    /// handlers' picture and the cache's agree.
    pub fn cache(&self) -> &CacheReader<T> {
        &self.inner.reader
    }

    /// Whether [`run`](Self::run) has been called (still true after the stop).
    pub fn is_started(&self) -> bool {
        self.inner.processor.is_started()
    }

    /// Whether the informer has stopped.
    pub fn is_stopped(&self) -> bool {
        self.inner.processor.is_stopped()
    }

    /// Whether the first list has been applied to the cache and handed to the handlers (their
    /// own progress is each registration's [`has_synced`](HandlerRegistration::has_synced)).
    pub fn has_synced(&self) -> bool {
        self.inner.processor.status.borrow().synced
    }

    /// Waits until [`has_synced`](Self::has_synced), without polling.
    ///
    /// Only [`run`](Self::run) makes an informer sync. While the informer has never been run,
    /// the wait logs a warning, with the informer's name, every [`NEVER_RUN_WARNING_PERIOD`].
    ///
    /// # Errors
    ///
    /// A [`SyncError`] naming the informer if it has stopped (or stops) before it synced: its
    /// cache is incomplete.
    pub async fn wait_for_sync(&self) -> Result<(), SyncError> {
        let period = NEVER_RUN_WARNING_PERIOD;
        let mut rx = self.inner.processor.status.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let wait = rx.wait_for(|s| s.synced || s.stopped);
        let mut wait = std::pin::pin!(wait);
        let mut warn_at = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let waited = tokio::time::Instant::now();
        loop {
            tokio::select! {
                status = &mut wait => {
                    return match status {
                        Ok(status) if status.synced => Ok(()),
                        _ => Err(SyncError::stopped(self.name())),
                    };
                }
                _ = warn_at.tick() => {
                    if !self.is_started() {
                        warn!(
                            informer = %self.name(),
                            waited = ?waited.elapsed(),
                            "waiting for an informer to sync, but it was never run: call `run` on it"
                        );
                    }
                }
            }
        }
    }

    /// The version of the collection the reflector has reached (the last list, event or
    /// bookmark); `None` before the start.
    pub fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.reflector()
            .and_then(|r| r.last_sync_resource_version())
    }

    /// The reflector's counters (lists, relists, watch restarts, ...); zeros before the start.
    pub fn reflector_stats(&self) -> ReflectorStats {
        self.reflector().map(|r| r.stats()).unwrap_or_default()
    }

    fn reflector(&self) -> Option<Reflector<T>> {
        self.lock_reflector().clone()
    }

    fn lock_reflector(&self) -> MutexGuard<'_, Option<Reflector<T>>> {
        self.inner
            .reflector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the informer until `cancel` is cancelled: lists and watches, applies the changes
    /// to the cache, notifies the handlers. Then stops the handlers and waits for their tasks;
    /// when it returns, nothing of the informer is running.
    ///
    /// An informer runs once: a second call (during or after the first) logs a warning and
    /// returns at once.
    ///
    /// Only cancelling `cancel` stops it: dropping the token (or every clone of it) stops
    /// nothing. To stop when a scope ends, hold a [`CancellationToken::drop_guard`].
    pub async fn run(&self, cancel: CancellationToken) {
        let processor = &self.inner.processor;
        let span = tracing::info_span!("informer", name = %processor.name);
        if !processor.start(Handle::current()) {
            let _entered = span.enter();
            warn!("the informer has already been started");
            return;
        }
        // Stops the handlers however `run` ends, a dropped future included.
        let guard = StopOnDrop(processor);
        async {
            info!("Starting informer");
            match self.inner.queue {
                QueueKind::Real | QueueKind::RealPerObject => {
                    let mode = match self.inner.queue {
                        QueueKind::RealPerObject => ReplaceMode::PerObject {
                            known_objects: processor.cache.clone(),
                        },
                        _ => ReplaceMode::Atomic {
                            emit_bookmarks: true,
                        },
                    };
                    let queue = RealFifo::with_options(RealFifoOptions {
                        mode,
                        transformer: self.inner.transformer.clone(),
                    });
                    self.drive(Arc::new(queue), &cancel, true).await;
                }
                QueueKind::Delta => {
                    let queue = DeltaFifo::with_options(DeltaFifoOptions {
                        known_objects: Some(processor.cache.clone()),
                        emit_replaced: true,
                        transformer: self.inner.transformer.clone(),
                    });
                    self.drive(Arc::new(queue), &cancel, false).await;
                }
            }
            let tasks = processor.stop();
            for task in tasks {
                let _ = task.await;
            }
            info!("Stopped informer");
        }
        .instrument(span)
        .await;
        drop(guard);
    }

    /// The reflector and the processing loop over `queue`, until `cancel` fires.
    async fn drive<Q: Queue<T> + 'static>(
        &self,
        queue: Arc<Q>,
        cancel: &CancellationToken,
        distinct_keys: bool,
    ) {
        let processor = &self.inner.processor;
        let mut builder = Reflector::builder(self.inner.source.clone(), queue.clone())
            .name(processor.name.clone())
            .options(self.inner.reflector_options.clone())
            .resync_period(processor.resync_check_period())
            .should_resync({
                let processor = processor.clone();
                move || processor.should_resync()
            });
        if let Some(handler) = &self.inner.on_error {
            let handler = handler.clone();
            builder = builder.watch_error_handler(move |e| handler(e));
        }
        let reflector = builder.build();
        *self.lock_reflector() = Some(reflector.clone());
        let batch = self.inner.batch_size;
        let process = async {
            loop {
                let popped = tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    popped = queue.pop_batch(batch, |deltas, initial| {
                        processor.process(deltas, initial, distinct_keys);
                    }) => popped,
                };
                if popped.is_err() {
                    break;
                }
            }
        };
        let synced = async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {}
                synced = queue.wait_for_sync() => {
                    if synced.is_ok() {
                        processor.mark_synced();
                    }
                }
            }
        };
        tokio::join!(reflector.run(cancel.clone()), process, synced);
        queue.close();
    }
}

impl<T> SharedIndexInformer<T>
where
    T: Object<Key = ObjectKey> + Labels,
{
    /// A [`Lister`] over the cache: reads by label selector and by namespace, and, through
    /// [`IndexQuery`](crate::IndexQuery), the typed index queries.
    pub fn lister(&self) -> Lister<T> {
        Lister::new(self.cache().clone())
    }
}

/// Stops the processor when dropped.
struct StopOnDrop<'a, T: Object>(&'a Processor<T>);

impl<T: Object> Drop for StopOnDrop<'_, T> {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}
