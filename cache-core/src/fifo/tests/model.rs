//! Model tests: random operation sequences on [`DeltaFifo`] and [`RealFifo`], checked step by
//! step against small reference models (plain vectors, linear scans), and a convergence
//! property: whatever events a watch misses, a relist and a drain leave the consumer's cache
//! equal to the source.
//!
//! `PROPTEST_CASES=N` runs more cases (256 by default).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use proptest::prelude::*;

use super::*;
use crate::Store;

const KEYS: u8 = 5;

fn name(key: u8) -> String {
    format!("k{key}")
}

fn obj(key: u8, val: u64) -> Arc<Obj> {
    o(&name(key), val)
}

#[derive(Debug, Clone)]
enum Op {
    Add(u8, u64),
    Update(u8, u64),
    Delete(u8, u64),
    Replace(Vec<(u8, u64)>),
    Resync,
    Bookmark(u64),
    /// Pop (a DeltaFifo key, or a RealFifo batch of at most this many deltas).
    Pop(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    let val = 0..1000u64;
    prop_oneof![
        3 => (key.clone(), val.clone()).prop_map(|(k, v)| Op::Add(k, v)),
        3 => (key.clone(), val.clone()).prop_map(|(k, v)| Op::Update(k, v)),
        3 => (key.clone(), val.clone()).prop_map(|(k, v)| Op::Delete(k, v)),
        2 => prop::collection::vec((key, val.clone()), 0..6).prop_map(Op::Replace),
        1 => Just(Op::Resync),
        1 => val.prop_map(Op::Bookmark),
        5 => (1..5usize).prop_map(Op::Pop),
    ]
}

/// What the consumer does with popped deltas: apply them to its cache, as an informer does.
fn apply_to_cache(cache: &Cache<Obj>, deltas: &[Delta<Obj>]) {
    for delta in deltas {
        match delta {
            Delta::Added(o) | Delta::Updated(o) | Delta::Replaced(o) | Delta::Sync(o) => {
                cache.update(o.clone()).unwrap();
            }
            Delta::Deleted(d) => cache.delete_key(&d.key()),
            Delta::ReplacedAll {
                resource_version,
                objects,
            } => cache
                .replace(objects.clone(), resource_version.clone())
                .unwrap(),
            Delta::SyncAll | Delta::Bookmark { .. } => {}
        }
    }
}

fn apply_to_map(map: &mut BTreeMap<ObjectKey, Arc<Obj>>, deltas: &[Delta<Obj>]) {
    for delta in deltas {
        match delta {
            Delta::Added(o) | Delta::Updated(o) | Delta::Replaced(o) | Delta::Sync(o) => {
                map.insert(o.key(), o.clone());
            }
            Delta::Deleted(d) => {
                map.remove(&d.key());
            }
            Delta::ReplacedAll { objects, .. } => {
                *map = objects.iter().map(|o| (o.key(), o.clone())).collect();
            }
            Delta::SyncAll | Delta::Bookmark { .. } => {}
        }
    }
}

/// What one pop hands out: the deltas and whether they belong to the first list.
type Popped = (Vec<Delta<Obj>>, bool);

/// Checks a pop against the model's: both found nothing, or both popped the same deltas (then
/// applied to the model's known objects).
fn check_pop(
    step: usize,
    want: Option<Popped>,
    got: Option<Result<Popped, Closed>>,
    model_known: &mut BTreeMap<ObjectKey, Arc<Obj>>,
) -> Result<(), TestCaseError> {
    match (want, got) {
        (None, None) => {}
        (Some(want), Some(Ok(got))) => {
            prop_assert_eq!(&got, &want, "step {}", step);
            apply_to_map(model_known, &want.0);
        }
        (want, got) => {
            prop_assert!(false, "step {}: model {:?}, queue {:?}", step, want, got)
        }
    }
    Ok(())
}

fn cache_contents(cache: &Cache<Obj>) -> BTreeMap<ObjectKey, Arc<Obj>> {
    cache.list().into_iter().map(|o| (o.key(), o)).collect()
}

fn tombstone(key: ObjectKey, object: Option<Arc<Obj>>) -> Delta<Obj> {
    Delta::Deleted(DeletedObject::Tombstone(DeletedFinalStateUnknown {
        key,
        object,
    }))
}

/// client-go's sync rule, written out.
#[derive(Debug, Default)]
struct Sync {
    populated: bool,
    initial: usize,
}

impl Sync {
    fn synced(&self) -> bool {
        self.populated && self.initial == 0
    }
}

/// The DeltaFifo model: a vector of (key, deltas) in queue order.
struct DeltaModel {
    queue: Vec<(ObjectKey, Vec<Delta<Obj>>)>,
    emit_replaced: bool,
    sync: Sync,
}

impl DeltaModel {
    fn position(&self, key: &ObjectKey) -> Option<usize> {
        self.queue.iter().position(|(k, _)| k == key)
    }

