//! The quickstart: a simulated cluster of 10,000 pods on 100 nodes, with ongoing churn, mirrored
//! by two informers into indexed caches, queried, and kept in order by a small controller that
//! drains cordoned nodes. Nothing to set up: the "API server" is the embedded `MemorySource`.
//!
//! Run with `cargo run --release -p examples --example quickstart`. It stops by itself after
//! 20 seconds (`QUICKSTART_SECONDS` sets another duration) and exits with an error if the
//! caches do not end equal to the source.
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::controller::{Action, Context, Controller};
use cache_core::informer::SharedIndexInformer;
use cache_core::source::memory::{MemorySource, MemorySourceOptions, Versioned};
use cache_core::source::{ListOptions, ListerWatcher, ObjectList, SourceError, WatchStream};
use cache_core::{Object, ObjectKey};
use futures::future::BoxFuture;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::{
    Fleet, NoCapacity, Node, NodeIndexes as _, Phase, Pod, PodIndexes as _, Step, node_name,
};
use tokio_util::sync::CancellationToken;

#[path = "shared/mod.rs"]
mod shared;

const PODS: usize = 10_000;
const NODES: usize = 100;
const ZONES: [&str; 5] = ["zone-a", "zone-b", "zone-c", "zone-d", "zone-e"];
const NAMESPACES: usize = 20;
const OWNERS: usize = 500;
/// Writes per second of the churn (pod status updates and replacements).
const CHURN_PER_SECOND: u64 = 5_000;
/// How often maintenance cordons another node.
const CORDON_EVERY: Duration = Duration::from_secs(2);
/// The simulated network's round trip, paid by every list page (500 objects).
const ROUND_TRIP: Duration = Duration::from_millis(50);

/// A small, seeded random number generator (SplitMix64): the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A source seen across a network: each list page costs a round trip, and the objects that
/// arrive are counted (for the progress bar). Any `ListerWatcher` can be wrapped this way.
struct Network<L> {
    inner: L,
    received: Arc<AtomicUsize>,
}

impl<T: Object, L: ListerWatcher<T>> ListerWatcher<T> for Network<L> {
    fn list(&self, options: ListOptions) -> BoxFuture<'_, Result<ObjectList<T>, SourceError>> {
        Box::pin(async move {
            tokio::time::sleep(ROUND_TRIP).await;
            let page = self.inner.list(options).await?;
            self.received.fetch_add(page.items.len(), Ordering::Relaxed);
            Ok(page)
        })
    }

    fn watch(&self, options: ListOptions) -> BoxFuture<'_, Result<WatchStream<T>, SourceError>> {
        self.inner.watch(options)
    }
}

fn owner_name(i: usize) -> String {
    const APPS: [&str; 10] = [
        "api", "web", "auth", "billing", "search", "cart", "mail", "feed", "media", "queue",
    ];
    format!(
        "{}-{:04x}",
        APPS[i % APPS.len()],
        i * 2_654_435_761 % 0xffff
    )
}

/// Fills the simulated cluster: nodes spread over the zones, pods spread over the nodes.
fn fill(pods: &MemorySource<Pod>, nodes: &MemorySource<Node>, rng: &mut Rng) {
    for node in shared::nodes(NODES, &ZONES) {
        nodes.put(node);
    }
    for i in 0..PODS {
        let owner = i % OWNERS;
        let phase = match rng.below(100) {
            0..90 => Phase::Running,
            90..96 => Phase::Pending,
            96..99 => Phase::Succeeded,
            _ => Phase::Failed,
        };
        pods.put(Pod {
            namespace: format!("team-{:02}", owner % NAMESPACES),
            name: format!("{}-{i:05}", owner_name(owner)),
            node: Some(node_name(rng.below(NODES))),
            phase,
            owner: owner_name(owner),
            restarts: 0,
            rv: None,
        });
    }
}

/// What the drain controller shares with its reconciles: the "API server" to write to, and
/// what it did.
struct Cluster {
    fleet: Fleet,
    evicted: AtomicU64,
    drained: AtomicU64,
    started: Instant,
}

