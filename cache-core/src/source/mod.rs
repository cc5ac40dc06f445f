//! Sources: what can list a collection and watch it for changes ([`ListerWatcher`]), and the
//! typed errors that tell the reflector how to recover.
//!
//! A source lists with a resource version ([`ObjectList`]) and watches from a version
//! ([`WatchStream`] of [`WatchEvent`]s). Backends implement [`ListerWatcher`]; [`ListWatch`] builds
//! one from two async closures.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::object::{Object, ResourceVersion};

pub mod memory;

pub use memory::{MemorySource, MemorySourceOptions, Versioned};

/// How a list or watch request treats its resource version (Kubernetes' `resourceVersionMatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionMatch {
    /// The source's default: for a list at a version other than "0", at least that fresh.
    #[default]
    Unset,
    /// Any state at least as fresh as the version.
    NotOlderThan,
    /// Exactly the state at that version (for paginated lists).
    Exact,
}

/// The options of a list or watch request (Kubernetes' `ListOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// The version to list at or watch from. `None` asks for the most recent state (a quorum
    /// read); `Some("0")` accepts any cached state.
    pub resource_version: Option<ResourceVersion>,
    /// How `resource_version` is matched.
    pub version_match: VersionMatch,
    /// The page size of a list; `None` or 0 lists everything at once.
    pub limit: Option<u32>,
    /// The continue token of the previous page.
    pub continue_token: Option<String>,
    /// A label selector, in Kubernetes' string syntax.
    pub label_selector: Option<String>,
    /// A field selector, in Kubernetes' string syntax.
    pub field_selector: Option<String>,
    /// How long the source may keep a watch open before ending it cleanly.
    pub timeout: Option<Duration>,
    /// Whether a watch may send [`WatchEvent::Bookmark`]s.
    pub allow_bookmarks: bool,
    /// Whether a watch starts with the current state as `Added` events, ended by a bookmark
    /// flagged `initial_events_end` (Kubernetes' streaming list, "watch-list").
    pub send_initial_events: bool,
}

/// One page of a list: the items and the collection's version.
#[derive(Debug)]
pub struct ObjectList<T> {
    /// The objects that decoded.
    pub items: Vec<Arc<T>>,
    /// The version of the collection this page belongs to.
    pub resource_version: Option<ResourceVersion>,
    /// The token for the next page, when there is one.
    pub continue_token: Option<String>,
    /// Items of this page that the source could not decode ([`SourceErrorKind::Decode`]); they
    /// are left out of `items`.
    pub skipped: Vec<SourceError>,
}

impl<T> ObjectList<T> {
    /// A complete (single-page) list.
    pub fn new(items: Vec<Arc<T>>, resource_version: Option<ResourceVersion>) -> Self {
        Self {
            items,
            resource_version,
            continue_token: None,
            skipped: Vec::new(),
        }
    }
}

/// One event of a watch.
#[derive(Debug)]
pub enum WatchEvent<T> {
    /// An object was created (or, during a streaming initial list, exists).
    Added(Arc<T>),
    /// An object changed.
    Modified(Arc<T>),
    /// An object was deleted; this is its last state.
    Deleted(Arc<T>),
    /// The collection reached `resource_version` with no change to report.
    Bookmark {
        /// The version reached.
        resource_version: ResourceVersion,
        /// Set on the bookmark that ends a streaming initial list.
        initial_events_end: bool,
    },
    /// The source ended the watch with an error status (Kubernetes' `ERROR` event).
    Error(SourceError),
}

impl<T> Clone for WatchEvent<T> {
    fn clone(&self) -> Self {
        match self {
            WatchEvent::Added(o) => WatchEvent::Added(o.clone()),
            WatchEvent::Modified(o) => WatchEvent::Modified(o.clone()),
            WatchEvent::Deleted(o) => WatchEvent::Deleted(o.clone()),
            WatchEvent::Bookmark {
                resource_version,
                initial_events_end,
            } => WatchEvent::Bookmark {
                resource_version: resource_version.clone(),
                initial_events_end: *initial_events_end,
            },
            WatchEvent::Error(e) => WatchEvent::Error(e.clone()),
        }
    }
}

/// A watch: a stream of events. An `Err` item is either a decode failure of one object (the
/// stream goes on) or the end of the watch; the stream ending is a clean end.
pub type WatchStream<T> = BoxStream<'static, Result<WatchEvent<T>, SourceError>>;

/// What can list a collection and watch it for changes (client-go's `ListerWatcher`).
///
/// Implementations must be cheap to share (the reflector holds one for its whole life) and must
/// not panic on bad data from their server: a bad object is a [`SourceErrorKind::Decode`] error.
pub trait ListerWatcher<T: Object>: Send + Sync + 'static {
    /// Lists one page of the collection.
    fn list(&self, options: ListOptions) -> BoxFuture<'_, Result<ObjectList<T>, SourceError>>;

    /// Opens a watch from `options.resource_version`.
    fn watch(&self, options: ListOptions) -> BoxFuture<'_, Result<WatchStream<T>, SourceError>>;

    /// Whether this source supports the streaming initial list
    /// ([`ListOptions::send_initial_events`]). When it does not, the reflector lists.
    fn supports_watch_list(&self) -> bool {
        false
    }
}

