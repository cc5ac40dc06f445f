//! Model test of `Cache<T>`: random sequences of add, update, delete, replace, add_indexers,
//! transaction and bookmark, applied both to the cache and to a plain `BTreeMap` reference. After
//! every step the objects, the resource version and every index are compared with what the
//! reference computes.
//!
//! `PROPTEST_CASES` raises the number of sequences (default 256 here).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cache_core::{
    Cache, Change, Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion, Snapshot, Store,
    StoreError,
};
use proptest::prelude::*;

/// A small object: few keys, few values, so that collisions are frequent.
#[derive(Debug, Clone, PartialEq, Default)]
struct M {
    ns: u8,
    id: u8,
    /// Multi-valued `String` index, possibly empty, possibly with repeats.
    tags: Vec<u8>,
    /// Single-valued `u8` index.
    group: u8,
    /// Unique `String` index: at most one object per value.
    uniq: Option<u8>,
    rv: Option<u64>,
}

impl Object for M {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        if self.ns == 0 {
            ObjectKey::cluster(&format!("m{}", self.id))
        } else {
            ObjectKey::new(&format!("ns{}", self.ns), &format!("m{}", self.id))
        }
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.rv.map(Into::into)
    }
}

const TAG: Index<M, String> = Index::new("tag");
const GROUP: Index<M, u8> = Index::new("group");
const UNIQ: Index<M, String> = Index::new("uniq");
const PARITY: Index<M, bool> = Index::new("parity");

/// The reference's own index functions, written independently of the indexers below.
fn expected_values(index: &str, m: &M) -> Vec<String> {
    let set: BTreeSet<String> = match index {
        "tag" => m.tags.iter().map(|t| format!("t{t}")).collect(),
        "group" => [format!("{:?}", m.group)].into(),
        "uniq" => m.uniq.iter().map(|u| format!("u{u}")).collect(),
        "parity" => [format!("{:?}", m.id.is_multiple_of(2))].into(),
        other => panic!("no index {other}"),
    };
    set.into_iter().collect()
}

/// The indexes a cache starts with; the unique one only when `unique` (a replace takes another
/// path when a unique index is installed).
fn initial_indexers(unique: bool) -> Indexers<M> {
    let indexers = Indexers::new()
        .with(Indexer::for_index(TAG, |m: &M| {
            m.tags.iter().map(|t| format!("t{t}")).collect::<Vec<_>>()
        }))
        .with(Indexer::for_index(GROUP, |m: &M| [m.group]));
    if unique {
        indexers.with(Indexer::unique(UNIQ.name(), |m: &M| {
            m.uniq.map(|u| format!("u{u}"))
        }))
    } else {
        indexers
    }
}

fn parity_indexer(name: &'static str) -> Indexer<M> {
    Indexer::new(name, |m: &M| [m.id.is_multiple_of(2)])
}

#[derive(Debug, Clone)]
enum Op {
    Add(M),
    Update(M),
    Delete(M),
    DeleteKey(M),
    Replace(Vec<M>, Option<u64>),
    Transaction(Vec<(u8, M)>),
    /// 0: `parity` (conflicts once added); 1: `tag` (always conflicts); 2: the same name twice.
    AddIndexers(u8),
    Bookmark(u64),
    /// Copy the live state into fresh storage now (it also happens by itself).
    Compact,
}

/// Namespaces and names the strategy draws from.
const NAMESPACES: u8 = 3;
const IDS: u8 = 6;

