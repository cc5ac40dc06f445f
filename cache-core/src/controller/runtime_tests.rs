//! The controller's behaviour: one reconcile per key at a time, requeues, backoff, the error
//! policy, startup after sync, secondary watches, graceful shutdown, metrics. Timing tests run
//! on paused tokio time, so every delay is exact.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::reflector::{Reflector, ReflectorStats};
use crate::source::memory::{MemorySource, Versioned};
use crate::test_support::{self, Item};
use crate::workqueue::ItemExponentialRateLimiter;
use crate::{Cache, Indexers, Object, ResourceVersion};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Fails the test instead of hanging it.
async fn within<F: Future>(f: F) -> F::Output {
    timeout(Duration::from_secs(600), f)
        .await
        .expect("the controller hung")
}

fn item(name: &str) -> Item {
    test_support::item(name, 0)
}

fn cache_of(names: &[&str]) -> Arc<Cache<Item>> {
    let cache = test_support::cache();
    for name in names {
        cache.add(Arc::new(item(name))).unwrap();
    }
    cache
}

#[derive(Debug, thiserror::Error)]
#[error("reconcile of {0} failed")]
struct Failed(String);

/// What the reconciles saw: each reconcile's key and start time.
#[derive(Default)]
struct Log {
    calls: Mutex<Vec<(String, Instant)>>,
}

impl Log {
    fn record(&self, key: &str) {
        self.calls
            .lock()
            .unwrap()
            .push((key.to_owned(), Instant::now()));
    }

    fn keys(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn count(&self, key: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == key)
            .count()
    }

    fn times(&self, key: &str) -> Vec<Instant> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, t)| *t)
            .collect()
    }

    /// The gaps between consecutive reconciles of `key`.
    fn gaps(&self, key: &str) -> Vec<Duration> {
        self.times(key).windows(2).map(|w| w[1] - w[0]).collect()
    }

    async fn wait_for(&self, key: &str, calls: usize) {
        within(async {
            while self.count(key) < calls {
                tokio::time::sleep(ms(1)).await;
            }
        })
        .await;
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn every_cached_object_is_reconciled_once_at_start() {
    let cache = cache_of(&["a", "b", "c"]);
    let log = Arc::new(Log::default());
    let controller = Controller::for_cache(cache);
    let handle = controller.handle();
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            Ok::<_, Failed>(Action::await_change())
        },
        log.clone(),
        stop.clone(),
    ));
    handle.wait_for_sync().await.unwrap();
    tokio::time::sleep(secs(10)).await;
    let mut keys = log.keys();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"]);
    stop.cancel();
    let stats = within(run).await.unwrap();
    assert_eq!((stats.reconciles, stats.successes, stats.errors), (3, 3, 0));
}

/// Per key, how many reconciles run now; and the largest counts seen.
#[derive(Default)]
struct Overlap {
    running: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
    max_per_key: AtomicUsize,
    max_total: AtomicUsize,
    calls: AtomicUsize,
}

impl Overlap {
    fn enter(&self, key: &str) {
        let mut running = self.running.lock().unwrap();
        let n = running.entry(key.to_owned()).or_default();
        *n += 1;
        self.max_per_key.fetch_max(*n, Ordering::SeqCst);
        let total = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_total.fetch_max(total, Ordering::SeqCst);
    }