impl<T: Object, L: ListerWatcher<T> + ?Sized> ListerWatcher<T> for Arc<L> {
    fn list(&self, options: ListOptions) -> BoxFuture<'_, Result<ObjectList<T>, SourceError>> {
        (**self).list(options)
    }
    fn watch(&self, options: ListOptions) -> BoxFuture<'_, Result<WatchStream<T>, SourceError>> {
        (**self).watch(options)
    }
    fn supports_watch_list(&self) -> bool {
        (**self).supports_watch_list()
    }
}

type ListFn<T> =
    dyn Fn(ListOptions) -> BoxFuture<'static, Result<ObjectList<T>, SourceError>> + Send + Sync;
type WatchFn<T> =
    dyn Fn(ListOptions) -> BoxFuture<'static, Result<WatchStream<T>, SourceError>> + Send + Sync;

/// A [`ListerWatcher`] built from two async closures (client-go's `ListWatch`).
///
/// ```
/// use std::sync::Arc;
/// use cache_core::source::{ListWatch, ListerWatcher, ListOptions, ObjectList, WatchStream};
/// # #[derive(Debug)] struct Item(u32);
/// # impl cache_core::Object for Item { type Key = u32; fn key(&self) -> u32 { self.0 } }
///
/// let lw = ListWatch::new(
///     |_opts| async { Ok(ObjectList::new(vec![Arc::new(Item(1))], Some(1.into()))) },
///     |_opts| async { Ok(Box::pin(futures::stream::empty()) as WatchStream<Item>) },
/// );
/// # futures::executor::block_on(async {
/// let page = lw.list(ListOptions::default()).await.unwrap();
/// assert_eq!(page.items.len(), 1);
/// # });
/// ```
pub struct ListWatch<T> {
    list: Box<ListFn<T>>,
    watch: Box<WatchFn<T>>,
}

impl<T> fmt::Debug for ListWatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListWatch").finish_non_exhaustive()
    }
}

impl<T: Object> ListWatch<T> {
    /// A source from a list closure and a watch closure.
    pub fn new<L, LF, W, WF>(list: L, watch: W) -> Self
    where
        L: Fn(ListOptions) -> LF + Send + Sync + 'static,
        LF: Future<Output = Result<ObjectList<T>, SourceError>> + Send + 'static,
        W: Fn(ListOptions) -> WF + Send + Sync + 'static,
        WF: Future<Output = Result<WatchStream<T>, SourceError>> + Send + 'static,
    {
        Self {
            list: Box::new(move |o| Box::pin(list(o))),
            watch: Box::new(move |o| Box::pin(watch(o))),
        }
    }
}

impl<T: Object> ListerWatcher<T> for ListWatch<T> {
    fn list(&self, options: ListOptions) -> BoxFuture<'_, Result<ObjectList<T>, SourceError>> {
        (self.list)(options)
    }
    fn watch(&self, options: ListOptions) -> BoxFuture<'_, Result<WatchStream<T>, SourceError>> {
        (self.watch)(options)
    }
}

/// What kind of failure a [`SourceError`] is, which decides what the reflector does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// The requested version is older than the source's history (HTTP 410 Gone/Expired, etcd
    /// compaction). The reflector relists.
    Expired,
    /// The requested version is newer than the source has seen. The reflector relists at the
    /// latest version.
    TooLargeResourceVersion,
    /// The source asks us to slow down (HTTP 429). The reflector re-watches after a backoff,
    /// without a relist.
    TooManyRequests,
    /// The connection was refused. The reflector re-watches after a backoff, without a relist.
    ConnectionRefused,
    /// An internal error of the source (HTTP 500). The reflector retries within a deadline.
    Internal,
    /// One object could not be decoded. The reflector reports it, skips the object and goes on.
    Decode,
    /// Anything else. The reflector backs off, then relists.
    Other,
}

/// A typed failure of a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct SourceError {
    /// What kind of failure, which decides the recovery.
    pub kind: SourceErrorKind,
    /// A human-readable description.
    pub message: String,
    /// The key (or raw identifier) of the object concerned, for decode failures.
    pub object: Option<String>,
}

impl SourceError {
    /// An error of `kind` with a message.
    pub fn new(kind: SourceErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            object: None,
        }
    }

    /// A version that is no longer in the source's history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(SourceErrorKind::Expired, message)
    }

    /// An object that failed to decode; `object` names it (its key, or the raw key).
    pub fn decode(object: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: SourceErrorKind::Decode,
            message: message.into(),
            object: Some(object.into()),
        }
    }

    /// Whether the reflector should relist from scratch.
    pub fn is_expired(&self) -> bool {
        matches!(
            self.kind,
            SourceErrorKind::Expired | SourceErrorKind::TooLargeResourceVersion
        )
    }
}