fn object() -> impl Strategy<Value = M> {
    (
        0..NAMESPACES,
        0..IDS,
        prop::collection::vec(0..4u8, 0..4),
        0..3u8,
        prop::option::weighted(0.5, 0..4u8),
        prop::option::weighted(0.8, 1..1000u64),
    )
        .prop_map(|(ns, id, tags, group, uniq, rv)| M {
            ns,
            id,
            tags,
            group,
            uniq,
            rv,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => object().prop_map(Op::Add),
        3 => object().prop_map(Op::Update),
        2 => object().prop_map(Op::Delete),
        1 => object().prop_map(Op::DeleteKey),
        1 => (prop::collection::vec(object(), 0..10), prop::option::of(1..1000u64))
            .prop_map(|(v, rv)| Op::Replace(v, rv)),
        2 => prop::collection::vec((0..3u8, object()), 0..8).prop_map(Op::Transaction),
        1 => (0..3u8).prop_map(Op::AddIndexers),
        1 => (1..1000u64).prop_map(Op::Bookmark),
        1 => Just(Op::Compact),
    ]
}

/// The reference: a sorted map, the resource version and the installed index names.
#[derive(Default, Clone)]
struct Model {
    objects: BTreeMap<ObjectKey, M>,
    rv: Option<String>,
    /// Whether the unique index is installed.
    unique: bool,
    /// Indexes added after creation.
    indexes: Vec<&'static str>,
}

impl Model {
    /// The key holding one of `m`'s unique values, other than `m`'s own key.
    fn unique_holder(&self, m: &M) -> Option<ObjectKey> {
        if !self.unique {
            return None;
        }
        let values = expected_values("uniq", m);
        let key = m.key();
        self.objects
            .iter()
            .find(|(k, o)| {
                **k != key
                    && expected_values("uniq", o)
                        .iter()
                        .any(|v| values.contains(v))
            })
            .map(|(k, _)| k.clone())
    }

    fn put(&mut self, m: &M) -> Result<(), ObjectKey> {
        if let Some(holder) = self.unique_holder(m) {
            return Err(holder);
        }
        if let Some(rv) = m.rv {
            self.rv = Some(rv.to_string());
        }
        self.objects.insert(m.key(), m.clone());
        Ok(())
    }

    fn delete(&mut self, m: &M) {
        if let Some(rv) = m.rv {
            self.rv = Some(rv.to_string());
        }
        self.objects.remove(&m.key());
    }
}

fn arc(m: &M) -> Arc<M> {
    Arc::new(m.clone())
}

fn change(kind: u8, m: &M) -> Change<M> {
    match kind {
        0 => Change::Add(arc(m)),
        1 => Change::Update(arc(m)),
        _ => Change::Delete(arc(m)),
    }
}

fn apply(cache: &Cache<M>, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Add(m) | Op::Update(m) => {
            let got = if matches!(op, Op::Add(_)) {
                cache.add(arc(m))
            } else {
                Store::update(cache, arc(m))
            };
            match model.put(m) {
                Ok(()) => prop_assert_eq!(got, Ok(())),
                Err(holder) => match got {
                    Err(StoreError::UniqueViolation {
                        index, holder: h, ..
                    }) => {
                        prop_assert_eq!(index, "uniq");
                        prop_assert_eq!(h, format!("{holder:?}"));
                    }
                    other => prop_assert!(false, "expected a unique violation, got {other:?}"),
                },
            }
        }
        Op::Delete(m) => {
            prop_assert_eq!(cache.delete(arc(m)), Ok(()));
            model.delete(m);
        }
        Op::DeleteKey(m) => {
            cache.delete_key(&m.key());
            model.objects.remove(&m.key());
        }
        Op::Replace(items, rv) => {
            let got = cache.replace(
                items.iter().map(arc).collect(),
                rv.map(ResourceVersion::from),
            );
            let mut next = Model {
                indexes: model.indexes.clone(),
                unique: model.unique,
                ..Model::default()
            };
            let mut failed = Vec::new();
            for (i, m) in items.iter().enumerate() {
                if next.unique_holder(m).is_some() {
                    failed.push(i);
                } else {
                    next.objects.insert(m.key(), m.clone());
                }
            }
            next.rv = rv.map(|r| r.to_string());
            *model = next;
            match got {
                Ok(()) => prop_assert!(failed.is_empty()),
                Err(StoreError::Partial(t)) => {
                    prop_assert_eq!(t.total, items.len());
                    prop_assert_eq!(t.errors.iter().map(|e| e.0).collect::<Vec<_>>(), failed);
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
        Op::Transaction(changes) => {
            let got = cache.transaction(changes.iter().map(|(k, m)| change(*k, m)));
            let mut failed = Vec::new();
            for (i, (kind, m)) in changes.iter().enumerate() {
                if *kind < 2 {
                    if model.put(m).is_err() {
                        failed.push(i);
                    }
                } else {
                    model.delete(m);
                }
            }
            match got {
                Ok(()) => prop_assert!(failed.is_empty()),
                Err(t) => {
                    prop_assert_eq!(t.total, changes.len());
                    prop_assert_eq!(t.errors.iter().map(|e| e.0).collect::<Vec<_>>(), failed);
                }
            }
        }
        Op::AddIndexers(which) => {
            let (indexers, conflict, names) = match which {
                0 => (
                    Indexers::new().with(parity_indexer("parity")),
                    model.indexes.contains(&"parity"),
                    vec!["parity"],
                ),
                1 => (
                    Indexers::new().with(Indexer::new("tag", |m: &M| [m.id])),
                    true,
                    vec![],
                ),
                _ => (
                    Indexers::new()
                        .with(parity_indexer("twice"))
                        .with(parity_indexer("twice")),
                    true,
                    vec![],
                ),
            };
            let got = cache.add_indexers(indexers);
            if conflict {
                prop_assert!(
                    matches!(got, Err(StoreError::IndexConflict { .. })),
                    "expected a conflict, got {got:?}"
                );
            } else {
                prop_assert_eq!(got, Ok(()));
                model.indexes.extend(names);
            }
        }
        Op::Bookmark(rv) => {
            cache.bookmark((*rv).into());
            model.rv = Some(rv.to_string());
        }
        Op::Compact => cache.compact(),
    }
    Ok(())
}

/// Keys of the model's objects holding `value` in `index`, in key order.
fn expected_bucket(model: &Model, index: &str, value: &str) -> Vec<ObjectKey> {
    model
        .objects
        .iter()
        .filter(|(_, m)| expected_values(index, m).iter().any(|v| v == value))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The keys of `objs`, sorted: index queries answer in no particular order.
fn keys_of(objs: &[Arc<M>]) -> Vec<ObjectKey> {
    sorted(objs.iter().map(|o| o.key()).collect())
}

fn sorted<K: Ord>(mut keys: Vec<K>) -> Vec<K> {
    keys.sort();
    keys
}

/// Everything a cache answers, against the model: the current snapshot, then the cache's own
/// shorthand reads.
fn check(cache: &Cache<M>, model: &Model) -> Result<(), TestCaseError> {
    let snap: Arc<Snapshot<M>> = cache.snapshot();
    check_snapshot(&snap, model)?;
    let mut keys = cache.list_keys();
    keys.sort();
    prop_assert_eq!(keys, model.objects.keys().cloned().collect::<Vec<_>>());
    for m in model.objects.values() {
        prop_assert_eq!(cache.get(m).map(|o| (*o).clone()), Some(m.clone()));
    }
    let indexers = cache.indexers();
    prop_assert_eq!(
        indexers.names().collect::<Vec<_>>(),
        snap.index_names().collect::<Vec<_>>()
    );
    Ok(())
}

/// Everything a snapshot answers, against the model.
fn check_snapshot(snap: &Snapshot<M>, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(snap.verify_indexes(), Ok(()));

    // Objects.
    prop_assert_eq!(snap.len(), model.objects.len());
    let mut listed: Vec<M> = snap.list().iter().map(|o| (**o).clone()).collect();
    listed.sort_by_key(|m| m.key());
    let expected: Vec<M> = model.objects.values().cloned().collect();
    prop_assert_eq!(&listed, &expected);
    let mut keys: Vec<ObjectKey> = snap.keys().cloned().collect();
    keys.sort();
    prop_assert_eq!(keys, model.objects.keys().cloned().collect::<Vec<_>>());
    for (k, m) in &model.objects {
        prop_assert_eq!(snap.get(k).map(|o| (**o).clone()), Some(m.clone()));
    }
    // Every other key the strategy can make, removed or never added (or added only after
    // this snapshot), is absent.
    for ns in 0..NAMESPACES {
        for id in 0..IDS {
            let k = M {
                ns,
                id,
                ..M::default()
            }
            .key();
            if !model.objects.contains_key(&k) {
                prop_assert!(snap.get(&k).is_none(), "{} is absent", k);
            }
        }
    }
    prop_assert_eq!(
        snap.resource_version().map(|r| r.as_str().to_owned()),
        model.rv.clone()
    );

    // Every index: its values, and the objects under each value.
    let mut names: Vec<&str> = vec!["tag", "group"];
    if model.unique {
        names.push("uniq");
    }
    names.extend(model.indexes.iter().copied());
    prop_assert_eq!(snap.index_names().collect::<Vec<_>>(), names.clone());
    for &name in &names {
        let values: BTreeSet<String> = model
            .objects
            .values()
            .flat_map(|m| expected_values(name, m))
            .collect();
        for value in &values {
            let want = expected_bucket(model, name, value);
            let got = match name {
                "tag" => {
                    // The objects themselves, not only their keys, are the current ones.
                    let mut objs: Vec<M> = snap
                        .by(TAG, value.as_str())
                        .iter()
                        .map(|o| (**o).clone())
                        .collect();
                    objs.sort_by_key(|m| m.key());
                    let want_objs: Vec<M> = want.iter().map(|k| model.objects[k].clone()).collect();
                    prop_assert_eq!(objs, want_objs);
                    keys_of(&snap.by(TAG, value.as_str()))
                }
                "uniq" => keys_of(&snap.by(UNIQ, value.as_str())),
                "group" => keys_of(&snap.by(GROUP, &value.parse::<u8>().unwrap())),
                _ => keys_of(&snap.by(PARITY, &(value == "true"))),
            };
            prop_assert_eq!(&got, &want, "index {} value {}", name, value);
        }
        match name {
            "tag" | "uniq" => {
                let index = if name == "tag" { TAG } else { UNIQ };
                prop_assert_eq!(
                    snap.values(index),
                    values.iter().cloned().collect::<Vec<_>>()
                );
                prop_assert_eq!(
                    snap.index_values(name).unwrap(),
                    values.iter().cloned().collect::<Vec<_>>()
                );
                for value in &values {
                    let want = expected_bucket(model, name, value);
                    prop_assert_eq!(keys_of(&snap.by_index(name, value).unwrap()), want.clone());
                    prop_assert_eq!(sorted(snap.index_keys(name, value).unwrap()), want.clone());
                    prop_assert_eq!(sorted(snap.keys_by(index, value.as_str())), want.clone());
                    prop_assert_eq!(snap.count_by(index, value.as_str()), want.len());
                    prop_assert_eq!(
                        sorted(
                            snap.by_iter(index, value.as_str())
                                .map(|o| o.key())
                                .collect::<Vec<_>>()
                        ),
                        want.clone()
                    );
                }
                prop_assert!(snap.by_index(name, "absent").unwrap().is_empty());
            }
            "group" => {
                let got: Vec<String> = snap.values(GROUP).iter().map(|v| v.to_string()).collect();
                prop_assert_eq!(got, values.iter().cloned().collect::<Vec<_>>());
            }
            _ => {
                let got: Vec<String> = snap.values(PARITY).iter().map(|v| v.to_string()).collect();
                prop_assert_eq!(got, values.iter().cloned().collect::<Vec<_>>());
            }
        }
    }
    // Unique lookups agree with the model.
    for u in (0..4u8).filter(|_| model.unique) {
        let value = format!("u{u}");
        let want = expected_bucket(model, "uniq", &value);
        prop_assert!(want.len() <= 1);
        prop_assert_eq!(
            snap.by_unique(UNIQ, value.as_str()).map(|o| o.key()),
            want.first().cloned()
        );
    }
    // client-go's Index(name, obj): every object sharing a value with a probe, once each.
    for probe in model.objects.values().take(2) {
        let mut want: BTreeSet<ObjectKey> = BTreeSet::new();
        for v in expected_values("tag", probe) {
            want.extend(expected_bucket(model, "tag", &v));
        }
        let got = snap.index("tag", probe).unwrap();
        prop_assert_eq!(got.len(), want.len(), "an object twice");
        prop_assert_eq!(keys_of(&got), want.into_iter().collect::<Vec<_>>());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn cache_agrees_with_a_btreemap_model(
        unique in any::<bool>(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let cache = Cache::with_indexers(initial_indexers(unique));
        let mut model = Model { unique, ..Model::default() };
        check(&cache, &model)?;
        for op in &ops {
            apply(&cache, &mut model, op)?;
            check(&cache, &model)?;
        }
    }

    /// Snapshots taken along the way keep answering exactly as the cache did when they were
    /// taken, however many writes and compactions (forced, and by themselves once replaced
    /// objects pile up) follow.
    #[test]
    fn held_snapshots_keep_their_state_across_writes_and_compactions(
        unique in any::<bool>(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let cache = Cache::with_indexers(initial_indexers(unique));
        let mut model = Model { unique, ..Model::default() };
        let mut held = vec![(cache.snapshot(), model.clone())];
        for op in &ops {
            apply(&cache, &mut model, op)?;
            held.push((cache.snapshot(), model.clone()));
        }
        for (snap, model) in &held {
            check_snapshot(snap, model)?;
        }
        check(&cache, &model)?;
    }
}
