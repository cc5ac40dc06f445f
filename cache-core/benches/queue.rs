//! Queue throughput: add → pop with one producer thread and one consumer, for each queue, and
//! `pop_batch` against `pop` on a filled queue. A tokio unbounded channel (no keys, no
//! coalescing, no bookkeeping) runs alongside as a floor.
//!
//! `cargo bench -p cache-core --bench queue`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::fifo::{DeltaFifo, Fifo, RealFifo};
use cache_core::{Indexers, Object, ObjectKey, Store};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const N: usize = 10_000;

struct Pod {
    key: ObjectKey,
    _payload: [u8; 256],
}

impl Object for Pod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        self.key.clone()
    }
}

fn pods() -> Vec<Arc<Pod>> {
    (0..N)
        .map(|i| {
            Arc::new(Pod {
                key: ObjectKey::new(&format!("ns-{:03}", i % 100), &format!("pod-{i:06}")),
                _payload: [0; 256],
            })
        })
        .collect()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Runs `iters` rounds of: a producer thread adds every pod while `consume` drains them.
fn produce_consume<Q: Store<Pod> + 'static>(
    rt: &Runtime,
    pods: &[Arc<Pod>],
    iters: u64,
    new_queue: impl Fn() -> Q,
    consume: impl AsyncFn(&Q, usize),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let queue = Arc::new(new_queue());
        let start = Instant::now();
        std::thread::scope(|s| {
            let producer = queue.clone();
            s.spawn(move || {
                for pod in pods {
                    producer.add(pod.clone()).unwrap();
                }
            });
            rt.block_on(consume(&*queue, pods.len()));
        });
        total += start.elapsed();
    }
    total
}

fn add_then_pop(c: &mut Criterion) {
    let pods = pods();
    let rt = runtime();
    let mut group = c.benchmark_group("queue/add->pop, 1 producer + 1 consumer");
    group.throughput(Throughput::Elements(N as u64));

    group.bench_function("Fifo pop", |b| {
        b.iter_custom(|iters| {
            produce_consume(&rt, &pods, iters, Fifo::new, async |q, n| {
                for _ in 0..n {
                    q.pop(|p, _| black_box(p)).await.unwrap();
                }
            })
        });
    });
    group.bench_function("DeltaFifo pop", |b| {
        b.iter_custom(|iters| {
            produce_consume(&rt, &pods, iters, DeltaFifo::new, async |q, n| {
                for _ in 0..n {
                    q.pop(|d, _| black_box(d)).await.unwrap();
                }
            })
        });
    });
    // Per-object mode: the informer's cache as known objects (an empty one here).
    let known = Arc::new(cache_core::Cache::<Pod>::with_indexers(Indexers::new()));
    group.bench_function("RealFifo pop", |b| {
        b.iter_custom(|iters| {
            produce_consume(
                &rt,
                &pods,
                iters,
                || RealFifo::per_object(known.clone()),
                async |q, n| {
                    for _ in 0..n {
                        q.pop(|d, _| black_box(d)).await.unwrap();
                    }
                },
            )
        });
    });
    group.bench_function("RealFifo (atomic) pop", |b| {
        b.iter_custom(|iters| {
            produce_consume(&rt, &pods, iters, RealFifo::new, async |q, n| {
                for _ in 0..n {
                    q.pop(|d, _| black_box(d)).await.unwrap();
                }
            })
        });
    });
    group.bench_function("RealFifo (atomic) pop_batch(1000)", |b| {
        b.iter_custom(|iters| {
            produce_consume(&rt, &pods, iters, RealFifo::new, async |q, n| {
                let mut left = n;
                while left > 0 {
                    left -= q.pop_batch(1000, |d, _| black_box(d).len()).await.unwrap();
                }
            })
        });
    });
    group.bench_function("baseline: tokio unbounded mpsc", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let start = Instant::now();
                std::thread::scope(|s| {
                    let pods = &pods;
                    s.spawn(move || {
                        for pod in pods {
                            tx.send(pod.clone()).unwrap();
                        }
                    });
                    rt.block_on(async {
                        for _ in 0..N {
                            black_box(rx.recv().await.unwrap());
                        }
                    });
                });
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn batch_against_single(c: &mut Criterion) {
    let pods = pods();
    let rt = runtime();
    let mut group = c.benchmark_group("queue/drain 10k queued (RealFifo, atomic)");
    group.throughput(Throughput::Elements(N as u64));

    let filled = || {
        let q = RealFifo::new();
        for pod in &pods {
            q.add(pod.clone()).unwrap();
        }
        q
    };
    group.bench_function("pop", |b| {
        b.iter_batched(
            filled,
            |q| {
                rt.block_on(async {
                    for _ in 0..N {
                        q.pop(|d, _| black_box(d)).await.unwrap();
                    }
                });
                q
            },
            criterion::BatchSize::LargeInput,
        );
    });
    for size in [10, 100, 1000] {
        group.bench_function(format!("pop_batch({size})"), |b| {
            b.iter_batched(
                filled,
                |q| {
                    rt.block_on(async {
                        let mut left = N;
                        while left > 0 {
                            left -= q.pop_batch(size, |d, _| black_box(d).len()).await.unwrap();
                        }
                    });
                    q
                },
                criterion::BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = add_then_pop, batch_against_single
}
criterion_main!(benches);
