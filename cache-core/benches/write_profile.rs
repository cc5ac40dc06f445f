//! A fixed write workload for instruction-count profiling (`valgrind --tool=callgrind`), where
//! criterion's timings are too noisy: a 100k-object cache with both workload indexes (or the
//! client-go-style baseline), then a run of single-object updates.
//!
//! `cargo bench -p cache-core --bench write_profile --no-run` builds it; run the binary with
//! `[cache|baseline] [same|moved|get] [updates]`, or `[cache|baseline] throughput [seconds]`
//! for one writer thread updating and one reader thread reading, side by side, for that long.
//! The updates run in `updates_cache` / `updates_baseline`, so `--toggle-collect` can count
//! them alone. The read paths per object returned: `[cache|baseline] list [lists]` (each a
//! list of all 100k objects, in `lists_cache` / `lists_baseline`) and `[cache|baseline]
//! by_index [rounds]` (each a `by_index` on every node value, so every object once, in
//! `by_index_cache` / `by_index_baseline`).
//!
//! `ratios [rounds]` times the cache against the baseline instead, interleaved: in each round
//! the same block of updates (values unchanged, node moves) and of gets runs on one, then on
//! the other, in alternating order (the gets also through one snapshot held for the block, as
//! a caller reading many keys can), and a get block runs idle and beside a writer thread; it
//! prints the median of the per-round ratios with their range. A machine whose speed drifts
//! between runs (a shared one) moves both sides of each ratio alike.

mod support;

use std::hint::black_box;
use std::sync::Arc;

use cache_core::Cache;
use support::baseline::Baseline;
use support::data::{Data, with_writer};
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

/// Gets through one snapshot taken before them, as a caller reading many keys can.
#[inline(never)]
fn gets_snapshot(cache: &Cache<Obj>, keys: &[cache_core::ObjectKey]) -> usize {
    let snapshot = cache.snapshot();
    keys.iter()
        .filter(|k| black_box(snapshot.get(k).cloned()).is_some())
        .count()
}

#[inline(never)]
fn gets_baseline(base: &Baseline, keys: &[String]) -> usize {
    keys.iter()
        .filter(|k| black_box(base.get_by_key(k)).is_some())
        .count()
}

#[inline(never)]
fn lists_cache(cache: &Cache<Obj>, times: usize) -> usize {
    (0..times).map(|_| black_box(cache.list()).len()).sum()
}

#[inline(never)]
fn lists_baseline(base: &Baseline, times: usize) -> usize {
    (0..times).map(|_| black_box(base.list()).len()).sum()
}

#[inline(never)]
fn by_index_cache(cache: &Cache<Obj>, values: &[String], rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        for v in values {
            n += black_box(cache.by_index("node", v)).map_or(0, |o| o.len());
        }
    }
    n
}

#[inline(never)]
fn by_index_baseline(base: &Baseline, values: &[String], rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        for v in values {
            n += black_box(base.by_index("node", v)).map_or(0, |o| o.len());
        }
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let target = args.first().map_or("cache", String::as_str);
    if target == "ratios" {
        ratios(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(21));
        return;
    }
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
    if mode == "throughput" {
        throughput(target, &base, count.min(600));
        return;
    }
    let nodes: Vec<String> = (0..NODES).map(workload::node_name).collect();
    match (target, mode) {
        ("cache", "list" | "by_index") => {
            let cache = workload::cache();
            cache.replace(base.clone(), None).expect("no unique index");
            let n = if mode == "list" {
                lists_cache(&cache, count)
            } else {
                by_index_cache(&cache, &nodes, count)
            };
            println!("{n}");
        }
        ("baseline", "list" | "by_index") => {
            let b = Baseline::new();
            b.replace(base.clone(), None);
            let n = if mode == "list" {
                lists_baseline(&b, count)
            } else {
                by_index_baseline(&b, &nodes, count)
            };
            println!("{n}");
        }
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
            println!(
                "{} objects, {} compactions",
                cache.len(),
                cache.compactions()
            );
        }
        _ => {
            let b = Baseline::new();
            b.replace(base.clone(), None);
            updates_baseline(&b, &next);
            println!("{}", b.len());
        }
    }
}