    fn push(&mut self, key: ObjectKey, delta: Delta<Obj>) {
        match self.position(&key) {
            Some(i) => {
                let deltas = &mut self.queue[i].1;
                let both_deletes =
                    deltas.last().is_some_and(Delta::is_deleted) && delta.is_deleted();
                if both_deletes {
                    let older_is_tombstone = matches!(
                        deltas.last(),
                        Some(Delta::Deleted(DeletedObject::Tombstone(_)))
                    );
                    if older_is_tombstone {
                        *deltas.last_mut().unwrap() = delta;
                    }
                } else {
                    deltas.push(delta);
                }
            }
            None => self.queue.push((key, vec![delta])),
        }
    }

    fn write(&mut self, delta: Delta<Obj>) {
        self.sync.populated = true;
        let key = delta.key().unwrap();
        self.push(key, delta);
    }

    fn delete(&mut self, known: &BTreeMap<ObjectKey, Arc<Obj>>, obj: Arc<Obj>) {
        self.sync.populated = true;
        let key = obj.key();
        if self.position(&key).is_some() || known.contains_key(&key) {
            self.push(key, deleted(obj));
        }
    }

    fn replace(&mut self, known: &BTreeMap<ObjectKey, Arc<Obj>>, list: Vec<Arc<Obj>>) {
        let mut listed: Vec<ObjectKey> = Vec::new();
        for o in list {
            if !listed.contains(&o.key()) {
                listed.push(o.key());
            }
            let delta = if self.emit_replaced {
                Delta::Replaced(o.clone())
            } else {
                Delta::Sync(o.clone())
            };
            self.push(o.key(), delta);
        }
        let mut deletions = 0;
        let queued: Vec<ObjectKey> = self.queue.iter().map(|(k, _)| k.clone()).collect();
        for key in &queued {
            if listed.contains(key) {
                continue;
            }
            let i = self.position(key).unwrap();
            let last = self.queue[i].1.last().unwrap().object().cloned();
            deletions += 1;
            self.push(key.clone(), tombstone(key.clone(), last));
        }
        for (key, o) in known {
            if !listed.contains(key) && !queued.contains(key) {
                deletions += 1;
                self.push(key.clone(), tombstone(key.clone(), Some(o.clone())));
            }
        }
        if !self.sync.populated {
            self.sync.populated = true;
            self.sync.initial = listed.len() + deletions;
        }
    }

    fn resync(&mut self, known: &BTreeMap<ObjectKey, Arc<Obj>>, order: &[ObjectKey]) {
        for key in order {
            if self.position(key).is_none() {
                self.push(key.clone(), Delta::Sync(known[key].clone()));
            }
        }
    }

