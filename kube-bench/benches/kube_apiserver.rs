//! The peer comparison on a real kube-apiserver (and etcd), side by side in one run: the same
//! pods, the same `kube::Client`, synced by kube-runtime's watcher + reflector into its
//! `Store<Pod>` and by our reflector into a `Cache`. For each: the sync time (list in pages of
//! 500 from the API server's watch cache, until ready), the heap held once synced, a get by key
//! and the "pods on a node" query.
//!
//! It starts kube-apiserver and etcd itself (cache-kube's test harness), creates the pods
//! through the API (from the recorded Pod of the other benchmarks, with their node, namespace
//! and owner; the server sets the status of a new pod itself), then measures.
//!
//! ```sh
//! .ci/kube-apiserver   # builds kube-apiserver once (cached)
//! cargo bench --manifest-path kube-bench/Cargo.toml --bench kube_apiserver
//! KUBE_APISERVER_PODS=50000 cargo bench --manifest-path kube-bench/Cargo.toml --bench kube_apiserver
//! ```

#[path = "../../cache-kube/tests/apiserver/mod.rs"]
mod apiserver;
mod heap;

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;

use std::time::Instant;

use apiserver::KubeApiServer;
use cache_core::{Cache, ObjectKey};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube_bench::{
    NAMESPACES, NODE, NODES, Running, name_of, node_of, pod_json, sync_kube_runtime,
    sync_ours_slim, sync_ours_whole, template_pod,
};

fn pod_count() -> usize {
    std::env::var("KUBE_APISERVER_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Creates `n` pods through the API, 64 requests in flight.
async fn populate(client: &kube::Client, n: usize) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for i in 0..NAMESPACES.min(n) {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name_of(i * 10).0),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
    }
    let template = template_pod();
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let mut v = pod_json(&template, i, 0);
            let m = &mut v["metadata"];
            for field in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "managedFields",
            ] {
                m.as_object_mut().unwrap().remove(field);
            }
            let pod: Pod = serde_json::from_value(v).unwrap();
            let api: Api<Pod> =
                Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap());
            async move { api.create(&PostParams::default(), &pod).await.map(|_| ()) }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .expect("create pods");
    eprintln!("created {n} pods in {:.1} s", start.elapsed().as_secs_f64());
}

/// What one side gives the measurements.
trait Side {
    fn len(&self) -> usize;
    fn get(&self, key: &ObjectKey) -> bool;
    fn on_node(&self, node: &str) -> usize;
}

/// Ours, compact pods indexed by node.
struct Slim(Arc<Cache<kube_bench::SlimPod>>);
impl Side for Slim {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, key: &ObjectKey) -> bool {
        self.0.get_by_key(key).is_some()
    }
    fn on_node(&self, node: &str) -> usize {
        self.0.by(NODE, node).len()
    }
}

/// Ours, whole pods, no index: the node query scans a snapshot.
struct Whole(Arc<Cache<cache_kube::KubeObject<Pod>>>);
impl Side for Whole {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, key: &ObjectKey) -> bool {
        self.0.get_by_key(key).is_some()
    }
    fn on_node(&self, node: &str) -> usize {
        let snap = self.0.snapshot();
        snap.iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .count()
    }
}

/// kube-runtime's `Store<Pod>`: no index, so the node query is `state()` filtered.
struct KubeRuntime(Store<Pod>);
impl Side for KubeRuntime {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, key: &ObjectKey) -> bool {
        let r = ObjectRef::new(key.name()).within(key.namespace().unwrap_or_default());
        self.0.get(&r).is_some()
    }
    fn on_node(&self, node: &str) -> usize {
        self.0
            .state()
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .count()
    }
}

async fn measure<S: Side, F>(
    name: &str,
    client: &kube::Client,
    n: usize,
    sync: impl FnOnce(kube::Client) -> F,
) where
    F: Future<Output = (S, Running)>,
{
    let heap::Synced {
        store: side,
        running,
        took,
        held,
        peak,
    } = heap::measure_sync(100, sync(client.clone())).await;
    assert_eq!(side.len(), n, "{name} synced every pod");

    // Gets: every 7th pod, in a loop of at least 200,000 gets.
    let keys: Vec<ObjectKey> = (0..n)
        .step_by(7)
        .map(|i| {
            let (ns, name) = name_of(i);
            ObjectKey::new(&ns, &name)
        })
        .collect();
    let rounds = 200_000usize.div_ceil(keys.len());
    let t = Instant::now();
    for _ in 0..rounds {
        for k in &keys {
            assert!(black_box(side.get(black_box(k))));
        }
    }
    let get_ns = t.elapsed().as_nanos() as f64 / (rounds * keys.len()) as f64;

    // Pods on a node: 200 nodes (a scan per query where there is no index).
    let nodes: Vec<String> = (0..200).map(|i| node_of(i * (NODES / 200))).collect();
    let t = Instant::now();
    let mut found = 0;
    for node in &nodes {
        found += black_box(side.on_node(black_box(node)));
    }
    let by_node_us = t.elapsed().as_secs_f64() * 1e6 / nodes.len() as f64;
    if n.is_multiple_of(NODES) {
        assert_eq!(
            found,
            nodes.len() * (n / NODES),
            "{name}: pods on the nodes"
        );
    }

    println!(
        "| {name} | {n} | {:.2} s | {:.1} MiB | {:.0} B | {:.1} MiB | {get_ns:.0} ns | {by_node_us:.1} µs |",
        took.as_secs_f64(),
        heap::mib(held),
        held as f64 / n as f64,
        heap::mib(peak),
    );
    running.stop().await;
    drop(side);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n = pod_count();
    rt.block_on(async {
        let started = Instant::now();
        let server = KubeApiServer::for_test_with(
            "kube_apiserver benchmark",
            apiserver::Options::new(),
        )
        .await
        .expect("kube-apiserver is built (.ci/kube-apiserver)");
        eprintln!(
            "etcd and kube-apiserver ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let client = server.client().await;
        populate(&client, n).await;
        let version = client.apiserver_version().await.expect("/version");
        println!(
            "kube-apiserver {} (real apiserver, etcd on loopback), {n} pods; one kube::Client\n",
            version.git_version
        );
        println!(
            "| cache | objects | sync time | held after sync | per object | peak during sync | get | pods on a node |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        measure(
            "kube-runtime `Store<Pod>`",
            &client,
            n,
            |c| async move {
                let (s, r) = sync_kube_runtime(c, false).await;
                (KubeRuntime(s), r)
            },
        )
        .await;
        measure(
            "kube-runtime `Store<Pod>`, managed fields dropped",
            &client,
            n,
            |c| async move {
                let (s, r) = sync_kube_runtime(c, true).await;
                (KubeRuntime(s), r)
            },
        )
        .await;
        measure(
            "ours `Cache<KubeObject<Pod>>` (whole pods, no index)",
            &client,
            n,
            |c| async move {
                let (s, r) = sync_ours_whole(c).await;
                (Whole(s), r)
            },
        )
        .await;
        measure(
            "ours `Cache<SlimPod>` (transform, 3 indexes)",
            &client,
            n,
            |c| async move {
                let (s, r) = sync_ours_slim(c).await;
                (Slim(s), r)
            },
        )
        .await;
        drop(server);
    });
}
