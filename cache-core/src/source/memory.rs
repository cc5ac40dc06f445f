//! [`MemorySource`]: an embedded, in-process list+watch server.
//!
//! It is a real little server, not a mock: it keeps the collection, one global resource version
//! bumped by every write, and a bounded history of events. Lists are paginated with continue
//! tokens that stay consistent at the list's version; watches start from any version still in
//! the history (or from now) and get bookmarks at a configurable interval; the streaming initial
//! list (`send_initial_events`) is supported. Every failure a reflector must survive can be
//! injected with one call.
//!
//! Its semantics follow the Kubernetes API server (and client-go's `FakeControllerSource`):
//!
//! | request | answer |
//! |---|---|
//! | list at `None`, `""` or `"0"` | the current state |
//! | list at `R`, match unset or not-older-than | the current state; `R` newer than the source is [`TooLargeResourceVersion`](SourceErrorKind::TooLargeResourceVersion) |
//! | list at `R`, match exact | the state at `R`, rebuilt from the history; older than the history is [`Expired`](SourceErrorKind::Expired) |
//! | list with a continue token | the next page of the same version; a token older than the history is [`Expired`](SourceErrorKind::Expired) |
//! | watch from `None`, `""` or `"0"` | an `Added` event per current object (in key order, not in version order), then live events |
//! | watch from `R` | every event after `R`, then live events; older than the history is [`Expired`](SourceErrorKind::Expired), newer than the source is [`TooLargeResourceVersion`](SourceErrorKind::TooLargeResourceVersion) |
//! | watch with `send_initial_events` | the state as `Added` events, then a bookmark flagged `initial_events_end`, then live events |
//!
//! A watch stream needs a tokio runtime with time enabled when it uses bookmarks or a timeout.
//!
//! # Examples
//!
//! ```
//! use cache_core::source::memory::MemorySource;
//! use cache_core::source::{ListOptions, ListerWatcher, WatchEvent};
//! use cache_core::{Object, ResourceVersion};
//! use futures::StreamExt;
//!
//! #[derive(Clone, Debug)]
//! struct Item { name: String, value: u32, rv: Option<ResourceVersion> }
//! impl Object for Item {
//!     type Key = String;
//!     fn key(&self) -> String { self.name.clone() }
//!     fn resource_version(&self) -> Option<ResourceVersion> { self.rv.clone() }
//!     fn set_resource_version(&mut self, rv: ResourceVersion) { self.rv = Some(rv); }
//! }
//! let item = |name: &str, value| Item { name: name.into(), value, rv: None };
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let source = MemorySource::new();
//! source.put(item("a", 1));
//! source.put(item("b", 2));
//! let list = source.list(ListOptions::default()).await.unwrap();
//! assert_eq!(list.items.len(), 2);
//! assert_eq!(list.resource_version, Some(3.into())); // the empty source is version 1, as in etcd
//!
//! // Watch from the list's version: only what happened after it.
//! let mut watch = source
//!     .watch(ListOptions { resource_version: list.resource_version, ..Default::default() })
//!     .await
//!     .unwrap();
//! source.put(item("a", 10));
//! match watch.next().await {
//!     Some(Ok(WatchEvent::Modified(a))) => assert_eq!((a.value, a.rv.clone()), (10, Some(4.into()))),
//!     other => panic!("unexpected {other:?}"),
//! }
//!
//! // Faults are calls: this watch is told its version expired.
//! source.compact();
//! source.put(item("c", 3));
//! let err = source
//!     .watch(ListOptions { resource_version: Some(2.into()), ..Default::default() })
//!     .await
//!     .err()
//!     .unwrap();
//! assert!(err.is_expired());
//! # });
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use super::{
    ListOptions, ListerWatcher, ObjectList, SourceError, SourceErrorKind, VersionMatch, WatchEvent,
    WatchStream,
};
use crate::object::{Object, ResourceVersion};

