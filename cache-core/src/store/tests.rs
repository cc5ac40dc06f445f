//! The behaviours client-go's store_test, thread_safe_store_test and index_test pin down, as our
//! own tests.

use std::sync::Arc;

use super::*;
use crate::{Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion};

#[derive(Debug, Clone, PartialEq)]
struct Obj {
    id: String,
    val: String,
    rv: Option<u64>,
}

impl Object for Obj {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::cluster(&self.id)
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.rv.map(Into::into)
    }
}

fn obj(id: &str, val: &str) -> Arc<Obj> {
    Arc::new(Obj {
        id: id.into(),
        val: val.into(),
        rv: None,
    })
}

fn obj_rv(id: &str, rv: u64) -> Arc<Obj> {
    Arc::new(Obj {
        id: id.into(),
        val: String::new(),
        rv: Some(rv),
    })
}

fn key(id: &str) -> ObjectKey {
    ObjectKey::cluster(id)
}

fn plain() -> Cache<Obj> {
    Cache::with_indexers(Indexers::new())
}

/// Comma-separated values: a multi-valued index.
fn by_val() -> Indexers<Obj> {
    Indexers::new().with(Indexer::new("by_val", |o: &Obj| {
        o.val
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    }))
}

fn ids(objs: &[Arc<Obj>]) -> Vec<String> {
    let mut v: Vec<String> = objs.iter().map(|o| o.id.clone()).collect();
    v.sort();
    v
}

fn keys(keys: &[ObjectKey]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(ToString::to_string).collect();
    v.sort();
    v
}

/// Runs client-go's basic store contract against any `Store`.
fn store_contract(store: &dyn Store<Obj>) {
    store.add(obj("foo", "bar")).unwrap();
    assert_eq!(store.get_by_key(&key("foo")).unwrap().val, "bar");
    store.update(obj("foo", "baz")).unwrap();
    assert_eq!(store.get(&obj("foo", "")).unwrap().val, "baz");
    store.delete(obj("foo", "")).unwrap();
    assert!(store.get_by_key(&key("foo")).is_none());

    for id in ["a", "c", "e"] {
        store.add(obj(id, id)).unwrap();
    }
    assert_eq!(ids(&store.list()), ["a", "c", "e"]);
    assert_eq!(keys(&store.list_keys()), ["a", "c", "e"]);

    store
        .replace(vec![obj("foo", "foo"), obj("bar", "bar")], None)
        .unwrap();
    assert_eq!(ids(&store.list()), ["bar", "foo"]);
}

#[test]
fn cache_follows_the_store_contract() {
    store_contract(&plain());
    store_contract(&Cache::with_indexers(by_val()));
}

#[test]
fn index_returns_objects_sharing_a_value() {
    let cache = Cache::with_indexers(by_val());
    for (id, val) in [("a", "b"), ("c", "b"), ("e", "f"), ("g", "h")] {
        cache.add(obj(id, val)).unwrap();
    }
    assert_eq!(
        ids(&cache.index("by_val", &obj("x", "b")).unwrap()),
        ["a", "c"]
    );
    assert_eq!(ids(&cache.index("by_val", &obj("x", "f")).unwrap()), ["e"]);
    assert_eq!(ids(&cache.index("by_val", &obj("x", "h")).unwrap()), ["g"]);
    // Several values: the union, without duplicates.
    assert_eq!(
        ids(&cache.index("by_val", &obj("x", "b,f,b")).unwrap()),
        ["a", "c", "e"]
    );
}

