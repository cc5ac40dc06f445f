//! Heap accounting shared by the memory benchmarks (`kube_memory`, `kube_apiserver`): a
//! counting global allocator (`stats_alloc`, so no allocator code of our own), a sampler of the
//! peak, and one measured sync.

use std::alloc::System;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube_bench::Running;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes the process holds now.
pub fn current() -> usize {
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

/// Bytes in MiB.
pub fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// Waits, up to `rounds` times 100 ms, until the heap stops shrinking: what the last run held
/// is freed before the next baseline is taken.
pub async fn settle(rounds: usize) {
    let mut last = current();
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = current();
        if last.abs_diff(now) < 1 << 20 {
            return;
        }
        last = now;
    }
}

/// What one measured sync cost.
pub struct Synced<S> {
    /// The synced store and what keeps it running.
    pub store: S,
    pub running: Running,
    /// How long the sync took.
    pub took: Duration,
    /// Heap bytes held once synced, above the baseline taken just before.
    pub held: usize,
    /// The highest heap seen while syncing, above the same baseline.
    pub peak: usize,
}

/// Settles the heap (up to `settle_rounds` times 100 ms), takes the baseline, then runs `sync`
/// and measures the time it takes, the heap it holds once in-flight buffers have drained, and
/// the peak on the way.
pub async fn measure_sync<S, F>(settle_rounds: usize, sync: F) -> Synced<S>
where
    F: Future<Output = (S, Running)>,
{
    settle(settle_rounds).await;
    let base = current();
    PEAK.store(base, Ordering::Relaxed);
    let sampler = sample_peak();
    let start = Instant::now();
    let (store, running) = sync.await;
    let took = start.elapsed();
    // Let in-flight buffers drain (the open watch, the last page).
    tokio::time::sleep(Duration::from_millis(500)).await;
    SAMPLING.store(false, Ordering::SeqCst);
    let _ = sampler.join();
    Synced {
        store,
        running,
        took,
        held: current().saturating_sub(base),
        peak: PEAK.load(Ordering::Relaxed).saturating_sub(base),
    }
}
