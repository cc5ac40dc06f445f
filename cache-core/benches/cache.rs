//! The cache against a client-go-style indexer, side by side in one run.
//!
//! Run with `cargo bench -p cache-core --bench cache`. The workload (see `support/workload.rs`)
//! is 10k and 100k pod-like objects of about 500 bytes, keyed `ns/name`, with a `namespace`
//! index (100 values) and a `node` index (1,000 values), visited in random key order. Each case
//! runs on our `Cache` and on the baseline (`support/baseline.rs`, an `RwLock<HashMap>` plus
//! value -> key-set maps, as client-go's `threadSafeMap`). At the end a table of medians, ratios
//! and targets is printed, read back from criterion's own estimates.
//!
//! `BENCH_SIZES=10000` (comma-separated) restricts the sizes.

mod support;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use cache_core::{Cache, Change};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};

use support::baseline::Baseline;
use support::data::{Data, label, sizes, with_writer};
use support::workload::Obj;

/// Operations per timed iteration for the single-object cases, so that the timer's own cost is
/// negligible.
const BATCH: usize = 1024;

/// Changes per transaction in the batched-update case.
const TXN: usize = 64;

fn filled(d: &Data) -> (Cache<Obj>, Baseline) {
    let cache = d.filled();
    let baseline = Baseline::new();
    baseline.replace(d.base.clone(), d.rv());
    (cache, baseline)
}

