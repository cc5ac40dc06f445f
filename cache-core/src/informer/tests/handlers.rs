//! Adding and removing handlers, their sync state, isolation, panics, streams and adapters.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;

use super::*;

#[tokio::test(start_paused = true)]
async fn handlers_added_before_the_start_get_the_initial_list() {
    // The source starts at version 1: the first write is version 2.
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    source.put(pod("pod2", 2));
    let informer = informer(&source).build();
    let (a, b) = (Recorder::new(), Recorder::new());
    let reg_a = informer.add_event_handler(a.clone()).unwrap();
    let reg_b = informer.add_event_handler(b.clone()).unwrap();
    assert!(
        !reg_a.has_synced() && !reg_b.has_synced(),
        "not synced before the start"
    );
    assert!(!informer.has_synced());

    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    reg_a.wait_for_sync().await.unwrap();
    reg_b.wait_for_sync().await.unwrap();
    for r in [&a, &b] {
        let mut lines = r.lines();
        lines.sort();
        assert_eq!(lines, ["add pod1 2 initial", "add pod2 3 initial"]);
    }

    source.put(pod("pod3", 3));
    until("pod3 at both", || a.len() == 3 && b.len() == 3).await;
    assert_eq!(a.lines()[2], "add pod3 4 later");
    stop(cancel, task).await;
}

/// client-go's TestAddWhileActive.
#[tokio::test(start_paused = true)]
async fn a_handler_added_while_running_gets_what_is_cached_first() {
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    let informer = informer(&source).build();
    let first = Recorder::new();
    let reg1 = informer.add_event_handler(first.clone()).unwrap();
    assert!(!reg1.has_synced());
    let (cancel, task) = start(&informer);
    reg1.wait_for_sync().await.unwrap();
    assert!(reg1.has_synced());

    let second = Recorder::new();
    let reg2 = informer.add_event_handler(second.clone()).unwrap();
    // Its synthetic add is queued but not handled yet: the task has not run.
    assert!(!reg2.has_synced());
    reg2.wait_for_sync().await.unwrap();
    assert_eq!(second.lines(), ["add pod1 2 initial"]);

    source.put(pod("pod2", 2));
    until("pod2 at both", || first.len() == 2 && second.len() == 2).await;
    assert_eq!(first.lines(), ["add pod1 2 initial", "add pod2 3 later"]);
    assert_eq!(second.lines(), ["add pod1 2 initial", "add pod2 3 later"]);
    stop(cancel, task).await;
}

