//! client-go's delta_fifo_test behaviours, and ours.

use std::sync::Arc;

use super::*;
use crate::{Change, Store, StoreError};

fn sync_mode(known_objects: Option<Arc<Cache<Obj>>>) -> DeltaFifo<Obj> {
    DeltaFifo::with_options(DeltaFifoOptions {
        known_objects: known_objects.map(|k| k as Arc<dyn KnownObjects<Obj>>),
        emit_replaced: false,
        transformer: None,
    })
}

fn replaced_mode(known_objects: Option<Arc<Cache<Obj>>>) -> DeltaFifo<Obj> {
    DeltaFifo::with_options(DeltaFifoOptions {
        known_objects: known_objects.map(|k| k as Arc<dyn KnownObjects<Obj>>),
        emit_replaced: true,
        transformer: None,
    })
}

async fn pop(f: &DeltaFifo<Obj>) -> Vec<Delta<Obj>> {
    soon(f.pop(|d, _| d.into_vec())).await.unwrap()
}

async fn pop_newest(f: &DeltaFifo<Obj>) -> u64 {
    soon(f.pop(|d, _| d.newest().and_then(|n| n.object().map(|o| o.val))))
        .await
        .unwrap()
        .expect("newest delta carries an object")
}

async fn drained(f: &DeltaFifo<Obj>) -> bool {
    f.is_empty() && stays_pending(f.pop(|_, _| ())).await
}

#[tokio::test(start_paused = true)]
async fn delete_then_replace_in_one_pop() {
    let f = sync_mode(Some(known(&[o("foo", 1)])));
    f.delete(o("foo", 1)).unwrap();
    f.replace(vec![o("foo", 2)], None).unwrap();
    assert_eq!(
        pop(&f).await,
        [deleted(o("foo", 1)), Delta::Sync(o("foo", 2))]
    );
    assert!(drained(&f).await);
}

