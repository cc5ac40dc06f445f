//! The reflector's behaviour, after client-go's reflector_test.go and
//! reflector_watchlist_test.go, on our types.

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;

use futures::channel::mpsc::{UnboundedSender, unbounded};

use super::*;
use crate::source::memory::{MemorySource, MemorySourceOptions};
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::object::ResourceVersion;
use crate::source::{
    ListOptions, ListWatch, ObjectList, SourceError, SourceErrorKind, VersionMatch, WatchEvent,
    WatchStream,
};
use crate::store::{Change, Store, StoreError};
use crate::test_support::{Item as Pod, cache, item, until};
use crate::{Cache, Indexer, Indexers};

fn pod(name: &str, rv: u64) -> Arc<Pod> {
    Arc::new(Pod {
        rv: Some(rv.into()),
        ..item(name, 0)
    })
}

fn new_pod(name: &str, value: u32) -> Pod {
    item(name, value)
}

/// The store's content as `name@rv`, sorted.
fn content(store: &Cache<Pod>) -> Vec<String> {
    let mut v: Vec<String> = store
        .list()
        .iter()
        .map(|p| format!("{}@{}", p.name, p.rv.as_ref().map_or("-", |r| r.as_str())))
        .collect();
    v.sort();
    v
}

fn rv(s: &str) -> Option<ResourceVersion> {
    Some(s.into())
}

fn err(kind: SourceErrorKind) -> SourceError {
    SourceError::new(kind, format!("{kind:?}"))
}

fn no_jitter(initial_ms: u64, cap_ms: u64) -> BackoffOptions {
    BackoffOptions::new(
        Duration::from_millis(initial_ms),
        2.0,
        Duration::from_millis(cap_ms),
    )
    .jitter(0.0)
}

/// One call a source received.
#[derive(Debug, Clone)]
enum Call {
    List(ListOptions),
    Watch(ListOptions),
}

impl Call {
    fn options(&self) -> &ListOptions {
        match self {
            Call::List(o) | Call::Watch(o) => o,
        }
    }
    fn is_list(&self) -> bool {
        matches!(self, Call::List(_))
    }
}

type Hook = dyn Fn(&Call) + Send + Sync;

/// Records every call, then passes it on.
struct Recorder<L> {
    inner: L,
    calls: Mutex<Vec<Call>>,
    hook: Option<Box<Hook>>,
}

impl<L> Recorder<L> {
    fn new(inner: L) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: Mutex::new(Vec::new()),
            hook: None,
        })
    }
    fn with_hook(inner: L, hook: impl Fn(&Call) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: Mutex::new(Vec::new()),
            hook: Some(Box::new(hook)),
        })
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn lists(&self) -> Vec<ListOptions> {
        self.calls()
            .into_iter()
            .filter(Call::is_list)
            .map(|c| c.options().clone())
            .collect()
    }
    fn watches(&self) -> Vec<ListOptions> {
        self.calls()
            .into_iter()
            .filter(|c| !c.is_list())
            .map(|c| c.options().clone())
            .collect()
    }
    fn record(&self, call: Call) {
        if let Some(hook) = &self.hook {
            hook(&call);
        }
        self.calls.lock().unwrap().push(call);
    }
}

impl<L: ListerWatcher<Pod>> ListerWatcher<Pod> for Recorder<L> {
    fn list(&self, options: ListOptions) -> BoxFuture<'_, Result<ObjectList<Pod>, SourceError>> {
        self.record(Call::List(options.clone()));
        self.inner.list(options)
    }
    fn watch(&self, options: ListOptions) -> BoxFuture<'_, Result<WatchStream<Pod>, SourceError>> {
        self.record(Call::Watch(options.clone()));
        self.inner.watch(options)
    }
    fn supports_watch_list(&self) -> bool {
        self.inner.supports_watch_list()
    }
}

/// A source that answers from queues the test fills; an empty queue never answers.
#[derive(Default)]
struct Scripted {
    lists: Mutex<VecDeque<Result<ObjectList<Pod>, SourceError>>>,
    watches: Mutex<VecDeque<Result<WatchStream<Pod>, SourceError>>>,
    watch_list: bool,
}

type Feed = UnboundedSender<Result<WatchEvent<Pod>, SourceError>>;

impl Scripted {
    fn new(watch_list: bool) -> Self {
        Self {
            watch_list,
            ..Self::default()
        }
    }
    fn push_list(&self, items: Vec<Arc<Pod>>, rv: u64) {
        self.lists
            .lock()
            .unwrap()
            .push_back(Ok(ObjectList::new(items, Some(rv.into()))));
    }
    fn push_list_error(&self, e: SourceError) {
        self.lists.lock().unwrap().push_back(Err(e));
    }
    /// Queues a watch whose events the test sends through the returned feed.
    fn push_watch(&self) -> Feed {
        let (tx, rx) = unbounded();
        self.watches.lock().unwrap().push_back(Ok(Box::pin(rx)));
        tx
    }
    fn push_watch_error(&self, e: SourceError) {
        self.watches.lock().unwrap().push_back(Err(e));
    }
}

impl ListerWatcher<Pod> for Scripted {
    fn list(&self, _: ListOptions) -> BoxFuture<'_, Result<ObjectList<Pod>, SourceError>> {
        let next = self.lists.lock().unwrap().pop_front();
        Box::pin(async move {
            match next {
                Some(r) => r,
                None => std::future::pending().await,
            }
        })
    }
    fn watch(&self, _: ListOptions) -> BoxFuture<'_, Result<WatchStream<Pod>, SourceError>> {
        let next = self.watches.lock().unwrap().pop_front();
        Box::pin(async move {
            match next {
                Some(r) => r,
                None => std::future::pending().await,
            }
        })
    }
    fn supports_watch_list(&self) -> bool {
        self.watch_list
    }
}

fn send(feed: &Feed, event: WatchEvent<Pod>) {
    feed.unbounded_send(Ok(event)).unwrap();
}

/// Ends a scripted watch so that the cycle returns (a clean end would re-watch).
fn end(feed: Feed) {
    feed.unbounded_send(Err(SourceError::expired("end")))
        .unwrap();
}

fn ended() -> Result<(), ReflectorError> {
    Err(ReflectorError::WatchEnded(SourceError::expired("end")))
}

fn bookmark(rv: u64, end: bool) -> WatchEvent<Pod> {
    WatchEvent::Bookmark {
        resource_version: rv.into(),
        initial_events_end: end,
    }
}

/// Collects the errors a reflector reports.
fn collector() -> (
    Arc<Mutex<Vec<ReflectorError>>>,
    impl Fn(&ReflectorError) + Send + Sync + 'static,
) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    (errors, move |e: &ReflectorError| {
        sink.lock().unwrap().push(e.clone())
    })
}

