//! Our side of the comparison with the real client-go (`bench/compare`): every case of the Go
//! harness in `bench/client-go`, under the same name, on our `Cache` and our
//! `SharedIndexInformer`, with the same workload (`support/workload.rs` for the cache cases,
//! `support/pods.rs` for the informer cases).
//!
//! Run with `cargo bench -p cache-core --bench client_go_cases`. Each case's criterion median
//! is written as one JSON line (the Go harness writes the same lines) to the file named by
//! `CLIENT_GO_COMPARE_OUT`, or to standard output. `BENCH_SIZES=10000` (comma-separated)
//! restricts the sizes; `CLIENT_GO_COMPARE_QUICK=1` measures briefly.
#![allow(missing_docs)]

mod support;

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_core::Cache;
use cache_core::informer::{QueueKind, SharedIndexInformer};
use criterion::{BatchSize, Criterion, SamplingMode};
use tokio_util::sync::CancellationToken;

use support::data::{self, Data, label, sizes};
use support::pods::{self, Count, EVENTS, OBJECTS, Pod};
use support::workload::Obj;

/// Operations per timed iteration of the single-object cases, as in the Go harness.
const BATCH: usize = 1024;

/// What only the comparison asks of the data.
impl Data {
    /// The Go harness' fingerprint of the workload (FNV-1a over every field that shapes the
    /// runs): equal on both sides when both built the same objects in the same order.
    fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf29ce484222325;
        let mut mix = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x100000001b3);
            }
            h ^= 0xff;
            h = h.wrapping_mul(0x100000001b3);
        };
        for o in &self.base {
            mix(o.namespace.as_bytes());
            mix(o.name.as_bytes());
            mix(o.node.as_bytes());
            mix(o.rv.as_str().as_bytes());
            mix(&o.payload);
        }
        for i in &self.order {
            mix(i.to_string().as_bytes());
        }
        for v in self.node_values.iter().chain(&self.ns_values) {
            mix(v.as_bytes());
        }
        format!("{h:016x}")
    }

    /// Checks, for a sample of the objects, that the cache holds one of the allowed versions of
    /// each and finds it by its node and its namespace.
    fn check(&self, cache: &Cache<Obj>, allowed: &[&[Arc<Obj>]]) {
        assert_eq!(cache.len(), self.n);
        for i in (0..self.n).step_by(self.n / 1000 + 1) {
            let o = cache
                .get_by_key(&self.keys[i])
                .expect("every key is cached");
            assert!(allowed.iter().any(|a| Arc::ptr_eq(&a[i], &o)));
            for (index, value) in [("node", &o.node), ("namespace", &o.namespace)] {
                let found = cache.by_index(index, value).expect("the index exists");
                assert!(found.iter().any(|x| Arc::ptr_eq(x, &o)));
            }
        }
    }
}

