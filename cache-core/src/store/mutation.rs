//! [`MutationCache`]: the objects this program just wrote, overlaid on an informer's [`Cache`]
//! until the informer catches up (client-go's `MutationCache`).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::expiration::{Clock, ExpirationCache, RealClock};
use super::{Cache, CacheReader, Snapshot, Store, StoreError};
use crate::fifo::DeletedObject;
use crate::index::{Index, IndexValue, Lookup};
use crate::object::{Object, ResourceVersion};

/// How a [`MutationCache`] reads an object's uid.
type UidFn<T> = Arc<dyn Fn(&T) -> Option<String> + Send + Sync>;

/// The settings of a [`MutationCache`] (client-go's `MutationCacheOptions`).
pub struct MutationCacheOptions<T: Object> {
    ttl: Duration,
    include_adds: bool,
    max_len: usize,
    uid: Option<UidFn<T>>,
    clock: Arc<dyn Clock>,
}

impl<T: Object> Default for MutationCacheOptions<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Object> fmt::Debug for MutationCacheOptions<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutationCacheOptions")
            .field("ttl", &self.ttl)
            .field("include_adds", &self.include_adds)
            .field("max_len", &self.max_len)
            .field("uid", &self.uid.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Object> MutationCacheOptions<T> {
    /// client-go's defaults: a TTL of five minutes, at most 100 objects, adds not included, no
    /// uid, the real clock.
    pub fn new() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            include_adds: false,
            max_len: 100,
            uid: None,
            clock: Arc::new(RealClock),
        }
    }

    /// How long a written object is overlaid at most, if the informer never catches up.
    /// `Duration::ZERO` means until the informer catches up.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Whether a written object is returned while the informer's cache does not hold its key
    /// at all (an object this program created). Off by default: without it, a missing key reads
    /// as missing, because "not seen created yet" and "deleted since" look the same. With it, a
    /// created object is visible right away, and a delete is seen through
    /// [`on_delete`](MutationCache::on_delete) or after the TTL.
    #[must_use]
    pub fn include_adds(mut self, include: bool) -> Self {
        self.include_adds = include;
        self
    }

    /// How many written objects (and tombstones) are held at most (at least one); beyond that,
    /// the least recently written is forgotten.
    #[must_use]
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// How to read an object's uid, which tells two objects of the same key apart (a delete and
    /// a re-create). Without it, only resource versions are compared.
    #[must_use]
    pub fn uid(mut self, uid: impl Fn(&T) -> Option<String> + Send + Sync + 'static) -> Self {
        self.uid = Some(Arc::new(uid));
        self
    }

    /// Reads time (for the TTL) from `clock`.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// An object's resource version cannot be compared by a [`MutationCache`]: it is not an
/// unsigned integer. Nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the resource version {resource_version:?} of {key} is not an integer: the mutation cache cannot compare it"
)]
pub struct UncomparableVersion {
    /// The object's key, rendered with `Debug`.
    pub key: String,
    /// The version it carries.
    pub resource_version: ResourceVersion,
}

/// What the overlay holds for a key: a written object, or the record of a delete the informer
/// saw (so that a late [`MutationCache::mutation`] of the deleted object is ignored).
enum Mutated<T: Object> {
    Object {
        obj: Arc<T>,
        rv: u64,
        uid: Option<String>,
    },
    Tombstone {
        key: T::Key,
        rv: u64,
        uid: Option<String>,
    },
}

impl<T: Object> Mutated<T> {
    fn rv(&self) -> u64 {
        match self {
            Mutated::Object { rv, .. } | Mutated::Tombstone { rv, .. } => *rv,
        }
    }

    fn uid(&self) -> Option<&str> {
        match self {
            Mutated::Object { uid, .. } | Mutated::Tombstone { uid, .. } => uid.as_deref(),
        }
    }
}

impl<T: Object> Object for Mutated<T> {
    type Key = T::Key;
    fn key(&self) -> T::Key {
        match self {
            Mutated::Object { obj, .. } => obj.key(),
            Mutated::Tombstone { key, .. } => key.clone(),
        }
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        Some(self.rv().into())
    }
}

/// Which of the informer's copy and the overlay is newer.
enum Newer<T> {
    Backing(Arc<T>),
    Mutated(Arc<T>),
    Deleted,
}

