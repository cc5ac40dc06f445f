//! Leader election on a real 3-member etcd cluster: three candidates, each with its own
//! client (through a TCP proxy per member, so that one candidate's connection can be cut),
//! each running a controller that reconciles only while it leads.
//!
//! The leader is cut off twice, and an etcd member is killed in between: each time another
//! candidate takes over within the lease duration plus a retry period (plus etcd's lease
//! expiry granularity and some scheduling slack), no two terms overlap, fencing tokens (etcd
//! revisions) strictly increase, and every reconcile started inside a term of its candidate
//! and ended before the next term began.
//!
//! Without an `etcd` binary this test prints a notice and passes locally; under `CI=true` it
//! fails. Time is real; every wait is bounded.

mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::controller::{Action, Context, Controller, ControllerStats};
use cache_core::leader::{LeaderElectionOptions, LeaderElector, LeaderHandle, LeaseLock};
use cache_core::{Cache, Indexed};
use cache_etcd::EtcdLock;
use harness::Etcd;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const KEY: &str = "/leases/ha-test";
const LEASE: Duration = Duration::from_secs(4);
const RENEW: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);
/// etcd's lessor looks for expired leases every 500 ms: the key may outlive its TTL by that.
const ETCD_EXPIRY_GRANULARITY: Duration = Duration::from_millis(500);
/// Scheduling on a busy machine (two cores shared with the build, three etcd members).
const SLACK: Duration = Duration::from_millis(500);
const TEST_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Indexed)]
struct Item {
    #[key]
    name: String,
}

/// A TCP proxy to one etcd member that can cut its connections and refuse new ones.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let (is_cut, tasks) = (cut.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_cut.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let upstream = upstream.clone();
                tasks.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy {
            port,
            cut,
            connections,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.connections.lock().unwrap().abort_all();
        }
    }
}

/// One reconcile: by whom, under which token, from when to when.
#[derive(Debug, Clone)]
struct Run {
    candidate: usize,
    token: u64,
    start: Instant,
    end: Option<Instant>,
}

/// A term: candidate, token, start, end.
type Term = (usize, u64, Instant, Option<Instant>);

#[derive(Default)]
struct Record {
    runs: Mutex<Vec<Run>>,
    terms: Mutex<Vec<Term>>,
}

struct Ending(Arc<Record>, usize);

impl Drop for Ending {
    fn drop(&mut self) {
        self.0.runs.lock().unwrap()[self.1].end = Some(Instant::now());
    }
}

struct Data {
    candidate: usize,
    record: Arc<Record>,
}

async fn reconcile(_item: Arc<Item>, ctx: Context<Item, Data>) -> Result<Action, String> {
    let term = ctx.leadership().ok_or("no term")?;
    if !term.is_valid() {
        return Err("started under an ended term".into());
    }
    let index = {
        let mut runs = ctx.record.runs.lock().unwrap();
        runs.push(Run {
            candidate: ctx.candidate,
            token: term.fencing_token(),
            start: Instant::now(),
            end: None,
        });
        runs.len() - 1
    };
    let _end = Ending(ctx.record.clone(), index);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Action::requeue(Duration::from_millis(100)))
}

struct Candidate {
    proxies: Vec<Proxy>,
    leader: LeaderHandle,
    run: tokio::task::JoinHandle<ControllerStats>,
}

impl Candidate {
    fn set_cut(&self, cut: bool) {
        for proxy in &self.proxies {
            proxy.set_cut(cut);
        }
    }
}

async fn candidate(
    id: usize,
    etcd: &Etcd,
    record: &Arc<Record>,
    stop: &CancellationToken,
) -> Candidate {
    let mut proxies = Vec::new();
    for endpoint in etcd.endpoints() {
        proxies.push(Proxy::start(endpoint).await);
    }
    let endpoints: Vec<String> = proxies.iter().map(Proxy::endpoint).collect();
    let client = cache_etcd::connect(&endpoints).await.unwrap();
    let config = LeaderElectionOptions::new(format!("candidate-{id}"))
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY);
    let (started, stopped) = (record.clone(), record.clone());
    let elector = LeaderElector::new(EtcdLock::new(client, KEY, LEASE), config)
        .unwrap()
        .on_started_leading(move |term| {
            let now = Instant::now();
            eprintln!("candidate-{id} leads, token {}", term.fencing_token());
            started
                .terms
                .lock()
                .unwrap()
                .push((id, term.fencing_token(), now, None));
        })
        .on_stopped_leading(move || {
            let now = Instant::now();
            eprintln!("candidate-{id} stopped leading");
            let mut terms = stopped.terms.lock().unwrap();
            let term = terms.iter_mut().rev().find(|t| t.0 == id).unwrap();
            term.3 = Some(now);
        });
    let leader = elector.handle();
    let cache = Arc::new(Cache::<Item>::new());
    for i in 0..4 {
        cache
            .add(Arc::new(Item {
                name: format!("item-{i}"),
            }))
            .unwrap();
    }
    let controller = Controller::for_cache(cache)
        .name(format!("candidate-{id}"))
        .leader_election(elector);
    let data = Arc::new(Data {
        candidate: id,
        record: record.clone(),
    });
    let run = tokio::spawn(controller.run(reconcile, data, stop.clone()));
    Candidate {
        proxies,
        leader,
        run,
    }
}