/// A handler added while changes stream in sees each object added once, and ends with the
/// cache's content: the registration and the processing exclude each other.
#[tokio::test(start_paused = true)]
async fn a_late_handler_misses_nothing_and_gets_nothing_twice() {
    let source = MemorySource::new();
    let informer = informer(&source).build();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    let writer = tokio::spawn({
        let source = source.clone();
        async move {
            for i in 0..600u32 {
                let name = format!("p{}", i % 97);
                if i % 7 == 3 {
                    source.delete(&name);
                } else {
                    source.put(pod(&name, i));
                }
                if i % 5 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let mut mirrors = Vec::new();
    for _ in 0..30 {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let mirror = Mirror::default();
        informer.add_event_handler(mirror.clone()).unwrap();
        mirrors.push(mirror);
    }
    writer.await.unwrap();
    let final_rv = source.resource_version();
    until("the cache to catch up", || {
        informer.cache().resource_version() == Some(final_rv.clone())
    })
    .await;
    let expected = content(informer.cache());
    until("every mirror to catch up", || {
        mirrors
            .iter()
            .all(|m| m.0.lock().unwrap().content() == expected)
    })
    .await;
    for m in &mirrors {
        let errors = &m.0.lock().unwrap().errors;
        assert!(errors.is_empty(), "{errors:?}");
    }
    stop(cancel, task).await;
}

/// client-go's TestRemoveWhileActive and TestSharedInformerRemoveHandler.
#[tokio::test(start_paused = true)]
async fn a_removed_handler_gets_nothing_more() {
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    let informer = informer(&source).build();
    let (kept, removed) = (Recorder::new(), Recorder::new());
    informer.add_event_handler(kept.clone()).unwrap();
    let reg = informer.add_event_handler(removed.clone()).unwrap();
    assert_eq!(informer.handler_count(), 2);
    let (cancel, task) = start(&informer);
    until("pod1", || removed.len() == 1).await;

    assert!(informer.remove_event_handler(&reg));
    assert!(reg.is_removed());
    assert_eq!(informer.handler_count(), 1);
    assert!(
        !informer.remove_event_handler(&reg),
        "a second removal does nothing"
    );
    assert_eq!(informer.handler_count(), 1);

    source.put(pod("pod2", 2));
    until("pod2 at the kept handler", || kept.len() == 2).await;
    reg.wait_stopped().await;
    assert_eq!(removed.lines(), ["add pod1 2 initial"]);
    stop(cancel, task).await;
}

/// client-go's TestSharedInformerRemoveForeignHandler and TestSharedInformerMultipleRegistration.
#[tokio::test(start_paused = true)]
async fn registrations_are_per_informer_and_per_call() {
    let source = MemorySource::new();
    let a = informer(&source).build();
    let b = informer(&source).build();
    let handler = Arc::new(Recorder::new());
    let first = a.add_event_handler(handler.clone()).unwrap();
    let second = a.add_event_handler(handler.clone()).unwrap();
    assert_eq!(a.handler_count(), 2);

    assert!(
        !b.remove_event_handler(&first),
        "another informer's registration"
    );
    assert_eq!((a.handler_count(), b.handler_count()), (2, 0));
    tokio::time::timeout(Duration::from_secs(1), b.shut_down_event_handler(&first))
        .await
        .expect("does not wait for another informer's handler");
    assert!(!first.is_removed());

    assert!(a.remove_event_handler(&first));
    assert_eq!(a.handler_count(), 1);
    assert!(!second.is_removed());

    // The same handler registered twice hears everything twice.
    source.put(pod("pod1", 1));
    let third = a.add_event_handler(handler.clone()).unwrap();
    let (cancel, task) = start(&a);
    until("two adds", || handler.len() == 2).await;
    assert_eq!(
        handler.lines(),
        ["add pod1 2 initial", "add pod1 2 initial"]
    );
    second.wait_for_sync().await.unwrap();
    third.wait_for_sync().await.unwrap();
    stop(cancel, task).await;
}

/// client-go's TestShutDownEventHandler_Lifecycles.
#[tokio::test(start_paused = true)]
async fn shut_down_event_handler_returns_promptly_when_nothing_runs() {
    let source = MemorySource::new();
    let informer = informer(&source).build();
    let never_started = informer.add_event_handler(Recorder::new()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(1),
        informer.shut_down_event_handler(&never_started),
    )
    .await
    .expect("a handler of an informer that never ran has no task");
    assert_eq!(informer.handler_count(), 0);

    let before = informer.add_event_handler(Recorder::new()).unwrap();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    let after = informer.add_event_handler(Recorder::new()).unwrap();
    for reg in [&before, &after] {
        tokio::time::timeout(
            Duration::from_secs(1),
            informer.shut_down_event_handler(reg),
        )
        .await
        .expect("an idle handler ends at once");
        assert!(reg.is_removed());
    }
    assert_eq!(informer.handler_count(), 0);
    stop(cancel, task).await;
}

/// A handler that blocks in its callback until released, telling when it entered.
struct Blocking {
    entered: std::sync::mpsc::Sender<String>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
    seen: Recorder,
}

impl EventHandler<Pod> for Blocking {
    fn on_add(&self, obj: Arc<Pod>, is_in_initial_list: bool) {
        let _ = self.entered.send(obj.name.clone());
        let _ = self.release.lock().unwrap().recv();
        self.seen.on_add(obj, is_in_initial_list);
    }
}

fn blocking() -> (
    Blocking,
    std::sync::mpsc::Receiver<String>,
    std::sync::mpsc::Sender<()>,
    Recorder,
) {
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let seen = Recorder::new();
    let handler = Blocking {
        entered: entered_tx,
        release: Mutex::new(release_rx),
        seen: seen.clone(),
    };
    (handler, entered, release, seen)
}

/// Real time on a multi-thread runtime: the handler really blocks a worker.
async fn real_until(what: &str, cond: impl Fn() -> bool) {
    let wait = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// client-go's TestRemoveEventHandler_AsynchronousPanic and _SynchronousShutdown: removal does
/// not wait for a callback in progress; `wait_stopped` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_is_asynchronous_and_wait_stopped_waits_for_the_callback() {
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    let informer = informer(&source).build();
    let (handler, entered, release, seen) = blocking();
    let reg = informer.add_event_handler(handler).unwrap();
    let (cancel, task) = start(&informer);
    let name = tokio::task::spawn_blocking(move || entered.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(name, "pod1");

    assert!(
        informer.remove_event_handler(&reg),
        "returns while the callback runs"
    );
    let early = tokio::time::timeout(Duration::from_millis(100), reg.wait_stopped()).await;
    assert!(early.is_err(), "the callback is still in progress");
    assert!(seen.lines().is_empty());

    release.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), reg.wait_stopped())
        .await
        .expect("ends once the callback returns");
    assert_eq!(seen.lines(), ["add pod1 2 initial"]);
    stop(cancel, task).await;
}

/// A blocked handler holds up neither the other handlers nor the cache; it gets everything,
/// in order, once released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_blocks_neither_the_others_nor_the_cache() {
    let source = MemorySource::new();
    let informer = informer(&source).build();
    let (slow, entered, release, slow_seen) = blocking();
    informer.add_event_handler(slow).unwrap();
    let fast = Recorder::new();
    informer.add_event_handler(fast.clone()).unwrap();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();

    source.put(pod("p000", 0));
    let first = tokio::task::spawn_blocking(move || {
        let first = entered.recv().unwrap();
        (first, entered)
    });
    let (first, entered) = first.await.unwrap();
    assert_eq!(first, "p000");
    // The slow handler is stuck in its first callback.
    for i in 1..200u32 {
        source.put(pod(&format!("p{i:03}"), i));
    }
    real_until("the fast handler", || fast.len() == 200).await;
    real_until("the cache", || informer.cache().len() == 200).await;
    assert!(slow_seen.lines().is_empty());

    for _ in 0..200 {
        release.send(()).unwrap();
    }
    real_until("the slow handler", || slow_seen.len() == 200).await;
    let names: Vec<String> = (0..200u32).map(|i| format!("p{i:03}")).collect();
    let got: Vec<String> = slow_seen
        .lines()
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(got, names, "in order");
    assert_eq!(entered.try_iter().count(), 199);
    stop(cancel, task).await;
}

/// A handler that panics on one object.
struct PanicsOn {
    name: &'static str,
    seen: Recorder,
}

impl EventHandler<Pod> for PanicsOn {
    fn on_add(&self, obj: Arc<Pod>, is_in_initial_list: bool) {
        assert_ne!(obj.name, self.name, "handler bug");
        self.seen.on_add(obj, is_in_initial_list);
    }
}

/// client-go's TestEventPanics, and better: the panicking handler still syncs (client-go's
/// known issue 129024 is that it never does).
#[tokio::test(start_paused = true)]
async fn a_panicking_handler_loses_that_notification_and_goes_on() {
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.clone());
    let source = MemorySource::new();
    for name in ["pod1", "bad", "pod3"] {
        source.put(pod(name, 1));
    }
    let informer = informer(&source).build();
    let panicky = Recorder::new();
    let panicky_reg = informer
        .add_event_handler_with(
            PanicsOn {
                name: "bad",
                seen: panicky.clone(),
            },
            HandlerOptions::new().name("panicky"),
        )
        .unwrap();
    let calm = Recorder::new();
    let calm_reg = informer.add_event_handler(calm.clone()).unwrap();
    let (cancel, task) = start(&informer);
    calm_reg.wait_for_sync().await.unwrap();
    panicky_reg
        .wait_for_sync()
        .await
        .expect("the lost add counts as handled");
    assert_eq!(calm.len(), 3);
    assert_eq!(panicky.names(), ["pod1", "pod3"]);

    source.put(pod("bad2", 1));
    source.put(pod("pod4", 1));
    until("pod4", || panicky.len() == 4 && calm.len() == 5).await;
    assert_eq!(panicky.names(), ["bad2", "pod1", "pod3", "pod4"]);
    let panics: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("Observed a panic"))
        .collect();
    assert_eq!(panics.len(), 1, "{panics:?}");
    assert!(panics[0].starts_with("ERROR"));
    assert!(panics[0].contains("handler=panicky"), "{}", panics[0]);
    assert!(
        panics[0].contains("\"bad\""),
        "names the key: {}",
        panics[0]
    );
    assert!(
        panics[0].contains("handler bug"),
        "carries the message: {}",
        panics[0]
    );
    stop(cancel, task).await;
}

