//! Waiting for a sync that cannot come: an informer never run warns, a stopped one answers
//! false; and the informer's options and default name.

use crate::controller::{Action, Controller};
use crate::reflector::ReflectorOptions;

use super::*;

/// The warnings about an informer that was never run, among the captured log lines.
fn never_run_warnings(logs: &LogCapture) -> Vec<String> {
    logs.lines()
        .into_iter()
        .filter(|l| l.starts_with("WARN") && l.contains("never run"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn waiting_on_an_informer_that_was_never_run_warns_with_its_name() {
    let warnings = LogCapture::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let source = MemorySource::new();
    let informer = informer(&source).build();

    let waited = tokio::time::timeout(
        NEVER_RUN_WARNING_PERIOD * 2 + Duration::from_secs(1),
        informer.wait_for_sync(),
    )
    .await;
    assert!(waited.is_err(), "an informer never run never syncs");
    let lines = never_run_warnings(&warnings);
    assert_eq!(lines.len(), 2, "one warning per period: {lines:?}");
    assert!(lines[0].contains("informer=pods"), "{}", lines[0]);
}

#[tokio::test(start_paused = true)]
async fn a_running_informer_that_is_slow_to_sync_is_not_called_never_run() {
    let warnings = LogCapture::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    let informer = informer(&source).build();
    let waiting = tokio::spawn({
        let informer = informer.clone();
        async move { informer.wait_for_sync().await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cancel, task) = start(&informer);
    waiting.await.unwrap().unwrap();
    tokio::time::sleep(NEVER_RUN_WARNING_PERIOD * 2).await;
    assert_eq!(never_run_warnings(&warnings), Vec::<String>::new());
    stop(cancel, task).await;
}

#[tokio::test(start_paused = true)]
async fn waiting_on_a_stopped_informer_fails_at_once_naming_it() {
    let source = MemorySource::new();
    let informer = informer(&source).build();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    stop(cancel, task).await;
    // It synced before the stop: still synced.
    informer.wait_for_sync().await.unwrap();

    // Stopped before its first list: an error naming it, without waiting.
    let unsynced = informer_that_stops_before_it_syncs().await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        unsynced.wait_for_sync().await,
        Err(SyncError::stopped(unsynced.name()))
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// An informer whose source never answers a list, stopped.
async fn informer_that_stops_before_it_syncs() -> SharedIndexInformer<Pod> {
    let source =
        crate::source::ListWatch::new(|_| std::future::pending(), |_| std::future::pending());
    let informer = SharedIndexInformer::builder_with_indexers(source, Indexers::new())
        .name("silent")
        .build();
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (informer, cancel) = (informer.clone(), cancel.clone());
        async move { informer.run(cancel).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!informer.has_synced());
    stop(cancel, task).await;
    informer
}

#[tokio::test(start_paused = true)]
async fn a_controller_on_an_informer_that_was_never_run_warns_with_its_name() {
    let warnings = LogCapture::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let source = MemorySource::new();
    let informer = informer(&source).build();
    let controller = Controller::new(&informer).unwrap();
    let handle = controller.handle();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        |_: Arc<Pod>, _| async { Ok::<_, std::convert::Infallible>(Action::await_change()) },
        Arc::new(()),
        cancel.clone(),
    ));
    tokio::time::sleep(NEVER_RUN_WARNING_PERIOD + Duration::from_secs(1)).await;
    assert!(!handle.is_ready());
    let lines = never_run_warnings(&warnings);
    assert!(
        lines.iter().any(|l| l.contains("informer=pods")),
        "{lines:?}"
    );
    cancel.cancel();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_page_size_option_reaches_the_reflector() {
    let source = MemorySource::new();
    for i in 0..5 {
        source.put(pod(&format!("pod{i}"), i));
    }
    let informer = informer(&source)
        .reflector_options(ReflectorOptions::default().use_watch_list(false))
        .page_size(2)
        .build();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    assert_eq!(informer.cache().len(), 5);
    assert_eq!(source.stats().lists, 3, "five objects in pages of two");
    stop(cancel, task).await;
}

#[test]
fn reflector_options_setters_set_their_fields() {
    let options = ReflectorOptions::default()
        .resync_period(Duration::from_secs(3))
        .page_size(Some(7))
        .min_watch_timeout(Duration::from_secs(600))
        .max_internal_error_retry(Duration::from_secs(4))
        .use_watch_list(false)
        .max_batch(9);
    assert_eq!(options.resync_period, Duration::from_secs(3));
    assert_eq!(options.page_size, Some(7));
    assert_eq!(options.min_watch_timeout, Duration::from_secs(600));
    assert_eq!(options.max_internal_error_retry, Duration::from_secs(4));
    assert!(!options.use_watch_list);
    assert_eq!(options.max_batch, 9);
}

#[test]
fn informers_and_controllers_default_to_the_short_type_name() {
    let source = MemorySource::<Pod>::new();
    let informer = SharedIndexInformer::builder_with_indexers(source, Indexers::new()).build();
    assert_eq!(informer.name(), "Item");
    let controller = Controller::for_cache(informer.cache().clone());
    assert!(
        format!("{controller:?}").contains(r#"name: "Item""#),
        "{controller:?}"
    );
}
