//! The reflector over `KubeListWatch` against a real kube-apiserver and etcd (see
//! `apiserver/mod.rs`): its watch cache, bookmarks, 410s, pagination, streaming list and CRDs.
//! Each test asserts what the server holds and what the cache ends with.
//!
//! Without a built kube-apiserver (`.ci/kube-apiserver`) these tests print a notice and pass
//! locally; under `CI=true` they fail.

mod apiserver;
mod running;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiserver::{KubeApiServer, Options};
use cache_core::reflector::{BackoffOptions, ReflectorError};
use cache_core::source::{
    ListOptions, ListerWatcher, ObjectList, SourceError, SourceErrorKind, WatchEvent, WatchStream,
};
use cache_core::{Cache, Indexed, Object, ObjectKey, ResourceVersion};
use cache_kube::{KubeListWatch, object_key, resource_version};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use running::Running;
use tokio_util::sync::CancellationToken;

/// A compact pod, the cache's type: its indexes are derived.
#[derive(Debug, Indexed)]
struct PodInfo {
    #[key(namespace)]
    #[index]
    namespace: String,
    #[key(name)]
    name: String,
    #[resource_version]
    rv: ResourceVersion,
    #[index]
    node: Option<String>,
    labels: BTreeMap<String, String>,
}

impl PodInfo {
    fn from_pod(pod: Pod) -> Result<Self, &'static str> {
        let key = object_key(&pod).ok_or("no name")?;
        Ok(Self {
            namespace: key.namespace().unwrap_or_default().to_owned(),
            name: key.name().to_owned(),
            rv: resource_version(&pod).ok_or("no resourceVersion")?,
            node: pod.spec.and_then(|s| s.node_name),
            labels: pod.metadata.labels.unwrap_or_default(),
        })
    }
}

/// What a source was asked and what it answered, recorded by [`Recorded`].
#[derive(Debug, Default)]
struct Calls {
    /// Every list call: its options and the number of items of its page.
    lists: Vec<(ListOptions, usize)>,
    /// Every watch call's options.
    watches: Vec<ListOptions>,
    /// Bookmarks seen on watches (the streaming list's end included).
    bookmarks: usize,
    /// Errors the source returned: failed lists and watches, and error events of watches.
    errors: Vec<SourceError>,
}

/// A source that records its calls and caps the watch timeout, so that watches end (and the
/// API server sends the bookmark it sends shortly before a watch's deadline) within a test.
struct Recorded<L> {
    inner: L,
    calls: Arc<Mutex<Calls>>,
    watch_timeout: Option<Duration>,
    control: WatchControl,
}

/// Lets a test hold the reflector's next watch request back (as a slow network would) and end
/// the open watch cleanly.
#[derive(Clone, Default)]
struct WatchControl {
    gate: Arc<tokio::sync::RwLock<()>>,
    cut: Arc<Mutex<CancellationToken>>,
}

impl WatchControl {
    /// Ends the open watches cleanly, as the server does at a watch's timeout.
    fn cut_watches(&self) {
        let mut cut = self.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }
}

impl<L> Recorded<L> {
    fn new(inner: L) -> (Self, Arc<Mutex<Calls>>) {
        let calls = Arc::new(Mutex::new(Calls::default()));
        let recorded = Self {
            inner,
            calls: calls.clone(),
            watch_timeout: None,
            control: WatchControl::default(),
        };
        (recorded, calls)
    }

    fn watch_timeout(mut self, timeout: Duration) -> Self {
        self.watch_timeout = Some(timeout);
        self
    }

    fn control(&self) -> WatchControl {
        self.control.clone()
    }
}