    fn exit(&self, key: &str) {
        *self.running.lock().unwrap().get_mut(key).unwrap() -= 1;
        self.total.fetch_sub(1, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

async fn overlapping_reconcile(
    item: Arc<Item>,
    ctx: Context<Item, Overlap>,
) -> Result<Action, Failed> {
    ctx.enter(&item.name);
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(ms(3)).await;
    ctx.exit(&item.name);
    Ok(Action::await_change())
}

/// Triggers keeps arriving for keys already being reconciled; each key is still reconciled by
/// one task at a time, while different keys run side by side.
async fn no_concurrent_reconciles_of_one_key() {
    let names: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let cache = cache_of(&refs);
    let (tx, rx) = mpsc::unbounded();
    let controller = Controller::for_cache(cache).concurrency(8).trigger(rx);
    let overlap = Arc::new(Overlap::default());
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(overlapping_reconcile, overlap.clone(), stop.clone()));
    within(async {
        while overlap.calls.load(Ordering::SeqCst) < 300 {
            for name in &names {
                tx.unbounded_send(name.clone()).unwrap();
            }
            tokio::time::sleep(ms(1)).await;
        }
    })
    .await;
    stop.cancel();
    within(run).await.unwrap();
    assert_eq!(overlap.max_per_key.load(Ordering::SeqCst), 1);
    // Different keys did overlap: the test would catch two reconciles of one key.
    assert!(overlap.max_total.load(Ordering::SeqCst) > 1);
    assert!(overlap.max_total.load(Ordering::SeqCst) <= 8);
}

#[tokio::test(start_paused = true)]
async fn one_key_is_never_reconciled_twice_at_once() {
    no_concurrent_reconciles_of_one_key().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_is_never_reconciled_twice_at_once_on_many_threads() {
    no_concurrent_reconciles_of_one_key().await;
}

#[tokio::test(start_paused = true)]
async fn at_most_concurrency_reconciles_run_at_once() {
    let names: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let controller = Controller::for_cache(cache_of(&refs)).concurrency(3);
    let overlap = Arc::new(Overlap::default());
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(overlapping_reconcile, overlap.clone(), stop.clone()));
    within(async {
        while overlap.calls.load(Ordering::SeqCst) < 20 {
            tokio::time::sleep(ms(1)).await;
        }
    })
    .await;
    stop.cancel();
    within(run).await.unwrap();
    assert_eq!(overlap.max_total.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn requeue_reconciles_again_after_the_duration() {
    let log = Arc::new(Log::default());
    let (tx, rx) = mpsc::unbounded();
    let controller = Controller::for_cache(cache_of(&["a"])).trigger(rx);
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            Ok::<_, Failed>(Action::requeue(secs(10)))
        },
        log.clone(),
        stop.clone(),
    ));
    log.wait_for("a", 3).await;
    assert_eq!(log.gaps("a"), [secs(10), secs(10)]);

    // A change before the requeue is due is reconciled at once; the requeue still comes at its
    // time (the earlier of two pending times wins).
    let last = log.times("a")[2];
    tokio::time::sleep_until(last + secs(4)).await;
    tx.unbounded_send("a".to_owned()).unwrap();
    log.wait_for("a", 5).await;
    assert_eq!(log.gaps("a")[2..], [secs(4), secs(6)]);
    stop.cancel();
    within(run).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_and_success_resets_the_backoff() {
    let log = Arc::new(Log::default());
    let (tx, rx) = mpsc::unbounded();
    let controller = Controller::for_cache(cache_of(&["a"])).trigger(rx);
    let stop = CancellationToken::new();
    // Fails the first 4 times, succeeds the 5th, then fails again.
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            match ctx.count(&item.name) {
                5 => Ok(Action::await_change()),
                _ => Err(Failed(item.name.clone())),
            }
        },
        log.clone(),
        stop.clone(),
    ));
    log.wait_for("a", 5).await;
    // client-go's default limiter: 5 ms doubling per key.
    assert_eq!(log.gaps("a"), [ms(5), ms(10), ms(20), ms(40)]);
    // The success was forgotten: no further retry.
    tokio::time::sleep(secs(60)).await;
    assert_eq!(log.count("a"), 5);
    // A new failure starts from the shortest delay again.
    tx.unbounded_send("a".to_owned()).unwrap();
    log.wait_for("a", 8).await;
    assert_eq!(log.gaps("a")[5..], [ms(5), ms(10)]);
    stop.cancel();
    let stats = within(run).await.unwrap();
    assert_eq!(stats.successes, 1);
    assert_eq!(stats.errors, stats.reconciles - 1);
}