/// Keys only in the queue get tombstones on a relist that lacks them, with or without known
/// objects.
#[tokio::test(start_paused = true)]
async fn replace_makes_deletions_for_objects_only_in_the_queue() {
    let obj = o("foo", 2);
    let v2 = o("foo", 3);
    type Op = Box<dyn Fn(&DeltaFifo<Obj>)>;
    let add: Op = Box::new({
        let obj = obj.clone();
        move |f| f.add(obj.clone()).unwrap()
    });
    let delete: Op = Box::new({
        let obj = obj.clone();
        move |f| f.delete(obj.clone()).unwrap()
    });
    let add_v2: Op = Box::new({
        let v2 = v2.clone();
        move |f| f.add(v2.clone()).unwrap()
    });
    let relist_obj: Op = Box::new({
        let obj = obj.clone();
        move |f| f.replace(vec![obj.clone()], None).unwrap()
    });
    let relist_none: Op = Box::new(|f| f.replace(vec![], None).unwrap());

    type Case<'a> = (&'a str, bool, Vec<&'a Op>, Vec<Delta<Obj>>);
    let cases: Vec<Case> = vec![
        (
            "added, then listed without it",
            false,
            vec![&add, &relist_none],
            vec![Delta::Added(obj.clone()), tomb("foo", Some(obj.clone()))],
        ),
        (
            "replaced, then listed without it",
            true,
            vec![&add, &relist_obj, &relist_none],
            vec![
                Delta::Added(obj.clone()),
                Delta::Replaced(obj.clone()),
                tomb("foo", Some(obj.clone())),
            ],
        ),
        (
            "deleted: no second delete",
            false,
            vec![&add, &delete, &relist_none],
            vec![Delta::Added(obj.clone()), deleted(obj.clone())],
        ),
        (
            "synced twice, then gone",
            false,
            vec![&add, &relist_obj, &relist_obj, &relist_none],
            vec![
                Delta::Added(obj.clone()),
                Delta::Sync(obj.clone()),
                Delta::Sync(obj.clone()),
                tomb("foo", Some(obj.clone())),
            ],
        ),
        (
            "listed without it twice: one tombstone",
            false,
            vec![&add, &relist_none, &relist_none],
            vec![Delta::Added(obj.clone()), tomb("foo", Some(obj.clone()))],
        ),
        (
            "deleted and added again",
            false,
            vec![&add, &delete, &add_v2, &relist_none],
            vec![
                Delta::Added(obj.clone()),
                deleted(obj.clone()),
                Delta::Added(v2.clone()),
                tomb("foo", Some(v2.clone())),
            ],
        ),
    ];
    for with_known in [false, true] {
        for (name, emit_replaced, ops, want) in &cases {
            let known_objects = with_known.then(|| known(&[]));
            let f = if *emit_replaced {
                replaced_mode(known_objects)
            } else {
                sync_mode(known_objects)
            };
            for op in ops {
                op(&f);
            }
            assert_eq!(&pop(&f).await, want, "{name} (known objects: {with_known})");
            assert!(drained(&f).await, "{name}: left items behind");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn add_update_delete_keep_every_delta_of_the_key() {
    let f = DeltaFifo::new();
    f.add(o("foo", 10)).unwrap();
    f.update(o("foo", 12)).unwrap();
    f.delete(o("foo", 15)).unwrap();
    assert_eq!(f.list(), [o("foo", 15)]);
    assert_eq!(f.list_keys(), [k("foo")]);
    assert_eq!(f.get_by_key(&k("foo")), Some(o("foo", 15)));
    let deltas = pop(&f).await;
    assert_eq!(
        deltas,
        [
            Delta::Added(o("foo", 10)),
            Delta::Updated(o("foo", 12)),
            deleted(o("foo", 15))
        ]
    );
    assert!(drained(&f).await);
    assert_eq!(f.get_by_key(&k("foo")), None);
}

#[tokio::test(start_paused = true)]
async fn transformer_runs_once_per_incoming_object() {
    let f = DeltaFifo::with_options(DeltaFifoOptions {
        known_objects: None,
        emit_replaced: false,
        transformer: Some(counting_transformer()),
    });
    f.add(o("foo", 10)).unwrap();
    f.add(o("bar", 11)).unwrap();
    f.update(o("foo", 12)).unwrap();
    f.delete(o("foo", 15)).unwrap();
    f.replace(vec![], None).unwrap();
    f.add(o("bar", 16)).unwrap();
    f.replace(vec![], None).unwrap();

    assert_eq!(f.list_keys(), [k("foo"), k("bar")]);
    let foo = f.queued_deltas(&k("foo")).unwrap();
    match foo.newest() {
        Some(Delta::Deleted(DeletedObject::Object(obj))) => assert_eq!(obj.val, 15),
        other => panic!("foo: expected a plain delete, got {other:?}"),
    }
    let bar = f.queued_deltas(&k("bar")).unwrap();
    match bar.newest() {
        Some(Delta::Deleted(DeletedObject::Tombstone(t))) => {
            assert_eq!(t.object.as_ref().map(|o| o.val), Some(16));
        }
        other => panic!("bar: expected a tombstone, got {other:?}"),
    }
    for deltas in [foo, bar] {
        for delta in &deltas {
            let obj = delta.object().unwrap();
            assert_eq!(
                obj.transforms, 1,
                "{delta:?} transformed {} times",
                obj.transforms
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn transformer_applies_to_listed_objects_but_not_to_resync() {
    let cache = known(&[o("old", 1)]);
    let f = DeltaFifo::with_options(DeltaFifoOptions {
        known_objects: Some(cache.clone()),
        emit_replaced: false,
        transformer: Some(counting_transformer()),
    });
    f.replace(vec![o("a", 1)], None).unwrap();
    f.resync().unwrap(); // "old" is queued (tombstone): nothing more
    let a = pop(&f).await;
    assert_eq!(a[0].object().unwrap().transforms, 1);
    let old = pop(&f).await;
    assert_eq!(
        old,
        [tomb("old", Some(o("old", 1)))],
        "tombstones are never transformed"
    );
    // Applied downstream, as an informer would.
    cache.delete_key(&k("old"));
    cache.add(o("b", 2)).unwrap();
    f.resync().unwrap();
    let b = pop(&f).await;
    assert_eq!(
        b,
        [Delta::Sync(o("b", 2))],
        "a resync re-delivers, untransformed"
    );
}

#[tokio::test(start_paused = true)]
async fn without_known_objects_a_delete_of_an_unqueued_key_is_dropped() {
    let f = DeltaFifo::new();
    f.add(o("foo", 10)).unwrap();
    f.update(o("bar", 15)).unwrap();
    f.add(o("qux", 17)).unwrap();
    f.delete(o("qux", 18)).unwrap();
    f.delete(o("baz", 20)).unwrap();
    assert_eq!(pop_newest(&f).await, 10);
    assert_eq!(pop_newest(&f).await, 15);
    assert_eq!(pop_newest(&f).await, 18);
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn with_known_objects_a_delete_of_a_known_key_is_kept() {
    let f = sync_mode(Some(known(&[o("foo", 5), o("bar", 6), o("baz", 7)])));
    f.add(o("foo", 10)).unwrap();
    f.update(o("bar", 15)).unwrap();
    f.delete(o("baz", 20)).unwrap();
    f.delete(o("nope", 21)).unwrap();
    assert_eq!(pop_newest(&f).await, 10);
    assert_eq!(pop_newest(&f).await, 15);
    assert_eq!(pop_newest(&f).await, 20);
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn add_then_replace_pops_once() {
    let f = DeltaFifo::new();
    f.add(o("foo", 10)).unwrap();
    f.replace(vec![o("foo", 15)], None).unwrap();
    assert_eq!(pop_newest(&f).await, 15);
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn resync_skips_queued_keys() {
    let f = sync_mode(Some(known(&[o("foo", 5)])));
    f.delete(o("foo", 10)).unwrap();
    f.resync().unwrap();
    let deltas = f.queued_deltas(&k("foo")).unwrap();
    assert_eq!(deltas.as_slice(), [deleted(o("foo", 10))]);
}

#[tokio::test(start_paused = true)]
async fn resync_syncs_known_objects() {
    let f = sync_mode(Some(known(&[o("foo", 5)])));
    f.resync().unwrap();
    assert_eq!(
        f.queued_deltas(&k("foo")).unwrap().as_slice(),
        [Delta::Sync(o("foo", 5))]
    );
    // Without known objects a resync has nothing to re-deliver.
    let f = DeltaFifo::<Obj>::new();
    f.resync().unwrap();
    assert!(f.is_empty());
}

#[tokio::test(start_paused = true)]
async fn delete_of_a_queued_key_is_kept_even_when_not_known() {
    let f = sync_mode(Some(known(&[])));
    f.add(o("foo", 5)).unwrap();
    f.delete(o("foo", 6)).unwrap();
    let deltas = f.queued_deltas(&k("foo")).unwrap();
    assert_eq!(deltas.len(), 2);
    assert_eq!(deltas.newest(), Some(&deleted(o("foo", 6))));
}

#[tokio::test(start_paused = true)]
async fn replace_makes_deletions() {
    let all_known = || Some(known(&[o("foo", 5), o("bar", 6), o("baz", 7)]));

    // (a) A queued delete is kept; a known key the list lacks gets a tombstone.
    let f = sync_mode(all_known());
    f.delete(o("baz", 10)).unwrap();
    f.replace(vec![o("foo", 5)], None).unwrap();
    assert_eq!(pop(&f).await, [deleted(o("baz", 10))]);
    assert_eq!(pop(&f).await, [Delta::Sync(o("foo", 5))]);
    assert_eq!(pop(&f).await, [tomb("bar", Some(o("bar", 6)))]);
    assert!(drained(&f).await);

    // (b) A queued add the list lacks: tombstone with the queued state.
    let f = sync_mode(all_known());
    f.add(o("baz", 10)).unwrap();
    f.replace(vec![o("foo", 5)], None).unwrap();
    assert_eq!(
        pop(&f).await,
        [Delta::Added(o("baz", 10)), tomb("baz", Some(o("baz", 10)))]
    );
    assert_eq!(pop(&f).await, [Delta::Sync(o("foo", 5))]);
    assert_eq!(pop(&f).await, [tomb("bar", Some(o("bar", 6)))]);
    assert!(drained(&f).await);

    // (c) Deleted then added again: the tombstone carries the newest state.
    let f = sync_mode(all_known());
    f.delete(o("bar", 6)).unwrap();
    f.add(o("bar", 100)).unwrap();
    f.replace(vec![o("foo", 5)], None).unwrap();
    assert_eq!(
        pop(&f).await,
        [
            deleted(o("bar", 6)),
            Delta::Added(o("bar", 100)),
            tomb("bar", Some(o("bar", 100)))
        ]
    );
    assert_eq!(pop(&f).await, [Delta::Sync(o("foo", 5))]);
    assert_eq!(pop(&f).await, [tomb("baz", Some(o("baz", 7)))]);
    assert!(drained(&f).await);

    // (d) Two relists.
    let f = sync_mode(all_known());
    f.replace(vec![o("bar", 100), o("foo", 5)], None).unwrap();
    f.replace(vec![o("foo", 5)], None).unwrap();
    assert_eq!(
        pop(&f).await,
        [Delta::Sync(o("bar", 100)), tomb("bar", Some(o("bar", 100)))]
    );
    assert_eq!(
        pop(&f).await,
        [Delta::Sync(o("foo", 5)), Delta::Sync(o("foo", 5))]
    );
    assert_eq!(pop(&f).await, [tomb("baz", Some(o("baz", 7)))]);
    assert!(drained(&f).await);

    // (e) No known objects.
    let f = sync_mode(None);
    f.add(o("baz", 10)).unwrap();
    f.replace(vec![o("foo", 5)], None).unwrap();
    assert_eq!(
        pop(&f).await,
        [Delta::Added(o("baz", 10)), tomb("baz", Some(o("baz", 10)))]
    );
    assert_eq!(pop(&f).await, [Delta::Sync(o("foo", 5))]);
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn replace_makes_deletions_with_replaced_deltas() {
    let f = replaced_mode(Some(known(&[o("foo", 5), o("bar", 6), o("baz", 7)])));
    f.delete(o("baz", 10)).unwrap();
    f.replace(vec![o("foo", 6)], None).unwrap();
    assert_eq!(pop(&f).await, [deleted(o("baz", 10))]);
    assert_eq!(pop(&f).await, [Delta::Replaced(o("foo", 6))]);
    assert_eq!(pop(&f).await, [tomb("bar", Some(o("bar", 6)))]);
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn replace_emits_replaced_when_asked() {
    let f = replaced_mode(Some(known(&[o("foo", 5)])));
    f.replace(vec![o("foo", 5)], None).unwrap();
    assert_eq!(pop(&f).await, [Delta::Replaced(o("foo", 5))]);
    // The default is Replaced too.
    let f = DeltaFifo::new();
    f.replace(vec![o("foo", 5)], None).unwrap();
    assert_eq!(pop(&f).await, [Delta::Replaced(o("foo", 5))]);
}

#[tokio::test(start_paused = true)]
async fn an_update_racing_a_resync_is_not_followed_by_a_sync() {
    let f = sync_mode(Some(known(&[o("foo", 5)])));
    f.update(o("foo", 6)).unwrap();
    f.resync().unwrap();
    assert_eq!(pop(&f).await, [Delta::Updated(o("foo", 6))]);
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn synthetic_deletes_belong_to_the_initial_list() {
    let f = sync_mode(Some(known(&[o("foo", 1), o("bar", 1), o("baz", 1)])));
    f.replace(vec![o("foo", 5)], None).unwrap();
    let want = [
        vec![Delta::Sync(o("foo", 5))],
        vec![tomb("bar", Some(o("bar", 1)))],
        vec![tomb("baz", Some(o("baz", 1)))],
    ];
    for deltas in want {
        assert!(!f.has_synced());
        let (got, initial) = soon(f.pop(|d, initial| (d.into_vec(), initial)))
            .await
            .unwrap();
        assert_eq!(got, deltas);
        assert!(initial);
    }
    assert!(f.has_synced());
}

#[tokio::test(start_paused = true)]
async fn no_line_jumping() {
    let f = DeltaFifo::new();
    f.add(o("foo", 10)).unwrap();
    f.add(o("bar", 1)).unwrap();
    f.add(o("foo", 11)).unwrap();
    f.add(o("foo", 13)).unwrap();
    f.add(o("zab", 30)).unwrap();
    assert_eq!(pop_newest(&f).await, 13);
    f.add(o("foo", 14)).unwrap();
    assert_eq!(pop_newest(&f).await, 1);
    assert_eq!(pop_newest(&f).await, 30);
    assert_eq!(pop_newest(&f).await, 14);
}

#[tokio::test(start_paused = true)]
async fn has_synced_table() {
    assert!(!DeltaFifo::<Obj>::new().has_synced());

    let f = DeltaFifo::new();
    f.add(o("a", 1)).unwrap();
    assert!(f.has_synced());

    let f = DeltaFifo::<Obj>::new();
    f.replace(vec![], None).unwrap();
    assert!(f.has_synced());

    let f = DeltaFifo::new();
    f.replace(vec![o("a", 1), o("b", 2)], None).unwrap();
    assert!(!f.has_synced());
    pop(&f).await;
    assert!(!f.has_synced());
    pop(&f).await;
    assert!(f.has_synced());

    // The same key twice in a list is one item.
    let f = DeltaFifo::new();
    f.replace(vec![o("a", 1), o("a", 2)], None).unwrap();
    assert_eq!(
        pop(&f).await,
        [Delta::Replaced(o("a", 1)), Delta::Replaced(o("a", 2))]
    );
    assert!(f.has_synced());

    // A delete before any list populates too.
    let f = DeltaFifo::<Obj>::new();
    f.delete(o("a", 1)).unwrap();
    assert!(f.has_synced());
}

#[tokio::test(start_paused = true)]
async fn has_synced_only_after_the_last_initial_key_is_processed() {
    let f = DeltaFifo::new();
    f.replace(vec![o("a", 1)], None).unwrap();
    let during = soon(f.pop(|_, _| f.has_synced())).await.unwrap();
    assert!(!during);
    assert!(f.has_synced());
}

#[tokio::test(start_paused = true)]
async fn consecutive_deletes_collapse_keeping_the_non_tombstone() {
    {
        // Object then tombstone: the object stays.
        let f = DeltaFifo::new();
        f.add(o("a", 1)).unwrap();
        f.delete(o("a", 2)).unwrap();
        f.replace(vec![], None).unwrap();
        assert_eq!(pop(&f).await, [Delta::Added(o("a", 1)), deleted(o("a", 2))]);

        // Tombstone then object: the object replaces it.
        let f = DeltaFifo::with_options(DeltaFifoOptions {
            known_objects: Some(known(&[o("a", 1)]) as Arc<dyn KnownObjects<Obj>>),
            ..Default::default()
        });
        f.replace(vec![], None).unwrap();
        f.delete(o("a", 3)).unwrap();
        assert_eq!(pop(&f).await, [deleted(o("a", 3))]);

        // Two objects: the older stays.
        let f = DeltaFifo::new();
        f.add(o("a", 1)).unwrap();
        f.delete(o("a", 2)).unwrap();
        f.delete(o("a", 3)).unwrap();
        assert_eq!(pop(&f).await, [Delta::Added(o("a", 1)), deleted(o("a", 2))]);

        // Deletes that are not consecutive stay apart.
        let f = DeltaFifo::new();
        f.add(o("a", 1)).unwrap();
        f.delete(o("a", 2)).unwrap();
        f.add(o("a", 3)).unwrap();
        f.delete(o("a", 4)).unwrap();
        assert_eq!(pop(&f).await.len(), 4);
    }
}

#[tokio::test(start_paused = true)]
async fn close_unblocks_and_refuses_writes() {
    let f = DeltaFifo::new();
    f.add(o("a", 1)).unwrap();
    f.close();
    assert_eq!(f.add(o("b", 1)), Err(StoreError::Closed));
    assert_eq!(f.replace(vec![], None), Err(StoreError::Closed));
    assert_eq!(f.resync(), Err(StoreError::Closed));
    assert!(f.transaction(vec![Change::Add(o("c", 1))]).is_err());
    assert_eq!(pop_newest(&f).await, 1);
    assert_eq!(soon(f.pop(|_, _| ())).await, Err(Closed));
}

#[tokio::test(start_paused = true)]
async fn transaction_enqueues_in_order() {
    let f = sync_mode(Some(known(&[])));
    f.transaction(vec![
        Change::Add(o("a", 1)),
        Change::Update(o("b", 2)),
        Change::Delete(o("a", 3)),
        Change::Delete(o("unknown", 4)),
    ])
    .unwrap();
    assert_eq!(pop(&f).await, [Delta::Added(o("a", 1)), deleted(o("a", 3))]);
    assert_eq!(pop(&f).await, [Delta::Updated(o("b", 2))]);
    assert!(drained(&f).await);
}

/// While a key is being processed, a relist that lacks it still makes its tombstone, as it
/// would had processing finished first.
#[tokio::test(start_paused = true)]
async fn a_relist_during_processing_sees_the_key_in_flight() {
    let cache = known(&[]);
    let f = replaced_mode(Some(cache.clone()));
    f.add(o("a", 1)).unwrap();
    f.add(o("b", 1)).unwrap();
    soon(f.pop(|deltas, _| {
        // Relisted while "a" is being applied: the list lacks it.
        f.replace(vec![o("b", 2)], None).unwrap();
        for d in deltas {
            cache.add(d.object().unwrap().clone()).unwrap();
        }
    }))
    .await
    .unwrap();
    assert_eq!(
        pop(&f).await,
        [Delta::Added(o("b", 1)), Delta::Replaced(o("b", 2))]
    );
    assert_eq!(pop(&f).await, [tomb("a", Some(o("a", 1)))]);
    assert!(drained(&f).await);
}

/// A delete of a key that is being added is kept, although it is not known yet.
#[tokio::test(start_paused = true)]
async fn a_delete_during_processing_of_its_add_is_kept() {
    let cache = known(&[]);
    let f = replaced_mode(Some(cache.clone()));
    f.add(o("a", 1)).unwrap();
    soon(f.pop(|_, _| {
        f.delete(o("a", 2)).unwrap();
        cache.add(o("a", 1)).unwrap();
    }))
    .await
    .unwrap();
    assert_eq!(pop(&f).await, [deleted(o("a", 2))]);

    // While a delete is being processed, another delete of the key is a duplicate.
    f.delete(o("a", 3)).unwrap();
    soon(f.pop(|_, _| {
        f.delete(o("a", 4)).unwrap();
        cache.delete(o("a", 3)).unwrap();
    }))
    .await
    .unwrap();
    assert!(drained(&f).await);
}

#[tokio::test(start_paused = true)]
async fn reads_see_what_is_queued() {
    let f = DeltaFifo::new();
    f.add(o("a", 1)).unwrap();
    f.replace(vec![], None).unwrap();
    f.add(o("b", 2)).unwrap();
    // A tombstone's last known state is what a read sees.
    assert_eq!(f.list(), [o("a", 1), o("b", 2)]);
    assert_eq!(f.get(&o("a", 0)), Some(o("a", 1)));
    assert_eq!(f.len(), 2);
    assert!(f.queued_deltas(&k("zzz")).is_none());
}

/// A resync while a key is being processed does not re-deliver its (stale) known state.
#[tokio::test(start_paused = true)]
async fn a_resync_during_processing_skips_the_key_in_flight() {
    let cache = known(&[o("a", 1)]);
    let f = replaced_mode(Some(cache.clone()));
    f.update(o("a", 2)).unwrap();
    soon(f.pop(|_, _| {
        f.resync().unwrap();
        cache.update(o("a", 2)).unwrap();
    }))
    .await
    .unwrap();
    assert!(drained(&f).await);
    // Once processed, a resync re-delivers it.
    f.resync().unwrap();
    assert_eq!(pop(&f).await, [Delta::Sync(o("a", 2))]);
}
