//! Starting, stopping, refusing handlers after the stop, and leaving no task behind.

use rand::{RngExt, SeedableRng};

use super::*;

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until the runtime has no more than `n` tasks alive: a finished task leaves the count
/// just after its handle sees it finish.
async fn tasks_back_to(n: usize) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while alive_tasks() > n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} tasks alive, expected {n}", alive_tasks()));
}

/// client-go's TestStateSharedInformer.
#[tokio::test(start_paused = true)]
async fn started_and_stopped_states() {
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    let informer = informer(&source).build();
    let seen = Recorder::new();
    informer.add_event_handler(seen.clone()).unwrap();
    assert!(!informer.is_started() && !informer.is_stopped());
    assert_eq!(informer.last_sync_resource_version(), None);
    assert_eq!(informer.reflector_stats(), ReflectorStats::default());

    let (cancel, task) = start(&informer);
    until("pod1", || seen.len() == 1).await;
    assert!(informer.is_started() && !informer.is_stopped());
    assert_eq!(informer.reflector_stats().lists, 1);

    stop(cancel, task).await;
    assert!(informer.is_started(), "still started");
    assert!(informer.is_stopped());
    assert!(informer.has_synced(), "synced stays true");
}

/// client-go's TestAddOnStoppedSharedInformer and TestRemoveOnStoppedSharedInformer.
#[tokio::test(start_paused = true)]
async fn a_stopped_informer_refuses_handlers() {
    let source = MemorySource::new();
    let informer = informer(&source).build();
    let reg = informer.add_event_handler(Recorder::new()).unwrap();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    stop(cancel, task).await;

    let refused = informer
        .add_event_handler_with(Recorder::new(), HandlerOptions::new().name("late"))
        .unwrap_err();
    assert_eq!(
        refused,
        InformerError::HandlerAfterStop {
            handler: "late".into()
        }
    );
    assert!(
        refused
            .to_string()
            .ends_with("was not added to shared informer because it has stopped already"),
        "{refused}"
    );
    assert!(matches!(
        informer.events(),
        Err(InformerError::HandlerAfterStop { .. })
    ));
    assert_eq!(
        informer.add_indexers(Indexers::new()),
        Err(InformerError::IndexersAfterStop)
    );
    // The handlers went with the stop: removing one is a harmless no-op.
    assert!(reg.is_removed());
    assert!(!informer.remove_event_handler(&reg));
    assert_eq!(informer.handler_count(), 0);
    tokio::time::timeout(
        Duration::from_secs(1),
        informer.shut_down_event_handler(&reg),
    )
    .await
    .expect("already stopped");
}

#[tokio::test(start_paused = true)]
async fn an_informer_runs_once() {
    let source = MemorySource::new();
    let informer = informer(&source).build();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(1),
        informer.run(CancellationToken::new()),
    )
    .await
    .expect("a second run returns at once");
    assert!(!informer.is_stopped());
    stop(cancel, task).await;
    tokio::time::timeout(
        Duration::from_secs(1),
        informer.run(CancellationToken::new()),
    )
    .await
    .expect("a run after the stop returns at once");
    assert_eq!(informer.reflector_stats().lists, 1);
}

