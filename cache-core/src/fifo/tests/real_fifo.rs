//! client-go's the_real_fifo_test behaviours, and ours.

use std::sync::Arc;

use super::*;
use crate::{Change, Store, StoreError};

fn per_object(known_objects: Arc<Cache<Obj>>) -> RealFifo<Obj> {
    RealFifo::per_object(known_objects)
}

fn atomic() -> RealFifo<Obj> {
    RealFifo::new()
}

/// A named sequence of operations and the deltas it must queue.
type Case = (&'static str, Box<dyn Fn(&RealFifo<Obj>)>, Vec<Delta<Obj>>);

async fn pop(f: &RealFifo<Obj>) -> Delta<Obj> {
    soon(f.pop(|d, _| d)).await.unwrap()
}

async fn pop_val(f: &RealFifo<Obj>) -> u64 {
    soon(f.pop(|d, _| d.object().map(|o| o.val)))
        .await
        .unwrap()
        .expect("delta carries an object")
}

async fn drained(f: &RealFifo<Obj>) -> bool {
    f.is_empty() && stays_pending(f.pop(|_, _| ())).await
}

#[tokio::test(start_paused = true)]
async fn delete_then_replace_keeps_both_in_order() {
    let f = per_object(known(&[o("foo", 1)]));
    f.delete(o("foo", 1)).unwrap();
    f.replace(vec![o("foo", 2)], None).unwrap();
    assert_eq!(
        f.queued(),
        [deleted(o("foo", 1)), Delta::Replaced(o("foo", 2))]
    );
}

#[tokio::test(start_paused = true)]
async fn replace_makes_deletions_for_objects_only_in_the_queue() {
    let obj = o("foo", 2);
    let v2 = o("foo", 3);
    let cases: Vec<Case> = vec![
        (
            "added, then listed without it",
            Box::new({
                let obj = obj.clone();
                move |f| {
                    f.add(obj.clone()).unwrap();
                    f.replace(vec![], None).unwrap();
                }
            }),
            vec![Delta::Added(obj.clone()), tomb("foo", Some(obj.clone()))],
        ),
        (
            "deleted: no second delete",
            Box::new({
                let obj = obj.clone();
                move |f| {
                    f.add(obj.clone()).unwrap();
                    f.delete(obj.clone()).unwrap();
                    f.replace(vec![], None).unwrap();
                }
            }),
            vec![Delta::Added(obj.clone()), deleted(obj.clone())],
        ),
        (
            "listed twice, then gone",
            Box::new({
                let obj = obj.clone();
                move |f| {
                    f.add(obj.clone()).unwrap();
                    f.replace(vec![obj.clone()], None).unwrap();
                    f.replace(vec![obj.clone()], None).unwrap();
                    f.replace(vec![], None).unwrap();
                }
            }),
            vec![
                Delta::Added(obj.clone()),
                Delta::Replaced(obj.clone()),
                Delta::Replaced(obj.clone()),
                tomb("foo", Some(obj.clone())),
            ],
        ),
        (
            "listed without it twice: one tombstone",
            Box::new({
                let obj = obj.clone();
                move |f| {
                    f.add(obj.clone()).unwrap();
                    f.replace(vec![], None).unwrap();
                    f.replace(vec![], None).unwrap();
                }
            }),
            vec![Delta::Added(obj.clone()), tomb("foo", Some(obj.clone()))],
        ),
        (
            "deleted and added again",
            Box::new({
                let (obj, v2) = (obj.clone(), v2.clone());
                move |f| {
                    f.add(obj.clone()).unwrap();
                    f.delete(obj.clone()).unwrap();
                    f.add(v2.clone()).unwrap();
                    f.replace(vec![], None).unwrap();
                }
            }),
            vec![
                Delta::Added(obj.clone()),
                deleted(obj.clone()),
                Delta::Added(v2.clone()),
                tomb("foo", Some(v2.clone())),
            ],
        ),
        (
            "a bookmark is not a delta in per-object mode",
            Box::new(|f| {
                f.bookmark("123".into());
                f.replace(vec![], None).unwrap();
                f.replace(vec![], None).unwrap();
            }),
            vec![],
        ),
    ];
    for (name, ops, want) in cases {
        let f = per_object(known(&[]));
        ops(&f);
        assert_eq!(f.queued(), want, "{name}");
        for delta in want {
            assert_eq!(pop(&f).await, delta, "{name}");
        }
        assert!(drained(&f).await, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn add_update_delete_are_all_kept() {
    let f = per_object(known(&[]));
    f.add(o("foo", 10)).unwrap();
    f.update(o("foo", 12)).unwrap();
    f.delete(o("foo", 15)).unwrap();
    assert_eq!(f.len(), 3);
    assert_eq!(f.list(), [o("foo", 15)]);
    assert_eq!(f.list_keys(), [k("foo")]);
    assert_eq!(pop_val(&f).await, 10);
    assert_eq!(pop_val(&f).await, 12);
    assert_eq!(pop_val(&f).await, 15);
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn transformer_runs_once_per_incoming_object() {
    let f = RealFifo::with_options(RealFifoOptions {
        mode: ReplaceMode::PerObject {
            known_objects: known(&[]),
        },
        transformer: Some(counting_transformer()),
    });
    f.add(o("foo", 10)).unwrap();
    f.add(o("bar", 11)).unwrap();
    f.update(o("foo", 12)).unwrap();
    f.delete(o("foo", 15)).unwrap();
    f.replace(vec![], None).unwrap();
    f.add(o("bar", 16)).unwrap();
    f.replace(vec![], None).unwrap();

    let once = |name: &str, val| {
        Arc::new(Obj {
            name: name.into(),
            val,
            transforms: 1,
        })
    };
    assert_eq!(
        f.queued(),
        [
            Delta::Added(once("foo", 10)),
            Delta::Added(once("bar", 11)),
            Delta::Updated(once("foo", 12)),
            deleted(once("foo", 15)),
            // No tombstone for foo: its last queued delta is a delete.
            tomb("bar", Some(once("bar", 11))),
            Delta::Added(once("bar", 16)),
            tomb("bar", Some(once("bar", 16))),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn atomic_relists_are_transformed_resyncs_are_not() {
    let f = RealFifo::with_options(RealFifoOptions {
        mode: ReplaceMode::Atomic {
            emit_bookmarks: false,
        },
        transformer: Some(counting_transformer()),
    });
    f.replace(vec![o("a", 1), o("b", 2)], Some("2".into()))
        .unwrap();
    f.resync().unwrap();
    match pop(&f).await {
        Delta::ReplacedAll { objects, .. } => {
            assert!(objects.iter().all(|o| o.transforms == 1));
        }
        other => panic!("expected ReplacedAll, got {other:?}"),
    }
    assert_eq!(pop(&f).await, Delta::SyncAll);
}

#[tokio::test(start_paused = true)]
async fn every_delete_is_queued_without_a_lister() {
    let f = per_object(known(&[]));
    f.add(o("foo", 10)).unwrap();
    f.update(o("bar", 15)).unwrap();
    f.add(o("qux", 17)).unwrap();
    f.delete(o("qux", 18)).unwrap();
    f.delete(o("baz", 20)).unwrap();
    for want in [10, 15, 17, 18, 20] {
        assert_eq!(pop_val(&f).await, want);
    }
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn every_event_is_queued_with_a_lister() {
    let f = per_object(known(&[o("foo", 5), o("bar", 6), o("baz", 7)]));
    f.add(o("foo", 10)).unwrap();
    f.update(o("bar", 15)).unwrap();
    f.delete(o("baz", 20)).unwrap();
    for want in [10, 15, 20] {
        assert_eq!(pop_val(&f).await, want);
    }
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn add_then_replace_are_two_events() {
    let f = per_object(known(&[]));
    f.add(o("foo", 10)).unwrap();
    f.replace(vec![o("foo", 15)], None).unwrap();
    assert_eq!(pop_val(&f).await, 10);
    assert_eq!(pop_val(&f).await, 15);
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn resync_skips_queued_keys() {
    let f = per_object(known(&[o("foo", 5)]));
    f.delete(o("foo", 10)).unwrap();
    f.resync().unwrap();
    assert_eq!(f.queued(), [deleted(o("foo", 10))]);
}

#[tokio::test(start_paused = true)]
async fn resync_syncs_known_objects() {
    let f = per_object(known(&[o("foo", 5)]));
    f.resync().unwrap();
    assert_eq!(f.queued(), [Delta::Sync(o("foo", 5))]);
}

#[tokio::test(start_paused = true)]
async fn add_then_delete_are_both_kept() {
    let f = per_object(known(&[]));
    f.add(o("foo", 5)).unwrap();
    f.delete(o("foo", 6)).unwrap();
    let queued = f.queued();
    assert_eq!(queued.len(), 2);
    assert_eq!(queued.last(), Some(&deleted(o("foo", 6))));
}

#[tokio::test(start_paused = true)]
async fn replace_makes_deletions_before_replaced_items() {
    let all_known = || known(&[o("foo", 5), o("bar", 6), o("baz", 7)]);
    let cases: Vec<Case> = vec![
        (
            "(a) a queued delete",
            Box::new(|f| {
                f.delete(o("baz", 10)).unwrap();
                f.replace(vec![o("foo", 5)], None).unwrap();
            }),
            vec![
                deleted(o("baz", 10)),
                tomb("bar", Some(o("bar", 6))),
                Delta::Replaced(o("foo", 5)),
            ],
        ),
        (
            "(b) a queued add",
            Box::new(|f| {
                f.add(o("baz", 10)).unwrap();
                f.replace(vec![o("foo", 5)], None).unwrap();
            }),
            vec![
                Delta::Added(o("baz", 10)),
                tomb("baz", Some(o("baz", 10))),
                tomb("bar", Some(o("bar", 6))),
                Delta::Replaced(o("foo", 5)),
            ],
        ),
        (
            "(c) deleted then added again",
            Box::new(|f| {
                f.delete(o("bar", 6)).unwrap();
                f.add(o("bar", 100)).unwrap();
                f.replace(vec![o("foo", 5)], None).unwrap();
            }),
            vec![
                deleted(o("bar", 6)),
                Delta::Added(o("bar", 100)),
                tomb("bar", Some(o("bar", 100))),
                tomb("baz", Some(o("baz", 7))),
                Delta::Replaced(o("foo", 5)),
            ],
        ),
        (
            "(d) two relists",
            Box::new(|f| {
                f.replace(vec![o("bar", 100), o("foo", 5)], None).unwrap();
                f.replace(vec![o("foo", 5)], None).unwrap();
            }),
            vec![
                tomb("baz", Some(o("baz", 7))),
                Delta::Replaced(o("bar", 100)),
                Delta::Replaced(o("foo", 5)),
                tomb("bar", Some(o("bar", 100))),
                Delta::Replaced(o("foo", 5)),
            ],
        ),
    ];
    for (name, ops, want) in cases {
        let f = per_object(all_known());
        ops(&f);
        for delta in want {
            assert_eq!(pop(&f).await, delta, "{name}");
        }
        assert!(drained(&f).await, "{name}");
    }

    // (e) nothing known.
    let f = per_object(known(&[]));
    f.add(o("baz", 10)).unwrap();
    f.replace(vec![o("foo", 5)], None).unwrap();
    assert_eq!(pop(&f).await, Delta::Added(o("baz", 10)));
    assert_eq!(pop(&f).await, tomb("baz", Some(o("baz", 10))));
    assert_eq!(pop(&f).await, Delta::Replaced(o("foo", 5)));
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn replace_makes_deletions_with_new_state() {
    let f = per_object(known(&[o("foo", 5), o("bar", 6), o("baz", 7)]));
    f.delete(o("baz", 10)).unwrap();
    f.replace(vec![o("foo", 6)], None).unwrap();
    assert_eq!(pop(&f).await, deleted(o("baz", 10)));
    assert_eq!(pop(&f).await, tomb("bar", Some(o("bar", 6))));
    assert_eq!(pop(&f).await, Delta::Replaced(o("foo", 6)));
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn an_update_racing_a_resync_is_not_followed_by_a_sync() {
    let f = per_object(known(&[o("foo", 5)]));
    f.update(o("foo", 6)).unwrap();
    f.resync().unwrap();
    assert_eq!(pop(&f).await, Delta::Updated(o("foo", 6)));
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn synthetic_deletes_belong_to_the_initial_list() {
    let f = per_object(known(&[o("foo", 1), o("bar", 1), o("baz", 1)]));
    f.replace(vec![o("foo", 5)], None).unwrap();
    let want = [
        tomb("bar", Some(o("bar", 1))),
        tomb("baz", Some(o("baz", 1))),
        Delta::Replaced(o("foo", 5)),
    ];
    for delta in want {
        assert!(!f.has_synced());
        let (got, initial) = soon(f.pop(|d, initial| (d, initial))).await.unwrap();
        assert_eq!(got, delta);
        assert!(initial);
    }
    assert!(f.has_synced());
}

#[tokio::test(start_paused = true)]
async fn no_coalescing_and_no_line_jumping() {
    let f = per_object(known(&[]));
    f.add(o("foo", 10)).unwrap();
    f.add(o("bar", 1)).unwrap();
    f.add(o("foo", 11)).unwrap();
    f.add(o("foo", 13)).unwrap();
    f.add(o("zab", 30)).unwrap();
    assert_eq!(pop_val(&f).await, 10);
    f.add(o("foo", 14)).unwrap();
    for want in [1, 11, 13, 30, 14] {
        assert_eq!(pop_val(&f).await, want);
    }
}

#[tokio::test(start_paused = true)]
async fn has_synced_table() {
    assert!(!atomic().has_synced());
    assert!(!per_object(known(&[])).has_synced());

    let f = per_object(known(&[]));
    f.add(o("a", 1)).unwrap();
    assert!(f.has_synced());

    let f = per_object(known(&[]));
    f.replace(vec![], None).unwrap();
    assert!(f.has_synced());

    let f = per_object(known(&[]));
    f.replace(vec![o("a", 1), o("b", 2)], None).unwrap();
    assert!(!f.has_synced());
    pop(&f).await;
    assert!(!f.has_synced());
    pop(&f).await;
    assert!(f.has_synced());

    // The same key twice in a list: two events, two pops.
    let f = per_object(known(&[]));
    f.replace(vec![o("a", 1), o("a", 2)], None).unwrap();
    pop(&f).await;
    assert!(!f.has_synced());
    pop(&f).await;
    assert!(f.has_synced());

    // Atomic: the whole list is one delta, even when empty.
    let f = atomic();
    f.replace(vec![o("a", 1), o("b", 2)], None).unwrap();
    assert!(!f.has_synced());
    pop(&f).await;
    assert!(f.has_synced());
    let f = atomic();
    f.replace(vec![], None).unwrap();
    assert!(!f.has_synced());
    pop(&f).await;
    assert!(f.has_synced());

    // A bookmark queued before the first list is part of it.
    let f = atomic();
    f.bookmark("1".into());
    f.replace(vec![], Some("2".into())).unwrap();
    pop(&f).await;
    assert!(!f.has_synced());
    pop(&f).await;
    assert!(f.has_synced());
}

#[tokio::test(start_paused = true)]
async fn has_synced_only_after_the_initial_list_is_processed() {
    for f in [atomic(), per_object(known(&[]))] {
        f.replace(vec![o("a", 1)], None).unwrap();
        let during = soon(f.pop_batch(10, |_, _| f.has_synced())).await.unwrap();
        assert!(!during, "synced while the initial list was being processed");
        assert!(f.has_synced());
    }
}

#[tokio::test(start_paused = true)]
async fn wait_synced_follows_processing() {
    let f = Arc::new(atomic());
    f.replace(vec![o("a", 1)], None).unwrap();
    let waiter = tokio::spawn({
        let f = f.clone();
        async move { f.wait_for_sync().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    pop(&f).await;
    assert_eq!(soon(waiter).await.unwrap(), Ok(()));
}

/// client-go's batch table: an initial list of `initial` objects (`Replaced` each), then
/// updates, drained with `pop_batch(size)`.
#[tokio::test(start_paused = true)]
async fn pop_batch_takes_distinct_keys_and_never_crosses_the_initial_list() {
    struct Case {
        name: &'static str,
        initial: &'static [&'static str],
        updates: &'static [&'static str],
        size: usize,
        want: &'static [&'static [&'static str]],
    }
    let cases = [
        Case {
            name: "unique initial items, unlimited batch",
            initial: &["o1", "o2", "o3"],
            updates: &[],
            size: usize::MAX,
            want: &[&["R o1", "R o2", "R o3"]],
        },
        Case {
            name: "initial then updates, batch of 2",
            initial: &["o1", "o2"],
            updates: &["o3", "o4"],
            size: 2,
            want: &[&["R o1", "R o2"], &["U o3", "U o4"]],
        },
        Case {
            name: "a duplicate key splits",
            initial: &["o1"],
            updates: &["o1", "o1"],
            size: 1000,
            want: &[&["R o1"], &["U o1"], &["U o1"]],
        },
        Case {
            name: "an update of an initial key",
            initial: &["o1", "o2"],
            updates: &["o2", "o3"],
            size: 1000,
            want: &[&["R o1", "R o2"], &["U o2", "U o3"]],
        },
        Case {
            name: "updates after the initial list",
            initial: &["o1", "o2", "o3"],
            updates: &["o2"],
            size: 1000,
            want: &[&["R o1", "R o2", "R o3"], &["U o2"]],
        },
        Case {
            name: "initial list larger than a batch",
            initial: &["o1", "o2", "o3"],
            updates: &[],
            size: 2,
            want: &[&["R o1", "R o2"], &["R o3"]],
        },
        Case {
            name: "no initial list",
            initial: &[],
            updates: &["o1", "o2", "o3"],
            size: 2,
            want: &[&["U o1", "U o2"], &["U o3"]],
        },
        Case {
            name: "initial and later never share a batch",
            initial: &["o1", "o2", "o3"],
            updates: &["o4"],
            size: 2,
            want: &[&["R o1", "R o2"], &["R o3"], &["U o4"]],
        },
    ];
    for case in cases {
        let f = per_object(known(&[]));
        if !case.initial.is_empty() {
            let items = case.initial.iter().map(|n| o(n, 1)).collect();
            f.replace(items, Some("123".into())).unwrap();
        }
        for n in case.updates {
            f.update(o(n, 2)).unwrap();
        }
        let mut got: Vec<Vec<String>> = Vec::new();
        let mut delivered_initial: Vec<String> = Vec::new();
        while !f.is_empty() {
            let (batch, initial) = soon(f.pop_batch(case.size, |batch, initial| (batch, initial)))
                .await
                .unwrap();
            let names: Vec<String> = batch
                .iter()
                .map(|d| {
                    let tag = match d {
                        Delta::Replaced(_) => "R",
                        Delta::Updated(_) => "U",
                        other => panic!("unexpected {other:?}"),
                    };
                    format!("{tag} {}", d.object().unwrap().name)
                })
                .collect();
            if initial {
                delivered_initial.extend(names.iter().map(|n| n[2..].to_owned()));
            }
            got.push(names);
        }
        let want: Vec<Vec<String>> = case
            .want
            .iter()
            .map(|b| b.iter().map(|s| (*s).to_owned()).collect())
            .collect();
        assert_eq!(got, want, "{}", case.name);
        assert_eq!(delivered_initial, case.initial, "{}", case.name);
    }
}

/// Keys are infallible here, so the batch-ending rule that applies is that of the
/// collection-wide deltas: each is handed out alone and ends the batch before it.
#[tokio::test(start_paused = true)]
async fn collection_wide_deltas_are_handed_out_alone() {
    let f = atomic();
    f.add(o("a", 1)).unwrap();
    f.add(o("b", 1)).unwrap();
    f.bookmark("5".into());
    f.add(o("c", 1)).unwrap();
    f.resync().unwrap();
    f.replace(vec![], None).unwrap();
    f.add(o("d", 1)).unwrap();
    let mut batches = Vec::new();
    while !f.is_empty() {
        let names = soon(f.pop_batch(100, |batch, _| {
            batch
                .iter()
                .map(|d| match d.key() {
                    Some(k) => k.to_string(),
                    None => d.type_name().to_owned(),
                })
                .collect::<Vec<_>>()
        }))
        .await
        .unwrap();
        batches.push(names);
    }
    assert_eq!(
        batches,
        [
            vec!["a", "b"],
            vec!["Bookmark"],
            vec!["c"],
            vec!["SyncAll"],
            vec!["ReplacedAll"],
            vec!["d"],
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn pop_batch_of_zero_still_takes_one() {
    let f = atomic();
    f.add(o("a", 1)).unwrap();
    f.add(o("b", 1)).unwrap();
    let n = soon(f.pop_batch(0, |batch, _| batch.len())).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(start_paused = true)]
async fn atomic_replace_is_one_delta() {
    // An empty list.
    let f = atomic();
    f.replace(vec![], Some("123".into())).unwrap();
    assert_eq!(
        f.queued(),
        [Delta::ReplacedAll {
            resource_version: Some("123".into()),
            objects: vec![]
        }]
    );

    // After an add.
    let f = atomic();
    f.add(o("foo", 10)).unwrap();
    f.replace(vec![], Some("123".into())).unwrap();
    assert_eq!(
        f.queued(),
        [
            Delta::Added(o("foo", 10)),
            Delta::ReplacedAll {
                resource_version: Some("123".into()),
                objects: vec![]
            }
        ]
    );

    // Several relists, in order.
    let f = atomic();
    f.add(o("foo", 10)).unwrap();
    f.replace(vec![o("foo", 10)], Some("10".into())).unwrap();
    f.replace(vec![o("foo", 10)], Some("20".into())).unwrap();
    f.replace(vec![], Some("56".into())).unwrap();
    assert_eq!(
        f.queued(),
        [
            Delta::Added(o("foo", 10)),
            Delta::ReplacedAll {
                resource_version: Some("10".into()),
                objects: vec![o("foo", 10)]
            },
            Delta::ReplacedAll {
                resource_version: Some("20".into()),
                objects: vec![o("foo", 10)]
            },
            Delta::ReplacedAll {
                resource_version: Some("56".into()),
                objects: vec![]
            },
        ]
    );

    // A bookmark, then a relist.
    let f = atomic();
    f.bookmark("123".into());
    f.replace(vec![], Some("1234".into())).unwrap();
    assert_eq!(
        f.queued(),
        [
            Delta::Bookmark {
                resource_version: "123".into()
            },
            Delta::ReplacedAll {
                resource_version: Some("1234".into()),
                objects: vec![]
            },
        ]
    );
    assert_eq!(f.last_sync_resource_version(), Some("1234".into()));
}

#[tokio::test(start_paused = true)]
async fn bookmarks_only_when_asked() {
    let f = RealFifo::<Obj>::with_options(RealFifoOptions {
        mode: ReplaceMode::Atomic {
            emit_bookmarks: false,
        },
        transformer: None,
    });
    f.bookmark("7".into());
    assert!(f.is_empty());
    assert_eq!(f.last_sync_resource_version(), Some("7".into()));
}

#[tokio::test(start_paused = true)]
async fn atomic_replace_pops_after_earlier_events() {
    let f = atomic();
    f.add(o("foo", 10)).unwrap();
    f.replace(vec![o("foo", 15)], Some("20".into())).unwrap();
    assert_eq!(pop(&f).await, Delta::Added(o("foo", 10)));
    assert_eq!(
        pop(&f).await,
        Delta::ReplacedAll {
            resource_version: Some("20".into()),
            objects: vec![o("foo", 15)]
        }
    );
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn atomic_resync_is_one_delta() {
    let f = atomic();
    f.resync().unwrap();
    assert_eq!(f.queued(), [Delta::SyncAll]);

    let f = atomic();
    f.add(o("foo", 10)).unwrap();
    f.resync().unwrap();
    assert_eq!(f.queued(), [Delta::Added(o("foo", 10)), Delta::SyncAll]);
}

/// Producers are never blocked by processing: a write from inside `process` (which would
/// deadlock if a lock were held) and from another thread both go through.
#[tokio::test(start_paused = true)]
async fn producers_keep_adding_while_a_consumer_processes() {
    let f = Arc::new(atomic());
    f.add(o("a", 1)).unwrap();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let producer = std::thread::spawn({
        let f = f.clone();
        move || {
            entered_rx.recv().unwrap();
            for i in 0..100 {
                f.add(o("p", i)).unwrap();
            }
            release_tx.send(()).unwrap();
        }
    });
    soon(f.pop(|_, _| {
        f.add(o("from-process", 1)).unwrap();
        entered_tx.send(()).unwrap();
        // Processing waits for the producer: it finishes only if adds are not blocked.
        release_rx.recv().unwrap();
    }))
    .await
    .unwrap();
    producer.join().unwrap();
    assert_eq!(f.len(), 101);
}

/// In per-object mode, a relist while a batch is being processed treats the batch as queued.
#[tokio::test(start_paused = true)]
async fn a_relist_during_processing_sees_the_batch_in_flight() {
    let cache = known(&[o("gone", 1)]);
    let f = per_object(cache.clone());
    f.add(o("a", 1)).unwrap();
    f.delete(o("gone", 2)).unwrap();
    soon(f.pop_batch(10, |batch, _| {
        assert_eq!(batch.len(), 2);
        // Relisted while the batch is being applied: the list lacks "a", and "gone".
        f.replace(vec![], None).unwrap();
        // A resync skips both too.
        f.resync().unwrap();
        cache.add(o("a", 1)).unwrap();
        cache.delete(o("gone", 2)).unwrap();
    }))
    .await
    .unwrap();
    // "a" gets its tombstone; "gone" is not deleted a second time.
    assert_eq!(f.queued(), [tomb("a", Some(o("a", 1)))]);
}

#[tokio::test(start_paused = true)]
async fn close_refuses_writes_and_drains() {
    let f = atomic();
    f.add(o("a", 1)).unwrap();
    f.close();
    assert_eq!(f.add(o("b", 1)), Err(StoreError::Closed));
    assert_eq!(f.update(o("b", 1)), Err(StoreError::Closed));
    assert_eq!(f.delete(o("b", 1)), Err(StoreError::Closed));
    assert_eq!(f.replace(vec![], None), Err(StoreError::Closed));
    assert_eq!(f.resync(), Err(StoreError::Closed));
    f.bookmark("9".into());
    assert!(f.transaction(vec![Change::Add(o("c", 1))]).is_err());
    assert_eq!(f.len(), 1);
    assert_eq!(pop_val(&f).await, 1);
    assert_eq!(soon(f.pop_batch(5, |_, _| ())).await, Err(Closed));
}

#[tokio::test(start_paused = true)]
async fn transaction_enqueues_in_order() {
    let f = RealFifo::with_options(RealFifoOptions {
        mode: ReplaceMode::Atomic {
            emit_bookmarks: true,
        },
        transformer: Some(counting_transformer()),
    });
    f.transaction(vec![
        Change::Add(o("a", 1)),
        Change::Update(o("a", 2)),
        Change::Delete(o("b", 3)),
    ])
    .unwrap();
    let tags: Vec<(&str, u64, u32)> = f
        .queued()
        .iter()
        .map(|d| {
            let obj = d.object().unwrap();
            (d.type_name(), obj.val, obj.transforms)
        })
        .collect();
    assert_eq!(
        tags,
        [("Added", 1, 1), ("Updated", 2, 1), ("Deleted", 3, 1)]
    );
    assert!(f.has_synced());
}

#[tokio::test(start_paused = true)]
async fn reads_see_the_newest_queued_state() {
    let f = per_object(known(&[]));
    f.add(o("a", 1)).unwrap();
    f.add(o("b", 1)).unwrap();
    f.update(o("a", 2)).unwrap();
    assert_eq!(f.list(), [o("a", 2), o("b", 1)]);
    assert_eq!(f.list_keys(), [k("a"), k("b")]);
    assert_eq!(f.get_by_key(&k("a")), Some(o("a", 2)));
    assert_eq!(f.get_by_key(&k("z")), None);
}
