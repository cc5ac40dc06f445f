//! [`MutationDetector`]: finds cached objects that were changed in place (client-go's
//! `CacheMutationDetector`), for tests and debug builds.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::expiration::{Clock, RealClock, TtlPolicy};
use crate::object::Object;

/// One object whose serialized form changed since it was added to a [`MutationDetector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutatedObject<K> {
    /// The object's key.
    pub key: K,
    /// Its serialized form when it was added (JSON).
    pub before: String,
    /// Its serialized form now (JSON).
    pub after: String,
}

/// What a [`MutationDetector`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MutationDetectorError<K> {
    /// Cached objects were changed in place.
    Mutated {
        /// The detector's name.
        detector: String,
        /// Every changed object, ordered by key.
        objects: Vec<MutatedObject<K>>,
    },
    /// An object could not be serialized, so it cannot be watched.
    Serialize {
        /// The detector's name.
        detector: String,
        /// The object's key.
        key: K,
        /// What the serializer said.
        message: String,
    },
}

impl<K: fmt::Debug> MutationDetectorError<K> {
    /// The keys of the objects concerned.
    pub fn keys(&self) -> Vec<&K> {
        match self {
            MutationDetectorError::Mutated { objects, .. } => {
                objects.iter().map(|o| &o.key).collect()
            }
            MutationDetectorError::Serialize { key, .. } => vec![key],
        }
    }
}

impl<K: fmt::Debug> fmt::Display for MutationDetectorError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MutationDetectorError::Mutated { detector, objects } => {
                write!(
                    f,
                    "mutation detector {detector:?}: {} cached object(s) changed in place:",
                    objects.len()
                )?;
                for o in objects {
                    write!(f, " {:?} (was {}, now {});", o.key, o.before, o.after)?;
                }
                Ok(())
            }
            MutationDetectorError::Serialize {
                detector,
                key,
                message,
            } => write!(
                f,
                "mutation detector {detector:?}: cannot serialize {key:?}: {message}"
            ),
        }
    }
}

impl<K: fmt::Debug> std::error::Error for MutationDetectorError<K> {}

/// Finds cached objects that were changed in place through interior mutability (client-go's
/// `CacheMutationDetector`).
///
/// Opt-in, and meant for tests and debug builds: every added object is serialized, and every
/// check serializes every retained object again. For debug builds only, create it (and feed
/// it) under `cfg!(debug_assertions)`. Feed it what the informer caches (from an
/// event handler's add and update callbacks), then [`check`](Self::check) now and then, or let
/// [`run`](Self::run) check periodically. An object is retained, and watched, for at least the
/// [retention](Self::with_retention) period after it was added (two minutes by default, as
/// client-go) and is dropped at the first check after that.
///
/// # What can change behind an `Arc<T>`
///
/// A cache hands out `Arc<T>`: shared, read-only access. In Go, any holder of a cached pointer
/// can write through it and silently corrupt the informer's cache for every other reader; that
/// is what client-go's detector hunts. Here safe Rust rules most of that out at compile time:
/// nobody can get a `&mut T` to an object the cache holds (`Arc::get_mut` fails while the cache
/// holds its reference, and `Arc::make_mut` copies). What remains is **interior mutability**
/// reachable through `&T`:
///
/// - `Mutex`, `RwLock`, atomics, `OnceLock` and types built on them, as fields of `T`;
/// - fields that are themselves shared handles (`Arc<Mutex<_>>`, channels) to state that lives
///   outside the object;
/// - `Cell` and `RefCell` are not `Sync`, so an [`Object`] cannot hold them directly.
///
/// A type with none of these cannot be changed in place, and needs no detector. For one that
/// has some, the detector records each object's serialized form (JSON, through `serde`) when it
/// is added, and on every [`check`](Self::check) compares the object's current
/// serialized form with it. It sees what serialization sees: a field skipped by
/// `#[serde(skip)]` is not watched, and a lazily filled `OnceLock` that serializes differently
/// once filled reads as a change.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use cache_core::Object;
/// use cache_core::store::{MutationDetector, MutationDetectorError};
///
/// #[derive(serde::Serialize)]
/// struct Pod { name: String, labels: Mutex<Vec<String>> }
/// impl Object for Pod {
///     type Key = String;
///     fn key(&self) -> String { self.name.clone() }
/// }
///
/// let detector = MutationDetector::new("pods");
/// let cached = Arc::new(Pod { name: "web".into(), labels: Mutex::new(vec![]) });
/// detector.add_object(&cached)?;
/// assert!(detector.check().is_ok());
///
/// cached.labels.lock().unwrap().push("oops".into()); // changes the cached object for everyone
/// let err = detector.check().unwrap_err();
/// assert_eq!(err.keys(), [&"web".to_string()]);
/// # Ok::<(), MutationDetectorError<String>>(())
/// ```
pub struct MutationDetector<T: Object + Serialize> {
    name: String,
    retention: TtlPolicy,
    clock: Arc<dyn Clock>,
    recorded: Mutex<HashMap<T::Key, Vec<Recorded<T>>>>,
}