/// An object the [`MemorySource`] can hold: any [`Object`] that is `Clone`. The source stamps
/// each write's resource version on the object it stores through
/// [`Object::set_resource_version`], as a server does (`#[derive(Indexed)]` implements it for
/// the `#[resource_version]` field).
///
/// `Clone` is needed for deletes: the deleted object's last state is announced with the
/// version of the delete.
pub trait Versioned: Object + Clone {}

impl<T: Object + Clone> Versioned for T {}

/// The settings of a [`MemorySource`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemorySourceOptions {
    /// How many events the history keeps. A watch (or continue token) from a version older than
    /// the oldest kept event is told its version expired. Default 4096.
    pub history_limit: usize,
    /// How often a watch that allows bookmarks gets one (`None`: only on
    /// [`MemorySource::send_bookmarks`]). Default 60 s, as the API server.
    pub bookmark_interval: Option<Duration>,
    /// Whether the source offers the streaming initial list. Default true.
    pub watch_list: bool,
    /// How many unfinished paginated lists the source remembers; the oldest continue tokens
    /// expire beyond that. Default 1024.
    pub open_lists: usize,
}

impl Default for MemorySourceOptions {
    fn default() -> Self {
        Self {
            history_limit: 4096,
            bookmark_interval: Some(Duration::from_secs(60)),
            watch_list: true,
            open_lists: 1024,
        }
    }
}

impl MemorySourceOptions {
    /// Sets [`history_limit`](Self::history_limit).
    #[must_use]
    pub fn history_limit(mut self, events: usize) -> Self {
        self.history_limit = events;
        self
    }

    /// Sets [`bookmark_interval`](Self::bookmark_interval).
    #[must_use]
    pub fn bookmark_interval(mut self, interval: Option<Duration>) -> Self {
        self.bookmark_interval = interval;
        self
    }

    /// Sets [`watch_list`](Self::watch_list).
    #[must_use]
    pub fn watch_list(mut self, supported: bool) -> Self {
        self.watch_list = supported;
        self
    }

    /// Sets [`open_lists`](Self::open_lists).
    #[must_use]
    pub fn open_lists(mut self, lists: usize) -> Self {
        self.open_lists = lists;
        self
    }
}

/// How many requests a [`MemorySource`] has answered (failed ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemorySourceStats {
    /// List requests (each page counts).
    pub lists: u64,
    /// Watch requests.
    pub watches: u64,
}

/// The embedded in-process list+watch server. See the [module documentation](self).
///
/// Cloning is cheap and gives another handle on the same server.
pub struct MemorySource<T: Versioned> {
    inner: Arc<Inner<T>>,
}

impl<T: Versioned> Clone for MemorySource<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Versioned> Default for MemorySource<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Versioned> fmt::Debug for MemorySource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("MemorySource")
            .field("resource_version", &state.rv)
            .field("objects", &state.objects.len())
            .field("history", &state.history.len())
            .field("watches", &state.watchers.len())
            .finish_non_exhaustive()
    }
}

type Item<T> = Result<WatchEvent<T>, SourceError>;
type ObjectMap<T> = imbl::OrdMap<<T as Object>::Key, Arc<T>>;

struct Inner<T: Versioned> {
    config: MemorySourceOptions,
    state: Mutex<State<T>>,
}

struct State<T: Versioned> {
    rv: u64,
    objects: ObjectMap<T>,
    /// Undecodable entries, by raw key.
    corrupt: BTreeMap<String, String>,
    history: VecDeque<Entry<T>>,
    /// Events up to this version are no longer in the history.
    compacted: u64,
    watchers: Vec<Slot<T>>,
    next_id: u64,
    cursors: BTreeMap<u64, Cursor<T>>,
    failing_lists: VecDeque<SourceError>,
    failing_watches: VecDeque<SourceError>,
    delay: Duration,
    stats: MemorySourceStats,
}

struct Entry<T> {
    rv: u64,
    change: Recorded<T>,
}

enum Recorded<T> {
    Put { obj: Arc<T>, prev: Option<Arc<T>> },
    Delete { last: Arc<T>, prev: Arc<T> },
    Corrupt { raw: String, message: String },
}

