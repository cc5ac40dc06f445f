//! [`ExpirationCache`]: a [`Store`] whose entries expire (client-go's `ExpirationCache` and
//! `TTLStore`), with the [`Clock`] it reads time from.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Store, StoreError};
use crate::object::{Object, ResourceVersion};

/// Where a time-based structure reads the time: [`RealClock`] in programs, [`FakeClock`] in tests,
/// so that a test of a five-minute TTL runs in microseconds (client-go's `clock.Clock`).
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// The system's monotonic clock ([`Instant::now`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, for tests. Share it through an `Arc`: the structure
/// under test reads it, the test [`advance`](Self::advance)s it.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cache_core::store::{Clock, FakeClock};
///
/// let clock = Arc::new(FakeClock::new());
/// let start = clock.now();
/// clock.advance(Duration::from_secs(300));
/// assert_eq!(clock.now() - start, Duration::from_secs(300));
/// ```
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<Instant>,
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeClock {
    /// A clock stopped at the current instant.
    pub fn new() -> Self {
        Self::at(Instant::now())
    }

    /// A clock stopped at `now`.
    pub fn at(now: Instant) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        *now += by;
    }

    /// Sets the clock to `now`, forward or backward.
    pub fn set(&self, now: Instant) {
        *self.lock() = now;
    }

    fn lock(&self) -> MutexGuard<'_, Instant> {
        self.now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.lock()
    }
}

/// An object held by an [`ExpirationCache`], with the instant it was written (client-go's
/// `TimestampedEntry`).
pub struct TimestampedEntry<T: Object> {
    /// The object.
    pub object: Arc<T>,
    /// Its key.
    pub key: T::Key,
    /// When it was last added, updated or replaced, by the cache's clock.
    pub timestamp: Instant,
}

impl<T: Object> Clone for TimestampedEntry<T> {
    fn clone(&self) -> Self {
        Self {
            object: self.object.clone(),
            key: self.key.clone(),
            timestamp: self.timestamp,
        }
    }
}

impl<T: Object + fmt::Debug> fmt::Debug for TimestampedEntry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimestampedEntry")
            .field("object", &self.object)
            .field("key", &self.key)
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// Decides whether an entry of an [`ExpirationCache`] has expired (client-go's
/// `ExpirationPolicy`). The decision is per entry, so it can depend on the object: see
/// [`ExpirationCache`] for a policy written as a closure.
///
/// It is called with the cache's lock held: it must not call back into the cache.
pub trait ExpirationPolicy<T: Object>: Send + Sync + 'static {
    /// Whether `entry` has expired at `now`.
    fn is_expired(&self, entry: &TimestampedEntry<T>, now: Instant) -> bool;
}

impl<T, F> ExpirationPolicy<T> for F
where
    T: Object,
    F: Fn(&TimestampedEntry<T>, Instant) -> bool + Send + Sync + 'static,
{
    fn is_expired(&self, entry: &TimestampedEntry<T>, now: Instant) -> bool {
        self(entry, now)
    }
}

/// The same time to live for every object (client-go's `TTLPolicy`): an entry expires once
/// strictly more than `ttl` has passed since it was written. A zero `ttl` never expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    ttl: Duration,
}

impl TtlPolicy {
    /// Entries live for `ttl`; `Duration::ZERO` means forever.
    pub const fn new(ttl: Duration) -> Self {
        Self { ttl }
    }

    /// The time to live.
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether something written at `written` has expired at `now`.
    pub fn is_expired_at(&self, written: Instant, now: Instant) -> bool {
        !self.ttl.is_zero() && now.saturating_duration_since(written) > self.ttl
    }
}

impl<T: Object> ExpirationPolicy<T> for TtlPolicy {
    fn is_expired(&self, entry: &TimestampedEntry<T>, now: Instant) -> bool {
        self.is_expired_at(entry.timestamp, now)
    }
}

/// What an [`ExpirationCache`] calls with each entry it finds expired.
type OnExpired<T> = Box<dyn Fn(&TimestampedEntry<T>) + Send + Sync>;