#[test]
fn transaction_reports_failed_positions_and_applies_the_rest() {
    let cache = Cache::with_indexers(
        Indexers::new().with(Indexer::unique("uid", |o: &Obj| [o.val.clone()])),
    );
    // All succeed.
    cache
        .transaction(vec![Change::Add(obj("a", "1")), Change::Add(obj("b", "2"))])
        .unwrap();
    // Mixed: positions 1 and 3 collide with existing uids.
    let err = cache
        .transaction(vec![
            Change::Add(obj("c", "3")),
            Change::Add(obj("d", "1")),
            Change::Update(obj("e", "5")),
            Change::Add(obj("f", "2")),
        ])
        .unwrap_err();
    assert_eq!(err.successful(), [0, 2]);
    assert_eq!(err.total, 4);
    assert!(matches!(
        err.errors[0].1,
        StoreError::UniqueViolation { .. }
    ));
    assert_eq!(ids(&cache.list()), ["a", "b", "c", "e"]);
    // All fail.
    let err = cache
        .transaction(vec![Change::Add(obj("x", "1")), Change::Add(obj("y", "2"))])
        .unwrap_err();
    assert!(err.successful().is_empty());
    assert!(err.to_string().contains("2 of 2 changes failed"));
}

#[test]
fn transaction_publishes_once() {
    let cache = plain();
    let before = cache.snapshot();
    cache
        .transaction((0..100).map(|i| Change::Add(obj(&i.to_string(), ""))))
        .unwrap();
    assert!(before.is_empty(), "a snapshot taken before never changes");
    assert_eq!(cache.len(), 100);
}

#[test]
fn delete_removes_empty_sets_from_index() {
    let cache =
        Cache::with_indexers(Indexers::new().with(Indexer::new("same", |o: &Obj| [o.id.clone()])));
    cache.add(obj("k", "")).unwrap();
    assert_eq!(cache.index_keys("same", "k").unwrap().len(), 1);
    cache.delete(obj("k", "")).unwrap();
    assert!(
        cache.index_values("same").unwrap().is_empty(),
        "no empty set is left behind"
    );
    cache.snapshot().verify_indexes().unwrap();
}

#[test]
fn delete_keeps_non_empty_sets() {
    let cache =
        Cache::with_indexers(Indexers::new().with(Indexer::new("v", |o: &Obj| [o.val.clone()])));
    cache.add(obj("k1", "shared")).unwrap();
    cache.add(obj("k2", "shared")).unwrap();
    cache.delete(obj("k1", "")).unwrap();
    assert_eq!(keys(&cache.index_keys("v", "shared").unwrap()), ["k2"]);
}

#[test]
fn multi_valued_index_follows_every_update() {
    let cache = Cache::with_indexers(by_val());
    let check = |foo: &[&str], bar: &[&str], baz: &[&str]| {
        for (value, want) in [("foo", foo), ("bar", bar), ("baz", baz)] {
            assert_eq!(
                keys(&cache.index_keys("by_val", value).unwrap()),
                want,
                "value {value}"
            );
        }
        cache.snapshot().verify_indexes().unwrap();
    };
    cache.add(obj("key1", "foo")).unwrap();
    cache.add(obj("key2", "bar")).unwrap();
    check(&["key1"], &["key2"], &[]);
    cache.update(obj("key2", "foo,bar")).unwrap();
    check(&["key1", "key2"], &["key2"], &[]);
    cache.update(obj("key1", "foo,bar")).unwrap();
    check(&["key1", "key2"], &["key1", "key2"], &[]);
    cache.add(obj("key3", "foo,bar,baz")).unwrap();
    check(
        &["key1", "key2", "key3"],
        &["key1", "key2", "key3"],
        &["key3"],
    );
    cache.update(obj("key1", "foo")).unwrap();
    check(&["key1", "key2", "key3"], &["key2", "key3"], &["key3"]);
    cache.update(obj("key2", "bar")).unwrap();
    check(&["key1", "key3"], &["key2", "key3"], &["key3"]);
    cache.delete(obj("key1", "")).unwrap();
    check(&["key3"], &["key2", "key3"], &["key3"]);
    cache.delete(obj("key3", "")).unwrap();
    check(&[], &["key2"], &[]);
}