struct Recorded<T> {
    object: Arc<T>,
    serialized: String,
    added: Instant,
}

impl<T: Object + Serialize> fmt::Debug for MutationDetector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutationDetector")
            .field("name", &self.name)
            .field("retention", &self.retention.ttl())
            .field("watched", &self.len())
            .finish_non_exhaustive()
    }
}

impl<T: Object + Serialize> MutationDetector<T> {
    /// A detector named `name` (it appears in its reports), with client-go's retention of two
    /// minutes, on the real clock.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            retention: TtlPolicy::new(Duration::from_secs(120)),
            clock: Arc::new(RealClock),
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Watches each object for at least `retention` after it is added; `Duration::ZERO` watches
    /// forever.
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = TtlPolicy::new(retention);
        self
    }

    /// Reads time (for the retention) from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The detector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<T::Key, Vec<Recorded<T>>>> {
        self.recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts watching `object` (client-go's `AddObject`): records its serialized form now.
    /// Adding the same `Arc` again while it is watched changes nothing.
    ///
    /// # Errors
    ///
    /// [`MutationDetectorError::Serialize`] when `object` cannot be serialized; it is not
    /// watched.
    pub fn add_object(&self, object: &Arc<T>) -> Result<(), MutationDetectorError<T::Key>> {
        let key = object.key();
        let serialized = self.serialize(&key, object)?;
        let now = self.clock.now();
        let mut recorded = self.lock();
        let copies = recorded.entry(key).or_default();
        if copies.iter().any(|r| Arc::ptr_eq(&r.object, object)) {
            return Ok(());
        }
        copies.push(Recorded {
            object: object.clone(),
            serialized,
            added: now,
        });
        Ok(())
    }

    /// How many objects are watched.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Whether no object is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Compares every watched object with its recorded form, then stops watching those past
    /// the retention period (client-go's `CompareObjects`).
    ///
    /// # Errors
    ///
    /// [`MutationDetectorError::Mutated`] naming every changed object (each change is reported
    /// once: the record is updated to the new form); otherwise
    /// [`MutationDetectorError::Serialize`] when a watched object can no longer be serialized
    /// (it stays watched, and is reported at every check until it serializes again or its
    /// retention ends).
    pub fn check(&self) -> Result<(), MutationDetectorError<T::Key>> {
        let now = self.clock.now();
        let mut recorded = self.lock();
        let mut changed = Vec::new();
        let mut failed = None;
        for (key, copies) in recorded.iter_mut() {
            copies.retain_mut(|r| match serde_json::to_string(&*r.object) {
                Ok(current) => {
                    if current != r.serialized {
                        changed.push(MutatedObject {
                            key: key.clone(),
                            before: std::mem::replace(&mut r.serialized, current.clone()),
                            after: current,
                        });
                    }
                    true
                }
                Err(e) => {
                    // Still watched: reported again until it serializes or its retention ends.
                    failed.get_or_insert((key.clone(), e.to_string()));
                    true
                }
            });
        }
        for copies in recorded.values_mut() {
            copies.retain(|r| !self.retention.is_expired_at(r.added, now));
        }
        recorded.retain(|_, copies| !copies.is_empty());
        drop(recorded);
        if !changed.is_empty() {
            changed.sort_by(|a, b| a.key.cmp(&b.key));
            return Err(MutationDetectorError::Mutated {
                detector: self.name.clone(),
                objects: changed,
            });
        }
        if let Some((key, message)) = failed {
            return Err(MutationDetectorError::Serialize {
                detector: self.name.clone(),
                key,
                message,
            });
        }
        Ok(())
    }

    /// Checks every `period` until `cancel` fires, handing each failed check to `on_error`
    /// (client-go's `Run`; its default there is to panic, which a test may do in `on_error`).
    /// The first check runs one `period` after the start; a zero `period` counts as 1 ms.
    pub async fn run(
        &self,
        period: Duration,
        cancel: CancellationToken,
        on_error: impl Fn(MutationDetectorError<T::Key>),
    ) {
        let period = period.max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {
                    if let Err(e) = self.check() {
                        on_error(e);
                    }
                }
            }
        }
    }

    fn serialize(&self, key: &T::Key, object: &T) -> Result<String, MutationDetectorError<T::Key>> {
        serde_json::to_string(object).map_err(|e| MutationDetectorError::Serialize {
            detector: self.name.clone(),
            key: key.clone(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::store::FakeClock;

    #[derive(Debug, Serialize)]
    struct Pod {
        name: String,
        labels: Mutex<Vec<String>>,
    }

    impl Object for Pod {
        type Key = String;
        fn key(&self) -> String {
            self.name.clone()
        }
    }

    fn pod(name: &str) -> Arc<Pod> {
        Arc::new(Pod {
            name: name.into(),
            labels: Mutex::new(Vec::new()),
        })
    }

    #[test]
    fn a_change_in_place_is_reported_by_key_once() {
        let d = MutationDetector::new("pods");
        let (a, b) = (pod("a"), pod("b"));
        d.add_object(&a).unwrap();
        d.add_object(&b).unwrap();
        assert_eq!(d.check(), Ok(()));
        b.labels.lock().unwrap().push("x".into());
        let err = d.check().unwrap_err();
        assert_eq!(
            err,
            MutationDetectorError::Mutated {
                detector: "pods".into(),
                objects: vec![MutatedObject {
                    key: "b".into(),
                    before: r#"{"name":"b","labels":[]}"#.into(),
                    after: r#"{"name":"b","labels":["x"]}"#.into(),
                }],
            }
        );
        assert!(err.to_string().contains("\"b\""), "{err}");
        // Reported once: the next check compares with the new form.
        assert_eq!(d.check(), Ok(()));
    }

    #[test]
    fn replacing_an_object_is_not_a_mutation() {
        let d = MutationDetector::new("pods");
        d.add_object(&pod("a")).unwrap();
        // The informer's next version is a new Arc; the old one is untouched.
        let next = Arc::new(Pod {
            name: "a".into(),
            labels: Mutex::new(vec!["new".into()]),
        });
        d.add_object(&next).unwrap();
        assert_eq!(d.check(), Ok(()));
        assert_eq!(d.len(), 2);
        // The same Arc again (a resync) is watched once.
        d.add_object(&next).unwrap();
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn objects_are_watched_for_the_retention_period() {
        let clock = Arc::new(FakeClock::new());
        let d = MutationDetector::new("pods")
            .with_retention(Duration::from_secs(120))
            .with_clock(clock.clone());
        let a = pod("a");
        d.add_object(&a).unwrap();
        clock.advance(Duration::from_secs(120));
        assert_eq!(d.check(), Ok(()));
        assert_eq!(d.len(), 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(d.check(), Ok(())); // dropped after this check
        assert!(d.is_empty());
        a.labels.lock().unwrap().push("late".into());
        assert_eq!(d.check(), Ok(()));
    }

    struct Unserializable {
        name: String,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if self.fail.load(Ordering::SeqCst) {
                Err(serde::ser::Error::custom("no way"))
            } else {
                s.serialize_str(&self.name)
            }
        }
    }

    impl Object for Unserializable {
        type Key = String;
        fn key(&self) -> String {
            self.name.clone()
        }
    }

    #[test]
    fn serialization_failures_are_typed_errors() {
        let d = MutationDetector::new("weird");
        let bad = Arc::new(Unserializable {
            name: "x".into(),
            fail: true.into(),
        });
        let err = d.add_object(&bad).unwrap_err();
        assert!(
            matches!(&err, MutationDetectorError::Serialize { key, message, .. }
            if key == "x" && message.contains("no way"))
        );
        assert!(d.is_empty());
        // One that starts failing later is reported at every check, and stays watched.
        bad.fail.store(false, Ordering::SeqCst);
        d.add_object(&bad).unwrap();
        bad.fail.store(true, Ordering::SeqCst);
        assert_eq!(d.check().unwrap_err().keys(), [&"x".to_string()]);
        assert_eq!(d.check().unwrap_err().keys(), [&"x".to_string()]);
        assert_eq!(d.len(), 1);
        bad.fail.store(false, Ordering::SeqCst);
        assert_eq!(d.check(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn run_checks_periodically_until_cancelled() {
        let d = Arc::new(MutationDetector::new("pods"));
        let a = pod("a");
        d.add_object(&a).unwrap();
        let failures = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let (d, failures, cancel) = (d.clone(), failures.clone(), cancel.clone());
            async move {
                d.run(Duration::from_secs(1), cancel, |e| {
                    assert_eq!(e.keys(), [&"a".to_string()]);
                    failures.fetch_add(1, Ordering::SeqCst);
                })
                .await;
            }
        });
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(failures.load(Ordering::SeqCst), 0);
        a.labels.lock().unwrap().push("x".into());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(failures.load(Ordering::SeqCst), 1);
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run returns after the cancel")
            .unwrap();
    }

    /// client-go's TestMutationDetector: a detector fed by an informer's handler finds a cached
    /// object changed in place, and names it.
    #[tokio::test(start_paused = true)]
    async fn finds_a_cached_object_changed_through_an_informer() {
        use crate::informer::{HandlerFns, SharedIndexInformer};
        use crate::source::MemorySource;
        use crate::test_support::until;
        use crate::{Indexers, ObjectKey, ResourceVersion};

        #[derive(Debug, Serialize)]
        struct Labelled {
            name: String,
            rv: Option<String>,
            labels: Mutex<Vec<String>>,
        }
        impl Clone for Labelled {
            fn clone(&self) -> Self {
                Self {
                    name: self.name.clone(),
                    rv: self.rv.clone(),
                    labels: Mutex::new(self.labels.lock().unwrap().clone()),
                }
            }
        }
        impl Object for Labelled {
            type Key = ObjectKey;
            fn key(&self) -> ObjectKey {
                ObjectKey::new("default", &self.name)
            }
            fn resource_version(&self) -> Option<ResourceVersion> {
                self.rv.as_deref().map(ResourceVersion::new)
            }
            fn set_resource_version(&mut self, rv: ResourceVersion) {
                self.rv = Some(rv.to_string());
            }
        }

        let source = MemorySource::new();
        let informer = SharedIndexInformer::builder_with_indexers(source.clone(), Indexers::new())
            .name("pods")
            .build();
        let detector = Arc::new(MutationDetector::new("pods"));
        let (on_add, on_update) = (detector.clone(), detector.clone());
        informer
            .add_event_handler(
                HandlerFns::new()
                    .added(move |obj, _| on_add.add_object(&obj).unwrap())
                    .updated(move |_, new| on_update.add_object(&new).unwrap()),
            )
            .unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let (informer, cancel) = (informer.clone(), cancel.clone());
            async move { informer.run(cancel).await }
        });
        source.put(Labelled {
            name: "web".into(),
            rv: None,
            labels: Mutex::new(Vec::new()),
        });
        until("the detector watches the pod", || detector.len() == 1).await;
        assert_eq!(detector.check(), Ok(()));

        let key = ObjectKey::new("default", "web");
        let cached = informer.cache().get_by_key(&key).unwrap();
        cached.labels.lock().unwrap().push("mutated".into());
        let err = detector.check().unwrap_err();
        assert_eq!(err.keys(), [&key]);
        cancel.cancel();
        task.await.unwrap();
    }
}
