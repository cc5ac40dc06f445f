//! Listers as a controller uses them: client-go's listers_test behaviours, the namespace lister
//! with and without the namespace index, and one snapshot per read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;

use super::*;
use crate::index::Indexers;
use crate::store::Cache;

#[derive(Debug)]
struct Pod {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
}

impl Object for Pod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
}

impl Labels for Pod {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.label(key)
    }
}

fn pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Arc<Pod> {
    Arc::new(Pod {
        namespace: namespace.into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
}

fn sel(s: &str) -> LabelSelector {
    s.parse().unwrap()
}

fn names(mut pods: Vec<Arc<Pod>>) -> Vec<String> {
    pods.sort_by_key(|p| p.key());
    pods.iter().map(|p| p.key().to_string()).collect()
}

fn indexed_cache() -> Arc<Cache<Pod>> {
    Arc::new(Cache::with_indexers(
        Indexers::new().with(namespace_indexer()),
    ))
}

fn plain_cache() -> Arc<Cache<Pod>> {
    Arc::new(Cache::with_indexers(Indexers::new()))
}

#[test]
fn list_all_selects_by_label() {
    // client-go's TestListAll, at 100k objects.
    const N: usize = 100_000;
    let cache = plain_cache();
    let items = (0..N)
        .map(|i| {
            let m = if i % 10 == 0 { "true" } else { "false" };
            pod(
                &format!("ns-{}", i % 100),
                &format!("pod-{i}"),
                &[("match", m)],
            )
        })
        .collect();
    cache.replace(items, None).unwrap();
    let lister = Lister::new(cache);
    assert_eq!(lister.list(&sel("match=true")).len(), N / 10);
    assert_eq!(lister.list(&LabelSelector::everything()).len(), N);
    assert_eq!(lister.list(&sel("match=nothing")).len(), 0);
    assert_eq!(lister.list(&sel("match notin (true,false)")).len(), 0);
}

#[test]
fn get_by_key_and_by_namespace() {
    for cache in [indexed_cache(), plain_cache()] {
        cache
            .replace(
                vec![
                    pod("a", "web", &[("app", "web")]),
                    pod("b", "web", &[("app", "web")]),
                    pod("", "node-1", &[("app", "node")]),
                ],
                None,
            )
            .unwrap();
        let lister = Lister::new(cache);
        assert_eq!(
            lister.get(&ObjectKey::new("a", "web")).unwrap().namespace,
            "a"
        );
        assert!(lister.get(&ObjectKey::new("c", "web")).is_none());
        assert!(lister.get(&ObjectKey::cluster("node-1")).is_some());

        let a = lister.by_namespace("a");
        assert_eq!(a.namespace(), "a");
        assert_eq!(a.get("web").unwrap().key().to_string(), "a/web");
        assert!(a.get("node-1").is_none());
        assert!(lister.by_namespace("c").get("web").is_none());
        assert_eq!(names(a.list(&LabelSelector::everything())), ["a/web"]);
        assert!(
            lister
                .by_namespace("c")
                .list(&LabelSelector::everything())
                .is_empty()
        );

        // The empty namespace is every namespace; its get reads cluster-scoped keys.
        let all = lister.by_namespace("");
        assert_eq!(
            names(all.list(&LabelSelector::everything())),
            ["node-1", "a/web", "b/web"]
        );
        assert_eq!(names(all.list(&sel("app=web"))), ["a/web", "b/web"]);
        assert_eq!(all.get("node-1").unwrap().name, "node-1");
        assert!(all.get("web").is_none());
    }
}

#[test]
fn a_namespace_index_of_another_value_type_is_not_used() {
    // An index named "namespace" whose values are not strings cannot be asked by namespace
    // name: the lister scans instead, and still answers right.
    let cache = Arc::new(Cache::with_indexers(
        Indexers::new().with(Indexer::new(NAMESPACE_INDEX, |p: &Pod| [p.namespace.len()])),
    ));
    cache
        .replace(
            vec![
                pod("aa", "x", &[]),
                pod("bb", "y", &[]),
                pod("aa", "z", &[("k", "v")]),
            ],
            None,
        )
        .unwrap();
    let lister = Lister::new(cache);
    assert_eq!(
        names(lister.by_namespace("aa").list(&LabelSelector::everything())),
        ["aa/x", "aa/z"]
    );
    assert_eq!(names(lister.by_namespace("aa").list(&sel("k"))), ["aa/z"]);
}

#[test]
fn the_namespace_index_is_used_when_present() {
    // The lister trusts the index: an index that (wrongly) files every pod under "ns-x" shows
    // that by_namespace reads the index and does not scan.
    let cache = Arc::new(Cache::with_indexers(
        Indexers::new().with(Indexer::new(NAMESPACE_INDEX, |_: &Pod| ["ns-x".to_owned()])),
    ));
    cache
        .replace(vec![pod("a", "1", &[]), pod("b", "2", &[("k", "v")])], None)
        .unwrap();
    let lister = Lister::new(cache);
    assert_eq!(
        names(
            lister
                .by_namespace("ns-x")
                .list(&LabelSelector::everything())
        ),
        ["a/1", "b/2"]
    );
    assert_eq!(
        names(lister.by_namespace("ns-x").list(&sel("k=v"))),
        ["b/2"]
    );
    assert!(
        lister
            .by_namespace("a")
            .list(&LabelSelector::everything())
            .is_empty()
    );
}

#[test]
fn each_read_sees_one_snapshot() {
    // A writer replaces every object at once with a new generation; a list must never mix two
    // generations.
    const PODS: usize = 50;
    let cache = indexed_cache();
    let generation = |g: usize| -> Vec<Arc<Pod>> {
        (0..PODS)
            .map(|i| {
                pod(
                    &format!("ns-{}", i % 2),
                    &format!("p{i}"),
                    &[("gen", &g.to_string())],
                )
            })
            .collect()
    };
    cache.replace(generation(0), None).unwrap();
    let lister = Lister::new(cache.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let stop = stop.clone();
        move || {
            for g in 1..=300 {
                cache.replace(generation(g), None).unwrap();
            }
            stop.store(true, Ordering::SeqCst);
        }
    });
    let everything = LabelSelector::everything();
    let ns0 = lister.by_namespace("ns-0");
    let mut reads = 0;
    while !stop.load(Ordering::SeqCst) || reads < 10 {
        for list in [lister.list(&everything), ns0.list(&everything)] {
            let gens: std::collections::BTreeSet<_> =
                list.iter().map(|p| p.labels["gen"].clone()).collect();
            assert_eq!(gens.len(), 1, "one read mixed generations {gens:?}");
        }
        reads += 1;
    }
    writer.join().unwrap();
}

fn arb_pods() -> impl Strategy<Value = Vec<(String, String, BTreeMap<String, String>)>> {
    let ns = prop::sample::select(vec!["", "a", "b", "c"]);
    let labels = prop::collection::btree_map(
        prop::sample::select(vec!["app", "tier", "env"]),
        prop::sample::select(vec!["", "web", "db", "prod"]),
        0..3,
    );
    prop::collection::vec((ns, 0u8..20, labels), 0..40).prop_map(|v| {
        v.into_iter()
            .map(|(ns, n, l)| {
                let l = l
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                (ns.to_owned(), format!("p{n}"), l)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn namespace_lister_gives_the_same_results_with_and_without_the_index(
        pods in arb_pods(),
        deletes in prop::collection::vec(0usize..40, 0..10),
        ns in prop::sample::select(vec!["", "a", "b", "c", "d"]),
        selector in prop::sample::select(vec![
            "", "app", "!app", "app=web", "app!=web", "app in (web,db)",
            "app notin (web)", "tier=,env", "app=web,tier=db", "env in ()",
        ]),
    ) {
        let selector = sel(selector);
        let indexed = indexed_cache();
        let plain = plain_cache();
        let objects: Vec<Arc<Pod>> = pods
            .iter()
            .map(|(ns, name, labels)| Arc::new(Pod {
                namespace: ns.clone(), name: name.clone(), labels: labels.clone(),
            }))
            .collect();
        for cache in [&indexed, &plain] {
            cache.replace(objects.clone(), None).unwrap();
            for &d in &deletes {
                if let Some(o) = objects.get(d) {
                    cache.delete(o.clone()).unwrap();
                }
            }
        }
        // The model: the last object written per key, minus the deleted keys.
        let mut model: BTreeMap<ObjectKey, Arc<Pod>> =
            objects.iter().map(|o| (o.key(), o.clone())).collect();
        for &d in &deletes {
            if let Some(o) = objects.get(d) {
                model.remove(&o.key());
            }
        }
        let expected = names(
            model
                .values()
                .filter(|p| (ns.is_empty() || p.namespace == ns) && selector.matches(&***p))
                .cloned()
                .collect(),
        );

        let with_index = names(Lister::new(indexed.clone()).by_namespace(ns).list(&selector));
        let by_scan = names(Lister::new(plain.clone()).by_namespace(ns).list(&selector));
        prop_assert_eq!(&with_index, &expected);
        prop_assert_eq!(&by_scan, &expected);
        if ns.is_empty() {
            prop_assert_eq!(names(Lister::new(plain).list(&selector)), expected);
        }
        for (key, p) in &model {
            let lister = Lister::new(indexed.clone());
            let got = lister.by_namespace(p.namespace.as_str()).get(&p.name);
            prop_assert!(got.is_some_and(|g| g.key() == *key));
        }
    }
}
