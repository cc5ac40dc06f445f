//! The embedded-source workload of the reflector and informer benchmarks: 100k pods of about
//! 500 bytes, keyed `ns/name`, with a `namespace` and a `node` index, in a `MemorySource`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::informer::{EventHandler, QueueKind, SharedIndexInformer};
use cache_core::source::memory::{MemorySource, MemorySourceOptions};
use cache_core::{DeletedObject, Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// How many objects the source holds.
pub const OBJECTS: usize = 100_000;
/// How many watch events one steady-state run applies.
pub const EVENTS: usize = 10_000;

/// About 500 bytes, as in the other benchmarks: a key, a node, a version and a payload.
#[derive(Clone, Debug)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub rv: Option<ResourceVersion>,
    #[allow(dead_code)] // the body of a real object: carried, never read here
    pub payload: String,
}

impl Object for Pod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.rv.clone()
    }
    fn set_resource_version(&mut self, rv: ResourceVersion) {
        self.rv = Some(rv);
    }
}

pub const NAMESPACE: Index<Pod, String> = Index::new("namespace");
pub const NODE: Index<Pod, String> = Index::new("node");

/// Pod `i`, on node `node` (modulo 1,000).
pub fn pod(i: usize, node: usize) -> Pod {
    Pod {
        namespace: format!("ns-{:03}", i % 100),
        name: format!("pod-{i:08}"),
        node: format!("node-{:04}", node % 1000),
        rv: None,
        payload: "x".repeat(400),
    }
}

/// The `namespace` and `node` indexes.
pub fn two_indexes() -> Indexers<Pod> {
    Indexers::new()
        .with(Indexer::for_index(NAMESPACE, |p: &Pod| {
            [p.namespace.clone()]
        }))
        .with(Indexer::for_index(NODE, |p: &Pod| [p.node.clone()]))
}

/// A source holding [`OBJECTS`] pods, with history for the steady-state events.
pub fn source(watch_list: bool) -> MemorySource<Pod> {
    let config = MemorySourceOptions::default()
        .watch_list(watch_list)
        .history_limit(4 * EVENTS);
    let source = MemorySource::with_options(config);
    for i in 0..OBJECTS {
        source.put(pod(i, i));
    }
    source
}

/// A current-thread runtime with time and IO.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The one no-op handler of the informer cases: it counts what it is told.
#[derive(Clone, Default)]
pub struct Count(Arc<AtomicU64>);

impl Count {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

impl EventHandler<Pod> for Count {
    fn on_add(&self, _: Arc<Pod>, _: bool) {
        self.0.fetch_add(1, Ordering::Release);
    }
    fn on_update(&self, _: Arc<Pod>, _: Arc<Pod>) {
        self.0.fetch_add(1, Ordering::Release);
    }
    fn on_delete(&self, _: DeletedObject<Pod>) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// One initial sync of `source` (holding `OBJECTS` pods) through an informer on `queue`, with
/// both indexes and one [`Count`] handler; the informer, stopped, for the caller to drop.
pub async fn initial_sync(
    source: &MemorySource<Pod>,
    queue: QueueKind,
) -> SharedIndexInformer<Pod> {
    let informer = SharedIndexInformer::builder_with_indexers(source.clone(), two_indexes())
        .queue(queue)
        .build();
    let count = Count::default();
    let registration = informer.add_event_handler(count.clone()).unwrap();
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let (informer, stop) = (informer.clone(), stop.clone());
        async move { informer.run(stop).await }
    });
    registration.wait_for_sync().await.unwrap();
    assert_eq!(count.get(), OBJECTS as u64);
    assert_eq!(informer.cache().len(), OBJECTS);
    stop.cancel();
    run.await.expect("the informer stops");
    informer
}
