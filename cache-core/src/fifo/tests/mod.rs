//! The behaviours client-go's fifo_test, delta_fifo_test and the_real_fifo_test pin down, as our
//! own tests; model tests; concurrency.

mod concurrency;
mod delta_fifo;
mod fifo;
mod heap;
mod model;
mod real_fifo;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::{Cache, Indexers, ObjectKey, ResourceVersion};

/// A test object: a name (the key) and a value, which is also its resource version.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Obj {
    pub(super) name: String,
    pub(super) val: u64,
    /// How many times a transformer has been applied to it.
    pub(super) transforms: u32,
}

impl Object for Obj {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::cluster(&self.name)
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        Some(self.val.into())
    }
}

pub(super) fn o(name: &str, val: u64) -> Arc<Obj> {
    Arc::new(Obj {
        name: name.into(),
        val,
        transforms: 0,
    })
}

pub(super) fn k(name: &str) -> ObjectKey {
    ObjectKey::cluster(name)
}

/// A cache holding `objects`, as an informer's known objects.
pub(super) fn known(objects: &[Arc<Obj>]) -> Arc<Cache<Obj>> {
    let cache = Cache::with_indexers(Indexers::new());
    cache.replace(objects.to_vec(), None).unwrap();
    Arc::new(cache)
}

pub(super) fn tomb(name: &str, last: Option<Arc<Obj>>) -> Delta<Obj> {
    Delta::Deleted(DeletedObject::Tombstone(DeletedFinalStateUnknown {
        key: k(name),
        object: last,
    }))
}

pub(super) fn deleted(obj: Arc<Obj>) -> Delta<Obj> {
    Delta::Deleted(DeletedObject::Object(obj))
}

/// Counts how often it runs, marking each object it transforms.
pub(super) fn counting_transformer() -> Transformer<Obj> {
    Arc::new(|obj: Arc<Obj>| {
        let mut copy = (*obj).clone();
        copy.transforms += 1;
        Arc::new(copy)
    })
}

/// `fut`, or a panic if it does not finish within a second of (paused) time.
pub(super) async fn soon<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .expect("did not finish in time (hung?)")
}

/// Whether `fut` stays pending for 50 ms of (paused) time.
pub(super) async fn stays_pending<F: Future>(fut: F) -> bool {
    tokio::time::timeout(Duration::from_millis(50), fut)
        .await
        .is_err()
}

#[test]
fn key_of_objects_tombstones_and_deltas() {
    let plain = Delta::Added(o("foo", 1));
    assert_eq!(plain.key(), Some(k("foo")));
    // A tombstone's key is its own, whatever its object says.
    let t = DeletedObject::Tombstone(DeletedFinalStateUnknown {
        key: k("bar"),
        object: Some(o("other", 1)),
    });
    assert_eq!(t.key(), k("bar"));
    assert_eq!(Delta::Deleted(t.clone()).key(), Some(k("bar")));
    // Deltas: the key of the newest.
    let deltas = Deltas::new(
        k("foo"),
        vec![Delta::Added(o("foo", 1)), deleted(o("foo", 2))],
    );
    assert_eq!(deltas.key(), &k("foo"));
    assert_eq!(deltas.newest().and_then(Delta::key), Some(k("foo")));
    let of_tombstone = Deltas::new(k("bar"), vec![Delta::Deleted(t)]);
    assert_eq!(of_tombstone.newest().and_then(Delta::key), Some(k("bar")));
    // Collection-wide deltas have no key.
    assert_eq!(Delta::<Obj>::SyncAll.key(), None);
    assert_eq!(
        Delta::<Obj>::Bookmark {
            resource_version: "1".into()
        }
        .key(),
        None
    );
}

#[test]
fn delta_accessors() {
    assert_eq!(Delta::Added(o("a", 1)).object().map(|x| x.val), Some(1));
    assert_eq!(tomb("a", None).object(), None);
    assert_eq!(tomb("a", Some(o("a", 3))).object().map(|x| x.val), Some(3));
    assert!(deleted(o("a", 1)).is_deleted());
    assert_eq!(Delta::<Obj>::SyncAll.type_name(), "SyncAll");
    assert_eq!(Delta::Replaced(o("a", 1)).type_name(), "Replaced");
    let empty: Deltas<Obj> = Deltas::new(k("a"), Vec::new());
    assert!(empty.is_empty());
    assert!(empty.oldest().is_none() && empty.newest().is_none());
}

#[test]
fn closed_is_a_store_error() {
    assert_eq!(crate::StoreError::from(Closed), crate::StoreError::Closed);
    assert_eq!(Closed.to_string(), "the queue is closed");
}