impl Cluster {
    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// The drain controller's reconcile: a cordoned node's pods are evicted and replaced on the
/// other nodes of its zone; once it is empty, it is marked drained.
async fn drain(node: Arc<Node>, ctx: Context<Node, Cluster>) -> Result<Action, NoCapacity> {
    let pods = ctx.cache_of::<Pod>().expect("the controller watches pods");
    match shared::drain_step(&node, &pods, ctx.cache(), &ctx.fleet)? {
        Step::Idle => Ok(Action::await_change()),
        Step::Drained => {
            ctx.drained.fetch_add(1, Ordering::Relaxed);
            println!(
                "[{:>5.1}s] {} is empty: ready for maintenance",
                ctx.elapsed(),
                node.name
            );
            Ok(Action::await_change())
        }
        Step::Evicted { pods, onto } => {
            if pods > 0 {
                ctx.evicted.fetch_add(pods, Ordering::Relaxed);
                println!(
                    "[{:>5.1}s] drain {} ({}): evicted {pods} pods onto {onto} nodes",
                    ctx.elapsed(),
                    node.name,
                    node.zone,
                );
            }
            // The deletes will reach the cache and trigger this node again; check back anyway.
            Ok(Action::requeue(Duration::from_secs(1)))
        }
    }
}

/// The cluster's own life: pods change status, finish and get replaced, at a steady rate;
/// scheduling reads the nodes cache, so it avoids cordoned nodes.
async fn churn(
    pods_src: MemorySource<Pod>,
    pods: SharedIndexInformer<Pod>,
    nodes: SharedIndexInformer<Node>,
    cluster: Arc<Cluster>,
    stop: CancellationToken,
) -> u64 {
    let mut rng = Rng(7);
    let mut writes = 0;
    let per_tick = CHURN_PER_SECOND / 100;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while !stop.is_cancelled() {
        tick.tick().await;
        let (pod_snap, node_snap) = (pods.cache().snapshot(), nodes.cache().snapshot());
        for _ in 0..per_tick {
            let owned = pod_snap.by_owner(&owner_name(rng.below(OWNERS)));
            let Some(pod) = owned.get(rng.below(owned.len())) else {
                continue;
            };
            let key = pod.key();
            if pods_src.get(&key).is_none() {
                continue; // evicted meanwhile
            }
            if rng.chance(20) {
                // Finished: replaced by a new pod of its ReplicaSet on a schedulable node.
                let zone = ZONES[rng.below(ZONES.len())];
                let candidates: Vec<_> = node_snap
                    .by_zone(zone)
                    .into_iter()
                    .filter(|n| !n.unschedulable)
                    .collect();
                if let Some(node) = candidates.get(rng.below(candidates.len()))
                    && pods_src.delete(&key).is_some()
                {
                    pods_src.put(cluster.fleet.replacement(pod, &node.name));
                    writes += 2;
                }
            } else {
                let phase = match pod.phase {
                    Phase::Pending => Phase::Running,
                    Phase::Running if rng.chance(2) => Phase::Failed,
                    other => other,
                };
                pods_src.put(Pod {
                    phase,
                    restarts: pod.restarts + u32::from(phase == Phase::Failed),
                    ..(**pod).clone()
                });
                writes += 1;
            }
        }
    }
    writes
}

/// Maintenance: cordons a node every few seconds, and puts drained nodes back in service a
/// little later.
async fn maintenance(
    nodes_src: MemorySource<Node>,
    nodes: SharedIndexInformer<Node>,
    stop: CancellationToken,
) {
    let mut rng = Rng(42);
    let mut drained_since: HashMap<String, Instant> = HashMap::new();
    let mut cordon = tokio::time::interval(CORDON_EVERY);
    let mut check = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = cordon.tick() => {
                let node = nodes.cache().get_by_key(&ObjectKey::cluster(&node_name(rng.below(NODES))));
                if let Some(node) = node.filter(|n| !n.unschedulable) {
                    nodes_src.put(Node { unschedulable: true, ..(*node).clone() });
                }
            }
            _ = check.tick() => {
                for node in nodes.cache().snapshot().iter().filter(|n| n.drained) {
                    let since = *drained_since.entry(node.name.clone()).or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(3) {
                        drained_since.remove(&node.name);
                        nodes_src.put(Node { unschedulable: false, drained: false, ..(**node).clone() });
                    }
                }
            }
        }
    }
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The initial sync's progress: a progress bar on a terminal; elsewhere (a CI log, a pipe) a
/// plain line about once a second, so the log stays readable.
struct SyncProgress {
    bar: Option<ProgressBar>,
    total: usize,
    shown: usize,
    last_line: Instant,
}

