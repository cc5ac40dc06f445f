//! The etcd source against a real etcd (started here on loopback):
//!
//! - `etcd_sync/*`: the time to sync 100,000 keys with 1 KB JSON values into an indexed
//!   `Cache` (list at one revision, decode, replace), beside `etcdctl get --prefix` fetching the
//!   same keys (output to /dev/null), in the same run;
//! - `etcd_watch/*`: watch throughput into the `Cache`: live (a writer updates 10,000 keys in
//!   transactions of 128 while the watch applies them) and replayed (a watch from an old
//!   revision delivers 10,000 past updates as fast as etcd sends them); each with etcd's
//!   previous values (the default) and without (`_no_prev_kv`).
//!
//! `cargo bench -p cache-etcd --bench etcd`. `ETCD_BENCH_KEYS` changes the 100,000.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::source::{ListOptions, ListerWatcher, WatchEvent};
use cache_core::{Cache, Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion};
use cache_etcd::etcd_client::Client;
use cache_etcd::{EtcdListWatch, EtcdObject, Meta};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use harness::{Etcd, put_all};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Pod {
    namespace: String,
    name: String,
    node: String,
    labels: Vec<String>,
    payload: String,
    #[serde(skip)]
    revision: u64,
}

impl Object for Pod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        Some(self.revision.into())
    }
}

impl EtcdObject for Pod {
    fn set_meta(&mut self, meta: &Meta<'_>) {
        self.revision = meta.mod_revision;
    }
}

const NAMESPACE: Index<Pod, String> = Index::new("namespace");
const NODE: Index<Pod, String> = Index::new("node");

fn cache() -> Cache<Pod> {
    Cache::with_indexers(
        Indexers::new()
            .with(Indexer::for_index(NAMESPACE, |p: &Pod| {
                [p.namespace.clone()]
            }))
            .with(Indexer::for_index(NODE, |p: &Pod| [p.node.clone()])),
    )
}

/// A pod whose JSON is about 1 KB; 100 namespaces, 1,000 nodes.
fn pod_json(i: usize, generation: usize) -> Vec<u8> {
    let mut pod = Pod {
        namespace: format!("ns-{}", i % 100),
        name: format!("pod-{i:06}"),
        node: format!("node-{}", (i + generation) % 1000),
        labels: vec![format!("app=app-{}", i % 50), format!("tier=t{}", i % 3)],
        payload: String::new(),
        revision: 0,
    };
    let base = serde_json::to_vec(&pod).unwrap().len();
    pod.payload = "x".repeat(1024usize.saturating_sub(base));
    serde_json::to_vec(&pod).unwrap()
}

fn pod_key(prefix: &str, i: usize) -> String {
    format!("{prefix}ns-{}/pod-{i:06}", i % 100)
}

async fn fill(client: &mut Client, prefix: &str, n: usize, generation: usize) -> i64 {
    // Four writers at once: the load is not what is measured.
    let chunk = n.div_ceil(4);
    let writers = (0..4).map(|w| {
        let mut client = client.clone();
        let prefix = prefix.to_owned();
        async move {
            let range = w * chunk..((w + 1) * chunk).min(n);
            put_all(
                &mut client,
                range.map(|i| (pod_key(&prefix, i), pod_json(i, generation))),
            )
            .await
        }
    });
    futures::future::join_all(writers)
        .await
        .into_iter()
        .max()
        .unwrap_or(0)
}

