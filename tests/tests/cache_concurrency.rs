//! Readers check that every snapshot they load is internally consistent while a writer churns:
//! single updates that move objects between index values, transactions that delete and re-add,
//! and replaces. Runs for about a second.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Cache, Change, Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion};

#[derive(Debug)]
struct Pod {
    ns: u32,
    id: u32,
    node: u32,
    labels: Vec<u32>,
    rv: u64,
}

impl Object for Pod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::new(&format!("ns{}", self.ns), &format!("pod{}", self.id))
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        Some(self.rv.into())
    }
}

const NODE: Index<Pod, u32> = Index::new("node");
const LABEL: Index<Pod, String> = Index::new("label");

const PODS: u32 = 200;
const NODES: u32 = 8;

fn indexers() -> Indexers<Pod> {
    Indexers::new()
        .with(Indexer::for_index(NODE, |p: &Pod| [p.node]))
        .with(Indexer::for_index(LABEL, |p: &Pod| {
            p.labels.iter().map(|l| format!("l{l}")).collect::<Vec<_>>()
        }))
}

/// A tiny deterministic generator, so that a failure replays.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

fn pod(rng: &mut Rng, id: u32, rv: u64) -> Arc<Pod> {
    let labels = (0..rng.below(3)).map(|_| rng.below(5)).collect();
    Arc::new(Pod {
        ns: id % 4,
        id,
        node: rng.below(NODES),
        labels,
        rv,
    })
}

fn label_values(p: &Pod) -> Vec<String> {
    let mut v: Vec<String> = p.labels.iter().map(|l| format!("l{l}")).collect();
    v.sort();
    v.dedup();
    v
}

/// Everything a reader checks on one snapshot. Returns the snapshot's resource version.
fn check_snapshot(cache: &Cache<Pod>) -> u64 {
    let snap = cache.snapshot();
    let rv = snap
        .resource_version()
        .and_then(ResourceVersion::as_u64)
        .expect("the writer always sets a version");

    // Every object in a bucket has that value; count the memberships seen from the buckets.
    let mut from_buckets: BTreeMap<ObjectKey, usize> = BTreeMap::new();
    for node in snap.values(NODE) {
        let objs = snap.by(NODE, &node);
        assert!(!objs.is_empty(), "empty bucket for node {node} kept");
        let mut keys = Vec::new();
        for o in &objs {
            assert_eq!(o.node, node, "{:?} is under node {node}", o.key());
            assert!(
                snap.get(&o.key()).is_some_and(|s| Arc::ptr_eq(s, o)),
                "{:?} in a bucket is not the snapshot's object",
                o.key()
            );
            keys.push(o.key());
            *from_buckets.entry(o.key()).or_default() += 1;
        }
        keys.sort();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "an object twice in one bucket"
        );
    }
    for label in snap.values(LABEL) {
        for o in snap.by(LABEL, label.as_str()) {
            assert!(
                label_values(&o).contains(&label),
                "{:?} under {label}",
                o.key()
            );
            *from_buckets.entry(o.key()).or_default() += 1;
        }
    }
    // Every object is in exactly the buckets of its values, and its version is not newer than
    // the snapshot's.
    let mut max_rv = 0;
    for o in snap.iter() {
        let memberships = 1 + label_values(o).len();
        assert_eq!(
            from_buckets.remove(&o.key()).unwrap_or(0),
            memberships,
            "{:?} is not in exactly its buckets",
            o.key()
        );
        assert_eq!(snap.count_by(NODE, &o.node), snap.by(NODE, &o.node).len());
        max_rv = max_rv.max(o.rv);
    }
    assert!(
        from_buckets.is_empty(),
        "buckets hold objects that are not in the snapshot: {from_buckets:?}"
    );
    // The writer's last change in every publish is a write of an object carrying the new version,
    // so the snapshot's version is exactly the newest object's.
    assert_eq!(
        rv, max_rv,
        "snapshot version {rv} but newest object {max_rv}"
    );
    snap.verify_indexes().expect("indexes agree with objects");
    rv
}

#[test]
fn readers_see_consistent_snapshots_while_a_writer_churns() {
    let cache = Cache::with_indexers(indexers());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rv = 0u64;
    let initial: Vec<_> = (0..PODS)
        .map(|id| {
            rv += 1;
            pod(&mut rng, id, rv)
        })
        .collect();
    cache.replace(initial, Some(rv.into())).unwrap();

    let stop = AtomicBool::new(false);
    let published = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_millis(1000);
    let seen: Vec<(u64, u64)> = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0u64;
            while Instant::now() < deadline {
                match rng.below(20) {
                    // A transaction: delete one pod, re-add another, update a third last.
                    0..=3 => {
                        let mut changes = Vec::new();
                        let ids = [rng.below(PODS), rng.below(PODS), rng.below(PODS)];
                        rv += 1;
                        changes.push(Change::Delete(pod(&mut rng, ids[0], rv)));
                        rv += 1;
                        changes.push(Change::Add(pod(&mut rng, ids[1], rv)));
                        rv += 1;
                        changes.push(Change::Update(pod(&mut rng, ids[2], rv)));
                        cache.transaction(changes).unwrap();
                    }
                    // A relist of most pods, rarely enough that replaced objects pile up between
                    // relists and the writer compacts its storage while readers read.
                    4 if rng.below(10) == 0 => {
                        let mut items = Vec::new();
                        for id in 0..PODS {
                            if rng.below(10) != 0 {
                                rv += 1;
                                items.push(pod(&mut rng, id, rv));
                            }
                        }
                        let newest = items.iter().map(|p| p.rv).max().unwrap_or(rv);
                        cache.replace(items, Some(newest.into())).unwrap();
                    }
                    // A single update, usually moving the pod to another node.
                    _ => {
                        rv += 1;
                        let id = rng.below(PODS);
                        cache.update(pod(&mut rng, id, rv)).unwrap();
                    }
                }
                n += 1;
            }
            published.store(n, Ordering::Relaxed);
            stop.store(true, Ordering::Release);
        });
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let (mut checks, mut distinct, mut last) = (0u64, 0u64, 0u64);
                    loop {
                        let done = stop.load(Ordering::Acquire);
                        let rv = check_snapshot(&cache);
                        assert!(rv >= last, "a reader went back in time: {rv} after {last}");
                        if rv != last {
                            distinct += 1;
                        }
                        last = rv;
                        checks += 1;
                        if done {
                            return (checks, distinct);
                        }
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let writes = published.load(Ordering::Relaxed);
    assert!(writes > 100, "the writer published only {writes} times");
    assert!(
        cache.compactions() > 0,
        "the writer never compacted in {writes} writes"
    );
    for (checks, distinct) in seen {
        // Each reader must have checked many snapshots, several of them different.
        assert!(checks > 10, "a reader checked only {checks} snapshots");
        assert!(
            distinct > 2,
            "a reader saw only {distinct} distinct snapshots"
        );
    }
    check_snapshot(&cache);
}