    fn pop(&mut self) -> Option<(Vec<Delta<Obj>>, bool)> {
        if self.queue.is_empty() {
            return None;
        }
        let (_, deltas) = self.queue.remove(0);
        let initial = !self.sync.synced();
        self.sync.initial = self.sync.initial.saturating_sub(1);
        Some((deltas, initial))
    }
}

fn run_delta_fifo(
    ops: Vec<Op>,
    emit_replaced: bool,
    with_known: bool,
) -> Result<(), TestCaseError> {
    let cache = Arc::new(Cache::with_indexers(Indexers::new()));
    let fifo = DeltaFifo::with_options(DeltaFifoOptions {
        known_objects: with_known.then(|| cache.clone() as Arc<dyn KnownObjects<Obj>>),
        emit_replaced,
        transformer: None,
    });
    let mut model = DeltaModel {
        queue: Vec::new(),
        emit_replaced,
        sync: Sync::default(),
    };
    let mut model_known: BTreeMap<ObjectKey, Arc<Obj>> = BTreeMap::new();
    let no_known = BTreeMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        let known_view = if with_known { &model_known } else { &no_known };
        match op {
            Op::Add(k, v) => {
                fifo.add(obj(k, v)).unwrap();
                model.write(Delta::Added(obj(k, v)));
            }
            Op::Update(k, v) => {
                fifo.update(obj(k, v)).unwrap();
                model.write(Delta::Updated(obj(k, v)));
            }
            Op::Delete(k, v) => {
                fifo.delete(obj(k, v)).unwrap();
                model.delete(known_view, obj(k, v));
            }
            Op::Replace(items) => {
                let list: Vec<Arc<Obj>> = items.iter().map(|(k, v)| obj(*k, *v)).collect();
                fifo.replace(list.clone(), None).unwrap();
                model.replace(known_view, list);
            }
            Op::Resync => {
                let order = if with_known {
                    cache.list_keys()
                } else {
                    Vec::new()
                };
                fifo.resync().unwrap();
                model.resync(known_view, &order);
            }
            Op::Bookmark(v) => fifo.bookmark(v.into()),
            Op::Pop(_) => {
                let want = model.pop();
                let got = fifo
                    .pop(|deltas, initial| {
                        apply_to_cache(&cache, deltas.as_slice());
                        (deltas.into_vec(), initial)
                    })
                    .now_or_never();
                check_pop(step, want, got, &mut model_known)?;
            }
        }
        prop_assert_eq!(fifo.has_synced(), model.sync.synced(), "step {}", step);
        let model_keys: Vec<ObjectKey> = model.queue.iter().map(|(k, _)| k.clone()).collect();
        prop_assert_eq!(fifo.list_keys(), model_keys, "step {}", step);
        prop_assert_eq!(&cache_contents(&cache), &model_known, "step {}", step);
    }
    Ok(())
}

/// The RealFifo model: a plain vector of deltas.
struct RealModel {
    items: Vec<Delta<Obj>>,
    atomic: bool,
    sync: Sync,
}

impl RealModel {
    fn write(&mut self, delta: Delta<Obj>) {
        self.sync.populated = true;
        self.items.push(delta);
    }

    fn replace(&mut self, known: &BTreeMap<ObjectKey, Arc<Obj>>, list: Vec<Arc<Obj>>, rv: u64) {
        if self.atomic {
            self.items.push(Delta::ReplacedAll {
                resource_version: Some(rv.into()),
                objects: list,
            });
        } else {
            let listed: Vec<ObjectKey> = list.iter().map(|o| o.key()).collect();
            let mut queued: Vec<ObjectKey> = Vec::new();
            for d in &self.items {
                let key = d.key().unwrap();
                if !queued.contains(&key) {
                    queued.push(key);
                }
            }
            let mut deletes = Vec::new();
            for key in &queued {
                let last = self
                    .items
                    .iter()
                    .rev()
                    .find(|d| d.key().as_ref() == Some(key));
                let last = last.unwrap();
                if !listed.contains(key) && !last.is_deleted() {
                    deletes.push(tombstone(key.clone(), last.object().cloned()));
                }
            }
            for (key, o) in known {
                if !listed.contains(key) && !queued.contains(key) {
                    deletes.push(tombstone(key.clone(), Some(o.clone())));
                }
            }
            self.items.extend(deletes);
            self.items.extend(list.into_iter().map(Delta::Replaced));
        }
        if !self.sync.populated {
            self.sync.populated = true;
            self.sync.initial = self.items.len();
        }
    }

    fn resync(&mut self, known: &BTreeMap<ObjectKey, Arc<Obj>>, order: &[ObjectKey]) {
        if self.atomic {
            self.items.push(Delta::SyncAll);
            return;
        }
        for key in order {
            if !self.items.iter().any(|d| d.key().as_ref() == Some(key)) {
                self.items.push(Delta::Sync(known[key].clone()));
            }
        }
    }

