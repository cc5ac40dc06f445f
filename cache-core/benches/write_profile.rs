//! A fixed write workload for instruction-count profiling (`valgrind --tool=callgrind`), where
//! criterion's timings are too noisy: a 100k-object cache with both workload indexes (or the
//! client-go-style baseline), then a run of single-object updates.
//!
//! `cargo bench -p cache-core --bench write_profile --no-run` builds it; run the binary with
//! `[cache|baseline] [same|moved] [updates]`. The updates run in `updates_cache` /
//! `updates_baseline`, so `--toggle-collect` can count them alone.

mod support;

use std::hint::black_box;
use std::sync::Arc;

use cache_core::Cache;
use support::baseline::Baseline;
use support::workload::{self, NODES, Obj};

const N: usize = 100_000;

#[inline(never)]
fn updates_cache(cache: &Cache<Obj>, objs: &[Arc<Obj>]) {
    for o in objs {
        cache.update(o.clone()).expect("no unique index");
    }
}

#[inline(never)]
fn updates_baseline(base: &Baseline, objs: &[Arc<Obj>]) {
    for o in objs {
        base.update(o.clone());
    }
}

#[inline(never)]
fn gets_cache(cache: &Cache<Obj>, keys: &[cache_core::ObjectKey]) -> usize {
    keys.iter()
        .filter(|k| black_box(cache.get_by_key(k)).is_some())
        .count()
}

#[inline(never)]
fn gets_baseline(base: &Baseline, keys: &[String]) -> usize {
    keys.iter()
        .filter(|k| black_box(base.get_by_key(k)).is_some())
        .count()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let target = args.first().map_or("cache", String::as_str);
    let mode = args.get(1).map_or("same", String::as_str);
    let count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let base = workload::objects(N);
    let order = workload::order(N, 7);
    let next: Vec<Arc<Obj>> = order
        .iter()
        .take(count)
        .map(|&i| {
            let o = &base[i];
            let node = match mode {
                "moved" => {
                    let n: usize = o.node["node-".len()..].parse().unwrap_or(0);
                    Some((n + 1) % NODES)
                }
                _ => None,
            };
            o.next(10 * N as u64 + i as u64, node)
        })
        .collect();
    match (target, mode) {
        ("cache", "get") => {
            let cache = workload::cache();
            cache.replace(base.clone(), None).expect("no unique index");
            let keys: Vec<_> = next.iter().map(|o| cache_core::Object::key(&**o)).collect();
            println!("{}", gets_cache(&cache, &keys));
        }
        ("baseline", "get") => {
            let b = Baseline::new();
            b.replace(base.clone(), None);
            let keys: Vec<_> = next.iter().map(|o| o.key_string()).collect();
            println!("{}", gets_baseline(&b, &keys));
        }
        ("cache", _) => {
            let cache = workload::cache();
            cache.replace(base.clone(), None).expect("no unique index");
            updates_cache(&cache, &next);
            println!("{} objects, {} compactions", cache.len(), cache.compactions());
        }
        _ => {
            let b = Baseline::new();
            b.replace(base.clone(), None);
            updates_baseline(&b, &next);
            println!("{}", b.len());
        }
    }
}