/// The objects this program just wrote, overlaid on an informer's [`Cache`] until the informer
/// catches up (client-go's `MutationCache`).
///
/// After a controller updates an object on the server, its informer takes a moment to see the
/// change; a read in that moment returns the old object, and the controller may act on stale
/// state (write again, conflict, or create a second object). Handing the server's reply to
/// [`mutation`](Self::mutation) overlays it: reads return **the newer of the informer's copy
/// and the overlay**, compared by resource version, until the informer holds a version at least
/// as new, or the TTL passes.
///
/// - Resource versions are compared as unsigned integers (client-go's
///   `NewIntegerResourceVersionMutationCache`), which holds for Kubernetes and etcd: they grow
///   with every write to the collection. A missing version counts as 0. A written object whose
///   version is not an integer is refused with [`UncomparableVersion`]; when the informer's copy
///   carries one, the informer's copy wins and the overlay forgets the key.
/// - [`on_add_or_update`](Self::on_add_or_update) and [`on_delete`](Self::on_delete), called
///   from the informer's event handlers, drop overlaid objects as soon as the informer catches
///   up, and remember deletes, so that a late `mutation` of a deleted object is ignored.
/// - Reads ([`get_by_key`](Self::get_by_key), [`by_index`](Self::by_index), [`by`](Self::by))
///   read the informer's cache through one [`Snapshot`] and never write to it. An index read
///   applies the query to the overlaid objects too: an object whose write moved it out of the
///   queried value is left out, and, with
///   [`include_adds`](MutationCacheOptions::include_adds), one that moved in is added.
///
/// Nothing here is a guarantee of reading one's own writes: an overlaid object can be forgotten
/// (TTL, size bound), and two racing `mutation`s of one key keep one of them. What a read
/// returns was valid at some point in time.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use cache_core::{Cache, Indexers, Object, ObjectKey};
/// use cache_core::store::{MutationCache, MutationCacheOptions};
///
/// #[derive(Debug)]
/// struct Pod { name: String, rv: u64, ready: bool }
/// impl Object for Pod {
///     type Key = ObjectKey;
///     fn key(&self) -> ObjectKey { ObjectKey::new("default", &self.name) }
///     fn resource_version(&self) -> Option<cache_core::ResourceVersion> { Some(self.rv.into()) }
/// }
/// let pod = |rv, ready| Arc::new(Pod { name: "web".into(), rv, ready });
///
/// let informer_cache = Arc::new(Cache::with_indexers(Indexers::new()));
/// informer_cache.add(pod(1, false))?;
/// let cache = MutationCache::new(informer_cache.clone(), MutationCacheOptions::new());
/// let key = ObjectKey::new("default", "web");
///
/// // The server answered our update with version 2; the informer has not seen it yet.
/// cache.mutation(pod(2, true))?;
/// assert!(cache.get_by_key(&key).unwrap().ready);
///
/// // The informer catches up (and goes further): its copy wins from now on.
/// informer_cache.update(pod(3, false))?;
/// cache.on_add_or_update(&pod(3, false));
/// assert_eq!(cache.get_by_key(&key).unwrap().rv, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MutationCache<T: Object> {
    backing: CacheReader<T>,
    overlay: ExpirationCache<Mutated<T>>,
    include_adds: bool,
    uid: Option<UidFn<T>>,
    /// Serializes each operation's reads and writes of the overlay.
    lock: Mutex<()>,
}

impl<T: Object> fmt::Debug for MutationCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutationCache")
            .field("backing_len", &self.backing.len())
            .field("include_adds", &self.include_adds)
            .finish_non_exhaustive()
    }
}

impl<T: Object> MutationCache<T> {
    /// Overlays written objects on `backing`, usually an informer's cache.
    ///
    /// It reads `backing` (a [`CacheReader`], or the `Arc<Cache>` it reads) and never writes
    /// to it.
    pub fn new(backing: impl Into<CacheReader<T>>, options: MutationCacheOptions<T>) -> Self {
        let backing = backing.into();
        let overlay = ExpirationCache::with_ttl(options.ttl)
            .with_clock(options.clock)
            .with_max_len(options.max_len);
        Self {
            backing,
            overlay,
            include_adds: options.include_adds,
            uid: options.uid,
            lock: Mutex::new(()),
        }
    }