/// One writer thread updating random objects and one reader thread getting random keys, for
/// `seconds`; prints both rates.
fn throughput(target: &str, base: &[Arc<Obj>], seconds: usize) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    let order = workload::order(N, 11);
    let keys: Vec<cache_core::ObjectKey> = order
        .iter()
        .map(|&i| cache_core::Object::key(&*base[i]))
        .collect();
    let strings: Vec<String> = order.iter().map(|&i| base[i].key_string()).collect();
    let cache = workload::cache();
    let b = Baseline::new();
    if target == "cache" {
        cache.replace(base.to_vec(), None).expect("no unique index");
    } else {
        b.replace(base.to_vec(), None);
    }
    let stop = AtomicBool::new(false);
    let (writes, reads) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0u64;
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let o = base[order[i % N]].next(10 * N as u64 + n, None);
                if target == "cache" {
                    cache.update(o).expect("no unique index");
                } else {
                    b.update(o);
                }
                n += 1;
                i += 1;
            }
            writes.store(n, Ordering::Relaxed);
        });
        s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = n as usize % N;
                let found = if target == "cache" {
                    cache.get_by_key(&keys[k]).is_some()
                } else {
                    b.get_by_key(&strings[k]).is_some()
                };
                black_box(found);
                n += 1;
            }
            reads.store(n, Ordering::Relaxed);
        });
        std::thread::sleep(Duration::from_secs(seconds as u64));
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{target}: writer {:.0} updates/s, reader {:.0} gets/s",
        writes.load(Ordering::Relaxed) as f64 / secs,
        reads.load(Ordering::Relaxed) as f64 / secs
    );
}

/// Per-round time ratios, cache ÷ baseline, of blocks of updates and gets run on each in turn,
/// and of gets beside a busy writer ÷ gets idle; prints their medians and ranges.
fn ratios(rounds: usize) {
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    const BLOCK: usize = 20_000;
    let d = Data::new(N);
    let cache = d.filled();
    let b = Baseline::new();
    b.replace(d.base.clone(), d.rv());
    let timed = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed().as_secs_f64()
    };
    // The two sides' times, in alternating order from round to round.
    let pair = |round: usize, ours: &mut dyn FnMut(), theirs: &mut dyn FnMut()| {
        if round.is_multiple_of(2) {
            let t = timed(ours);
            t / timed(theirs)
        } else {
            let t = timed(theirs);
            timed(ours) / t
        }
    };
    // The writer beside the gets puts an object's other version, or its base one back.
    let write_cache = |i: usize, flipped: bool| {
        let o = if flipped { &d.same[i] } else { &d.base[i] };
        cache.update(o.clone()).expect("no unique index");
    };
    let write_base = |i: usize, flipped: bool| {
        b.update(if flipped { &d.same[i] } else { &d.base[i] }.clone());
    };
    let writes = AtomicU64::new(0);
    let names = [
        "update, index values unchanged",
        "update, node moves",
        "get_by_key",
        "get through a held snapshot (cache) ÷ get_by_key (baseline)",
        "reader get, busy writer ÷ idle (cache)",
        "reader get, busy writer ÷ idle (baseline)",
    ];
    let targets = [Some(2.0), Some(2.0), Some(1.2), None, Some(1.3), None];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for (round, block) in d.order.chunks(BLOCK).cycle().take(rounds).enumerate() {
        // Every object is at its base version between the timed blocks.
        for (case, versions) in [&d.same, &d.moved].into_iter().enumerate() {
            let next: Vec<Arc<Obj>> = block.iter().map(|&i| versions[i].clone()).collect();
            let back: Vec<Arc<Obj>> = block.iter().map(|&i| d.base[i].clone()).collect();
            samples[case].push(pair(
                round,
                &mut || updates_cache(&cache, &next),
                &mut || updates_baseline(&b, &next),
            ));
            updates_cache(&cache, &back);
            updates_baseline(&b, &back);
        }
        // The query keys in the order they are asked for, as a caller's own key would be.
        let ck: Vec<_> = block.iter().map(|&i| d.keys[i].clone()).collect();
        let bk: Vec<_> = block.iter().map(|&i| d.key_strings[i].clone()).collect();
        let mut get_cache = || {
            black_box(gets_cache(&cache, &ck));
        };
        let mut get_base = || {
            black_box(gets_baseline(&b, &bk));
        };
        let mut get_snapshot = || {
            black_box(gets_snapshot(&cache, &ck));
        };
        // Once each, untimed, so that no side finds its lines warmer than the other's from the
        // updates above or from the pair before.
        get_cache();
        get_base();
        samples[2].push(pair(round, &mut get_cache, &mut get_base));
        samples[3].push(pair(round, &mut get_snapshot, &mut get_base));
        let idle = timed(&mut get_cache);
        samples[4].push(with_writer(&d, &write_cache, &writes, || timed(&mut get_cache)) / idle);
        let idle = timed(&mut get_base);
        samples[5].push(with_writer(&d, &write_base, &writes, || timed(&mut get_base)) / idle);
    }
    println!(
        "| time ratio ({rounds} rounds of {BLOCK} operations, 100k objects) | median | range | target | rounds within it |"
    );
    println!("|---|---|---|---|---|");
    for ((name, mut s), target) in names.into_iter().zip(samples).zip(targets) {
        s.sort_by(f64::total_cmp);
        let (target, within) = target.map_or((String::new(), String::new()), |t| {
            let n = s.iter().filter(|r| **r <= t).count();
            (format!("≤ {t:.1}×"), format!("{n} of {}", s.len()))
        });
        println!(
            "| {name} | {:.2}× | {:.2}–{:.2}× | {target} | {within} |",
            s[s.len() / 2],
            s[0],
            s[s.len() - 1]
        );
    }
}
