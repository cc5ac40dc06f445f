//! Many producers, blocked pops and close, and what is left running afterwards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use super::*;
use crate::Store;

const PRODUCERS: usize = 4;
const PER_PRODUCER: u64 = 500;

/// A guard against a hang in tests that wait on real threads (paused time would fire it early).
async fn no_hang<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("hung")
}

/// Starts producer threads writing `p{t}-{i}` (or `p{t}` when `same_key`) with increasing values.
fn produce<S: Store<Obj> + 'static>(
    store: &Arc<S>,
    same_key: bool,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..PRODUCERS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    let name = if same_key {
                        format!("p{t}")
                    } else {
                        format!("p{t}-{i}")
                    };
                    store.add(o(&name, i)).unwrap();
                }
            })
        })
        .collect()
}

/// Each producer's values arrive in increasing order.
fn check_order(seen: &[(String, u64)]) {
    let mut last: Vec<Option<u64>> = vec![None; PRODUCERS];
    for (name, val) in seen {
        let producer: usize = name[1..]
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap();
        assert!(
            last[producer].is_none_or(|l| l < *val),
            "producer {producer}: {val} after {:?}",
            last[producer]
        );
        last[producer] = Some(*val);
    }
}

#[tokio::test]
async fn fifo_keeps_each_producers_order() {
    let f = Arc::new(Fifo::new());
    let producers = produce(&f, false);
    let mut seen = Vec::new();
    while seen.len() < PRODUCERS * PER_PRODUCER as usize {
        seen.push(
            no_hang(f.pop(|o, _| (o.name.clone(), o.val)))
                .await
                .unwrap(),
        );
    }
    producers.into_iter().for_each(|p| p.join().unwrap());
    check_order(&seen);
}

#[tokio::test]
async fn delta_fifo_keeps_each_producers_order() {
    let f = Arc::new(DeltaFifo::new());
    let producers = produce(&f, false);
    let mut seen = Vec::new();
    while seen.len() < PRODUCERS * PER_PRODUCER as usize {
        let deltas = no_hang(f.pop(|d, _| d)).await.unwrap();
        assert_eq!(deltas.len(), 1);
        let o = deltas.newest().unwrap().object().unwrap();
        seen.push((o.name.clone(), o.val));
    }
    producers.into_iter().for_each(|p| p.join().unwrap());
    check_order(&seen);
}

#[tokio::test]
async fn delta_fifo_keeps_each_producers_order_within_a_key() {
    let f = Arc::new(DeltaFifo::new());
    let producers = produce(&f, true);
    let mut seen = Vec::new();
    while seen.len() < PRODUCERS * PER_PRODUCER as usize {
        let deltas = no_hang(f.pop(|d, _| d)).await.unwrap();
        for d in deltas {
            let o = d.object().unwrap();
            seen.push((o.name.clone(), o.val));
        }
    }
    producers.into_iter().for_each(|p| p.join().unwrap());
    check_order(&seen);
}

#[tokio::test]
async fn real_fifo_keeps_each_producers_order() {
    for same_key in [false, true] {
        let f = Arc::new(RealFifo::new());
        let producers = produce(&f, same_key);
        let mut seen = Vec::new();
        while seen.len() < PRODUCERS * PER_PRODUCER as usize {
            let batch = no_hang(f.pop_batch(64, |b, _| b)).await.unwrap();
            for d in batch {
                let o = d.object().unwrap();
                seen.push((o.name.clone(), o.val));
            }
        }
        producers.into_iter().for_each(|p| p.join().unwrap());
        check_order(&seen);
        // Nothing coalesced, nothing lost.
        assert_eq!(seen.len(), PRODUCERS * PER_PRODUCER as usize);
    }
}