/// A [`Store`] whose entries expire (client-go's `ExpirationCache`; with a [`TtlPolicy`], its
/// `TTLStore`).
///
/// - Every write stamps the object with the clock's time: [`add`](Store::add) and
///   [`update`](Store::update) (the same operation) restart its life; a
///   [`replace`](Store::replace) stamps every listed object with one instant.
/// - Expiry is lazy: nothing runs in the background. A read that meets an expired entry
///   ([`get`](Store::get), [`get_by_key`](Store::get_by_key), [`list`](Store::list),
///   [`list_keys`](Store::list_keys), [`len`](Self::len)) removes it and does not return it.
///   Unlike client-go, whose `ListKeys` still lists expired keys, every read here agrees.
///   [`remove_expired`](Self::remove_expired) sweeps eagerly.
/// - [`on_expired`](Self::on_expired) is told about every entry removed because it expired,
///   after the cache's lock is released (so it may read or write this cache).
/// - [`with_max_len`](Self::with_max_len) bounds the size: writing a new key into a full
///   cache first drops expired entries, then the least recently written one.
///
/// The clock is injectable ([`with_clock`](Self::with_clock)), so tests need not wait.
///
/// # Examples
///
/// A fixed time to live, on a fake clock:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cache_core::{Object, Store};
/// use cache_core::store::{ExpirationCache, FakeClock};
///
/// #[derive(Debug)]
/// struct Token { user: String }
/// impl Object for Token {
///     type Key = String;
///     fn key(&self) -> String { self.user.clone() }
/// }
///
/// let clock = Arc::new(FakeClock::new());
/// let tokens = ExpirationCache::with_ttl(Duration::from_secs(60)).with_clock(clock.clone());
/// tokens.add(Arc::new(Token { user: "ana".into() }))?;
/// clock.advance(Duration::from_secs(60));
/// assert!(tokens.get_by_key(&"ana".to_string()).is_some()); // 60 s old: still alive
/// clock.advance(Duration::from_secs(1));
/// assert!(tokens.get_by_key(&"ana".to_string()).is_none()); // expired, and removed
/// # Ok::<(), cache_core::StoreError>(())
/// ```
///
/// A time to live per object, from a closure:
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, Instant};
/// use cache_core::{Object, Store};
/// use cache_core::store::{ExpirationCache, FakeClock, TimestampedEntry};
///
/// #[derive(Debug)]
/// struct Lease { name: String, seconds: u64 }
/// impl Object for Lease {
///     type Key = String;
///     fn key(&self) -> String { self.name.clone() }
/// }
///
/// let clock = Arc::new(FakeClock::new());
/// let leases = ExpirationCache::new(|e: &TimestampedEntry<Lease>, now: Instant| {
///     now.saturating_duration_since(e.timestamp) > Duration::from_secs(e.object.seconds)
/// })
/// .with_clock(clock.clone());
/// leases.add(Arc::new(Lease { name: "short".into(), seconds: 10 }))?;
/// leases.add(Arc::new(Lease { name: "long".into(), seconds: 100 }))?;
/// clock.advance(Duration::from_secs(11));
/// assert_eq!(leases.list_keys(), ["long"]);
/// # Ok::<(), cache_core::StoreError>(())
/// ```
pub struct ExpirationCache<T: Object> {
    state: Mutex<State<T>>,
    policy: Box<dyn ExpirationPolicy<T>>,
    clock: Arc<dyn Clock>,
    on_expired: Option<OnExpired<T>>,
    max_len: Option<usize>,
}

struct State<T: Object> {
    entries: HashMap<T::Key, Held<T>, crate::engine::Hasher>,
    /// The write sequence: orders entries by how recently they were written.
    seq: u64,
    last_rv: Option<ResourceVersion>,
}

struct Held<T: Object> {
    entry: TimestampedEntry<T>,
    seq: u64,
}

