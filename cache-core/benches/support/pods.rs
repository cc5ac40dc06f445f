//! The embedded-source workload of the reflector and informer benchmarks: 100k pods of about
//! 500 bytes, keyed `ns/name`, with a `namespace` and a `node` index, in a `MemorySource`.

use cache_core::source::memory::{MemorySource, MemorySourceConfig};
use cache_core::{Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion};
use tokio::runtime::Runtime;

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
    let config = MemorySourceConfig::default()
        .watch_list(watch_list)
        .history_limit(4 * EVENTS);
    let source = MemorySource::with_config(config);
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
