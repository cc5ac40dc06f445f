//! A controller run as three replicas under leader election, on paused time: only the leader
//! reconciles, a term's reconciles stop when it ends, and every reconcile ran under a term
//! of its replica that was valid from its start to its end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::runtime_tests::TestRecorder;
use super::*;
use crate::leader::{LeaderElectionOptions, LeaderElector, LeaderHandle, MemoryLock};
use crate::test_support::{self, Item};

const LEASE: Duration = Duration::from_secs(15);
const RENEW: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

/// One reconcile: by which replica, under which token, from when to when.
#[derive(Debug, Clone)]
struct Run {
    replica: usize,
    token: u64,
    start: Instant,
    end: Option<Instant>,
}

/// A term: replica, token, start, end.
type Term = (usize, u64, Instant, Option<Instant>);

#[derive(Default)]
struct Record {
    runs: Mutex<Vec<Run>>,
    terms: Mutex<Vec<Term>>,
}

/// Sets a run's end when the reconcile ends, or is dropped.
struct Ending {
    record: Arc<Record>,
    index: usize,
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.record.runs.lock().unwrap()[self.index].end = Some(Instant::now());
    }
}

struct Replica {
    id: usize,
    record: Arc<Record>,
}

async fn reconcile(
    item: Arc<Item>,
    ctx: Context<Item, Replica>,
) -> Result<Action, std::convert::Infallible> {
    let term = ctx.leadership().expect("reconciles run under a term");
    assert!(term.is_valid(), "a reconcile started under an ended term");
    let index = {
        let mut runs = ctx.record.runs.lock().unwrap();
        runs.push(Run {
            replica: ctx.id,
            token: ctx.fencing_token().unwrap(),
            start: Instant::now(),
            end: None,
        });
        runs.len() - 1
    };
    let _ending = Ending {
        record: ctx.record.clone(),
        index,
    };
    // Reconciles of different lengths, requeued soon: out of step, one is nearly always running.
    tokio::time::sleep(Duration::from_millis(1000 + 150 * u64::from(item.value))).await;
    Ok(Action::requeue(Duration::from_millis(100)))
}

struct Running {
    client: MemoryLock,
    leader: LeaderHandle,
    controller: ControllerHandle,
    run: tokio::task::JoinHandle<ControllerStats>,
}

fn replica(
    id: usize,
    lock: &MemoryLock,
    cache: &Arc<crate::Cache<Item>>,
    record: &Arc<Record>,
    recorder: &TestRecorder,
    stop: &CancellationToken,
) -> Running {
    let client = lock.connect();
    let config = LeaderElectionOptions::new(format!("replica-{id}"))
        .name(format!("r{id}"))
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY);
    let (started, stopped) = (record.clone(), record.clone());
    let elector = LeaderElector::new(client.clone(), config)
        .unwrap()
        .on_started_leading(move |term| {
            started
                .terms
                .lock()
                .unwrap()
                .push((id, term.fencing_token(), Instant::now(), None));
        })
        .on_stopped_leading(move || {
            let mut terms = stopped.terms.lock().unwrap();
            let term = terms
                .iter_mut()
                .rev()
                .find(|t| t.0 == id)
                .expect("a stop follows a start");
            term.3 = Some(Instant::now());
        });
    let leader = elector.handle();
    let controller = Controller::for_cache(cache.clone())
        .name(format!("replica-{id}"))
        .leader_election(elector);
    let handle = controller.handle();
    let data = Arc::new(Replica {
        id,
        record: record.clone(),
    });
    let run =
        metrics::with_local_recorder(recorder, || controller.run(reconcile, data, stop.clone()));
    Running {
        client,
        leader,
        controller: handle,
        run: tokio::spawn(run),
    }
}

async fn new_leader(replicas: &[Running], not: Option<usize>) -> usize {
    for _ in 0..10_000 {
        let leaders: Vec<usize> = (0..replicas.len())
            .filter(|&i| replicas[i].leader.is_leader())
            .collect();
        assert!(leaders.len() <= 1, "two leaders: {leaders:?}");
        if let [one] = leaders[..]
            && Some(one) != not
        {
            return one;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no new leader");
}

#[tokio::test(start_paused = true)]
async fn only_the_leader_reconciles_and_a_lost_term_stops_its_reconciles() {
    let cache = test_support::cache();
    for i in 0..6 {
        cache
            .add(Arc::new(test_support::item(&format!("item-{i}"), i)))
            .unwrap();
    }
    let (lock, record, stop) = (
        MemoryLock::new(),
        Arc::new(Record::default()),
        CancellationToken::new(),
    );
    let recorders: Vec<TestRecorder> = (0..3).map(|_| TestRecorder::default()).collect();
    // Replica 0 starts first and leads; the others are warm followers.
    let mut replicas = vec![replica(0, &lock, &cache, &record, &recorders[0], &stop)];
    assert_eq!(new_leader(&replicas, None).await, 0);
    for (id, recorder) in recorders.iter().enumerate().skip(1) {
        replicas.push(replica(id, &lock, &cache, &record, recorder, &stop));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        replicas.iter().all(|r| r.controller.is_ready()),
        "followers are ready too"
    );
    assert_eq!(
        recorders[0].gauge("leader_election_master_status{name=r0}"),
        1.0
    );

    // The leader's lock calls fail: its term ends, its reconciles stop, another takes over.
    let mut leader = 0;
    for round in 0..3 {
        replicas[leader].client.disconnect();
        let next = new_leader(&replicas, Some(leader)).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        if round == 0 {
            // Replica 0's metrics saw it start and stop leading (once: it may lead again later).
            let r0 = &recorders[0];
            assert_eq!(r0.gauge("leader_election_master_status{name=r0}"), 0.0);
            assert_eq!(
                r0.counter("leader_election_transitions_total{name=r0}"),
                2,
                "{:?}",
                record.terms.lock().unwrap()
            );
        }
        replicas[leader].client.reconnect();
        leader = next;
    }
    stop.cancel();
    let mut stats = Vec::new();
    for r in replicas {
        stats.push(r.run.await.unwrap());
    }

    let terms = record.terms.lock().unwrap().clone();
    let runs = record.runs.lock().unwrap().clone();
    assert_eq!(terms.len(), 4, "{terms:?}");
    for pair in terms.windows(2) {
        assert!(pair[0].3.unwrap() < pair[1].2, "terms overlap: {pair:?}");
        assert!(pair[0].1 < pair[1].1, "tokens do not increase: {pair:?}");
    }
    // Every reconcile ran inside a term of its replica, from start to end.
    for run in &runs {
        let term = terms
            .iter()
            .find(|t| t.0 == run.replica && t.1 == run.token)
            .unwrap_or_else(|| panic!("{run:?} ran under no term of its replica"));
        let (start, end) = (term.2, term.3.unwrap());
        assert!(
            start <= run.start && run.end.unwrap() <= end,
            "{run:?} outside {term:?}"
        );
    }
    // Each term's leader reconciled; the terms that ended stopped reconciles in flight.
    for term in &terms {
        assert!(
            runs.iter().any(|r| r.token == term.1),
            "no reconcile in {term:?}"
        );
    }
    let interrupted: u64 = stats.iter().map(|s| s.interrupted).sum();
    assert!(interrupted >= 3, "{stats:?}");
    assert!(stats.iter().all(|s| s.in_flight == 0));
}