impl<T: Object> fmt::Debug for ExpirationCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpirationCache")
            .field("held", &self.lock().entries.len())
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl<T: Object> ExpirationCache<T> {
    /// An empty cache whose entries expire by `policy`, on the [`RealClock`] (client-go's
    /// `NewExpirationStore`).
    pub fn new(policy: impl ExpirationPolicy<T>) -> Self {
        Self {
            state: Mutex::new(State {
                entries: HashMap::default(),
                seq: 0,
                last_rv: None,
            }),
            policy: Box::new(policy),
            clock: Arc::new(RealClock),
            on_expired: None,
            max_len: None,
        }
    }

    /// An empty cache whose entries live for `ttl` ([`TtlPolicy`]; client-go's `NewTTLStore`).
    pub fn with_ttl(ttl: Duration) -> Self {
        Self::new(TtlPolicy::new(ttl))
    }

    /// Reads time from `clock` instead of the real clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Calls `f` with every entry removed because it expired (client-go's fake store reports
    /// them on a channel), outside the cache's lock.
    #[must_use]
    pub fn on_expired(mut self, f: impl Fn(&TimestampedEntry<T>) + Send + Sync + 'static) -> Self {
        self.on_expired = Some(Box::new(f));
        self
    }

    /// Holds at most `max_len` objects (at least one): writing a new key into a full cache drops
    /// the expired entries, then, if it is still full, the least recently written entry. That
    /// write scans every entry, so it costs O(`max_len`): meant for small bounds.
    #[must_use]
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = Some(max_len.max(1));
        self
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every change completes without calling code that could panic halfway, except the
        // policy, which only reads: a poisoned lock leaves a consistent state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current instant, by the cache's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Removes the object with this key and returns it, expired or not; `None` if absent.
    pub fn delete_key(&self, key: &T::Key) -> Option<Arc<T>> {
        self.lock().entries.remove(key).map(|h| h.entry.object)
    }

    /// Removes every expired entry now; returns how many.
    pub fn remove_expired(&self) -> usize {
        let now = self.clock.now();
        let mut state = self.lock();
        let expired = self.take_expired(&mut state, now);
        drop(state);
        let n = expired.len();
        self.report(expired);
        n
    }

    /// How many live objects are held (expired entries are removed on the way).
    pub fn len(&self) -> usize {
        self.read_all(|state| state.entries.len())
    }

    /// Whether no live object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live entry with this key, with its timestamp; an expired one is removed.
    pub fn entry_by_key(&self, key: &T::Key) -> Option<TimestampedEntry<T>> {
        let now = self.clock.now();
        let mut state = self.lock();
        let held = state.entries.get(key)?;
        if self.policy.is_expired(&held.entry, now) {
            let expired = state.entries.remove(key).map(|h| h.entry);
            drop(state);
            self.report(expired);
            return None;
        }
        Some(held.entry.clone())
    }

    /// Runs `read` on the state after removing every expired entry.
    fn read_all<R>(&self, read: impl FnOnce(&State<T>) -> R) -> R {
        let now = self.clock.now();
        let mut state = self.lock();
        let expired = self.take_expired(&mut state, now);
        let out = read(&state);
        drop(state);
        self.report(expired);
        out
    }

    fn take_expired(&self, state: &mut State<T>, now: Instant) -> Vec<TimestampedEntry<T>> {
        let keys: Vec<T::Key> = state
            .entries
            .iter()
            .filter(|(_, h)| self.policy.is_expired(&h.entry, now))
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter()
            .filter_map(|k| state.entries.remove(k).map(|h| h.entry))
            .collect()
    }

    fn report(&self, expired: impl IntoIterator<Item = TimestampedEntry<T>>) {
        if let Some(f) = &self.on_expired {
            for entry in expired {
                f(&entry);
            }
        }
    }

    /// Writes `object` stamped `now`; returns what expired to make room.
    fn put(&self, state: &mut State<T>, object: Arc<T>, now: Instant) -> Vec<TimestampedEntry<T>> {
        let key = object.key();
        let mut expired = Vec::new();
        if let Some(max) = self.max_len
            && state.entries.len() >= max
            && !state.entries.contains_key(&key)
        {
            expired = self.take_expired(state, now);
            if state.entries.len() >= max {
                let oldest = state
                    .entries
                    .iter()
                    .min_by_key(|(_, h)| h.seq)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    state.entries.remove(&oldest);
                }
            }
        }
        state.seq += 1;
        let seq = state.seq;
        state.entries.insert(
            key.clone(),
            Held {
                entry: TimestampedEntry {
                    object,
                    key,
                    timestamp: now,
                },
                seq,
            },
        );
        expired
    }

    fn write(&self, object: Arc<T>) {
        let now = self.clock.now();
        let mut state = self.lock();
        if let Some(rv) = object.resource_version() {
            state.last_rv = Some(rv);
        }
        let expired = self.put(&mut state, object, now);
        drop(state);
        self.report(expired);
    }
}

