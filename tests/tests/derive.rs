//! Behaviour of `#[derive(Indexed)]`: for each attribute form, the values it computes, the
//! queries on them, updates that move an object between values, and unique violations; then a
//! derived type used end to end with the `Cache`, and a model test against the same indexes
//! written as closures.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use cache_core::{
    Cache, Change, Index, IndexQuery, Indexed, Indexer, Indexers, Object, ObjectKey,
    ResourceVersion, Snapshot, StoreError,
};

/// A user's own enum as an index value: it only derives the usual traits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Phase {
    Pending,
    Running,
    Failed,
}

#[derive(Clone, Debug, Indexed)]
struct Pod {
    #[key(namespace)]
    #[index]
    namespace: String,
    #[key(name)]
    name: String,
    #[resource_version]
    rv: u64,
    #[index]
    node: Option<String>,
    #[index(each)]
    finalizers: Vec<String>,
    #[index(by = Pod::label_pairs, name = "label", value = String)]
    labels: BTreeMap<String, String>,
    #[index(unique)]
    uid: String,
    #[index]
    phase: Phase,
    #[index(by = owner_of, name = "owner")]
    owner: Option<String>,
}

impl Pod {
    /// `key=value` for every label.
    fn label_pairs(&self) -> impl Iterator<Item = String> + '_ {
        self.labels.iter().map(|(k, v)| format!("{k}={v}"))
    }
}

/// The owner, lower-cased: a `by` function that is a free function returning an `Option`.
fn owner_of(pod: &Pod) -> Option<String> {
    pod.owner.as_ref().map(|o| o.to_lowercase())
}

fn pod(ns: &str, name: &str, rv: u64) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        rv,
        node: None,
        finalizers: Vec::new(),
        labels: BTreeMap::new(),
        uid: format!("uid-{ns}-{name}"),
        phase: Phase::Pending,
        owner: None,
    }
}

/// The names of `pods`, sorted: index queries answer in no particular order.
fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
    let mut v: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    v.sort_unstable();
    v
}

fn check(cache: &Cache<Pod>) {
    cache.snapshot().verify_indexes().unwrap();
}

#[test]
fn the_generated_indexes_are_installed_by_cache_new() {
    let names: Vec<String> = Pod::indexers().names().map(str::to_owned).collect();
    assert_eq!(
        names,
        [
            "namespace",
            "node",
            "finalizers",
            "label",
            "uid",
            "phase",
            "owner"
        ]
    );
    assert_eq!(Cache::<Pod>::new().indexers().len(), 7);
}

#[test]
fn key_and_resource_version_come_from_the_attributes() {
    let p = pod("default", "web", 42);
    assert_eq!(p.key(), ObjectKey::new("default", "web"));
    assert_eq!(p.resource_version(), Some(ResourceVersion::from(42)));
}

#[test]
fn plain_index_values_queries_and_moves() {
    let cache = Cache::<Pod>::new();
    cache.add(Arc::new(pod("a", "x", 1))).unwrap();
    cache.add(Arc::new(pod("a", "y", 2))).unwrap();
    cache.add(Arc::new(pod("b", "z", 3))).unwrap();
    assert_eq!(names(&cache.by_namespace("a")), ["x", "y"]);
    assert_eq!(cache.namespace_values(), ["a", "b"]);

    // An update that changes the value moves the object to the new value's bucket.
    cache.update(Arc::new(pod("a", "y", 4))).unwrap();
    let mut moved = pod("a", "y", 5);
    moved.phase = Phase::Running;
    cache.update(Arc::new(moved)).unwrap();
    assert_eq!(names(&cache.by_phase(&Phase::Pending)), ["x", "z"]);
    assert_eq!(names(&cache.by_phase(&Phase::Running)), ["y"]);
    assert!(cache.by_phase(&Phase::Failed).is_empty());
    assert_eq!(cache.phase_values(), [Phase::Pending, Phase::Running]);

    // The last object with a value leaves: the value is gone.
    cache.delete_key(&ObjectKey::new("a", "y"));
    assert_eq!(cache.phase_values(), [Phase::Pending]);
    check(&cache);
}

