//! Time to sync: from an empty cache to "synced", listing the recorded pods over HTTP in pages
//! of 500 (JSON decoding included), ours against kube-runtime's watcher + reflector Store.
//!
//! `cargo bench --manifest-path kube-bench/Cargo.toml --bench kube_sync`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kube_bench::{
    Recording, ReplayServer, pod_count, sync_kube_runtime, sync_ours_slim, sync_ours_whole,
};

fn sync(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n = pod_count();
    let recording = Arc::new(Recording::new(n));
    eprintln!(
        "recorded {n} pods, {} pages, {:.0} MiB of JSON",
        recording.pages.len(),
        recording.bytes as f64 / (1 << 20) as f64
    );
    let mut group = c.benchmark_group(format!("kube_sync/{n}_pods"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(40));
    group.throughput(Throughput::Elements(n as u64));

    macro_rules! side {
        ($name:literal, $sync:expr, $len:expr) => {
            group.bench_function($name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let server = ReplayServer::start(recording.clone()).await;
                            let client = server.client();
                            let start = Instant::now();
                            let (store, running) = $sync(client).await;
                            total += start.elapsed();
                            assert_eq!($len(&store), n);
                            running.stop().await;
                            drop(store);
                            drop(server);
                        }
                        total
                    })
                })
            });
        };
    }
    side!("ours_slim_3_indexes", sync_ours_slim, |c: &Arc<
        cache_core::Cache<kube_bench::SlimPod>,
    >| c.len());
    side!("ours_whole_pod", sync_ours_whole, |c: &Arc<
        cache_core::Cache<cache_kube::KubeObject<k8s_openapi::api::core::v1::Pod>>,
    >| c.len());
    side!(
        "kube_runtime_store",
        |c| sync_kube_runtime(c, false),
        |s: &kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod>| s.len()
    );
    side!(
        "kube_runtime_store_no_managed_fields",
        |c| sync_kube_runtime(c, true),
        |s: &kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod>| s.len()
    );
    group.finish();
}

criterion_group!(benches, sync);
criterion_main!(benches);