/// Runs one list-and-watch cycle until the reflector has listed `n` times in all, then drops
/// it (as a cancellation would).
async fn list_until(r: &Reflector<Pod>, n: u64) -> Option<Result<(), ReflectorError>> {
    let cancel = CancellationToken::new();
    tokio::select! {
        out = r.list_and_watch(&cancel) => Some(out),
        () = until("a list", || r.stats().lists >= n) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Watch handling

#[tokio::test(start_paused = true)]
async fn error_event_ends_the_watch_and_drops_it() {
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![], 1);
    let feed = source.push_watch();
    let r = Reflector::new(source.clone(), cache());
    send(&feed, WatchEvent::Error(err(SourceErrorKind::Other)));
    let out = r.list_and_watch(&CancellationToken::new()).await;
    assert_eq!(
        out,
        Err(ReflectorError::WatchEnded(err(SourceErrorKind::Other)))
    );
    assert!(feed.is_closed(), "the watch was dropped");
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_run_and_closes_the_watch() {
    let source = MemorySource::new();
    source.put(new_pod("a", 1));
    let r = Reflector::new(source.clone(), cache());
    let cancel = CancellationToken::new();
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let task = tokio::spawn({
        let (r, cancel) = (r.clone(), cancel.clone());
        async move { r.run(cancel).await }
    });
    r.wait_for_sync().await;
    until("the watch", || source.open_watches() == 1).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run returns promptly")
        .unwrap();
    assert_eq!(source.open_watches(), 0);
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        tasks_before,
        "no task left behind"
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_run_at_the_same_time_returns_at_once() {
    let source = MemorySource::new();
    source.put(new_pod("a", 1));
    let r = Reflector::new(source.clone(), cache());
    let cancel = CancellationToken::new();
    let first = tokio::spawn({
        let (r, cancel) = (r.clone(), cancel.clone());
        async move { r.run(cancel).await }
    });
    r.wait_for_sync().await;
    let other = CancellationToken::new();
    tokio::time::timeout(Duration::from_secs(1), r.clone().run(other))
        .await
        .expect("returns at once");
    assert_eq!(source.stats().watches, 1, "the second run did nothing");
    cancel.cancel();
    first.await.unwrap();
    // Once stopped, it can run again.
    let again = CancellationToken::new();
    let stop = again.clone();
    let ((), ()) = tokio::join!(r.run(again), async move {
        until("a second sync", || source.stats().watches == 2).await;
        stop.cancel();
    });
}

#[tokio::test(start_paused = true)]
async fn cancelled_before_start_calls_nothing() {
    let source = Recorder::new(MemorySource::<Pod>::new());
    let r = Reflector::new(source.clone(), cache());
    let cancel = CancellationToken::new();
    cancel.cancel();
    assert_eq!(r.list_and_watch(&cancel).await, Ok(()));
    r.run(cancel).await;
    assert!(source.calls().is_empty());
    assert!(!r.has_synced());
}

#[tokio::test(start_paused = true)]
async fn cancelled_during_watch_returns_and_drops_the_one_watch() {
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![], 1);
    let feed = source.push_watch();
    let recorder = Recorder::new(source.clone());
    let r = Reflector::new(recorder.clone(), cache());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let (out, ()) = tokio::join!(r.list_and_watch(&cancel), async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        stop.cancel();
    });
    assert_eq!(out, Ok(()));
    assert_eq!(recorder.watches().len(), 1);
    assert!(feed.is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_watch_closed_at_once_without_events_is_very_short() {
    for after in [Duration::ZERO, Duration::from_millis(10)] {
        let source = Arc::new(Scripted::new(false));
        source.push_list(vec![], 1);
        let feed = source.push_watch();
        let r = Reflector::new(source.clone(), cache());
        let cancel = CancellationToken::new();
        let (out, ()) = tokio::join!(r.list_and_watch(&cancel), async move {
            tokio::time::sleep(after).await;
            feed.close_channel();
        });
        assert_eq!(
            out,
            Err(ReflectorError::VeryShortWatch),
            "closed after {after:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_watch_that_ends_cleanly_is_reopened_without_a_relist() {
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![pod("a", 1)], 1);
    let first = source.push_watch();
    let second = source.push_watch();
    let recorder = Recorder::new(source.clone());
    let store = cache();
    let r = Reflector::new(recorder.clone(), store.clone());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let (out, ()) = tokio::join!(r.list_and_watch(&cancel), async move {
        send(&first, WatchEvent::Added(pod("b", 2)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        first.close_channel();
        tokio::time::sleep(Duration::from_secs(2)).await;
        send(&second, WatchEvent::Added(pod("c", 3)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.cancel();
    });
    assert_eq!(out, Ok(()));
    assert_eq!(recorder.lists().len(), 1);
    let watches = recorder.watches();
    assert_eq!(watches.len(), 2);
    assert_eq!(
        watches[1].resource_version,
        rv("2"),
        "re-watched from the last event"
    );
    assert_eq!(content(&store), ["a@1", "b@2", "c@3"]);
}

#[tokio::test(start_paused = true)]
async fn watch_events_reach_the_store() {
    // client-go's TestReflectorWatchHandler: an object of the wrong kind is skipped, the
    // others are applied, and the last event's version is kept.
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![pod("foo", 1), pod("bar", 2)], 2);
    let feed = source.push_watch();
    let store = cache();
    let (errors, handler) = collector();
    let r = Reflector::builder(source.clone(), store.clone())
        .watch_error_handler(handler)
        .validate(|p: &Pod| {
            if p.name.starts_with("rejected") {
                Err("not a pod".into())
            } else {
                Ok(())
            }
        })
        .build();
    send(&feed, WatchEvent::Added(pod("rejected", 3)));
    send(&feed, WatchEvent::Deleted(pod("foo", 4)));
    send(&feed, WatchEvent::Modified(pod("bar", 55)));
    send(&feed, WatchEvent::Added(pod("baz", 32)));
    end(feed);
    assert_eq!(r.list_and_watch(&CancellationToken::new()).await, ended());
    assert_eq!(content(&store), ["bar@55", "baz@32"]);
    assert_eq!(r.last_sync_resource_version(), rv("32"));
    let errors = errors.lock().unwrap().clone();
    assert_eq!(
        errors,
        [ReflectorError::InvalidObject {
            key: "\"rejected\"".into(),
            reason: "not a pod".into()
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn every_event_and_bookmark_moves_the_version() {
    // client-go's TestReflectorResourceVersionUpdate.
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![], 10);
    let feed = source.push_watch();
    let store = cache();
    let r = Reflector::new(source.clone(), store.clone());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let r2 = r.clone();
    let store2 = store.clone();
    let (_, seen) = tokio::join!(r.list_and_watch(&cancel), async move {
        let mut seen = Vec::new();
        until("the list", || r2.has_synced()).await;
        seen.push(r2.last_sync_resource_version());
        for event in [
            WatchEvent::Added(pod("a", 20)),
            WatchEvent::Modified(pod("a", 30)),
            bookmark(40, false),
            WatchEvent::Deleted(pod("a", 50)),
        ] {
            send(&feed, event);
            tokio::time::sleep(Duration::from_millis(5)).await;
            seen.push(r2.last_sync_resource_version());
            assert_eq!(
                store2.last_sync_resource_version(),
                r2.last_sync_resource_version()
            );
        }
        stop.cancel();
        seen
    });
    assert_eq!(seen, [rv("10"), rv("20"), rv("30"), rv("40"), rv("50")]);
}

#[tokio::test(start_paused = true)]
async fn a_bookmark_below_the_current_version_is_ignored() {
    // etcd members that lag or restart can report progress below the watch's start.
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![pod("a", 10)], 10);
    let feed = source.push_watch();
    let store = cache();
    let r = Reflector::new(source.clone(), store.clone());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let r2 = r.clone();
    let store2 = store.clone();
    let (_, seen) = tokio::join!(r.list_and_watch(&cancel), async move {
        let mut seen = Vec::new();
        until("the list", || r2.has_synced()).await;
        for event in [
            bookmark(5, false),
            bookmark(10, false),
            WatchEvent::Modified(pod("a", 20)),
            bookmark(15, false),
            bookmark(25, false),
            bookmark(24, false),
        ] {
            send(&feed, event);
            tokio::time::sleep(Duration::from_millis(5)).await;
            seen.push(r2.last_sync_resource_version());
            assert_eq!(
                store2.last_sync_resource_version(),
                r2.last_sync_resource_version()
            );
        }
        stop.cancel();
        seen
    });
    assert_eq!(
        seen,
        [rv("10"), rv("10"), rv("20"), rv("20"), rv("25"), rv("25")]
    );
    assert_eq!(content(&store), ["a@20"]);
}

#[tokio::test(start_paused = true)]
async fn a_bookmark_with_an_opaque_version_is_applied() {
    // Versions are opaque unless both are numbers: nothing to compare, so nothing is refused.
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![], 10);
    let feed = source.push_watch();
    let store = cache();
    let r = Reflector::new(source.clone(), store.clone());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let r2 = r.clone();
    let (_, seen) = tokio::join!(r.list_and_watch(&cancel), async move {
        until("the list", || r2.has_synced()).await;
        send(
            &feed,
            WatchEvent::Bookmark {
                resource_version: "opaque-1".into(),
                initial_events_end: false,
            },
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        stop.cancel();
        r2.last_sync_resource_version()
    });
    assert_eq!(seen, rv("opaque-1"));
}

#[tokio::test(start_paused = true)]
async fn synthetic_adds_of_a_watch_from_zero_do_not_move_the_version() {
    // A list without a version makes the watch start from "": its initial Added events come
    // out of version order, so their versions are not kept until another event arrives.
    let source = Arc::new(Scripted::new(false));
    source
        .lists
        .lock()
        .unwrap()
        .push_back(Ok(ObjectList::new(vec![], None)));
    let feed = source.push_watch();
    let recorder = Recorder::new(source.clone());
    let r = Reflector::new(recorder.clone(), cache());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let r2 = r.clone();
    let (_, seen) = tokio::join!(r.list_and_watch(&cancel), async move {
        let mut seen = Vec::new();
        for event in [
            WatchEvent::Added(pod("a", 5)),
            WatchEvent::Added(pod("b", 3)),
            WatchEvent::Modified(pod("a", 7)),
            WatchEvent::Added(pod("c", 8)),
        ] {
            send(&feed, event);
            tokio::time::sleep(Duration::from_millis(5)).await;
            seen.push(r2.last_sync_resource_version());
        }
        stop.cancel();
        seen
    });
    assert_eq!(recorder.watches()[0].resource_version, None);
    assert_eq!(seen, [None, None, rv("7"), rv("8")]);
}

// ---------------------------------------------------------------------------------------------
// The cycle

#[tokio::test(start_paused = true)]
async fn list_then_watch_from_the_lists_version() {
    // client-go's TestReflectorListAndWatch, streaming list off.
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![pod("foo", 1)], 1);
    let feed = source.push_watch();
    let recorder = Recorder::new(source.clone());
    let store = cache();
    let r = Reflector::new(recorder.clone(), store.clone());
    send(&feed, WatchEvent::Modified(pod("foo", 2)));
    for (name, v) in [("bar", 3), ("baz", 4), ("qux", 5), ("zoo", 6)] {
        send(&feed, WatchEvent::Added(pod(name, v)));
    }
    end(feed);
    assert_eq!(r.list_and_watch(&CancellationToken::new()).await, ended());
    let lists = recorder.lists();
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].resource_version, rv("0"));
    assert_eq!(lists[0].limit, Some(500));
    let watch = &recorder.watches()[0];
    assert_eq!(watch.resource_version, rv("1"));
    assert!(watch.allow_bookmarks);
    assert!(!watch.send_initial_events);
    assert_eq!(
        content(&store),
        ["bar@3", "baz@4", "foo@2", "qux@5", "zoo@6"]
    );
    assert_eq!(r.last_sync_resource_version(), rv("6"));
}

#[tokio::test(start_paused = true)]
async fn streaming_list_then_watch_on_the_same_stream() {
    // client-go's TestReflectorListAndWatch, streaming list on: one watch, no list.
    let source = Arc::new(Scripted::new(true));
    let feed = source.push_watch();
    let recorder = Recorder::new(source.clone());
    let store = cache();
    let r = Reflector::new(recorder.clone(), store.clone());
    send(&feed, WatchEvent::Added(pod("foo", 1)));
    send(&feed, bookmark(1, true));
    send(&feed, WatchEvent::Modified(pod("foo", 2)));
    for (name, v) in [("bar", 3), ("baz", 4), ("qux", 5), ("zoo", 6)] {
        send(&feed, WatchEvent::Added(pod(name, v)));
    }
    end(feed);
    assert_eq!(r.list_and_watch(&CancellationToken::new()).await, ended());
    assert!(recorder.lists().is_empty());
    let watches = recorder.watches();
    assert_eq!(watches.len(), 1);
    let w = &watches[0];
    assert_eq!(w.resource_version, None);
    assert_eq!(w.version_match, VersionMatch::NotOlderThan);
    assert!(w.allow_bookmarks && w.send_initial_events);
    assert_eq!(
        content(&store),
        ["bar@3", "baz@4", "foo@2", "qux@5", "zoo@6"]
    );
    assert!(r.has_synced());
    assert_eq!(r.stats().lists, 1);
}

#[tokio::test(start_paused = true)]
async fn each_cycle_replaces_the_store_and_returns_its_error() {
    // client-go's TestReflectorListAndWatchWithErrors: one store across cycles.
    let source = Arc::new(Scripted::new(false));
    let store = cache();
    let r = Reflector::new(source.clone(), store.clone());
    let never = CancellationToken::new();

    // 1: list, then watch events, then the watch fails.
    source.push_list(vec![pod("foo", 1)], 1);
    let feed = source.push_watch();
    send(&feed, WatchEvent::Added(pod("bar", 2)));
    send(&feed, WatchEvent::Deleted(pod("foo", 3)));
    feed.unbounded_send(Err(err(SourceErrorKind::Other)))
        .unwrap();
    assert_eq!(
        r.list_and_watch(&never).await,
        Err(ReflectorError::WatchEnded(err(SourceErrorKind::Other)))
    );
    assert_eq!(content(&store), ["bar@2"]);

    // 2: the list fails: an error wrapping it; the store keeps what it had.
    source.push_list_error(err(SourceErrorKind::Other));
    let out = r.list_and_watch(&never).await;
    assert_eq!(out, Err(ReflectorError::List(err(SourceErrorKind::Other))));
    assert!(out.unwrap_err().to_string().starts_with("failed to list"));
    assert_eq!(content(&store), ["bar@2"]);

    // 3: the list replaces the store exactly; the watch cannot be opened.
    source.push_list(vec![pod("foo", 4), pod("baz", 4)], 4);
    source.push_watch_error(err(SourceErrorKind::Other));
    assert_eq!(
        r.list_and_watch(&never).await,
        Err(ReflectorError::WatchStart(err(SourceErrorKind::Other)))
    );
    assert_eq!(content(&store), ["baz@4", "foo@4"]);
    assert_eq!(r.last_sync_resource_version(), rv("4"));
}

#[tokio::test(start_paused = true)]
async fn an_error_event_after_an_unsafe_write_is_repaired_by_the_relist() {
    // client-go's TestReflectorReplacesStoreOnUnsafeDelete.
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![pod("a", 1), pod("b", 2)], 3);
    let feed = source.push_watch();
    send(&feed, WatchEvent::Added(pod("foo", 4)));
    send(
        &feed,
        WatchEvent::Error(SourceError::new(
            SourceErrorKind::Internal,
            "corrupt object",
        )),
    );
    source.push_list(vec![pod("a", 1), pod("b", 2), pod("c", 5)], 5);
    let store = cache();
    let r = Reflector::builder(source.clone(), store.clone())
        .max_internal_error_retry(Duration::ZERO)
        .build();
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (r, cancel) = (r.clone(), cancel.clone());
        async move { r.run(cancel).await }
    });
    until("the relist", || r.stats().lists == 2).await;
    assert_eq!(content(&store), ["a@1", "b@2", "c@5"]);
    assert_eq!(r.last_sync_resource_version(), rv("5"));
    assert_eq!(r.stats().relists, 1);
    cancel.cancel();
    run.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Backoff and retries

#[tokio::test(start_paused = true)]
async fn refused_watches_back_off_without_relisting() {
    // client-go's TestReflectorListAndWatchInitConnBackoff and TestNewReflectorWithCustomBackoff.
    for (failures, expected) in [(5, 1 + 2 + 4 + 8 + 16), (40, 63 + 34 * 50)] {
        let source = listing();
        source.fail_next_watches(failures, err(SourceErrorKind::ConnectionRefused));
        let r = Reflector::builder(source.clone(), cache())
            .backoff(no_jitter(1, 50))
            .build();
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let (_, elapsed) = tokio::join!(r.list_and_watch(&cancel), async {
            until("the watch", || source.open_watches() == 1).await;
            let elapsed = started.elapsed();
            cancel.cancel();
            elapsed
        });
        assert!(
            elapsed >= Duration::from_millis(expected)
                && elapsed < Duration::from_millis(expected + 5),
            "{failures} failures: {elapsed:?}, expected {expected} ms"
        );
        assert_eq!(source.stats().lists, 1, "no relist");
        assert_eq!(source.stats().watches, failures as u64 + 1);
    }

    // The default backoff: two refusals cost under 5 s (0.8-1.6 s, then 1.6-3.2 s).
    let source = listing();
    source.fail_next_watches(2, err(SourceErrorKind::ConnectionRefused));
    let r = Reflector::new(source.clone(), cache());
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let (_, elapsed) = tokio::join!(r.list_and_watch(&cancel), async {
        until("the watch", || source.open_watches() == 1).await;
        cancel.cancel();
        started.elapsed()
    });
    assert!(
        elapsed >= Duration::from_millis(2400) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn too_many_requests_backs_off_and_never_relists() {
    // client-go's TestBackoffOnTooManyRequests and TestNoRelistOnTooManyRequests.
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![], 1);
    source.push_watch_error(err(SourceErrorKind::TooManyRequests));
    let second = source.push_watch();
    send(
        &second,
        WatchEvent::Error(err(SourceErrorKind::TooManyRequests)),
    );
    let third = source.push_watch();
    third
        .unbounded_send(Err(SourceError::expired("gone")))
        .unwrap();
    let recorder = Recorder::new(source.clone());
    let r = Reflector::builder(recorder.clone(), cache())
        .backoff(no_jitter(1000, 30_000))
        .build();
    let started = Instant::now();
    let out = r.list_and_watch(&CancellationToken::new()).await;
    assert_eq!(
        out,
        Err(ReflectorError::WatchEnded(SourceError::expired("gone")))
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1 + 2),
        "two backoff delays"
    );
    assert_eq!(recorder.lists().len(), 1);
    assert_eq!(recorder.watches().len(), 3);

    let source = listing();
    source.fail_next_watches(4, err(SourceErrorKind::TooManyRequests));
    let r = Reflector::new(source.clone(), cache());
    let cancel = CancellationToken::new();
    let _ = tokio::join!(r.list_and_watch(&cancel), async {
        until("the watch", || source.open_watches() == 1).await;
        cancel.cancel();
    });
    assert_eq!(
        source.stats(),
        crate::source::memory::MemorySourceStats {
            lists: 1,
            watches: 5
        }
    );
}

/// A source whose every watch takes a second (or `jump` at watch number `jump_at`) and then
/// reports an internal error. Counts the watches.
fn internal_errors(jump_at: usize, jump: Duration) -> (ListWatch<Pod>, Arc<AtomicUsize>) {
    let watches = Arc::new(AtomicUsize::new(0));
    let count = watches.clone();
    let lw = ListWatch::new(
        |_| async { Ok(ObjectList::new(vec![], Some(1.into()))) },
        move |_| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let wait = if n == jump_at {
                    jump
                } else {
                    Duration::from_secs(1)
                };
                tokio::time::sleep(wait).await;
                let event = Ok(WatchEvent::Error(SourceError::new(
                    SourceErrorKind::Internal,
                    "etcdserver: leader changed",
                )));
                Ok(Box::pin(futures::stream::iter([event])) as WatchStream<Pod>)
            }
        },
    );
    (lw, watches)
}

#[tokio::test(start_paused = true)]
async fn internal_errors_are_retried_within_the_deadline() {
    // client-go's TestRetryInternalError: retries = watches - 1.
    for (window, jump_at, jump, retries) in [
        (0, 0, Duration::ZERO, 0),
        (30, 0, Duration::ZERO, 31),
        (30, 10, Duration::from_secs(61), 40),
    ] {
        let (lw, watches) = internal_errors(jump_at, jump);
        let r = Reflector::builder(lw, cache())
            .max_internal_error_retry(Duration::from_secs(window))
            .build();
        let out = r.list_and_watch(&CancellationToken::new()).await;
        assert_eq!(
            out.unwrap_err().source_kind(),
            Some(SourceErrorKind::Internal)
        );
        assert_eq!(
            watches.load(Ordering::SeqCst) - 1,
            retries,
            "window {window}s, jump at {jump_at}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn run_backs_off_between_failed_lists_and_resets_after_healthy_running() {
    let source = Recorder::new(listing());
    let times = Arc::new(Mutex::new(Vec::new()));
    let at = times.clone();
    let started = Instant::now();
    let source = {
        let inner = Arc::clone(&source);
        Recorder::with_hook(inner, move |c| {
            if c.is_list() {
                at.lock()
                    .unwrap()
                    .push(started.elapsed().as_millis() as u64);
            }
        })
    };
    let memory = &source.inner.inner;
    memory.fail_next_lists(3, err(SourceErrorKind::Other));
    let r = Reflector::builder(source.clone(), cache())
        .backoff(no_jitter(1000, 30_000))
        .build();
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (r, cancel) = (r.clone(), cancel.clone());
        async move { r.run(cancel).await }
    });
    until("the sync", || r.has_synced()).await;
    assert_eq!(*times.lock().unwrap(), [0, 1000, 3000, 7000]);

    // Healthy for three minutes, then the watch fails: the backoff starts over at 1 s.
    tokio::time::sleep(Duration::from_secs(180)).await;
    memory.send_error(err(SourceErrorKind::Other));
    until("the relist", || r.stats().lists == 2).await;
    let t = times.lock().unwrap().clone();
    assert_eq!(t.len(), 5);
    // Synced at 7 s, failed at about 187 s: one initial delay (not 8 s) before the relist.
    assert!((188_000..188_010).contains(&t[4]), "{t:?}");
    cancel.cancel();
    task.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Resync

struct ResyncStore {
    cache: Cache<Pod>,
    resyncs: AtomicUsize,
    fail_at: usize,
}

impl Store<Pod> for ResyncStore {
    fn add(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.cache.add(obj)
    }
    fn update(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.cache.update(obj)
    }
    fn delete(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.cache.delete(obj)
    }
    fn list(&self) -> Vec<Arc<Pod>> {
        self.cache.list()
    }
    fn list_keys(&self) -> Vec<String> {
        self.cache.list_keys()
    }
    fn get_by_key(&self, key: &String) -> Option<Arc<Pod>> {
        self.cache.get_by_key(key)
    }
    fn replace(&self, items: Vec<Arc<Pod>>, rv: Option<ResourceVersion>) -> Result<(), StoreError> {
        self.cache.replace(items, rv)
    }
    fn resync(&self) -> Result<(), StoreError> {
        let n = self.resyncs.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }
    fn bookmark(&self, rv: ResourceVersion) {
        self.cache.bookmark(rv);
    }
    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.cache.resource_version()
    }
}

fn resync_store(fail_at: usize) -> Arc<ResyncStore> {
    Arc::new(ResyncStore {
        cache: Cache::with_indexers(Indexers::new()),
        resyncs: AtomicUsize::new(0),
        fail_at,
    })
}

#[tokio::test(start_paused = true)]
async fn resync_runs_at_its_period_and_its_error_ends_the_cycle() {
    // client-go's TestReflectorResyncChan and TestReflectorResync.
    let source = MemorySource::<Pod>::new();
    let store = resync_store(2);
    let r = Reflector::builder(source.clone(), store.clone())
        .resync_period(Duration::from_secs(1))
        .build();
    let started = Instant::now();
    let out = r.list_and_watch(&CancellationToken::new()).await;
    assert_eq!(out, Err(ReflectorError::Resync(StoreError::Closed)));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(store.resyncs.load(Ordering::SeqCst), 2);
    assert_eq!(r.stats().resyncs, 2);
    assert_eq!(source.open_watches(), 0);
}

#[tokio::test(start_paused = true)]
async fn should_resync_gates_each_resync() {
    let source = MemorySource::<Pod>::new();
    let store = resync_store(usize::MAX);
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let r = Reflector::builder(source.clone(), store.clone())
        .resync_period(Duration::from_secs(1))
        .should_resync(move || t.fetch_add(1, Ordering::SeqCst).is_multiple_of(2))
        .build();
    let cancel = CancellationToken::new();
    let _ = tokio::join!(r.list_and_watch(&cancel), async {
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        cancel.cancel();
    });
    assert_eq!(ticks.load(Ordering::SeqCst), 10);
    assert_eq!(store.resyncs.load(Ordering::SeqCst), 5);

    // No period: never.
    let store = resync_store(usize::MAX);
    let r = Reflector::new(source.clone(), store.clone());
    let cancel = CancellationToken::new();
    let _ = tokio::join!(r.list_and_watch(&cancel), async {
        tokio::time::sleep(Duration::from_secs(100)).await;
        cancel.cancel();
    });
    assert_eq!(store.resyncs.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------------
// Paginated lists and the version of relists

/// A memory source without the streaming list: the reflector lists.
fn listing() -> MemorySource<Pod> {
    MemorySource::with_options(MemorySourceOptions::default().watch_list(false))
}

fn memory_with(n: usize) -> MemorySource<Pod> {
    let source = listing();
    for i in 0..n {
        source.put(new_pod(&format!("p{i:04}"), 0));
    }
    source
}

#[tokio::test(start_paused = true)]
async fn configured_page_size_is_followed() {
    // client-go's TestReflectorWatchListPageSize.
    let source = Recorder::new(memory_with(10));
    let store = cache();
    let r = Reflector::builder(source.clone(), store.clone())
        .page_size(4)
        .build();
    list_until(&r, 1).await;
    let lists = source.lists();
    assert_eq!(lists.len(), 3);
    assert!(lists.iter().all(|o| o.limit == Some(4)));
    assert_eq!(lists[0].continue_token, None);
    assert!(lists[1].continue_token.is_some() && lists[2].continue_token.is_some());
    assert_eq!(
        lists[1].resource_version, None,
        "continuation pages carry no version"
    );
    assert_eq!(store.len(), 10);
}

#[tokio::test(start_paused = true)]
async fn relists_at_a_version_are_not_paginated_and_use_the_last_version() {
    // client-go's TestReflectorNotPaginatingNotConsistentReads and
    // TestReflectorResyncWithResourceVersion.
    let memory = memory_with(10);
    let source = Recorder::new(memory.clone());
    let store = cache();
    let r = Reflector::new(source.clone(), store.clone());
    list_until(&r, 1).await;
    memory.put(new_pod("late", 0));
    list_until(&r, 2).await;
    let lists = source.lists();
    assert_eq!(
        lists
            .iter()
            .map(|o| (o.resource_version.clone(), o.limit))
            .collect::<Vec<_>>(),
        [(rv("0"), Some(500)), (rv("11"), None)]
    );
    assert_eq!(store.len(), 11);
}

#[tokio::test(start_paused = true)]
async fn relists_stay_paginated_when_the_first_list_came_in_pages() {
    // client-go's TestReflectorPaginatingNonConsistentReadsIfWatchCacheDisabled.
    let source = Recorder::new(memory_with(600));
    let store = cache();
    let r = Reflector::new(source.clone(), store.clone());
    list_until(&r, 1).await;
    list_until(&r, 2).await;
    let lists = source.lists();
    assert_eq!(lists.len(), 4, "two pages, twice");
    assert!(lists.iter().all(|o| o.limit == Some(500)));
    assert_eq!(lists[2].resource_version, rv("601"));
    assert_eq!(store.len(), 600);
}

#[tokio::test(start_paused = true)]
async fn an_expired_relist_version_lists_the_latest_at_once() {
    // client-go's TestReflectorExpiredExactResourceVersion and TestReflectorFullListIfTooLarge.
    for kind in [
        SourceErrorKind::Expired,
        SourceErrorKind::TooLargeResourceVersion,
    ] {
        let memory = memory_with(8);
        let source = Recorder::new(memory.clone());
        let store = cache();
        let r = Reflector::new(source.clone(), store.clone());
        list_until(&r, 1).await;
        memory.fail_next_lists(1, err(kind));
        list_until(&r, 2).await;
        let rvs: Vec<_> = source
            .lists()
            .iter()
            .map(|o| o.resource_version.clone())
            .collect();
        assert_eq!(rvs, [rv("0"), rv("9"), None], "{kind:?}");
        assert_eq!(store.len(), 8);
        // The next relist is at the version again.
        list_until(&r, 3).await;
        assert_eq!(source.lists()[3].resource_version, rv("9"));
    }
}

#[tokio::test(start_paused = true)]
async fn an_expired_continue_token_falls_back_to_a_full_list() {
    // client-go's TestReflectorFullListIfExpired.
    let memory = memory_with(8);
    let compact = memory.clone();
    let source = Recorder::with_hook(memory.clone(), move |call| {
        if call.options().continue_token.is_some() {
            compact.put(new_pod("newer", 0));
            compact.compact();
        }
    });
    let store = cache();
    let r = Reflector::builder(source.clone(), store.clone())
        .page_size(4)
        .build();
    list_until(&r, 1).await;
    let lists = source.lists();
    let seen: Vec<_> = lists
        .iter()
        .map(|o| {
            (
                o.resource_version.clone(),
                o.limit,
                o.continue_token.is_some(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (rv("0"), Some(4), false),
            (None, Some(4), true),
            (rv("0"), None, false)
        ]
    );
    assert_eq!(store.len(), 9);
    assert_eq!(r.last_sync_resource_version(), rv("10"));
}

#[tokio::test(start_paused = true)]
async fn an_expired_watch_relists_at_the_last_version() {
    let memory = MemorySource::with_options(MemorySourceOptions::default().history_limit(2));
    memory.put(new_pod("a", 1));
    let source = Recorder::new(memory.clone());
    let store = cache();
    let r = Reflector::builder(source.clone(), store.clone())
        .use_watch_list(false)
        .build();
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (r, cancel) = (r.clone(), cancel.clone());
        async move { r.run(cancel).await }
    });
    until("the watch", || memory.open_watches() == 1).await;
    // Disconnected while the history moves on.
    memory.set_delay(Duration::from_secs(5));
    memory.close_watches();
    for v in 2..6 {
        memory.put(new_pod("a", v));
    }
    memory.set_delay(Duration::ZERO);
    until("the relist", || r.stats().lists == 2).await;
    until("the watch", || memory.open_watches() == 1).await;
    let lists = source.lists();
    assert_eq!(
        lists[1].resource_version,
        rv("2"),
        "not older than the last version"
    );
    assert_eq!(store.get_by_key(&"a".to_string()).unwrap().value, 5);
    assert_eq!(r.last_sync_resource_version(), rv("6"));
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_too_large_watch_version_relists_the_latest() {
    let source = Arc::new(Scripted::new(false));
    source.push_list(vec![pod("a", 7)], 7);
    source.push_watch_error(err(SourceErrorKind::TooLargeResourceVersion));
    source.push_list(vec![pod("a", 3)], 3);
    let recorder = Recorder::new(source.clone());
    let r = Reflector::new(recorder.clone(), cache());
    let out = r.list_and_watch(&CancellationToken::new()).await;
    assert_eq!(
        out.unwrap_err().source_kind(),
        Some(SourceErrorKind::TooLargeResourceVersion)
    );
    list_until(&r, 2).await;
    assert_eq!(recorder.lists()[1].resource_version, None);
    assert_eq!(r.last_sync_resource_version(), rv("3"));
}

#[tokio::test(start_paused = true)]
async fn watch_timeouts_are_random_between_the_minimum_and_twice_that() {
    // client-go's TestWatchTimeout.
    for (min, low) in [(None, 300), (Some(1), 300), (Some(1800), 1800)] {
        let source = Recorder::new(MemorySource::<Pod>::new());
        let mut options = ReflectorOptions::default();
        if let Some(min) = min {
            options.min_watch_timeout = Duration::from_secs(min);
        }
        let r = Reflector::builder(source.clone(), cache())
            .options(options)
            .build();
        let cancel = CancellationToken::new();
        let _ = tokio::join!(r.list_and_watch(&cancel), async {
            until("the watch", || !source.watches().is_empty()).await;
            cancel.cancel();
        });
        let timeout = source.watches()[0].timeout.unwrap();
        assert!(
            timeout >= Duration::from_secs(low) && timeout <= Duration::from_secs(2 * low),
            "{timeout:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The streaming initial list (client-go's reflector_watchlist_test.go)

#[tokio::test(start_paused = true)]
async fn streaming_list_is_used_only_when_offered_and_enabled() {
    for (offered, enabled, streams) in [
        (true, true, true),
        (false, true, false),
        (true, false, false),
    ] {
        let memory = MemorySource::with_options(MemorySourceOptions::default().watch_list(offered));
        memory.put(new_pod("a", 1));
        let source = Recorder::new(memory);
        let r = Reflector::builder(source.clone(), cache())
            .use_watch_list(enabled)
            .build();
        list_until(&r, 1).await;
        assert_eq!(source.lists().is_empty(), streams);
        assert_eq!(source.watches()[0].send_initial_events, streams);
    }
}

#[tokio::test(start_paused = true)]
async fn streaming_list_replaces_the_store_at_the_end_bookmark() {
    let source = Arc::new(Scripted::new(true));
    let feed = source.push_watch();
    let store = cache();
    store.add(pod("stale", 1)).unwrap();
    let recorder = Recorder::new(source.clone());
    let r = Reflector::new(recorder.clone(), store.clone());
    let cancel = CancellationToken::new();
    let r2 = r.clone();
    let store2 = store.clone();
    let stop = cancel.clone();
    let (out, ()) = tokio::join!(r.list_and_watch(&cancel), async move {
        // Modified and Deleted during the stream apply to the temporary map.
        send(&feed, WatchEvent::Added(pod("p1", 1)));
        send(&feed, WatchEvent::Added(pod("p2", 2)));
        send(&feed, WatchEvent::Modified(pod("p1", 3)));
        send(&feed, WatchEvent::Added(pod("p3", 4)));
        send(&feed, WatchEvent::Deleted(pod("p3", 5)));
        // A bookmark that does not end the initial events is not the end.
        send(&feed, bookmark(5, false));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!r2.has_synced());
        assert_eq!(
            content(&store2),
            ["stale@1"],
            "nothing published before the end"
        );
        assert_eq!(
            r2.last_sync_resource_version(),
            None,
            "Added events move no version"
        );
        send(&feed, bookmark(5, true));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(r2.has_synced());
        assert_eq!(content(&store2), ["p1@3", "p2@2"]);
        assert_eq!(r2.last_sync_resource_version(), rv("5"));
        // The same stream goes on as the watch.
        send(&feed, WatchEvent::Added(pod("p4", 6)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        stop.cancel();
    });
    assert_eq!(out, Ok(()));
    assert_eq!(content(&store), ["p1@3", "p2@2", "p4@6"]);
    assert_eq!(recorder.watches().len(), 1);
    assert!(recorder.lists().is_empty());
}

#[tokio::test(start_paused = true)]
async fn streaming_list_closed_early_starts_over_with_a_fresh_map() {
    let source = Arc::new(Scripted::new(true));
    let first = source.push_watch();
    let second = source.push_watch();
    let store = cache();
    let recorder = Recorder::new(source.clone());
    let r = Reflector::new(recorder.clone(), store.clone());
    send(&first, WatchEvent::Added(pod("gone", 1)));
    drop(first);
    send(&second, WatchEvent::Added(pod("p1", 2)));
    send(&second, bookmark(2, true));
    let cancel = CancellationToken::new();
    list_until(&r, 1).await;
    cancel.cancel();
    assert_eq!(
        content(&store),
        ["p1@2"],
        "nothing from the aborted stream survives"
    );
    let watches = recorder.watches();
    assert_eq!(watches.len(), 2);
    assert!(
        watches
            .iter()
            .all(|w| w.send_initial_events && w.resource_version.is_none())
    );
    assert!(recorder.lists().is_empty());
}

#[tokio::test(start_paused = true)]
async fn streaming_list_backs_off_on_too_many_requests() {
    let source = Arc::new(Scripted::new(true));
    source.push_watch_error(err(SourceErrorKind::TooManyRequests));
    source.push_watch_error(err(SourceErrorKind::TooManyRequests));
    let feed = source.push_watch();
    send(&feed, WatchEvent::Added(pod("p1", 1)));
    send(&feed, bookmark(1, true));
    let recorder = Recorder::new(source.clone());
    let store = cache();
    let r = Reflector::new(recorder.clone(), store.clone());
    list_until(&r, 1).await;
    let watches = recorder.watches();
    assert_eq!(watches.len(), 3);
    assert!(watches.iter().all(|w| w.send_initial_events));
    assert!(recorder.lists().is_empty(), "no fallback");
    assert_eq!(content(&store), ["p1@1"]);
}

#[tokio::test(start_paused = true)]
async fn streaming_list_failure_falls_back_to_a_list() {
    let source = Arc::new(Scripted::new(true));
    source.push_watch_error(SourceError::new(SourceErrorKind::Other, "422 invalid"));
    source.push_list(vec![pod("p1", 1), pod("p2", 1)], 1);
    let _watch = source.push_watch();
    let recorder = Recorder::new(source.clone());
    let store = cache();
    let r = Reflector::new(recorder.clone(), store.clone());
    list_until(&r, 1).await;
    until("the watch", || recorder.watches().len() == 2).await;
    let lists = recorder.lists();
    assert_eq!(
        (lists[0].resource_version.clone(), lists[0].limit),
        (rv("0"), Some(500))
    );
    let watches = recorder.watches();
    assert!(watches[0].send_initial_events);
    assert!(!watches[1].send_initial_events);
    assert_eq!(watches[1].resource_version, rv("1"));
    assert_eq!(content(&store), ["p1@1", "p2@1"]);
}

#[tokio::test(start_paused = true)]
async fn after_a_streaming_sync_the_rewatch_is_a_plain_watch() {
    let source = Arc::new(Scripted::new(true));
    let first = source.push_watch();
    send(&first, WatchEvent::Added(pod("p1", 1)));
    send(&first, WatchEvent::Added(pod("p2", 2)));
    send(&first, bookmark(2, true));
    send(&first, WatchEvent::Added(pod("p3", 3)));
    drop(first);
    let second = source.push_watch();
    send(&second, WatchEvent::Added(pod("p4", 4)));
    second
        .unbounded_send(Ok(WatchEvent::Error(SourceError::expired("410"))))
        .unwrap();
    let recorder = Recorder::new(source.clone());
    let store = cache();
    let r = Reflector::new(recorder.clone(), store.clone());
    let out = r.list_and_watch(&CancellationToken::new()).await;
    assert_eq!(
        out,
        Err(ReflectorError::WatchEnded(SourceError::expired("410")))
    );
    let watches = recorder.watches();
    assert_eq!(watches.len(), 2);
    assert!(!watches[1].send_initial_events);
    assert_eq!(watches[1].resource_version, rv("3"));
    assert_eq!(content(&store), ["p1@1", "p2@2", "p3@3", "p4@4"]);
}

#[tokio::test(start_paused = true)]
async fn streaming_list_with_an_expired_version_asks_for_the_latest() {
    let memory = MemorySource::with_options(MemorySourceOptions::default().history_limit(1));
    memory.put(new_pod("a", 1));
    let source = Recorder::new(memory.clone());
    let store = cache();
    let r = Reflector::new(source.clone(), store.clone());
    list_until(&r, 1).await;
    // The reflector asked with no version; a later relist asks at its version, which is
    // always servable by a streaming list (not older than).
    memory.fail_next_watches(1, SourceError::expired("gone"));
    list_until(&r, 2).await;
    let rvs: Vec<_> = source
        .watches()
        .iter()
        .map(|w| w.resource_version.clone())
        .collect();
    assert_eq!(rvs[0], None);
    assert_eq!(rvs[rvs.len() - 2..], [rv("2"), None]);
}

// ---------------------------------------------------------------------------------------------
// Batching

/// Counts the transactions it is given.
struct Counting {
    cache: Cache<Pod>,
    transactions: AtomicUsize,
}

impl Store<Pod> for Counting {
    fn add(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.cache.add(obj)
    }
    fn update(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.cache.update(obj)
    }
    fn delete(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.cache.delete(obj)
    }
    fn list(&self) -> Vec<Arc<Pod>> {
        self.cache.list()
    }
    fn list_keys(&self) -> Vec<String> {
        self.cache.list_keys()
    }
    fn get_by_key(&self, key: &String) -> Option<Arc<Pod>> {
        self.cache.get_by_key(key)
    }
    fn replace(&self, items: Vec<Arc<Pod>>, rv: Option<ResourceVersion>) -> Result<(), StoreError> {
        self.cache.replace(items, rv)
    }
    fn resync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn bookmark(&self, rv: ResourceVersion) {
        self.cache.bookmark(rv);
    }
    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.cache.resource_version()
    }
    fn transaction(&self, changes: Vec<Change<Pod>>) -> Result<(), TransactionError> {
        self.transactions.fetch_add(1, Ordering::SeqCst);
        self.cache.transaction(changes)
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_events_are_applied_in_one_transaction() {
    for (max_batch, expected) in [(1024, 1), (10, 10)] {
        let memory = MemorySource::new();
        let store = Arc::new(Counting {
            cache: Cache::with_indexers(Indexers::new()),
            transactions: AtomicUsize::new(0),
        });
        let r = Reflector::builder(memory.clone(), store.clone())
            .max_batch(max_batch)
            .build();
        let cancel = CancellationToken::new();
        let _ = tokio::join!(r.list_and_watch(&cancel), async {
            until("the watch", || memory.open_watches() == 1).await;
            // Written while the reflector waits: all of it is ready at once.
            for i in 0..100 {
                memory.put(new_pod(&format!("p{i}"), i));
            }
            until("the events", || r.last_sync_resource_version() == rv("101")).await;
            cancel.cancel();
        });
        assert_eq!(store.transactions.load(Ordering::SeqCst), expected);
        assert_eq!(store.cache.len(), 100);
        assert_eq!(r.stats().events, 100);
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[tokio::test(start_paused = true)]
async fn undecodable_objects_are_reported_skipped_and_lose_nothing() {
    let memory = MemorySource::new();
    memory.put(new_pod("a", 1));
    memory.put_corrupt("default/broken", "invalid character '}' looking for value");
    let store = cache();
    let (errors, handler) = collector();
    let r = Reflector::builder(memory.clone(), store.clone())
        .watch_error_handler(handler)
        .build();
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (r, cancel) = (r.clone(), cancel.clone());
        async move { r.run(cancel).await }
    });
    r.wait_for_sync().await;
    until("the watch", || memory.open_watches() == 1).await;
    memory.put_corrupt("default/broken-too", "unexpected end of JSON input");
    let last = memory.put(new_pod("b", 2));
    until("b", || r.last_sync_resource_version() == Some(last.clone())).await;
    assert_eq!(
        store
            .list_keys()
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>(),
        ["a".to_string(), "b".to_string()].into()
    );
    let errors = errors.lock().unwrap().clone();
    let objects: Vec<_> = errors
        .iter()
        .map(|e| match e {
            ReflectorError::Decode(e) => e.object.clone().unwrap(),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(objects, ["default/broken", "default/broken-too"]);
    assert_eq!(r.stats().lists, 1, "no relist for a bad object");
    assert!(!task.is_finished());
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn objects_with_a_wrong_key_are_reported_skipped_and_lose_nothing() {
    let memory = MemorySource::new();
    memory.put(new_pod("a", 1));
    memory.put(new_pod("", 1)); // no name: not a key this collection can hold
    let store = cache();
    let (errors, handler) = collector();
    let r = Reflector::builder(memory.clone(), store.clone())
        .watch_error_handler(handler)
        .validate(|p: &Pod| {
            if p.name.is_empty() || p.name.contains('/') {
                Err(format!("invalid name {:?}", p.name))
            } else {
                Ok(())
            }
        })
        .build();
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (r, cancel) = (r.clone(), cancel.clone());
        async move { r.run(cancel).await }
    });
    r.wait_for_sync().await;
    until("the watch", || memory.open_watches() == 1).await;
    memory.put(new_pod("x/y", 1));
    let last = memory.put(new_pod("a", 2));
    until("a", || r.last_sync_resource_version() == Some(last.clone())).await;
    assert_eq!(content(&store), ["a@5"]);
    let errors = errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, ReflectorError::InvalidObject { .. }))
    );
    assert_eq!(
        errors[1].to_string(),
        "skipped invalid object \"x/y\": invalid name \"x/y\""
    );
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn writes_the_store_rejects_are_reported_and_the_rest_applied() {
    // A unique index: the source breaks it; the cache refuses that write only.
    let memory = MemorySource::new();
    memory.put(new_pod("a", 1));
    let store = Arc::new(Cache::with_indexers(
        Indexers::new().with(Indexer::unique("value", |p: &Pod| [p.value])),
    ));
    let (errors, handler) = collector();
    let r = Reflector::builder(memory.clone(), store.clone())
        .watch_error_handler(handler)
        .build();
    let cancel = CancellationToken::new();
    let _ = tokio::join!(r.list_and_watch(&cancel), async {
        until("the watch", || memory.open_watches() == 1).await;
        memory.put(new_pod("b", 1)); // same value as a
        memory.put(new_pod("c", 3));
        until("c", || r.last_sync_resource_version() == rv("4")).await;
        cancel.cancel();
    });
    assert_eq!(content(&store), ["a@2", "c@4"]);
    let errors = errors.lock().unwrap().clone();
    assert!(
        matches!(&errors[..], [ReflectorError::Transaction(t)] if t.errors.len() == 1),
        "{errors:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Accessors

#[tokio::test(start_paused = true)]
async fn accessors_and_counters() {
    let memory = MemorySource::new();
    memory.put(new_pod("a", 1));
    let r = Reflector::builder(memory.clone(), cache()).build();
    assert!(
        r.name().contains("reflector") && r.name().contains(".rs:"),
        "{}",
        r.name()
    );
    assert!(!r.has_synced());
    assert_eq!(r.last_sync_resource_version(), None);
    let named = Reflector::builder(memory.clone(), cache())
        .name("pods")
        .build();
    assert_eq!(named.name(), "pods");

    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (r, cancel) = (r.clone(), cancel.clone());
        async move { r.run(cancel).await }
    });
    r.wait_for_sync().await;
    until("the watch", || memory.open_watches() == 1).await;
    memory.put(new_pod("b", 1));
    memory.send_bookmarks();
    memory.close_watches();
    until("the re-watch", || memory.open_watches() == 1).await;
    memory.reset_watches();
    until("the relist", || r.stats().lists == 2).await;
    until("the watch", || memory.open_watches() == 1).await;
    let stats = r.stats();
    assert_eq!(stats.lists, 2);
    assert_eq!(stats.relists, 1);
    assert_eq!(stats.events, 1);
    assert_eq!(stats.bookmarks, 1);
    // The streaming list, the re-watch after the close, the streaming relist (the watch that
    // expired was never opened).
    assert_eq!(stats.watch_starts, 3, "{stats:?}");
    assert_eq!(stats.watch_restarts, stats.watch_starts - 1);
    assert!(stats.errors >= 1, "the expired watch");
    assert_eq!(
        r.last_sync_resource_version(),
        Some(memory.resource_version())
    );
    cancel.cancel();
    task.await.unwrap();
}