#[tokio::test(start_paused = true)]
async fn the_event_stream_yields_what_a_handler_gets_and_ends_at_the_stop() {
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    let informer = informer(&source).build();
    let mut events = informer.events().unwrap();
    let (cancel, task) = start(&informer);
    let first = events.next().await.unwrap();
    assert_eq!(describe(&first), "add pod1 2 initial");
    events.registration().wait_for_sync().await.unwrap();

    let rv2 = source.put(pod("pod1", 2));
    let rv3 = source.delete(&"pod1".to_owned()).unwrap();
    assert_eq!(
        describe(&events.next().await.unwrap()),
        format!("update pod1 2->{}", rv2.as_str())
    );
    assert_eq!(
        describe(&events.next().await.unwrap()),
        format!("delete pod1 {}", rv3.as_str())
    );

    // Events buffered at the stop are still yielded, then the stream ends.
    source.put(pod("pod2", 1));
    until("pod2 cached", || informer.cache().len() == 1).await;
    stop(cancel, task).await;
    assert!(events.next().await.is_some());
    assert!(events.next().await.is_none());
    tokio::time::timeout(Duration::from_secs(1), events.registration().wait_stopped())
        .await
        .expect("an ended stream has stopped");
}

#[tokio::test(start_paused = true)]
async fn dropping_a_stream_removes_it() {
    let source = MemorySource::new();
    let informer = informer(&source).build();
    let events = informer.events().unwrap();
    let registration = events.registration().clone();
    assert_eq!(informer.handler_count(), 1);
    drop(events);
    assert_eq!(informer.handler_count(), 0);
    assert!(registration.is_removed());
    tokio::time::timeout(Duration::from_secs(1), registration.wait_stopped())
        .await
        .expect("a dropped stream has stopped");
}

