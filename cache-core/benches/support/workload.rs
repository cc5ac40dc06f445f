//! The benchmark workload: Kubernetes-like objects of about 500 bytes, keyed `ns/name`, with a
//! `namespace` index (100 values) and a `node` index (1,000 values), in random key order.

use std::sync::Arc;

use cache_core::{Cache, Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion};
use rand::prelude::*;

/// Number of distinct namespaces.
pub const NAMESPACES: usize = 100;
/// Number of distinct nodes.
pub const NODES: usize = 1_000;
/// Bytes of opaque payload per object (spec, status, ...).
pub const PAYLOAD: usize = 120;

/// A pod-like object.
#[derive(Debug, Clone)]
pub struct Obj {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub rv: ResourceVersion,
    pub labels: Vec<(String, String)>,
    pub payload: Box<[u8]>,
}

impl Object for Obj {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        Some(self.rv.clone())
    }
}

impl Obj {
    /// The client-go key string, `namespace/name`.
    pub fn key_string(&self) -> String {
        let mut s = String::with_capacity(self.namespace.len() + 1 + self.name.len());
        s.push_str(&self.namespace);
        s.push('/');
        s.push_str(&self.name);
        s
    }

    /// A copy with a new resource version and, optionally, a new node.
    pub fn next(&self, rv: u64, node: Option<usize>) -> Arc<Obj> {
        let mut o = self.clone();
        o.rv = rv.into();
        if let Some(n) = node {
            o.node = node_name(n);
        }
        Arc::new(o)
    }
}

pub fn namespace_name(i: usize) -> String {
    format!("ns-{i:03}")
}

pub fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

/// The typed handle of the namespace index.
pub const NAMESPACE: Index<Obj, String> = Index::new("namespace");
/// The typed handle of the node index.
pub const NODE: Index<Obj, String> = Index::new("node");

/// The two indexes, as `#[derive(Indexed)]` would build them.
pub fn indexers() -> Indexers<Obj> {
    Indexers::new()
        .with(Indexer::from_fn(
            NAMESPACE,
            false,
            |o: &Obj, out: &mut Vec<String>| out.push(o.namespace.clone()),
        ))
        .with(Indexer::from_fn(
            NODE,
            false,
            |o: &Obj, out: &mut Vec<String>| out.push(o.node.clone()),
        ))
}

/// A fresh cache with both indexes.
pub fn cache() -> Cache<Obj> {
    Cache::with_indexers(indexers())
}

/// `n` objects in random key order, deterministic for a given `n`.
pub fn objects(n: usize) -> Vec<Arc<Obj>> {
    let mut rng = SmallRng::seed_from_u64(0x5eed ^ n as u64);
    let mut out: Vec<Arc<Obj>> = (0..n)
        .map(|i| {
            let mut payload = vec![0u8; PAYLOAD];
            rng.fill_bytes(&mut payload);
            Arc::new(Obj {
                namespace: namespace_name(rng.random_range(0..NAMESPACES)),
                name: format!("object-name-{i:08}"),
                node: node_name(rng.random_range(0..NODES)),
                rv: (i as u64 + 1).into(),
                labels: vec![
                    ("app".into(), format!("app-{}", i % 50)),
                    ("tier".into(), ["web", "db", "cache"][i % 3].into()),
                    ("team".into(), format!("team-{}", i % 20)),
                ],
                payload: payload.into_boxed_slice(),
            })
        })
        .collect();
    out.shuffle(&mut rng);
    out
}

/// A random permutation of `0..n`, to visit objects in an order unrelated to insertion.
pub fn order(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut SmallRng::seed_from_u64(seed));
    v
}