    fn pop_batch(&mut self, max: usize) -> Option<(Vec<Delta<Obj>>, bool)> {
        if self.items.is_empty() {
            return None;
        }
        let limit = if self.sync.initial > 0 {
            max.min(self.sync.initial)
        } else {
            max
        };
        let mut n = 1;
        if self.items[0].key().is_some() {
            while n < limit && n < self.items.len() {
                let Some(key) = self.items[n].key() else {
                    break;
                };
                if self.items[..n]
                    .iter()
                    .any(|d| d.key().as_ref() == Some(&key))
                {
                    break;
                }
                n += 1;
            }
        }
        let batch: Vec<Delta<Obj>> = self.items.drain(..n).collect();
        let initial = !self.sync.synced();
        self.sync.initial = self.sync.initial.saturating_sub(batch.len());
        Some((batch, initial))
    }
}

fn run_real_fifo(ops: Vec<Op>, atomic: bool) -> Result<(), TestCaseError> {
    let cache = Arc::new(Cache::with_indexers(Indexers::new()));
    let fifo = if atomic {
        RealFifo::new()
    } else {
        RealFifo::per_object(cache.clone())
    };
    let mut model = RealModel {
        items: Vec::new(),
        atomic,
        sync: Sync::default(),
    };
    let mut model_known: BTreeMap<ObjectKey, Arc<Obj>> = BTreeMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Add(k, v) => {
                fifo.add(obj(k, v)).unwrap();
                model.write(Delta::Added(obj(k, v)));
            }
            Op::Update(k, v) => {
                fifo.update(obj(k, v)).unwrap();
                model.write(Delta::Updated(obj(k, v)));
            }
            Op::Delete(k, v) => {
                fifo.delete(obj(k, v)).unwrap();
                model.write(deleted(obj(k, v)));
            }
            Op::Replace(items) => {
                let list: Vec<Arc<Obj>> = items.iter().map(|(k, v)| obj(*k, *v)).collect();
                fifo.replace(list.clone(), Some(step.to_string().as_str().into()))
                    .unwrap();
                model.replace(&model_known, list, step as u64);
            }
            Op::Resync => {
                let order = cache.list_keys();
                fifo.resync().unwrap();
                model.resync(&model_known, &order);
            }
            Op::Bookmark(v) => {
                fifo.bookmark(v.into());
                if atomic {
                    model.items.push(Delta::Bookmark {
                        resource_version: v.into(),
                    });
                }
            }
            Op::Pop(max) => {
                let want = model.pop_batch(max);
                let got = fifo
                    .pop_batch(max, |batch, initial| {
                        apply_to_cache(&cache, &batch);
                        (batch, initial)
                    })
                    .now_or_never();
                check_pop(step, want, got, &mut model_known)?;
            }
        }
        prop_assert_eq!(fifo.has_synced(), model.sync.synced(), "step {}", step);
        prop_assert_eq!(&fifo.queued(), &model.items, "step {}", step);
        prop_assert_eq!(&cache_contents(&cache), &model_known, "step {}", step);
    }
    Ok(())
}

/// What happens at the source, and whether the queue hears of it.
#[derive(Debug, Clone)]
enum SourceOp {
    /// Set a key at the source; the watch delivers it unless `missed`.
    Put {
        key: u8,
        missed: bool,
    },
    /// Delete a key at the source (if present); the watch delivers it unless `missed`.
    Remove {
        key: u8,
        missed: bool,
    },
    /// A relist.
    Relist,
    /// A relist while the consumer is processing a pop.
    RelistDuringPop,
    Resync,
    Pop,
}

fn source_op() -> impl Strategy<Value = SourceOp> {
    prop_oneof![
        4 => (0..KEYS, prop::bool::weighted(0.3)).prop_map(|(key, missed)| SourceOp::Put { key, missed }),
        3 => (0..KEYS, prop::bool::weighted(0.3)).prop_map(|(key, missed)| SourceOp::Remove { key, missed }),
        1 => Just(SourceOp::Relist),
        1 => Just(SourceOp::RelistDuringPop),
        1 => Just(SourceOp::Resync),
        4 => Just(SourceOp::Pop),
    ]
}

