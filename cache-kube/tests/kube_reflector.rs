//! The reflector over `KubeListWatch`, against recorded API server responses served over HTTP:
//! the requests it sends, and the cache it ends with.

mod running;
mod support;

use std::sync::Arc;
use std::time::Duration;

use cache_core::reflector::{BackoffOptions, Reflector, ReflectorError};
use cache_core::source::SourceErrorKind;
use cache_core::{Cache, Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion};
use cache_kube::{KubeListWatch, KubeObject, object_key, resource_version};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use running::Running;
use support::{ApiServer, Reply, Seen, within};
use tokio_util::sync::CancellationToken;

/// A compact pod: what the cache keeps.
#[derive(Debug)]
struct PodInfo {
    key: ObjectKey,
    rv: Option<ResourceVersion>,
    node: Option<String>,
    ready: bool,
}

impl Object for PodInfo {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        self.key.clone()
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.rv.clone()
    }
}

impl PodInfo {
    fn from_pod(pod: Pod) -> Result<Self, &'static str> {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Ok(Self {
            key: object_key(&pod).ok_or("no name")?,
            rv: resource_version(&pod),
            node: pod.spec.and_then(|s| s.node_name),
            ready,
        })
    }
}

const NODE: Index<PodInfo, String> = Index::new("node");

fn cache() -> Arc<Cache<PodInfo>> {
    Arc::new(Cache::with_indexers(
        Indexers::new().with(Indexer::for_index(NODE, |p: &PodInfo| p.node.clone())),
    ))
}

fn start(source: KubeListWatch<Pod, PodInfo>, cache: &Arc<Cache<PodInfo>>) -> Running<PodInfo> {
    // Real time, real sockets: keep the backoff short.
    let backoff = BackoffOptions::new(Duration::from_millis(1), 2.0, Duration::from_millis(10));
    running::run(source, cache, backoff)
}

fn source(server: &ApiServer) -> KubeListWatch<Pod, PodInfo> {
    KubeListWatch::new(Api::<Pod>::all(server.client())).map(PodInfo::from_pod)
}

/// Waits (under the hang guard) until `cond` holds.
async fn until(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// The cache as sorted "key@rv" lines.
fn contents(cache: &Cache<PodInfo>) -> Vec<String> {
    let snap = cache.snapshot();
    let mut lines: Vec<_> = snap
        .iter()
        .map(|p| format!("{}@{}", p.key, p.rv.as_ref().map_or("-", |r| r.as_str())))
        .collect();
    lines.sort();
    lines
}

/// A request in short: "LIST limit=500 resourceVersion=0" or "WATCH resourceVersion=1000 ...",
/// without `timeoutSeconds` (random), which is checked on its own.
fn short(seen: &Seen) -> String {
    let verb = if seen.is_watch() { "WATCH" } else { "LIST" };
    let params: Vec<String> = seen
        .params()
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "watch" | "timeoutSeconds" | "continue"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let cont = if seen.query.contains_key("continue") {
        " continue"
    } else {
        ""
    };
    format!("{verb}{cont} {}", params.join(" "))
        .trim_end()
        .to_owned()
}

fn watch_timeout_is_client_gos(seen: &Seen) {
    let t: u64 = seen.query["timeoutSeconds"].parse().unwrap();
    assert!((300..=600).contains(&t), "timeoutSeconds={t}");
}

#[tokio::test]
async fn lists_every_page_then_watches_and_ends_equal_to_the_server() {
    let server = ApiServer::start().await;
    server
        .on_list(Reply::fixture(200, "list-page-1.json"))
        .on_list(Reply::fixture(200, "list-page-2.json"))
        .on_watch(Reply::watch("watch-events.jsonl"));
    let cache = cache();
    let run = start(source(&server), &cache);
    within(run.reflector.wait_for_sync()).await;
    // The watch after the first one stays open: everything before it has been applied.
    until(|| server.seen().iter().filter(|s| s.is_watch()).count() == 2).await;
    until(|| run.reflector.last_sync_resource_version() == Some("1012".into())).await;

    assert_eq!(
        contents(&cache),
        [
            "default/web-7d4b9c8f6d-5hvfc@1005",
            "default/web-7d4b9c8f6d-x2k9p@951",
            "shop/api-5f6c8d9b7-lw4rn@962",
            "shop/api-5f6c8d9b7-n7c2d@977",
        ]
    );
    let snap = cache.snapshot();
    assert_eq!(snap.count_by(NODE, "kind-worker"), 2);
    assert_eq!(snap.count_by(NODE, "kind-worker2"), 1, "q8zmt was deleted");
    let added = snap
        .get(&ObjectKey::new("default", "web-7d4b9c8f6d-5hvfc"))
        .unwrap();
    assert!(added.ready, "the MODIFIED event after ADDED won");

    let seen = server.seen();
    let requests: Vec<_> = seen.iter().map(short).collect();
    assert_eq!(
        requests,
        [
            // The first list may be served from the API server's cache, in pages of 500.
            "LIST limit=500 resourceVersion=0",
            "LIST continue limit=500",
            "WATCH allowWatchBookmarks=true resourceVersion=1000",
            // The watch ended cleanly: re-watch from the bookmark, no relist.
            "WATCH allowWatchBookmarks=true resourceVersion=1012",
        ]
    );
    assert_eq!(
        seen[1].query["continue"],
        support::fixture("list-page-1.json")
            .split("\"continue\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
    );
    watch_timeout_is_client_gos(&seen[2]);
    assert!(seen.iter().all(|s| s.path == "/api/v1/pods"));
    assert!(run.errors.lock().unwrap().is_empty());
}

#[tokio::test]
async fn gone_mid_watch_relists_and_the_cache_follows_the_new_list() {
    let server = ApiServer::start().await;
    server
        .on_list(Reply::fixture(200, "list-page-2.json"))
        .on_watch(Reply::watch("watch-gone.jsonl"))
        // The relist: the collection moved on to 1017 and now holds the first page's pods.
        .on_list(Reply::Json(
            200,
            support::fixture("list-page-1.json").replace(
                "\"resourceVersion\":\"1000\",\"continue\"",
                "\"resourceVersion\":\"1017\",\"x\"",
            ),
        ));
    let cache = cache();
    let run = start(source(&server), &cache);
    until(|| server.seen().iter().filter(|s| s.is_watch()).count() == 2).await;

    assert_eq!(
        contents(&cache),
        [
            "default/web-7d4b9c8f6d-q8zmt@957",
            "default/web-7d4b9c8f6d-x2k9p@951",
            "shop/api-5f6c8d9b7-lw4rn@962",
        ],
        "n7c2d, gone from the relist, is gone from the cache"
    );
    let requests: Vec<_> = server.seen().iter().map(short).collect();
    assert_eq!(
        requests,
        [
            "LIST limit=500 resourceVersion=0",
            "WATCH allowWatchBookmarks=true resourceVersion=1000",
            // Relist at the last version seen (the MODIFIED event's), not older.
            "LIST resourceVersion=1004",
            "WATCH allowWatchBookmarks=true resourceVersion=1017",
        ]
    );
    let errors = run.errors.lock().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.source_kind() == Some(SourceErrorKind::Expired)),
        "{errors:?}"
    );
}

