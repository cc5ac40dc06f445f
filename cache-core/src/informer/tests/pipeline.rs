//! The pipeline: transform, relists, the order of notifications against the cache, batches,
//! versions, indexes and the watch-error handler.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::fifo::Delta;
use crate::source::{SourceError, SourceErrorKind};

const KINDS: [QueueKind; 3] = [QueueKind::Real, QueueKind::RealPerObject, QueueKind::Delta];

fn source_content(source: &MemorySource<Pod>) -> Vec<String> {
    let mut v: Vec<String> = source
        .objects()
        .iter()
        .map(|p| format!("{}@{}", p.name, rv_of(p)))
        .collect();
    v.sort();
    v
}

/// Waits until the cache holds what the source holds.
async fn caught_up(informer: &SharedIndexInformer<Pod>, source: &MemorySource<Pod>) {
    let expected = source_content(source);
    until("the cache to hold what the source holds", || {
        content(informer.cache()) == expected
    })
    .await;
}

/// The lines without the cache's version (which only a relist in one delta sets).
fn without_store(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| l.split(" store=").next().unwrap().to_owned())
        .collect()
}

/// client-go's TestSharedInformerWatchDisruption: writes the watch never carries, a resync,
/// then a relist; a handler without resync hears only of what changed.
#[tokio::test(start_paused = true)]
async fn watch_disruption_then_relist() {
    for kind in KINDS {
        let source = MemorySource::new();
        source.put(pod("pod1", 1));
        source.put(pod("pod2", 2));
        let informer = informer(&source)
            .queue(kind)
            .resync(Duration::from_secs(1))
            .build();
        let no_resync = Recorder::new();
        let resync = Recorder::new();
        informer
            .add_event_handler_with(
                no_resync.clone(),
                HandlerOptions::new().resync_period(Duration::ZERO),
            )
            .unwrap();
        informer
            .add_event_handler_with(
                resync.clone(),
                HandlerOptions::new().resync_period(Duration::from_secs(1)),
            )
            .unwrap();
        let (cancel, task) = start(&informer);
        informer.wait_for_sync().await.unwrap();
        until("the initial list", || {
            no_resync.len() == 2 && resync.len() == 2
        })
        .await;
        assert_eq!(no_resync.names(), ["pod1", "pod2"]);
        no_resync.take();
        resync.take();

        source.put_dropping_watch(pod("pod3", 3));
        source.put_dropping_watch(pod("pod2", 22));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            informer.cache().len(),
            2,
            "{kind:?}: the watch carried nothing"
        );

        tokio::time::sleep(Duration::from_secs(1)).await;
        source.reset_watches();
        caught_up(&informer, &source).await;
        until("the relist at the handlers", || {
            no_resync.names().len() >= 2 && resync.names().len() >= 3
        })
        .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(informer.reflector_stats().relists, 1, "{kind:?}");
        assert_eq!(
            no_resync.names(),
            ["pod2", "pod3"],
            "{kind:?}: {:?}",
            no_resync.lines()
        );
        assert_eq!(
            resync.names(),
            ["pod1", "pod2", "pod3"],
            "{kind:?}: {:?}",
            resync.lines()
        );
        assert!(
            !no_resync
                .lines()
                .iter()
                .any(|l| l.starts_with("add pod3") && l.ends_with("initial")),
            "{kind:?}: a relist is not the initial list"
        );
        stop(cancel, task).await;
    }
}

