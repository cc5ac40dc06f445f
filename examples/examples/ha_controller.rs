//! A controller run as three replicas: the quickstart's drain controller, highly available.
//!
//! Three replicas run in this one process, as three pods of a Deployment would. Each has its
//! own informers (warm caches of pods and nodes) on the embedded "API server" and its own
//! controller; a leader election on one lock picks the replica that reconciles. At 5 s the
//! leader is killed (its tasks are dropped and it can no longer reach the lock, as a crashed
//! pod): after the lease expires, another replica takes over, with a greater fencing token,
//! and drains the nodes that maintenance keeps cordoning.
//!
//! Run with `cargo run -p examples --example ha_controller`. It ends by itself after about
//! 15 s, and exits with an error if no replica took over, if two terms overlapped, or if a
//! reconcile ran outside its replica's term.
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_core::ObjectKey;
use cache_core::controller::{Action, Context, Controller};
use cache_core::informer::SharedIndexInformer;
use cache_core::leader::{LeaderElectionOptions, LeaderElector, LeaderHandle, MemoryLock};
use cache_core::source::memory::MemorySource;
use shared::{Fleet, Node, Phase, Pod, Step, node_name};
use tokio_util::sync::CancellationToken;

#[path = "shared/mod.rs"]
mod shared;

const PODS: usize = 2_000;
const NODES: usize = 40;
const ZONES: [&str; 4] = ["zone-a", "zone-b", "zone-c", "zone-d"];
const REPLICAS: usize = 3;
const KILL_AT: Duration = Duration::from_secs(5);
const RUN_FOR: Duration = Duration::from_secs(15);
/// The election's timings, short for a demonstration (client-go's defaults are 15 s, 10 s, 2 s).
const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);

/// A term of leadership: replica, fencing token, start, end (`None`: still leading).
type Term = (usize, u64, Instant, Option<Instant>);

/// The "API server" and what every replica's reconciles did to it.
struct Cluster {
    fleet: Fleet,
    started: Instant,
    /// Each reconcile that did something: replica, token, start and end.
    work: Mutex<Vec<(usize, u64, Instant, Instant)>>,
    /// Each term: replica, token, start, end.
    terms: Mutex<Vec<Term>>,
}

impl Cluster {
    fn at(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// One replica's reconcile data: which replica it is, and the cluster.
struct Replica {
    id: usize,
    cluster: Arc<Cluster>,
}

/// The quickstart's drain: a cordoned node's pods are evicted and replaced on the other nodes
/// of its zone; once it is empty, it is marked drained. Only the leader runs it.
async fn drain(node: Arc<Node>, ctx: Context<Node, Replica>) -> Result<Action, String> {
    let started = Instant::now();
    let token = ctx.fencing_token().ok_or("reconciles run under a term")?;
    let cluster = &ctx.cluster;
    let pods = ctx.cache_of::<Pod>().ok_or("the controller watches pods")?;
    let step =
        shared::drain_step(&node, &pods, ctx.cache(), &cluster.fleet).map_err(|e| e.to_string())?;
    match step {
        Step::Idle => return Ok(Action::await_change()),
        Step::Drained => println!(
            "[{:>5.1}s] replica-{} (token {token}): {} is empty, drained",
            cluster.at(),
            ctx.id,
            node.name
        ),
        Step::Evicted { pods: 0, .. } => {}
        Step::Evicted { pods, .. } => println!(
            "[{:>5.1}s] replica-{} (token {token}): drain {}: evicted {pods} pods",
            cluster.at(),
            ctx.id,
            node.name
        ),
    }
    cluster
        .work
        .lock()
        .unwrap()
        .push((ctx.id, token, started, Instant::now()));
    Ok(Action::requeue(Duration::from_millis(500)))
}

/// One running replica: its lock client (to cut it off), its election, its tasks.
struct Running {
    lock: MemoryLock,
    leader: LeaderHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start_replica(
    id: usize,
    lock: &MemoryLock,
    cluster: &Arc<Cluster>,
    stop: &CancellationToken,
) -> Result<Running, Box<dyn std::error::Error>> {
    let pods = SharedIndexInformer::builder(cluster.fleet.pods.clone())
        .name("pods")
        .build();
    let nodes = SharedIndexInformer::builder(cluster.fleet.nodes.clone())
        .name("nodes")
        .build();
    let client = lock.connect();
    let config = LeaderElectionOptions::new(format!("replica-{id}"))
        .name("drain")
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY);
    let (on_start, on_stop) = (cluster.clone(), cluster.clone());
    let elector = LeaderElector::new(client.clone(), config)?
        .on_started_leading(move |term| {
            let token = term.fencing_token();
            println!(
                "[{:>5.1}s] replica-{id} is the leader (fencing token {token})",
                on_start.at()
            );
            on_start
                .terms
                .lock()
                .unwrap()
                .push((id, token, Instant::now(), None));
        })
        .on_stopped_leading(move || {
            let mut terms = on_stop.terms.lock().unwrap();
            if let Some(term) = terms.iter_mut().rev().find(|t| t.0 == id) {
                term.3 = Some(Instant::now());
            }
        });
    let leader = elector.handle();
    let node_cache = nodes.cache().clone();
    let controller = Controller::new(&nodes)?
        .name(format!("drain-{id}"))
        .leader_election(elector)
        .watches(&pods, move |pod: &Pod| {
            shared::cordoned_node(&node_cache, pod)
        })?;
    let data = Arc::new(Replica {
        id,
        cluster: cluster.clone(),
    });
    let informers = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::join!(pods.run(stop.clone()), nodes.run(stop));
        }
    });
    let controller = tokio::spawn({
        let run = controller.run(drain, data, stop.clone());
        async move {
            run.await;
        }
    });
    Ok(Running {
        lock: client,
        leader,
        tasks: vec![informers, controller],
    })
}