#[tokio::test]
async fn too_many_requests_rewatches_without_a_relist() {
    let server = ApiServer::start().await;
    server
        .on_list(Reply::fixture(200, "list-page-2.json"))
        .on_watch(Reply::fixture(429, "status-429.json"))
        .on_watch(Reply::watch("watch-gone.jsonl").first_line());
    let cache = cache();
    let run = start(source(&server), &cache);
    until(|| server.seen().iter().filter(|s| s.is_watch()).count() == 3).await;

    let requests: Vec<_> = server.seen().iter().map(short).collect();
    assert_eq!(
        requests,
        [
            "LIST limit=500 resourceVersion=0",
            "WATCH allowWatchBookmarks=true resourceVersion=1000",
            "WATCH allowWatchBookmarks=true resourceVersion=1000",
            "WATCH allowWatchBookmarks=true resourceVersion=1004",
        ]
    );
    assert_eq!(
        contents(&cache),
        [
            "shop/api-5f6c8d9b7-lw4rn@1004",
            "shop/api-5f6c8d9b7-n7c2d@977"
        ]
    );
    assert_eq!(
        run.errors.lock().unwrap()[0].source_kind(),
        Some(SourceErrorKind::TooManyRequests)
    );
}

#[tokio::test]
async fn too_large_resource_version_relists_from_the_latest() {
    let server = ApiServer::start().await;
    server
        .on_list(Reply::fixture(504, "status-504-too-large-rv.json"))
        .on_list(Reply::fixture(200, "list-page-2.json"));
    let cache = cache();
    let run = start(source(&server), &cache);
    within(run.reflector.wait_for_sync()).await;
    until(|| server.seen().iter().any(Seen::is_watch)).await;
    let requests: Vec<_> = server.seen().iter().map(short).collect();
    assert_eq!(
        requests,
        [
            "LIST limit=500 resourceVersion=0",
            // A quorum read: no version at all.
            "LIST limit=500",
            "WATCH allowWatchBookmarks=true resourceVersion=1000",
        ]
    );
    assert_eq!(contents(&cache), ["shop/api-5f6c8d9b7-n7c2d@977"]);
}