/// client-go's TestSharedInformerTransformer and TestTransformingInformerRace: the transform
/// runs once per incoming object, never on a resync, and everything downstream sees its output.
#[tokio::test(start_paused = true)]
async fn the_transform_runs_once_per_incoming_object() {
    for kind in KINDS {
        let source = MemorySource::new();
        source.put(pod("pod1", 1));
        source.put(pod("pod2", 2));
        let calls = Arc::new(AtomicUsize::new(0));
        let informer = informer(&source)
            .queue(kind)
            .resync(Duration::from_secs(1))
            .transform({
                let calls = calls.clone();
                move |p: Arc<Pod>| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    assert!(!p.name.starts_with("POD"), "transformed twice: {}", p.name);
                    Arc::new(Pod {
                        name: p.name.to_uppercase(),
                        ..(*p).clone()
                    })
                }
            })
            .build();
        let seen = Recorder::new();
        informer.add_event_handler(seen.clone()).unwrap();
        let (cancel, task) = start(&informer);
        informer.wait_for_sync().await.unwrap();
        until("the initial adds", || seen.len() == 2).await;
        assert_eq!(seen.names(), ["POD1", "POD2"], "{kind:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{kind:?}");

        source.put(pod("pod3", 3));
        source.put(pod("pod1", 4));
        until("the watch events", || seen.len() >= 4).await;
        assert_eq!(calls.load(Ordering::SeqCst), 4, "{kind:?}");

        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert!(informer.reflector_stats().resyncs >= 3, "{kind:?}");
        assert!(seen.len() >= 4 + 3 * 3, "{kind:?}: resyncs delivered");
        assert_eq!(calls.load(Ordering::SeqCst), 4, "{kind:?}: not on resyncs");
        let mut names: Vec<String> = informer.cache().list_keys();
        names.sort();
        assert_eq!(names, ["POD1", "POD2", "POD3"], "{kind:?}");
        stop(cancel, task).await;
    }
}

/// client-go's TestSharedInformerErrorHandling.
#[tokio::test(start_paused = true)]
async fn the_watch_error_handler_receives_a_list_error() {
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    source.fail_next_lists(1, SourceError::new(SourceErrorKind::Other, "Access Denied"));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let informer = informer(&source)
        .reflector_options(ReflectorOptions {
            use_watch_list: false,
            ..ReflectorOptions::default()
        })
        .watch_error_handler({
            let errors = errors.clone();
            move |e: &ReflectorError| errors.lock().unwrap().push(e.to_string())
        })
        .build();
    let (cancel, task) = start(&informer);
    until("the error", || !errors.lock().unwrap().is_empty()).await;
    let first = errors.lock().unwrap()[0].clone();
    assert!(first.contains("Access Denied"), "{first}");
    assert!(!informer.has_synced());
    // The reflector backs off and lists again.
    informer.wait_for_sync().await.unwrap();
    assert_eq!(informer.cache().len(), 1);
    stop(cancel, task).await;
}

/// A handler that writes down, with each notification, whether the cache already reflects it
/// and the cache's version at that moment.
#[derive(Clone)]
struct CacheWatcher {
    cache: CacheReader<Pod>,
    lines: Recorder,
}

impl CacheWatcher {
    fn store_rv(&self) -> String {
        self.cache
            .resource_version()
            .map_or("-".into(), |r| r.as_str().to_owned())
    }
}

impl EventHandler<Pod> for CacheWatcher {
    fn on_add(&self, obj: Arc<Pod>, initial: bool) {
        let cached = self
            .cache
            .get_by_key(&obj.name)
            .is_some_and(|c| c.rv == obj.rv);
        self.lines.push(format!(
            "add {} {} {initial} cached={cached} store={}",
            obj.name,
            rv_of(&obj),
            self.store_rv()
        ));
    }
    fn on_update(&self, old: Arc<Pod>, new: Arc<Pod>) {
        let cached = self
            .cache
            .get_by_key(&new.name)
            .is_some_and(|c| c.rv == new.rv);
        self.lines.push(format!(
            "update {} {}->{} cached={cached} store={}",
            new.name,
            rv_of(&old),
            rv_of(&new),
            self.store_rv()
        ));
    }
    fn on_delete(&self, obj: DeletedObject<Pod>) {
        let key = obj.key();
        let gone = self.cache.get_by_key(&key).is_none();
        let kind = if obj.is_tombstone() {
            "tombstone"
        } else {
            "delete"
        };
        self.lines.push(format!(
            "{kind} {key} gone={gone} store={}",
            self.store_rv()
        ));
    }
}