fn bench_size(c: &mut Criterion, d: &Data) {
    let (cache, baseline) = filled(d);
    let id = |who: &str| BenchmarkId::new(who, &d.label);

    // get_by_key: BATCH gets at consecutive positions of a random order.
    {
        let mut g = c.benchmark_group("get_by_key");
        g.throughput(Throughput::Elements(BATCH as u64));
        let mut pos = 0;
        g.bench_function(id("cache"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    pos = (pos + 1) % d.n;
                    black_box(cache.get_by_key(&d.keys[d.order[pos]]));
                }
            })
        });
        let mut pos = 0;
        g.bench_function(id("baseline"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    pos = (pos + 1) % d.n;
                    black_box(baseline.get_by_key(&d.key_strings[d.order[pos]]));
                }
            })
        });
    }

    // list: every object, as a Vec<Arc<Obj>>.
    {
        let mut g = c.benchmark_group("list");
        g.throughput(Throughput::Elements(d.n as u64));
        g.bench_function(id("cache"), |b| b.iter(|| black_box(cache.list())));
        g.bench_function(id("baseline"), |b| b.iter(|| black_box(baseline.list())));
    }

    // by_index: every value of the index once, so each object is returned once per iteration.
    for (group, index, values) in [
        ("by_index_node", "node", &d.node_values),
        ("by_index_namespace", "namespace", &d.ns_values),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(d.n as u64));
        g.bench_function(id("cache"), |b| {
            b.iter(|| {
                for v in values {
                    black_box(cache.by_index(index, v).ok());
                }
            })
        });
        g.bench_function(id("baseline"), |b| {
            b.iter(|| {
                for v in values {
                    black_box(baseline.by_index(index, v));
                }
            })
        });
    }

    // update: each object alternates between two versions, visited in random order.
    for (group, other) in [("update_same", &d.same), ("update_move", &d.moved)] {
        cache
            .replace(d.base.clone(), d.rv())
            .expect("no unique index");
        baseline.replace(d.base.clone(), d.rv());
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(BATCH as u64));
        let version = |flip: &mut [bool], i: usize| {
            flip[i] = !flip[i];
            if flip[i] {
                other[i].clone()
            } else {
                d.base[i].clone()
            }
        };
        let (mut flip, mut pos) = (vec![false; d.n], 0);
        g.bench_function(id("cache"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    pos = (pos + 1) % d.n;
                    let i = d.order[pos];
                    cache
                        .update(version(&mut flip, i))
                        .expect("no unique index");
                }
            })
        });
        let (mut flip, mut pos) = (vec![false; d.n], 0);
        g.bench_function(id("baseline"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    pos = (pos + 1) % d.n;
                    let i = d.order[pos];
                    baseline.update(version(&mut flip, i));
                }
            })
        });
    }

    // Updates applied in transactions of TXN changes (one publish, one lock per transaction),
    // as a reflector applies a burst of watch events. Index values unchanged.
    {
        cache
            .replace(d.base.clone(), d.rv())
            .expect("no unique index");
        baseline.replace(d.base.clone(), d.rv());
        let mut g = c.benchmark_group("update_txn");
        g.throughput(Throughput::Elements(BATCH as u64));
        let batch = |flip: &mut [bool], pos: &mut usize| -> Vec<Arc<Obj>> {
            (0..TXN)
                .map(|_| {
                    *pos = (*pos + 1) % d.n;
                    let i = d.order[*pos];
                    flip[i] = !flip[i];
                    if flip[i] {
                        d.same[i].clone()
                    } else {
                        d.base[i].clone()
                    }
                })
                .collect()
        };
        let (mut flip, mut pos) = (vec![false; d.n], 0);
        g.bench_function(id("cache"), |b| {
            b.iter(|| {
                for _ in 0..BATCH / TXN {
                    let changes = batch(&mut flip, &mut pos).into_iter().map(Change::Update);
                    cache.transaction(changes).expect("no unique index");
                }
            })
        });
        let (mut flip, mut pos) = (vec![false; d.n], 0);
        g.bench_function(id("baseline"), |b| {
            b.iter(|| {
                for _ in 0..BATCH / TXN {
                    baseline.update_all(batch(&mut flip, &mut pos));
                }
            })
        });
    }

    // Reader latency with and without one writer updating flat out (moving objects between
    // nodes) on the other core.
    cache
        .replace(d.base.clone(), d.rv())
        .expect("no unique index");
    baseline.replace(d.base.clone(), d.rv());
    {
        let mut g = c.benchmark_group("reader_get");
        g.throughput(Throughput::Elements(BATCH as u64));
        let reads = |iters: u64, get: &dyn Fn(usize)| {
            let start = Instant::now();
            let mut pos = 0;
            for _ in 0..iters {
                for _ in 0..BATCH {
                    pos = (pos + 7919) % d.n;
                    get(d.order[pos]);
                }
            }
            start.elapsed()
        };
        let cache_get = |i: usize| {
            black_box(cache.get_by_key(&d.keys[i]));
        };
        let baseline_get = |i: usize| {
            black_box(baseline.get_by_key(&d.key_strings[i]));
        };
        let cache_write = |i: usize, moved: bool| {
            let o = if moved { &d.moved[i] } else { &d.base[i] };
            cache.update(o.clone()).expect("no unique index");
        };
        let baseline_write = |i: usize, moved: bool| {
            let o = if moved { &d.moved[i] } else { &d.base[i] };
            baseline.update(o.clone());
        };
        let writes = AtomicU64::new(0);
        g.bench_function(id("cache_idle"), |b| {
            b.iter_custom(|iters| reads(iters, &cache_get))
        });
        g.bench_function(id("cache_busy"), |b| {
            b.iter_custom(|iters| {
                with_writer(d, &cache_write, &writes, || reads(iters, &cache_get))
            })
        });
        g.bench_function(id("baseline_idle"), |b| {
            b.iter_custom(|iters| reads(iters, &baseline_get))
        });
        g.bench_function(id("baseline_busy"), |b| {
            b.iter_custom(|iters| {
                with_writer(d, &baseline_write, &writes, || reads(iters, &baseline_get))
            })
        });
    }

    // replace(all): a relist of every object, in one call.
    {
        let mut g = c.benchmark_group("replace");
        g.throughput(Throughput::Elements(d.n as u64));
        g.sample_size(10);
        g.bench_function(id("cache"), |b| {
            b.iter_batched(
                || d.base.clone(),
                |items| cache.replace(items, d.rv()).expect("no unique index"),
                BatchSize::PerIteration,
            )
        });
        g.bench_function(id("baseline"), |b| {
            b.iter_batched(
                || d.base.clone(),
                |items| baseline.replace(items, d.rv()),
                BatchSize::PerIteration,
            )
        });
    }
    black_box((cache.len(), baseline.len()));
}

