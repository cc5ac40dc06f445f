//! The work queue's rules, as a controller relies on them. Timing tests run on paused tokio
//! time, so every delay is exact.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, advance, timeout};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Fails the test instead of hanging it.
async fn within<F: Future>(f: F) -> F::Output {
    timeout(Duration::from_secs(60), f)
        .await
        .expect("the queue hung")
}

/// Lets every other task on the current-thread runtime run as far as it can.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn a_queued_key_is_never_queued_twice() {
    let q = WorkQueue::new();
    q.add("foo");
    q.add("bar");
    q.add("foo");
    assert_eq!(q.len(), 2);
    assert_eq!(q.try_get(), Some("foo"));
    assert_eq!(q.try_get(), Some("bar"));
    assert_eq!(q.try_get(), None);
    assert!(q.is_empty());
}

#[test]
fn keys_come_out_in_the_order_they_were_queued() {
    let q = WorkQueue::new();
    for i in [3, 1, 4, 1, 5, 9, 2, 6, 5, 3] {
        q.add(i);
    }
    let out: Vec<_> = std::iter::from_fn(|| q.try_get()).collect();
    assert_eq!(out, [3, 1, 4, 5, 9, 2, 6]);
}

#[test]
fn a_key_being_processed_is_not_handed_out_again_until_done() {
    let q = WorkQueue::new();
    q.add("foo");
    let key = q.try_get().unwrap();
    assert_eq!(q.num_processing(), 1);

    // Added while processing (twice): marked, not queued.
    q.add("foo");
    q.add("foo");
    assert_eq!(q.len(), 0);
    assert_eq!(q.try_get(), None);

    // done() queues it again, once.
    q.done(&key);
    assert_eq!(q.num_processing(), 0);
    assert_eq!(q.len(), 1);
    assert_eq!(q.try_get(), Some("foo"));
    q.done(&"foo");
    assert!(q.is_empty());
}

#[test]
fn done_without_a_re_add_does_not_requeue() {
    let q = WorkQueue::new();
    q.add(1);
    let k = q.try_get().unwrap();
    q.done(&k);
    assert!(q.is_empty());
    assert_eq!(q.num_processing(), 0);
}

#[test]
fn done_on_a_key_not_being_processed_changes_nothing() {
    let q = WorkQueue::new();
    q.add(1);
    q.done(&1); // queued, not processing
    q.done(&2); // unknown
    assert_eq!(q.len(), 1);
    assert_eq!(q.try_get(), Some(1));
    assert_eq!(q.try_get(), None);
}