impl<T> Recorded<T> {
    fn event(&self) -> Item<T> {
        match self {
            Recorded::Put { obj, prev: None } => Ok(WatchEvent::Added(obj.clone())),
            Recorded::Put { obj, prev: Some(_) } => Ok(WatchEvent::Modified(obj.clone())),
            Recorded::Delete { last, .. } => Ok(WatchEvent::Deleted(last.clone())),
            Recorded::Corrupt { raw, message } => Err(SourceError::decode(raw, message)),
        }
    }
}

struct Slot<T> {
    id: u64,
    tx: mpsc::UnboundedSender<Item<T>>,
    /// The version of the last event this watch was sent: its bookmarks never claim more.
    delivered: u64,
}

struct Cursor<T: Versioned> {
    rv: u64,
    snapshot: ObjectMap<T>,
    last: T::Key,
    served: usize,
}

impl<T: Versioned> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every write completes its state change before anything can panic; a poisoned lock
        // holds consistent state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<T: Versioned> State<T> {
    fn record(&mut self, history_limit: usize, rv: u64, change: Recorded<T>, broadcast: bool) {
        if broadcast {
            let event = change.event();
            self.watchers.retain_mut(|w| {
                w.delivered = rv;
                w.tx.send(clone_item(&event)).is_ok()
            });
        }
        self.history.push_back(Entry { rv, change });
        while self.history.len() > history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        if history_limit == 0 {
            self.compacted = rv;
        }
    }

    /// The state at `rv`, rebuilt by undoing the history after it.
    fn state_at(&self, rv: u64) -> Result<ObjectMap<T>, SourceError> {
        if rv > self.rv {
            return Err(too_large(rv, self.rv));
        }
        if rv < self.compacted {
            return Err(too_old(rv, self.compacted));
        }
        let mut map = self.objects.clone();
        for entry in self.history.iter().rev().take_while(|e| e.rv > rv) {
            match &entry.change {
                Recorded::Put { obj, prev } => match prev {
                    Some(p) => {
                        map.insert(obj.key(), p.clone());
                    }
                    None => {
                        map.remove(&obj.key());
                    }
                },
                Recorded::Delete { prev, .. } => {
                    map.insert(prev.key(), prev.clone());
                }
                Recorded::Corrupt { .. } => {}
            }
        }
        Ok(map)
    }

    fn skipped(&self) -> Vec<SourceError> {
        self.corrupt
            .iter()
            .map(|(raw, message)| SourceError::decode(raw, message))
            .collect()
    }
}

fn clone_item<T>(item: &Item<T>) -> Item<T> {
    match item {
        Ok(e) => Ok(e.clone()),
        Err(e) => Err(e.clone()),
    }
}

fn too_old(rv: u64, compacted: u64) -> SourceError {
    SourceError::expired(format!(
        "too old resource version: {rv} (history starts after {compacted})"
    ))
}

fn too_large(rv: u64, current: u64) -> SourceError {
    SourceError::new(
        SourceErrorKind::TooLargeResourceVersion,
        format!("Too large resource version: {rv}, current: {current}"),
    )
}

/// A requested version: `None` for "" / unset / "0", a number otherwise.
fn parse_rv(rv: Option<&ResourceVersion>) -> Result<Option<u64>, SourceError> {
    match rv.map(ResourceVersion::as_str) {
        None | Some("") | Some("0") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            SourceError::new(
                SourceErrorKind::Other,
                format!("invalid resource version {s:?}: expected a number"),
            )
        }),
    }
}

fn check_selectors(options: &ListOptions) -> Result<(), SourceError> {
    if options.label_selector.is_some() || options.field_selector.is_some() {
        return Err(SourceError::new(
            SourceErrorKind::Other,
            "the memory source does not support label or field selectors",
        ));
    }
    Ok(())
}

impl<T: Versioned> MemorySource<T> {
    /// An empty source with the default settings.
    pub fn new() -> Self {
        Self::with_options(MemorySourceOptions::default())
    }