#[test]
fn resource_version_follows_client_go() {
    let cache = plain();
    let rv = |c: &Cache<Obj>| c.resource_version().map(|v| v.to_string());
    assert_eq!(rv(&cache), None);
    cache.add(obj_rv("a", 10)).unwrap();
    assert_eq!(rv(&cache).as_deref(), Some("10"));
    cache.add(obj_rv("b", 10)).unwrap();
    assert_eq!(rv(&cache).as_deref(), Some("10"));
    cache.add(obj_rv("c", 20)).unwrap();
    assert_eq!(rv(&cache).as_deref(), Some("20"));
    cache.delete(obj_rv("c", 30)).unwrap();
    assert_eq!(rv(&cache).as_deref(), Some("30"));
    // An object without a version leaves the store's unchanged.
    cache.add(obj("d", "")).unwrap();
    assert_eq!(rv(&cache).as_deref(), Some("30"));
    cache.add(obj_rv("e", 40)).unwrap();
    assert_eq!(rv(&cache).as_deref(), Some("40"));
    // Delete by key carries no object: unchanged.
    cache.delete_key(&key("e"));
    assert_eq!(rv(&cache).as_deref(), Some("40"));
    // A transaction takes the last object's version, not the highest.
    cache
        .transaction(vec![
            Change::Add(obj_rv("f", 40)),
            Change::Add(obj_rv("g", 30)),
            Change::Add(obj_rv("h", 50)),
        ])
        .unwrap();
    assert_eq!(rv(&cache).as_deref(), Some("50"));
    cache
        .replace(vec![obj_rv("a", 1)], Some("50".into()))
        .unwrap();
    assert_eq!(rv(&cache).as_deref(), Some("50"));
    // Last write wins, even when it is lower.
    cache.add(obj_rv("x", 10)).unwrap();
    cache.delete(obj_rv("x", 20)).unwrap();
    assert_eq!(rv(&cache).as_deref(), Some("20"));
    cache.bookmark(ResourceVersion::new("99"));
    assert_eq!(
        Store::last_sync_resource_version(&cache).unwrap().as_str(),
        "99"
    );
}

#[test]
fn index_values_lists_present_values() {
    let cache =
        Cache::with_indexers(Indexers::new().with(Indexer::new("foo", |o: &Obj| [o.val.clone()])));
    cache.add(obj("one", "bar")).unwrap();
    cache.add(obj("two", "bar")).unwrap();
    cache.add(obj("tre", "biz")).unwrap();
    assert_eq!(cache.index_values("foo").unwrap(), ["bar", "biz"]);
}

#[test]
fn multi_index_keys() {
    let cache = Cache::with_indexers(by_val());
    cache.add(obj("one", "ernie,bert")).unwrap();
    cache.add(obj("two", "bert,oscar")).unwrap();
    cache.add(obj("tre", "ernie,elmo")).unwrap();
    let by = |v: &str| ids(&cache.by_index("by_val", v).unwrap());
    assert_eq!(by("ernie"), ["one", "tre"]);
    assert_eq!(by("bert"), ["one", "two"]);
    assert_eq!(by("elmo"), ["tre"]);
    assert_eq!(by("oscar"), ["two"]);
    assert!(by("elmo1").is_empty());
    cache.delete(obj("tre", "")).unwrap();
    assert_eq!(by("ernie"), ["one"]);
    assert!(by("elmo").is_empty());
    cache.update(obj("two", "oscar")).unwrap();
    assert_eq!(by("bert"), ["one"]);
}

#[test]
fn unknown_index_is_a_typed_error() {
    let cache = Cache::with_indexers(by_val());
    let err = cache.by_index("nope", "x").unwrap_err();
    assert_eq!(
        err,
        StoreError::UnknownIndex {
            name: "nope".into()
        }
    );
    assert!(err.to_string().contains("does not exist"));
    assert!(matches!(
        cache.index("nope", &obj("a", "")),
        Err(StoreError::UnknownIndex { .. })
    ));
    assert!(matches!(
        cache.index_keys("nope", "x"),
        Err(StoreError::UnknownIndex { .. })
    ));
    assert!(matches!(
        cache.index_values("nope"),
        Err(StoreError::UnknownIndex { .. })
    ));
}