    /// The informer's cache this overlays.
    pub fn backing(&self) -> &CacheReader<T> {
        &self.backing
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn uid_of(&self, obj: &T) -> Option<String> {
        self.uid.as_ref().and_then(|f| f(obj))
    }

    /// Records `obj`, as the server returned it after a write, so that reads return it until
    /// the informer holds a version at least as new.
    ///
    /// Ignored when the overlay already holds a newer version of the key, or when the informer
    /// reported this object deleted (the same version, or, with a [uid](MutationCacheOptions::uid),
    /// the same uid).
    ///
    /// # Errors
    ///
    /// [`UncomparableVersion`] when `obj`'s resource version is not an integer; nothing is
    /// recorded.
    pub fn mutation(&self, obj: Arc<T>) -> Result<(), UncomparableVersion> {
        let rv = version(&*obj).map_err(|resource_version| UncomparableVersion {
            key: format!("{:?}", obj.key()),
            resource_version,
        })?;
        let uid = self.uid_of(&obj);
        let _lock = self.lock();
        if let Some(held) = self.overlay.get_by_key(&obj.key()) {
            if rv < held.rv() {
                return Ok(());
            }
            if let Mutated::Tombstone { rv: deleted, .. } = &*held
                && (rv == *deleted || same_uid(held.uid(), uid.as_deref()))
            {
                return Ok(());
            }
        }
        self.put(Mutated::Object { obj, rv, uid });
        Ok(())
    }

    /// Tells the cache that the informer added or updated `obj`: an overlaid object (or
    /// tombstone) no newer than `obj` is dropped. Call it from the informer's add and update
    /// handlers.
    pub fn on_add_or_update(&self, obj: &T) {
        let key = obj.key();
        let _lock = self.lock();
        let Some(held) = self.overlay.get_by_key(&key) else {
            return;
        };
        match version(obj) {
            Ok(rv) if rv < held.rv() => {}
            // As new or newer, or not comparable: the informer's copy wins.
            _ => {
                self.overlay.delete_key(&key);
            }
        }
    }

    /// Tells the cache that the informer deleted `obj` (its last state). An overlaid object
    /// that is no newer, or has the same uid, is dropped, and the delete is remembered until
    /// the TTL so that a late [`mutation`](Self::mutation) of the deleted object is ignored.
    /// An overlaid object that is newer, with another uid, is kept: it may be a re-create. Call
    /// it from the informer's delete handler.
    pub fn on_delete(&self, obj: &T) {
        let key = obj.key();
        let uid = self.uid_of(obj);
        let _lock = self.lock();
        let Ok(rv) = version(obj) else {
            self.overlay.delete_key(&key);
            return;
        };
        if let Some(held) = self.overlay.get_by_key(&key) {
            if rv >= held.rv() || same_uid(held.uid(), uid.as_deref()) {
                self.overlay.delete_key(&key);
            } else {
                return;
            }
        }
        self.put(Mutated::Tombstone { key, rv, uid });
    }

    /// [`on_delete`](Self::on_delete) for what an informer's delete handler receives: a
    /// tombstone without a last state drops whatever is overlaid for its key.
    pub fn on_deleted(&self, deleted: &DeletedObject<T>) {
        match deleted.object() {
            Some(obj) => self.on_delete(obj),
            None => {
                let _lock = self.lock();
                self.overlay.delete_key(&deleted.key());
            }
        }
    }

    /// The newer of the informer's object with this key and the overlaid one.
    ///
    /// When the informer does not hold the key, `None`, unless
    /// [`include_adds`](MutationCacheOptions::include_adds) is on and an object is overlaid.
    /// An overlaid object that is no newer than the informer's is dropped on the way.
    pub fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        let _lock = self.lock();
        let snapshot = self.backing.snapshot();
        match snapshot.get(key) {
            Some(backing) => match self.newer(key, backing.clone()) {
                Newer::Backing(obj) | Newer::Mutated(obj) => Some(obj),
                Newer::Deleted => None,
            },
            None if self.include_adds => match self.overlay.get_by_key(key).as_deref() {
                Some(Mutated::Object { obj, .. }) => Some(obj.clone()),
                _ => None,
            },
            None => None,
        }
    }

    /// [`get_by_key`](Self::get_by_key) with `obj`'s key.
    pub fn get(&self, obj: &T) -> Option<Arc<T>> {
        self.get_by_key(&obj.key())
    }

    /// The objects whose `String`-valued index `name` holds `value` (client-go's `ByIndex`),
    /// each the newer of the informer's and the overlaid one, ordered by key.
    ///
    /// An overlaid object replaces the informer's only if it still holds `value`; with
    /// [`include_adds`](MutationCacheOptions::include_adds), overlaid objects that hold `value`
    /// are added even where the informer's copy does not (or does not exist).
    ///
    /// # Errors
    ///
    /// As [`Snapshot::by_index`]: an unknown index, or one whose values are not strings.
    pub fn by_index(&self, name: &str, value: &str) -> Result<Vec<Arc<T>>, StoreError> {
        self.query(|reader| reader.by_index(name, value))
    }