/// client-go's TestTypedFilteringResourceEventHandler.
#[test]
fn the_filtering_handler_maps_updates_by_what_the_filter_says() {
    let seen = Recorder::new();
    let even = FilteringHandler::new(|p: &Pod| p.value.is_multiple_of(2), seen.clone());
    let p = |value| stored("p", value, u64::from(value));
    even.on_add(p(1), true);
    even.on_add(p(2), true);
    even.on_add(p(4), false);
    even.on_update(p(2), p(4)); // both pass
    even.on_update(p(1), p(2)); // enters
    even.on_update(p(2), p(3)); // leaves
    even.on_update(p(1), p(3)); // neither
    even.on_delete(DeletedObject::Object(p(3)));
    even.on_delete(DeletedObject::Object(p(2)));
    even.on_delete(DeletedObject::Tombstone(
        crate::fifo::DeletedFinalStateUnknown {
            key: "p".into(),
            object: Some(p(5)),
        },
    ));
    even.on_delete(DeletedObject::Tombstone(
        crate::fifo::DeletedFinalStateUnknown {
            key: "q".into(),
            object: None,
        },
    ));
    assert_eq!(
        seen.lines(),
        [
            "add p 2 initial",
            "add p 4 later",
            "update p 2->4",
            "add p 2 later",
            "delete p 2",
            "delete p 2",
            "tombstone q -",
        ]
    );
}

#[test]
fn handler_fns_call_only_what_was_given() {
    let adds = Arc::new(AtomicUsize::new(0));
    let deletes = Arc::new(AtomicUsize::new(0));
    let handler = HandlerFns::new()
        .added({
            let adds = adds.clone();
            move |_: Arc<Pod>, initial| {
                assert!(initial);
                adds.fetch_add(1, Ordering::Relaxed);
            }
        })
        .deleted({
            let deletes = deletes.clone();
            move |d: DeletedObject<Pod>| {
                assert_eq!(d.key(), "p");
                deletes.fetch_add(1, Ordering::Relaxed);
            }
        });
    handler.on_add(stored("p", 1, 1), true);
    handler.on_update(stored("p", 1, 1), stored("p", 2, 2)); // no closure: nothing
    handler.on_delete(DeletedObject::Object(stored("p", 2, 2)));
    assert_eq!(adds.load(Ordering::Relaxed), 1);
    assert_eq!(deletes.load(Ordering::Relaxed), 1);

    let nothing: HandlerFns<Pod> = HandlerFns::new();
    nothing.on_add(stored("p", 1, 1), false);
    nothing.on_update(stored("p", 1, 1), stored("p", 1, 1));
    nothing.on_delete(DeletedObject::Object(stored("p", 1, 1)));
}
