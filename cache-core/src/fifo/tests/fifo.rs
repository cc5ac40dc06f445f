//! client-go's fifo_test behaviours, and ours.

use std::sync::Arc;

use super::*;
use crate::{Store, StoreError};

async fn pop_val(f: &Fifo<Obj>) -> u64 {
    soon(f.pop(|obj, _| obj.val)).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn add_then_update_coalesce_into_one_pop() {
    let f = Fifo::new();
    f.add(o("foo", 10)).unwrap();
    f.update(o("foo", 15)).unwrap();

    assert_eq!(f.list(), [o("foo", 15)]);
    assert_eq!(f.list_keys(), [k("foo")]);
    assert_eq!(pop_val(&f).await, 15);
    assert!(stays_pending(f.pop(|_, _| ())).await);
    assert_eq!(f.get_by_key(&k("foo")), None);
    assert_eq!(f.get(&o("foo", 0)), None);
}

#[tokio::test(start_paused = true)]
async fn add_then_replace_pops_the_listed_state_once() {
    let f = Fifo::new();
    f.add(o("foo", 10)).unwrap();
    f.replace(vec![o("foo", 15)], Some("15".into())).unwrap();
    assert_eq!(pop_val(&f).await, 15);
    assert!(stays_pending(f.pop(|_, _| ())).await);
    assert_eq!(f.get_by_key(&k("foo")), None);
}

#[tokio::test(start_paused = true)]
async fn no_line_jumping() {
    let f = Fifo::new();
    f.add(o("foo", 10)).unwrap();
    f.add(o("bar", 1)).unwrap();
    f.add(o("foo", 11)).unwrap();
    f.add(o("foo", 13)).unwrap();
    f.add(o("zab", 30)).unwrap();
    assert_eq!(pop_val(&f).await, 13);
    // A popped key queued again goes to the back.
    f.add(o("foo", 14)).unwrap();
    assert_eq!(pop_val(&f).await, 1);
    assert_eq!(pop_val(&f).await, 30);
    assert_eq!(pop_val(&f).await, 14);
}

#[tokio::test(start_paused = true)]
async fn delete_drops_the_queued_object() {
    let f = Fifo::new();
    f.add(o("a", 1)).unwrap();
    f.add(o("b", 2)).unwrap();
    f.delete(o("a", 3)).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f.list_keys(), [k("b")]);
    assert_eq!(pop_val(&f).await, 2);
    assert!(stays_pending(f.pop(|_, _| ())).await);

    // Added again after a delete: popped once, with the new state.
    f.add(o("c", 1)).unwrap();
    f.delete(o("c", 1)).unwrap();
    f.add(o("c", 5)).unwrap();
    assert_eq!(pop_val(&f).await, 5);
    assert!(stays_pending(f.pop(|_, _| ())).await);
}

#[tokio::test(start_paused = true)]
async fn resync_requeues_nothing_more() {
    let f = Fifo::new();
    f.add(o("a", 1)).unwrap();
    f.resync().unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(pop_val(&f).await, 1);
    f.resync().unwrap();
    assert!(f.is_empty());
}