#[tokio::test]
async fn streaming_initial_list_fills_the_cache_without_a_list() {
    let server = ApiServer::start().await;
    server.on_watch(Reply::watch("watch-list.jsonl"));
    let cache = cache();
    let run = start(source(&server).streaming_list(true), &cache);
    within(run.reflector.wait_for_sync()).await;
    until(|| run.reflector.last_sync_resource_version() == Some("1002".into())).await;

    assert_eq!(
        contents(&cache),
        [
            "default/web-7d4b9c8f6d-x2k9p@951",
            "shop/api-5f6c8d9b7-lw4rn@962",
            "shop/api-5f6c8d9b7-n7c2d@1002",
        ]
    );
    let n7c2d = cache
        .get_by_key(&ObjectKey::new("shop", "api-5f6c8d9b7-n7c2d"))
        .unwrap();
    assert!(!n7c2d.ready, "the live event after the bookmark applied");
    let seen = server.seen();
    assert!(seen.iter().all(Seen::is_watch), "no list at all");
    assert_eq!(
        short(&seen[0]),
        "WATCH allowWatchBookmarks=true resourceVersionMatch=NotOlderThan sendInitialEvents=true"
    );
    watch_timeout_is_client_gos(&seen[0]);
}

#[tokio::test]
async fn a_server_without_the_streaming_list_falls_back_to_list_and_watch() {
    let server = ApiServer::start().await;
    server
        .on_watch(Reply::fixture(422, "status-422-watch-list.json"))
        .on_list(Reply::fixture(200, "list-page-2.json"));
    let cache = cache();
    let lw = source(&server).streaming_list(true);
    let run = start(lw.clone(), &cache);
    within(run.reflector.wait_for_sync()).await;
    until(|| server.seen().len() == 3).await;
    let requests: Vec<_> = server.seen().iter().map(short).collect();
    assert_eq!(
        requests,
        [
            "WATCH allowWatchBookmarks=true resourceVersionMatch=NotOlderThan sendInitialEvents=true",
            "LIST limit=500 resourceVersion=0",
            "WATCH allowWatchBookmarks=true resourceVersion=1000",
        ]
    );
    assert_eq!(contents(&cache), ["shop/api-5f6c8d9b7-n7c2d@977"]);
    assert!(
        !cache_core::source::ListerWatcher::<PodInfo>::supports_watch_list(&lw),
        "later relists go straight to a list"
    );
}

#[tokio::test]
async fn a_bad_object_is_reported_and_the_rest_is_cached() {
    let server = ApiServer::start().await;
    server
        .on_list(Reply::fixture(200, "list-page-1.json"))
        .on_list(Reply::fixture(200, "list-page-2.json"))
        .on_watch(Reply::watch("watch-bad-object.jsonl"));
    let cache = cache();
    let run = start(source(&server), &cache);
    until(|| server.seen().iter().filter(|s| s.is_watch()).count() == 2).await;
    assert_eq!(
        contents(&cache),
        [
            "default/web-7d4b9c8f6d-5hvfc@1001",
            "default/web-7d4b9c8f6d-q8zmt@957",
            "shop/api-5f6c8d9b7-lw4rn@962",
            // The undecodable MODIFIED left the cached version in place.
            "shop/api-5f6c8d9b7-n7c2d@977",
        ]
    );
    let errors = run.errors.lock().unwrap();
    let decode = errors
        .iter()
        .filter_map(ReflectorError::source_error)
        .find(|e| e.kind == SourceErrorKind::Decode)
        .expect("the bad object is reported");
    assert_eq!(decode.object.as_deref(), Some("shop/api-5f6c8d9b7-n7c2d"));
}

#[tokio::test]
async fn whole_objects_through_the_reflector() {
    let server = ApiServer::start().await;
    server.on_list(Reply::fixture(200, "list-page-2.json"));
    let cache: Arc<Cache<KubeObject<Pod>>> = Arc::new(Cache::with_indexers(Indexers::new()));
    let reflector = Reflector::new(
        KubeListWatch::new(Api::<Pod>::all(server.client())),
        cache.clone(),
    );
    let stop = CancellationToken::new();
    tokio::spawn({
        let (reflector, stop) = (reflector.clone(), stop.clone());
        async move { reflector.run(stop).await }
    });
    within(reflector.wait_for_sync()).await;
    let pod = cache
        .get_by_key(&ObjectKey::new("shop", "api-5f6c8d9b7-n7c2d"))
        .unwrap();
    assert_eq!(
        pod.status.as_ref().unwrap().pod_ip.as_deref(),
        Some("10.244.3.4")
    );
    stop.cancel();
}
