//! Listers (client-go's `BenchmarkLister_Match_*`) and the work queue's add/get/done cycle.
//!
//! `cargo bench -p cache-core --bench lister_workqueue`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use cache_core::lister::{Lister, namespace_indexer};
use cache_core::workqueue::WorkQueue;
use cache_core::{Cache, Indexers, LabelSelector, Labels, Object, ObjectKey};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

struct Pod {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
}

impl Object for Pod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
}

impl Labels for Pod {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.label(key)
    }
}

/// `n` pods in 100 namespaces with three labels each; 100 of them carry `match=true`.
fn pods(n: usize) -> Vec<Arc<Pod>> {
    let every = n / 100;
    (0..n)
        .map(|i| {
            let labels = [
                ("app".to_owned(), format!("app-{}", i % 50)),
                ("tier".to_owned(), "web".to_owned()),
                (
                    "match".to_owned(),
                    if i % every == 0 { "true" } else { "false" }.to_owned(),
                ),
            ]
            .into();
            Arc::new(Pod {
                namespace: format!("ns-{}", i % 100),
                name: format!("pod-{i}"),
                labels,
            })
        })
        .collect()
}

fn lister(c: &mut Criterion) {
    let mut group = c.benchmark_group("lister");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let matching: LabelSelector = "match=true".parse().unwrap();
    let everything = LabelSelector::everything();
    for n in [10_000, 100_000] {
        let indexed = Arc::new(Cache::with_indexers(
            Indexers::new().with(namespace_indexer()),
        ));
        let plain = Arc::new(Cache::with_indexers(Indexers::new()));
        indexed.replace(pods(n), None).unwrap();
        plain.replace(pods(n), None).unwrap();
        let (indexed, plain) = (Lister::new(indexed), Lister::new(plain));

        group.bench_with_input(BenchmarkId::new("list_match_100", n), &n, |b, _| {
            b.iter(|| black_box(plain.list(&matching)).len());
        });
        group.bench_with_input(BenchmarkId::new("list_everything", n), &n, |b, _| {
            b.iter(|| black_box(plain.list(&everything)).len());
        });
        let ns = "ns-42";
        group.bench_with_input(BenchmarkId::new("namespace_list_indexed", n), &n, |b, _| {
            b.iter(|| black_box(indexed.by_namespace(ns).list(&everything)).len())
        });
        group.bench_with_input(BenchmarkId::new("namespace_list_scan", n), &n, |b, _| {
            b.iter(|| black_box(plain.by_namespace(ns).list(&everything)).len());
        });
    }
    group.finish();
}

fn selector(c: &mut Criterion) {
    let sel: LabelSelector = "app in (app-1,app-2),tier=web,!canary".parse().unwrap();
    let labels: BTreeMap<String, String> = [
        ("app".to_owned(), "app-2".to_owned()),
        ("tier".to_owned(), "web".to_owned()),
    ]
    .into();
    c.bench_function("selector/parse_3_requirements", |b| {
        b.iter(|| black_box("app in (app-1,app-2),tier=web,!canary").parse::<LabelSelector>());
    });
    c.bench_function("selector/match_3_requirements", |b| {
        b.iter(|| black_box(&sel).matches(black_box(&labels)));
    });
}

fn workqueue(c: &mut Criterion) {
    const KEYS: usize = 10_000;
    let keys: Vec<ObjectKey> = (0..KEYS)
        .map(|i| ObjectKey::new("default", &format!("pod-{i}")))
        .collect();
    let mut group = c.benchmark_group("workqueue");
    group.sample_size(20);
    // Every key: add, a duplicate add, get, done.
    group.bench_function("add_dup_get_done_10k", |b| {
        let q = WorkQueue::<ObjectKey>::new();
        b.iter(|| {
            for k in &keys {
                q.add(k.clone());
                q.add(k.clone());
            }
            while let Some(k) = q.try_get() {
                q.done(&k);
            }
        });
    });
    group.finish();
}

criterion_group!(benches, lister, selector, workqueue);
criterion_main!(benches);
