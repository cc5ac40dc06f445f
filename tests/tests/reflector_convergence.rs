//! Convergence of the reflector under random fault schedules on the embedded source.
//!
//! Each case starts a reflector on a `MemorySource`, then runs a random schedule of writes mixed
//! with faults: closed watches, compactions while disconnected, failing lists and watches,
//! delays, error events, writes that watches never see followed by a reset, duplicate
//! bookmarks. When the faults stop and the reflector settles, the cache must equal the source
//! exactly, the reflector's version must be the source's, and no write may ever carry a version
//! older than one already seen for its key, deletes included (checked on every write, through a
//! wrapping store), so an older version re-added after a delete is caught too.
//!
//! Time is tokio's paused clock, so backoffs and timeouts cost nothing. The default run has
//! 256 cases; `CONVERGENCE_CASES=10000` runs the long mode.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::reflector::Reflector;
use cache_core::source::memory::{MemorySource, MemorySourceOptions};
use cache_core::source::{SourceError, SourceErrorKind};
use cache_core::{
    Cache, Change, Indexers, Object, ResourceVersion, Store, StoreError, TransactionError,
};
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, PartialEq)]
struct Obj {
    key: u8,
    value: u32,
    rv: Option<ResourceVersion>,
}

impl Object for Obj {
    type Key = u8;
    fn key(&self) -> u8 {
        self.key
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.rv.clone()
    }
    fn set_resource_version(&mut self, rv: ResourceVersion) {
        self.rv = Some(rv);
    }
}

fn version(obj: &Obj) -> u64 {
    obj.rv
        .as_ref()
        .and_then(ResourceVersion::as_u64)
        .expect("the source stamps every object")
}

/// A cache that checks every write against the highest version it has seen for the key, deletes
/// included (a delete carries the version that deleted the object): no write may go back in
/// time, whether the key is held now or was deleted since.
struct Checked {
    cache: Cache<Obj>,
    /// The highest version seen for each key, by any write.
    highest: Mutex<BTreeMap<u8, u64>>,
    violations: Mutex<Vec<String>>,
}

impl Checked {
    fn new() -> Self {
        Self {
            cache: Cache::with_indexers(Indexers::new()),
            highest: Mutex::new(BTreeMap::new()),
            violations: Mutex::new(Vec::new()),
        }
    }

    /// Records `obj`'s version for its key, and a violation when a higher one was seen before.
    fn check(&self, what: &str, obj: &Obj) {
        let v = version(obj);
        let mut highest = self.highest.lock().unwrap();
        let seen = highest.entry(obj.key).or_insert(v);
        if v < *seen {
            self.violations.lock().unwrap().push(format!(
                "{what} of {} at version {v} after version {seen}",
                obj.key
            ));
        } else {
            *seen = v;
        }
    }
}