/// client-go's HasSynced table: each case is a fresh queue.
#[tokio::test(start_paused = true)]
async fn has_synced_table() {
    // Nothing happened.
    assert!(!Fifo::<Obj>::new().has_synced());
    // An add before any list.
    let f = Fifo::new();
    f.add(o("a", 1)).unwrap();
    assert!(f.has_synced());
    // An empty list.
    let f = Fifo::<Obj>::new();
    f.replace(vec![], None).unwrap();
    assert!(f.has_synced());
    // A list of two: synced after the second pop.
    let f = Fifo::new();
    f.replace(vec![o("a", 1), o("b", 2)], None).unwrap();
    assert!(!f.has_synced());
    let first = soon(f.pop(|_, initial| initial)).await.unwrap();
    assert!(first);
    assert!(!f.has_synced());
    let second = soon(f.pop(|_, initial| initial)).await.unwrap();
    assert!(second);
    assert!(f.has_synced());
    // Later items are not in the initial list.
    f.add(o("c", 3)).unwrap();
    assert!(!soon(f.pop(|_, initial| initial)).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn has_synced_waits_for_processing_to_finish() {
    let f = Fifo::new();
    f.replace(vec![o("a", 1)], None).unwrap();
    let during = soon(f.pop(|_, _| f.has_synced())).await.unwrap();
    assert!(
        !during,
        "synced while the last initial item was still being processed"
    );
    assert!(f.has_synced());
}

#[tokio::test(start_paused = true)]
async fn a_deleted_initial_item_still_counts() {
    let f = Fifo::new();
    f.replace(vec![o("a", 1), o("b", 2)], None).unwrap();
    f.delete(o("a", 1)).unwrap();
    assert_eq!(pop_val(&f).await, 2);
    assert!(f.has_synced());
}

#[tokio::test(start_paused = true)]
async fn wait_synced_resolves_on_sync_or_close() {
    let f = Arc::new(Fifo::new());
    f.replace(vec![o("a", 1)], None).unwrap();
    let waiter = tokio::spawn({
        let f = f.clone();
        async move { f.wait_for_sync().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    pop_val(&f).await;
    assert_eq!(soon(waiter).await.unwrap(), Ok(()));

    let never = Arc::new(Fifo::<Obj>::new());
    let waiter = tokio::spawn({
        let f = never.clone();
        async move { f.wait_for_sync().await }
    });
    tokio::task::yield_now().await;
    never.close();
    assert_eq!(soon(waiter).await.unwrap(), Err(Closed));
}

#[tokio::test(start_paused = true)]
async fn close_refuses_writes_and_drains() {
    let f = Fifo::new();
    f.add(o("a", 1)).unwrap();
    f.close();
    assert!(f.is_closed());
    assert_eq!(f.add(o("b", 1)), Err(StoreError::Closed));
    assert_eq!(f.update(o("b", 1)), Err(StoreError::Closed));
    assert_eq!(f.delete(o("a", 1)), Err(StoreError::Closed));
    assert_eq!(f.replace(vec![], None), Err(StoreError::Closed));
    assert_eq!(f.resync(), Err(StoreError::Closed));
    let err = f
        .transaction(vec![crate::Change::Add(o("c", 1))])
        .unwrap_err();
    assert_eq!(err.errors, [(0, StoreError::Closed)]);
    // What was queued before the close still comes out, then Closed.
    assert_eq!(pop_val(&f).await, 1);
    assert_eq!(soon(f.pop(|_, _| ())).await, Err(Closed));
}

#[tokio::test(start_paused = true)]
async fn transaction_enqueues_in_order() {
    let f = Fifo::new();
    f.transaction(vec![
        crate::Change::Add(o("a", 1)),
        crate::Change::Add(o("b", 2)),
        crate::Change::Update(o("a", 3)),
        crate::Change::Delete(o("b", 2)),
    ])
    .unwrap();
    assert_eq!(f.list(), [o("a", 3)]);
    assert_eq!(pop_val(&f).await, 3);
}

#[tokio::test(start_paused = true)]
async fn versions_are_tracked() {
    let f = Fifo::new();
    assert_eq!(f.last_sync_resource_version(), None);
    f.add(o("a", 4)).unwrap();
    assert_eq!(f.last_sync_resource_version(), Some("4".into()));
    f.replace(vec![], Some("9".into())).unwrap();
    assert_eq!(f.last_sync_resource_version(), Some("9".into()));
    f.bookmark("12".into());
    assert_eq!(f.last_sync_resource_version(), Some("12".into()));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_process_still_counts_as_processed() {
    let f = Arc::new(Fifo::new());
    f.replace(vec![o("a", 1)], None).unwrap();
    let popper = tokio::spawn({
        let f = f.clone();
        async move { f.pop(|_, _| panic!("handler bug")).await }
    });
    assert!(soon(popper).await.is_err());
    assert!(f.has_synced());
    // The queue still works.
    f.add(o("b", 2)).unwrap();
    assert_eq!(pop_val(&f).await, 2);
}
