//! One size's data for the cache cases (`cache` and `client_go_cases`, as the Go harness'
//! `Data`): the workload's objects, their next versions, their keys and a random visiting
//! order; and the sizes and labels the cases run under.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cache_core::{Cache, ObjectKey, ResourceVersion};

use super::workload::{self, NODES, Obj, namespace_name, node_name};

/// One size's data, shared by every case.
pub struct Data {
    pub n: usize,
    pub label: String,
    pub base: Vec<Arc<Obj>>,
    /// Same index values as `base`, new resource version.
    pub same: Vec<Arc<Obj>>,
    /// Another node than `base`, new resource version.
    pub moved: Vec<Arc<Obj>>,
    pub keys: Vec<ObjectKey>,
    pub key_strings: Vec<String>,
    pub order: Vec<usize>,
    pub node_values: Vec<String>,
    pub ns_values: Vec<String>,
}

impl Data {
    pub fn new(n: usize) -> Self {
        let base = workload::objects(n);
        let same: Vec<_> = base
            .iter()
            .enumerate()
            .map(|(i, o)| o.next(2 * n as u64 + i as u64, None))
            .collect();
        let moved: Vec<_> = base
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let node: usize = o.node["node-".len()..].parse().unwrap_or(0);
                o.next(4 * n as u64 + i as u64, Some((node + 1 + i % 7) % NODES))
            })
            .collect();
        let keys = base.iter().map(|o| cache_core::Object::key(&**o)).collect();
        let key_strings = base.iter().map(|o| o.key_string()).collect();
        let node_values = workload::order(NODES, 1)
            .into_iter()
            .map(node_name)
            .collect();
        let ns_values = workload::order(workload::NAMESPACES, 2)
            .into_iter()
            .map(namespace_name)
            .collect();
        Self {
            n,
            label: label(n),
            base,
            same,
            moved,
            keys,
            key_strings,
            order: workload::order(n, 3),
            node_values,
            ns_values,
        }
    }

    pub fn rv(&self) -> Option<ResourceVersion> {
        Some((self.n as u64).into())
    }

    /// A cache with both indexes, holding `base`.
    pub fn filled(&self) -> Cache<Obj> {
        let cache = workload::cache();
        cache
            .replace(self.base.clone(), self.rv())
            .expect("no unique index");
        cache
    }
}

/// `10k` for 10000: how a size is named in the cases.
pub fn label(n: usize) -> String {
    if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// The sizes to run: `BENCH_SIZES` (comma-separated), or 10k and 100k.
pub fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![10_000, 100_000])
}

/// Runs `read` while another thread writes flat out with `write(i, flipped)` (object `i` to its
/// other version, or back to its base one when `flipped` is false), and returns its result.
/// Every object is back at its base version at the end.
pub fn with_writer<R: Send>(
    d: &Data,
    write: &(dyn Fn(usize, bool) + Sync),
    writes: &AtomicU64,
    read: impl FnOnce() -> R,
) -> R {
    let stop = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut flip = vec![false; d.n];
            let mut pos = 0;
            let mut count = 0u64;
            started.store(true, Ordering::Release);
            while !stop.load(Ordering::Relaxed) {
                pos = (pos + 1) % d.n;
                let i = d.order[pos];
                flip[i] = !flip[i];
                write(i, flip[i]);
                count += 1;
            }
            // Leave every object at its base version.
            for (i, f) in flip.iter().enumerate() {
                if *f {
                    write(i, false);
                }
            }
            writes.fetch_add(count, Ordering::Relaxed);
        });
        while !started.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_millis(2));
        let out = read();
        stop.store(true, Ordering::Relaxed);
        out
    })
}
