//! The reflector on the embedded source: initial sync of 100k objects into a `Cache`, and
//! steady-state watch events applied per second with 100k objects cached.
//!
//! Run with `cargo bench -p cache-core --bench reflector`.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_core::reflector::Reflector;
use cache_core::{
    Cache, Change, Indexers, Object, ObjectKey, ResourceVersion, Store, StoreError,
    TransactionError,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;

mod support;

use support::pods::{EVENTS, OBJECTS, Pod, pod, runtime, source, two_indexes};

fn indexed() -> Arc<Cache<Pod>> {
    Arc::new(Cache::with_indexers(two_indexes()))
}

fn plain() -> Arc<Cache<Pod>> {
    Arc::new(Cache::with_indexers(Indexers::new()))
}

/// A store that keeps only the version: what the reflector itself costs, without a cache.
#[derive(Default)]
struct Discard {
    rv: Mutex<Option<ResourceVersion>>,
}

impl Discard {
    fn note(&self, obj: &Pod) {
        if let Some(rv) = obj.resource_version() {
            *self.rv.lock().unwrap() = Some(rv);
        }
    }
}

impl Store<Pod> for Discard {
    fn add(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.note(&obj);
        Ok(())
    }
    fn update(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.note(&obj);
        Ok(())
    }
    fn delete(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.note(&obj);
        Ok(())
    }
    fn list(&self) -> Vec<Arc<Pod>> {
        Vec::new()
    }
    fn list_keys(&self) -> Vec<ObjectKey> {
        Vec::new()
    }
    fn get_by_key(&self, _: &ObjectKey) -> Option<Arc<Pod>> {
        None
    }
    fn replace(&self, _: Vec<Arc<Pod>>, rv: Option<ResourceVersion>) -> Result<(), StoreError> {
        *self.rv.lock().unwrap() = rv;
        Ok(())
    }
    fn resync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn bookmark(&self, rv: ResourceVersion) {
        *self.rv.lock().unwrap() = Some(rv);
    }
    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.rv.lock().unwrap().clone()
    }
    fn transaction(&self, changes: Vec<Change<Pod>>) -> Result<(), TransactionError> {
        if let Some(last) = changes.last() {
            self.note(last.object());
        }
        Ok(())
    }
}

fn initial_sync(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("reflector/initial_sync_100k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(OBJECTS as u64));
    for (name, watch_list) in [("list_pages_of_500", false), ("streaming_list", true)] {
        let source = source(watch_list);
        group.bench_function(name, |b| {
            b.iter_with_large_drop(|| {
                rt.block_on(async {
                    let cache = indexed();
                    let reflector = Reflector::new(source.clone(), cache.clone());
                    let stop = CancellationToken::new();
                    let run = tokio::spawn({
                        let (reflector, stop) = (reflector.clone(), stop.clone());
                        async move { reflector.run(stop).await }
                    });
                    reflector.wait_for_sync().await;
                    assert_eq!(cache.len(), OBJECTS);
                    stop.cancel();
                    run.await.expect("the reflector stops");
                    cache
                })
            });
        });
    }
    group.finish();
}

/// Applies rounds of `EVENTS` modifications through a running reflector into `store`, timing
/// only the reflector's work: the events are written while it waits, then drained.
fn bench_events<S: Store<Pod> + 'static>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    store: Arc<S>,
) {
    let rt = runtime();
    let source = source(true);
    let reflector = Reflector::new(source.clone(), store);
    let stop = CancellationToken::new();
    let run = rt.spawn({
        let (reflector, stop) = (reflector.clone(), stop.clone());
        async move { reflector.run(stop).await }
    });
    rt.block_on(reflector.wait_for_sync());
    let mut round = 0;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                // Modify EVENTS objects, each moving to another node. The events wait in the
                // watch while the runtime is idle; then the reflector drains them.
                let mut target = None;
                for j in 0..EVENTS {
                    let i = (round * EVENTS + j * 7) % OBJECTS;
                    target = Some(source.put(pod(i, i + round)));
                }
                let started = Instant::now();
                rt.block_on(async {
                    while reflector.last_sync_resource_version() != target {
                        tokio::task::yield_now().await;
                    }
                });
                total += started.elapsed();
            }
            total
        });
    });
    stop.cancel();
    rt.block_on(run).expect("the reflector stops");
}

fn watch_events(c: &mut Criterion) {
    let mut group = c.benchmark_group("reflector/watch_events_100k_cached");
    group.sample_size(20);
    group.throughput(Throughput::Elements(EVENTS as u64));
    let cache = indexed();
    bench_events(&mut group, "cache_two_indexes", cache.clone());
    assert_eq!(cache.len(), OBJECTS);
    bench_events(&mut group, "cache_no_index", plain());
    bench_events(&mut group, "reflector_only", Arc::new(Discard::default()));
    group.finish();
}

criterion_group!(benches, initial_sync, watch_events);
criterion_main!(benches);