#[test]
fn value_type_mismatch_is_a_typed_error() {
    let cache =
        Cache::with_indexers(Indexers::new().with(Indexer::new("len", |o: &Obj| [o.val.len()])));
    cache.add(obj("a", "xyz")).unwrap();
    assert!(matches!(
        cache.by_index("len", "3"),
        Err(StoreError::IndexValueType { .. })
    ));
    assert!(matches!(
        cache.by_index_value("len", &3u32),
        Err(StoreError::IndexValueType { .. })
    ));
    assert_eq!(ids(&cache.by_index_value("len", &3usize).unwrap()), ["a"]);
}

#[test]
fn add_indexers_indexes_existing_objects_and_rejects_conflicts() {
    let cache = plain();
    cache.add(obj("a", "x")).unwrap();
    cache.add(obj("b", "y,x")).unwrap();
    cache.add_indexers(by_val()).unwrap();
    assert_eq!(ids(&cache.by_index("by_val", "x").unwrap()), ["a", "b"]);
    cache.snapshot().verify_indexes().unwrap();

    let err = cache.add_indexers(by_val()).unwrap_err();
    assert_eq!(
        err,
        StoreError::IndexConflict {
            name: "by_val".into()
        }
    );
    assert!(err.to_string().contains("indexer conflict"));
    // A repeated name inside one call is a conflict too, and nothing is added.
    let twice = Indexers::new()
        .with(Indexer::new("n", |o: &Obj| [o.id.clone()]))
        .with(Indexer::new("n", |o: &Obj| [o.id.clone()]));
    assert!(cache.add_indexers(twice).is_err());
    assert_eq!(cache.indexers().names().collect::<Vec<_>>(), ["by_val"]);
}

#[test]
fn typed_handles_query_with_borrowed_values() {
    const VAL: Index<Obj, String> = Index::new("val");
    let cache = Cache::with_indexers(
        Indexers::new().with(Indexer::for_index(VAL, |o: &Obj| [o.val.clone()])),
    );
    cache.add(obj("a", "x")).unwrap();
    cache.add(obj("b", "x")).unwrap();
    let snap = cache.snapshot();
    assert_eq!(ids(&snap.by(VAL, "x")), ["a", "b"]);
    assert_eq!(snap.by_iter(VAL, "x").count(), 2);
    assert_eq!(snap.count_by(VAL, "x"), 2);
    assert_eq!(keys(&snap.keys_by(VAL, "x")), ["a", "b"]);
    assert_eq!(snap.values(VAL), ["x"]);
    assert!(snap.by(VAL, "nothing").is_empty());
    // A handle to an index that is not installed reads as empty.
    const OTHER: Index<Obj, String> = Index::new("other");
    assert!(snap.by(OTHER, "x").is_empty());
}

#[test]
fn unique_index_rejects_a_second_holder_and_loses_nothing() {
    const UID: Index<Obj, String> = Index::new("uid");
    let cache = Cache::with_indexers(
        Indexers::new().with(Indexer::unique("uid", |o: &Obj| [o.val.clone()])),
    );
    cache.add(obj("a", "u1")).unwrap();
    // The same object may be rewritten with its own value.
    cache.update(obj("a", "u1")).unwrap();
    let err = cache.add(obj("b", "u1")).unwrap_err();
    assert!(matches!(&err, StoreError::UniqueViolation { index, .. } if index == "uid"));
    assert!(cache.get_by_key(&key("b")).is_none());
    assert_eq!(cache.by_unique(UID, "u1").unwrap().id, "a");
    // Moving the value frees it.
    cache.update(obj("a", "u2")).unwrap();
    cache.add(obj("b", "u1")).unwrap();
    assert_eq!(cache.by_unique(UID, "u1").unwrap().id, "b");
    // A replace keeps the first holder and reports the rest.
    let err = cache
        .replace(vec![obj("x", "v"), obj("y", "v"), obj("z", "w")], None)
        .unwrap_err();
    let StoreError::Partial(t) = err else {
        panic!("expected a partial replace")
    };
    assert_eq!(t.successful(), [0, 2]);
    assert_eq!(ids(&cache.list()), ["x", "z"]);
}

