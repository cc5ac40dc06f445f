//! The pods of a live cluster, indexed by node and by owner.
//!
//! Each Pod is turned into a compact `PodInfo` of our own before it is stored: it derives
//! `Indexed`, so `PodInfo::NODE` and `PodInfo::OWNER` are typed index handles, and it keeps
//! only what this program reads (no managed fields, no full spec or status).
//!
//! It needs a cluster: the current kubeconfig context, or the in-cluster service account.
//!
//! ```sh
//! cargo run -p examples --features kube --example kube_pods
//! ```
//!
//! CI only builds it.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use cache_core::reflector::Reflector;
use cache_core::{Cache, Indexed, ObjectKey, ResourceVersion};
use cache_kube::{KubeListWatch, object_key, resource_version};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// What this program needs of a Pod.
#[derive(Debug, Indexed)]
struct PodInfo {
    #[key]
    key: ObjectKey,
    #[resource_version]
    rv: ResourceVersion,
    /// The node it is scheduled on; `None` while pending.
    #[index]
    node: Option<String>,
    /// Its controller, as `Kind/name` (e.g. `ReplicaSet/web-7d4b9c8f6d`).
    #[index]
    owner: Option<String>,
    phase: String,
}

impl PodInfo {
    /// The transform: runs once per Pod, before it reaches the cache.
    fn from_pod(pod: Pod) -> Result<Self, &'static str> {
        let key = object_key(&pod).ok_or("no name")?;
        let rv = resource_version(&pod).ok_or("no resourceVersion")?;
        let owner = pod
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true))
            .map(|o| format!("{}/{}", o.kind, o.name));
        Ok(Self {
            key,
            rv,
            node: pod.spec.and_then(|s| s.node_name),
            owner,
            phase: pod.status.and_then(|s| s.phase).unwrap_or_default(),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::try_default().await?;
    let source = KubeListWatch::new(Api::<Pod>::all(client)).map(PodInfo::from_pod);
    let cache = Arc::new(Cache::<PodInfo>::new());

    // Clones of a reflector share it: one runs, the other waits and reads its state.
    let reflector = Reflector::new(source, cache.clone());
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (reflector, stop) = (reflector.clone(), stop.clone());
        async move { reflector.run(stop).await }
    });
    reflector.wait_for_sync().await;

    loop {
        // One snapshot: the objects and both indexes agree, and reading never blocks the
        // reflector.
        let snap = cache.snapshot();
        let nodes = snap.values(PodInfo::NODE);
        let owners = snap.values(PodInfo::OWNER);
        println!(
            "{} pods on {} nodes, from {} controllers (resource version {})",
            snap.len(),
            nodes.len(),
            owners.len(),
            snap.resource_version().map_or("-", |rv| rv.as_str()),
        );
        for node in nodes.iter().take(5) {
            let pods = snap.by(PodInfo::NODE, node);
            let running = pods.iter().filter(|p| p.phase == "Running").count();
            println!("  node {node}: {} pods, {running} running", pods.len());
        }
        for owner in owners.iter().take(5) {
            let pods = snap.by(PodInfo::OWNER, owner);
            let names: Vec<_> = pods.iter().map(|p| p.key.name()).collect();
            println!("  {owner}: {names:?}");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    stop.cancel();
    running.await?;
    Ok(())
}
