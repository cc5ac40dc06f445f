//! A tour of the indexed cache: fill it, query it by index, hold a snapshot while it changes.
//!
//! Run with `cargo run --release -p examples --example cache_basics`.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use cache_core::{Cache, Change, Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion};

/// A compact pod, the way a controller would keep it.
#[derive(Debug)]
struct Pod {
    namespace: String,
    name: String,
    node: String,
    rv: u64,
}

impl Object for Pod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        Some(self.rv.into())
    }
}

const NODE: Index<Pod, String> = Index::new("node");
const NAMESPACE: Index<Pod, String> = Index::new("namespace");

fn pod(i: u64, node: u64, rv: u64) -> Arc<Pod> {
    Arc::new(Pod {
        namespace: format!("ns-{:02}", i % 20),
        name: format!("pod-{i:05}"),
        node: format!("node-{node:03}"),
        rv,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::with_indexers(
        Indexers::new()
            .with(Indexer::for_index(NODE, |p: &Pod| [p.node.clone()]))
            .with(Indexer::for_index(NAMESPACE, |p: &Pod| {
                [p.namespace.clone()]
            })),
    );

    let start = Instant::now();
    let pods: Vec<_> = (0..10_000).map(|i| pod(i, i % 100, 1)).collect();
    cache.replace(pods, Some(1.into()))?;
    println!("listed {} pods in {:?}", cache.len(), start.elapsed());

    let before = cache.snapshot();
    // Drain node-007 onto node-008, in one transaction: one publish.
    let moved: Vec<_> = before
        .by(NODE, "node-007")
        .iter()
        .map(|p| {
            Change::Update(Arc::new(Pod {
                node: "node-008".into(),
                rv: 2,
                ..clone(p)
            }))
        })
        .collect();
    let count = moved.len();
    cache.transaction(moved)?;

    let after = cache.snapshot();
    println!(
        "moved {count} pods off node-007 at resource version {:?}",
        after.resource_version()
    );
    println!(
        "node-007: {} pods now, {} in the snapshot taken before",
        after.count_by(NODE, "node-007"),
        before.count_by(NODE, "node-007")
    );
    println!("node-008: {} pods", after.count_by(NODE, "node-008"));
    println!("namespaces: {}", after.values(NAMESPACE).len());
    println!(
        "pods in ns-03 on node-003: {}",
        after
            .by_iter(NAMESPACE, "ns-03")
            .filter(|p| p.node == "node-003")
            .count()
    );
    Ok(())
}

fn clone(p: &Pod) -> Pod {
    Pod {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        node: p.node.clone(),
        rv: p.rv,
    }
}