#[test]
fn snapshots_are_immutable_and_consistent() {
    let cache = Cache::with_indexers(by_val());
    cache.add(obj_rv("a", 1)).unwrap();
    let old = cache.snapshot();
    cache.add(obj_rv("b", 2)).unwrap();
    cache.delete(obj_rv("a", 3)).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old.resource_version().unwrap().as_str(), "1");
    assert!(old.get(&key("a")).is_some());
    let new = cache.snapshot();
    assert_eq!(new.len(), 1);
    assert_eq!(new.resource_version().unwrap().as_str(), "3");
}

#[test]
fn objects_are_shared_not_cloned() {
    let cache = Cache::with_indexers(by_val());
    let a = obj("a", "x");
    cache.add(a.clone()).unwrap();
    assert!(Arc::ptr_eq(&cache.get_by_key(&key("a")).unwrap(), &a));
    assert!(Arc::ptr_eq(&cache.by_index("by_val", "x").unwrap()[0], &a));
}

/// A cache indexed `by_val` holding `n` objects `k0`, `k1`, ... of value `val`, and those
/// objects.
fn filled(n: usize, val: &str) -> (Cache<Obj>, Vec<Arc<Obj>>) {
    let cache = Cache::with_indexers(by_val());
    let objs: Vec<Arc<Obj>> = (0..n).map(|i| obj(&format!("k{i}"), val)).collect();
    for o in &objs {
        cache.add(o.clone()).unwrap();
    }
    (cache, objs)
}

#[test]
fn the_writer_compacts_and_releases_replaced_objects_but_held_snapshots_keep_theirs() {
    let (cache, first) = filled(200, "v");
    let held = cache.snapshot();
    let mut written = Vec::new();
    for round in 0..20 {
        for i in 0..200 {
            let o = obj(&format!("k{i}"), &format!("v{}", round % 3));
            written.push(Arc::downgrade(&o));
            cache.update(o).unwrap();
        }
    }
    assert!(
        cache.compactions() > 0,
        "4,000 updates of 200 objects never compacted"
    );
    // The snapshot taken before is whole: its objects, its index.
    assert_eq!(held.len(), 200);
    for o in &first {
        assert!(Arc::ptr_eq(held.get(&key(&o.id)).unwrap(), o));
    }
    assert_eq!(held.by_index("by_val", "v").unwrap().len(), 200);
    assert!(held.by_index("by_val", "v0").unwrap().is_empty());
    assert_eq!(held.verify_indexes(), Ok(()));
    // Once it is dropped, the writer lets go of what only it kept alive: the objects replaced
    // before the last compaction, and the first ones.
    drop(held);
    for i in 0..5 {
        cache.update(obj(&format!("k{i}"), "w")).unwrap();
    }
    let live: std::collections::HashSet<*const Obj> =
        cache.snapshot().iter().map(Arc::as_ptr).collect();
    let stale = written
        .iter()
        .filter(|w| w.strong_count() > 0 && !live.contains(&w.as_ptr()))
        .count();
    assert!(
        stale <= 200 / 10 + 64 + 5,
        "{stale} replaced objects still alive"
    );
    assert!(first.iter().all(|o| Arc::strong_count(o) == 1));
}