    /// An empty source with these settings.
    pub fn with_options(config: MemorySourceOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    // As in etcd, the empty store is version 1: "0" means "any version" in the
                    // list+watch protocol, so no state may have it.
                    rv: 1,
                    objects: imbl::OrdMap::new(),
                    corrupt: BTreeMap::new(),
                    history: VecDeque::new(),
                    compacted: 1,
                    watchers: Vec::new(),
                    next_id: 0,
                    cursors: BTreeMap::new(),
                    failing_lists: VecDeque::new(),
                    failing_watches: VecDeque::new(),
                    delay: Duration::ZERO,
                    stats: MemorySourceStats::default(),
                }),
            }),
        }
    }

    /// The settings.
    pub fn options(&self) -> &MemorySourceOptions {
        &self.inner.config
    }

    fn write(&self, obj: T, broadcast: bool) -> ResourceVersion {
        let mut obj = obj;
        let mut state = self.inner.lock();
        state.rv += 1;
        let rv = state.rv;
        obj.set_resource_version(rv.into());
        let obj = Arc::new(obj);
        let prev = state.objects.insert(obj.key(), obj.clone());
        state.record(
            self.inner.config.history_limit,
            rv,
            Recorded::Put { obj, prev },
            broadcast,
        );
        rv.into()
    }

    fn remove(&self, key: &T::Key, broadcast: bool) -> Option<ResourceVersion> {
        let mut state = self.inner.lock();
        let prev = state.objects.remove(key)?;
        state.rv += 1;
        let rv = state.rv;
        let mut last = T::clone(&prev);
        last.set_resource_version(rv.into());
        state.record(
            self.inner.config.history_limit,
            rv,
            Recorded::Delete {
                last: Arc::new(last),
                prev,
            },
            broadcast,
        );
        Some(rv.into())
    }

    /// Creates or replaces the object with `obj`'s key, stamped with the new resource version,
    /// and tells every open watch (`Added` or `Modified`). Returns the new version.
    pub fn put(&self, obj: T) -> ResourceVersion {
        self.write(obj, true)
    }

    /// Deletes the object with this key and tells every open watch (`Deleted`, carrying the
    /// last state stamped with the delete's version). Returns the new version, or `None` (and
    /// changes nothing) when the key is absent.
    pub fn delete(&self, key: &T::Key) -> Option<ResourceVersion> {
        self.remove(key, true)
    }

    /// Fault: like [`put`](Self::put), but open watches are not told (client-go's
    /// `AddDropWatch`/`ModifyDropWatch`). The event is in the history, so a watch opened later
    /// from an older version replays it. Follow with [`reset_watches`](Self::reset_watches).
    pub fn put_dropping_watch(&self, obj: T) -> ResourceVersion {
        self.write(obj, false)
    }

    /// Fault: like [`delete`](Self::delete), but open watches are not told (client-go's
    /// `DeleteDropWatch`).
    pub fn delete_dropping_watch(&self, key: &T::Key) -> Option<ResourceVersion> {
        self.remove(key, false)
    }

    /// Fault: stores an entry that cannot be decoded under `raw_key`, as a server holding a
    /// corrupt or foreign value would. Lists report it in [`ObjectList::skipped`] and watches
    /// get a [`SourceErrorKind::Decode`] error for it (the watch goes on). Returns the new
    /// version.
    pub fn put_corrupt(
        &self,
        raw_key: impl Into<String>,
        message: impl Into<String>,
    ) -> ResourceVersion {
        let (raw, message) = (raw_key.into(), message.into());
        let mut state = self.inner.lock();
        state.rv += 1;
        let rv = state.rv;
        state.corrupt.insert(raw.clone(), message.clone());
        state.record(
            self.inner.config.history_limit,
            rv,
            Recorded::Corrupt { raw, message },
            true,
        );
        rv.into()
    }

    /// Removes a corrupt entry stored by [`put_corrupt`](Self::put_corrupt). Whether it was
    /// there.
    pub fn remove_corrupt(&self, raw_key: &str) -> bool {
        self.inner.lock().corrupt.remove(raw_key).is_some()
    }

    /// The current object with this key.
    pub fn get(&self, key: &T::Key) -> Option<Arc<T>> {
        self.inner.lock().objects.get(key).cloned()
    }

    /// Every current object, in key order.
    pub fn objects(&self) -> Vec<Arc<T>> {
        self.inner.lock().objects.values().cloned().collect()
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.inner.lock().objects.len()
    }

    /// Whether there are no objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current resource version: that of the last write, or 1 for a source never written
    /// (as in etcd; "0" means "any version" in the list+watch protocol).
    pub fn resource_version(&self) -> ResourceVersion {
        self.inner.lock().rv.into()
    }

    /// The version the history starts after: a watch from an older version expires.
    pub fn compacted_resource_version(&self) -> ResourceVersion {
        self.inner.lock().compacted.into()
    }

    /// How many watches are open.
    pub fn open_watches(&self) -> usize {
        self.inner.lock().watchers.len()
    }

    /// How many requests have been answered.
    pub fn stats(&self) -> MemorySourceStats {
        self.inner.lock().stats
    }

    /// Fault: the next `n` list requests fail with `error`.
    pub fn fail_next_lists(&self, n: usize, error: SourceError) {
        let mut state = self.inner.lock();
        state.failing_lists.extend(std::iter::repeat_n(error, n));
    }

    /// Fault: the next `n` watch requests fail with `error` (the watch is never opened).
    pub fn fail_next_watches(&self, n: usize, error: SourceError) {
        let mut state = self.inner.lock();
        state.failing_watches.extend(std::iter::repeat_n(error, n));
    }

    /// Fault: every list and watch request waits this long before it is answered
    /// (`Duration::ZERO` to stop).
    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().delay = delay;
    }

    /// Fault: ends every open watch cleanly now. Events already sent are still delivered first.
    pub fn close_watches(&self) {
        self.inner.lock().watchers.clear();
    }

    /// Fault: sends `error` as an [`WatchEvent::Error`] to every open watch, then ends them.
    pub fn send_error(&self, error: SourceError) {
        let mut state = self.inner.lock();
        for w in state.watchers.drain(..) {
            let _ = w.tx.send(Ok(WatchEvent::Error(error.clone())));
        }
    }

    /// Sends a bookmark now to every open watch, at the version of the last event it was sent.
    /// Calling it twice sends duplicate bookmarks.
    pub fn send_bookmarks(&self) {
        let state = self.inner.lock();
        for w in &state.watchers {
            let _ = w.tx.send(Ok(WatchEvent::Bookmark {
                resource_version: w.delivered.into(),
                initial_events_end: false,
            }));
        }
    }

    /// Fault: drops the whole history now (an etcd compaction). Watches and continue tokens
    /// from older versions expire; a client at the current version can still watch.
    pub fn compact(&self) {
        let mut state = self.inner.lock();
        state.history.clear();
        state.compacted = state.rv;
    }

    /// Fault: the server loses its watch state (client-go's `ResetWatch`): every open watch
    /// ends, the history is dropped, and the version moves past every version a client may
    /// hold, so every client must relist. No object changes.
    pub fn reset_watches(&self) -> ResourceVersion {
        let mut state = self.inner.lock();
        state.watchers.clear();
        state.history.clear();
        state.rv += 1;
        state.compacted = state.rv;
        state.rv.into()
    }

    async fn serve_delay(&self) {
        let delay = self.inner.lock().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn serve_list(&self, options: &ListOptions) -> Result<ObjectList<T>, SourceError> {
        let mut guard = self.inner.lock();
        let state = &mut *guard;
        state.stats.lists += 1;
        if let Some(e) = state.failing_lists.pop_front() {
            return Err(e);
        }
        check_selectors(options)?;
        let limit = options.limit.filter(|l| *l > 0).map(|l| l as usize);
        if let Some(token) = options.continue_token.as_deref().filter(|t| !t.is_empty()) {
            let (rv, id, served) = parse_token(token)?;
            let Some(cursor) = state.cursors.remove(&id) else {
                return Err(SourceError::expired(format!(
                    "the continue token {token:?} is too old or unknown; list again"
                )));
            };
            if cursor.rv != rv || cursor.served != served {
                return Err(SourceError::new(
                    SourceErrorKind::Other,
                    format!("invalid continue token {token:?}"),
                ));
            }
            if rv < state.compacted {
                return Err(too_old(rv, state.compacted));
            }
            let range = cursor
                .snapshot
                .range::<_, T::Key>((Bound::Excluded(&cursor.last), Bound::Unbounded));
            let (items, more) = take_page(range.map(|(_, v)| v), limit);
            let mut list = ObjectList::new(items, Some(rv.into()));
            self.next_page(state, &mut list, cursor.snapshot, rv, served, more);
            return Ok(list);
        }
        let requested = parse_rv(options.resource_version.as_ref())?;
        let (snapshot, rv) = match (requested, options.version_match) {
            (Some(r), VersionMatch::Exact) => (state.state_at(r)?, r),
            (Some(r), _) if r > state.rv => return Err(too_large(r, state.rv)),
            _ => (state.objects.clone(), state.rv),
        };
        let (items, more) = take_page(snapshot.values(), limit);
        let mut list = ObjectList::new(items, Some(rv.into()));
        list.skipped = state.skipped();
        self.next_page(state, &mut list, snapshot, rv, 0, more);
        Ok(list)
    }

    /// Records a cursor for the page after `list`, when there is one.
    fn next_page(
        &self,
        state: &mut State<T>,
        list: &mut ObjectList<T>,
        snapshot: ObjectMap<T>,
        rv: u64,
        served_before: usize,
        more: bool,
    ) {
        let Some(last) = list.items.last().filter(|_| more).map(|o| o.key()) else {
            return;
        };
        let served = served_before + list.items.len();
        state.next_id += 1;
        let id = state.next_id;
        state.cursors.insert(
            id,
            Cursor {
                rv,
                snapshot,
                last,
                served,
            },
        );
        while state.cursors.len() > self.inner.config.open_lists {
            state.cursors.pop_first();
        }
        list.continue_token = Some(format!("{rv}.{id}.{served}"));
    }

    fn open_watch(&self, options: &ListOptions) -> Result<MemoryWatch<T>, SourceError> {
        let mut guard = self.inner.lock();
        let state = &mut *guard;
        state.stats.watches += 1;
        if let Some(e) = state.failing_watches.pop_front() {
            return Err(e);
        }
        check_selectors(options)?;
        let requested = parse_rv(options.resource_version.as_ref())?;
        let mut pending: VecDeque<Item<T>> = VecDeque::new();
        if options.send_initial_events {
            if !options.allow_bookmarks {
                return Err(SourceError::new(
                    SourceErrorKind::Other,
                    "send_initial_events requires allow_bookmarks",
                ));
            }
            if let Some(r) = requested.filter(|r| *r > state.rv) {
                return Err(too_large(r, state.rv));
            }
            initial_events(state, &mut pending);
            pending.push_back(Ok(WatchEvent::Bookmark {
                resource_version: state.rv.into(),
                initial_events_end: true,
            }));
        } else {
            match requested {
                None => initial_events(state, &mut pending),
                Some(r) if r > state.rv => return Err(too_large(r, state.rv)),
                Some(r) if r < state.compacted => return Err(too_old(r, state.compacted)),
                Some(r) => {
                    let start = state.history.partition_point(|e| e.rv <= r);
                    pending.extend(state.history.range(start..).map(|e| e.change.event()));
                }
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        state.next_id += 1;
        let id = state.next_id;
        state.watchers.push(Slot {
            id,
            tx,
            delivered: state.rv,
        });
        drop(guard);
        let ticker = self
            .inner
            .config
            .bookmark_interval
            .filter(|p| options.allow_bookmarks && !p.is_zero())
            .map(|period| {
                let mut t = tokio::time::interval_at(Instant::now() + period, period);
                t.set_missed_tick_behavior(MissedTickBehavior::Delay);
                t
            });
        let deadline = options
            .timeout
            .map(|t| Box::pin(tokio::time::sleep(t.max(Duration::from_millis(1)))));
        Ok(MemoryWatch {
            id,
            inner: self.inner.clone(),
            pending,
            rx,
            ticker,
            deadline,
            done: false,
        })
    }
}

fn initial_events<T: Versioned>(state: &State<T>, pending: &mut VecDeque<Item<T>>) {
    pending.extend(
        state
            .objects
            .values()
            .map(|o| Ok(WatchEvent::Added(o.clone()))),
    );
    pending.extend(state.skipped().into_iter().map(Err));
}

fn take_page<'a, T: 'a>(
    mut it: impl Iterator<Item = &'a Arc<T>>,
    limit: Option<usize>,
) -> (Vec<Arc<T>>, bool) {
    match limit {
        None => (it.cloned().collect(), false),
        Some(limit) => {
            let items: Vec<_> = it.by_ref().take(limit).cloned().collect();
            let more = it.next().is_some();
            (items, more)
        }
    }
}

fn parse_token(token: &str) -> Result<(u64, u64, usize), SourceError> {
    let bad = || {
        SourceError::new(
            SourceErrorKind::Other,
            format!("invalid continue token {token:?}"),
        )
    };
    let mut parts = token.split('.');
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<u64>().ok())
            .ok_or_else(bad)
    };
    let (rv, id, served) = (next()?, next()?, next()?);
    Ok((rv, id, usize::try_from(served).map_err(|_| bad())?))
}