impl<T: Object, L: ListerWatcher<T>> ListerWatcher<T> for Recorded<L> {
    fn list(&self, options: ListOptions) -> BoxFuture<'_, Result<ObjectList<T>, SourceError>> {
        Box::pin(async move {
            let result = self.inner.list(options.clone()).await;
            let n = result.as_ref().map_or(0, |l| l.items.len());
            let mut calls = self.calls.lock().unwrap();
            calls.lists.push((options, n));
            if let Err(e) = &result {
                calls.errors.push(e.clone());
            }
            drop(calls);
            result
        })
    }

    fn watch(
        &self,
        mut options: ListOptions,
    ) -> BoxFuture<'_, Result<WatchStream<T>, SourceError>> {
        Box::pin(async move {
            if let Some(t) = self.watch_timeout {
                options.timeout = Some(t);
            }
            self.calls.lock().unwrap().watches.push(options.clone());
            let _open = self.control.gate.read().await;
            let cut = self.control.cut.lock().unwrap().clone();
            let stream = match self.inner.watch(options).await {
                Ok(stream) => stream,
                Err(e) => {
                    self.calls.lock().unwrap().errors.push(e.clone());
                    return Err(e);
                }
            };
            let calls = self.calls.clone();
            Ok(stream
                .take_until(cut.cancelled_owned())
                .inspect(move |event| match event {
                    Ok(WatchEvent::Bookmark { .. }) => calls.lock().unwrap().bookmarks += 1,
                    Ok(WatchEvent::Error(e)) | Err(e) => {
                        calls.lock().unwrap().errors.push(e.clone())
                    }
                    _ => {}
                })
                .boxed())
        })
    }

    fn supports_watch_list(&self) -> bool {
        self.inner.supports_watch_list()
    }
}

fn run<T: Object>(source: impl ListerWatcher<T>, cache: &Arc<Cache<T>>) -> Running<T> {
    let backoff = BackoffOptions::new(Duration::from_millis(50), 2.0, Duration::from_secs(1));
    running::run(source, cache, backoff)
}

/// [`run`], then waits up to `limit` for the first sync.
async fn run_synced<T: Object>(
    source: impl ListerWatcher<T>,
    cache: &Arc<Cache<T>>,
    limit: Duration,
) -> Running<T> {
    let running = run(source, cache);
    tokio::time::timeout(limit, running.reflector.wait_for_sync())
        .await
        .expect("synced in time");
    running
}

/// Creates `namespace` and `n` pods in it, `p-000`, `p-001`, ..., the `i`th on `node(i)`, with
/// `labels`.
async fn seed(
    client: &Client,
    namespace: &str,
    n: usize,
    node: impl Fn(usize) -> Option<String>,
    labels: &[(&str, &str)],
) {
    create_namespaces(client, [namespace.to_owned()]).await;
    let pods = (0..n)
        .map(|i| pod(namespace, &format!("p-{i:03}"), node(i), labels))
        .collect();
    create_pods(client, pods).await;
}

/// Waits until `cond` holds, up to `limit`; panics with `what` otherwise.
async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pod(namespace: &str, name: &str, node: Option<String>, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: node,
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.example/app:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

async fn create_namespaces(client: &Client, names: impl IntoIterator<Item = String>) {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
    }
}