/// Several consumers popping at once are served one at a time, in queue order.
#[tokio::test(start_paused = true)]
async fn concurrent_consumers_process_in_queue_order() {
    let f = Arc::new(RealFifo::new());
    for i in 0..300 {
        f.add(o(&format!("k{i}"), i)).unwrap();
    }
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut consumers = JoinSet::new();
    for _ in 0..3 {
        let (f, order) = (f.clone(), order.clone());
        consumers.spawn(async move {
            while f
                .pop(|d, _| order.lock().unwrap().push(d.object().unwrap().val))
                .await
                .is_ok()
            {
                tokio::task::yield_now().await;
            }
        });
    }
    while !f.is_empty() {
        tokio::task::yield_now().await;
    }
    f.close();
    soon(consumers.join_all()).await;
    assert_eq!(*order.lock().unwrap(), (0..300).collect::<Vec<_>>());
}

/// Ten pops of each kind blocked on an empty queue all return `Closed` within 500 ms of the
/// close, and so do tasks waiting for the queue to sync.
#[tokio::test(start_paused = true)]
async fn every_blocked_pop_returns_soon_after_close() {
    let fifo = Arc::new(Fifo::<Obj>::new());
    let delta = Arc::new(DeltaFifo::<Obj>::new());
    let real = Arc::new(RealFifo::<Obj>::new());
    let mut pops: JoinSet<Result<(), Closed>> = JoinSet::new();
    for _ in 0..10 {
        let f = fifo.clone();
        pops.spawn(async move { f.pop(|_, _| ()).await });
        let f = delta.clone();
        pops.spawn(async move { f.pop(|_, _| ()).await });
        let f = real.clone();
        pops.spawn(async move { f.pop(|_, _| ()).await });
        let f = real.clone();
        pops.spawn(async move { f.pop_batch(10, |_, _| ()).await });
        let f = real.clone();
        pops.spawn(async move { f.wait_for_sync().await });
        let f = delta.clone();
        pops.spawn(async move { Queue::pop_batch(&*f, 10, |_, _| ()).await });
    }
    // Let every pop block.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pops.len(), 60);
    assert!(
        pops.try_join_next().is_none(),
        "a pop returned before close"
    );

    fifo.close();
    delta.close();
    real.close();
    let results = tokio::time::timeout(Duration::from_millis(500), pops.join_all())
        .await
        .expect("a blocked pop did not return within 500 ms of close");
    assert_eq!(results.len(), 60);
    assert!(results.iter().all(|r| *r == Err(Closed)));
}

/// Consumer loops end on close, and nothing of the queue keeps running: no task is left.
#[tokio::test(start_paused = true)]
async fn no_task_is_left_running_after_close() {
    let handle = tokio::runtime::Handle::current();
    let real = Arc::new(RealFifo::new());
    let delta = Arc::new(DeltaFifo::new());
    let processed = Arc::new(Mutex::new(0));
    let mut loops = JoinSet::new();
    for _ in 0..4 {
        let (f, n) = (real.clone(), processed.clone());
        loops.spawn(async move {
            while f
                .pop_batch(8, |b, _| *n.lock().unwrap() += b.len())
                .await
                .is_ok()
            {}
        });
        let (f, n) = (delta.clone(), processed.clone());
        loops.spawn(
            async move { while f.pop(|d, _| *n.lock().unwrap() += d.len()).await.is_ok() {} },
        );
    }
    for i in 0..50 {
        real.add(o(&format!("r{i}"), i)).unwrap();
        delta.add(o(&format!("d{i}"), i)).unwrap();
        tokio::task::yield_now().await;
    }
    real.close();
    delta.close();
    tokio::time::timeout(Duration::from_millis(500), loops.join_all())
        .await
        .expect("a consumer loop kept running after close");
    // What was queued before the close was all processed.
    assert_eq!(*processed.lock().unwrap(), 100);
    assert_eq!(handle.metrics().num_alive_tasks(), 0);
}

/// A pop that is dropped while waiting (cancelled) takes nothing.
#[tokio::test(start_paused = true)]
async fn a_cancelled_pop_takes_nothing() {
    let f = RealFifo::new();
    assert!(stays_pending(f.pop(|_, _| ())).await);
    f.add(o("a", 1)).unwrap();
    assert_eq!(
        soon(f.pop(|d, _| d)).await.unwrap(),
        Delta::Added(o("a", 1))
    );
}