/// Drives a queue from a simulated source whose watch misses some events, applying what is
/// popped to a cache; after a final relist and a drain, the cache equals the source.
fn converges<Q: Queue<Obj>>(
    queue: &Q,
    cache: &Cache<Obj>,
    ops: Vec<SourceOp>,
) -> Result<(), TestCaseError> {
    let mut source: BTreeMap<u8, Arc<Obj>> = BTreeMap::new();
    let mut version = 0u64;
    let truth = |source: &BTreeMap<u8, Arc<Obj>>| source.values().cloned().collect::<Vec<_>>();
    let pop = |relist: Option<Vec<Arc<Obj>>>| {
        queue
            .pop_batch(3, |batch, _| {
                if let Some(list) = relist {
                    queue.replace(list, None).unwrap();
                }
                apply_to_cache(cache, &batch);
            })
            .now_or_never()
    };
    for op in ops {
        match op {
            SourceOp::Put { key, missed } => {
                version += 1;
                let o = obj(key, version);
                let existed = source.insert(key, o.clone()).is_some();
                if !missed {
                    if existed {
                        queue.update(o).unwrap();
                    } else {
                        queue.add(o).unwrap();
                    }
                }
            }
            SourceOp::Remove { key, missed } => {
                if let Some(old) = source.remove(&key)
                    && !missed
                {
                    queue.delete(old).unwrap();
                }
            }
            SourceOp::Relist => queue.replace(truth(&source), None).unwrap(),
            SourceOp::RelistDuringPop => {
                if pop(Some(truth(&source))).is_none() {
                    queue.replace(truth(&source), None).unwrap();
                }
            }
            SourceOp::Resync => queue.resync().unwrap(),
            SourceOp::Pop => {
                let _ = pop(None);
            }
        }
    }
    // The last relist lands while the consumer is processing, when there is anything to
    // process: what is in flight must be reconciled as if it were still queued.
    if pop(Some(truth(&source))).is_none() {
        queue.replace(truth(&source), None).unwrap();
    }
    let mut rounds = 0;
    while pop(None).is_some() {
        rounds += 1;
        prop_assert!(rounds < 10_000, "the queue never drains");
    }
    let want: BTreeMap<ObjectKey, Arc<Obj>> =
        source.values().map(|o| (o.key(), o.clone())).collect();
    prop_assert_eq!(cache_contents(cache), want);
    Ok(())
}

proptest! {
    #[test]
    fn delta_fifo_matches_its_model(
        ops in prop::collection::vec(op(), 0..60),
        emit_replaced: bool,
        with_known: bool,
    ) {
        run_delta_fifo(ops, emit_replaced, with_known)?;
    }

    #[test]
    fn real_fifo_matches_its_model(ops in prop::collection::vec(op(), 0..60), atomic: bool) {
        run_real_fifo(ops, atomic)?;
    }

    #[test]
    fn delta_fifo_converges_despite_missed_events(ops in prop::collection::vec(source_op(), 0..60)) {
        let cache = Arc::new(Cache::with_indexers(Indexers::new()));
        let fifo = DeltaFifo::with_options(DeltaFifoOptions {
            known_objects: Some(cache.clone()),
            ..Default::default()
        });
        converges(&fifo, &cache, ops)?;
    }

    #[test]
    fn real_fifo_converges_despite_missed_events(ops in prop::collection::vec(source_op(), 0..60)) {
        let cache = Arc::new(Cache::with_indexers(Indexers::new()));
        converges(&RealFifo::per_object(cache.clone()), &cache, ops)?;
    }

    #[test]
    fn atomic_real_fifo_converges_despite_missed_events(
        ops in prop::collection::vec(source_op(), 0..60),
    ) {
        let cache = Arc::new(Cache::with_indexers(Indexers::new()));
        converges(&RealFifo::new(), &cache, ops)?;
    }
}
