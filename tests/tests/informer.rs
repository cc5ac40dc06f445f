//! A shared informer over a type with `#[derive(Indexed)]`, end to end on the memory source:
//! derived index queries on the informer's cache and on its lister, label selectors, the
//! namespace lister, and handlers that see what the cache holds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::informer::{FilteringHandler, HandlerFns, SharedIndexInformer};
use cache_core::source::memory::MemorySource;
use cache_core::{Indexed, LabelSelector, Labels, Object as _, ObjectKey, ResourceVersion};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Indexed)]
struct Pod {
    #[key(namespace)]
    #[index]
    namespace: String,
    #[key(name)]
    name: String,
    #[index]
    node: Option<String>,
    #[index(by = Pod::label_pairs, name = "label", value = String)]
    labels: BTreeMap<String, String>,
    running: bool,
    #[resource_version]
    rv: Option<ResourceVersion>,
}

impl Pod {
    fn label_pairs(&self) -> impl Iterator<Item = String> + '_ {
        self.labels.iter().map(|(k, v)| format!("{k}={v}"))
    }
}

impl Labels for Pod {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.label(key)
    }
}

fn pod(ns: usize, i: usize, node: usize, running: bool) -> Pod {
    let app = if i.is_multiple_of(3) { "db" } else { "web" };
    Pod {
        namespace: format!("ns-{ns}"),
        name: format!("pod-{i}"),
        node: Some(format!("node-{node}")),
        labels: [("app".to_owned(), app.to_owned())].into(),
        running,
        rv: None,
    }
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(3600), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    let mut v: Vec<String> = pods.iter().map(|p| p.key().to_string()).collect();
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn derived_indexes_on_an_informer_and_its_lister() {
    let source = MemorySource::new();
    for i in 0..300 {
        source.put(pod(i % 4, i, i % 10, i.is_multiple_of(2)));
    }
    let informer = SharedIndexInformer::builder(source.clone())
        .name("pods")
        .build();

    // A handler keeping a count of running pods through a filter: it is told when a pod
    // starts or stops running, as an add or a delete.
    let running = Arc::new(AtomicI64::new(0));
    let counter = FilteringHandler::new(
        |p: &Pod| p.running,
        HandlerFns::new()
            .added({
                let running = running.clone();
                move |_, _| {
                    running.fetch_add(1, Ordering::SeqCst);
                }
            })
            .deleted({
                let running = running.clone();
                move |_| {
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            }),
    );
    let counter_reg = informer.add_event_handler(counter).unwrap();

    // A handler that reads the cache: the change (or a later state) is always there already.
    let stale = Arc::new(Mutex::new(Vec::new()));
    informer
        .add_event_handler(HandlerFns::new().updated({
            let (cache, stale) = (informer.cache().clone(), stale.clone());
            move |_, new: Arc<Pod>| {
                // The pod may be gone since (a later state), but never older.
                let version = |p: &Pod| p.rv.as_ref().and_then(ResourceVersion::as_u64);
                if let Some(cached) = cache.get_by_key(&new.key())
                    && version(&cached) < version(&new)
                {
                    stale.lock().unwrap().push(new.key().to_string());
                }
            }
        }))
        .unwrap();

    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (informer, stop) = (informer.clone(), stop.clone());
        async move { informer.run(stop).await }
    });
    informer.wait_for_sync().await.unwrap();
    counter_reg.wait_for_sync().await.unwrap();
    assert_eq!(running.load(Ordering::SeqCst), 150);

    // Churn: pods move between nodes and start or stop running.
    for i in 0..300usize {
        if i.is_multiple_of(5) {
            source.put(pod(i % 4, i, (i + 1) % 10, i % 2 == 1));
        }
    }
    source.delete(&ObjectKey::new("ns-0", "pod-0"));
    let rv = source.resource_version();
    until("the cache to catch up", || {
        informer.cache().resource_version() == Some(rv.clone())
    })
    .await;

    let lister = informer.lister();
    let on_node_1 = lister.by_node("node-1"); // derived, on the lister
    assert_eq!(
        names(&on_node_1),
        names(&informer.cache().by_node("node-1"))
    );
    let expected: Vec<String> = source
        .objects()
        .iter()
        .filter(|p| p.node.as_deref() == Some("node-1"))
        .map(|p| p.key().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names(&on_node_1), expected);
    // Churn emptied node-0 and node-5.
    let nodes: std::collections::BTreeSet<String> = source
        .objects()
        .iter()
        .filter_map(|p| p.node.clone())
        .collect();
    assert_eq!(nodes.len(), 8);
    assert_eq!(lister.node_values(), nodes.into_iter().collect::<Vec<_>>());

    let db: LabelSelector = "app=db".parse().unwrap();
    let db_pods = lister.list(&db);
    assert_eq!(names(&db_pods), names(&lister.by_label("app=db")));
    let in_ns1 = lister
        .by_namespace("ns-1")
        .list(&LabelSelector::everything());
    assert_eq!(
        names(&in_ns1),
        names(&informer.cache().by_namespace("ns-1"))
    );
    assert!(lister.by_namespace("ns-0").get("pod-0").is_none());

    let expected_running = source.objects().iter().filter(|p| p.running).count();
    until("the running count", || {
        running.load(Ordering::SeqCst) == expected_running as i64
    })
    .await;
    assert!(
        stale.lock().unwrap().is_empty(),
        "{:?}",
        stale.lock().unwrap()
    );
    assert_eq!(informer.reflector_stats().relists, 0);

    stop.cancel();
    task.await.unwrap();
}