impl<T: Versioned> ListerWatcher<T> for MemorySource<T> {
    fn list(&self, options: ListOptions) -> BoxFuture<'_, Result<ObjectList<T>, SourceError>> {
        Box::pin(async move {
            self.serve_delay().await;
            self.serve_list(&options)
        })
    }

    fn watch(&self, options: ListOptions) -> BoxFuture<'_, Result<WatchStream<T>, SourceError>> {
        Box::pin(async move {
            self.serve_delay().await;
            let watch = self.open_watch(&options)?;
            Ok(Box::pin(watch) as WatchStream<T>)
        })
    }

    fn supports_watch_list(&self) -> bool {
        self.inner.config.watch_list
    }
}

/// An open watch on a [`MemorySource`]. Dropping it closes it.
struct MemoryWatch<T: Versioned> {
    id: u64,
    inner: Arc<Inner<T>>,
    /// Initial or replayed events, then anything drained from `rx` ahead of a bookmark.
    pending: VecDeque<Item<T>>,
    rx: mpsc::UnboundedReceiver<Item<T>>,
    ticker: Option<Interval>,
    deadline: Option<Pin<Box<Sleep>>>,
    done: bool,
}

impl<T: Versioned> MemoryWatch<T> {
    /// Queues a bookmark behind every event already sent to this watch.
    fn bookmark(&mut self) {
        let state = self.inner.lock();
        let Some(slot) = state.watchers.iter().find(|w| w.id == self.id) else {
            return; // closed: the channel ends soon
        };
        // Senders hold the lock: everything up to `delivered` is in the channel now.
        while let Ok(item) = self.rx.try_recv() {
            self.pending.push_back(item);
        }
        self.pending.push_back(Ok(WatchEvent::Bookmark {
            resource_version: slot.delivered.into(),
            initial_events_end: false,
        }));
    }
}

impl<T: Versioned> Stream for MemoryWatch<T> {
    type Item = Item<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item<T>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(deadline) = &this.deadline
                && Instant::now() >= deadline.deadline()
            {
                // The server-side timeout: a clean end.
                this.done = true;
                return Poll::Ready(None);
            }
            if let Some(item) = this.pending.pop_front() {
                return Poll::Ready(Some(item));
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            let tick = this.ticker.as_mut().map(|t| t.poll_tick(cx));
            if let Some(Poll::Ready(_)) = tick {
                this.bookmark();
                continue;
            }
            // Nothing to send: wake at the timeout (registered only now, not per event).
            if let Some(deadline) = &mut this.deadline
                && deadline.as_mut().poll(cx).is_ready()
            {
                continue;
            }
            return Poll::Pending;
        }
    }
}

impl<T: Versioned> Drop for MemoryWatch<T> {
    fn drop(&mut self) {
        let id = self.id;
        self.inner.lock().watchers.retain(|w| w.id != id);
    }
}

#[cfg(test)]
mod tests;
