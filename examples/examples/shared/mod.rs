//! What the quickstart and the ha_controller example share: the simulated cluster's pods and
//! nodes, and the drain controller's step (a cordoned node's pods are evicted and replaced on
//! the other nodes of its zone; once it is empty, it is marked drained).

#![allow(dead_code)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::source::memory::MemorySource;
use cache_core::{CacheReader, Indexed, Object, ObjectKey, ResourceVersion};

/// A pod's phase, an index value of its own type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// A pod, as a controller keeps it: only the fields it needs, each index declared where the
/// field is. The derive writes the key (`namespace/name`), the indexes, and typed queries:
/// `by_node`, `by_namespace`, `by_phase`, `by_owner`.
#[derive(Clone, Debug, Indexed)]
pub struct Pod {
    #[key(namespace)]
    #[index]
    pub namespace: String,
    #[key(name)]
    pub name: String,
    /// `None` while unscheduled.
    #[index]
    pub node: Option<String>,
    #[index]
    pub phase: Phase,
    /// The ReplicaSet that owns it.
    #[index]
    pub owner: String,
    pub restarts: u32,
    #[resource_version]
    pub rv: Option<ResourceVersion>,
}

/// A node: cluster-scoped, indexed by zone.
#[derive(Clone, Debug, Indexed)]
pub struct Node {
    #[key(name)]
    pub name: String,
    #[index]
    pub zone: String,
    /// Cordoned: no new pods, and the drain controller evicts the ones it has.
    pub unschedulable: bool,
    /// Set by the drain controller once the node is empty.
    pub drained: bool,
    #[resource_version]
    pub rv: Option<ResourceVersion>,
}

/// `node-007`.
pub fn node_name(i: usize) -> String {
    format!("node-{i:03}")
}

/// A schedulable node's worth of nodes: `n` of them, spread over `zones`.
pub fn nodes(n: usize, zones: &[&str]) -> impl Iterator<Item = Node> {
    let zones: Vec<String> = zones.iter().map(|z| (*z).to_owned()).collect();
    (0..n).map(move |i| Node {
        name: node_name(i),
        zone: zones[i % zones.len()].clone(),
        unschedulable: false,
        drained: false,
        rv: None,
    })
}

/// The node of `pod`, when that node is cordoned: how a pod's change triggers its node's
/// reconcile (a secondary watch, mapped through the nodes cache).
pub fn cordoned_node(nodes: &CacheReader<Node>, pod: &Pod) -> Option<ObjectKey> {
    pod.node
        .as_deref()
        .map(ObjectKey::cluster)
        .filter(|node| nodes.get_by_key(node).is_some_and(|n| n.unschedulable))
}

/// The "API server" the drain controller writes to.
pub struct Fleet {
    pub pods: MemorySource<Pod>,
    pub nodes: MemorySource<Node>,
    next_pod: AtomicU64,
}

impl Fleet {
    pub fn new(pods: MemorySource<Pod>, nodes: MemorySource<Node>) -> Self {
        Self {
            pods,
            nodes,
            next_pod: AtomicU64::new(0),
        }
    }

    /// A new pod for `old`'s owner on `node`, as its ReplicaSet would create it.
    pub fn replacement(&self, old: &Pod, node: &str) -> Pod {
        let n = self.next_pod.fetch_add(1, Ordering::Relaxed);
        Pod {
            name: format!("{}-r{n:05}", old.owner),
            node: Some(node.to_owned()),
            phase: Phase::Pending,
            restarts: 0,
            rv: None,
            ..old.clone()
        }
    }
}

/// What one drain step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do: the node is not cordoned, or is drained already.
    Idle,
    /// The node was empty: it is marked drained now.
    Drained,
    /// This many pods were evicted and replaced on `onto` other nodes of the zone.
    Evicted { pods: u64, onto: usize },
}

/// Why a drain cannot go on: retried with backoff by the controller.
#[derive(Debug)]
pub struct NoCapacity {
    pub zone: String,
}

impl fmt::Display for NoCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no schedulable node left in {}", self.zone)
    }
}

/// One drain step for `node`, reading the pods and nodes caches and writing to `fleet`.
pub fn drain_step(
    node: &Node,
    pods: &CacheReader<Pod>,
    nodes: &CacheReader<Node>,
    fleet: &Fleet,
) -> Result<Step, NoCapacity> {
    if !node.unschedulable || node.drained {
        return Ok(Step::Idle);
    }
    let victims = pods.by_node(&node.name);
    if victims.is_empty() {
        // The cache may not show our own earlier write yet: the source is the truth. (Two
        // reconciles of one node never run at once, so this check does not race.)
        let current = fleet.nodes.get(&node.key());
        if current.is_some_and(|n| n.unschedulable && !n.drained) {
            fleet.nodes.put(Node {
                drained: true,
                ..node.clone()
            });
            return Ok(Step::Drained);
        }
        return Ok(Step::Idle);
    }
    let targets: Vec<_> = nodes
        .by_zone(&node.zone)
        .into_iter()
        .filter(|n| !n.unschedulable)
        .collect();
    if targets.is_empty() {
        return Err(NoCapacity {
            zone: node.zone.clone(),
        });
    }
    let mut evicted = 0;
    for (i, pod) in victims.iter().enumerate() {
        // The delete is the eviction; a pod evicted by an earlier pass is gone already.
        if fleet.pods.delete(&pod.key()).is_some() {
            fleet
                .pods
                .put(fleet.replacement(pod, &targets[i % targets.len()].name));
            evicted += 1;
        }
    }
    Ok(Step::Evicted {
        pods: evicted,
        onto: targets.len(),
    })
}