/// The median of one benchmark, in ns per element, from criterion's saved estimates.
fn median_per_element(
    dir: &Path,
    group: &str,
    who: &str,
    label: &str,
    elements: usize,
) -> Option<f64> {
    let path = dir
        .join(group)
        .join(who)
        .join(label)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let ns = json["median"]["point_estimate"].as_f64()?;
    Some(ns / elements as f64)
}

/// Prints every case side by side: ours, the baseline, the ratio and, at 100k, the target.
fn summary(dir: &Path, sizes: &[usize]) {
    println!();
    println!("| case | N | cache (ns) | baseline (ns) | ratio | target | met |");
    println!("|---|---|---|---|---|---|---|");
    for &n in sizes {
        let l = label(n);
        let cases: [(&str, &str, usize, Option<f64>); 8] = [
            ("get_by_key", "get_by_key", BATCH, Some(1.2)),
            ("list, per entry", "list", n, Some(1.2)),
            ("by_index(node), per object", "by_index_node", n, Some(0.5)),
            (
                "by_index(namespace), per object",
                "by_index_namespace",
                n,
                Some(0.5),
            ),
            (
                "update, index values unchanged",
                "update_same",
                BATCH,
                Some(2.0),
            ),
            ("update, node moves", "update_move", BATCH, Some(2.0)),
            (
                "update in transactions of 64, per update",
                "update_txn",
                BATCH,
                None,
            ),
            ("replace(all), per object", "replace", n, Some(1.0)),
        ];
        for (name, group, elems, target) in cases {
            let ours = median_per_element(dir, group, "cache", &l, elems);
            let theirs = median_per_element(dir, group, "baseline", &l, elems);
            row(name, &l, ours, theirs, target.filter(|_| n == 100_000));
        }
        let get = |who| median_per_element(dir, "reader_get", who, &l, BATCH);
        let (ci, cb, bi, bb) = (
            get("cache_idle"),
            get("cache_busy"),
            get("baseline_idle"),
            get("baseline_busy"),
        );
        row("reader get, idle", &l, ci, bi, None);
        row("reader get, busy writer", &l, cb, bb, None);
        if let (Some(ci), Some(cb), Some(bi), Some(bb)) = (ci, cb, bi, bb) {
            let target = if n == 100_000 { "≤ 1.3×" } else { "" };
            let met = if n == 100_000 {
                if cb / ci <= 1.3 { "yes" } else { "no" }
            } else {
                ""
            };
            println!(
                "| reader get, busy / idle | {l} | {:.2}× | {:.2}× | | {target} | {met} |",
                cb / ci,
                bb / bi
            );
        }
    }
}

fn row(name: &str, l: &str, ours: Option<f64>, theirs: Option<f64>, target: Option<f64>) {
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let ratio = ours.zip(theirs).map(|(a, b)| a / b);
    let (t, met) = match (target, ratio) {
        (Some(t), Some(r)) => (format!("≤ {t}×"), if r <= t { "yes" } else { "no" }),
        (Some(t), None) => (format!("≤ {t}×"), ""),
        _ => (String::new(), ""),
    };
    println!(
        "| {name} | {l} | {} | {} | {} | {t} | {met} |",
        fmt(ours),
        fmt(theirs),
        ratio.map_or("-".to_owned(), |r| format!("{r:.2}×")),
    );
}

fn main() {
    let dir = support::criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let sizes = sizes();
    for &n in &sizes {
        let d = Data::new(n);
        bench_size(&mut c, &d);
    }
    c.final_summary();
    summary(&dir, &sizes);
}