#[test]
fn other_keys_flow_while_one_is_processed() {
    let q = WorkQueue::new();
    q.add("a");
    q.add("b");
    let a = q.try_get().unwrap();
    q.add("a");
    q.add("c");
    assert_eq!(q.try_get(), Some("b"));
    assert_eq!(q.try_get(), Some("c"));
    assert_eq!(q.try_get(), None);
    q.done(&a);
    assert_eq!(q.try_get(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_never_share_a_key_and_lose_no_re_add() {
    const KEYS: u32 = 200;
    const WORKERS: usize = 8;
    let q = WorkQueue::<u32>::new();
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    let counts = Arc::new(Mutex::new(HashMap::<u32, u32>::new()));

    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (q, in_flight, counts) = (q.clone(), in_flight.clone(), counts.clone());
        workers.push(tokio::spawn(async move {
            while let Some(key) = q.get().await {
                assert!(
                    in_flight.lock().unwrap().insert(key),
                    "key {key} handed out twice at once"
                );
                let n = {
                    let mut c = counts.lock().unwrap();
                    let n = c.entry(key).or_default();
                    *n += 1;
                    *n
                };
                // The first time, the key "changes" while it is processed.
                if n == 1 {
                    q.add(key);
                }
                tokio::task::yield_now().await;
                in_flight.lock().unwrap().remove(&key);
                q.done(&key);
            }
        }));
    }
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let q = q.clone();
            tokio::spawn(async move {
                for key in (p..KEYS).step_by(4) {
                    q.add(key);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    // Every key is processed exactly twice: once for its add, once for its re-add.
    within(async {
        loop {
            let done = {
                let c = counts.lock().unwrap();
                c.len() == KEYS as usize && c.values().all(|&n| n == 2)
            };
            if done && q.num_processing() == 0 && q.is_empty() {
                break;
            }
            tokio::time::sleep(ms(1)).await;
        }
    })
    .await;
    within(q.shut_down_with_drain()).await;
    for w in workers {
        within(w).await.unwrap();
    }
    let c = counts.lock().unwrap();
    assert!(c.values().all(|&n| n == 2), "{c:?}");
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn get_waits_for_a_key() {
    let q = WorkQueue::new();
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    settle().await;
    assert!(!waiter.is_finished());
    q.add("k");
    assert_eq!(within(waiter).await.unwrap(), Some("k"));
}

#[tokio::test(start_paused = true)]
async fn add_after_queues_the_key_when_its_time_comes() {
    let q = WorkQueue::new();
    let t0 = Instant::now();
    q.add_after("foo", ms(50));
    assert_eq!(q.len(), 0);
    assert_eq!(q.num_delayed(), 1);
    advance(ms(49)).await;
    assert_eq!(q.len(), 0);
    advance(ms(1)).await;
    assert_eq!(q.len(), 1);
    assert_eq!(q.num_delayed(), 0);
    assert_eq!(within(q.get()).await, Some("foo"));
    q.done(&"foo");

    // A waiting get wakes exactly when the key is due.
    let t1 = Instant::now();
    q.add_after("bar", ms(30));
    assert_eq!(within(q.get()).await, Some("bar"));
    assert_eq!(t1.elapsed(), ms(30));
    assert_eq!(t1 - t0, ms(50));

    // Nothing more comes later.
    advance(Duration::from_secs(60)).await;
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn add_after_zero_is_an_add() {
    let q = WorkQueue::new();
    q.add_after(1, Duration::ZERO);
    assert_eq!(q.len(), 1);
    assert_eq!(q.num_delayed(), 0);
}

#[tokio::test(start_paused = true)]
async fn add_after_keeps_the_earlier_time_of_a_key() {
    let q = WorkQueue::new();
    let t0 = Instant::now();
    q.add_after("foo", ms(50));
    q.add_after("foo", ms(70));
    assert_eq!(q.num_delayed(), 1);
    assert_eq!(within(q.get()).await, Some("foo"));
    assert_eq!(t0.elapsed(), ms(50));
    q.done(&"foo");
    advance(ms(100)).await;
    assert!(q.is_empty(), "the later time was dropped");

    // This time the second call is earlier, and wins.
    let t1 = Instant::now();
    q.add_after("foo", ms(50));
    q.add_after("foo", ms(30));
    assert_eq!(within(q.get()).await, Some("foo"));
    assert_eq!(t1.elapsed(), ms(30));
    q.done(&"foo");
    advance(ms(100)).await;
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn delayed_keys_come_out_in_time_order() {
    let q = WorkQueue::new();
    q.add_after("first", Duration::from_secs(1));
    q.add_after("second", ms(500));
    q.add_after("third", ms(250));
    advance(Duration::from_secs(2)).await;
    assert_eq!(q.len(), 3);
    let out: Vec<_> = std::iter::from_fn(|| q.try_get()).collect();
    assert_eq!(out, ["third", "second", "first"]);

    // Interleaved with waiting.
    let t0 = Instant::now();
    q.add_after("foo", Duration::from_secs(1));
    q.add_after("bar", ms(50));
    assert_eq!(within(q.get()).await, Some("bar"));
    assert_eq!(t0.elapsed(), ms(50));
    q.add_after("baz", Duration::from_secs(2));
    assert_eq!(within(q.get()).await, Some("foo"));
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    assert_eq!(within(q.get()).await, Some("baz"));
    assert_eq!(t0.elapsed(), ms(2050));
}

#[tokio::test(start_paused = true)]
async fn an_earlier_delayed_key_wakes_a_sleeping_get() {
    let q = WorkQueue::new();
    q.add_after("late", Duration::from_secs(10));
    let t0 = Instant::now();
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    settle().await;
    q.add_after("soon", ms(10));
    assert_eq!(within(waiter).await.unwrap(), Some("soon"));
    assert_eq!(t0.elapsed(), ms(10));
}

#[tokio::test(start_paused = true)]
async fn a_delayed_key_due_while_processing_waits_for_done() {
    let q = WorkQueue::new();
    q.add("k");
    let k = q.try_get().unwrap();
    q.add_after("k", ms(10));
    advance(ms(10)).await;
    assert_eq!(q.len(), 0, "being processed");
    assert_eq!(q.num_delayed(), 0, "due: it is marked for after done");
    q.done(&k);
    assert_eq!(q.try_get(), Some("k"));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_get_hands_the_timer_to_another() {
    let q = WorkQueue::new();
    q.add_after("k", ms(10));
    let t0 = Instant::now();
    // The first get sleeps for the delayed key; the second waits behind it.
    let first = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    settle().await;
    let second = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    settle().await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    assert_eq!(within(second).await.unwrap(), Some("k"));
    assert_eq!(t0.elapsed(), ms(10));
    assert_eq!(q.num_processing(), 1);
}

#[tokio::test(start_paused = true)]
async fn many_waiting_gets_receive_every_delayed_key_on_time() {
    let q = WorkQueue::<u64>::new();
    let t0 = Instant::now();
    let got = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..5)
        .map(|_| {
            let (q, got) = (q.clone(), got.clone());
            tokio::spawn(async move {
                while let Some(k) = q.get().await {
                    got.lock().unwrap().push((k, t0.elapsed()));
                    q.done(&k);
                }
            })
        })
        .collect();
    settle().await;
    // Twenty keys, several due at the same moment.
    for k in 0..20u64 {
        q.add_after(k, ms(10 * (k % 7) + 1));
    }
    // Auto-advancing time stops at each deadline and lets the workers run.
    tokio::time::sleep(ms(100)).await;
    q.shut_down();
    for w in workers {
        within(w).await.unwrap();
    }
    let mut got = got.lock().unwrap().clone();
    got.sort();
    let expected: Vec<_> = (0..20u64).map(|k| (k, ms(10 * (k % 7) + 1))).collect();
    assert_eq!(got, expected);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_requeues_back_off_exponentially_per_key() {
    let q = WorkQueue::new();
    let mut delays = Vec::new();
    q.add("k");
    let k = within(q.get()).await.unwrap();
    for _ in 0..6 {
        // The work failed: retry later.
        q.add_rate_limited(k);
        q.done(&k);
        let t = Instant::now();
        let k = within(q.get()).await.unwrap();
        delays.push(t.elapsed());
        assert_eq!(k, "k");
    }
    assert_eq!(delays, [ms(5), ms(10), ms(20), ms(40), ms(80), ms(160)]);
    assert_eq!(q.num_requeues(&"k"), 6);
    assert_eq!(q.num_requeues(&"other"), 0);

    // It succeeded: forget it, and the next failure starts over.
    q.forget(&"k");
    assert_eq!(q.num_requeues(&"k"), 0);
    q.add_rate_limited("k");
    q.done(&"k");
    let t = Instant::now();
    within(q.get()).await.unwrap();
    assert_eq!(t.elapsed(), ms(5));
}

#[tokio::test(start_paused = true)]
async fn rate_limited_requeues_share_a_token_bucket() {
    let q = WorkQueue::new();
    let t0 = Instant::now();
    // 103 keys fail at once: the bucket's burst of 100 lets each wait only its own 5 ms
    // backoff; after that the bucket spaces them 100 ms apart, which beats the 5 ms.
    for k in 0..103u32 {
        q.add_rate_limited(k);
    }
    let mut arrivals = Vec::new();
    for _ in 0..103 {
        let k = within(q.get()).await.unwrap();
        arrivals.push((k, t0.elapsed()));
        q.done(&k);
    }
    let first: Vec<_> = arrivals[..100].iter().map(|a| a.1).collect();
    assert_eq!(first, vec![ms(5); 100]);
    assert_eq!(
        arrivals[100..],
        [(100, ms(100)), (101, ms(200)), (102, ms(300))]
    );
}

#[tokio::test(start_paused = true)]
async fn the_rate_limiter_is_configurable() {
    let q = WorkQueue::builder()
        .rate_limiter(ItemExponentialRateLimiter::new(ms(1), ms(3)))
        .build();
    let t0 = Instant::now();
    let mut arrivals = Vec::new();
    for _ in 0..4 {
        q.add_rate_limited("k");
        within(q.get()).await.unwrap();
        q.done(&"k");
        arrivals.push(t0.elapsed());
    }
    // 1, 2, 3 (capped), 3 ms apart.
    assert_eq!(arrivals, [ms(1), ms(3), ms(6), ms(9)]);
    assert_eq!(q.num_requeues(&"k"), 4);
}

#[tokio::test(start_paused = true)]
async fn shut_down_wakes_every_waiting_get() {
    let q = WorkQueue::<u8>::new();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move { q.get().await })
        })
        .collect();
    settle().await;
    assert!(waiters.iter().all(|w| !w.is_finished()));
    q.shut_down();
    for w in waiters {
        assert_eq!(within(w).await.unwrap(), None);
    }
    assert!(q.is_shutting_down());
}

#[tokio::test(start_paused = true)]
async fn shut_down_wakes_a_get_sleeping_for_a_delayed_key() {
    let q = WorkQueue::new();
    q.add_after("k", Duration::from_secs(3600));
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    settle().await;
    let t0 = Instant::now();
    q.shut_down();
    assert_eq!(within(waiter).await.unwrap(), None);
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn after_shut_down_queued_keys_drain_and_new_ones_are_refused() {
    let q = WorkQueue::new();
    q.add("a");
    q.add("b");
    q.add_after("delayed", ms(10));
    q.shut_down();
    q.add("added after shutdown");
    q.add_after("late", ms(1));
    q.add_rate_limited("limited");
    assert_eq!(q.num_requeues(&"limited"), 0, "refused before counting");
    assert_eq!(within(q.get()).await, Some("a"));
    assert_eq!(within(q.get()).await, Some("b"));
    assert_eq!(within(q.get()).await, None);
    advance(ms(100)).await;
    assert_eq!(within(q.get()).await, None, "delayed keys are dropped");
    assert_eq!(q.num_delayed(), 0);
}

#[tokio::test(start_paused = true)]
async fn shut_down_with_drain_waits_for_every_key_being_processed() {
    let q = WorkQueue::new();
    q.add("foo");
    q.add("bar");
    let foo = q.try_get().unwrap();
    let bar = q.try_get().unwrap();
    let drain = tokio::spawn({
        let q = q.clone();
        async move { q.shut_down_with_drain().await }
    });
    settle().await;
    assert!(!drain.is_finished());
    assert!(q.is_shutting_down());
    assert_eq!(within(q.get()).await, None, "nothing more to hand out");
    q.done(&foo);
    settle().await;
    assert!(!drain.is_finished(), "bar is still being processed");
    q.done(&bar);
    within(drain).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shut_down_with_drain_hands_out_a_key_re_added_while_processed() {
    let q = WorkQueue::new();
    q.add("foo");
    let foo = q.try_get().unwrap();
    q.add("foo");
    let drain = tokio::spawn({
        let q = q.clone();
        async move { q.shut_down_with_drain().await }
    });
    settle().await;
    assert_eq!(q.try_get(), None);
    q.done(&foo);
    // The change made while it was processed is not lost.
    let again = within(q.get()).await;
    assert_eq!(again, Some("foo"));
    q.done(&"foo");
    assert_eq!(within(q.get()).await, None);
    within(drain).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shut_down_with_drain_of_an_idle_queue_returns_at_once() {
    let q = WorkQueue::<u8>::new();
    within(q.shut_down_with_drain()).await;
    assert_eq!(within(q.get()).await, None);
}

#[tokio::test(start_paused = true)]
async fn shut_down_ends_a_drain_that_would_wait_forever() {
    let q = WorkQueue::new();
    q.add(1);
    let _never_done = q.try_get().unwrap();
    let drain = tokio::spawn({
        let q = q.clone();
        async move { q.shut_down_with_drain().await }
    });
    settle().await;
    assert!(!drain.is_finished());
    q.shut_down();
    within(drain).await.unwrap();
}

#[test]
fn no_task_is_left_running_after_shut_down() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let q = WorkQueue::<u32>::new();
    rt.block_on(async {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    while let Some(k) = q.get().await {
                        if k % 3 == 0 {
                            q.add_rate_limited(k + 1000);
                        }
                        q.done(&k);
                    }
                })
            })
            .collect();
        for k in 0..50 {
            q.add(k);
            q.add_after(k + 100, ms(u64::from(k)));
        }
        tokio::time::sleep(ms(20)).await;
        within(q.shut_down_with_drain()).await;
        for w in workers {
            within(w).await.unwrap();
        }
        // A finished task leaves the runtime's count just after its handle sees it finish.
        let metrics = tokio::runtime::Handle::current().metrics();
        within(async {
            while metrics.num_alive_tasks() > 0 {
                tokio::time::sleep(ms(1)).await;
            }
        })
        .await;
    });
    // The queue outlives the runtime without needing it.
    assert_eq!(q.try_get(), None);
    drop(rt);
}

#[derive(Default)]
struct Recorded {
    depth: Vec<usize>,
    adds: usize,
    latency: Vec<Duration>,
    work: Vec<Duration>,
    retries: usize,
}

#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Recorded>>);

impl MetricsSink for Recorder {
    fn depth(&self, depth: usize) {
        self.0.lock().unwrap().depth.push(depth);
    }
    fn add(&self) {
        self.0.lock().unwrap().adds += 1;
    }
    fn queue_latency(&self, latency: Duration) {
        self.0.lock().unwrap().latency.push(latency);
    }
    fn work_duration(&self, duration: Duration) {
        self.0.lock().unwrap().work.push(duration);
    }
    fn retry(&self) {
        self.0.lock().unwrap().retries += 1;
    }
}

#[tokio::test(start_paused = true)]
async fn metrics_hooks_see_depth_adds_latency_work_and_retries() {
    let rec = Recorder::default();
    let q = WorkQueue::builder().metrics(rec.clone()).build();
    q.add("a");
    q.add("a"); // absorbed: not an add
    q.add("b");
    advance(ms(7)).await;
    let a = within(q.get()).await.unwrap();
    advance(ms(3)).await;
    q.add("a"); // re-added while processed: waits, so it counts in the depth
    advance(ms(2)).await;
    q.done(&a);
    q.add_rate_limited("c");
    q.add_after("d", ms(1));
    advance(ms(5)).await;
    let mut rest = Vec::new();
    while let Some(k) = q.try_get() {
        rest.push(k);
        q.done(&k);
    }
    // d was due at 13 ms, c at 17 ms.
    assert_eq!(rest, ["b", "a", "d", "c"]);

    let r = rec.0.lock().unwrap();
    assert_eq!(r.adds, 5, "a, b, a again, d, c");
    assert_eq!(r.retries, 2);
    // From queued (or due) to handed out: a 0 -> 7 ms; then at 17 ms: b queued at 0, a re-added
    // at 10, d due at 13, c due at 17.
    assert_eq!(r.latency, [ms(7), ms(17), ms(7), ms(4), ms(0)]);
    // a was processed from 7 to 12 ms; the others were done at once.
    assert_eq!(r.work, [ms(5), ms(0), ms(0), ms(0), ms(0)]);
    assert_eq!(r.depth, [1, 2, 1, 2, 3, 4, 3, 2, 1, 0]);
}

#[test]
fn the_queue_is_send_sync_and_its_get_future_is_send() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}
    let q = WorkQueue::<String>::new();
    assert_send_sync(&q);
    let get = q.get();
    assert_send(&get);
    let drain = q.shut_down_with_drain();
    assert_send(&drain);
}