/// Creates the pods, 32 requests in flight.
async fn create_pods(client: &Client, pods: Vec<Pod>) {
    futures::stream::iter(pods)
        .map(|p| {
            let api: Api<Pod> =
                Api::namespaced(client.clone(), p.metadata.namespace.as_deref().unwrap());
            async move { api.create(&PostParams::default(), &p).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("create pods");
}

/// The server's pods (a quorum read), as sorted `namespace/name@rv labels` lines.
async fn server_pods(client: &Client) -> Vec<String> {
    let api: Api<Pod> = Api::all(client.clone());
    let mut lines = Vec::new();
    let mut params = ListParams::default().limit(1000);
    loop {
        let page = api.list(&params).await.expect("list pods");
        lines.extend(page.items.into_iter().map(|p| {
            let info = PodInfo::from_pod(p).unwrap();
            line(&info)
        }));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    lines.sort();
    lines
}

fn line(p: &PodInfo) -> String {
    let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}/{}@{} {}",
        p.namespace,
        p.name,
        p.rv.as_str(),
        labels.join(",")
    )
}

fn cache_pods(cache: &Cache<PodInfo>) -> Vec<String> {
    let mut lines: Vec<String> = cache.snapshot().iter().map(|p| line(p)).collect();
    lines.sort();
    lines
}

/// Waits until the cache equals the server, then returns the server's state.
async fn converged(client: &Client, cache: &Cache<PodInfo>, limit: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let server = server_pods(client).await;
        let cached = cache_pods(cache);
        if cached == server {
            return server;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<_> = server
                .iter()
                .filter(|l| !cached.contains(l))
                .take(5)
                .collect();
            let extra: Vec<_> = cached
                .iter()
                .filter(|l| !server.contains(l))
                .take(5)
                .collect();
            panic!(
                "the cache ({}) did not converge to the server ({}) within {limit:?}; \
                 missing {missing:?}, extra {extra:?}",
                cached.len(),
                server.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pods_source(client: &Client) -> KubeListWatch<Pod, PodInfo> {
    KubeListWatch::new(Api::<Pod>::all(client.clone())).map(PodInfo::from_pod)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_pods_sync_in_pages_into_an_indexed_cache() {
    // A list at resourceVersion 0 (the reflector's first) is served from the API server's
    // watch cache, which ignores the limit and answers in one piece (see the watch test). With
    // the watch cache of pods off, lists go to etcd and come in pages.
    let Some(server) = KubeApiServer::for_test_with(
        "five_thousand_pods",
        Options::new().arg("--watch-cache-sizes=pods#0"),
    )
    .await
    else {
        return;
    };
    let client = server.client().await;
    let namespaces: Vec<String> = (0..20).map(|i| format!("team-{i:02}")).collect();
    create_namespaces(&client, namespaces.clone()).await;
    let pods = (0..5000)
        .map(|i| {
            pod(
                &namespaces[i % 20],
                &format!("pod-{i:05}"),
                Some(format!("node-{:02}", i % 50)),
                &[("app", if i % 2 == 0 { "web" } else { "db" })],
            )
        })
        .collect();
    create_pods(&client, pods).await;

    let cache = Arc::new(Cache::<PodInfo>::new());
    let (source, calls) = Recorded::new(pods_source(&client));
    let running = run_synced(source, &cache, Duration::from_secs(120)).await;

    // The cache equals a fresh list from the server (keys, versions, labels).
    let server_state = converged(&client, &cache, Duration::from_secs(30)).await;
    assert_eq!(server_state.len(), 5000);
    let snap = cache.snapshot();
    assert_eq!(snap.len(), 5000);
    for ns in &namespaces {
        assert_eq!(snap.count_by(PodInfo::NAMESPACE, ns), 250, "namespace {ns}");
    }
    assert_eq!(snap.values(PodInfo::NODE).len(), 50);
    let on_node_7 = snap.by(PodInfo::NODE, "node-07");
    assert_eq!(on_node_7.len(), 100);
    assert!(
        on_node_7
            .iter()
            .all(|p| p.node.as_deref() == Some("node-07"))
    );
    let got = snap
        .get(&ObjectKey::new("team-03", "pod-00003"))
        .expect("pod-00003 cached");
    assert_eq!(got.labels["app"], "db");

    // The list came in pages of 500, each asked with a limit of 500.
    let calls = calls.lock().unwrap();
    let pages: Vec<usize> = calls.lists.iter().map(|(_, n)| *n).collect();
    assert!(
        calls.lists.iter().all(|(o, _)| o.limit == Some(500)),
        "{:?}",
        calls.lists
    );
    assert_eq!(pages, [500; 10], "pages of the initial list");
    assert!(
        calls.lists[1..]
            .iter()
            .all(|(o, _)| o.continue_token.is_some())
    );
    assert!(running.errors().is_empty(), "{:?}", running.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_follows_creates_relabels_and_deletes_with_bookmarks() {
    let Some(server) = KubeApiServer::for_test("watch_follows").await else {
        return;
    };
    let client = server.client().await;
    seed(&client, "watched", 100, |_| None, &[("gen", "1")]).await;

    let cache = Arc::new(Cache::<PodInfo>::new());
    // Watches of 4 s: the server sends a bookmark shortly before each one's deadline.
    let (source, calls) = Recorded::new(pods_source(&client));
    let running = run_synced(
        source.watch_timeout(Duration::from_secs(4)),
        &cache,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(cache.len(), 100);
    {
        // The first list, at resourceVersion 0, came from the watch cache: in one piece,
        // whatever the limit asked.
        let calls = calls.lock().unwrap();
        assert_eq!(calls.lists.len(), 1);
        let (options, items) = &calls.lists[0];
        assert_eq!(options.limit, Some(500));
        assert_eq!(
            options.resource_version.as_ref().map(|v| v.as_str()),
            Some("0")
        );
        assert_eq!(*items, 100);
    }

    let api: Api<Pod> = Api::namespaced(client.clone(), "watched");
    // Create 50, relabel 50 of the first ones, delete 30 others, while the reflector watches.
    create_pods(
        &client,
        (100..150)
            .map(|i| pod("watched", &format!("p-{i:03}"), None, &[("gen", "1")]))
            .collect(),
    )
    .await;
    for i in 0..50 {
        let patch = serde_json::json!({"metadata": {"labels": {"gen": "2", "relabeled": "yes"}}});
        api.patch(
            &format!("p-{i:03}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("relabel");
    }
    for i in 60..90 {
        api.delete(
            &format!("p-{i:03}"),
            &DeleteParams::default().grace_period(0),
        )
        .await
        .expect("delete");
    }

    let state = converged(&client, &cache, Duration::from_secs(30)).await;
    assert_eq!(state.len(), 120);
    let snap = cache.snapshot();
    let relabeled = snap
        .iter()
        .filter(|p| p.labels.get("relabeled").map(String::as_str) == Some("yes"))
        .count();
    assert_eq!(relabeled, 50);
    assert!(snap.get(&ObjectKey::new("watched", "p-075")).is_none());
    assert!(snap.get(&ObjectKey::new("watched", "p-149")).is_some());

    // The changes came through watches, not relists, and bookmarks arrived.
    until("a bookmark arrives", Duration::from_secs(20), || {
        running.reflector.stats().bookmarks > 0
    })
    .await;
    let stats = running.reflector.stats();
    assert_eq!(stats.relists, 0, "{stats:?}");
    assert!(stats.events >= 130, "{stats:?}");
    let calls = calls.lock().unwrap();
    assert!(calls.bookmarks > 0);
    assert!(calls.watches.iter().all(|o| o.allow_bookmarks));
    assert!(running.errors().is_empty(), "{:?}", running.errors());
    // The last version the reflector saw is the server's or newer (a bookmark may move it on).
    let last: u64 = running
        .reflector
        .last_sync_resource_version()
        .and_then(|rv| rv.as_u64())
        .unwrap();
    let newest = state
        .iter()
        .filter_map(|l| l.split('@').nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .max()
        .unwrap();
    assert!(last >= newest, "{last} < {newest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_version_gets_410_and_the_relist_converges() {
    let Some(mut server) = KubeApiServer::for_test("gone_relists").await else {
        return;
    };
    let client = server.client().await;
    seed(&client, "gone", 200, |_| None, &[("gen", "1")]).await;
    let cache = Arc::new(Cache::<PodInfo>::new());
    let (source, calls) = Recorded::new(pods_source(&client));
    let control = source.control();
    let running = run_synced(source, &cache, Duration::from_secs(60)).await;
    converged(&client, &cache, Duration::from_secs(30)).await;
    // One event through the watch: it is an established watch (not a "very short" one, after
    // which a reflector relists), and when it breaks the reflector re-watches from its version.
    let api: Api<Pod> = Api::namespaced(client.clone(), "gone");
    let patch = serde_json::json!({"metadata": {"labels": {"seen": "yes"}}});
    api.patch("p-199", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label");
    until(
        "the watch delivers the label",
        Duration::from_secs(30),
        || {
            cache
                .get_by_key(&ObjectKey::new("gone", "p-199"))
                .is_some_and(|p| p.labels.contains_key("seen"))
        },
    )
    .await;
    let seen = running.reflector.last_sync_resource_version().unwrap();

    // The reflector's next watch is held back while the pods change: it misses those changes.
    // Then the API server restarts on a compacted etcd: its watch cache starts afresh at
    // etcd's current revision, and no server can replay the history the reflector missed.
    let held = control.gate.write().await;
    control.cut_watches();
    until(
        "the reflector asks for a new watch",
        Duration::from_secs(10),
        || calls.lock().unwrap().watches.len() >= 2,
    )
    .await;
    for i in 0..40 {
        api.delete(
            &format!("p-{i:03}"),
            &DeleteParams::default().grace_period(0),
        )
        .await
        .expect("delete");
    }
    for i in 100..140 {
        let patch = serde_json::json!({"metadata": {"labels": {"gen": "2"}}});
        api.patch(
            &format!("p-{i:03}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("relabel");
    }
    create_pods(
        &client,
        (0..40)
            .map(|i| pod("gone", &format!("q-{i:03}"), None, &[("gen", "3")]))
            .collect(),
    )
    .await;
    assert_eq!(cache.len(), 200, "the reflector saw none of it yet");
    let compacted = server.compact_etcd().expect("compact etcd");
    assert!(compacted as u64 > seen.as_u64().unwrap());
    server.restart_apiserver().await.expect("restart");
    // The held watch goes out now, from the version the reflector last saw.
    drop(held);

    let state = converged(&client, &cache, Duration::from_secs(60)).await;
    assert_eq!(state.len(), 200);
    let snap = cache.snapshot();
    assert!(
        (0..40).all(|i| snap
            .get(&ObjectKey::new("gone", &format!("p-{i:03}")))
            .is_none()),
        "no deleted pod resurrected"
    );
    assert!(
        (0..40).all(|i| snap
            .get(&ObjectKey::new("gone", &format!("q-{i:03}")))
            .is_some()),
        "no created pod lost"
    );
    assert_eq!(
        snap.iter().filter(|p| p.labels["gen"] == "2").count(),
        40,
        "every relabel seen"
    );
    let errors = running.errors();
    assert!(
        errors
            .iter()
            .any(|e| e.source_kind() == Some(SourceErrorKind::Expired)),
        "the server answered 410 Gone: {errors:?}"
    );
    assert!(running.reflector.stats().relists >= 1);
    // The held watch asked from the version the reflector had seen (a bookmark may have moved
    // it on), older than the compaction, and was refused as expired.
    let calls = calls.lock().unwrap();
    let held_from = calls.watches[1]
        .resource_version
        .as_ref()
        .and_then(ResourceVersion::as_u64)
        .unwrap();
    assert!(
        (seen.as_u64().unwrap()..compacted as u64).contains(&held_from),
        "{held_from}"
    );
    assert!(
        calls
            .errors
            .iter()
            .any(|e| e.kind == SourceErrorKind::Expired),
        "{:?}",
        calls.errors
    );
    assert!(calls.lists.len() >= 2, "{:?}", calls.lists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streaming_list_fills_the_cache_with_no_list_call() {
    // kube-apiserver's feature gate `WatchList` (beta, on by default since 1.34) serves
    // `sendInitialEvents=true`.
    let Some(server) = KubeApiServer::for_test_with(
        "streaming_list",
        Options::new().feature_gate("WatchList", true),
    )
    .await
    else {
        return;
    };
    let client = server.client().await;
    seed(
        &client,
        "streamed",
        300,
        |i| Some(format!("n-{}", i % 3)),
        &[],
    )
    .await;
    let cache = Arc::new(Cache::<PodInfo>::new());
    let (source, calls) = Recorded::new(pods_source(&client).streaming_list(true));
    let running = run_synced(source, &cache, Duration::from_secs(60)).await;
    // Synced means the bookmark that ends the initial events arrived: everything is there.
    assert_eq!(cache.len(), 300);
    assert_eq!(cache.by(PodInfo::NODE, "n-1").len(), 100);
    create_pods(&client, vec![pod("streamed", "late", None, &[])]).await;
    let state = converged(&client, &cache, Duration::from_secs(30)).await;
    assert_eq!(state.len(), 301);

    let calls = calls.lock().unwrap();
    assert!(
        calls.lists.is_empty(),
        "no list at all: {:?}, errors {:?}",
        calls.lists,
        calls.errors
    );
    assert!(calls.watches[0].send_initial_events);
    assert!(calls.bookmarks >= 1, "the initial-events-end bookmark");
    assert!(running.errors().is_empty(), "{:?}", running.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_watch_list_gate_off_the_streaming_list_falls_back_to_list_and_watch() {
    let Some(server) = KubeApiServer::for_test_with(
        "streaming_list_fallback",
        Options::new().feature_gate("WatchList", false),
    )
    .await
    else {
        return;
    };
    let client = server.client().await;
    seed(&client, "listed", 300, |_| None, &[]).await;
    let cache = Arc::new(Cache::<PodInfo>::new());
    let lw = pods_source(&client).streaming_list(true);
    let (source, calls) = Recorded::new(lw.clone());
    let running = run_synced(source, &cache, Duration::from_secs(60)).await;
    create_pods(&client, vec![pod("listed", "late", None, &[])]).await;
    let state = converged(&client, &cache, Duration::from_secs(30)).await;
    assert_eq!(state.len(), 301);

    let calls = calls.lock().unwrap();
    assert!(calls.watches[0].send_initial_events, "it tried first");
    assert!(!calls.lists.is_empty(), "then listed");
    assert!(
        calls.watches[1..].iter().all(|o| !o.send_initial_events),
        "and never tried again: {:?}",
        calls.watches
    );
    assert!(!ListerWatcher::<PodInfo>::supports_watch_list(&lw));
    // The refusal, as the source returned it to the reflector.
    let refusal = calls
        .errors
        .first()
        .expect("the server refused the streaming list");
    assert_eq!(refusal.kind, SourceErrorKind::Other, "{refusal:?}");
    assert!(refusal.message.contains("sendInitialEvents"), "{refusal:?}");
    assert!(running.errors().is_empty(), "{:?}", running.errors());
}

/// A custom resource, derived by kube; the server stores its `spec` as it comes
/// (`x-kubernetes-preserve-unknown-fields`), so it accepts specs this type cannot decode.
#[derive(kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug)]
#[kube(
    group = "example.typed-cache.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    schema = "disabled"
)]
struct WidgetSpec {
    size: u32,
    color: String,
}

/// The compact type the cache keeps of a `Widget`.
#[derive(Debug, Indexed)]
struct WidgetInfo {
    #[key(namespace)]
    namespace: String,
    #[key(name)]
    name: String,
    #[resource_version]
    rv: ResourceVersion,
    #[index]
    color: String,
    size: u32,
}

impl WidgetInfo {
    fn from_widget(w: Widget) -> Result<Self, &'static str> {
        let key = object_key(&w).ok_or("no name")?;
        Ok(Self {
            namespace: key.namespace().unwrap_or_default().to_owned(),
            name: key.name().to_owned(),
            rv: resource_version(&w).ok_or("no resourceVersion")?,
            color: w.spec.color,
            size: w.spec.size,
        })
    }
}

async fn register_widget_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.typed-cache.dev"},
        "spec": {
            "group": "example.typed-cache.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
                }}
            }]
        }
    }))
    .unwrap();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("create the CRD");
    // Established, and served: a list answers.
    let widgets: Api<Widget> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while widgets.list(&ListParams::default()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CRD is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a widget from raw JSON, as any client could (the server checks no schema in `spec`).
async fn put_widget(client: &Client, namespace: &str, name: &str, spec: serde_json::Value) {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &kube::api::ApiResource::erase::<Widget>(&()),
    );
    let object: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "example.typed-cache.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .unwrap();
    api.patch(
        name,
        &PatchParams::apply("typed-cache-test").force(),
        &Patch::Apply(&object),
    )
    .await
    .expect("apply widget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_resource_that_does_not_decode_is_reported_and_skipped() {
    let Some(server) = KubeApiServer::for_test("crd").await else {
        return;
    };
    let client = server.client().await;
    register_widget_crd(&client).await;
    create_namespaces(&client, ["shop".to_owned()]).await;
    let colors = ["red", "green", "blue"];
    for i in 0..9 {
        put_widget(
            &client,
            "shop",
            &format!("w-{i}"),
            serde_json::json!({"size": i, "color": colors[i % 3]}),
        )
        .await;
    }
    // The server accepts it; our `WidgetSpec` cannot decode a size of "large".
    put_widget(
        &client,
        "shop",
        "w-bad",
        serde_json::json!({"size": "large", "color": "red"}),
    )
    .await;

    let cache = Arc::new(Cache::<WidgetInfo>::new());
    let source =
        KubeListWatch::new(Api::<Widget>::all(client.clone())).map(WidgetInfo::from_widget);
    let running = run_synced(source, &cache, Duration::from_secs(60)).await;
    let decode_errors = |errors: &[ReflectorError]| -> Vec<String> {
        errors
            .iter()
            .filter_map(|e| match e {
                ReflectorError::Decode(s) => s.object.clone(),
                _ => None,
            })
            .collect()
    };
    // The first list asks for resourceVersion "0", which the server may answer from its watch
    // cache; for a resource whose definition was created a moment ago that cache can lag the
    // writes above, and the watch then brings the rest. Wait for it, as client-go users do.
    until(
        "the nine good widgets are cached and the bad one reported",
        Duration::from_secs(30),
        || cache.len() >= 9 && !decode_errors(&running.errors()).is_empty(),
    )
    .await;
    assert_eq!(cache.len(), 9, "the nine good widgets, not the bad one");
    assert_eq!(cache.by(WidgetInfo::COLOR, "red").len(), 3);
    assert_eq!(decode_errors(&running.errors()), ["shop/w-bad"]);

    // The watch goes on: a new widget arrives, a good one turns bad (its cached version stays),
    // the bad one is fixed (it arrives).
    put_widget(
        &client,
        "shop",
        "w-new",
        serde_json::json!({"size": 10, "color": "red"}),
    )
    .await;
    put_widget(
        &client,
        "shop",
        "w-0",
        serde_json::json!({"size": "huge", "color": "red"}),
    )
    .await;
    put_widget(
        &client,
        "shop",
        "w-bad",
        serde_json::json!({"size": 3, "color": "blue"}),
    )
    .await;
    until(
        "the watch delivers the fixed widget",
        Duration::from_secs(30),
        || cache.get_by_key(&ObjectKey::new("shop", "w-bad")).is_some(),
    )
    .await;
    assert_eq!(cache.len(), 11);
    let w0 = cache.get_by_key(&ObjectKey::new("shop", "w-0")).unwrap();
    assert_eq!(
        (w0.size, w0.color.as_str()),
        (0, "red"),
        "the last good version"
    );
    assert_eq!(
        cache
            .get_by_key(&ObjectKey::new("shop", "w-bad"))
            .unwrap()
            .size,
        3
    );
    assert_eq!(cache.by(WidgetInfo::COLOR, "red").len(), 4);
    assert_eq!(
        decode_errors(&running.errors()),
        ["shop/w-bad", "shop/w-0"],
        "each undecodable object reported once, by name"
    );

    // The server holds all eleven, w-0 with the spec the cache could not take.
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "shop",
        &kube::api::ApiResource::erase::<Widget>(&()),
    );
    let on_server = raw.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(on_server.len(), 11);
    let w0 = on_server
        .iter()
        .find(|o| o.metadata.name.as_deref() == Some("w-0"))
        .unwrap();
    assert_eq!(w0.data["spec"]["size"], "huge");
    assert_eq!(running.reflector.stats().relists, 0);
}