#[tokio::test(start_paused = true)]
async fn a_custom_rate_limiter_sets_the_backoff() {
    let log = Arc::new(Log::default());
    let controller = Controller::for_cache(cache_of(&["a"]))
        .rate_limiter(ItemExponentialRateLimiter::new(secs(1), secs(4)));
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            Err::<Action, _>(Failed(item.name.clone()))
        },
        log.clone(),
        stop.clone(),
    ));
    log.wait_for("a", 6).await;
    assert_eq!(log.gaps("a"), [secs(1), secs(2), secs(4), secs(4), secs(4)]);
    stop.cancel();
    within(run).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_error_policy_decides_after_a_failure() {
    let log = Arc::new(Log::default());
    let seen_errors = Arc::new(Mutex::new(Vec::new()));
    let controller = Controller::for_cache(cache_of(&["a", "b"]));
    let stop = CancellationToken::new();
    let errors = seen_errors.clone();
    let run = tokio::spawn(controller.run_with_error_policy(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            Err::<Action, _>(Failed(item.name.clone()))
        },
        move |item, error, ctx| {
            errors.lock().unwrap().push(error.to_string());
            match item.name.as_str() {
                // A fixed delay.
                "a" => Action::requeue(secs(3)),
                // Backoff, then give up after two retries.
                _ if ctx.num_requeues(&item.name) < 2 => Action::requeue_rate_limited(),
                _ => Action::await_change(),
            }
        },
        log.clone(),
        stop.clone(),
    ));
    log.wait_for("a", 4).await;
    assert_eq!(log.gaps("a"), [secs(3), secs(3), secs(3)]);
    assert_eq!(log.count("b"), 3, "b gave up after two retries");
    assert_eq!(log.gaps("b"), [ms(5), ms(10)]);
    assert!(
        seen_errors
            .lock()
            .unwrap()
            .contains(&"reconcile of b failed".to_owned())
    );
    stop.cancel();
    within(run).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_reconcile_is_retried_with_backoff_and_the_controller_goes_on() {
    let log = Arc::new(Log::default());
    let controller = Controller::for_cache(cache_of(&["a", "b"]));
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            if item.name == "a" && ctx.count("a") == 1 {
                panic!("bug in the reconcile");
            }
            Ok::<_, Failed>(Action::await_change())
        },
        log.clone(),
        stop.clone(),
    ));
    log.wait_for("a", 2).await;
    log.wait_for("b", 1).await;
    assert_eq!(log.gaps("a"), [ms(5)]);
    stop.cancel();
    let stats = within(run).await.unwrap();
    assert_eq!(
        (
            stats.reconciles,
            stats.successes,
            stats.errors,
            stats.panics
        ),
        (3, 2, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn keys_of_objects_gone_from_the_cache_are_skipped_quietly() {
    let cache = cache_of(&["a"]);
    let log = Arc::new(Log::default());
    let (tx, rx) = mpsc::unbounded();
    let controller = Controller::for_cache(cache.clone()).trigger(rx);
    let handle = controller.handle();
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            Ok::<_, Failed>(Action::requeue(secs(5)))
        },
        log.clone(),
        stop.clone(),
    ));
    log.wait_for("a", 1).await;
    // Never existed.
    tx.unbounded_send("ghost".to_owned()).unwrap();
    // Deleted while its requeue waits.
    cache.delete_key(&"a".to_owned());
    tokio::time::sleep(secs(20)).await;
    assert_eq!(log.keys(), ["a"]);
    assert_eq!(handle.stats().skipped, 2);
    stop.cancel();
    let stats = within(run).await.unwrap();
    assert_eq!((stats.reconciles, stats.errors, stats.skipped), (1, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn the_first_reconcile_waits_for_the_caches_to_sync() {
    let cache = cache_of(&["a", "b"]);
    let log = Arc::new(Log::default());
    let (synced, sync) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = mpsc::unbounded();
    let controller = Controller::for_cache(cache)
        .wait_for(async move {
            let _ = sync.await;
        })
        .trigger(rx);
    let handle = controller.handle();
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            Ok::<_, Failed>(Action::await_change())
        },
        log.clone(),
        stop.clone(),
    ));
    // Triggers before the sync are kept, not reconciled.
    tx.unbounded_send("a".to_owned()).unwrap();
    tx.unbounded_send("a".to_owned()).unwrap();
    tokio::time::sleep(secs(30)).await;
    assert!(log.keys().is_empty());
    assert!(!handle.is_ready());

    synced.send(()).unwrap();
    handle.wait_for_sync().await.unwrap();
    log.wait_for("a", 1).await;
    log.wait_for("b", 1).await;
    tokio::time::sleep(secs(1)).await;
    // The early triggers and the initial pass merged into one reconcile per object.
    assert_eq!((log.count("a"), log.count("b")), (1, 1));
    stop.cancel();
    within(run).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_controller_on_a_reflector_starts_on_the_complete_cache() {
    let source = MemorySource::new();
    for i in 0..50 {
        source.put(item(&format!("k{i:02}")));
    }
    // A slow list: the controller must wait for it.
    source.set_delay(secs(3));
    let cache = Arc::new(Cache::with_indexers(Indexers::new()));
    let reflector = Reflector::builder(source.clone(), cache.clone())
        .name("items")
        .build();
    let stop = CancellationToken::new();
    let reflecting = tokio::spawn({
        let (reflector, stop) = (reflector.clone(), stop.clone());
        async move { reflector.run(stop).await }
    });
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let controller = Controller::for_cache(cache).reflector(&reflector);
    let run = tokio::spawn(controller.run(
        |_: Arc<Item>, ctx: Context<Item, Mutex<Vec<usize>>>| async move {
            let size = ctx.cache().len();
            ctx.lock().unwrap().push(size);
            Ok::<_, Failed>(Action::await_change())
        },
        sizes.clone(),
        stop.clone(),
    ));
    within(async {
        while sizes.lock().unwrap().len() < 50 {
            tokio::time::sleep(ms(10)).await;
        }
    })
    .await;
    assert!(sizes.lock().unwrap().iter().all(|&n| n == 50));
    stop.cancel();
    within(run).await.unwrap();
    within(reflecting).await.unwrap();
}

#[derive(Debug)]
struct Group {
    members: Vec<String>,
}

