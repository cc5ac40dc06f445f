//! Derived indexes against the same indexes written as closures, in the same run.
//!
//! Three ways to index the same `Pod`:
//! - `derived`: `#[derive(Indexed)]`; values are pushed straight from the fields;
//! - `closure`: the same indexes, with the same value types, written with `Indexer::new` the
//!   way a user would (a closure returns a collection of values);
//! - `strings`: client-go's way, every value a `String` (an enum is formatted, a number printed).
//!
//! Groups: `values/<index>` and `values/all` measure what an index costs a write, computing an
//! object's values (the cache does it for the old and the new object); `write/update` and
//! `write/replace_10k` are whole writes with all the indexes, where the maps dominate.
//!
//! Run with `cargo bench -p tests --bench derive`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{Cache, Indexed, Indexer, Indexers};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// A pod phase: an index value of the user's own type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Phase {
    Pending,
    Running,
    Succeeded,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
        }
    }
}

/// About 500 bytes, like the workload of the cache benchmarks.
#[derive(Clone, Debug, Indexed)]
struct Pod {
    #[key(namespace)]
    #[index]
    namespace: String,
    #[key(name)]
    name: String,
    #[resource_version]
    rv: u64,
    #[index]
    node: Option<String>,
    #[index(by = Pod::label_pairs, name = "label", value = String)]
    labels: BTreeMap<String, String>,
    #[index(each)]
    finalizers: Vec<String>,
    #[index(unique)]
    uid: String,
    #[index]
    phase: Phase,
    #[index]
    priority: i32,
    /// Padding to about 500 bytes.
    #[allow(dead_code)]
    annotations: String,
}

impl Pod {
    fn label_pairs(&self) -> impl Iterator<Item = String> + '_ {
        self.labels.iter().map(|(k, v)| {
            let mut pair = String::with_capacity(k.len() + 1 + v.len());
            pair.push_str(k);
            pair.push('=');
            pair.push_str(v);
            pair
        })
    }
}

const INDEXES: [&str; 7] = [
    "namespace",
    "node",
    "label",
    "finalizers",
    "uid",
    "phase",
    "priority",
];

fn closure_indexer(name: &str) -> Indexer<Pod> {
    match name {
        "namespace" => Indexer::new("namespace", |p: &Pod| [p.namespace.clone()]),
        "node" => Indexer::new("node", |p: &Pod| p.node.clone()),
        "label" => Indexer::new("label", |p: &Pod| p.label_pairs().collect::<Vec<_>>()),
        "finalizers" => Indexer::new("finalizers", |p: &Pod| p.finalizers.clone()),
        "uid" => Indexer::unique("uid", |p: &Pod| [p.uid.clone()]),
        "phase" => Indexer::new("phase", |p: &Pod| [p.phase]),
        "priority" => Indexer::new("priority", |p: &Pod| [p.priority]),
        _ => unreachable!("no index {name}"),
    }
}

fn string_indexer(name: &str) -> Indexer<Pod> {
    match name {
        "phase" => Indexer::new("phase", |p: &Pod| [p.phase.as_str().to_owned()]),
        "priority" => Indexer::new("priority", |p: &Pod| [p.priority.to_string()]),
        // The others are strings already: as in `closure`.
        other => closure_indexer(other),
    }
}

fn derived_indexer(name: &str) -> Indexer<Pod> {
    Pod::indexers()
        .iter()
        .find(|i| i.name() == name)
        .cloned()
        .unwrap_or_else(|| unreachable!("no index {name}"))
}

fn indexers(way: &str, names: &[&str]) -> Indexers<Pod> {
    names
        .iter()
        .map(|name| match way {
            "derived" => derived_indexer(name),
            "closure" => closure_indexer(name),
            _ => string_indexer(name),
        })
        .collect()
}

fn pod(i: u64, version: u64) -> Pod {
    let shift = version % 2;
    Pod {
        namespace: format!("namespace-{:03}", i % 100),
        name: format!("pod-{i:06}"),
        rv: version,
        node: Some(format!("node-{:04}", (i + shift * 7) % 1000)),
        labels: [
            ("app".to_owned(), format!("app-{}", (i + shift) % 50)),
            (
                "tier".to_owned(),
                ["web", "api", "db"][((i + shift) % 3) as usize].to_owned(),
            ),
            (
                "pod-template-hash".to_owned(),
                format!("{:010x}", (i + shift) * 7919),
            ),
        ]
        .into(),
        finalizers: (0..(i + shift) % 3)
            .map(|f| format!("example.com/finalizer-{f}"))
            .collect(),
        uid: format!("{:08x}-0000-4000-8000-{:012x}-{shift}", i, i * 31),
        phase: [Phase::Pending, Phase::Running, Phase::Succeeded][((i + shift) % 3) as usize],
        priority: ((i + shift) % 10) as i32 * 100,
        annotations: "x".repeat(220),
    }
}

const WAYS: [&str; 3] = ["derived", "closure", "strings"];

/// What one write costs an index: computing an object's values. `Snapshot::index` (client-go's
/// `Index`) computes them and looks each up; on an empty cache the lookups find nothing, so the
/// index function is most of the cost. One iteration covers 1,000 different pods.
fn bench_values(c: &mut Criterion, group: &str, names: &[&str], pods: &[Pod]) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(pods.len() as u64));
    for way in WAYS {
        let snap = Cache::with_indexers(indexers(way, names)).snapshot();
        g.bench_function(way, |b| {
            b.iter(|| {
                for pod in pods {
                    for name in names {
                        black_box(snap.index(name, black_box(pod)).unwrap());
                    }
                }
            });
        });
    }
    g.finish();
}

fn values(c: &mut Criterion) {
    let pods: Vec<Pod> = (0..1_000).map(|i| pod(i, 0)).collect();
    for name in INDEXES {
        bench_values(c, &format!("values/{name}"), &[name], &pods);
    }
    bench_values(c, "values/all", &INDEXES, &pods);
}

fn filled(way: &str, n: u64) -> Cache<Pod> {
    let cache = Cache::with_indexers(indexers(way, &INDEXES));
    cache
        .replace((0..n).map(|i| Arc::new(pod(i, 0))).collect(), None)
        .unwrap();
    cache
}

/// End to end, all indexes: an update that moves one object between values in every index, in
/// a cache of 10,000; and a replace of 10,000.
fn writes(c: &mut Criterion) {
    let n = 10_000;
    let mut g = c.benchmark_group("write/update");
    let versions = [Arc::new(pod(n / 2, 0)), Arc::new(pod(n / 2, 1))];
    for way in WAYS {
        let cache = filled(way, n);
        let mut flip = 0;
        g.bench_function(way, |b| {
            b.iter(|| {
                flip ^= 1;
                cache.update(black_box(versions[flip].clone())).unwrap();
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("write/replace_10k");
    g.sample_size(20);
    let items: Vec<Arc<Pod>> = (0..n).map(|i| Arc::new(pod(i, 0))).collect();
    for way in WAYS {
        let cache = Cache::with_indexers(indexers(way, &INDEXES));
        g.bench_function(way, |b| {
            b.iter_batched(
                || items.clone(),
                |items| cache.replace(items, None).unwrap(),
                BatchSize::LargeInput,
            );
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = values, writes
}
criterion_main!(benches);