impl Store<Obj> for Checked {
    fn add(&self, obj: Arc<Obj>) -> Result<(), StoreError> {
        self.check("add", &obj);
        self.cache.add(obj)
    }
    fn update(&self, obj: Arc<Obj>) -> Result<(), StoreError> {
        self.check("update", &obj);
        self.cache.update(obj)
    }
    fn delete(&self, obj: Arc<Obj>) -> Result<(), StoreError> {
        self.check("delete", &obj);
        self.cache.delete(obj)
    }
    fn list(&self) -> Vec<Arc<Obj>> {
        self.cache.list()
    }
    fn list_keys(&self) -> Vec<u8> {
        self.cache.list_keys()
    }
    fn get_by_key(&self, key: &u8) -> Option<Arc<Obj>> {
        self.cache.get_by_key(key)
    }
    fn replace(&self, items: Vec<Arc<Obj>>, rv: Option<ResourceVersion>) -> Result<(), StoreError> {
        for obj in &items {
            self.check("replace", obj);
        }
        // A key the replace drops was absent at the list's version: any later write of it must
        // be newer than that.
        if let Some(listed_at) = rv.as_ref().and_then(ResourceVersion::as_u64) {
            let kept: std::collections::BTreeSet<u8> = items.iter().map(|o| o.key).collect();
            let mut highest = self.highest.lock().unwrap();
            for key in self.cache.list_keys() {
                if !kept.contains(&key) {
                    let seen = highest.entry(key).or_insert(listed_at);
                    *seen = (*seen).max(listed_at);
                }
            }
        }
        self.cache.replace(items, rv)
    }
    fn resync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn bookmark(&self, rv: ResourceVersion) {
        self.cache.bookmark(rv);
    }
    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        self.cache.resource_version()
    }
    fn transaction(&self, changes: Vec<Change<Obj>>) -> Result<(), TransactionError> {
        // In order: earlier changes of the batch count for later ones.
        for change in &changes {
            self.check("watch event", change.object());
        }
        self.cache.transaction(changes)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: u8,
        value: u32,
    },
    Delete {
        key: u8,
    },
    Wait {
        millis: u64,
    },
    CloseWatches,
    /// Disconnected (slow source), history moves on and is compacted, then the source recovers.
    CompactWhileDisconnected {
        writes: Vec<(u8, u32)>,
        millis: u64,
    },
    Compact,
    FailLists {
        n: usize,
        kind: SourceErrorKind,
    },
    FailWatches {
        n: usize,
        kind: SourceErrorKind,
    },
    Delay {
        millis: u64,
    },
    ErrorEvent {
        kind: SourceErrorKind,
    },
    /// Writes the open watches never see, then the reset that makes everyone relist.
    DroppedWritesThenReset {
        writes: Vec<(u8, Option<u32>)>,
        millis: u64,
    },
    Bookmarks {
        times: usize,
    },
}

fn kind() -> impl Strategy<Value = SourceErrorKind> {
    prop_oneof![
        Just(SourceErrorKind::Expired),
        Just(SourceErrorKind::TooLargeResourceVersion),
        Just(SourceErrorKind::TooManyRequests),
        Just(SourceErrorKind::ConnectionRefused),
        Just(SourceErrorKind::Internal),
        Just(SourceErrorKind::Other),
    ]
}

const KEYS: u8 = 16;

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        8 => (key.clone(), any::<u32>()).prop_map(|(key, value)| Op::Put { key, value }),
        3 => key.clone().prop_map(|key| Op::Delete { key }),
        4 => prop_oneof![0..50u64, 0..3_000u64, 0..70_000u64].prop_map(|millis| Op::Wait { millis }),
        2 => Just(Op::CloseWatches),
        2 => (prop::collection::vec((key.clone(), any::<u32>()), 1..6), 0..5_000u64)
            .prop_map(|(writes, millis)| Op::CompactWhileDisconnected { writes, millis }),
        1 => Just(Op::Compact),
        1 => (1..4usize, kind()).prop_map(|(n, kind)| Op::FailLists { n, kind }),
        1 => (1..4usize, kind()).prop_map(|(n, kind)| Op::FailWatches { n, kind }),
        1 => prop_oneof![Just(0u64), 1..4_000u64].prop_map(|millis| Op::Delay { millis }),
        1 => kind().prop_map(|kind| Op::ErrorEvent { kind }),
        2 => (
            prop::collection::vec((key.clone(), prop::option::of(any::<u32>())), 1..5),
            0..2_000u64
        )
            .prop_map(|(writes, millis)| Op::DroppedWritesThenReset { writes, millis }),
        1 => (1..3usize).prop_map(|times| Op::Bookmarks { times }),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    initial: Vec<(u8, u32)>,
    history_limit: usize,
    bookmark_secs: Option<u64>,
    watch_list: bool,
    internal_retry_secs: u64,
    schedule: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((0..KEYS, any::<u32>()), 0..12),
        prop_oneof![Just(0usize), Just(1), Just(4), Just(32), Just(1024)],
        prop::option::of(1..20u64),
        any::<bool>(),
        prop_oneof![Just(0u64), Just(30)],
        prop::collection::vec(op(), 1..40),
    )
        .prop_map(
            |(initial, history_limit, bookmark_secs, watch_list, internal_retry_secs, schedule)| {
                Case {
                    initial,
                    history_limit,
                    bookmark_secs,
                    watch_list,
                    internal_retry_secs,
                    schedule,
                }
            },
        )
}