#[test]
fn option_field_none_is_absent_from_the_index() {
    let cache = Cache::<Pod>::new();
    let mut scheduled = pod("a", "x", 1);
    scheduled.node = Some("n1".into());
    cache.add(Arc::new(scheduled)).unwrap();
    cache.add(Arc::new(pod("a", "pending", 2))).unwrap();
    assert_eq!(names(&cache.by_node("n1")), ["x"]);
    assert_eq!(cache.node_values(), ["n1"]);

    // None -> Some: enters the index; Some -> None: leaves it.
    let mut now_scheduled = pod("a", "pending", 3);
    now_scheduled.node = Some("n2".into());
    cache.update(Arc::new(now_scheduled)).unwrap();
    cache.update(Arc::new(pod("a", "x", 4))).unwrap();
    assert!(cache.by_node("n1").is_empty());
    assert_eq!(names(&cache.by_node("n2")), ["pending"]);
    assert_eq!(cache.node_values(), ["n2"]);
    check(&cache);
}

#[test]
fn each_indexes_every_element_once() {
    let cache = Cache::<Pod>::new();
    let mut p = pod("a", "x", 1);
    p.finalizers = vec!["f1".into(), "f2".into(), "f1".into()];
    cache.add(Arc::new(p)).unwrap();
    assert_eq!(cache.finalizers_values(), ["f1", "f2"]);
    // A repeated element does not list the object twice.
    assert_eq!(names(&cache.by_finalizers("f1")), ["x"]);

    let mut p = pod("a", "x", 2);
    p.finalizers = vec!["f2".into(), "f3".into()];
    cache.update(Arc::new(p)).unwrap();
    assert!(cache.by_finalizers("f1").is_empty());
    assert_eq!(names(&cache.by_finalizers("f3")), ["x"]);

    // An empty collection is in no bucket.
    cache.update(Arc::new(pod("a", "x", 3))).unwrap();
    assert!(cache.finalizers_values().is_empty());
    check(&cache);
}

#[test]
fn by_functions_compute_values_from_the_whole_object() {
    let cache = Cache::<Pod>::new();
    let mut p = pod("a", "x", 1);
    p.labels = [
        ("app".into(), "web".into()),
        ("tier".into(), "front".into()),
    ]
    .into();
    p.owner = Some("ReplicaSet/Web".into());
    cache.add(Arc::new(p)).unwrap();
    assert_eq!(cache.label_values(), ["app=web", "tier=front"]);
    assert_eq!(names(&cache.by_label("tier=front")), ["x"]);
    assert_eq!(names(&cache.by_owner("replicaset/web")), ["x"]);
    assert!(cache.by_owner("ReplicaSet/Web").is_empty());

    let mut p = pod("a", "x", 2);
    p.labels = [("app".into(), "api".into())].into();
    cache.update(Arc::new(p)).unwrap();
    assert!(cache.by_label("app=web").is_empty());
    assert_eq!(cache.label_values(), ["app=api"]);
    assert!(cache.owner_values().is_empty());
    check(&cache);
}

#[test]
fn name_overrides_the_index_name_for_the_by_name_api() {
    let cache = Cache::<Pod>::new();
    let mut p = pod("a", "x", 1);
    p.labels = [("app".into(), "web".into())].into();
    cache.add(Arc::new(p)).unwrap();
    // The field is `labels`, the index is "label": the Rust names follow the index name.
    assert_eq!(Pod::LABEL.name(), "label");
    assert_eq!(PodIndex::Label.as_str(), "label");
    assert_eq!(
        names(&cache.by_index(PodIndex::Label.as_str(), "app=web").unwrap()),
        ["x"]
    );
    assert_eq!(cache.index_values("label").unwrap(), ["app=web"]);
    assert!(matches!(
        cache.by_index("labels", "app=web"),
        Err(StoreError::UnknownIndex { .. })
    ));
}

