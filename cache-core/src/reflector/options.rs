//! The reflector's options and its builder.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::backoff::{Backoff, BackoffOptions};
use super::{
    Counters, ErrorHandler, Inner, Reflector, ReflectorError, ShouldResync, SyncState, Validator,
};
use crate::object::Object;
use crate::source::ListerWatcher;
use crate::store::Store;

/// The page size of a list when none is configured (client-go's pager default).
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// The shortest server-side watch timeout; each watch asks for a random one between this (or
/// [`ReflectorOptions::min_watch_timeout`], when longer) and twice that.
pub const MIN_WATCH_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How a reflector behaves. The defaults are client-go's, except where noted.
///
/// Start from the defaults and change what you need with the setters of the same names:
///
/// ```
/// use std::time::Duration;
/// use cache_core::ReflectorOptions;
///
/// let options = ReflectorOptions::default()
///     .page_size(Some(100))
///     .use_watch_list(false)
///     .max_internal_error_retry(Duration::from_secs(5));
/// assert_eq!(options.page_size, Some(100));
/// assert!(!options.use_watch_list);
/// ```
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
    pub backoff: BackoffOptions,
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

impl ReflectorOptions {
    /// Sets `resync_period`.
    #[must_use]
    pub fn resync_period(mut self, period: Duration) -> Self {
        self.resync_period = period;
        self
    }

    /// Sets `page_size`: `Some(0)` never paginates, `None` follows
    /// client-go's choice.
    #[must_use]
    pub fn page_size(mut self, page_size: Option<u32>) -> Self {
        self.page_size = page_size;
        self
    }

    /// Sets `backoff`.
    #[must_use]
    pub fn backoff(mut self, backoff: BackoffOptions) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets `min_watch_timeout`.
    #[must_use]
    pub fn min_watch_timeout(mut self, timeout: Duration) -> Self {
        self.min_watch_timeout = timeout;
        self
    }

    /// Sets `max_internal_error_retry`.
    #[must_use]
    pub fn max_internal_error_retry(mut self, window: Duration) -> Self {
        self.max_internal_error_retry = window;
        self
    }

    /// Sets `use_watch_list`.
    #[must_use]
    pub fn use_watch_list(mut self, enabled: bool) -> Self {
        self.use_watch_list = enabled;
        self
    }

    /// Sets `max_batch`.
    #[must_use]
    pub fn max_batch(mut self, events: usize) -> Self {
        self.max_batch = events;
        self
    }
}

impl Default for ReflectorOptions {
    fn default() -> Self {
        Self {
            resync_period: Duration::ZERO,
            page_size: None,
            backoff: BackoffOptions::default(),
            min_watch_timeout: MIN_WATCH_TIMEOUT,
            max_internal_error_retry: Duration::from_secs(30),
            use_watch_list: true,
            max_batch: 1024,
        }
    }
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
    pub fn backoff(mut self, backoff: BackoffOptions) -> Self {
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
}
