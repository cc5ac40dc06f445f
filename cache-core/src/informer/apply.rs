//! Applying popped deltas to the cache, then notifying the handlers (client-go's
//! `processDeltas` and `processDeltasInBatch`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::warn;

use super::handler::InformerEvent;
use super::listeners::{Processor, State};
use crate::fifo::{DeletedFinalStateUnknown, DeletedObject, Delta};
use crate::index::Hasher;
use crate::object::{Object, ResourceVersion};
use crate::store::{Change, StoreError};

/// Whether an update only re-delivers what the handlers have (client-go: old and new carry the
/// same resource version). Objects without a version are never taken for a resync this way.
fn same_version<T: Object>(old: &T, new: &T) -> bool {
    match (old.resource_version(), new.resource_version()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A per-object delta as a cache change and the notification it makes, if it can go into a
/// transaction (everything but a tombstone and the collection-wide deltas).
type Planned<T> = (Change<T>, InformerEvent<T>, bool);

impl<T: Object> Processor<T> {
    /// Applies `deltas` to the cache, oldest first, and hands each successful change to the
    /// handlers. The whole batch is one critical section: a handler registered meanwhile sees
    /// the cache before or after it, never half of it.
    ///
    /// `distinct_keys` says the queue guarantees distinct keys within a batch ([`RealFifo`]'s
    /// `pop_batch`): runs of per-object deltas then go to the cache as one transaction (one
    /// publish); the handlers hear only of the changes that succeeded.
    ///
    /// [`RealFifo`]: crate::fifo::RealFifo
    pub(super) fn process(
        &self,
        deltas: Vec<Delta<T>>,
        is_in_initial_list: bool,
        distinct_keys: bool,
    ) {
        let state = self.lock();
        if state.is_stopped() {
            return;
        }
        if !distinct_keys || deltas.len() < 2 {
            for delta in deltas {
                self.apply_one(&state, delta, is_in_initial_list);
            }
            return;
        }
        let mut run: Vec<Planned<T>> = Vec::with_capacity(deltas.len());
        let mut snapshot = self.cache.snapshot();
        for delta in deltas {
            match plan(delta, &snapshot, is_in_initial_list) {
                Ok(planned) => run.push(planned),
                Err(delta) => {
                    self.apply_run(&state, std::mem::take(&mut run));
                    self.apply_one(&state, delta, is_in_initial_list);
                    snapshot = self.cache.snapshot();
                }
            }
        }
        self.apply_run(&state, run);
    }

    /// One transaction; notifications only for the changes it applied.
    fn apply_run(&self, state: &State<T>, run: Vec<Planned<T>>) {
        if run.is_empty() {
            return;
        }
        let mut changes = Vec::with_capacity(run.len());
        let mut events = Vec::with_capacity(run.len());
        for (change, event, sync) in run {
            changes.push(change);
            events.push((event, sync));
        }
        let failed: HashSet<usize> = match self.cache.transaction(changes) {
            Ok(()) => HashSet::new(),
            Err(error) => {
                warn!(informer = %self.name, %error,
                    "the cache rejected changes; their handlers are not notified");
                error.errors.iter().map(|(i, _)| *i).collect()
            }
        };
        for (i, (event, sync)) in events.into_iter().enumerate() {
            if !failed.contains(&i) {
                state.distribute(event, sync);
            }
        }
    }

    /// client-go's `processDeltas` for one delta.
    fn apply_one(&self, state: &State<T>, delta: Delta<T>, is_in_initial_list: bool) {
        match delta {
            Delta::Added(obj) | Delta::Updated(obj) | Delta::Replaced(obj) => {
                self.upsert(state, obj, false, is_in_initial_list);
            }
            Delta::Sync(obj) => self.upsert(state, obj, true, is_in_initial_list),
            Delta::Deleted(deleted) => {
                match &deleted {
                    DeletedObject::Object(obj) => {
                        let _ = self.cache.delete(obj.clone());
                    }
                    // A tombstone's object may be stale: its version is not the cache's.
                    DeletedObject::Tombstone(t) => self.cache.delete_key(&t.key),
                }
                state.distribute(InformerEvent::Deleted(deleted), false);
            }
            Delta::ReplacedAll {
                resource_version,
                objects,
            } => self.replace_all(state, objects, resource_version, is_in_initial_list),
            Delta::SyncAll => {
                if state.any_syncing() {
                    for obj in self.cache.snapshot().iter() {
                        state.distribute(
                            InformerEvent::Updated {
                                old: obj.clone(),
                                new: obj.clone(),
                            },
                            true,
                        );
                    }
                }
            }
            Delta::Bookmark { resource_version } => self.cache.bookmark(resource_version),
        }
    }

    /// An add or update: update when the key is cached, add otherwise.
    fn upsert(&self, state: &State<T>, obj: Arc<T>, sync: bool, is_in_initial_list: bool) {
        let (result, event) = match self.cache.get_by_key(&obj.key()) {
            Some(old) => {
                let sync = sync || same_version(&*old, &*obj);
                (
                    self.cache.update(obj.clone()),
                    (InformerEvent::Updated { old, new: obj }, sync),
                )
            }
            None => (
                self.cache.add(obj.clone()),
                (
                    InformerEvent::Added {
                        object: obj,
                        is_in_initial_list,
                    },
                    false,
                ),
            ),
        };
        match result {
            Ok(()) => state.distribute(event.0, event.1),
            Err(error) => {
                warn!(informer = %self.name, key = ?event.0.key(), %error,
                    "the cache rejected an object; its handlers are not notified");
            }
        }
    }

    /// A whole relist: the cache is replaced in one publish; then the handlers hear of every
    /// cached object the list lacks (tombstones carrying the last cached state, in key order),
    /// then of every listed object in list order (an update when it was cached, an add
    /// otherwise). Objects the cache rejected are left out.
    fn replace_all(
        &self,
        state: &State<T>,
        objects: Vec<Arc<T>>,
        resource_version: Option<ResourceVersion>,
        is_in_initial_list: bool,
    ) {
        let old = self.cache.snapshot();
        let rejected: HashSet<usize> = match self.cache.replace(objects.clone(), resource_version) {
            Ok(()) => HashSet::new(),
            Err(StoreError::Partial(error)) => {
                warn!(informer = %self.name, %error,
                    "the cache rejected listed objects; their handlers are not notified");
                error.errors.iter().map(|(i, _)| *i).collect()
            }
            Err(error) => {
                warn!(informer = %self.name, %error, "the cache refused a relist");
                return;
            }
        };
        // Where each key's surviving object is in the list (a later duplicate wins).
        let mut kept: HashMap<T::Key, usize, Hasher> = HashMap::default();
        for (i, obj) in objects.iter().enumerate() {
            if !rejected.contains(&i) {
                kept.insert(obj.key(), i);
            }
        }
        let mut gone: Vec<(&T::Key, &Arc<T>)> = old
            .entries()
            .filter(|(key, _)| !kept.contains_key(*key))
            .collect();
        gone.sort_by(|a, b| a.0.cmp(b.0));
        for (key, obj) in gone {
            let tombstone = DeletedObject::Tombstone(DeletedFinalStateUnknown {
                key: key.clone(),
                object: Some(obj.clone()),
            });
            state.distribute(InformerEvent::Deleted(tombstone), false);
        }
        for (i, obj) in objects.into_iter().enumerate() {
            let key = obj.key();
            if kept.get(&key) != Some(&i) {
                continue;
            }
            match old.get(&key) {
                Some(prev) => {
                    let sync = same_version(&**prev, &*obj);
                    state.distribute(
                        InformerEvent::Updated {
                            old: prev.clone(),
                            new: obj,
                        },
                        sync,
                    );
                }
                None => state.distribute(
                    InformerEvent::Added {
                        object: obj,
                        is_in_initial_list,
                    },
                    false,
                ),
            }
        }
    }
}

/// Plans a per-object delta against the snapshot taken before the run; hands back what cannot
/// go into a transaction.
fn plan<T: Object>(
    delta: Delta<T>,
    snapshot: &crate::Snapshot<T>,
    is_in_initial_list: bool,
) -> Result<Planned<T>, Delta<T>> {
    let (obj, sync) = match delta {
        Delta::Added(obj) | Delta::Updated(obj) | Delta::Replaced(obj) => (obj, false),
        Delta::Sync(obj) => (obj, true),
        Delta::Deleted(DeletedObject::Object(obj)) => {
            return Ok((
                Change::Delete(obj.clone()),
                InformerEvent::Deleted(DeletedObject::Object(obj)),
                false,
            ));
        }
        other => return Err(other),
    };
    Ok(match snapshot.get(&obj.key()) {
        Some(old) => (
            Change::Update(obj.clone()),
            InformerEvent::Updated {
                old: old.clone(),
                new: obj.clone(),
            },
            sync || same_version(&**old, &*obj),
        ),
        None => (
            Change::Add(obj.clone()),
            InformerEvent::Added {
                object: obj,
                is_in_initial_list,
            },
            false,
        ),
    })
}