#[tokio::test(start_paused = true)]
async fn a_secondary_watch_triggers_the_reconciles_its_mapper_names() {
    let log = Arc::new(Log::default());
    let (tx, rx) = mpsc::unbounded::<Group>();
    let groups = Arc::new(Cache::<Item>::with_indexers(Indexers::new()));
    let controller = Controller::for_cache(cache_of(&["a", "b", "c"]))
        .watches_stream(rx, |group: &Group| group.members.clone())
        .with_cache(groups.clone());
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            Ok::<_, Failed>(Action::await_change())
        },
        log.clone(),
        stop.clone(),
    ));
    for key in ["a", "b", "c"] {
        log.wait_for(key, 1).await;
    }
    tx.unbounded_send(Group {
        members: vec!["a".into(), "c".into(), "missing".into()],
    })
    .unwrap();
    log.wait_for("a", 2).await;
    log.wait_for("c", 2).await;
    tokio::time::sleep(secs(1)).await;
    assert_eq!(log.count("b"), 1);
    stop.cancel();
    let stats = within(run).await.unwrap();
    assert_eq!((stats.reconciles, stats.skipped), (5, 1));
}

#[tokio::test(start_paused = true)]
async fn reconcile_all_on_queues_every_object() {
    let log = Arc::new(Log::default());
    let (tx, rx) = mpsc::unbounded::<()>();
    let controller = Controller::for_cache(cache_of(&["a", "b"])).reconcile_all_on(rx);
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            Ok::<_, Failed>(Action::await_change())
        },
        log.clone(),
        stop.clone(),
    ));
    log.wait_for("a", 1).await;
    log.wait_for("b", 1).await;
    tx.unbounded_send(()).unwrap();
    log.wait_for("a", 2).await;
    log.wait_for("b", 2).await;
    stop.cancel();
    within(run).await.unwrap();
}

/// What a reconcile found through its context: the controller's name, whether its object is in
/// the primary cache, the id of the secondary object, whether an unknown type has no cache.
type Found = (String, bool, u32, bool);

#[tokio::test(start_paused = true)]
async fn the_context_reaches_the_primary_and_secondary_caches() {
    #[derive(Debug)]
    struct Other {
        id: u32,
    }
    impl Object for Other {
        type Key = u32;
        fn key(&self) -> u32 {
            self.id
        }
    }
    struct Missing;
    impl Object for Missing {
        type Key = u8;
        fn key(&self) -> u8 {
            0
        }
    }
    let others = Arc::new(Cache::<Other>::with_indexers(Indexers::new()));
    others.add(Arc::new(Other { id: 7 })).unwrap();
    let found = Arc::new(Mutex::new(None));
    let controller = Controller::for_cache(cache_of(&["a"]))
        .name("ctx-test")
        .with_cache(others);
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Mutex<Option<Found>>>| async move {
            let other = ctx.cache_of::<Other>().and_then(|c| c.get_by_key(&7));
            let missing = ctx.cache_of::<Missing>().is_none();
            *ctx.lock().unwrap() = Some((
                ctx.controller_name().to_owned(),
                ctx.cache().get_by_key(&item.name).is_some(),
                other.map_or(0, |o| o.id),
                missing,
            ));
            Ok::<_, Failed>(Action::await_change())
        },
        found.clone(),
        stop.clone(),
    ));
    within(async {
        while found.lock().unwrap().is_none() {
            tokio::time::sleep(ms(1)).await;
        }
    })
    .await;
    assert_eq!(
        found.lock().unwrap().clone(),
        Some(("ctx-test".to_owned(), true, 7, true))
    );
    stop.cancel();
    within(run).await.unwrap();
}

/// Counts live reconcile futures: each holds a clone of the `Arc`.
struct Tracked {
    log: Log,
    live: Arc<()>,
    finished: AtomicU64,
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_reconciles_in_flight_finish_and_leaves_no_task() {
    let baseline = alive_tasks();
    let names: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let data = Arc::new(Tracked {
        log: Log::default(),
        live: Arc::new(()),
        finished: AtomicU64::new(0),
    });
    let controller = Controller::for_cache(cache_of(&refs)).concurrency(2);
    let handle = controller.handle();
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Tracked>| async move {
            let _live = ctx.live.clone();
            ctx.log.record(&item.name);
            tokio::time::sleep(secs(5)).await;
            ctx.finished.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Failed>(Action::requeue(Duration::ZERO))
        },
        data.clone(),
        stop.clone(),
    ));
    handle.wait_for_sync().await.unwrap();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(handle.stats().in_flight, 2);
    let cancelled_at = Instant::now();
    stop.cancel();
    tokio::task::yield_now().await;
    assert!(!handle.is_ready());
    let stats = within(run).await.unwrap();
    // It returned once the two reconciles in flight had finished, and started no other.
    assert_eq!(Instant::now() - cancelled_at, secs(4));
    assert_eq!(data.finished.load(Ordering::SeqCst), 2);
    assert_eq!(data.log.keys().len(), 2);
    assert_eq!(
        (stats.reconciles, stats.aborted, stats.in_flight),
        (2, 0, 0)
    );
    assert!(handle.is_stopped());
    assert_eq!(Arc::strong_count(&data.live), 1);
    assert_eq!(alive_tasks(), baseline);
}