#[test]
fn removed_keys_slots_go_to_new_keys_while_held_snapshots_keep_the_old_keys() {
    // Removing more than a tenth of the keys makes the writer rebuild its key arena and give
    // the freed slots to new keys; a snapshot taken before must still read the keys it had.
    let (cache, first) = filled(1000, "a");
    let held = cache.snapshot();
    for o in &first[..600] {
        cache.delete(o.clone()).unwrap();
    }
    let added: Vec<Arc<Obj>> = (0..600).map(|i| obj(&format!("n{i}"), "b")).collect();
    for o in &added {
        cache.add(o.clone()).unwrap();
    }
    let now = cache.snapshot();
    let mut expected: Vec<String> = first[600..]
        .iter()
        .chain(&added)
        .map(|o| o.id.clone())
        .collect();
    expected.sort();
    let mut got: Vec<String> = now.keys().map(|k| k.name().to_owned()).collect();
    got.sort();
    assert_eq!(got, expected);
    for o in first[600..].iter().chain(&added) {
        assert!(Arc::ptr_eq(now.get(&key(&o.id)).unwrap(), o));
    }
    assert!(now.get(&key("k0")).is_none());
    assert_eq!(now.by_index("by_val", "b").unwrap().len(), 600);
    assert_eq!(now.verify_indexes(), Ok(()));
    // The snapshot from before: every first key, each with its object.
    let mut old: Vec<String> = held.keys().map(|k| k.name().to_owned()).collect();
    old.sort();
    let mut first_ids: Vec<String> = first.iter().map(|o| o.id.clone()).collect();
    first_ids.sort();
    assert_eq!(old, first_ids);
    for (k, o) in held.keys().zip(held.iter()) {
        assert_eq!(k, &o.key());
    }
    assert!(held.get(&key("n0")).is_none());
    assert_eq!(held.by_index("by_val", "a").unwrap().len(), 1000);
    assert_eq!(held.verify_indexes(), Ok(()));
}

#[test]
fn bucket_iteration_yields_every_object_once_and_then_stays_done() {
    // Objects are resolved in batches: buckets of sizes around the batch size, and the
    // iterator called again after its end.
    const VAL: Index<Obj, String> = Index::new("val");
    let cache = Cache::with_indexers(
        Indexers::new().with(Indexer::for_index(VAL, |o: &Obj| [o.val.clone()])),
    );
    for n in [1usize, 15, 16, 17, 33, 100] {
        let value = format!("v{n}");
        for i in 0..n {
            cache.add(obj(&format!("{value}-{i}"), &value)).unwrap();
        }
        let snap = cache.snapshot();
        let mut it = snap.by_iter(VAL, value.as_str());
        let mut seen: Vec<String> = it.by_ref().map(|o| o.id.clone()).collect();
        assert!(it.next().is_none(), "an ended iterator stays ended");
        assert!(it.next().is_none());
        seen.sort();
        let mut want: Vec<String> = (0..n).map(|i| format!("{value}-{i}")).collect();
        want.sort();
        assert_eq!(seen, want, "bucket of {n}");
        assert_eq!(snap.by(VAL, value.as_str()).len(), n);
    }
}

/// An object with several labels, for indexes whose values are borrowed from the object.
#[derive(Debug)]
struct Labelled {
    id: String,
    labels: Vec<(String, String)>,
}

impl Object for Labelled {
    type Key = String;
    fn key(&self) -> String {
        self.id.clone()
    }
}

const LABEL: Index<Labelled, (String, String)> = Index::new("label");
const LABEL_KEY: Index<Labelled, String> = Index::new("label-key");

fn label_pairs(o: &Labelled) -> impl Iterator<Item = (&String, &String)> {
    o.labels.iter().map(|(k, v)| (k, v))
}

fn label_keys(o: &Labelled) -> impl Iterator<Item = &str> {
    o.labels.iter().map(|(k, _)| k.as_str())
}

