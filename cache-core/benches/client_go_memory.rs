//! Our side of the comparison with the real client-go (`bench/compare`), memory: bytes per
//! object that our `Cache` (both indexes) retains beyond the objects themselves, built by
//! `replace(all)` and by one `add` each, as the Go harness' `memory_*` cases. Counted by a
//! global allocator, in a binary of its own so that the counting does not slow the timed
//! cases. The objects exist before and are not counted; `memory_objects` is their own size.
//!
//! Run with `cargo bench -p cache-core --bench client_go_memory`; one JSON line per result goes
//! to the file named by `CLIENT_GO_COMPARE_OUT`, or to standard output. `BENCH_SIZES`
//! restricts the sizes.
#![allow(missing_docs)]

mod support;

use std::alloc::System;
use std::io::Write;
use std::sync::Arc;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

use support::workload::{self, Obj};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes still allocated from what `f` allocated (its result included).
fn retained<R>(f: impl FnOnce() -> R) -> (R, isize) {
    let region = Region::new(GLOBAL);
    let out = f();
    let s = region.change();
    (
        out,
        s.bytes_allocated as isize - s.bytes_deallocated as isize,
    )
}

fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![10_000, 100_000])
}

fn main() {
    let mut out: Box<dyn Write> = match std::env::var_os("CLIENT_GO_COMPARE_OUT") {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("the output file opens"),
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut line = |case: &str, n: usize, value: f64| {
        let json = serde_json::json!({
            "side": "ours", "case": case, "n": n, "unit": "bytes/object", "value": value,
        });
        writeln!(out, "{json}").expect("the output is written");
    };
    for n in sizes() {
        let (objs, bytes) = retained(|| workload::objects(n));
        let rv = Some((n as u64).into());
        let (replaced, by_replace) = retained(|| {
            let c = workload::cache();
            c.replace(objs.clone(), rv).expect("no unique index");
            c
        });
        assert_eq!(replaced.len(), n);
        let (added, by_adds) = retained(|| {
            let c = workload::cache();
            for o in &objs {
                c.add(o.clone()).expect("no unique index");
            }
            c
        });
        assert_eq!(added.len(), n);
        line("memory_replace", n, by_replace as f64 / n as f64);
        line("memory_adds", n, by_adds as f64 / n as f64);
        // The objects, without the Vec that holds them.
        let own = bytes - (objs.capacity() * size_of::<Arc<Obj>>()) as isize;
        line("memory_objects", n, own as f64 / n as f64);
    }
}