impl<T: Object> Store<T> for ExpirationCache<T> {
    /// Inserts `obj` stamped with the current time, or replaces the object with its key.
    fn add(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.write(obj);
        Ok(())
    }

    /// The same as [`add`](Store::add): the object's life restarts.
    fn update(&self, obj: Arc<T>) -> Result<(), StoreError> {
        self.write(obj);
        Ok(())
    }

    fn delete(&self, obj: Arc<T>) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let Some(rv) = obj.resource_version() {
            state.last_rv = Some(rv);
        }
        state.entries.remove(&obj.key());
        Ok(())
    }

    fn list(&self) -> Vec<Arc<T>> {
        self.read_all(|state| {
            state
                .entries
                .values()
                .map(|h| h.entry.object.clone())
                .collect()
        })
    }

    fn list_keys(&self) -> Vec<T::Key> {
        self.read_all(|state| state.entries.keys().cloned().collect())
    }

    fn get_by_key(&self, key: &T::Key) -> Option<Arc<T>> {
        self.entry_by_key(key).map(|e| e.object)
    }

    /// Replaces the whole content with `items`, all stamped with one instant.
    fn replace(
        &self,
        items: Vec<Arc<T>>,
        resource_version: Option<ResourceVersion>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        state.entries.clear();
        let mut expired = Vec::new();
        for obj in items {
            expired.extend(self.put(&mut state, obj, now));
        }
        if resource_version.is_some() {
            state.last_rv = resource_version;
        }
        drop(state);
        self.report(expired);
        Ok(())
    }

    /// Nothing to re-deliver: a no-op, as in client-go.
    fn resync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn bookmark(&self, resource_version: ResourceVersion) {
        self.lock().last_rv = Some(resource_version);
    }

    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.lock().last_rv.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Obj {
        name: String,
        val: &'static str,
        rv: u64,
    }

    impl Object for Obj {
        type Key = String;
        fn key(&self) -> String {
            self.name.clone()
        }
        fn resource_version(&self) -> Option<ResourceVersion> {
            Some(self.rv.into())
        }
    }

    fn o(name: &str, val: &'static str) -> Arc<Obj> {
        Arc::new(Obj {
            name: name.into(),
            val,
            rv: 1,
        })
    }

    fn key(name: &str) -> String {
        name.to_owned()
    }

    /// client-go's `FakeExpirationPolicy`: everything expires except the keys in the set.
    fn expire_all_but(never: Arc<Mutex<HashSet<String>>>) -> impl ExpirationPolicy<Obj> {
        move |e: &TimestampedEntry<Obj>, _now: Instant| !never.lock().unwrap().contains(&e.key)
    }

    /// A cache that records the keys it expires.
    fn recording(
        policy: impl ExpirationPolicy<Obj>,
    ) -> (ExpirationCache<Obj>, Arc<Mutex<Vec<String>>>) {
        let expired = Arc::new(Mutex::new(Vec::new()));
        let sink = expired.clone();
        let cache = ExpirationCache::new(policy)
            .on_expired(move |e: &TimestampedEntry<Obj>| sink.lock().unwrap().push(e.key.clone()));
        (cache, expired)
    }

    #[test]
    fn an_expired_entry_is_removed_when_read() {
        let (cache, expired) = recording(|_: &TimestampedEntry<Obj>, _: Instant| true);
        cache.add(o("foo", "bar")).unwrap();
        assert_eq!(cache.get(&o("foo", "")), None);
        assert_eq!(*expired.lock().unwrap(), ["foo"]);
        // Gone for good: a second read reports nothing more.
        assert_eq!(cache.get_by_key(&key("foo")), None);
        assert_eq!(expired.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_re_added_item_is_not_clobbered() {
        let never = Arc::new(Mutex::new(HashSet::new()));
        let (cache, expired) = recording(expire_all_but(never.clone()));
        cache.add(o("foo", "bar")).unwrap();
        // This read expires foo.
        assert_eq!(cache.get_by_key(&key("foo")), None);
        assert_eq!(*expired.lock().unwrap(), ["foo"]);
        cache.add(o("foo", "different_bar")).unwrap();
        never.lock().unwrap().insert(key("foo"));
        assert_eq!(
            cache.get_by_key(&key("foo")).map(|o| o.val),
            Some("different_bar")
        );
        assert_eq!(expired.lock().unwrap().len(), 1);
    }

    #[test]
    fn list_returns_only_the_live_entries() {
        let never = Arc::new(Mutex::new(HashSet::from([key("foo2")])));
        let (cache, expired) = recording(expire_all_but(never));
        for name in ["foo1", "foo2", "foo3"] {
            cache.add(o(name, "v")).unwrap();
        }
        assert_eq!(cache.list(), [o("foo2", "v")]);
        let mut gone = expired.lock().unwrap().clone();
        gone.sort();
        assert_eq!(gone, ["foo1", "foo3"]);
        assert_eq!(cache.list_keys(), ["foo2"]);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn list_keys_expires_too() {
        let (cache, expired) = recording(|e: &TimestampedEntry<Obj>, _: Instant| e.key == "old");
        cache.add(o("old", "v")).unwrap();
        cache.add(o("new", "v")).unwrap();
        assert_eq!(cache.list_keys(), ["new"]);
        assert_eq!(*expired.lock().unwrap(), ["old"]);
    }

    #[test]
    fn ttl_policy_expires_strictly_after_the_ttl() {
        let policy = TtlPolicy::new(Duration::from_secs(30));
        let clock = FakeClock::new();
        let entry = |timestamp| TimestampedEntry {
            object: o("foo", "bar"),
            key: key("foo"),
            timestamp,
        };
        let written = clock.now();
        let at = |secs| written + Duration::from_secs(secs);
        let is_expired =
            |p: &TtlPolicy, now| ExpirationPolicy::<Obj>::is_expired(p, &entry(written), now);
        assert!(
            !is_expired(&policy, at(30)),
            "exactly the ttl is not expired"
        );
        assert!(!is_expired(&policy, at(0)));
        assert!(is_expired(&policy, at(31)));
        // Time that runs backwards (a clock set back) never expires anything.
        assert!(!policy.is_expired_at(at(5), at(0)));
        // A zero ttl never expires.
        let forever = TtlPolicy::new(Duration::ZERO);
        assert!(!is_expired(&forever, at(1_000_000)));
    }

    #[test]
    fn ttl_store_on_a_fake_clock() {
        let clock = Arc::new(FakeClock::new());
        let cache = ExpirationCache::with_ttl(Duration::from_secs(30)).with_clock(clock.clone());
        cache.add(o("a", "1")).unwrap();
        clock.advance(Duration::from_secs(20));
        cache.add(o("b", "1")).unwrap();
        // An update restarts a's life.
        cache.update(o("a", "2")).unwrap();
        clock.advance(Duration::from_secs(20));
        assert_eq!(cache.get_by_key(&key("a")).map(|o| o.val), Some("2"));
        assert_eq!(cache.get_by_key(&key("b")).map(|o| o.val), Some("1"));
        clock.advance(Duration::from_secs(11));
        assert_eq!(cache.get_by_key(&key("a")), None);
        assert_eq!(cache.get_by_key(&key("b")), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn replace_stamps_every_object_with_one_instant() {
        let clock = Arc::new(FakeClock::new());
        let cache = ExpirationCache::with_ttl(Duration::from_secs(10)).with_clock(clock.clone());
        cache.add(o("gone", "x")).unwrap();
        clock.advance(Duration::from_secs(5));
        cache
            .replace(vec![o("a", "1"), o("b", "1")], Some("42".into()))
            .unwrap();
        assert_eq!(cache.get_by_key(&key("gone")), None);
        assert_eq!(cache.last_sync_resource_version(), Some("42".into()));
        let stamps: HashSet<Instant> = ["a", "b"]
            .iter()
            .map(|n| cache.entry_by_key(&key(n)).unwrap().timestamp)
            .collect();
        assert_eq!(stamps, HashSet::from([clock.now()]));
        clock.advance(Duration::from_secs(11));
        assert!(cache.list().is_empty());
    }

    #[test]
    fn delete_resync_and_bookmark() {
        let cache = ExpirationCache::with_ttl(Duration::ZERO);
        cache.add(o("a", "1")).unwrap();
        cache.add(o("b", "1")).unwrap();
        cache.delete(o("a", "")).unwrap();
        assert_eq!(cache.list_keys(), ["b"]);
        assert_eq!(cache.delete_key(&key("b")).map(|o| o.val), Some("1"));
        assert_eq!(cache.delete_key(&key("b")), None);
        cache.resync().unwrap();
        cache.bookmark("9".into());
        assert_eq!(cache.last_sync_resource_version(), Some("9".into()));
        cache.add(o("c", "1")).unwrap(); // its version is 1
        assert_eq!(cache.last_sync_resource_version(), Some("1".into()));
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_the_least_recently_written() {
        let clock = Arc::new(FakeClock::new());
        let cache = ExpirationCache::with_ttl(Duration::from_secs(10))
            .with_clock(clock.clone())
            .with_max_len(2);
        cache.add(o("a", "1")).unwrap();
        cache.add(o("b", "1")).unwrap();
        cache.update(o("a", "2")).unwrap(); // a is now the most recently written
        cache.add(o("c", "1")).unwrap();
        let mut keys = cache.list_keys();
        keys.sort();
        assert_eq!(keys, ["a", "c"]);
        // Overwriting a held key never evicts.
        cache.add(o("c", "2")).unwrap();
        assert_eq!(cache.len(), 2);
        // An expired entry makes room before a live one is dropped.
        clock.advance(Duration::from_secs(5));
        cache.update(o("a", "3")).unwrap();
        clock.advance(Duration::from_secs(6)); // c (written at 0) expired, a (at 5) did not
        cache.add(o("d", "1")).unwrap();
        let mut keys = cache.list_keys();
        keys.sort();
        assert_eq!(keys, ["a", "d"]);
    }

    #[test]
    fn the_expiry_callback_may_use_the_cache() {
        let cache = Arc::new(std::sync::OnceLock::<ExpirationCache<Obj>>::new());
        let inner = cache.clone();
        let built =
            ExpirationCache::new(|e: &TimestampedEntry<Obj>, _: Instant| e.object.val == "stale")
                .on_expired(move |e: &TimestampedEntry<Obj>| {
                    // Re-fetch: write a fresh copy back, as a refreshing cache would.
                    if let Some(c) = inner.get() {
                        c.add(o(&e.key, "fresh")).unwrap();
                    }
                });
        cache.set(built).unwrap();
        let cache = cache.get().unwrap();
        cache.add(o("a", "stale")).unwrap();
        assert_eq!(cache.get_by_key(&key("a")), None);
        assert_eq!(cache.get_by_key(&key("a")).map(|o| o.val), Some("fresh"));
    }

    #[test]
    fn usable_as_a_dyn_store() {
        let store: Box<dyn Store<Obj>> =
            Box::new(ExpirationCache::with_ttl(Duration::from_secs(60)));
        store.add(o("a", "1")).unwrap();
        assert_eq!(store.list(), [o("a", "1")]);
    }
}