fn quick() -> bool {
    std::env::var("CLIENT_GO_COMPARE_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A measured case: its name in both harnesses, its size, its unit and how many elements one
/// criterion iteration handles (the value is the median divided by it, times `scale`).
struct Measured {
    case: &'static str,
    n: usize,
    unit: &'static str,
    per_iteration: f64,
}

/// The criterion group of a case.
fn group_name(case: &str) -> String {
    format!("client_go_compare_{case}")
}

/// The median of one case from criterion's saved estimates, in the case's unit.
fn median(dir: &Path, m: &Measured) -> Option<f64> {
    let path = dir
        .join(group_name(m.case))
        .join(label(m.n))
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let ns = json["median"]["point_estimate"].as_f64()?;
    Some(ns / m.per_iteration)
}

/// The output: one JSON line per result.
struct Out(Box<dyn Write>);

impl Out {
    fn open() -> Self {
        match std::env::var_os("CLIENT_GO_COMPARE_OUT") {
            Some(path) => Self(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("the output file opens"),
            )),
            None => Self(Box::new(std::io::stdout())),
        }
    }

    fn line(&mut self, case: &str, n: usize, unit: &str, value: f64, fingerprint: Option<&str>) {
        let mut json = serde_json::json!({
            "side": "ours", "case": case, "n": n, "unit": unit, "value": value,
        });
        if let Some(f) = fingerprint {
            json["fingerprint"] = f.into();
        }
        writeln!(self.0, "{json}").expect("the output is written");
    }
}

fn bench_size(c: &mut Criterion, d: &Data, measured: &mut Vec<Measured>) {
    let mut case = |c: &mut Criterion,
                    name: &'static str,
                    unit: &'static str,
                    per_iteration: f64,
                    samples: Option<usize>,
                    f: &mut dyn FnMut(&mut criterion::Bencher<'_>)| {
        let mut g = c.benchmark_group(group_name(name));
        if let Some(s) = samples {
            // Long iterations: equal sample sizes, as the Go harness then measures.
            g.sample_size(s).sampling_mode(SamplingMode::Flat);
        }
        g.bench_function(&d.label, |b| f(b));
        g.finish();
        measured.push(Measured {
            case: name,
            n: d.n,
            unit,
            per_iteration,
        });
    };
    let batch = BATCH as f64;
    let n = d.n as f64;

    {
        let cache = d.filled();
        let mut pos = 0;
        case(c, "get_by_key", "ns/op", batch, None, &mut |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    pos = (pos + 1) % d.n;
                    let got = cache.get_by_key(&d.keys[d.order[pos]]);
                    assert!(got.is_some());
                    black_box(got);
                }
            })
        });
        d.check(&cache, &[&d.base]);
    }

    for (name, other) in [("update_same", &d.same), ("update_move", &d.moved)] {
        let cache = d.filled();
        let (mut flip, mut pos) = (vec![false; d.n], 0);
        case(c, name, "ns/op", batch, None, &mut |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    pos = (pos + 1) % d.n;
                    let i = d.order[pos];
                    flip[i] = !flip[i];
                    let o = if flip[i] { &other[i] } else { &d.base[i] };
                    cache.update(o.clone()).expect("no unique index");
                }
            })
        });
        d.check(&cache, &[&d.base, other]);
    }

    {
        let cache = d.filled();
        let mut pos = 0;
        case(c, "add_delete", "ns/pair", batch, None, &mut |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    pos = (pos + 1) % d.n;
                    let o = &d.base[d.order[pos]];
                    cache.delete(o.clone()).expect("no unique index");
                    cache.add(o.clone()).expect("no unique index");
                }
            })
        });
        d.check(&cache, &[&d.base]);
    }

    {
        let cache = d.filled();
        case(c, "replace", "ns/object", n, Some(10), &mut |b| {
            b.iter_batched(
                || d.base.clone(),
                |items| cache.replace(items, d.rv()).expect("no unique index"),
                BatchSize::PerIteration,
            )
        });
        d.check(&cache, &[&d.base]);
    }

    {
        let cache = d.filled();
        case(c, "list", "ns/object", n, None, &mut |b| {
            b.iter(|| {
                let l = cache.list();
                assert_eq!(l.len(), d.n);
                black_box(l)
            })
        });
    }

    for (name, index, values) in [
        ("by_index_namespace", "namespace", &d.ns_values),
        ("by_index_node", "node", &d.node_values),
    ] {
        let cache = d.filled();
        case(c, name, "ns/object", n, None, &mut |b| {
            b.iter(|| {
                let mut returned = 0;
                for v in values {
                    let l = cache.by_index(index, v).expect("the index exists");
                    returned += l.len();
                    black_box(l);
                }
                assert_eq!(returned, d.n);
            })
        });
    }

    for (name, index) in [
        ("index_values_namespace", "namespace"),
        ("index_values_node", "node"),
    ] {
        let cache = d.filled();
        let want = {
            let mut v: Vec<&str> = d
                .base
                .iter()
                .map(|o| {
                    if index == "node" {
                        &o.node
                    } else {
                        &o.namespace
                    }
                    .as_str()
                })
                .collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        case(c, name, "ns/call", 1.0, None, &mut |b| {
            b.iter(|| {
                let v = cache.index_values(index).expect("the index exists");
                assert_eq!(v.len(), want);
                black_box(v)
            })
        });
    }

    {
        let cache = d.filled();
        let reads = |iters: u64| {
            let start = Instant::now();
            let mut pos = 0;
            for _ in 0..iters {
                for _ in 0..BATCH {
                    pos = (pos + 7919) % d.n;
                    let got = cache.get_by_key(&d.keys[d.order[pos]]);
                    assert!(got.is_some());
                    black_box(got);
                }
            }
            start.elapsed()
        };
        case(c, "reader_get_idle", "ns/op", batch, None, &mut |b| {
            b.iter_custom(reads)
        });
        let writes = AtomicU64::new(0);
        case(c, "reader_get_busy", "ns/op", batch, None, &mut |b| {
            b.iter_custom(|iters| with_writer(d, &cache, &writes, || reads(iters)))
        });
        assert!(writes.load(Ordering::Relaxed) > 0, "the writer wrote");
        d.check(&cache, &[&d.base]);
    }
}

