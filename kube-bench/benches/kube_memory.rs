//! Memory: heap bytes the cache holds once synced with the recorded pods, and the peak while
//! syncing, ours against kube-runtime's reflector Store. A counting global allocator (`stats_alloc`)
//! measures every heap byte the process holds above the baseline taken just before the sync (the
//! recording and the replay server are allocated before it).
//!
//! `cargo bench --manifest-path kube-bench/Cargo.toml --bench kube_memory`

use std::alloc::System;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube_bench::{
    Recording, ReplayServer, Running, pod_count, sync_kube_runtime, sync_ours_slim, sync_ours_whole,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

// A counting allocator from a crate, so this benchmark has no unsafe code of its own.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes the process holds now.
fn current() -> usize {
    let s = GLOBAL.stats();
    let held = s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated;
    usize::try_from(held).unwrap_or(0)
}

/// The highest `current()` seen by the sampler (every millisecond) since its last reset.
static PEAK: AtomicUsize = AtomicUsize::new(0);
static SAMPLING: AtomicBool = AtomicBool::new(false);

/// Samples the heap every millisecond while `SAMPLING` is set; the peak is therefore the highest
/// sample, within a millisecond of the true peak.
fn sample_peak() -> std::thread::JoinHandle<()> {
    SAMPLING.store(true, Ordering::SeqCst);
    std::thread::spawn(|| {
        while SAMPLING.load(Ordering::SeqCst) {
            PEAK.fetch_max(current(), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

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
    settle().await;
    let base = current();
    PEAK.store(base, Ordering::Relaxed);
    let sampler = sample_peak();
    let start = Instant::now();
    let (store, running) = sync(client).await;
    let took = start.elapsed();
    // Let in-flight buffers drain (the open watch, the last page).
    tokio::time::sleep(Duration::from_millis(500)).await;
    SAMPLING.store(false, Ordering::SeqCst);
    let _ = sampler.join();
    let held = current().saturating_sub(base);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let n = len(&store);
    println!(
        "| {name} | {n} | {:.1} MiB | {:.0} B | {:.1} MiB | {:.2} s |",
        mib(held),
        held as f64 / n as f64,
        mib(peak),
        took.as_secs_f64()
    );
    running.stop().await;
    drop(store);
    drop(server);
    settle().await;
}

/// Waits until the heap stops shrinking: what the last run held is freed before the next
/// baseline is taken.
async fn settle() {
    let mut last = current();
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = current();
        if last.abs_diff(now) < 1 << 20 {
            return;
        }
        last = now;
    }
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
        mib(recording.bytes),
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