/// client-go's TestReplaceEvents, driven through the source: a relist announces the deletes
/// first, then the listed objects in list order; the cache is updated before any handler
/// hears of it.
#[tokio::test(start_paused = true)]
async fn a_relist_deletes_first_then_updates_in_list_order() {
    for kind in [QueueKind::Real, QueueKind::RealPerObject] {
        let source = MemorySource::new();
        let rv1 = source.put(pod("pod-1", 1));
        let informer = informer(&source).queue(kind).build();
        let lines = Recorder::new();
        informer
            .add_event_handler(CacheWatcher {
                cache: informer.cache().clone(),
                lines: lines.clone(),
            })
            .unwrap();
        let (cancel, task) = start(&informer);
        informer.wait_for_sync().await.unwrap();
        until("the first add", || lines.len() == 1).await;
        let rv1 = rv1.as_str();
        assert_eq!(
            without_store(lines.take()),
            [format!("add pod-1 {rv1} true cached=true")],
            "{kind:?}"
        );

        // Replace [] over {pod-1, pod-3}.
        source.put(pod("pod-3", 3));
        caught_up(&informer, &source).await;
        until("pod-3", || lines.len() == 1).await;
        lines.take();
        source.delete_dropping_watch(&"pod-1".to_owned());
        source.delete_dropping_watch(&"pod-3".to_owned());
        source.reset_watches();
        caught_up(&informer, &source).await;
        until("the deletes", || lines.len() == 2).await;
        assert_eq!(
            without_store(lines.take()),
            ["tombstone pod-1 gone=true", "tombstone pod-3 gone=true"],
            "{kind:?}"
        );

        // Replace {pod-1, pod-2, pod-4} over {pod-1, pod-2, pod-3}.
        for (name, v) in [("pod-1", 1), ("pod-2", 2), ("pod-3", 3)] {
            source.put(pod(name, v));
        }
        caught_up(&informer, &source).await;
        until("the adds", || lines.len() == 3).await;
        let before: BTreeMap<String, String> = informer
            .cache()
            .list()
            .iter()
            .map(|p| (p.name.clone(), rv_of(p)))
            .collect();
        lines.take();
        let rv_pod1 = source.put_dropping_watch(pod("pod-1", 4));
        let rv_pod2 = source.put_dropping_watch(pod("pod-2", 5));
        let rv_pod4 = source.put_dropping_watch(pod("pod-4", 6));
        source.delete_dropping_watch(&"pod-3".to_owned());
        let list_rv = source.reset_watches();
        caught_up(&informer, &source).await;
        until("the relist", || lines.len() == 4).await;
        let lines = lines.take();
        assert_eq!(
            without_store(lines.clone()),
            [
                "tombstone pod-3 gone=true".to_owned(),
                format!(
                    "update pod-1 {}->{} cached=true",
                    before["pod-1"],
                    rv_pod1.as_str()
                ),
                format!(
                    "update pod-2 {}->{} cached=true",
                    before["pod-2"],
                    rv_pod2.as_str()
                ),
                format!("add pod-4 {} false cached=true", rv_pod4.as_str()),
            ],
            "{kind:?}"
        );
        if kind == QueueKind::Real {
            // A relist in one delta carries the list's version to the cache.
            let l = format!("store={}", list_rv.as_str());
            assert!(lines.iter().all(|line| line.ends_with(&l)), "{lines:?}");
        }
        assert_eq!(
            content(informer.cache()),
            [
                format!("pod-1@{}", rv_pod1.as_str()),
                format!("pod-2@{}", rv_pod2.as_str()),
                format!("pod-4@{}", rv_pod4.as_str()),
            ]
        );
        stop(cancel, task).await;
    }
}

/// The informer started by hand (no reflector), for feeding deltas directly.
fn started(informer: &SharedIndexInformer<Pod>) -> &Processor<Pod> {
    let processor = &informer.inner.processor;
    assert!(processor.start(tokio::runtime::Handle::current()));
    processor
}

