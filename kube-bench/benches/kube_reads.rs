//! Read latency, idle and under writes: a writer thread applies pod updates at 10,000 writes/s
//! while the benchmark reads. Ours: `Cache<SlimPod>` (indexed by node, owner, namespace);
//! kube-runtime: its reflector `Store<Pod>` (a `RwLock<AHashMap>`, no indexes, so "pods on a
//! node" is `state_filter`, a scan under the read lock).
//!
//! `cargo bench --manifest-path kube-bench/Cargo.toml --bench kube_reads`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cache_core::{Cache, ObjectKey};
use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::Event;
use kube_bench::{
    NODE, Recording, SlimPod, modified_pods, name_of, node_of, pod_count, slim_cache,
};

/// A writer thread that runs until dropped, counting its writes.
struct Writer {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    started: Instant,
    thread: Option<thread::JoinHandle<()>>,
    name: &'static str,
}

/// Writes per second each writer aims at: the same load on both sides (a busy cluster's pod
/// churn is far below it).
const WRITES_PER_SEC: u64 = 10_000;

impl Writer {
    fn spawn(name: &'static str, mut write: impl FnMut(usize) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let thread = thread::spawn({
            let (stop, writes) = (stop.clone(), writes.clone());
            move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    write(i);
                    i += 1;
                    writes.fetch_add(1, Ordering::Relaxed);
                    // Paced: sleep whenever ahead of the schedule.
                    let due =
                        started + Duration::from_micros(i as u64 * 1_000_000 / WRITES_PER_SEC);
                    if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(ahead);
                    }
                }
            }
        });
        Self {
            stop,
            writes,
            started,
            thread: Some(thread),
            name,
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let w = self.writes.load(Ordering::Relaxed) as f64;
        eprintln!(
            "{}: {:.0} writes/s during the reads",
            self.name,
            w / self.started.elapsed().as_secs_f64()
        );
    }
}

fn decode(recording: &Recording) -> Vec<Pod> {
    recording
        .pages
        .iter()
        .flat_map(|p| {
            serde_json::from_slice::<kube::core::ObjectList<Pod>>(p)
                .unwrap()
                .items
        })
        .collect()
}

fn reads(c: &mut Criterion) {
    let n = pod_count();
    let pods = decode(&Recording::new(n));
    let updates: Vec<Pod> = modified_pods(10_000.min(n), n);

    // Ours.
    let cache: Arc<Cache<SlimPod>> = Arc::new(slim_cache());
    let slim: Vec<_> = pods
        .iter()
        .cloned()
        .map(|p| Arc::new(SlimPod::from_pod(p).unwrap()))
        .collect();
    cache.replace(slim, Some("1".into())).unwrap();
    let slim_updates: Vec<_> = updates
        .iter()
        .cloned()
        .map(|p| Arc::new(SlimPod::from_pod(p).unwrap()))
        .collect();

    // kube-runtime, filled the way its reflector fills it.
    let (store, mut writer) = reflector::store::<Pod>();
    writer.apply_watcher_event(&Event::Init);
    for p in pods {
        writer.apply_watcher_event(&Event::InitApply(p));
    }
    writer.apply_watcher_event(&Event::InitDone);
    assert_eq!(store.len(), n);
    let kr_updates: Vec<_> = updates.into_iter().map(Event::Apply).collect();
    let mut writer = Some(writer);

    let keys: Vec<ObjectKey> = (0..n)
        .step_by(7)
        .map(|i| {
            let (ns, name) = name_of(i);
            ObjectKey::new(&ns, &name)
        })
        .collect();
    let refs: Vec<ObjectRef<Pod>> = (0..n)
        .step_by(7)
        .map(|i| {
            let (ns, name) = name_of(i);
            ObjectRef::new(&name).within(&ns)
        })
        .collect();
    let node = node_of(42);

    let mut g = c.benchmark_group(format!("kube_reads/{n}_pods"));
    g.measurement_time(Duration::from_secs(5));
    for writes in [false, true] {
        let tag = if writes { "under_writes" } else { "idle" };

        let _w = writes.then(|| {
            let (cache, up) = (cache.clone(), slim_updates.clone());
            Writer::spawn("ours", move |i| {
                cache.update(up[i % up.len()].clone()).unwrap();
            })
        });
        let mut i = 0;
        g.bench_function(format!("get/ours/{tag}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(cache.get_by_key(&keys[i]))
            })
        });
        g.bench_function(format!("pods_on_node/ours_index/{tag}"), |b| {
            b.iter(|| black_box(cache.snapshot().by(NODE, node.as_str()).len()))
        });
        drop(_w);

        // kube-runtime's Writer is not Clone: the writer thread takes it (the last run).
        let _w = writes.then(|| {
            let up = kr_updates.clone();
            let mut w = writer.take().expect("one run under writes");
            Writer::spawn("kube-runtime", move |i| {
                w.apply_watcher_event(&up[i % up.len()])
            })
        });
        let mut i = 0;
        g.bench_function(format!("get/kube_runtime/{tag}"), |b| {
            b.iter(|| {
                i = (i + 1) % refs.len();
                black_box(store.get(&refs[i]))
            })
        });
        g.bench_function(
            format!("pods_on_node/kube_runtime_state_filter/{tag}"),
            |b| {
                b.iter(|| {
                    black_box(
                        store
                            .state_filter(|p: &Pod| {
                                p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                                    == Some(node.as_str())
                            })
                            .len(),
                    )
                })
            },
        );
        drop(_w);
    }
    g.finish();
}

criterion_group!(benches, reads);
criterion_main!(benches);