async fn leader_other_than(candidates: &[Candidate], not: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let leaders: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].leader.is_leader())
            .collect();
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if let [one] = leaders[..]
            && Some(one) != not
        {
            return one;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in candidates {
        eprintln!("{:?}", c.leader);
    }
    panic!("no new leader within 30 s");
}

/// Cuts the leader off; returns the new leader and how long the takeover took after the cut.
async fn cut_leader(candidates: &[Candidate], record: &Record) -> (usize, usize, Duration) {
    let leader = leader_other_than(candidates, None).await;
    let terms_before = record.terms.lock().unwrap().len();
    let cut_at = Instant::now();
    candidates[leader].set_cut(true);
    let next = leader_other_than(candidates, Some(leader)).await;
    let took = {
        let terms = record.terms.lock().unwrap();
        assert_eq!(terms.len(), terms_before + 1, "{terms:?}");
        terms.last().unwrap().2 - cut_at
    };
    eprintln!("candidate-{leader} cut off: candidate-{next} took over after {took:?}");
    (leader, next, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_candidates_on_etcd_hand_over_on_cuts_and_a_member_kill() {
    let Some(mut etcd) = Etcd::start_cluster("etcd_leader", 3, &[]) else {
        return;
    };
    let record = Arc::new(Record::default());
    let stop = CancellationToken::new();
    let body = async {
        let mut candidates = Vec::new();
        for id in 0..3 {
            candidates.push(candidate(id, &etcd, &record, &stop).await);
        }
        // The lease duration, an acquire retry (with its jitter), etcd's expiry granularity.
        let bound = LEASE + RETRY.mul_f64(1.2) + ETCD_EXPIRY_GRANULARITY + SLACK;

        leader_other_than(&candidates, None).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (old, _, took) = cut_leader(&candidates, &record).await;
        assert!(took <= bound, "takeover took {took:?}, over {bound:?}");
        candidates[old].set_cut(false);

        // A member dies while the new leader leads: the election goes on with the other two.
        tokio::time::sleep(Duration::from_secs(1)).await;
        etcd.kill(1);
        eprintln!("killed etcd member 1");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = leader_other_than(&candidates, None).await;
        eprintln!("candidate-{leader} leads after the kill");

        let (old, _, took) = cut_leader(&candidates, &record).await;
        assert!(took <= bound, "takeover took {took:?}, over {bound:?}");
        candidates[old].set_cut(false);
        tokio::time::sleep(Duration::from_secs(1)).await;

        // What etcd holds: the key's revision is at least the last term's token.
        let mut client = etcd.member_client(0).await;
        let kv = client.get(KEY, None).await.unwrap();
        let last_token = record.terms.lock().unwrap().last().unwrap().1;
        let kv = kv.kvs().first().expect("the lock key exists");
        assert!(u64::try_from(kv.mod_revision()).unwrap() >= last_token);

        stop.cancel();
        let mut stats = Vec::new();
        for c in candidates {
            stats.push(c.run.await.unwrap());
        }
        stats
    };
    let stats = tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("the test hung");

    let terms = record.terms.lock().unwrap().clone();
    let runs = record.runs.lock().unwrap().clone();
    assert!(terms.len() >= 3, "{terms:?}");
    for pair in terms.windows(2) {
        let end = pair[0].3.expect("an earlier term ended");
        assert!(end < pair[1].2, "terms overlap: {pair:?}");
        assert!(pair[0].1 < pair[1].1, "tokens do not increase: {pair:?}");
    }
    // Every reconcile started inside a term of its candidate, and ended before the next term
    // (of anyone) began: the term's reconciles stop at their next await when it ends.
    for run in &runs {
        let (i, term) = terms
            .iter()
            .enumerate()
            .find(|(_, t)| t.0 == run.candidate && t.1 == run.token)
            .unwrap_or_else(|| panic!("{run:?} ran under no term of its candidate"));
        let end = run.end.expect("every reconcile ended");
        assert!(
            term.2 <= run.start && run.start <= term.3.expect("all terms ended"),
            "{run:?} started outside {term:?}"
        );
        if let Some(next) = terms.get(i + 1) {
            assert!(end < next.2, "{run:?} still ran when {next:?} began");
        }
    }
    for term in &terms {
        assert!(
            runs.iter().any(|r| r.token == term.1),
            "nothing reconciled in {term:?}"
        );
    }
    assert_eq!(stats.iter().map(|s| s.errors).sum::<u64>(), 0, "{stats:?}");
    // The last leader released the lock on cancel.
    let mut client = etcd.member_client(0).await;
    let lock = EtcdLock::new(client.clone(), KEY, LEASE);
    let state = lock
        .get()
        .await
        .unwrap()
        .expect("the key remains, released");
    assert_eq!(state.holder(), Some(""));
    let _ = client.get(KEY, None).await.unwrap();
}