fn obj(key: u8, value: u32) -> Obj {
    Obj {
        key,
        value,
        rv: None,
    }
}

fn error(kind: SourceErrorKind) -> SourceError {
    SourceError::new(kind, format!("injected {kind:?}"))
}

async fn apply(source: &MemorySource<Obj>, op: &Op) {
    let wait = |millis| tokio::time::sleep(Duration::from_millis(millis));
    match op {
        Op::Put { key, value } => {
            source.put(obj(*key, *value));
        }
        Op::Delete { key } => {
            source.delete(key);
        }
        Op::Wait { millis } => wait(*millis).await,
        Op::CloseWatches => source.close_watches(),
        Op::CompactWhileDisconnected { writes, millis } => {
            source.set_delay(Duration::from_secs(2));
            source.close_watches();
            for (key, value) in writes {
                source.put(obj(*key, *value));
            }
            source.compact();
            wait(*millis).await;
            source.set_delay(Duration::ZERO);
        }
        Op::Compact => source.compact(),
        Op::FailLists { n, kind } => source.fail_next_lists(*n, error(*kind)),
        Op::FailWatches { n, kind } => source.fail_next_watches(*n, error(*kind)),
        Op::Delay { millis } => source.set_delay(Duration::from_millis(*millis)),
        Op::ErrorEvent { kind } => source.send_error(error(*kind)),
        Op::DroppedWritesThenReset { writes, millis } => {
            for (key, value) in writes {
                match value {
                    Some(value) => {
                        source.put_dropping_watch(obj(*key, *value));
                    }
                    None => {
                        source.delete_dropping_watch(key);
                    }
                }
            }
            wait(*millis).await;
            source.reset_watches();
        }
        Op::Bookmarks { times } => {
            for _ in 0..*times {
                source.send_bookmarks();
            }
        }
    }
    // Let the reflector react between operations.
    tokio::task::yield_now().await;
}

type Content = BTreeMap<u8, (u32, Option<ResourceVersion>)>;

fn content(objects: Vec<Arc<Obj>>) -> Content {
    objects
        .into_iter()
        .map(|o| (o.key, (o.value, o.rv.clone())))
        .collect()
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let config = MemorySourceOptions::default()
            .history_limit(case.history_limit)
            .bookmark_interval(case.bookmark_secs.map(Duration::from_secs))
            .watch_list(case.watch_list);
        let source = MemorySource::with_options(config);
        for (key, value) in &case.initial {
            source.put(obj(*key, *value));
        }
        let store = Arc::new(Checked::new());
        let reflector = Reflector::builder(source.clone(), store.clone())
            .name("convergence")
            .max_internal_error_retry(Duration::from_secs(case.internal_retry_secs))
            .build();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (reflector, stop) = (reflector.clone(), stop.clone());
            async move { reflector.run(stop).await }
        });

        for op in &case.schedule {
            apply(&source, op).await;
        }
        // The faults stop (injected failures already queued still happen).
        source.set_delay(Duration::ZERO);

        let converged = || {
            content(store.cache.list()) == content(source.objects())
                && reflector.last_sync_resource_version() == Some(source.resource_version())
        };
        let mut waited = Duration::ZERO;
        while !converged() && waited < Duration::from_secs(30 * 60) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            waited += Duration::from_secs(1);
        }
        prop_assert_eq!(content(store.cache.list()), content(source.objects()));
        prop_assert_eq!(
            reflector.last_sync_resource_version(),
            Some(source.resource_version())
        );
        prop_assert!(reflector.has_synced());
        let violations = store.violations.lock().unwrap().clone();
        prop_assert!(violations.is_empty(), "{:?}", violations);

        stop.cancel();
        task.await.expect("the reflector stops");
        prop_assert_eq!(source.open_watches(), 0, "no watch left open");
        Ok(())
    })
}

fn cases() -> u32 {
    std::env::var("CONVERGENCE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_cache_converges_to_the_source(case in case()) {
        run(&case)?;
    }
}

