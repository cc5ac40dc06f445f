//! Several informers at once: waiting for their syncs together (client-go's
//! `WaitForCacheSync` / `WaitForNamedCacheSync`) and the informer factory (client-go's
//! `SharedInformerFactory`, shared_informer_factory tests).

use std::sync::atomic::{AtomicUsize, Ordering};

use tracing::field::{Field, Visit};
use tracing::span;

use super::*;

/// A second type, so that waits and the factory mix types.
#[derive(Clone, Debug)]
struct Node {
    name: String,
    rv: Option<ResourceVersion>,
}

impl Object for Node {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.rv.clone()
    }
    fn set_resource_version(&mut self, rv: ResourceVersion) {
        self.rv = Some(rv);
    }
}

impl Indexed for Node {}

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        rv: None,
    }
}

/// A third type for the factory: indexed by its own `Indexed` impl.
#[derive(Clone, Debug)]
struct Svc {
    name: String,
    port: u16,
    rv: Option<ResourceVersion>,
}

impl Object for Svc {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.rv.clone()
    }
    fn set_resource_version(&mut self, rv: ResourceVersion) {
        self.rv = Some(rv);
    }
}

const PORT: crate::Index<Svc, u16> = crate::Index::new("port");

impl Indexed for Svc {
    fn indexers() -> Indexers<Self> {
        Indexers::new().with(Indexer::for_index(PORT, |s: &Svc| [s.port]))
    }
}

fn svc(name: &str, port: u16) -> Svc {
    Svc {
        name: name.into(),
        port,
        rv: None,
    }
}

fn run_informer<T: Object>(
    informer: &SharedIndexInformer<T>,
    cancel: &CancellationToken,
) -> JoinHandle<()> {
    let (informer, cancel) = (informer.clone(), cancel.clone());
    tokio::spawn(async move { informer.run(cancel).await })
}

// ---------------------------------------------------------------------------------------------
// Waiting for several caches