/// client-go's TestReplaceEvents with exact versions: the same sequences of relists, each as
/// one `ReplacedAll` delta.
#[tokio::test(start_paused = true)]
async fn replaced_all_exact_sequence() {
    let source = MemorySource::new();
    let informer = informer(&source).build();
    let lines = Recorder::new();
    informer
        .add_event_handler(CacheWatcher {
            cache: informer.cache().clone(),
            lines: lines.clone(),
        })
        .unwrap();
    let processor = started(&informer);
    let replace = |objects: Vec<Arc<Pod>>, rv: Option<u64>, initial: bool| {
        processor.process(
            vec![Delta::ReplacedAll {
                resource_version: rv.map(ResourceVersion::from),
                objects,
            }],
            initial,
            true,
        );
    };

    replace(vec![stored("pod-1", 0, 1)], Some(1), true);
    until("1", || lines.len() == 1).await;
    assert_eq!(lines.take(), ["add pod-1 1 true cached=true store=1"]);

    processor.process(vec![Delta::Added(stored("pod-3", 0, 3))], false, true);
    until("pod-3", || lines.len() == 1).await;
    assert_eq!(lines.take(), ["add pod-3 3 false cached=true store=3"]);
    replace(vec![], None, false);
    until("2", || lines.len() == 2).await;
    assert_eq!(
        lines.take(),
        [
            "tombstone pod-1 gone=true store=-",
            "tombstone pod-3 gone=true store=-",
        ]
    );

    replace(
        vec![
            stored("pod-1", 0, 1),
            stored("pod-2", 0, 2),
            stored("pod-3", 0, 3),
        ],
        Some(3),
        false,
    );
    until("3 adds", || lines.len() == 3).await;
    lines.take();
    replace(
        vec![
            stored("pod-1", 0, 4),
            stored("pod-2", 0, 5),
            stored("pod-4", 0, 6),
        ],
        Some(6),
        false,
    );
    until("4", || lines.len() == 4).await;
    assert_eq!(
        lines.take(),
        [
            "tombstone pod-3 gone=true store=6",
            "update pod-1 1->4 cached=true store=6",
            "update pod-2 2->5 cached=true store=6",
            "add pod-4 6 false cached=true store=6",
        ]
    );
    informer.inner.processor.stop();
}

/// client-go's TestProcessDeltasInBatch: one transaction; handlers hear only of the changes the
/// cache applied.
#[tokio::test(start_paused = true)]
async fn a_batch_notifies_only_what_the_cache_applied() {
    let uid = Indexer::from_fn(Index::new("uid"), true, |p: &Pod, out: &mut Vec<String>| {
        out.push(p.uid.clone());
    });
    let source = MemorySource::new();
    let informer =
        SharedIndexInformer::builder_with_indexers(source, Indexers::new().with(uid)).build();
    let seen = Recorder::new();
    informer.add_event_handler(seen.clone()).unwrap();
    let processor = started(&informer);
    let with_uid = |name: &str, uid: &str, rv: u64| {
        Arc::new(Pod {
            uid: uid.into(),
            ..(*stored(name, 0, rv)).clone()
        })
    };

    processor.process(vec![Delta::Added(with_uid("cm0", "x", 1))], true, true);
    processor.process(
        vec![
            Delta::Added(with_uid("cm1", "a", 2)),
            Delta::Added(with_uid("cm2", "x", 3)), // the unique uid is taken by cm0
            Delta::Updated(with_uid("cm0", "x", 4)),
            Delta::Added(with_uid("cm3", "c", 5)),
        ],
        false,
        true,
    );
    until("the notifications", || seen.len() == 4).await;
    assert_eq!(
        seen.take(),
        [
            "add cm0 1 initial",
            "add cm1 2 later",
            "update cm0 1->4",
            "add cm3 5 later"
        ]
    );
    assert_eq!(content(informer.cache()), ["cm0@4", "cm1@2", "cm3@5"]);
    assert_eq!(
        informer.cache().resource_version().unwrap().as_str(),
        "5",
        "the version of the last change applied"
    );

    // A relist with a rejected object: left out, and not announced.
    processor.process(
        vec![Delta::ReplacedAll {
            resource_version: Some(9.into()),
            objects: vec![with_uid("cm1", "a", 2), with_uid("cm5", "a", 9)],
        }],
        false,
        true,
    );
    until("the relist", || seen.len() == 2).await;
    assert_eq!(
        seen.take(),
        ["tombstone cm0 4", "tombstone cm3 5"],
        "cm1 unchanged (a resync nobody is due for); cm5 rejected"
    );
    assert_eq!(content(informer.cache()), ["cm1@2"]);
    informer.inner.processor.stop();
}