#[tokio::test(start_paused = true)]
async fn wait_for_sync_fails_naming_the_cache_when_stopped_first() {
    let source = MemorySource::with_options(
        crate::source::memory::MemorySourceOptions::default().watch_list(false),
    );
    source.fail_next_lists(
        usize::MAX >> 48,
        crate::source::SourceError::new(crate::source::SourceErrorKind::Other, "down"),
    );
    let informer = informer(&source).build();
    let reg = informer
        .add_event_handler_with(Recorder::new(), HandlerOptions::new().name("recorder"))
        .unwrap();
    let (cancel, task) = start(&informer);
    let waiter = tokio::spawn({
        let informer = informer.clone();
        async move { informer.wait_for_sync().await }
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!informer.has_synced());
    stop(cancel, task).await;
    assert_eq!(waiter.await.unwrap(), Err(SyncError::stopped("pods")));
    assert_eq!(
        reg.wait_for_sync().await,
        Err(SyncError::stopped("recorder"))
    );
    // Both at once: each is named, in the order given.
    let err = wait_for_sync(&[&reg, &informer]).await.unwrap_err();
    assert_eq!(err.names(), ["recorder", "pods"]);
}

/// client-go's TestShutdown: with handlers added before and after the start and a stream, and
/// for an informer that never ran, nothing is left running.
#[tokio::test(start_paused = true)]
async fn no_task_is_left_after_the_stop() {
    let baseline = alive_tasks();
    let source = MemorySource::new();
    for i in 0..20 {
        source.put(pod(&format!("p{i}"), i));
    }
    let never_run = informer(&source).build();
    never_run.add_event_handler(Recorder::new()).unwrap();
    let _never_run_stream = never_run.events().unwrap();
    assert_eq!(alive_tasks(), baseline, "nothing runs before the start");

    let informer = informer(&source).resync(Duration::from_secs(1)).build();
    informer.add_event_handler(Recorder::new()).unwrap();
    let mut events = informer.events().unwrap();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    let late = informer.add_event_handler(Recorder::new()).unwrap();
    let removed = informer.add_event_handler(Recorder::new()).unwrap();
    informer.remove_event_handler(&removed);
    for i in 0..20 {
        source.put(pod(&format!("p{i}"), i + 100));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(late.has_synced());

    stop(cancel, task).await;
    tasks_back_to(baseline).await;
    // The stream ends once drained, with no task behind it.
    let mut drained = 0;
    while futures::StreamExt::next(&mut events).await.is_some() {
        drained += 1;
    }
    assert!(drained >= 40);
    assert_eq!(alive_tasks(), baseline);
}

/// Dropping `run` instead of cancelling still stops the handlers.
#[tokio::test(start_paused = true)]
async fn dropping_run_stops_the_handlers() {
    let baseline = alive_tasks();
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    let informer = informer(&source).build();
    let reg = informer.add_event_handler(Recorder::new()).unwrap();
    let (_cancel, task) = start(&informer);
    reg.wait_for_sync().await.unwrap();
    task.abort();
    let _ = task.await;
    assert!(informer.is_stopped());
    tokio::time::timeout(Duration::from_secs(1), reg.wait_stopped())
        .await
        .expect("the handler's task ends");
    tasks_back_to(baseline).await;
}

/// client-go's TestSharedInformerHandlerAbuse: handlers come and go at random while events
/// flow and the informer stops; every refusal is for the stop, and nothing is left running.
#[tokio::test(start_paused = true)]
async fn handlers_coming_and_going_while_events_flow_and_the_informer_stops() {
    let baseline = alive_tasks();
    let source = MemorySource::new();
    let informer = informer(&source).resync(Duration::from_secs(1)).build();
    let (cancel, task) = start(&informer);
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..20u64)
        .map(|seed| {
            let informer = informer.clone();
            let refused = refused.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut regs: Vec<HandlerRegistration> = Vec::new();
                for _ in 0..200 {
                    if regs.is_empty() || rng.random_bool(0.5) {
                        let period = Duration::from_millis(rng.random_range(0..3000));
                        match informer.add_event_handler_with(
                            Mirror::default(),
                            HandlerOptions::new().resync_period(period),
                        ) {
                            Ok(reg) => regs.push(reg),
                            Err(InformerError::HandlerAfterStop { .. }) => {
                                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Err(e) => panic!("unexpected {e}"),
                        }
                    } else {
                        let reg = regs.swap_remove(rng.random_range(0..regs.len()));
                        informer.remove_event_handler(&reg);
                    }
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
                }
            })
        })
        .collect();
    for i in 0..2000u32 {
        let name = format!("p{}", i % 50);
        if i % 9 == 0 {
            source.delete(&name);
        } else {
            source.put(pod(&name, i));
        }
        if i == 1500 {
            cancel.cancel();
        }
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    stop(cancel, task).await;
    for w in workers {
        w.await.unwrap();
    }
    assert!(refused.load(std::sync::atomic::Ordering::Relaxed) > 0);
    tasks_back_to(baseline).await;
}

/// client-go's TestSharedInformerInitializationRace, on threads: handlers added while the
/// informer starts each get the initial list exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_added_while_the_informer_starts_get_the_list_once() {
    let source = MemorySource::new();
    for i in 0..200 {
        source.put(pod(&format!("p{i:03}"), i));
    }
    let informer = informer(&source).build();
    let adders: Vec<_> = (0..4)
        .map(|_| {
            let informer = informer.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|_| {
                        let mirror = Mirror::default();
                        let reg = informer.add_event_handler(mirror.clone()).unwrap();
                        std::thread::yield_now();
                        (mirror, reg)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let (cancel, task) = start(&informer);
    let mirrors: Vec<(Mirror, HandlerRegistration)> =
        adders.into_iter().flat_map(|t| t.join().unwrap()).collect();
    informer.wait_for_sync().await.unwrap();
    let expected = content(informer.cache());
    assert_eq!(expected.len(), 200);
    for (mirror, reg) in &mirrors {
        tokio::time::timeout(Duration::from_secs(30), reg.wait_for_sync())
            .await
            .expect("every handler syncs in time")
            .expect("every handler syncs");
        let picture = mirror.0.lock().unwrap();
        assert_eq!(picture.content(), expected);
        assert!(picture.errors.is_empty(), "{:?}", picture.errors);
    }
    stop(cancel, task).await;
}

/// The informer, its registrations and streams go between tasks, and `run` can be spawned.
#[tokio::test]
async fn the_informer_and_its_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SharedIndexInformer<Pod>>();
    send_sync::<HandlerRegistration>();
    send_sync::<InformerError>();
    let informer = informer(&MemorySource::new()).build();
    let stream = informer.events().unwrap();
    send(&stream);
    send(&informer.run(CancellationToken::new()));
    send(&informer.wait_for_sync());
    send(&stream.registration().wait_for_sync());
    send(&stream.registration().wait_stopped());
    send(&informer.shut_down_event_handler(stream.registration()));
}
