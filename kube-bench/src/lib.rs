//! The shared parts of the Kubernetes benchmarks: the recorded stream of pods, a server that
//! replays it over HTTP the way an API server serves it, and the two sides being compared:
//! our reflector filling a `Cache`, and kube-runtime's watcher + reflector filling its `Store`.
//!
//! The pods are made from a recorded Pod (`cache-kube/tests/fixtures/list-page-1.json`), with
//! its managed fields, status and volumes: each gets its own name, namespace (100), node
//! (1,000), owning ReplicaSet (one per 10 pods), uid, IP and resource version.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_core::reflector::Reflector;
use cache_core::{Cache, Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion};
use cache_kube::{KubeListWatch, KubeObject, object_key, resource_version};
use futures::StreamExt;
use http_body_util::StreamBody;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Frame;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The number of pods: 100,000, or `KUBE_BENCH_PODS` for a quick run.
pub fn pod_count() -> usize {
    std::env::var("KUBE_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Pods per list page: client-go's and kube-runtime's default page size.
pub const PAGE: usize = 500;
/// Distinct nodes.
pub const NODES: usize = 1_000;
/// Distinct namespaces.
pub const NAMESPACES: usize = 100;
/// Pods per owning ReplicaSet.
pub const PODS_PER_OWNER: usize = 10;

/// The recorded Pod every benchmark pod is made from.
pub fn template_pod() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cache-kube/tests/fixtures/list-page-1.json"
    );
    let list: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    list["items"][1].clone()
}

/// The node pod `i` runs on.
pub fn node_of(i: usize) -> String {
    format!("node-{:04}", i % NODES)
}

/// The namespace and name of pod `i`.
pub fn name_of(i: usize) -> (String, String) {
    let rs = i / PODS_PER_OWNER;
    (
        format!("ns-{:03}", rs % NAMESPACES),
        format!("app-{rs:05}-7d4b9c8f6d-{i:06}"),
    )
}

/// The owning ReplicaSet of pod `i`.
pub fn owner_of(i: usize) -> String {
    format!("app-{:05}-7d4b9c8f6d", i / PODS_PER_OWNER)
}

/// Pod `i` at resource version `rv`, as the API server serializes it.
pub fn pod_json(template: &Value, i: usize, rv: u64) -> Value {
    let mut p = template.clone();
    let (ns, name) = name_of(i);
    let rs = owner_of(i);
    let m = &mut p["metadata"];
    m["name"] = name.clone().into();
    m["generateName"] = format!("{rs}-").into();
    m["namespace"] = ns.into();
    m["uid"] = format!("00000000-0000-4000-8000-{i:012}").into();
    m["resourceVersion"] = rv.to_string().into();
    m["labels"]["app"] = format!("app-{:05}", i / PODS_PER_OWNER).into();
    m["ownerReferences"][0]["name"] = rs.into();
    m["ownerReferences"][0]["uid"] =
        format!("00000000-0000-4000-9000-{:012}", i / PODS_PER_OWNER).into();
    p["spec"]["nodeName"] = node_of(i).into();
    p["spec"]["containers"][0]["name"] = "app".into();
    let ip = format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256);
    p["status"]["podIP"] = ip.clone().into();
    p["status"]["podIPs"][0]["ip"] = ip.into();
    p["status"]["containerStatuses"][0]["containerID"] = format!("containerd://{i:064x}").into();
    p
}

/// The recorded list, rendered as the pages the server sends.
pub struct Recording {
    /// Page `i` holds pods `i * PAGE ..`.
    pub pages: Vec<Bytes>,
    /// The collection's version.
    pub resource_version: u64,
    /// Pods in it.
    pub pods: usize,
    /// Bytes of JSON in all pages.
    pub bytes: usize,
}