/// Runs `read` while another thread updates flat out (moving objects between nodes), then puts
/// every object back at its base version.
fn with_writer<R: Send>(
    d: &Data,
    cache: &Cache<Obj>,
    writes: &AtomicU64,
    read: impl FnOnce() -> R,
) -> R {
    let write = |i: usize, moved: bool| {
        let o = if moved { &d.moved[i] } else { &d.base[i] };
        cache.update(o.clone()).expect("no unique index");
    };
    data::with_writer(d, &write, writes, read)
}

/// The informer cases, with the workload's two indexes and one handler, on a source that
/// streams its initial list (as client-go's default watch-list does).
fn bench_informer(c: &mut Criterion, measured: &mut Vec<Measured>) {
    let rt = pods::runtime();
    let source = pods::source(true);
    {
        let mut g = c.benchmark_group(group_name("informer_initial_sync"));
        g.sample_size(10).sampling_mode(SamplingMode::Flat);
        g.bench_function(label(OBJECTS), |b| {
            b.iter_with_large_drop(|| rt.block_on(pods::initial_sync(&source, QueueKind::Real)));
        });
        g.finish();
        measured.push(Measured {
            case: "informer_initial_sync",
            n: OBJECTS,
            unit: "ms",
            per_iteration: 1e6,
        });
    }

    let informer = SharedIndexInformer::builder_with_indexers(source.clone(), pods::two_indexes())
        .queue(QueueKind::Real)
        .build();
    let count = Count::default();
    informer.add_event_handler(count.clone()).unwrap();
    let stop = CancellationToken::new();
    let run = rt.spawn({
        let (informer, stop) = (informer.clone(), stop.clone());
        async move { informer.run(stop).await }
    });
    rt.block_on(informer.wait_for_sync()).unwrap();
    let (mut round, mut told) = (0, OBJECTS as u64);
    let mut last = None;
    {
        let mut g = c.benchmark_group(group_name("informer_watch_event"));
        g.sampling_mode(SamplingMode::Flat);
        g.bench_function(label(OBJECTS), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    told += EVENTS as u64;
                    // Modify EVENTS distinct objects, each moving to another node.
                    let changes: Vec<Pod> = (0..EVENTS)
                        .map(|j| {
                            let i = (round * EVENTS + j * 7) % OBJECTS;
                            pods::pod(i, i + round)
                        })
                        .collect();
                    last = changes.last().cloned();
                    let started = Instant::now();
                    let mut target = None;
                    for p in changes {
                        target = Some(source.put(p));
                    }
                    rt.block_on(async {
                        while informer.cache().resource_version() != target || count.get() < told {
                            tokio::task::yield_now().await;
                        }
                    });
                    total += started.elapsed();
                }
                total
            });
        });
        g.finish();
    }
    let last = last.expect("one change at least");
    let cached = informer
        .cache()
        .get_by_key(&cache_core::Object::key(&last))
        .expect("the last change is cached");
    assert_eq!(cached.node, last.node);
    assert!(
        informer
            .cache()
            .by_index("node", &last.node)
            .expect("the node index exists")
            .iter()
            .any(|p| p.name == last.name)
    );
    stop.cancel();
    rt.block_on(run).expect("the informer stops");
    measured.push(Measured {
        case: "informer_watch_event",
        n: OBJECTS,
        unit: "ns/event",
        per_iteration: EVENTS as f64,
    });
}

fn main() {
    let dir = support::criterion_dir();
    let (warm_up, measurement, samples) = if quick() {
        (Duration::from_millis(100), Duration::from_millis(300), 10)
    } else {
        (Duration::from_millis(500), Duration::from_secs(2), 20)
    };
    let mut c = Criterion::default()
        .output_directory(&dir)
        .sample_size(samples)
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        // Only the median's point estimate is read, which resampling does not change: fewer
        // bootstrap resamples leave the machine to the measurements.
        .nresamples(10_000)
        .configure_from_args();
    let mut out = Out::open();
    let mut measured = Vec::new();
    for n in sizes() {
        let d = Data::new(n);
        out.line("workload", n, "objects", n as f64, Some(&d.fingerprint()));
        bench_size(&mut c, &d, &mut measured);
    }
    bench_informer(&mut c, &mut measured);
    c.final_summary();
    for m in &measured {
        match median(&dir, m) {
            Some(v) => out.line(m.case, m.n, m.unit, v, None),
            None => eprintln!("no estimate for {} at {}", m.case, m.n),
        }
    }
}