#[tokio::test(start_paused = true)]
async fn one_wait_for_informers_of_different_types() {
    let pods_source = MemorySource::new();
    pods_source.put(pod("p1", 1));
    let nodes_source = MemorySource::new();
    nodes_source.put(node("n1"));
    nodes_source.set_delay(Duration::from_secs(5));
    let pods = informer(&pods_source).build();
    let nodes = SharedIndexInformer::<Node>::builder(nodes_source.clone())
        .name("nodes")
        .build();
    assert_eq!(wait_for_sync(&[]).await, Ok(()), "nothing to wait for");

    let cancel = CancellationToken::new();
    let tasks = [run_informer(&pods, &cancel), run_informer(&nodes, &cancel)];
    let start = tokio::time::Instant::now();
    wait_for_sync(&[&pods, &nodes]).await.unwrap();
    // It waited for the slow one, and both caches are filled.
    assert!(start.elapsed() >= Duration::from_secs(5));
    assert!(pods.has_synced() && nodes.has_synced());
    assert_eq!((pods.cache().len(), nodes.cache().len()), (1, 1));
    assert!(pending_syncs(&[&pods, &nodes]).is_empty());
    cancel.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_cache_that_stops_unsynced_ends_the_wait_at_once_naming_it() {
    let slow = MemorySource::new();
    slow.set_delay(Duration::from_secs(3600));
    let stopping = informer(&slow).name("stopping").build();
    // Never started: it alone would keep the wait going forever.
    let never = SharedIndexInformer::<Node>::builder(MemorySource::new())
        .name("never")
        .build();
    let cancel = CancellationToken::new();
    let task = run_informer(&stopping, &cancel);
    let waiting = tokio::spawn({
        let (stopping, never) = (stopping.clone(), never.clone());
        async move { wait_for_sync(&[&never, &stopping]).await }
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!waiting.is_finished());
    assert_eq!(pending_syncs(&[&never, &stopping]), ["never", "stopping"]);
    cancel.cancel();
    let err = waiting.await.unwrap().unwrap_err();
    assert_eq!(
        err,
        SyncError::stopped("stopping"),
        "stopped before it synced"
    );
    assert_eq!(err.to_string(), r#""stopping" stopped before it synced"#);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_error_names_every_cache_found_stopped_in_their_order() {
    let slow = MemorySource::new();
    slow.set_delay(Duration::from_secs(3600));
    let synced_source = MemorySource::new();
    synced_source.put(pod("p1", 1));
    let (first, second) = (
        informer(&slow).name("first").build(),
        informer(&slow).name("second").build(),
    );
    let synced = informer(&synced_source).name("synced").build();
    let never = SharedIndexInformer::<Node>::builder(MemorySource::new())
        .name("never")
        .build();
    let cancel = CancellationToken::new();
    let tasks = [
        run_informer(&second, &cancel),
        run_informer(&first, &cancel),
    ];
    let keep = CancellationToken::new();
    let synced_task = run_informer(&synced, &keep);
    synced.wait_for_sync().await.unwrap();
    cancel.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    let err = wait_for_sync(&[&second, &never, &synced, &first])
        .await
        .unwrap_err();
    assert_eq!(err.names(), ["second", "first"], "in the order given");
    assert_eq!(
        err.to_string(),
        r#""second" and "first" stopped before they synced"#
    );
    let err = wait_for_named_sync("scheduler", &[&synced, &first])
        .await
        .unwrap_err();
    assert_eq!(err, SyncError::stopped("first"));
    keep.cancel();
    synced_task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn handler_registrations_are_awaited_like_informers() {
    let source = MemorySource::new();
    source.put(pod("p1", 1));
    let pods = informer(&source).build();
    let seen = Recorder::new();
    let registration = pods
        .add_event_handler_with(seen.clone(), HandlerOptions::new().name("recorder"))
        .unwrap();
    assert_eq!(pending_syncs(&[&registration]), ["recorder"]);
    let cancel = CancellationToken::new();
    let task = run_informer(&pods, &cancel);
    wait_for_sync(&[&registration, &pods]).await.unwrap();
    // The registration synced: its handler has had the initial add.
    let lines = seen.lines();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("add p1 ") && lines[0].ends_with(" initial"),
        "{lines:?}"
    );
    cancel.cancel();
    task.await.unwrap();
}

/// Captures the events logged on this thread, one line of `field=value`s each.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, "{}={value} ", field.name());
    }
}

impl tracing::Subscriber for Logs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("{} ", event.metadata().level());
        event.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

impl Logs {
    /// The lines about `controller`, without that field.
    fn about(&self, controller: &str) -> Vec<String> {
        let tag = format!("controller={controller} ");
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&tag))
            .map(|l| l.replace(&tag, "").trim_end().to_owned())
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn the_named_wait_logs_the_late_caches_by_name() {
    let logs = Logs::default();
    let _guard = tracing::dispatcher::set_default(&tracing::Dispatch::new(logs.clone()));
    let pods_source = MemorySource::new();
    let nodes_source = MemorySource::new();
    nodes_source.set_delay(Duration::from_secs(25));
    let svcs_source = MemorySource::new();
    svcs_source.set_delay(Duration::from_secs(15));
    let pods = informer(&pods_source).build();
    let nodes = SharedIndexInformer::<Node>::builder(nodes_source.clone())
        .name("nodes")
        .build();
    let svcs = SharedIndexInformer::<Svc>::builder(svcs_source.clone())
        .name("services")
        .build();
    let cancel = CancellationToken::new();
    let tasks = [
        run_informer(&pods, &cancel),
        run_informer(&nodes, &cancel),
        run_informer(&svcs, &cancel),
    ];
    let start = tokio::time::Instant::now();
    let caches: [&dyn CacheSync; 3] = [&pods, &nodes, &svcs];
    wait_for_named_sync_every("scheduler", &caches, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_secs(25));
    assert_eq!(
        logs.about("scheduler"),
        [
            "INFO message=Waiting for caches to sync",
            // At 10 s both slow ones are late; at 20 s only the nodes.
            "WARN message=caches not synced yet late=nodes, services",
            "WARN message=caches not synced yet late=nodes",
            "INFO message=Caches are synced",
        ]
    );

    // A cache that stops first is named.
    let stuck = SharedIndexInformer::<Node>::builder(nodes_source.clone())
        .name("stuck-nodes")
        .build();
    nodes_source.set_delay(Duration::from_secs(3600));
    let stop_stuck = CancellationToken::new();
    let stuck_task = run_informer(&stuck, &stop_stuck);
    let waiting = tokio::spawn({
        let stuck = stuck.clone();
        async move { wait_for_named_sync("autoscaler", &[&stuck]).await }
    });
    tokio::time::sleep(DEFAULT_SYNC_REPORT_INTERVAL + Duration::from_secs(1)).await;
    stop_stuck.cancel();
    assert_eq!(
        waiting.await.unwrap(),
        Err(SyncError::stopped("stuck-nodes"))
    );
    stuck_task.await.unwrap();
    assert_eq!(
        logs.about("autoscaler"),
        [
            "INFO message=Waiting for caches to sync",
            "WARN message=caches not synced yet late=stuck-nodes",
            r#"WARN message=unable to sync caches error="stuck-nodes" stopped before it synced"#,
        ]
    );
    cancel.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The informer factory

#[tokio::test(start_paused = true)]
async fn the_factory_hands_out_one_informer_per_type_source_and_options() {
    let factory = InformerFactory::new();
    let nodes_source = MemorySource::new();
    let made = Arc::new(AtomicUsize::new(0));
    let make = || {
        made.fetch_add(1, Ordering::SeqCst);
        nodes_source.clone()
    };
    let defaults = InformerOptions::new();
    let a = factory.informer::<Node, _>("memory", &defaults, make);
    let b = factory.informer::<Node, _>("memory", &defaults, make);
    assert!(a.cache().same_cache(b.cache()), "the same informer");
    assert_eq!(made.load(Ordering::SeqCst), 1, "the source is made once");
    assert_eq!(a.name(), "memory/Node");

    // Another source name, other options, another type: other informers.
    let other_source = factory.informer::<Node, _>("other", &defaults, make);
    let resyncing = InformerOptions::new().resync(Duration::from_secs(30));
    let other_options = factory.informer::<Node, _>("memory", &resyncing, make);
    let svcs = factory.informer::<Svc, _>("memory", &defaults, MemorySource::new);
    for other in [other_source.cache(), other_options.cache()] {
        assert!(!a.cache().same_cache(other));
    }
    assert_eq!(made.load(Ordering::SeqCst), 3);
    assert_eq!(factory.len(), 4);
    // Options reach the informer; the type's own indexes are there.
    assert_eq!(other_options.resync_check_period(), Duration::from_secs(30));
    assert_eq!(a.resync_check_period(), Duration::ZERO);
    assert!(svcs.cache().indexers().iter().any(|i| i.name() == "port"));
    let delta = factory.informer::<Node, _>(
        "memory",
        &InformerOptions::new()
            .queue(QueueKind::Delta)
            .batch_size(10),
        make,
    );
    assert!(format!("{delta:?}").contains("Delta"));

    // The factory's default resync applies where the options leave it unset.
    let resyncing_factory = InformerFactory::with_resync(Duration::from_secs(60));
    let r = resyncing_factory.informer::<Node, _>("memory", &defaults, make);
    assert_eq!(r.resync_check_period(), Duration::from_secs(60));

    // Only the creating request configures the informer.
    let configured =
        factory.informer_with::<Svc, _>("configured", &defaults, MemorySource::new, |b| {
            b.name("services")
        });
    let again = factory.informer_with::<Svc, _>(
        "configured",
        &defaults,
        || -> MemorySource<Svc> { unreachable!("already made") },
        |b| b.name("ignored"),
    );
    assert_eq!((configured.name(), again.name()), ("services", "services"));
}

#[tokio::test(start_paused = true)]
async fn the_factory_starts_them_together_waits_once_and_shuts_down() {
    let factory = InformerFactory::new();
    let nodes_source = MemorySource::new();
    nodes_source.put(node("n1"));
    nodes_source.set_delay(Duration::from_secs(2));
    let svcs_source = MemorySource::new();
    svcs_source.put(svc("web", 80));
    let defaults = InformerOptions::new();

    // Two controllers each ask for what they watch; they share the services informer.
    let first_nodes = factory.informer::<Node, _>("memory", &defaults, || nodes_source.clone());
    let first_svcs = factory.informer::<Svc, _>("memory", &defaults, || svcs_source.clone());
    let second_svcs = factory.informer::<Svc, _>("memory", &defaults, || svcs_source.clone());
    let (one, two) = (Recorder::new(), Recorder::new());
    for (informer, seen) in [(&first_svcs, &one), (&second_svcs, &two)] {
        let seen = seen.clone();
        informer
            .add_event_handler(HandlerFns::new().added(move |s: Arc<Svc>, initial| {
                seen.push(format!("add {} {initial}", s.name));
            }))
            .unwrap();
    }
    assert!(!first_nodes.is_started());
    assert_eq!(
        factory.wait_for_sync().await,
        Ok(()),
        "nothing started, nothing to wait for"
    );

    assert_eq!(factory.start(), 2);
    assert_eq!(factory.start(), 0, "already running");
    factory.wait_for_named_sync("controllers").await.unwrap();
    assert!(first_nodes.is_started() && first_svcs.is_started());
    assert!(first_nodes.has_synced() && second_svcs.has_synced());
    assert!(factory.pending().is_empty());
    assert_eq!(first_svcs.cache().by(PORT, &80).len(), 1);
    until("both handlers", || one.len() == 1 && two.len() == 1).await;
    assert_eq!(
        (one.lines(), two.lines()),
        (
            vec!["add web true".to_owned()],
            vec!["add web true".to_owned()]
        )
    );
    assert_eq!(factory.len(), 2);
    assert_eq!(
        svcs_source.open_watches(),
        1,
        "one watch for both controllers"
    );

    // An informer asked for later starts with the next start().
    let late = factory.informer::<Node, _>("late", &defaults, || nodes_source.clone());
    assert!(!late.is_started());
    assert_eq!(factory.start(), 1);
    assert_eq!(factory.pending(), ["late/Node"]);
    factory.wait_for_sync().await.unwrap();

    factory.shutdown().await;
    for stopped in [
        first_nodes.is_stopped(),
        first_svcs.is_stopped(),
        late.is_stopped(),
    ] {
        assert!(stopped);
    }
    // Nothing starts after the shutdown.
    let after = factory.informer::<Node, _>("after", &defaults, || nodes_source.clone());
    assert_eq!(factory.start(), 0);
    assert!(!after.is_started());
}