impl Recording {
    /// Records `n` pods.
    pub fn new(n: usize) -> Self {
        let template = template_pod();
        let pages_n = n.div_ceil(PAGE);
        let resource_version = n as u64 + 1000;
        let mut pages = Vec::with_capacity(pages_n);
        let mut bytes = 0;
        for page in 0..pages_n {
            let items: Vec<String> = (page * PAGE..((page + 1) * PAGE).min(n))
                .map(|i| pod_json(&template, i, 1000 + i as u64).to_string())
                .collect();
            let cont = if page + 1 < pages_n {
                format!(",\"continue\":\"{}\"", page + 1)
            } else {
                String::new()
            };
            let body = format!(
                "{{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{{\"resourceVersion\":\"{resource_version}\"{cont}}},\"items\":[{}]}}",
                items.join(",")
            );
            bytes += body.len();
            pages.push(Bytes::from(body));
        }
        Self {
            pages,
            resource_version,
            pods: n,
            bytes,
        }
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn response(status: u16, body: Body) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

/// Replays a [`Recording`] over HTTP on 127.0.0.1: list pages by continue token (the page
/// number), and watches that stay open and silent until the server is dropped.
pub struct ReplayServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ReplayServer {
    /// Starts serving `recording`.
    pub async fn start(recording: Arc<Recording>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => return },
                    () = stopped.cancelled() => return,
                };
                let recording = recording.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    let for_bodies = stopped.clone();
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        let recording = recording.clone();
                        let stopped = for_bodies.clone();
                        async move { Ok::<_, Infallible>(serve(&recording, &stopped, &req)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        () = stopped.cancelled() => {}
                    }
                });
            }
        });
        Self { addr, stop }
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        config.default_retry = false;
        kube::Client::try_from(config).unwrap()
    }
}

fn serve(
    recording: &Recording,
    stop: &CancellationToken,
    req: &http::Request<hyper::body::Incoming>,
) -> http::Response<Body> {
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if query.get("watch").map(String::as_str) == Some("true") {
        let stop = stop.clone().cancelled_owned();
        let body = futures::stream::pending::<Result<Frame<Bytes>, Infallible>>().take_until(stop);
        return response(200, UnsyncBoxBody::new(StreamBody::new(body)));
    }
    let page: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = recording.pages.get(page).cloned().unwrap_or_default();
    response(
        200,
        UnsyncBoxBody::new(StreamBody::new(futures::stream::iter([Ok(Frame::data(
            body,
        ))]))),
    )
}

/// A pod as a controller keeps it: what it reads, and nothing else.
#[derive(Debug, Clone)]
pub struct SlimPod {
    /// `namespace/name`.
    pub key: ObjectKey,
    /// The resource version.
    pub rv: Option<ResourceVersion>,
    /// The labels.
    pub labels: BTreeMap<String, String>,
    /// The node it runs on.
    pub node: Option<String>,
    /// The controller that owns it.
    pub owner: Option<String>,
    /// The phase.
    pub phase: Option<String>,
    /// The pod IP.
    pub ip: Option<String>,
}

impl Object for SlimPod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        self.key.clone()
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.rv.clone()
    }
}

impl SlimPod {
    /// The transform: a whole Pod in, a compact one out.
    pub fn from_pod(pod: Pod) -> Result<Self, &'static str> {
        let key = object_key(&pod).ok_or("no name")?;
        let rv = resource_version(&pod);
        let meta = pod.metadata;
        let status = pod.status.unwrap_or_default();
        Ok(Self {
            key,
            rv,
            labels: meta.labels.unwrap_or_default(),
            node: pod.spec.and_then(|s| s.node_name),
            owner: meta
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .find(|o| o.controller == Some(true))
                .map(|o| o.name),
            phase: status.phase,
            ip: status.pod_ip,
        })
    }
}

/// The node index.
pub const NODE: Index<SlimPod, String> = Index::new("node");
/// The owner index.
pub const OWNER: Index<SlimPod, String> = Index::new("owner");
/// The namespace index.
pub const NAMESPACE: Index<SlimPod, String> = Index::new("namespace");