    /// [`by_index`](Self::by_index) for an index of any value type.
    ///
    /// # Errors
    ///
    /// As [`Snapshot::by_index_value`].
    pub fn by_index_value<V: IndexValue>(
        &self,
        name: &str,
        value: &V,
    ) -> Result<Vec<Arc<T>>, StoreError> {
        self.query(|reader| reader.by_index_value(name, value))
    }

    /// [`by_index`](Self::by_index) through a typed handle. An index that is not installed reads
    /// as empty.
    pub fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + std::borrow::Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        let value = value.borrowed();
        self.query(|reader| Ok(reader.by(index, value)))
            .unwrap_or_default()
    }

    /// The keys the overlay holds now (written objects and remembered deletes), for
    /// inspection and tests.
    pub fn overlay_keys(&self) -> Vec<T::Key> {
        let _lock = self.lock();
        self.overlay.list_keys()
    }

    fn put(&self, entry: Mutated<T>) {
        // Writes to an expiration cache cannot fail.
        let _ = self.overlay.add(Arc::new(entry));
    }

    /// The newer of `backing` and the overlay's entry for `key`; drops an entry that is no
    /// newer. Call with the lock held.
    fn newer(&self, key: &T::Key, backing: Arc<T>) -> Newer<T> {
        let Some(held) = self.overlay.get_by_key(key) else {
            return Newer::Backing(backing);
        };
        match version(&*backing) {
            Ok(rv) if rv < held.rv() => match &*held {
                Mutated::Object { obj, .. } => Newer::Mutated(obj.clone()),
                // The informer saw this key deleted after the version it holds.
                Mutated::Tombstone { .. } => Newer::Deleted,
            },
            _ => {
                self.overlay.delete_key(key);
                Newer::Backing(backing)
            }
        }
    }

    /// An index query over the informer's snapshot and the overlay; `run` is the query, applied
    /// to the snapshot and to a scratch cache of the overlaid candidates.
    fn query(
        &self,
        run: impl Fn(&Snapshot<T>) -> Result<Vec<Arc<T>>, StoreError>,
    ) -> Result<Vec<Arc<T>>, StoreError> {
        let _lock = self.lock();
        let snapshot = self.backing.snapshot();
        let hits = run(&snapshot)?;
        let hit_keys: HashSet<T::Key> = hits.iter().map(|o| o.key()).collect();
        let mut out = Vec::with_capacity(hits.len());
        // Overlaid objects that answer the query only if they still match it.
        let mut candidates = Vec::new();
        for backing in hits {
            let key = backing.key();
            match self.newer(&key, backing) {
                Newer::Backing(obj) => out.push(obj),
                Newer::Mutated(obj) => candidates.push(obj),
                Newer::Deleted => {}
            }
        }
        if self.include_adds {
            for held in self.overlay.list() {
                let Mutated::Object { obj, rv, .. } = &*held else {
                    continue;
                };
                let key = obj.key();
                if hit_keys.contains(&key) {
                    continue;
                }
                match snapshot.get(&key).map(|b| version(&**b)) {
                    None => candidates.push(obj.clone()),
                    Some(Ok(backing_rv)) if backing_rv < *rv => candidates.push(obj.clone()),
                    // The informer's copy is as new or newer, and does not match.
                    Some(_) => {
                        self.overlay.delete_key(&key);
                    }
                }
            }
        }
        if !candidates.is_empty() {
            for scratch in self.scratch(candidates) {
                out.extend(run(&scratch.snapshot())?);
            }
        }
        out.sort_by_key(|o| o.key());
        Ok(out)
    }

    /// Caches holding `objects` (distinct keys) with the informer's indexes, so that a query is
    /// answered for them exactly as the informer's cache answers it. Objects that would break a
    /// unique index together go to separate caches.
    fn scratch(&self, objects: Vec<Arc<T>>) -> Vec<Cache<T>> {
        let indexers = self.backing.indexers();
        let mut caches: Vec<Cache<T>> = Vec::new();
        'objects: for obj in objects {
            for cache in &caches {
                if cache.add(obj.clone()).is_ok() {
                    continue 'objects;
                }
            }
            let cache = Cache::with_indexers(indexers.clone());
            // Alone in an empty cache, an object breaks no unique index.
            if cache.add(obj).is_ok() {
                caches.push(cache);
            }
        }
        caches
    }
}