fn labelled(id: &str, labels: &[(&str, &str)]) -> Arc<Labelled> {
    Arc::new(Labelled {
        id: id.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
}

#[test]
fn index_functions_that_borrow_from_the_object_index_every_value_and_follow_updates() {
    let cache = Cache::with_indexers(
        Indexers::new()
            .with(Indexer::for_index(LABEL, label_pairs))
            .with(Indexer::for_index(LABEL_KEY, label_keys)),
    );
    cache
        .add(labelled("a", &[("app", "web"), ("tier", "front")]))
        .unwrap();
    cache.add(labelled("b", &[("app", "web")])).unwrap();
    cache.add(labelled("c", &[("app", "db")])).unwrap();
    let ids = |v: Vec<Arc<Labelled>>| {
        let mut ids: Vec<String> = v.iter().map(|o| o.id.clone()).collect();
        ids.sort();
        ids
    };
    // Queried with borrowed parts, or with an owned tuple.
    assert_eq!(ids(cache.by(LABEL, ("app", "web"))), ["a", "b"]);
    assert_eq!(
        ids(cache.by(LABEL, &("tier".to_owned(), "front".to_owned()))),
        ["a"]
    );
    assert_eq!(ids(cache.by(LABEL_KEY, "tier")), ["a"]);
    assert!(cache.by(LABEL, ("app", "front")).is_empty());
    // An update moves the object between values.
    cache.update(labelled("a", &[("app", "db")])).unwrap();
    assert_eq!(ids(cache.by(LABEL, ("app", "web"))), ["b"]);
    assert_eq!(ids(cache.by(LABEL, ("app", "db"))), ["a", "c"]);
    assert!(cache.by(LABEL_KEY, "tier").is_empty());
    let snap = cache.snapshot();
    assert_eq!(
        snap.values(LABEL),
        [
            ("app".to_owned(), "db".to_owned()),
            ("app".to_owned(), "web".to_owned())
        ]
    );
    assert_eq!(snap.count_by(LABEL, ("app", "db")), 2);
    assert_eq!(
        snap.by_unique(LABEL, ("app", "web")).map(|o| o.id.clone()),
        Some("b".into())
    );
    snap.verify_indexes().unwrap();
}

#[test]
fn a_unique_index_from_a_borrowing_function_refuses_a_second_holder() {
    fn first_label(o: &Labelled) -> Option<&String> {
        o.labels.first().map(|(_, v)| v)
    }
    const FIRST: Index<Labelled, String> = Index::new("first");
    let cache =
        Cache::with_indexers(Indexers::new().with(Indexer::unique_for_index(FIRST, first_label)));
    cache.add(labelled("a", &[("app", "web")])).unwrap();
    let err = cache.add(labelled("b", &[("app", "web")])).unwrap_err();
    assert!(matches!(err, StoreError::UniqueViolation { .. }), "{err:?}");
    assert_eq!(
        cache.by_unique(FIRST, "web").map(|o| o.id.clone()),
        Some("a".into())
    );
}

#[test]
fn bucket_iteration_yields_each_object_with_its_key() {
    let cache = Cache::with_indexers(Indexers::new().with(Indexer::for_index(LABEL, label_pairs)));
    for id in ["x", "y", "z"] {
        cache.add(labelled(id, &[("app", "web")])).unwrap();
    }
    cache.add(labelled("w", &[("app", "db")])).unwrap();
    let snap = cache.snapshot();
    let mut entries: Vec<(String, String)> = snap
        .by_iter(LABEL, ("app", "web"))
        .with_keys()
        .map(|(key, obj)| (key.clone(), obj.id.clone()))
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [("x", "x"), ("y", "y"), ("z", "z")].map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(snap.by_iter(LABEL, ("app", "none")).with_keys().count(), 0);
}

#[test]
fn a_reader_sees_every_write_and_hands_out_snapshots() {
    let cache = Arc::new(Cache::with_indexers(
        Indexers::new().with(Indexer::for_index(VAL_INDEX, |o: &Obj| [o.val.clone()])),
    ));
    let reader = cache.reader();
    let clone = reader.clone();
    assert!(reader.is_empty());
    cache.add(obj("a", "x")).unwrap();
    assert_eq!(
        reader.get_by_key(&ObjectKey::cluster("a")),
        Some(obj("a", "x"))
    );
    assert_eq!(clone.by(VAL_INDEX, "x").len(), 1);
    let before = reader.snapshot();
    cache.replace(vec![obj("b", "y")], Some(7.into())).unwrap();
    assert_eq!(before.len(), 1, "a snapshot does not change");
    assert_eq!(reader.list_keys(), [ObjectKey::cluster("b")]);
    assert_eq!(reader.resource_version(), Some(7.into()));
    assert_eq!(reader.index_values("val").unwrap(), ["y"]);
    assert!(reader.reads(&cache) && reader.same_cache(&clone));
}

const VAL_INDEX: Index<Obj, String> = Index::new("val");