/// Our cache of compact pods, indexed by node, owner and namespace.
pub fn slim_cache() -> Cache<SlimPod> {
    Cache::with_indexers(
        Indexers::new()
            .with(Indexer::for_index(NODE, |p: &SlimPod| p.node.clone()))
            .with(Indexer::for_index(OWNER, |p: &SlimPod| p.owner.clone()))
            .with(Indexer::for_index(NAMESPACE, |p: &SlimPod| {
                p.key.namespace().map(str::to_owned)
            })),
    )
}

/// Stops a running reflector or watcher when dropped.
pub struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the reflector or watcher and waits until its task (and what it owns, such as
    /// kube-runtime's `Writer`) is gone.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

async fn run_ours<T: Object>(
    source: impl cache_core::source::ListerWatcher<T>,
    cache: Arc<Cache<T>>,
) -> Running {
    let reflector = Reflector::builder(source, cache)
        .page_size(PAGE as u32)
        .build();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let reflector = reflector.clone();
        let stop = stop.clone();
        async move { reflector.run(stop).await }
    });
    reflector.wait_for_sync().await;
    Running { stop, task }
}

/// Ours: the reflector fills a `Cache<SlimPod>` (transform + 3 indexes). Returns once synced.
pub async fn sync_ours_slim(client: kube::Client) -> (Arc<Cache<SlimPod>>, Running) {
    let cache = Arc::new(slim_cache());
    let source = KubeListWatch::new(Api::<Pod>::all(client)).map(SlimPod::from_pod);
    let running = run_ours(source, cache.clone()).await;
    (cache, running)
}

/// Ours: the reflector fills a `Cache<KubeObject<Pod>>` with whole pods and no index.
pub async fn sync_ours_whole(client: kube::Client) -> (Arc<Cache<KubeObject<Pod>>>, Running) {
    let cache = Arc::new(Cache::with_indexers(Indexers::new()));
    let source = KubeListWatch::new(Api::<Pod>::all(client));
    let running = run_ours(source, cache.clone()).await;
    (cache, running)
}

/// kube-runtime: `watcher` + `reflector` fill a `Store<Pod>`; with `strip`, managed fields are
/// dropped first (`.modify()`, the memory advice of kube-runtime's docs). Returns once ready.
pub async fn sync_kube_runtime(client: kube::Client, strip: bool) -> (Store<Pod>, Running) {
    let (reader, writer) = reflector::store::<Pod>();
    let config = watcher::Config::default().page_size(PAGE as u32);
    let stop = CancellationToken::new();
    let stream = watcher(Api::<Pod>::all(client), config);
    let task = if strip {
        let stream = stream
            .modify(|p| p.metadata.managed_fields = None)
            .reflect(writer);
        tokio::spawn(drive(stream, stop.clone()))
    } else {
        tokio::spawn(drive(stream.reflect(writer), stop.clone()))
    };
    tokio::time::timeout(Duration::from_secs(600), reader.wait_until_ready())
        .await
        .expect("kube-runtime synced")
        .expect("writer alive");
    (reader, Running { stop, task })
}

async fn drive<S: futures::Stream + Send>(stream: S, stop: CancellationToken) {
    let mut stream = std::pin::pin!(stream.take_until(stop.cancelled_owned()));
    while stream.next().await.is_some() {}
}

/// `n` modified pods (a new version of pods `0..n`), for write pressure.
pub fn modified_pods(n: usize, total: usize) -> Vec<Pod> {
    let template = template_pod();
    (0..n)
        .map(|i| {
            let mut v = pod_json(&template, i % total, 10_000_000 + i as u64);
            v["status"]["phase"] = if i % 2 == 0 { "Running" } else { "Pending" }.into();
            serde_json::from_value(v).unwrap()
        })
        .collect()
}
