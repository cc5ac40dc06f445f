//! client-go's heap_test behaviours, and ours: a model test and the waiting pop.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

/// A heap that hands out the smallest value first, as client-go's tests order theirs.
fn min_heap() -> Heap<Obj> {
    Heap::by_key(|o: &Obj| o.val)
}

async fn pop_val(h: &Heap<Obj>) -> u64 {
    soon(h.pop()).await.unwrap().val
}

#[test]
fn concurrent_adds_pop_in_order() {
    let h = Arc::new(min_heap());
    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .flat_map(|prefix| (1..=500u64).map(move |i| (prefix, i)))
        .collect::<Vec<_>>()
        .chunks(100)
        .map(|chunk| {
            let h = h.clone();
            let chunk = chunk.to_vec();
            std::thread::spawn(move || {
                for (prefix, i) in chunk {
                    h.add(o(&format!("{prefix}{i}"), i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(h.len(), 1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let popped: Vec<u64> = rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..1000 {
            out.push(h.pop().await.unwrap().val);
        }
        out
    });
    assert!(popped.windows(2).all(|w| w[0] <= w[1]), "{popped:?}");
    assert_eq!(popped.first(), Some(&1));
    assert_eq!(popped.last(), Some(&500));
    assert!(h.is_empty());
}

#[tokio::test(start_paused = true)]
async fn add_replaces_and_reorders() {
    let h = min_heap();
    h.add(o("foo", 10)).unwrap();
    h.add(o("bar", 1)).unwrap();
    h.add(o("baz", 11)).unwrap();
    h.add(o("zab", 30)).unwrap();
    h.add(o("foo", 13)).unwrap(); // an update of foo
    assert_eq!(h.len(), 4);
    assert_eq!(h.get_by_key(&k("foo")).map(|o| o.val), Some(13));

    assert_eq!(pop_val(&h).await, 1);
    assert_eq!(pop_val(&h).await, 11);
    // baz was popped: deleting it again finds nothing.
    assert_eq!(h.delete(&o("baz", 11)), None);
    h.add(o("foo", 14)).unwrap();
    assert_eq!(pop_val(&h).await, 14);
    assert_eq!(pop_val(&h).await, 30);
    assert!(h.is_empty());
}

#[tokio::test(start_paused = true)]
async fn bulk_add_pops_in_order() {
    let h = min_heap();
    h.bulk_add((1..=500u64).rev().map(|i| o(&format!("a{i}"), i)))
        .unwrap();
    let mut prev = 0;
    for _ in 0..500 {
        let v = pop_val(&h).await;
        assert!(v > prev, "{v} after {prev}");
        prev = v;
    }
    assert_eq!(prev, 500);
}

#[tokio::test(start_paused = true)]
async fn bulk_add_overwrites_held_keys() {
    let h = min_heap();
    h.add(o("a", 1)).unwrap();
    h.bulk_add([o("b", 2), o("a", 9), o("c", 3)]).unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(pop_val(&h).await, 2);
    assert_eq!(pop_val(&h).await, 3);
    assert_eq!(pop_val(&h).await, 9);
}

#[tokio::test(start_paused = true)]
async fn pop_on_an_empty_heap_waits_for_close() {
    let h = Arc::new(min_heap());
    let popper = tokio::spawn({
        let h = h.clone();
        async move { h.pop().await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!popper.is_finished());
    h.close();
    assert_eq!(soon(popper).await.unwrap().map(|o| o.val), Err(Closed));
}

#[tokio::test(start_paused = true)]
async fn pop_waits_for_an_item() {
    let h = Arc::new(min_heap());
    let popper = tokio::spawn({
        let h = h.clone();
        async move { h.pop().await.map(|o| o.val) }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!popper.is_finished());
    h.add(o("late", 7)).unwrap();
    assert_eq!(soon(popper).await.unwrap(), Ok(7));
}

#[tokio::test(start_paused = true)]
async fn waiting_pops_are_served_in_call_order() {
    let h = Arc::new(min_heap());
    let mut poppers = Vec::new();
    for _ in 0..3 {
        poppers.push(tokio::spawn({
            let h = h.clone();
            async move { h.pop().await.map(|o| o.val) }
        }));
        // Let each popper start waiting before the next one.
        tokio::task::yield_now().await;
    }
    h.bulk_add([o("a", 3), o("b", 1), o("c", 2)]).unwrap();
    let mut got = Vec::new();
    for p in poppers {
        got.push(soon(p).await.unwrap().unwrap());
    }
    assert_eq!(got, [1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_pop_takes_nothing() {
    let h = min_heap();
    assert!(stays_pending(h.pop()).await);
    h.add(o("a", 1)).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(pop_val(&h).await, 1);
}

#[tokio::test(start_paused = true)]
async fn add_if_not_present_never_overwrites() {
    let h = min_heap();
    h.add(o("foo", 10)).unwrap();
    h.add(o("bar", 1)).unwrap();
    h.add(o("baz", 11)).unwrap();
    h.add(o("zab", 30)).unwrap();
    assert!(!h.add_if_not_present(o("foo", 13)).unwrap());
    assert_eq!(h.len(), 4);
    assert_eq!(h.get_by_key(&k("foo")).map(|o| o.val), Some(10));

    assert_eq!(pop_val(&h).await, 1);
    assert_eq!(pop_val(&h).await, 10);
    // bar was popped, so it is not present any more.
    assert!(h.add_if_not_present(o("bar", 14)).unwrap());
    assert_eq!(pop_val(&h).await, 11);
    assert_eq!(pop_val(&h).await, 14);
}

#[tokio::test(start_paused = true)]
async fn delete_takes_out_wherever_it_is() {
    let h = min_heap();
    h.add(o("foo", 10)).unwrap();
    h.add(o("bar", 1)).unwrap();
    h.add(o("bal", 31)).unwrap();
    h.add(o("baz", 11)).unwrap();

    // The head.
    assert_eq!(h.delete(&o("bar", 0)).map(|o| o.val), Some(1));
    assert_eq!(pop_val(&h).await, 10);
    h.add(o("zab", 30)).unwrap();
    h.add(o("faz", 30)).unwrap();
    let len = h.len();
    // An unknown key: nothing happens.
    assert_eq!(h.delete_by_key(&k("non-existent")), None);
    assert_eq!(h.len(), len);
    // From the middle and the tail.
    assert!(h.delete(&o("bal", 0)).is_some());
    assert!(h.delete(&o("zab", 0)).is_some());
    assert_eq!(pop_val(&h).await, 11);
    assert_eq!(pop_val(&h).await, 30);
    assert!(h.is_empty());
}

#[tokio::test(start_paused = true)]
async fn update_moves_to_the_new_place() {
    let h = min_heap();
    h.add(o("foo", 10)).unwrap();
    h.add(o("bar", 1)).unwrap();
    h.add(o("zab", 30)).unwrap();
    h.add(o("baz", 11)).unwrap();

    h.update(o("baz", 0)).unwrap();
    assert_eq!(h.peek().map(|o| o.name.clone()).as_deref(), Some("baz"));
    assert_eq!(pop_val(&h).await, 0);
    // Moving the head back: foo becomes the head.
    h.update(o("bar", 100)).unwrap();
    assert_eq!(h.peek().map(|o| o.name.clone()).as_deref(), Some("foo"));
    assert_eq!(pop_val(&h).await, 10);
    assert_eq!(pop_val(&h).await, 30);
    assert_eq!(pop_val(&h).await, 100);
}

#[test]
fn get_and_get_by_key() {
    let h = min_heap();
    h.add(o("foo", 10)).unwrap();
    h.add(o("bar", 1)).unwrap();
    h.add(o("baz", 11)).unwrap();
    assert_eq!(h.get(&o("baz", 0)).map(|o| o.val), Some(11));
    assert_eq!(h.get_by_key(&k("baz")).map(|o| o.val), Some(11));
    assert_eq!(h.get(&o("non-existing", 0)), None);
    assert_eq!(h.get_by_key(&k("non-existing")), None);
}

#[test]
fn close_is_observable() {
    let h = min_heap();
    h.add(o("foo", 10)).unwrap();
    assert!(!h.is_closed());
    h.close();
    assert!(h.is_closed());
}

#[test]
fn list_and_list_keys() {
    let h = min_heap();
    assert!(h.list().is_empty());
    assert!(h.list_keys().is_empty());
    let items = [
        ("foo", 10),
        ("bar", 1),
        ("bal", 30),
        ("baz", 11),
        ("faz", 30),
    ];
    for (name, val) in items {
        h.add(o(name, val)).unwrap();
    }
    let mut listed: Vec<(String, u64)> = h.list().iter().map(|o| (o.name.clone(), o.val)).collect();
    listed.sort();
    let mut expected: Vec<(String, u64)> = items.iter().map(|(n, v)| ((*n).into(), *v)).collect();
    expected.sort();
    assert_eq!(listed, expected);
    let mut keys = h.list_keys();
    keys.sort();
    let mut expected_keys: Vec<_> = items.iter().map(|(n, _)| k(n)).collect();
    expected_keys.sort();
    assert_eq!(keys, expected_keys);
}

#[tokio::test(start_paused = true)]
async fn writes_after_close_are_refused_and_held_items_drain() {
    let h = min_heap();
    h.add(o("held", 5)).unwrap();
    h.close();
    assert_eq!(h.add(o("foo", 10)), Err(Closed));
    assert_eq!(h.update(o("held", 1)), Err(Closed));
    assert_eq!(h.add_if_not_present(o("bar", 1)), Err(Closed));
    assert_eq!(h.bulk_add([o("baz", 11)]), Err(Closed));
    assert_eq!(h.len(), 1);
    assert_eq!(h.get_by_key(&k("held")).map(|o| o.val), Some(5));
    // What was held before the close still comes out, then Closed at once.
    assert_eq!(pop_val(&h).await, 5);
    assert_eq!(soon(h.pop()).await.map(|o| o.val), Err(Closed));
}

#[test]
fn a_custom_ordering_decides() {
    // Largest first, ties broken by name.
    let h = Heap::new(|a: &Obj, b: &Obj| {
        (std::cmp::Reverse(a.val), &a.name) < (std::cmp::Reverse(b.val), &b.name)
    });
    for (name, val) in [("b", 2), ("a", 2), ("c", 9), ("d", 1)] {
        h.add(o(name, val)).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let order: Vec<String> = rt.block_on(async {
        let mut out = Vec::new();
        while let Some(head) = h.peek() {
            assert_eq!(h.pop().await.unwrap(), head);
            out.push(head.name.clone());
        }
        out
    });
    assert_eq!(order, ["c", "a", "b", "d"]);
}

#[derive(Debug, Clone)]
enum Op {
    Add(u8, u64),
    AddIfNotPresent(u8, u64),
    Delete(u8),
    Pop,
    Bulk(Vec<(u8, u64)>),
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0u8..12;
    let val = 0u64..20;
    prop_oneof![
        3 => (name.clone(), val.clone()).prop_map(|(n, v)| Op::Add(n, v)),
        1 => (name.clone(), val.clone()).prop_map(|(n, v)| Op::AddIfNotPresent(n, v)),
        1 => name.clone().prop_map(Op::Delete),
        3 => Just(Op::Pop),
        1 => proptest::collection::vec((name, val), 0..5).prop_map(Op::Bulk),
    ]
}

proptest! {
    /// The heap against a map model: same content after every step, and every pop hands out an
    /// object with the smallest value held.
    #[test]
    fn heap_matches_a_model(ops in proptest::collection::vec(op(), 0..80)) {
        let h = min_heap();
        let mut model: BTreeMap<ObjectKey, u64> = BTreeMap::new();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let name = |n: u8| format!("o{n}");
        for op in ops {
            match op {
                Op::Add(n, v) => {
                    h.add(o(&name(n), v)).unwrap();
                    model.insert(k(&name(n)), v);
                }
                Op::AddIfNotPresent(n, v) => {
                    let inserted = h.add_if_not_present(o(&name(n), v)).unwrap();
                    let absent = !model.contains_key(&k(&name(n)));
                    prop_assert_eq!(inserted, absent);
                    model.entry(k(&name(n))).or_insert(v);
                }
                Op::Delete(n) => {
                    let got = h.delete_by_key(&k(&name(n))).map(|o| o.val);
                    prop_assert_eq!(got, model.remove(&k(&name(n))));
                }
                Op::Pop => {
                    if model.is_empty() {
                        prop_assert!(h.peek().is_none());
                        continue;
                    }
                    let popped = rt.block_on(h.pop()).unwrap();
                    let min = model.values().copied().min();
                    prop_assert_eq!(Some(popped.val), min);
                    prop_assert_eq!(model.remove(&popped.key()), Some(popped.val));
                }
                Op::Bulk(items) => {
                    h.bulk_add(items.iter().map(|&(n, v)| o(&name(n), v))).unwrap();
                    for (n, v) in items {
                        model.insert(k(&name(n)), v);
                    }
                }
            }
            prop_assert_eq!(h.len(), model.len());
            for (key, v) in &model {
                prop_assert_eq!(h.get_by_key(key).map(|o| o.val), Some(*v));
            }
            prop_assert_eq!(h.peek().map(|o| o.val), model.values().copied().min());
        }
    }
}

/// Producers and consumers on several threads: every object added is popped exactly once, and
/// every consumer returns once the heap is closed and drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_producers_and_poppers_lose_nothing() {
    const PRODUCERS: u64 = 4;
    const EACH: u64 = 500;
    let h = Arc::new(min_heap());
    let poppers: Vec<_> = (0..4)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Ok(obj) = h.pop().await {
                    got.push(obj.name.clone());
                }
                got
            })
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let h = h.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    h.add(o(&format!("p{p}-{i}"), i)).unwrap();
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    h.close();
    let mut all = Vec::new();
    for p in poppers {
        let got = tokio::time::timeout(Duration::from_secs(30), p)
            .await
            .expect("a popper returns once the heap is closed and drained")
            .unwrap();
        all.extend(got);
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, all.len(), "an object was popped twice");
    assert_eq!(total as u64, PRODUCERS * EACH);
    assert!(h.is_empty());
}