#[test]
fn unique_index_returns_one_object_and_rejects_a_second() {
    let cache = Cache::<Pod>::new();
    cache.add(Arc::new(pod("a", "x", 1))).unwrap();
    assert_eq!(cache.by_uid("uid-a-x").map(|p| p.rv), Some(1));
    assert!(cache.by_uid("nope").is_none());

    // Another object with the same value: a typed error, and nothing is written.
    let mut clash = pod("a", "y", 2);
    clash.uid = "uid-a-x".into();
    let err = cache.add(Arc::new(clash)).unwrap_err();
    match err {
        StoreError::UniqueViolation { index, value, .. } => {
            assert_eq!(index, "uid");
            assert_eq!(value, "\"uid-a-x\"");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(cache.len(), 1);

    // The holder itself may be updated; once it lets go, the value is free.
    let mut renamed = pod("a", "x", 3);
    renamed.uid = "uid-new".into();
    cache.update(Arc::new(renamed)).unwrap();
    let mut taker = pod("a", "y", 4);
    taker.uid = "uid-a-x".into();
    cache.add(Arc::new(taker)).unwrap();
    assert_eq!(
        cache.by_uid("uid-a-x").map(|p| p.name.clone()).as_deref(),
        Some("y")
    );
    assert!(PodIndex::Uid.is_unique());
    assert!(!PodIndex::Node.is_unique());
    check(&cache);
}

/// Combinations: `each, unique` and `unique` on an `Option`.
#[derive(Debug, Indexed)]
struct Service {
    #[key]
    name: String,
    #[index(each, unique, name = "ip")]
    cluster_ips: Vec<String>,
    #[index(unique)]
    external: Option<u16>,
}

fn svc(name: &str, ips: &[&str], external: Option<u16>) -> Arc<Service> {
    Arc::new(Service {
        name: name.into(),
        cluster_ips: ips.iter().map(|s| (*s).to_owned()).collect(),
        external,
    })
}

#[test]
fn each_unique_and_unique_option() {
    let cache = Cache::<Service>::new();
    cache
        .add(svc("a", &["10.0.0.1", "10.0.0.2"], None))
        .unwrap();
    cache.add(svc("b", &["10.0.0.3"], None)).unwrap();
    // `None` is no value, so two services without one do not collide.
    assert_eq!(cache.len(), 2);
    assert_eq!(
        cache.by_ip("10.0.0.2").map(|s| s.name.clone()).as_deref(),
        Some("a")
    );

    // Any one shared element is a violation.
    let err = cache
        .add(svc("c", &["10.0.0.9", "10.0.0.1"], None))
        .unwrap_err();
    assert!(matches!(err, StoreError::UniqueViolation { ref index, .. } if index == "ip"));
    cache.add(svc("c", &["10.0.0.9"], Some(80))).unwrap();
    assert!(cache.add(svc("d", &[], Some(80))).is_err());
    assert_eq!(cache.external_values(), [80]);
    cache.snapshot().verify_indexes().unwrap();
}

/// `each` over every kind of collection the derive recognises.
#[derive(Debug, Indexed)]
struct Collections {
    #[key]
    id: u32,
    #[index(each)]
    hash_set: HashSet<u8>,
    #[index(each)]
    btree_set: BTreeSet<u8>,
    #[index(each)]
    deque: VecDeque<u8>,
    #[index(each)]
    array: [u8; 2],
    #[index(each)]
    boxed: Box<[u8]>,
    #[index(each)]
    shared: Arc<[u8]>,
    #[index(each)]
    static_slice: &'static [u8],
    #[index(each)]
    hash_map: HashMap<u8, String>,
    #[index(each)]
    btree_map: BTreeMap<u8, String>,
    #[index(each)]
    maybe: Option<Vec<u8>>,
    #[index(each)]
    maybe_boxed: Option<Box<[u8]>>,
}

#[test]
fn each_on_every_collection_shape() {
    let cache = Cache::<Collections>::new();
    cache
        .add(Arc::new(Collections {
            id: 1,
            hash_set: [1, 2].into(),
            btree_set: [3].into(),
            deque: [4, 4].into(),
            array: [5, 6],
            boxed: vec![7].into(),
            shared: vec![8, 9].into(),
            static_slice: &[10],
            hash_map: [(11, "v".into())].into(),
            btree_map: [(12, "v".into()), (13, "w".into())].into(),
            maybe: Some(vec![14]),
            maybe_boxed: None,
        }))
        .unwrap();
    assert_eq!(cache.hash_set_values(), [1, 2]);
    assert_eq!(cache.btree_set_values(), [3]);
    assert_eq!(cache.deque_values(), [4]);
    assert_eq!(cache.array_values(), [5, 6]);
    assert_eq!(cache.boxed_values(), [7]);
    assert_eq!(cache.shared_values(), [8, 9]);
    assert_eq!(cache.static_slice_values(), [10]);
    assert_eq!(cache.hash_map_values(), [11]);
    assert_eq!(cache.btree_map_values(), [12, 13]);
    assert_eq!(cache.maybe_values(), [14]);
    assert!(cache.maybe_boxed_values().is_empty());
    assert_eq!(cache.by_btree_map(&13).len(), 1);
}

/// Key forms: a tuple key; a cluster-scoped `ObjectKey`; an optional namespace; resource
/// versions from strings and options.
#[derive(Debug, Indexed)]
struct Revision {
    #[key]
    app: String,
    #[key]
    number: u32,
    #[resource_version]
    rv: String,
}

#[derive(Debug, Indexed)]
struct Node {
    #[key(name)]
    name: String,
    #[resource_version]
    rv: Option<u64>,
}

#[derive(Debug, Indexed)]
struct Event {
    #[key(namespace)]
    namespace: Option<String>,
    #[key(name)]
    name: Box<str>,
}

/// Versions in a shared string and in a plain integer: what the sources set.
#[derive(Debug, Indexed)]
struct Stamped {
    #[key]
    name: String,
    #[resource_version]
    rv: Arc<str>,
}

#[derive(Debug, Indexed)]
struct Counted {
    #[key]
    name: String,
    #[resource_version]
    rv: u32,
}

#[test]
fn sources_set_the_resource_version_field_through_object() {
    // A string field takes any version.
    let mut r = Revision {
        app: "web".into(),
        number: 3,
        rv: String::new(),
    };
    r.set_resource_version("abc".into());
    assert_eq!(r.rv, "abc");
    let mut s = Stamped {
        name: "s".into(),
        rv: "".into(),
    };
    s.set_resource_version(ResourceVersion::from(12));
    assert_eq!((&*s.rv, s.resource_version()), ("12", Some(12.into())));

    // An integer field takes a number of its type; it keeps its value otherwise, and an
    // `Option` of one becomes `None`.
    let mut c = Counted {
        name: "c".into(),
        rv: 1,
    };
    c.set_resource_version(ResourceVersion::from(40));
    assert_eq!(c.rv, 40);
    c.set_resource_version("not-a-number".into());
    assert_eq!(c.rv, 40);
    c.set_resource_version(ResourceVersion::from(u64::from(u32::MAX) + 1));
    assert_eq!(c.rv, 40);
    let mut n = Node {
        name: "n".into(),
        rv: None,
    };
    n.set_resource_version(ResourceVersion::from(9));
    assert_eq!(n.rv, Some(9));
    n.set_resource_version("x".into());
    assert_eq!(n.rv, None);

    // A type without `#[resource_version]` ignores it.
    let mut e = Event {
        namespace: None,
        name: "e".into(),
    };
    e.set_resource_version(ResourceVersion::from(5));
    assert_eq!(e.resource_version(), None);
}

#[test]
fn key_forms_and_resource_version_types() {
    let r = Revision {
        app: "web".into(),
        number: 3,
        rv: "17".into(),
    };
    assert_eq!(r.key(), ("web".to_owned(), 3));
    assert_eq!(r.resource_version().map(|v| v.as_u64()), Some(Some(17)));
    // An empty string is no version, as in Kubernetes.
    let r = Revision {
        app: "web".into(),
        number: 3,
        rv: String::new(),
    };
    assert_eq!(r.resource_version(), None);

    let n = Node {
        name: "node-1".into(),
        rv: Some(9),
    };
    assert_eq!(n.key(), ObjectKey::cluster("node-1"));
    assert_eq!(n.resource_version(), Some(9.into()));
    assert_eq!(
        Node {
            name: "n".into(),
            rv: None
        }
        .resource_version(),
        None
    );

    let namespaced = Event {
        namespace: Some("kube-system".into()),
        name: "e".into(),
    };
    let cluster = Event {
        namespace: None,
        name: "e".into(),
    };
    assert_eq!(namespaced.key().to_string(), "kube-system/e");
    assert_eq!(cluster.key().to_string(), "e");

    let cache = Cache::<Revision>::new();
    cache
        .add(Arc::new(Revision {
            app: "a".into(),
            number: 1,
            rv: "5".into(),
        }))
        .unwrap();
    assert!(cache.get_by_key(&("a".to_owned(), 1)).is_some());
    assert_eq!(
        cache.resource_version().map(|v| v.to_string()).as_deref(),
        Some("5")
    );
}

#[test]
fn index_enum_lists_and_names_the_indexes() {
    assert_eq!(PodIndex::ALL.len(), 7);
    assert_eq!(
        PodIndex::ALL.map(PodIndex::as_str),
        [
            "namespace",
            "node",
            "finalizers",
            "label",
            "uid",
            "phase",
            "owner"
        ]
    );
    assert_eq!(PodIndex::Owner.to_string(), "owner");
    assert_eq!(AsRef::<str>::as_ref(&PodIndex::Node), "node");
    // The enum and the installed indexes agree.
    let installed: Vec<String> = Pod::indexers().names().map(str::to_owned).collect();
    assert_eq!(
        PodIndex::ALL.map(|i| i.as_str().to_owned()).to_vec(),
        installed
    );
}

/// Both ways to query: the extension trait (`by_node`) and the typed handles (`Pod::NODE`),
/// on every reader: a cache, a snapshot, an `Arc` of either, a reference.
#[test]
fn typed_queries_on_every_reader() {
    let cache = Arc::new(Cache::<Pod>::new());
    for (name, node) in [("x", "n1"), ("y", "n1"), ("z", "n2")] {
        let mut p = pod("a", name, 1);
        p.node = Some(node.into());
        cache.add(Arc::new(p)).unwrap();
    }
    let snap: Arc<Snapshot<Pod>> = cache.snapshot();
    let plain: &Snapshot<Pod> = &snap;

    assert_eq!(names(&cache.by_node("n1")), ["x", "y"]);
    assert_eq!(names(&snap.by_node("n1")), ["x", "y"]);
    assert_eq!(names(&plain.by_node("n1")), ["x", "y"]);
    assert_eq!(names(&cache.by(Pod::NODE, "n1")), ["x", "y"]);
    assert_eq!(names(&snap.by(Pod::NODE, "n1")), ["x", "y"]);
    assert_eq!(plain.count_by(Pod::NODE, "n1"), 2);
    assert_eq!(plain.by_iter(Pod::NODE, "n2").count(), 1);
    assert_eq!(cache.by_unique(Pod::UID, "uid-a-z").map(|p| p.rv), Some(1));

    // Generic over the reader.
    fn on<R: IndexQuery<Pod>>(reader: &R, node: &str) -> usize {
        reader.by_node(node).len()
    }
    assert_eq!(on(&cache, "n1"), 2);
    assert_eq!(on(&*cache, "n1"), 2);
    assert_eq!(on(&snap, "n2"), 1);
    assert_eq!(on(plain, "n3"), 0);

    // A snapshot stays what it was while the cache moves on.
    cache.delete_key(&ObjectKey::new("a", "x"));
    assert_eq!(snap.by_node("n1").len(), 2);
    assert_eq!(cache.by_node("n1").len(), 1);
}

/// End to end: replace, transactions, updates and deletes through the `Store` surface, with the
/// derived indexes consistent after every step.
#[test]
fn derived_type_end_to_end_with_the_cache() {
    let cache = Cache::<Pod>::new();
    let mut items = Vec::new();
    for i in 0..50u64 {
        let mut p = pod(&format!("ns-{}", i % 3), &format!("p{i:02}"), i);
        p.node = (i % 4 != 0).then(|| format!("node-{}", i % 5));
        p.finalizers = (0..i % 3).map(|f| format!("f{f}")).collect();
        p.labels = [("app".to_owned(), format!("app-{}", i % 2))].into();
        p.phase = [Phase::Pending, Phase::Running, Phase::Failed][(i % 3) as usize];
        items.push(Arc::new(p));
    }
    cache.replace(items, Some(100.into())).unwrap();
    check(&cache);
    assert_eq!(cache.len(), 50);
    assert_eq!(cache.namespace_values(), ["ns-0", "ns-1", "ns-2"]);
    assert_eq!(cache.by_label("app=app-0").len(), 25);
    assert_eq!(cache.by_node("node-1").len(), 8);
    assert_eq!(cache.finalizers_values(), ["f0", "f1"]);

    // A transaction: one publish, one failed change (a unique clash) reported, the rest applied.
    let mut moved = (*cache.get_by_key(&ObjectKey::new("ns-1", "p01")).unwrap()).clone();
    moved.node = Some("node-9".into());
    moved.rv = 101;
    let mut clash = pod("ns-0", "new", 102);
    clash.uid = "uid-ns-1-p01".into();
    let gone = cache.get_by_key(&ObjectKey::new("ns-0", "p03")).unwrap();
    let err = cache
        .transaction(vec![
            Change::Update(Arc::new(moved)),
            Change::Add(Arc::new(clash)),
            Change::Delete(gone),
        ])
        .unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert_eq!(err.errors[0].0, 1);
    assert_eq!(names(&cache.by_node("node-9")), ["p01"]);
    assert!(cache.get_by_key(&ObjectKey::new("ns-0", "p03")).is_none());
    assert!(cache.get_by_key(&ObjectKey::new("ns-0", "new")).is_none());
    check(&cache);

    // Indexes added later, next to the derived ones, index what is there.
    let by_rv_parity: Index<Pod, bool> = Index::new("even");
    cache
        .add_indexers(
            Indexers::new().with(Indexer::for_index(by_rv_parity, |p: &Pod| {
                [p.rv.is_multiple_of(2)]
            })),
        )
        .unwrap();
    assert_eq!(cache.by(by_rv_parity, &true).len(), 25);
    // A derived name is taken.
    let conflict = Indexers::new().with(Indexer::new("node", |p: &Pod| p.node.clone()));
    assert!(matches!(
        cache.add_indexers(conflict),
        Err(StoreError::IndexConflict { .. })
    ));
    check(&cache);
}

mod model {
    //! The derived indexes against the same indexes written by hand as closures: after random
    //! writes, both caches answer every query the same.

    use super::*;
    use proptest::prelude::*;

    fn closure_indexers() -> Indexers<Pod> {
        Indexers::new()
            .with(Indexer::new("namespace", |p: &Pod| [p.namespace.clone()]))
            .with(Indexer::new("node", |p: &Pod| p.node.clone()))
            .with(Indexer::new("finalizers", |p: &Pod| p.finalizers.clone()))
            .with(Indexer::new("label", |p: &Pod| {
                p.label_pairs().collect::<Vec<_>>()
            }))
            .with(Indexer::unique("uid", |p: &Pod| [p.uid.clone()]))
            .with(Indexer::new("phase", |p: &Pod| [p.phase]))
            .with(Indexer::new("owner", owner_of))
    }

    fn arb_pod() -> impl Strategy<Value = Pod> {
        (
            0..3u8,
            0..8u8,
            proptest::option::of(0..4u8),
            proptest::collection::vec(0..3u8, 0..3),
            proptest::collection::btree_map(0..2u8, 0..2u8, 0..2),
            0..10u8,
            0..3u8,
            proptest::option::of(0..2u8),
        )
            .prop_map(|(ns, name, node, fins, labels, uid, phase, owner)| Pod {
                namespace: format!("ns{ns}"),
                name: format!("p{name}"),
                rv: 1,
                node: node.map(|n| format!("n{n}")),
                finalizers: fins.into_iter().map(|f| format!("f{f}")).collect(),
                labels: labels
                    .into_iter()
                    .map(|(k, v)| (format!("k{k}"), format!("v{v}")))
                    .collect(),
                uid: format!("u{uid}"),
                phase: [Phase::Pending, Phase::Running, Phase::Failed][phase as usize],
                owner: owner.map(|o| format!("Owner{o}")),
            })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(Pod),
        Delete(u8, u8),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => arb_pod().prop_map(Op::Put),
            1 => (0..3u8, 0..8u8).prop_map(|(ns, name)| Op::Delete(ns, name)),
        ]
    }

    /// The same objects (not copies), in any order.
    fn same<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
        let mut a: Vec<*const T> = a.iter().map(Arc::as_ptr).collect();
        let mut b: Vec<*const T> = b.iter().map(Arc::as_ptr).collect();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn derived_and_closure_indexes_agree(ops in proptest::collection::vec(arb_op(), 1..40)) {
            let derived = Cache::<Pod>::new();
            let closures = Cache::with_indexers(closure_indexers());
            for op in ops {
                match op {
                    Op::Put(p) => {
                        let p = Arc::new(p);
                        let a = derived.add(p.clone());
                        let b = closures.add(p);
                        prop_assert_eq!(a, b);
                    }
                    Op::Delete(ns, name) => {
                        let key = ObjectKey::new(&format!("ns{ns}"), &format!("p{name}"));
                        derived.delete_key(&key);
                        closures.delete_key(&key);
                    }
                }
                let (d, c) = (derived.snapshot(), closures.snapshot());
                d.verify_indexes().map_err(TestCaseError::fail)?;
                for index in PodIndex::ALL {
                    let name = index.as_str();
                    if index == PodIndex::Phase {
                        continue;
                    }
                    let values = d.index_values(name).unwrap();
                    prop_assert_eq!(&values, &c.index_values(name).unwrap());
                    for value in &values {
                        prop_assert!(same(
                            &d.by_index(name, value).unwrap(),
                            &c.by_index(name, value).unwrap()
                        ));
                    }
                }
                prop_assert_eq!(d.phase_values(), c.values(Pod::PHASE));
                for phase in [Phase::Pending, Phase::Running, Phase::Failed] {
                    prop_assert!(same(&d.by_phase(&phase), &c.by(Pod::PHASE, &phase)));
                }
            }
        }
    }
}

