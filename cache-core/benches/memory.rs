//! Memory per object beyond the objects themselves, for the cache and the client-go-style
//! baseline, counted by a global allocator that records every allocation.
//!
//! Run with `cargo bench -p cache-core --bench memory`. It is a separate binary so that the
//! counting allocator does not slow down the timed benchmarks. Figures are requested bytes (what
//! the program asks the allocator for), the same way for both structures.
//!
//! `BENCH_SIZES=10000` (comma-separated) restricts the sizes.

mod support;

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;

use cache_core::{Cache, Indexers};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

use support::baseline::Baseline;
use support::workload::{self, Obj};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes still allocated from what `f` allocated (its result included).
fn retained<R>(f: impl FnOnce() -> R) -> (R, isize) {
    let region = Region::new(GLOBAL);
    let out = f();
    let s = region.change();
    // Reallocations are already counted in both totals.
    let net = s.bytes_allocated as isize - s.bytes_deallocated as isize;
    (out, net)
}

fn per_object(bytes: isize, n: usize) -> f64 {
    bytes as f64 / n as f64
}

fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![10_000, 100_000])
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    println!("| N | structure | built by | bytes per object beyond the objects | vs baseline |");
    println!("|---|---|---|---|---|");
    let mut object_size = 0.0;
    for n in sizes() {
        let (objs, bytes) = retained(|| workload::objects(n));
        // The objects, without the Vec that holds them.
        object_size = per_object(
            bytes - (objs.capacity() * size_of::<Arc<Obj>>()) as isize,
            n,
        );
        let rv = Some((n as u64).into());
        let label = format!("{}k", n / 1000);

        let rows: Vec<(&str, &str, isize, isize)> = vec![
            {
                let (c, ours) = retained(|| {
                    let c = workload::cache();
                    c.replace(objs.clone(), rv.clone())
                        .expect("no unique index");
                    c
                });
                let (b, theirs) = retained(|| {
                    let b = Baseline::new();
                    b.replace(objs.clone(), rv.clone());
                    b
                });
                black_box((c.len(), b.len()));
                ("both indexes", "replace(all)", ours, theirs)
            },
            {
                let (c, ours) = retained(|| {
                    let c = workload::cache();
                    for o in &objs {
                        c.add(o.clone()).expect("no unique index");
                    }
                    c
                });
                let (b, theirs) = retained(|| {
                    let b = Baseline::new();
                    for o in &objs {
                        b.update(o.clone());
                    }
                    b
                });
                black_box((c.len(), b.len()));
                ("both indexes", "N adds", ours, theirs)
            },
            {
                let (c, ours) = retained(|| {
                    let c = Cache::<Obj>::with_indexers(Indexers::new());
                    c.replace(objs.clone(), rv.clone()).expect("no index");
                    c
                });
                let (b, theirs) = retained(|| {
                    let b = Baseline::without_indexes();
                    b.replace(objs.clone(), rv.clone());
                    b
                });
                black_box((c.len(), b.len()));
                ("no index", "replace(all)", ours, theirs)
            },
        ];
        // N adds, then 2N updates in random key order: the garbage a design keeps counts, and so
        // do replaced objects it still holds.
        let updates: Vec<Arc<Obj>> = workload::order(n, 7)
            .iter()
            .cycle()
            .take(2 * n)
            .enumerate()
            .map(|(i, &k)| objs[k].next((10 * n + i) as u64, None))
            .collect();
        let written: Vec<std::sync::Weak<Obj>> =
            objs.iter().chain(&updates).map(Arc::downgrade).collect();
        let (c, ours) = retained(|| {
            let c = workload::cache();
            for o in &objs {
                c.add(o.clone()).expect("no unique index");
            }
            for o in &updates {
                c.update(o.clone()).expect("no unique index");
            }
            c
        });
        let (b, theirs) = retained(|| {
            let b = Baseline::new();
            for o in &objs {
                b.update(o.clone());
            }
            for o in &updates {
                b.update(o.clone());
            }
            b
        });
        black_box((c.len(), b.len()));
        // Objects replaced by an update that the cache still keeps alive (nobody else holds
        // them: `objs` and `updates` are dropped first, apart from the cache's own copies).
        let live: std::collections::HashSet<*const Obj> =
            c.snapshot().iter().map(Arc::as_ptr).collect();
        drop(updates);
        let mut rows = rows;
        rows.push(("both indexes", "N adds + 2N updates", ours, theirs));
        // `objs` still holds one reference to each original; the baseline holds only current
        // objects, which the cache holds too.
        let (c_objs, stale) = {
            let held = |(i, w): (usize, &std::sync::Weak<Obj>)| {
                w.strong_count() > usize::from(i < n) && !live.contains(&w.as_ptr())
            };
            (
                c.len(),
                written.iter().enumerate().filter(|x| held(*x)).count(),
            )
        };
        for (what, how, ours, theirs) in rows {
            let (o, t) = (per_object(ours, n), per_object(theirs, n));
            println!(
                "| {label} | cache, {what} | {how} | {o:.1} | {:.2}× |",
                o / t
            );
            println!("| {label} | baseline, {what} | {how} | {t:.1} | |");
        }
        println!(
            "| {label} | cache: replaced objects still alive after the 2N updates | | {stale} of {c_objs} live ({:.1}%) | |",
            100.0 * stale as f64 / c_objs as f64
        );
        drop(c);
    }
    println!();
    println!("Objects themselves: {object_size:.0} bytes each (not counted above).");
}
