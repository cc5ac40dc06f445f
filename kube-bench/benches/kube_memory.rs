//! Memory: heap bytes the cache holds once synced with the recorded pods, and the peak while
//! syncing, ours against kube-runtime's reflector Store. A counting global allocator (`stats_alloc`)
//! measures every heap byte the process holds above the baseline taken just before the sync (the
//! recording and the replay server are allocated before it).
//!
//! `cargo bench --manifest-path kube-bench/Cargo.toml --bench kube_memory`

mod heap;

use std::future::Future;
use std::sync::Arc;

use kube_bench::{
    Recording, ReplayServer, Running, pod_count, sync_kube_runtime, sync_ours_slim, sync_ours_whole,
};

async fn measure<S, F>(
    name: &str,
    recording: &Arc<Recording>,
    sync: impl FnOnce(kube::Client) -> F,
    len: impl Fn(&S) -> usize,
) where
    F: Future<Output = (S, Running)>,
{
    let server = ReplayServer::start(recording.clone()).await;
    let client = server.client();
    let heap::Synced {
        store,
        running,
        took,
        held,
        peak,
    } = heap::measure_sync(300, sync(client)).await;
    let n = len(&store);
    println!(
        "| {name} | {n} | {:.1} MiB | {:.0} B | {:.1} MiB | {:.2} s |",
        heap::mib(held),
        held as f64 / n as f64,
        heap::mib(peak),
        took.as_secs_f64()
    );
    running.stop().await;
    drop(store);
    drop(server);
    heap::settle(300).await;
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n = pod_count();
    let recording = Arc::new(Recording::new(n));
    println!(
        "{n} pods, {:.0} MiB of list JSON ({:.0} B per pod)\n",
        heap::mib(recording.bytes),
        recording.bytes as f64 / n as f64
    );
    println!("| cache | objects | held after sync | per object | peak during sync | sync time |");
    println!("|---|---|---|---|---|---|");
    rt.block_on(async {
        use k8s_openapi::api::core::v1::Pod;
        use kube::runtime::reflector::Store;
        measure(
            "kube-runtime `Store<Pod>`",
            &recording,
            |c| sync_kube_runtime(c, false),
            |s: &Store<Pod>| s.len(),
        )
        .await;
        measure(
            "kube-runtime `Store<Pod>`, managed fields dropped (`.modify`)",
            &recording,
            |c| sync_kube_runtime(c, true),
            |s: &Store<Pod>| s.len(),
        )
        .await;
        measure(
            "ours `Cache<KubeObject<Pod>>` (whole pods, no index)",
            &recording,
            sync_ours_whole,
            |c: &Arc<cache_core::Cache<_>>| c.len(),
        )
        .await;
        measure(
            "ours `Cache<SlimPod>` (transform, 3 indexes)",
            &recording,
            sync_ours_slim,
            |c: &Arc<cache_core::Cache<_>>| c.len(),
        )
        .await;
    });
}
