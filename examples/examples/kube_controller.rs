//! A controller against a live cluster: it labels every scheduled pod with the pool of its
//! node (`example.typed-cache.dev/pool=pool-a` for a pod on node `pool-a-3`).
//!
//! A `SharedIndexInformer` fills a cache of compact `PodInfo`s from the API server; the
//! `Controller` reconciles each pod that is added or changes, reading it from that cache, and
//! writes the label through the API only when it is missing or wrong. The label's own change
//! comes back through the watch, and the reconcile then finds nothing to do.
//!
//! It needs a cluster: the current kubeconfig context, or the in-cluster service account, with
//! the right to patch pods. It runs until Ctrl-C.
//!
//! ```sh
//! cargo run -p examples --features kube --example kube_controller
//! ```
//!
//! cache-kube's tests run it against a real kube-apiserver (`tests/controller_example.rs`).
#![forbid(unsafe_code)]

use std::sync::Arc;

use cache_core::controller::{Action, Context, Controller, ControllerStats};
use cache_core::informer::{InformerError, SharedIndexInformer};
use cache_core::{Indexed, ObjectKey, ResourceVersion};
use cache_kube::{KubeListWatch, object_key, resource_version};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// The label this controller writes.
pub const POOL_LABEL: &str = "example.typed-cache.dev/pool";

/// What the controller needs of a Pod.
#[derive(Debug, Indexed)]
pub struct PodInfo {
    #[key]
    key: ObjectKey,
    #[resource_version]
    rv: ResourceVersion,
    /// The node it is scheduled on; `None` while pending.
    #[index]
    node: Option<String>,
    /// The pool label as it is now.
    pool: Option<String>,
}

impl PodInfo {
    fn from_pod(pod: Pod) -> Result<Self, &'static str> {
        Ok(Self {
            key: object_key(&pod).ok_or("no name")?,
            rv: resource_version(&pod).ok_or("no resourceVersion")?,
            pool: pod
                .metadata
                .labels
                .and_then(|mut labels| labels.remove(POOL_LABEL)),
            node: pod.spec.and_then(|s| s.node_name),
        })
    }
}

/// The pool of a node: its name without the last `-` part (`pool-a-3` is in `pool-a`).
pub fn pool_of(node: &str) -> &str {
    node.rsplit_once('-').map_or(node, |(pool, _)| pool)
}

/// Labels `pod` with its node's pool, when it is scheduled and the label is not right yet.
async fn reconcile(
    pod: Arc<PodInfo>,
    ctx: Context<PodInfo, Client>,
) -> Result<Action, kube::Error> {
    let Some(node) = pod.node.as_deref() else {
        // Not scheduled: its next change (the binding) reconciles it again.
        return Ok(Action::await_change());
    };
    let pool = pool_of(node);
    if pod.pool.as_deref() == Some(pool) {
        return Ok(Action::await_change());
    }
    let namespace = pod.key.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(Client::clone(ctx.data()), namespace);
    let patch = serde_json::json!({ "metadata": { "labels": { POOL_LABEL: pool } } });
    api.patch(
        pod.key.name(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(Action::await_change())
}

/// Runs the informer and the controller until `stop` is cancelled; returns the controller's
/// counters.
pub async fn run(
    client: Client,
    stop: CancellationToken,
) -> Result<ControllerStats, InformerError> {
    let source = KubeListWatch::new(Api::<Pod>::all(client.clone())).map(PodInfo::from_pod);
    let pods = SharedIndexInformer::builder(source).name("pods").build();
    let controller = Controller::new(&pods)?.name("pool-labeler").concurrency(8);
    let informer = tokio::spawn({
        let (pods, stop) = (pods.clone(), stop.clone());
        async move { pods.run(stop).await }
    });
    let stats = controller.run(reconcile, Arc::new(client), stop).await;
    let _ = informer.await;
    Ok(stats)
}

#[allow(dead_code)] // cache-kube's test includes this file and calls `run` instead.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::try_default().await?;
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        }
    });
    let stats = run(client, stop).await?;
    println!(
        "stopped: {} reconciles, {} errors",
        stats.reconciles, stats.errors
    );
    Ok(())
}
