//! [`UndeltaStore`]: a store that pushes its complete state after every change.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::{Cache, Change, Store, StoreError, TransactionError};
use crate::object::{Object, ResourceVersion};

/// The callback of an [`UndeltaStore`]: it receives the complete state.
type Push<T> = Box<dyn Fn(Vec<Arc<T>>) + Send + Sync>;

/// A [`Store`] wrapper that hands its complete state to a push callback after every change
/// (client-go's `UndeltaStore`), for consumers that want "the whole set, now" rather than
/// deltas.
///
/// After each add, update, delete, replace or transaction that changed something, the callback
/// gets [`list`](Store::list) of the wrapped store. A write that fails without changing anything
/// pushes nothing; a replace or transaction that applied part of its items pushes (the state did
/// change) and still returns its error. Reads, resyncs and bookmarks never push.
///
/// Writes and their pushes are serialized: pushes arrive in the order of the writes, and each
/// carries the state right after its write, so the last push is always the current state. The
/// callback must therefore not write to this same store (it would wait for itself).
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use cache_core::{Cache, Indexers, Object, ObjectKey, Store};
/// use cache_core::store::UndeltaStore;
///
/// #[derive(Debug)]
/// struct Node { name: String }
/// impl Object for Node {
///     type Key = ObjectKey;
///     fn key(&self) -> ObjectKey { ObjectKey::cluster(&self.name) }
/// }
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let store = UndeltaStore::new(Cache::with_indexers(Indexers::new()), move |all: Vec<Arc<Node>>| {
///     sink.lock().unwrap().push(all.len());
/// });
/// store.add(Arc::new(Node { name: "n1".into() }))?;
/// store.add(Arc::new(Node { name: "n2".into() }))?;
/// store.delete(Arc::new(Node { name: "n1".into() }))?;
/// let _ = store.list(); // reads never push
/// assert_eq!(*seen.lock().unwrap(), [1, 2, 1]);
/// # Ok::<(), cache_core::StoreError>(())
/// ```
pub struct UndeltaStore<T: Object, S: Store<T> = Cache<T>> {
    store: S,
    push: Push<T>,
    /// Serializes a write with its push.
    writing: Mutex<()>,
}

impl<T: Object, S: Store<T> + fmt::Debug> fmt::Debug for UndeltaStore<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UndeltaStore")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<T: Object, S: Store<T>> UndeltaStore<T, S> {
    /// Wraps `store`; `push` receives the complete state after every change.
    pub fn new(store: S, push: impl Fn(Vec<Arc<T>>) + Send + Sync + 'static) -> Self {
        Self {
            store,
            push: Box::new(push),
            writing: Mutex::new(()),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.store
    }

    /// Runs one write and pushes the resulting state when it changed something.
    fn write<E>(
        &self,
        write: impl FnOnce(&S) -> Result<(), E>,
        changed: impl Fn(&E) -> bool,
    ) -> Result<(), E> {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = write(&self.store);
        if result.as_ref().err().is_none_or(&changed) {
            (self.push)(self.store.list());
        }
        result
    }
}

impl<T: Object, S: Store<T>> Store<T> for UndeltaStore<T, S> {
    fn add(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.write(|s| s.add(obj), |_| false)
    }

    fn update(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.write(|s| s.update(obj), |_| false)
    }

    fn delete(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.write(|s| s.delete(obj), |_| false)
    }

    fn list(&self) -> Vec<Arc<T>> {
        self.store.list()
    }

    fn list_keys(&self) -> Vec<T::Key> {
        self.store.list_keys()
    }

    fn get(&self, obj: &T) -> Option<Arc<T>> {
        self.store.get(obj)
    }

    fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        self.store.get_by_key(key)
    }

    fn replace(
        &self,
        items: Vec<Arc<T>>,
        resource_version: Option<ResourceVersion>,
    ) -> Result<(), StoreError> {
        self.write(
            |s| s.replace(items, resource_version),
            |e| matches!(e, StoreError::Partial(_)),
        )
    }

    fn resync(&self) -> Result<(), StoreError> {
        self.store.resync()
    }

    fn bookmark(&self, resource_version: ResourceVersion) {
        self.store.bookmark(resource_version);
    }

    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.store.last_sync_resource_version()
    }

    fn transaction(&self, changes: Vec<Change<T>>) -> Result<(), TransactionError> {
        self.write(|s| s.transaction(changes), |e| e.errors.len() < e.total)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{Indexers, ObjectKey};

    #[derive(Debug, PartialEq)]
    struct Obj {
        name: &'static str,
        val: u32,
    }

    impl Object for Obj {
        type Key = ObjectKey;
        fn key(&self) -> ObjectKey {
            ObjectKey::cluster(self.name)
        }
    }

    fn obj(name: &'static str, val: u32) -> Arc<Obj> {
        Arc::new(Obj { name, val })
    }

    type Pushes = Arc<Mutex<Vec<Vec<(&'static str, u32)>>>>;

    fn recording() -> (UndeltaStore<Obj>, Pushes) {
        let pushes: Pushes = Arc::default();
        let sink = pushes.clone();
        let store = UndeltaStore::new(Cache::with_indexers(Indexers::new()), move |all| {
            let mut state: Vec<_> = all.iter().map(|o: &Arc<Obj>| (o.name, o.val)).collect();
            state.sort_unstable();
            sink.lock().unwrap().push(state);
        });
        (store, pushes)
    }

    #[test]
    fn add_and_update_push_the_whole_state() {
        let (store, pushes) = recording();
        store.add(obj("a", 2)).unwrap();
        store.update(obj("a", 1)).unwrap();
        let pushes = pushes.lock().unwrap();
        assert_eq!(pushes.len(), 2);
        assert_eq!(pushes[1], [("a", 1)]);
    }

    #[test]
    fn delete_pushes_the_empty_state() {
        let (store, pushes) = recording();
        store.add(obj("a", 2)).unwrap();
        store.delete(obj("a", 2)).unwrap();
        let pushes = pushes.lock().unwrap();
        assert_eq!(pushes.len(), 2);
        assert_eq!(pushes[1], []);
    }

    #[test]
    fn reads_never_push() {
        let (store, pushes) = recording();
        store.add(obj("a", 2)).unwrap();
        let _ = store.list();
        let _ = store.list_keys();
        let _ = store.get(&obj("a", 0));
        let _ = store.get_by_key(&ObjectKey::cluster("a"));
        let _ = store.last_sync_resource_version();
        store.resync().unwrap();
        store.bookmark("9".into());
        assert_eq!(pushes.lock().unwrap().len(), 1);
    }

    #[test]
    fn replace_pushes_once() {
        let (store, pushes) = recording();
        store.replace(vec![obj("a", 1)], None).unwrap();
        assert_eq!(*pushes.lock().unwrap(), [vec![("a", 1)]]);
    }

    #[test]
    fn transaction_pushes_once_after_all_changes() {
        let (store, pushes) = recording();
        store
            .transaction(vec![
                Change::Add(obj("a", 1)),
                Change::Add(obj("b", 2)),
                Change::Delete(obj("a", 1)),
            ])
            .unwrap();
        assert_eq!(*pushes.lock().unwrap(), [vec![("b", 2)]]);
    }

    /// A store whose writes all fail, to check what a failed write pushes.
    struct Failing {
        partial: bool,
    }

    impl Store<Obj> for Failing {
        fn add(&self, _: Arc<Obj>) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        fn update(&self, _: Arc<Obj>) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        fn delete(&self, _: Arc<Obj>) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        fn list(&self) -> Vec<Arc<Obj>> {
            Vec::new()
        }
        fn list_keys(&self) -> Vec<ObjectKey> {
            Vec::new()
        }
        fn get_by_key(&self, _: &ObjectKey) -> Option<Arc<Obj>> {
            None
        }
        fn replace(
            &self,
            items: Vec<Arc<Obj>>,
            _: Option<ResourceVersion>,
        ) -> Result<(), StoreError> {
            if self.partial {
                Err(StoreError::Partial(TransactionError {
                    total: items.len(),
                    errors: vec![(0, StoreError::Closed)],
                }))
            } else {
                Err(StoreError::Closed)
            }
        }
        fn resync(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn bookmark(&self, _: ResourceVersion) {}
        fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
            None
        }
    }

    #[test]
    fn a_write_that_changed_nothing_does_not_push() {
        let count = Arc::new(Mutex::new(0));
        let sink = count.clone();
        let store = UndeltaStore::new(Failing { partial: false }, move |_| {
            *sink.lock().unwrap() += 1;
        });
        assert_eq!(store.add(obj("a", 1)), Err(StoreError::Closed));
        assert!(store.update(obj("a", 1)).is_err());
        assert!(store.delete(obj("a", 1)).is_err());
        assert!(store.replace(vec![obj("a", 1)], None).is_err());
        let err = store
            .transaction(vec![Change::Add(obj("a", 1))])
            .unwrap_err();
        assert_eq!(err.errors.len(), 1);
        assert_eq!(*count.lock().unwrap(), 0);
    }

    #[test]
    fn a_partly_applied_replace_pushes_and_reports() {
        let count = Arc::new(Mutex::new(0));
        let sink = count.clone();
        let store = UndeltaStore::new(Failing { partial: true }, move |_| {
            *sink.lock().unwrap() += 1;
        });
        let err = store.replace(vec![obj("a", 1), obj("b", 1)], None);
        assert!(matches!(err, Err(StoreError::Partial(_))));
        assert_eq!(*count.lock().unwrap(), 1);
    }

    #[test]
    fn concurrent_writes_push_in_order_and_end_on_the_final_state() {
        let (store, pushes) = recording();
        let store = Arc::new(store);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let name: &'static str = ["a", "b", "c", "d"][t];
                        store.update(obj(name, i)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let pushes = pushes.lock().unwrap();
        assert_eq!(pushes.len(), 200);
        // In write order: no object's value ever goes back from one push to the next.
        for w in pushes.windows(2) {
            for (name, val) in &w[0] {
                let later = w[1].iter().find(|(n, _)| n == name).map(|(_, v)| *v);
                assert!(
                    later >= Some(*val),
                    "{name} went back from {val} to {later:?}"
                );
            }
        }
        assert_eq!(
            pushes.last().unwrap(),
            &[("a", 49), ("b", 49), ("c", 49), ("d", 49)]
        );
    }
}