/// client-go's TestResetWatch: the first list's adds are in the initial list; a relist's are
/// not.
#[tokio::test(start_paused = true)]
async fn is_in_initial_list_only_for_the_first_list() {
    for kind in KINDS {
        let source = MemorySource::new();
        let rv1 = source.put(pod("pod-1", 1));
        let informer = informer(&source).queue(kind).build();
        let seen = Recorder::new();
        informer.add_event_handler(seen.clone()).unwrap();
        let (cancel, task) = start(&informer);
        until("the first add", || seen.len() == 1).await;
        assert_eq!(
            seen.take(),
            [format!("add pod-1 {} initial", rv1.as_str())],
            "{kind:?}"
        );

        let rv_mod = source.put_dropping_watch(pod("pod-1", 2));
        let rv2 = source.put_dropping_watch(pod("pod-2", 1));
        source.reset_watches();
        caught_up(&informer, &source).await;
        until("the relist", || seen.len() == 2).await;
        assert_eq!(
            seen.take(),
            [
                format!("update pod-1 {}->{}", rv1.as_str(), rv_mod.as_str()),
                format!("add pod-2 {} later", rv2.as_str()),
            ],
            "{kind:?}"
        );
        stop(cancel, task).await;
    }
}

/// client-go's TestStoreResourceVersion: the cache's version follows each event, deletes
/// included, and so does the informer's.
#[tokio::test(start_paused = true)]
async fn the_cache_version_follows_modify_and_delete() {
    for kind in KINDS {
        let source = MemorySource::new();
        source.put(pod("pod-1", 1));
        let informer = informer(&source).queue(kind).build();
        let (cancel, task) = start(&informer);
        informer.wait_for_sync().await.unwrap();

        let rv = source.put(pod("pod-1", 2));
        until("the modify", || {
            informer.cache().resource_version() == Some(rv.clone())
        })
        .await;
        assert_eq!(informer.last_sync_resource_version(), Some(rv));

        let rv = source.delete(&"pod-1".to_owned()).unwrap();
        until("the delete", || {
            informer.cache().resource_version() == Some(rv.clone())
        })
        .await;
        assert!(informer.cache().is_empty(), "{kind:?}");
        assert_eq!(informer.last_sync_resource_version(), Some(rv));
        stop(cancel, task).await;
    }
}

/// client-go's TestIndexer: an index added after the start is populated at once.
#[tokio::test(start_paused = true)]
async fn indexes_added_after_the_start_are_populated() {
    let by_value = |name: &'static str| {
        Indexer::from_fn(Index::new(name), false, |p: &Pod, out: &mut Vec<String>| {
            out.push(format!("v{}", p.value % 2));
        })
    };
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    source.put(pod("pod2", 2));
    let informer = SharedIndexInformer::builder_with_indexers(
        source.clone(),
        Indexers::new().with(by_value("parity")),
    )
    .build();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    let names = |idx: &str, v: &str| -> Vec<String> {
        let mut n: Vec<String> = informer
            .cache()
            .by_index(idx, v)
            .unwrap()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names("parity", "v1"), ["pod1"]);
    source.put(pod("pod3", 3));
    until("pod3 indexed", || names("parity", "v1").len() == 2).await;

    informer
        .add_indexers(Indexers::new().with(by_value("parity-again")))
        .unwrap();
    assert_eq!(names("parity-again", "v1"), ["pod1", "pod3"]);
    assert_eq!(
        informer.cache().index_values("parity").unwrap(),
        informer.cache().index_values("parity-again").unwrap()
    );
    assert!(matches!(
        informer.add_indexers(Indexers::new().with(by_value("parity"))),
        Err(InformerError::Indexers(StoreError::IndexConflict { .. }))
    ));

    source.put(pod("pod4", 4));
    until("pod4 in the new index", || {
        names("parity-again", "v0").len() == 2
    })
    .await;
    stop(cancel, task).await;
}