/// A tuple-valued index, as `#[derive(Indexed)]` writes it.
#[derive(Debug, Indexed)]
struct Binding {
    #[key]
    name: String,
    /// (kind, name) of what it binds to.
    #[index]
    target: (String, String),
}

#[test]
fn a_tuple_index_is_queried_with_borrowed_parts_on_every_reader() {
    let cache = Arc::new(Cache::<Binding>::new());
    for (name, kind, target) in [
        ("b1", "Role", "admin"),
        ("b2", "Role", "view"),
        ("b3", "Role", "admin"),
    ] {
        cache
            .add(Arc::new(Binding {
                name: name.into(),
                target: (kind.into(), target.into()),
            }))
            .unwrap();
    }
    let reader = cache.reader();
    let snap = reader.snapshot();
    let names = |v: Vec<Arc<Binding>>| {
        let mut names: Vec<String> = v.iter().map(|b| b.name.clone()).collect();
        names.sort();
        names
    };
    assert_eq!(names(cache.by_target(("Role", "admin"))), ["b1", "b3"]);
    assert_eq!(names(reader.by_target(("Role", "view"))), ["b2"]);
    assert_eq!(names(snap.by_target(("Role", "admin"))), ["b1", "b3"]);
    let owned = ("Role".to_owned(), "view".to_owned());
    assert_eq!(names(snap.by_target(&owned)), ["b2"]);
    assert_eq!(
        names(snap.by(Binding::TARGET, ("Role", "admin"))),
        ["b1", "b3"]
    );
    assert!(snap.by_target(("ClusterRole", "admin")).is_empty());
    // Bucket iteration with the keys.
    let mut keyed: Vec<&str> = snap
        .by_iter(Binding::TARGET, ("Role", "admin"))
        .with_keys()
        .map(|(key, b)| {
            assert_eq!(key, &b.name);
            key.as_str()
        })
        .collect();
    keyed.sort_unstable();
    assert_eq!(keyed, ["b1", "b3"]);
}