async fn wait_for_leader(replicas: &[Option<Running>]) -> usize {
    loop {
        if let Some(i) = replicas
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.leader.is_leader()))
        {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("typed-cache ha_controller: three replicas of the drain controller, one leader\n");
    let cluster = Arc::new(Cluster {
        fleet: Fleet::new(MemorySource::new(), MemorySource::new()),
        started: Instant::now(),
        work: Mutex::new(Vec::new()),
        terms: Mutex::new(Vec::new()),
    });
    for node in shared::nodes(NODES, &ZONES) {
        cluster.fleet.nodes.put(node);
    }
    for i in 0..PODS {
        cluster.fleet.pods.put(Pod {
            namespace: "default".into(),
            name: format!("pod-{i:05}"),
            node: Some(node_name(i * 7 % NODES)),
            phase: Phase::Running,
            owner: "web".into(),
            restarts: 0,
            rv: None,
        });
    }
    println!(
        "cluster: {PODS} pods on {NODES} nodes; lease {LEASE:?}, renew deadline {RENEW:?}, retry {RETRY:?}"
    );

    let lock = MemoryLock::new();
    let stop = CancellationToken::new();
    let mut replicas: Vec<Option<Running>> = Vec::new();
    for id in 0..REPLICAS {
        replicas.push(Some(start_replica(id, &lock, &cluster, &stop)?));
    }

    // Maintenance cordons a node every 700 ms, and returns drained ones to service.
    let maintenance = tokio::spawn({
        let (cluster, stop) = (cluster.clone(), stop.clone());
        async move {
            let mut next = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(700));
            while !stop.is_cancelled() {
                tick.tick().await;
                for node in cluster.fleet.nodes.objects() {
                    if node.drained {
                        cluster.fleet.nodes.put(Node {
                            unschedulable: false,
                            drained: false,
                            ..(*node).clone()
                        });
                    }
                }
                let name = node_name(next * 13 % NODES);
                next += 1;
                if let Some(node) = cluster.fleet.nodes.get(&ObjectKey::cluster(&name)) {
                    cluster.fleet.nodes.put(Node {
                        unschedulable: true,
                        ..(*node).clone()
                    });
                }
            }
        }
    });

    let first = wait_for_leader(&replicas).await;
    tokio::time::sleep(KILL_AT.saturating_sub(cluster.started.elapsed())).await;

    // Kill the leader: it can no longer reach the lock, and its tasks are gone.
    let killed = replicas[first].take().expect("running");
    killed.lock.disconnect();
    for task in &killed.tasks {
        task.abort();
    }
    let killed_at = Instant::now();
    println!(
        "[{:>5.1}s] *** replica-{first} killed (it does not release the lock) ***",
        cluster.at()
    );
    let next = tokio::time::timeout(Duration::from_secs(10), wait_for_leader(&replicas))
        .await
        .map_err(|_| "no replica took over within 10 s")?;
    println!(
        "[{:>5.1}s] *** handover: replica-{first} -> replica-{next}, {:.1?} after the kill (lease {LEASE:?}) ***",
        cluster.at(),
        killed_at.elapsed()
    );

    tokio::time::sleep(RUN_FOR.saturating_sub(cluster.started.elapsed())).await;
    stop.cancel();
    maintenance.await?;
    for running in replicas.into_iter().flatten() {
        for task in running.tasks {
            task.await?;
        }
    }

    // Check what happened: terms never overlapped, tokens increased, and every reconcile that
    // did something ran inside its replica's term.
    let terms = cluster.terms.lock().unwrap().clone();
    let work = cluster.work.lock().unwrap().clone();
    println!("\nterms:");
    for (id, token, start, end) in &terms {
        let end = end.map_or("killed".to_owned(), |e| {
            format!("{:.1}s", (e - cluster.started).as_secs_f64())
        });
        println!(
            "  replica-{id}  token {token:>6}  from {:.1}s to {end}",
            (*start - cluster.started).as_secs_f64()
        );
    }
    for pair in terms.windows(2) {
        let end = pair[0].3.unwrap_or(killed_at);
        if end >= pair[1].2 || pair[0].1 >= pair[1].1 {
            return Err(format!("terms overlap or tokens do not increase: {pair:?}").into());
        }
    }
    for (id, token, start, end) in &work {
        let inside = terms.iter().any(|(t_id, t_token, t_start, t_end)| {
            t_id == id && t_token == token && t_start <= start && *end <= t_end.unwrap_or(killed_at)
        });
        if !inside {
            return Err(format!("replica-{id}'s reconcile ran outside its term").into());
        }
    }
    let after = work.iter().filter(|w| w.0 == next).count();
    println!(
        "\n{} reconciles did work: {} by the new leader replica-{next}; every one inside its term",
        work.len(),
        after
    );
    if terms.len() < 2 || after == 0 {
        return Err("the new leader did not take over the work".into());
    }
    Ok(())
}
