//! The shared informer on the embedded source: initial sync of 100k objects through the queue
//! into a `Cache` and out to a handler, and steady-state watch events per second, with 100k
//! objects cached, by number of handlers, indexes and queue.
//!
//! Run with `cargo bench -p cache-core --bench informer`.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use cache_core::Indexers;
use cache_core::informer::{QueueKind, SharedIndexInformer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;

mod support;

use support::pods::{Count, EVENTS, OBJECTS, Pod, pod, runtime, source, two_indexes};

fn initial_sync(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("informer/initial_sync_100k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(OBJECTS as u64));
    let source = source(true);
    for (name, kind) in [
        ("real_fifo_one_handler", QueueKind::Real),
        ("delta_fifo_one_handler", QueueKind::Delta),
    ] {
        group.bench_function(name, |b| {
            b.iter_with_large_drop(|| rt.block_on(support::pods::initial_sync(&source, kind)));
        });
    }
    group.finish();
}

/// Applies rounds of `EVENTS` modifications through a running informer, timing from the
/// moment they are waiting in the watch to the moment every handler has been told of all of
/// them (or, with no handler, the cache has them).
fn bench_events(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    kind: QueueKind,
    indexers: Indexers<Pod>,
    handlers: usize,
) {
    let rt = runtime();
    let source = source(true);
    let informer = SharedIndexInformer::builder_with_indexers(source.clone(), indexers)
        .queue(kind)
        .build();
    let counts: Vec<Count> = (0..handlers).map(|_| Count::default()).collect();
    for count in &counts {
        informer.add_event_handler(count.clone()).unwrap();
    }
    let stop = CancellationToken::new();
    let run = rt.spawn({
        let (informer, stop) = (informer.clone(), stop.clone());
        async move { informer.run(stop).await }
    });
    rt.block_on(informer.wait_for_sync()).unwrap();
    let mut round = 0;
    let mut told = OBJECTS as u64;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                told += EVENTS as u64;
                // Modify EVENTS distinct objects, each moving to another node.
                let mut target = None;
                for j in 0..EVENTS {
                    let i = (round * EVENTS + j * 7) % OBJECTS;
                    target = Some(source.put(pod(i, i + round)));
                }
                let started = Instant::now();
                rt.block_on(async {
                    while informer.cache().resource_version() != target
                        || counts.iter().any(|c| c.get() < told)
                    {
                        tokio::task::yield_now().await;
                    }
                });
                total += started.elapsed();
            }
            total
        });
    });
    stop.cancel();
    rt.block_on(run).expect("the informer stops");
}

fn watch_events(c: &mut Criterion) {
    let mut group = c.benchmark_group("informer/watch_events_100k_cached");
    group.sample_size(20);
    group.throughput(Throughput::Elements(EVENTS as u64));
    let none = Indexers::new;
    bench_events(
        &mut group,
        "no_index/no_handler",
        QueueKind::Real,
        none(),
        0,
    );
    bench_events(&mut group, "no_index/1_handler", QueueKind::Real, none(), 1);
    bench_events(
        &mut group,
        "no_index/10_handlers",
        QueueKind::Real,
        none(),
        10,
    );
    bench_events(
        &mut group,
        "two_indexes/1_handler",
        QueueKind::Real,
        two_indexes(),
        1,
    );
    bench_events(
        &mut group,
        "no_index/1_handler/delta_fifo",
        QueueKind::Delta,
        none(),
        1,
    );
    group.finish();
}

criterion_group!(benches, initial_sync, watch_events);
criterion_main!(benches);