#[tokio::test(start_paused = true)]
async fn the_shutdown_timeout_drops_stuck_reconciles() {
    let baseline = alive_tasks();
    let data = Arc::new(Tracked {
        log: Log::default(),
        live: Arc::new(()),
        finished: AtomicU64::new(0),
    });
    let controller = Controller::for_cache(cache_of(&["stuck", "quick"])).shutdown_timeout(secs(2));
    let handle = controller.handle();
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Tracked>| async move {
            let _live = ctx.live.clone();
            ctx.log.record(&item.name);
            if item.name == "stuck" {
                std::future::pending::<()>().await;
            }
            ctx.finished.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Failed>(Action::await_change())
        },
        data.clone(),
        stop.clone(),
    ));
    data.log.wait_for("quick", 1).await;
    data.log.wait_for("stuck", 1).await;
    let cancelled_at = Instant::now();
    stop.cancel();
    let stats = within(run).await.unwrap();
    assert_eq!(Instant::now() - cancelled_at, secs(2));
    assert_eq!(
        (stats.reconciles, stats.aborted, stats.in_flight),
        (1, 1, 0)
    );
    assert!(handle.is_stopped());
    assert_eq!(Arc::strong_count(&data.live), 1);
    assert_eq!(alive_tasks(), baseline);
}