/// An object's resource version as a number: 0 when it has none, the version itself when it is
/// not a number.
fn version<T: Object>(obj: &T) -> Result<u64, ResourceVersion> {
    match obj.resource_version() {
        None => Ok(0),
        Some(rv) if rv.as_str().is_empty() => Ok(0),
        Some(rv) => rv.as_u64().ok_or(rv),
    }
}

fn same_uid(a: Option<&str>, b: Option<&str>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fifo::DeletedFinalStateUnknown;
    use crate::object::ObjectKey;
    use crate::store::FakeClock;
    use crate::{Indexer, Indexers};

    #[derive(Debug, Clone, PartialEq)]
    struct Pod {
        name: String,
        uid: String,
        rv: String,
        labels: BTreeMap<String, String>,
    }

    impl Object for Pod {
        type Key = ObjectKey;
        fn key(&self) -> ObjectKey {
            ObjectKey::new("default", &self.name)
        }
        fn resource_version(&self) -> Option<ResourceVersion> {
            Some(self.rv.as_str().into())
        }
        fn set_resource_version(&mut self, rv: ResourceVersion) {
            self.rv = rv.to_string();
        }
    }

    fn pod(name: &str, uid: &str, rv: &str) -> Arc<Pod> {
        labelled(name, uid, rv, None)
    }

    fn labelled(name: &str, uid: &str, rv: &str, foo: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            name: name.into(),
            uid: uid.into(),
            rv: rv.into(),
            labels: foo
                .map(|v| BTreeMap::from([("foo".to_owned(), v.to_owned())]))
                .unwrap_or_default(),
        })
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("default", name)
    }

    fn store() -> Arc<Cache<Pod>> {
        Arc::new(Cache::with_indexers(Indexers::new()))
    }

    /// A store indexed `by-name` and `by-foo` (the `foo` label), as client-go's tests index.
    fn indexed_store() -> Arc<Cache<Pod>> {
        Arc::new(Cache::with_indexers(
            Indexers::new()
                .with(Indexer::new("by-name", |p: &Pod| [p.name.clone()]))
                .with(Indexer::new("by-foo", |p: &Pod| {
                    p.labels.get("foo").cloned()
                })),
        ))
    }

    fn options(include_adds: bool) -> MutationCacheOptions<Pod> {
        MutationCacheOptions::new()
            .ttl(Duration::from_secs(60))
            .include_adds(include_adds)
            .uid(|p: &Pod| Some(p.uid.clone()))
    }

    fn rv_of(obj: Option<Arc<Pod>>) -> Option<String> {
        obj.map(|p| p.rv.clone())
    }

    #[test]
    fn the_informer_catching_up_clears_the_mutation() {
        // (informer's rv, whether the mutation at rv 2 is cleared)
        for (store_rv, cleared) in [("2", true), ("3", true), ("1", false)] {
            let backing = store();
            let mc = MutationCache::new(backing.clone(), options(false));
            mc.mutation(pod("pod", "uid-1", "2")).unwrap();
            mc.on_add_or_update(&pod("pod", "uid-1", store_rv));
            // The backing store holds rv 1, older than the mutation, so a read tells whether
            // the mutation is still there.
            backing.add(pod("pod", "uid-1", "1")).unwrap();
            let expected = if cleared { "1" } else { "2" };
            assert_eq!(
                rv_of(mc.get_by_key(&key("pod"))).as_deref(),
                Some(expected),
                "informer at {store_rv}"
            );
        }
    }

    #[test]
    fn a_delete_clears_a_mutation_of_the_same_uid_or_an_older_version() {
        // (deleted uid, deleted rv, whether the mutation survives)
        for (uid, rv, survives) in [
            ("uid-1", "1", false), // same uid, even at an old version (a stale tombstone)
            ("uid-2", "3", false), // a newer version: the mutation is older than the delete
            ("uid-other", "1", true), // older and another uid: perhaps a re-create
        ] {
            let backing = store();
            let mc = MutationCache::new(backing.clone(), options(true));
            backing.add(pod("pod", "uid-1", "2")).unwrap();
            mc.mutation(pod("pod", "uid-1", "3")).unwrap();
            let deleted = pod("pod", uid, rv);
            backing.delete(deleted.clone()).unwrap();
            mc.on_delete(&deleted);
            assert_eq!(
                mc.get_by_key(&key("pod")).is_some(),
                survives,
                "delete of {uid} at {rv}"
            );
        }
    }

    #[test]
    fn a_late_mutation_of_a_deleted_object_is_ignored() {
        let backing = store();
        let mc = MutationCache::new(
            backing.clone(),
            options(true).ttl(Duration::from_secs(3600)),
        );
        backing.add(pod("pod", "uid-1", "1")).unwrap();
        // Our update to rv 2 is deleted by someone else at once; the informer sees both before
        // our update call returns.
        let updated = pod("pod", "uid-1", "2");
        backing.update(updated.clone()).unwrap();
        backing.delete(updated.clone()).unwrap();
        mc.on_add_or_update(&updated);
        mc.on_delete(&updated);
        // The stale call: the tombstone stops it.
        mc.mutation(updated).unwrap();
        assert_eq!(mc.get_by_key(&key("pod")), None);
        assert_eq!(mc.overlay_keys(), [key("pod")]); // only the tombstone
    }

    #[test]
    fn a_late_mutation_loses_to_a_re_created_object() {
        let backing = store();
        let mc = MutationCache::new(
            backing.clone(),
            options(true).ttl(Duration::from_secs(3600)),
        );
        backing.add(pod("pod", "uid-1", "1")).unwrap();
        let updated = pod("pod", "uid-1", "2");
        backing.update(updated.clone()).unwrap();
        backing.delete(updated.clone()).unwrap();
        let replacement = pod("pod", "uid-2", "3");
        backing.add(replacement.clone()).unwrap();
        mc.on_add_or_update(&updated);
        mc.on_delete(&updated);
        mc.on_add_or_update(&replacement);
        mc.mutation(updated).unwrap();
        assert_eq!(mc.get_by_key(&key("pod")), Some(replacement));
        assert!(mc.overlay_keys().is_empty());
    }

    #[test]
    fn a_delete_clears_a_created_object_from_index_reads() {
        let mc = MutationCache::new(indexed_store(), options(true));
        // Created by us; the informer has not seen it.
        mc.mutation(pod("pod", "uid-1", "2")).unwrap();
        assert_eq!(mc.by_index("by-name", "pod").unwrap().len(), 1);
        // The informer reports it deleted (at an older version, same uid).
        mc.on_delete(&pod("pod", "uid-1", "1"));
        assert!(mc.by_index("by-name", "pod").unwrap().is_empty());
    }

    #[test]
    fn index_reads_apply_the_query_to_the_mutation() {
        /// (informer rv, informer foo, mutation rv, mutation foo, queried foo, include adds,
        /// expected "rv/foo" list)
        type Case = (
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            bool,
            &'static [&'static str],
        );
        let cases: [Case; 10] = [
            ("1", "a", "2", "a", "a", false, &["2/a"]),
            ("1", "a", "2", "a", "a", true, &["2/a"]),
            ("1", "a", "2", "b", "a", false, &[]),
            ("1", "a", "2", "b", "a", true, &[]),
            ("1", "a", "2", "b", "b", false, &[]),
            ("1", "a", "2", "b", "b", true, &["2/b"]),
            ("2", "a", "1", "a", "a", false, &["2/a"]),
            ("2", "a", "1", "a", "a", true, &["2/a"]),
            ("2", "b", "1", "a", "a", false, &[]),
            ("2", "b", "1", "a", "a", true, &[]),
        ];
        for (i, (brv, bfoo, mrv, mfoo, query, adds, want)) in cases.into_iter().enumerate() {
            let backing = indexed_store();
            backing
                .add(labelled("testpod", "uid-1", brv, Some(bfoo)))
                .unwrap();
            let mc = MutationCache::new(backing, options(adds));
            mc.mutation(labelled("testpod", "uid-1", mrv, Some(mfoo)))
                .unwrap();
            let got: Vec<String> = mc
                .by_index("by-foo", query)
                .unwrap()
                .iter()
                .map(|p| format!("{}/{}", p.rv, p.labels["foo"]))
                .collect();
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn typed_and_valued_index_reads_merge_the_same_way() {
        const FOO: Index<Pod, String> = Index::new("by-foo");
        let backing = indexed_store();
        backing.add(labelled("a", "u-a", "1", Some("x"))).unwrap();
        backing.add(labelled("b", "u-b", "1", Some("x"))).unwrap();
        let mc = MutationCache::new(backing, options(true));
        mc.mutation(labelled("a", "u-a", "2", Some("y"))).unwrap(); // moves out of x
        mc.mutation(labelled("c", "u-c", "5", Some("x"))).unwrap(); // created into x
        let names = |v: Vec<Arc<Pod>>| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(mc.by(FOO, "x")), ["b", "c"]);
        assert_eq!(
            names(mc.by_index_value("by-foo", &"y".to_owned()).unwrap()),
            ["a"]
        );
        assert!(mc.by(Index::<Pod, String>::new("nope"), "x").is_empty());
        assert!(matches!(
            mc.by_index("nope", "x"),
            Err(StoreError::UnknownIndex { .. })
        ));
    }

    #[test]
    fn without_include_adds_a_key_missing_from_the_informer_reads_as_missing() {
        let backing = indexed_store();
        let mc = MutationCache::new(backing.clone(), options(false));
        mc.mutation(pod("new", "uid-1", "5")).unwrap();
        assert_eq!(mc.get_by_key(&key("new")), None);
        assert!(mc.by_index("by-name", "new").unwrap().is_empty());
        // Once the informer has it (older), the mutation shows.
        backing.add(pod("new", "uid-1", "4")).unwrap();
        assert_eq!(rv_of(mc.get_by_key(&key("new"))).as_deref(), Some("5"));
    }

    #[test]
    fn an_older_mutation_never_replaces_a_newer_one() {
        let backing = store();
        backing.add(pod("pod", "uid-1", "1")).unwrap();
        let mc = MutationCache::new(backing, options(false));
        mc.mutation(pod("pod", "uid-1", "5")).unwrap();
        mc.mutation(pod("pod", "uid-1", "3")).unwrap();
        assert_eq!(rv_of(mc.get_by_key(&key("pod"))).as_deref(), Some("5"));
        mc.mutation(pod("pod", "uid-1", "6")).unwrap();
        assert_eq!(rv_of(mc.get(&pod("pod", "", ""))).as_deref(), Some("6"));
    }

    #[test]
    fn a_read_drops_a_mutation_the_informer_has_passed() {
        let backing = store();
        backing.add(pod("pod", "uid-1", "1")).unwrap();
        let mc = MutationCache::new(backing.clone(), options(false));
        mc.mutation(pod("pod", "uid-1", "2")).unwrap();
        backing.update(pod("pod", "uid-1", "2")).unwrap();
        assert_eq!(mc.overlay_keys(), [key("pod")]);
        assert_eq!(rv_of(mc.get_by_key(&key("pod"))).as_deref(), Some("2"));
        assert!(mc.overlay_keys().is_empty());
    }

    #[test]
    fn a_mutation_expires_after_the_ttl() {
        let clock = Arc::new(FakeClock::new());
        let backing = store();
        backing.add(pod("pod", "uid-1", "1")).unwrap();
        let mc = MutationCache::new(
            backing,
            options(false)
                .ttl(Duration::from_secs(300))
                .clock(clock.clone()),
        );
        mc.mutation(pod("pod", "uid-1", "2")).unwrap();
        clock.advance(Duration::from_secs(300));
        assert_eq!(rv_of(mc.get_by_key(&key("pod"))).as_deref(), Some("2"));
        clock.advance(Duration::from_secs(1));
        assert_eq!(rv_of(mc.get_by_key(&key("pod"))).as_deref(), Some("1"));
        assert!(mc.overlay_keys().is_empty());
    }

    #[test]
    fn the_overlay_is_bounded() {
        let mc = MutationCache::new(store(), options(true).max_len(2));
        for name in ["a", "b", "c"] {
            mc.mutation(pod(name, name, "1")).unwrap();
        }
        let mut keys = mc.overlay_keys();
        keys.sort();
        assert_eq!(keys, [key("b"), key("c")]);
        assert_eq!(mc.get_by_key(&key("a")), None);
    }

    #[test]
    fn versions_that_are_not_integers_never_panic() {
        let backing = store();
        let mc = MutationCache::new(backing.clone(), options(true));
        let err = mc.mutation(pod("pod", "uid-1", "abc")).unwrap_err();
        assert_eq!(err.resource_version.as_str(), "abc");
        assert!(err.to_string().contains("not an integer"));
        assert!(mc.overlay_keys().is_empty());
        // The informer's copy with such a version wins, and the overlay forgets the key.
        mc.mutation(pod("pod", "uid-1", "7")).unwrap();
        backing.add(pod("pod", "uid-1", "x9")).unwrap();
        assert_eq!(rv_of(mc.get_by_key(&key("pod"))).as_deref(), Some("x9"));
        assert!(mc.overlay_keys().is_empty());
        mc.mutation(pod("pod", "uid-1", "8")).unwrap();
        mc.on_add_or_update(&pod("pod", "uid-1", "x10"));
        assert!(mc.overlay_keys().is_empty());
        mc.mutation(pod("pod", "uid-1", "9")).unwrap();
        mc.on_delete(&pod("pod", "uid-1", "x11"));
        assert!(mc.overlay_keys().is_empty());
        // A missing (empty) version counts as 0.
        mc.mutation(pod("pod", "uid-1", "")).unwrap();
        assert_eq!(mc.overlay_keys(), [key("pod")]);
    }

    #[test]
    fn a_tombstone_newer_than_the_informer_hides_the_key() {
        let backing = store();
        backing.add(pod("pod", "uid-1", "3")).unwrap();
        let mc = MutationCache::new(backing.clone(), options(false));
        mc.on_delete(&pod("pod", "uid-1", "4"));
        assert_eq!(mc.get_by_key(&key("pod")), None);
        // A re-create the informer has seen, newer than the delete, wins.
        backing.update(pod("pod", "uid-2", "5")).unwrap();
        assert_eq!(rv_of(mc.get_by_key(&key("pod"))).as_deref(), Some("5"));
        assert!(mc.overlay_keys().is_empty());
    }

    #[test]
    fn a_tombstone_without_a_last_state_drops_the_key() {
        let mc = MutationCache::new(store(), options(true));
        mc.mutation(pod("pod", "uid-1", "3")).unwrap();
        mc.on_deleted(&DeletedObject::Tombstone(DeletedFinalStateUnknown {
            key: key("pod"),
            object: None,
        }));
        assert!(mc.overlay_keys().is_empty());
        mc.mutation(pod("pod", "uid-1", "3")).unwrap();
        mc.on_deleted(&DeletedObject::Object(pod("pod", "uid-1", "3")));
        assert_eq!(mc.get_by_key(&key("pod")), None);
    }

    #[test]
    fn without_uids_only_versions_decide() {
        let mc = MutationCache::new(store(), MutationCacheOptions::new().include_adds(true));
        mc.mutation(pod("pod", "uid-1", "3")).unwrap();
        // Older, and the uid is not read: the mutation stays.
        mc.on_delete(&pod("pod", "uid-1", "1"));
        assert_eq!(rv_of(mc.get_by_key(&key("pod"))).as_deref(), Some("3"));
    }

    /// The cache wired to an informer's handlers, as a controller uses it: a write is visible
    /// at once, the informer catching up clears it, and a delete the informer sees stops a late
    /// write of the deleted object.
    #[tokio::test(start_paused = true)]
    async fn wired_to_an_informer() {
        use tokio_util::sync::CancellationToken;

        use crate::informer::{HandlerFns, SharedIndexInformer};
        use crate::source::MemorySource;
        use crate::test_support::until;

        let unversioned = |name: &str, foo: &str| Pod {
            name: name.into(),
            uid: format!("uid-{name}"),
            rv: String::new(),
            labels: BTreeMap::from([("foo".to_owned(), foo.to_owned())]),
        };

        let source = MemorySource::new();
        let informer =
            SharedIndexInformer::builder_with_indexers(source.clone(), Indexers::new()).build();
        let mc = Arc::new(MutationCache::new(informer.cache().clone(), options(true)));
        let (a, u, d) = (mc.clone(), mc.clone(), mc.clone());
        informer
            .add_event_handler(
                HandlerFns::new()
                    .added(move |obj, _| a.on_add_or_update(&obj))
                    .updated(move |_, new| u.on_add_or_update(&new))
                    .deleted(move |deleted| d.on_deleted(&deleted)),
            )
            .unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let (informer, cancel) = (informer.clone(), cancel.clone());
            async move { informer.run(cancel).await }
        });
        source.put(unversioned("web", "old"));
        informer.wait_for_sync().await.unwrap();
        until("the informer holds web", || {
            informer.cache().get_by_key(&key("web")).is_some()
        })
        .await;

        // Our write: the server's reply goes to the overlay before the informer sees it.
        let rv = source.put(unversioned("web", "new"));
        let written = Arc::new(Pod {
            rv: rv.to_string(),
            ..unversioned("web", "new")
        });
        mc.mutation(written.clone()).unwrap();
        assert_eq!(mc.get_by_key(&key("web")), Some(written.clone()));
        until("the informer catches up", || mc.overlay_keys().is_empty()).await;
        assert_eq!(mc.get_by_key(&key("web")), Some(written.clone()));

        // Deleted by someone else; our late write of the deleted object is ignored.
        source.delete(&key("web")).unwrap();
        until("the informer sees the delete", || {
            informer.cache().get_by_key(&key("web")).is_none() && !mc.overlay_keys().is_empty()
        })
        .await;
        mc.mutation(written).unwrap();
        assert_eq!(mc.get_by_key(&key("web")), None);
        cancel.cancel();
        task.await.unwrap();
    }
}