impl SyncProgress {
    fn new(total: usize) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let style = ProgressStyle::with_template(
                "  syncing pods [{bar:40}] {human_pos:>6} / {human_len} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>.");
            ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stdout())
                .with_style(style)
        });
        Self {
            bar,
            total,
            shown: usize::MAX,
            last_line: Instant::now(),
        }
    }

    /// `done` objects have arrived so far.
    fn update(&mut self, done: usize) {
        if done == self.shown {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_position(done as u64),
            None if self.last_line.elapsed() >= Duration::from_secs(1) => {
                self.line(done);
                self.last_line = Instant::now();
            }
            None => return,
        }
        self.shown = done;
    }

    fn finish(self, done: usize) {
        match self.bar {
            Some(bar) => bar.finish(),
            None => self.line(done),
        }
    }

    fn line(&self, done: usize) {
        println!(
            "  syncing pods: {} / {}",
            thousands(done as u64),
            thousands(self.total as u64)
        );
    }
}

/// Whether `informer`'s cache holds exactly the source's objects, at their versions.
fn mirrors<T: Versioned>(source: &MemorySource<T>, informer: &SharedIndexInformer<T>) -> bool {
    let snap = informer.cache().snapshot();
    snap.len() == source.len()
        && source.objects().iter().all(|obj| {
            snap.get(&obj.key())
                .is_some_and(|cached| cached.resource_version() == obj.resource_version())
        })
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run_for = std::env::var("QUICKSTART_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(20), Duration::from_secs_f64);
    let started = Instant::now();
    println!("typed-cache quickstart: a simulated cluster, mirrored and reconciled in process\n");

    // 1. The "API server": one embedded source per kind, filled with a cluster.
    let config = MemorySourceOptions::default().history_limit(100_000);
    let pods_src = MemorySource::with_options(config.clone());
    let nodes_src = MemorySource::with_options(config);
    let (_, fill_time) = timed(|| fill(&pods_src, &nodes_src, &mut Rng(1)));
    println!(
        "cluster: {} pods on {} nodes in {} zones, {} namespaces, {} ReplicaSets (filled in {:.0?})",
        thousands(pods_src.len() as u64),
        nodes_src.len(),
        ZONES.len(),
        NAMESPACES,
        OWNERS,
        fill_time
    );

    // 2. Informers: list (in pages, across the simulated network), then watch, into indexed
    //    caches. They run until `stop`.
    let received = Arc::new(AtomicUsize::new(0));
    let pods = SharedIndexInformer::builder(Network {
        inner: pods_src.clone(),
        received: received.clone(),
    })
    .name("pods")
    .build();
    let nodes = SharedIndexInformer::builder(nodes_src.clone())
        .name("nodes")
        .build();
    let stop = CancellationToken::new();
    let informers = tokio::spawn({
        let (pods, nodes, stop) = (pods.clone(), nodes.clone(), stop.clone());
        async move { tokio::join!(pods.run(stop.clone()), nodes.run(stop)) }
    });
    let sync_start = Instant::now();
    let mut progress = SyncProgress::new(pods_src.len());
    while !pods.has_synced() && !pods.is_stopped() {
        progress.update(received.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pods.wait_for_sync().await?;
    progress.finish(pods.cache().len());
    nodes.wait_for_sync().await?;
    println!(
        "  synced {} pods and {} nodes in {:.2?} ({} list pages of 500, {:?} round trip each)\n",
        thousands(pods.cache().len() as u64),
        nodes.cache().len(),
        sync_start.elapsed(),
        pods_src.stats().lists,
        ROUND_TRIP
    );

    // 3. Indexed queries: each reads one consistent snapshot, without locks.
    let snap = pods.cache().snapshot();
    println!(
        "indexed queries, on one snapshot (resource version {}):",
        snap.resource_version().map_or("-", |rv| rv.as_str())
    );
    let row = |query: &str, answer: String, took: Duration| {
        println!("  {query:<32} {answer:<52} {took:>9.1?}");
    };
    let (on_node, t) = timed(|| snap.by_node("node-042"));
    let running = on_node.iter().filter(|p| p.phase == Phase::Running).count();
    row(
        "pods on node-042",
        format!("{} ({running} running)", on_node.len()),
        t,
    );
    let (in_ns, t) = timed(|| snap.count_by(Pod::NAMESPACE, "team-07"));
    row("pods in namespace team-07", in_ns.to_string(), t);
    let owner = owner_name(123);
    let (owned, t) = timed(|| snap.by_owner(&owner));
    let spread: BTreeSet<_> = owned.iter().filter_map(|p| p.node.as_deref()).collect();
    row(
        &format!("pods of ReplicaSet {owner}"),
        format!("{} (on {} nodes)", owned.len(), spread.len()),
        t,
    );
    let (phases, t) = timed(|| {
        [
            Phase::Pending,
            Phase::Running,
            Phase::Succeeded,
            Phase::Failed,
        ]
        .map(|phase| (phase, snap.count_by(Pod::PHASE, &phase)))
    });
    let phases: Vec<String> = phases.iter().map(|(p, n)| format!("{p:?} {n}")).collect();
    row("pods by phase", phases.join(", "), t);
    let (zone_c, t) = timed(|| nodes.cache().by_zone("zone-c"));
    row("nodes in zone-c", zone_c.len().to_string(), t);
    println!();

    // 4. The drain controller: reconciles nodes; a pod's change reconciles its node when that
    //    node is cordoned (a secondary watch, mapped through the nodes cache).
    let cluster = Arc::new(Cluster {
        fleet: Fleet::new(pods_src.clone(), nodes_src.clone()),
        evicted: AtomicU64::new(0),
        drained: AtomicU64::new(0),
        started,
    });
    let node_cache = nodes.cache().clone();
    let controller = Controller::new(&nodes)?
        .name("drain")
        .concurrency(8)
        .watches(&pods, move |pod: &Pod| {
            shared::cordoned_node(&node_cache, pod)
        })?;
    let handle = controller.handle();
    let stop_controller = CancellationToken::new();
    let controller = tokio::spawn(controller.run(drain, cluster.clone(), stop_controller.clone()));
    handle.wait_for_sync().await?;
    println!(
        "drain controller ready; churn of {} writes/s, a node cordoned every {:?}, for {:?}:",
        thousands(CHURN_PER_SECOND),
        CORDON_EVERY,
        run_for
    );

    // 5. Life goes on: churn and maintenance, while the controller keeps up.
    let stop_cluster = CancellationToken::new();
    let events_before = pods.reflector_stats().events + nodes.reflector_stats().events;
    let window = Instant::now();
    let churn = tokio::spawn(churn(
        pods_src.clone(),
        pods.clone(),
        nodes.clone(),
        cluster.clone(),
        stop_cluster.clone(),
    ));
    let maintenance = tokio::spawn(maintenance(
        nodes_src.clone(),
        nodes.clone(),
        stop_cluster.clone(),
    ));
    let status_every = Duration::from_secs(5);
    let mut next_status = status_every;
    while window.elapsed() < run_for {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if window.elapsed() >= next_status && window.elapsed() < run_for {
            next_status += status_every;
            let stats = handle.stats();
            println!(
                "[{:>5.1}s] -- {} pods cached, {} reconciles so far",
                started.elapsed().as_secs_f64(),
                thousands(pods.cache().len() as u64),
                thousands(stats.reconciles)
            );
        }
    }

    // 6. Stop the cluster, then the controller (it finishes what it is doing), and check that
    //    the caches caught up with the source.
    stop_cluster.cancel();
    let writes = churn.await?;
    maintenance.await?;
    let elapsed = window.elapsed();
    stop_controller.cancel();
    let stats = controller.await?;
    let events = pods.reflector_stats().events + nodes.reflector_stats().events - events_before;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(mirrors(&pods_src, &pods) && mirrors(&nodes_src, &nodes)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let consistent = mirrors(&pods_src, &pods) && mirrors(&nodes_src, &nodes);
    stop.cancel();
    informers.await?;

    let secs = elapsed.as_secs_f64();
    println!("\nsummary after {:.1}s:", started.elapsed().as_secs_f64());
    println!(
        "  objects     {} pods and {} nodes cached, {} the source",
        thousands(pods.cache().len() as u64),
        nodes.cache().len(),
        if consistent {
            "equal to"
        } else {
            "NOT equal to"
        }
    );
    println!(
        "  events      {} watch events in {secs:.1}s: {}/s ({} writes by the churn)",
        thousands(events),
        thousands((events as f64 / secs) as u64),
        thousands(writes)
    );
    println!(
        "  reconciles  {} ({} errors): {} nodes drained, {} pods evicted",
        thousands(stats.reconciles),
        stats.errors,
        cluster.drained.load(Ordering::Relaxed),
        thousands(cluster.evicted.load(Ordering::Relaxed))
    );
    if !consistent {
        return Err("the caches did not converge to the source".into());
    }
    if stats.reconciles == 0 {
        return Err("the controller reconciled nothing".into());
    }
    Ok(())
}