fn bench_sync(c: &mut Criterion, rt: &tokio::runtime::Runtime, etcd: &Etcd, client: &Client) {
    let n: usize = std::env::var("ETCD_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let prefix = "/bench/sync/";
    rt.block_on(fill(&mut client.clone(), prefix, n, 0));
    let source = EtcdListWatch::<Pod>::new(client.clone(), prefix);

    let mut group = c.benchmark_group("etcd_sync");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("cache_etcd_list_into_cache_default/{n}"), |b| {
        b.to_async(rt).iter(|| async {
            let list = source.list(ListOptions::default()).await.unwrap();
            assert_eq!(list.items.len(), n);
            let cache = cache();
            cache.replace(list.items, list.resource_version).unwrap();
            black_box(cache)
        });
    });
    for page in [500u32, 1000, 5000] {
        let source = EtcdListWatch::<Pod>::new(client.clone(), prefix).with_page_size(page);
        group.bench_function(format!("cache_etcd_list_into_cache_page{page}/{n}"), |b| {
            b.to_async(rt).iter(|| async {
                let list = source.list(ListOptions::default()).await.unwrap();
                assert_eq!(list.items.len(), n);
                let cache = cache();
                cache.replace(list.items, list.resource_version).unwrap();
                black_box(cache)
            });
        });
    }
    let endpoint = etcd.endpoint(0);
    group.bench_function(format!("etcdctl_get_prefix/{n}"), |b| {
        b.iter(|| {
            let status = Command::new("etcdctl")
                .args(["--endpoints", &endpoint, "get", "--prefix", prefix])
                .env("ETCDCTL_API", "3")
                .stdout(Stdio::null())
                .status()
                .expect("etcdctl (Debian's etcd-client)");
            assert!(status.success());
        });
    });
    group.finish();
}

fn apply(cache: &Cache<Pod>, event: WatchEvent<Pod>) -> bool {
    match event {
        WatchEvent::Added(p) | WatchEvent::Modified(p) => cache.update(p).is_ok(),
        WatchEvent::Deleted(p) => cache.delete(p).is_ok(),
        WatchEvent::Bookmark { .. } => false,
        WatchEvent::Error(_) => false,
    }
}

fn bench_watch(c: &mut Criterion, rt: &tokio::runtime::Runtime, client: &Client) {
    const N: usize = 10_000;
    let prefix = "/bench/watch/";
    let mut group = c.benchmark_group("etcd_watch");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(N as u64));
    let mut generation = 0;
    for prev_kv in [true, false] {
        let source =
            Arc::new(EtcdListWatch::<Pod>::new(client.clone(), prefix).with_prev_kv(prev_kv));
        let name = |what: &str| format!("{what}{}/10000", if prev_kv { "" } else { "_no_prev_kv" });
        group.bench_function(name("live_txn128"), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (source, mut client) = (source.clone(), client.clone());
                generation += 1;
                let first = generation;
                generation += iters as usize;
                async move {
                    let mut total = Duration::ZERO;
                    for g in 0..iters as usize {
                        let cache = cache();
                        let from = client
                            .get("/", None)
                            .await
                            .unwrap()
                            .header()
                            .unwrap()
                            .revision() as u64;
                        let mut watch = source
                            .watch(ListOptions {
                                resource_version: Some(from.into()),
                                ..ListOptions::default()
                            })
                            .await
                            .unwrap();
                        let start = Instant::now();
                        let mut writer = client.clone();
                        let write =
                            tokio::spawn(
                                async move { fill(&mut writer, prefix, N, first + g).await },
                            );
                        let mut applied = 0;
                        while applied < N {
                            let event = watch.next().await.unwrap().unwrap();
                            applied += usize::from(apply(&cache, event));
                        }
                        total += start.elapsed();
                        write.await.unwrap();
                    }
                    total
                }
            });
        });

        group.bench_function(name("replay"), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (source, mut client) = (source.clone(), client.clone());
                generation += 1;
                let g = generation;
                async move {
                    let from = client
                        .get("/", None)
                        .await
                        .unwrap()
                        .header()
                        .unwrap()
                        .revision() as u64;
                    fill(&mut client, prefix, N, g).await;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let cache = cache();
                        let start = Instant::now();
                        let mut watch = source
                            .watch(ListOptions {
                                resource_version: Some(from.into()),
                                ..ListOptions::default()
                            })
                            .await
                            .unwrap();
                        let mut applied = 0;
                        while applied < N {
                            let event = watch.next().await.unwrap().unwrap();
                            applied += usize::from(apply(&cache, event));
                        }
                        total += start.elapsed();
                    }
                    total
                }
            });
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let Some(etcd) = Etcd::start_cluster(
        "the etcd benchmarks",
        1,
        &["--quota-backend-bytes", "8589934592"],
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(etcd.client());
    bench_sync(c, &rt, &etcd, &client);
    bench_watch(c, &rt, &client);
}

criterion_group!(etcd, benches);
criterion_main!(etcd);