/// A fixed schedule with every fault, so each one is exercised on every run.
#[test]
fn every_fault_in_one_schedule() {
    use SourceErrorKind::*;
    let schedule = vec![
        Op::Put { key: 1, value: 1 },
        Op::Wait { millis: 10 },
        Op::CloseWatches,
        Op::Put { key: 2, value: 2 },
        Op::CompactWhileDisconnected {
            writes: vec![(1, 3), (3, 3)],
            millis: 3_000,
        },
        Op::FailLists {
            n: 2,
            kind: Internal,
        },
        Op::ErrorEvent { kind: Expired },
        Op::Wait { millis: 5_000 },
        Op::FailWatches {
            n: 2,
            kind: TooManyRequests,
        },
        Op::CloseWatches,
        Op::Delay { millis: 1_500 },
        Op::Delete { key: 2 },
        Op::DroppedWritesThenReset {
            writes: vec![(4, Some(4)), (1, None)],
            millis: 500,
        },
        Op::Bookmarks { times: 2 },
        Op::ErrorEvent {
            kind: TooLargeResourceVersion,
        },
        Op::Put { key: 5, value: 5 },
        Op::Compact,
        Op::Wait { millis: 60_000 },
    ];
    for watch_list in [false, true] {
        let case = Case {
            initial: vec![(0, 0), (9, 9)],
            history_limit: 4,
            bookmark_secs: Some(1),
            watch_list,
            internal_retry_secs: 30,
            schedule: schedule.clone(),
        };
        run(&case).unwrap();
    }
}

fn stamped(key: u8, value: u32, rv: u64) -> Arc<Obj> {
    Arc::new(Obj {
        key,
        value,
        rv: Some(rv.into()),
    })
}

/// The checking store itself: an older version of an object re-added after its delete is a
/// violation, through every path a write takes; newer versions and repeats are not.
#[test]
fn the_checking_store_catches_an_older_version_re_added_after_a_delete() {
    type Write = fn(&Checked, Arc<Obj>);
    let paths: [(&str, Write); 4] = [
        ("add", |s, o| s.add(o).unwrap()),
        ("update", |s, o| s.update(o).unwrap()),
        ("replace", |s, o| {
            s.replace(vec![o], Some(9.into())).unwrap()
        }),
        ("watch event", |s, o| {
            s.transaction(vec![Change::Add(o)]).unwrap()
        }),
    ];
    for (path, write) in paths {
        let store = Checked::new();
        store.add(stamped(1, 1, 3)).unwrap();
        store.delete(stamped(1, 1, 5)).unwrap();
        assert!(store.violations.lock().unwrap().is_empty());
        assert!(store.get_by_key(&1).is_none());
        write(&store, stamped(1, 1, 3));
        assert_eq!(
            store.violations.lock().unwrap().clone(),
            [format!("{path} of 1 at version 3 after version 5")],
            "{path}"
        );
    }

    // Within one batch: a delete then an older add of the same key.
    let store = Checked::new();
    store
        .transaction(vec![
            Change::Add(stamped(2, 0, 4)),
            Change::Delete(stamped(2, 0, 6)),
            Change::Add(stamped(2, 0, 4)),
        ])
        .unwrap();
    assert_eq!(store.violations.lock().unwrap().len(), 1);

    // An object a relist dropped comes back older than the list.
    let store = Checked::new();
    store.add(stamped(4, 0, 3)).unwrap();
    store.replace(vec![], Some(8.into())).unwrap();
    store.add(stamped(4, 0, 3)).unwrap();
    assert_eq!(
        store.violations.lock().unwrap().clone(),
        ["add of 4 at version 3 after version 8"]
    );

    // A newer re-creation, and the same version twice, are fine.
    let store = Checked::new();
    store.add(stamped(3, 0, 2)).unwrap();
    store.delete(stamped(3, 0, 4)).unwrap();
    store.add(stamped(3, 0, 7)).unwrap();
    store.update(stamped(3, 0, 7)).unwrap();
    store
        .replace(vec![stamped(3, 0, 7)], Some(8.into()))
        .unwrap();
    assert!(store.violations.lock().unwrap().is_empty());
}