#[tokio::test(start_paused = true)]
async fn a_controller_cancelled_before_its_caches_sync_stops_without_reconciling() {
    let baseline = alive_tasks();
    let log = Arc::new(Log::default());
    let controller = Controller::for_cache(cache_of(&["a"])).wait_for(std::future::pending::<()>());
    let handle = controller.handle();
    // Named after the handle was taken: the handle's error names it still.
    let controller = controller.name("gated");
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Log>| async move {
            ctx.record(&item.name);
            Ok::<_, Failed>(Action::await_change())
        },
        log.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(secs(5)).await;
    stop.cancel();
    assert_eq!(
        within(handle.wait_for_sync()).await,
        Err(crate::informer::SyncError::stopped("gated"))
    );
    let stats = within(run).await.unwrap();
    assert_eq!(stats.reconciles, 0);
    assert!(log.keys().is_empty());
    assert_eq!(alive_tasks(), baseline);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_aborts_its_reconciles() {
    let baseline = alive_tasks();
    let data = Arc::new(Tracked {
        log: Log::default(),
        live: Arc::new(()),
        finished: AtomicU64::new(0),
    });
    let controller = Controller::for_cache(cache_of(&["a", "b"]));
    let handle = controller.handle();
    let run = tokio::spawn(controller.run(
        |item: Arc<Item>, ctx: Context<Item, Tracked>| async move {
            let _live = ctx.live.clone();
            ctx.log.record(&item.name);
            std::future::pending::<()>().await;
            Ok::<_, Failed>(Action::await_change())
        },
        data.clone(),
        CancellationToken::new(),
    ));
    data.log.wait_for("a", 1).await;
    data.log.wait_for("b", 1).await;
    assert!(handle.is_ready());
    run.abort();
    within(handle.wait_stopped()).await;
    assert!(!handle.is_ready());
    within(async {
        while alive_tasks() > baseline || Arc::strong_count(&data.live) > 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

// --- metrics ---------------------------------------------------------------------------------

#[derive(Default)]
struct Histo(Mutex<Vec<f64>>);

impl HistogramFn for Histo {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// A recorder that keeps every metric in memory, by name and sorted labels.
#[derive(Default)]
pub(super) struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Histo>>>,
}

fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

/// The metric registered under `key`, created on first use.
fn slot<M: Default>(metrics: &Mutex<HashMap<String, Arc<M>>>, key: &Key) -> Arc<M> {
    metrics
        .lock()
        .unwrap()
        .entry(render(key))
        .or_default()
        .clone()
}

impl TestRecorder {
    pub(super) fn counter(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(key)
            .unwrap_or_else(|| panic!("no counter {key}"))
            .load(Ordering::SeqCst)
    }

    pub(super) fn gauge(&self, key: &str) -> f64 {
        f64::from_bits(
            self.gauges
                .lock()
                .unwrap()
                .get(key)
                .unwrap_or_else(|| panic!("no gauge {key}"))
                .load(Ordering::SeqCst),
        )
    }

    fn histogram(&self, key: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .unwrap()
            .get(key)
            .unwrap_or_else(|| panic!("no histogram {key}"))
            .0
            .lock()
            .unwrap()
            .clone()
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(slot(&self.counters, key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(slot(&self.gauges, key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(slot(&self.histograms, key))
    }
}

#[tokio::test(start_paused = true)]
async fn metrics_are_recorded_with_no_plumbing() {
    let recorder = Arc::new(TestRecorder::default());
    let log = Arc::new(Log::default());
    let other = ReflectorStats {
        lists: 3,
        relists: 2,
        watch_starts: 5,
        watch_restarts: 4,
        events: 40,
        errors: 1,
        ..ReflectorStats::default()
    };
    let controller = Controller::for_cache(cache_of(&["a", "b", "c"]))
        .name("metered")
        .observe("others", move || StoreStatus::new(7, Some(other)));
    let handle = controller.handle();
    let stop = CancellationToken::new();
    // "c" fails twice, then succeeds.
    let run = metrics::with_local_recorder(&*recorder, || {
        controller.run(
            |item: Arc<Item>, ctx: Context<Item, Log>| async move {
                ctx.record(&item.name);
                tokio::time::sleep(ms(100)).await;
                if item.name == "c" && ctx.count("c") <= 2 {
                    return Err(Failed(item.name.clone()));
                }
                Ok(Action::await_change())
            },
            log.clone(),
            stop.clone(),
        )
    });
    let run = tokio::spawn(run);
    handle.wait_for_sync().await.unwrap();
    log.wait_for("c", 3).await;
    tokio::time::sleep(secs(2)).await;
    let r = &recorder;
    assert_eq!(r.gauge("controller_ready{controller=metered}"), 1.0);
    stop.cancel();
    within(run).await.unwrap();

    let c = "controller=metered";
    assert_eq!(
        r.counter(&format!("controller_reconcile_total{{{c},result=success}}")),
        3
    );
    assert_eq!(
        r.counter(&format!("controller_reconcile_total{{{c},result=error}}")),
        2
    );
    assert_eq!(
        r.counter(&format!("controller_reconcile_errors_total{{{c}}}")),
        2
    );
    let times = r.histogram(&format!("controller_reconcile_time_seconds{{{c}}}"));
    assert_eq!(times.len(), 5);
    assert!(times.iter().all(|&t| (t - 0.1).abs() < 1e-9), "{times:?}");
    assert_eq!(r.gauge(&format!("controller_active_workers{{{c}}}")), 0.0);
    assert_eq!(r.gauge(&format!("controller_ready{{{c}}}")), 0.0);
    // The work queue: 3 initial adds and 2 retried adds; 2 retries; a latency per handout.
    assert_eq!(r.counter(&format!("workqueue_adds_total{{{c}}}")), 5);
    assert_eq!(r.counter(&format!("workqueue_retries_total{{{c}}}")), 2);
    assert_eq!(r.gauge(&format!("workqueue_depth{{{c}}}")), 0.0);
    assert_eq!(
        r.histogram(&format!("workqueue_queue_duration_seconds{{{c}}}"))
            .len(),
        5
    );
    let work = r.histogram(&format!("workqueue_work_duration_seconds{{{c}}}"));
    assert_eq!(work.len(), 5);
    assert!(work.iter().all(|&t| t >= 0.1), "{work:?}");
    // The stores: the primary cache, named after its type, and the observed one.
    assert_eq!(
        r.gauge(&format!("cache_store_objects{{{c},store=Item}}")),
        3.0
    );
    assert_eq!(
        r.gauge(&format!("cache_store_objects{{{c},store=others}}")),
        7.0
    );
    assert_eq!(
        r.counter(&format!(
            "cache_reflector_relists_total{{{c},store=others}}"
        )),
        2
    );
    assert_eq!(
        r.counter(&format!(
            "cache_reflector_watch_restarts_total{{{c},store=others}}"
        )),
        4
    );
    assert_eq!(
        r.counter(&format!("cache_reflector_events_total{{{c},store=others}}")),
        40
    );
    assert_eq!(
        r.counter(&format!("cache_reflector_errors_total{{{c},store=others}}")),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_reflectors_relists_reach_the_store_metrics() {
    let recorder = Arc::new(TestRecorder::default());
    let source = MemorySource::new();
    source.put(item("a"));
    let cache = Arc::new(Cache::with_indexers(Indexers::new()));
    let reflector = Reflector::builder(source.clone(), cache.clone())
        .name("items")
        .build();
    let stop = CancellationToken::new();
    let reflecting = tokio::spawn({
        let (reflector, stop) = (reflector.clone(), stop.clone());
        async move { reflector.run(stop).await }
    });
    let controller = Controller::for_cache(cache)
        .name("relisted")
        .reflector(&reflector)
        .metrics_interval(ms(100));
    let handle = controller.handle();
    let run = metrics::with_local_recorder(&*recorder, || {
        controller.run(
            |_: Arc<Item>, _: Context<Item, ()>| async { Ok::<_, Failed>(Action::await_change()) },
            Arc::new(()),
            stop.clone(),
        )
    });
    let run = tokio::spawn(run);
    handle.wait_for_sync().await.unwrap();
    // An expired watch: the reflector relists and watches again.
    source.put_dropping_watch(item("b"));
    source.reset_watches();
    within(async {
        while reflector.stats().relists < 1 {
            tokio::time::sleep(ms(100)).await;
        }
    })
    .await;
    tokio::time::sleep(secs(1)).await;
    let store = "controller=relisted,store=Item";
    assert_eq!(
        recorder.gauge(&format!("cache_store_objects{{{store}}}")),
        2.0
    );
    assert!(recorder.counter(&format!("cache_reflector_relists_total{{{store}}}")) >= 1);
    assert!(recorder.counter(&format!("cache_reflector_watch_restarts_total{{{store}}}")) >= 1);
    stop.cancel();
    within(run).await.unwrap();
    within(reflecting).await.unwrap();
}

#[test]
fn a_controller_run_is_send() {
    fn assert_send<F: Future + Send>(_: &F) {}
    let controller = Controller::for_cache(cache_of(&[]));
    let run = controller.run(
        |_: Arc<Item>, _: Context<Item, ()>| async { Ok::<_, Failed>(Action::await_change()) },
        Arc::new(()),
        CancellationToken::new(),
    );
    assert_send(&run);
}

#[test]
fn short_type_names() {
    assert_eq!(crate::short_type_name::<Item>(), "Item");
    assert_eq!(crate::short_type_name::<Vec<Item>>(), "Vec");
    assert_eq!(crate::short_type_name::<u32>(), "u32");
}

// --- on informers ----------------------------------------------------------------------------

mod on_informers {
    use super::*;
    use crate::informer::{InformerError, SharedIndexInformer};

    #[derive(Debug, Clone)]
    struct Team {
        name: String,
        members: Vec<String>,
        rv: Option<ResourceVersion>,
    }

    impl Object for Team {
        type Key = String;
        fn key(&self) -> String {
            self.name.clone()
        }
        fn resource_version(&self) -> Option<ResourceVersion> {
            self.rv.clone()
        }
        fn set_resource_version(&mut self, rv: ResourceVersion) {
            self.rv = Some(rv);
        }
    }

    fn team(name: &str, members: &[&str]) -> Team {
        Team {
            name: name.to_owned(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            rv: None,
        }
    }

    fn informer<U: Versioned>(source: &MemorySource<U>, name: &str) -> SharedIndexInformer<U> {
        SharedIndexInformer::builder_with_indexers(source.clone(), Indexers::new())
            .name(name)
            .build()
    }

    /// Runs the informers until `stop`; the returned task ends with them.
    fn run_informers(
        items: &SharedIndexInformer<Item>,
        teams: &SharedIndexInformer<Team>,
        stop: &CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let (items, teams, stop) = (items.clone(), teams.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::join!(items.run(stop.clone()), teams.run(stop));
        })
    }

    async fn record(item: Arc<Item>, ctx: Context<Item, Log>) -> Result<Action, Failed> {
        ctx.record(&item.name);
        Ok(Action::await_change())
    }

    #[tokio::test(start_paused = true)]
    async fn adds_and_updates_of_the_primary_informer_trigger_reconciles_deletes_do_not() {
        let baseline = alive_tasks();
        let (items_src, teams_src) = (MemorySource::new(), MemorySource::new());
        items_src.put(item("a"));
        items_src.put(item("b"));
        let (items, teams) = (informer(&items_src, "items"), informer(&teams_src, "teams"));
        let stop = CancellationToken::new();
        let informers = run_informers(&items, &teams, &stop);
        let log = Arc::new(Log::default());
        let controller = Controller::new(&items).unwrap();
        let handle = controller.handle();
        let run = tokio::spawn(controller.run(record, log.clone(), stop.clone()));
        handle.wait_for_sync().await.unwrap();
        log.wait_for("a", 1).await;
        log.wait_for("b", 1).await;

        items_src.put(item("c")); // added
        items_src.put(item("a")); // updated
        log.wait_for("c", 1).await;
        log.wait_for("a", 2).await;
        items_src.delete(&"b".to_owned());
        tokio::time::sleep(secs(5)).await;
        assert_eq!((log.count("a"), log.count("b"), log.count("c")), (2, 1, 1));
        stop.cancel();
        let stats = within(run).await.unwrap();
        within(informers).await.unwrap();
        assert_eq!((stats.reconciles, stats.skipped), (4, 0));
        assert_eq!(alive_tasks(), baseline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_secondary_informer_reconciles_what_its_objects_map_to() {
        let (items_src, teams_src) = (MemorySource::new(), MemorySource::new());
        for name in ["a", "b", "c", "d"] {
            items_src.put(item(name));
        }
        teams_src.put(team("red", &["a"]));
        let (items, teams) = (informer(&items_src, "items"), informer(&teams_src, "teams"));
        let stop = CancellationToken::new();
        let informers = run_informers(&items, &teams, &stop);
        let log = Arc::new(Log::default());
        let controller = Controller::new(&items)
            .unwrap()
            .watches(&teams, |team: &Team| team.members.clone())
            .unwrap();
        let handle = controller.handle();
        let run = tokio::spawn(controller.run(record, log.clone(), stop.clone()));
        handle.wait_for_sync().await.unwrap();
        for name in ["a", "b", "c", "d"] {
            log.wait_for(name, 1).await;
        }
        tokio::time::sleep(secs(1)).await;
        let counts = || ["a", "b", "c", "d"].map(|n| log.count(n));
        // The initial add of "red" was merged with the initial pass.
        assert_eq!(counts(), [1, 1, 1, 1]);

        // Added: its members.
        teams_src.put(team("blue", &["b"]));
        log.wait_for("b", 2).await;
        // Updated: the old members and the new ones.
        teams_src.put(team("red", &["c"]));
        log.wait_for("a", 2).await;
        log.wait_for("c", 2).await;
        // Deleted: its last members.
        teams_src.delete(&"blue".to_owned());
        log.wait_for("b", 3).await;
        tokio::time::sleep(secs(1)).await;
        assert_eq!(counts(), [2, 3, 2, 1]);
        stop.cancel();
        within(run).await.unwrap();
        within(informers).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_reconcile_waits_for_every_informer_and_sees_their_caches() {
        let (items_src, teams_src) = (MemorySource::new(), MemorySource::new());
        items_src.put(item("a"));
        for i in 0..10 {
            teams_src.put(team(&format!("t{i}"), &["a"]));
        }
        // The secondary source answers late.
        teams_src.set_delay(secs(5));
        let (items, teams) = (informer(&items_src, "items"), informer(&teams_src, "teams"));
        let stop = CancellationToken::new();
        let started = Instant::now();
        let informers = run_informers(&items, &teams, &stop);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let controller = Controller::new(&items)
            .unwrap()
            .watches(&teams, |team: &Team| team.members.clone())
            .unwrap();
        let run = tokio::spawn(controller.run(
            |_: Arc<Item>, ctx: Context<Item, Mutex<Vec<usize>>>| async move {
                let teams = ctx.cache_of::<Team>().map_or(0, |c| c.len());
                ctx.lock().unwrap().push(teams);
                Ok::<_, Failed>(Action::await_change())
            },
            seen.clone(),
            stop.clone(),
        ));
        within(async {
            while seen.lock().unwrap().is_empty() {
                tokio::time::sleep(ms(10)).await;
            }
        })
        .await;
        assert!(Instant::now() - started >= secs(5));
        assert_eq!(*seen.lock().unwrap(), [10]);
        stop.cancel();
        within(run).await.unwrap();
        within(informers).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn informer_store_metrics_are_labelled_with_the_informer_name() {
        let recorder = Arc::new(TestRecorder::default());
        let (items_src, teams_src) = (MemorySource::new(), MemorySource::new());
        items_src.put(item("a"));
        items_src.put(item("b"));
        teams_src.put(team("red", &[]));
        let (items, teams) = (informer(&items_src, "items"), informer(&teams_src, "teams"));
        let stop = CancellationToken::new();
        let informers = run_informers(&items, &teams, &stop);
        let controller = Controller::new(&items)
            .unwrap()
            .name("informed")
            .watches(&teams, |team: &Team| team.members.clone())
            .unwrap()
            .metrics_interval(ms(100));
        let handle = controller.handle();
        let run = metrics::with_local_recorder(&*recorder, || {
            controller.run(record, Arc::new(Log::default()), stop.clone())
        });
        let run = tokio::spawn(run);
        handle.wait_for_sync().await.unwrap();
        // The items' watch is lost: a relist follows.
        items_src.put_dropping_watch(item("c"));
        items_src.reset_watches();
        within(async {
            while items.reflector_stats().relists < 1 {
                tokio::time::sleep(ms(100)).await;
            }
        })
        .await;
        tokio::time::sleep(secs(1)).await;
        let (i, t) = (
            "controller=informed,store=items",
            "controller=informed,store=teams",
        );
        assert_eq!(recorder.gauge(&format!("cache_store_objects{{{i}}}")), 3.0);
        assert_eq!(recorder.gauge(&format!("cache_store_objects{{{t}}}")), 1.0);
        assert_eq!(
            recorder.counter(&format!("cache_reflector_relists_total{{{i}}}")),
            1
        );
        assert!(recorder.counter(&format!("cache_reflector_watch_restarts_total{{{i}}}")) >= 1);
        assert_eq!(
            recorder.counter(&format!("cache_reflector_relists_total{{{t}}}")),
            0
        );
        stop.cancel();
        within(run).await.unwrap();
        within(informers).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_informer_is_refused() {
        let (items_src, teams_src) = (MemorySource::<Item>::new(), MemorySource::<Team>::new());
        let (items, teams) = (informer(&items_src, "items"), informer(&teams_src, "teams"));
        let stop = CancellationToken::new();
        let informers = run_informers(&items, &teams, &stop);
        items.wait_for_sync().await.unwrap();
        let controller = Controller::new(&items).unwrap();
        stop.cancel();
        within(informers).await.unwrap();
        assert!(matches!(
            Controller::new(&items),
            Err(InformerError::HandlerAfterStop { .. })
        ));
        assert!(matches!(
            controller.watches(&teams, |team: &Team| team.members.clone()),
            Err(InformerError::HandlerAfterStop { .. })
        ));
    }
}