/// The DeltaFifo path end to end: per-key deltas, tombstones on a relist.
#[tokio::test(start_paused = true)]
async fn the_delta_fifo_path_announces_every_change() {
    let source = MemorySource::new();
    source.put(pod("a", 1));
    source.put(pod("b", 1));
    let informer = informer(&source).queue(QueueKind::Delta).build();
    let mirror = Mirror::default();
    informer.add_event_handler(mirror.clone()).unwrap();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    for i in 0..50u32 {
        source.put(pod(&format!("p{}", i % 7), i));
        if i % 3 == 0 {
            source.delete(&format!("p{}", (i + 2) % 7));
        }
    }
    source.delete_dropping_watch(&"a".to_owned());
    source.put_dropping_watch(pod("c", 1));
    source.reset_watches();
    caught_up(&informer, &source).await;
    let expected = content(informer.cache());
    until("the mirror", || {
        mirror.0.lock().unwrap().content() == expected
    })
    .await;
    assert!(mirror.0.lock().unwrap().errors.is_empty());
    stop(cancel, task).await;
}

/// Keys seen by a batch are distinct, and the informer relies on it; a queue that does not
/// promise it (the DeltaFifo) is processed one delta at a time.
#[tokio::test(start_paused = true)]
async fn repeated_keys_are_applied_one_by_one() {
    let source = MemorySource::new();
    let informer = informer(&source).build();
    let seen = Recorder::new();
    informer.add_event_handler(seen.clone()).unwrap();
    let processor = started(&informer);
    processor.process(
        vec![
            Delta::Added(stored("a", 0, 1)),
            Delta::Updated(stored("a", 0, 2)),
            Delta::Deleted(DeletedObject::Object(stored("a", 0, 3))),
        ],
        false,
        false,
    );
    until("three", || seen.len() == 3).await;
    assert_eq!(
        seen.take(),
        ["add a 1 later", "update a 1->2", "delete a 3"]
    );
    let keys: HashSet<String> = informer.cache().list_keys().into_iter().collect();
    assert!(keys.is_empty());
    informer.inner.processor.stop();
}

/// The informer hands out a read-only handle: it, a lister and a clone of it see every write
/// the informer makes, as the informer makes it.
#[tokio::test(start_paused = true)]
async fn the_read_only_cache_handle_sees_the_informers_writes() {
    let source = MemorySource::new();
    source.put(pod("pod-1", 1));
    let informer = informer(&source).build();
    let reader = informer.cache().clone();
    assert!(reader.is_empty());
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    assert_eq!(content(&reader), content(informer.cache()));
    assert_eq!(reader.len(), 1);

    let rv = source.put(pod("pod-2", 2));
    until("the reader sees pod-2", || reader.len() == 2).await;
    assert_eq!(reader.resource_version(), Some(rv));
    assert_eq!(
        reader.get_by_key(&"pod-2".to_owned()).map(|p| p.value),
        Some(2)
    );
    source.delete(&"pod-1".to_owned());
    until("the reader sees the delete", || reader.len() == 1).await;
    assert_eq!(reader.snapshot().keys().collect::<Vec<_>>(), ["pod-2"]);
    stop(cancel, task).await;
}
