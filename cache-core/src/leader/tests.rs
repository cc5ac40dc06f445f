//! The elector on paused time: two and three candidates on a [`MemoryLock`], with injected
//! faults, and a recorded timeline of every term.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;

const LEASE: Duration = Duration::from_secs(15);
const RENEW: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Started,
    Stopped,
}

/// Every term begun and ended, by whom, when, and with which token.
/// Who, what, when, with which token.
type Event = (usize, Mark, Instant, u64);

#[derive(Default, Clone)]
struct Timeline(Arc<Mutex<Vec<Event>>>);

impl Timeline {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The terms as (candidate, start, end, token), in the order they began.
    fn terms(&self) -> Vec<(usize, Instant, Option<Instant>, u64)> {
        let mut terms: Vec<(usize, Instant, Option<Instant>, u64)> = Vec::new();
        for (who, mark, at, token) in self.events() {
            match mark {
                Mark::Started => terms.push((who, at, None, token)),
                Mark::Stopped => {
                    let term = terms
                        .iter_mut()
                        .rev()
                        .find(|t| t.0 == who && t.2.is_none())
                        .expect("a stop follows a start");
                    assert_eq!(term.3, token);
                    term.2 = Some(at);
                }
            }
        }
        terms
    }

    /// No two terms overlap, and each term's token is greater than every earlier one's.
    fn assert_exclusive(&self) {
        let terms = self.terms();
        for pair in terms.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let a_end =
                a.2.expect("an earlier term has ended when a later one begins");
            assert!(a_end < b.1, "terms overlap: {a:?} and {b:?}");
            assert!(a.3 < b.3, "tokens do not increase: {a:?} then {b:?}");
        }
    }
}

struct Candidate {
    client: MemoryLock,
    handle: LeaderHandle,
}

fn config(id: usize) -> LeaderElectionOptions {
    LeaderElectionOptions::new(format!("candidate-{id}"))
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
}

fn start(
    lock: &MemoryLock,
    n: usize,
    timeline: &Timeline,
    stop: &CancellationToken,
) -> Vec<Candidate> {
    start_from(lock, 0..n, timeline, stop)
}

fn start_from(
    lock: &MemoryLock,
    ids: std::ops::Range<usize>,
    timeline: &Timeline,
    stop: &CancellationToken,
) -> Vec<Candidate> {
    ids.map(|id| {
        let client = lock.connect();
        let (started, stopped) = (timeline.clone(), timeline.clone());
        let current = Arc::new(Mutex::new(0));
        let token = current.clone();
        let elector = LeaderElector::new(client.clone(), config(id))
            .unwrap()
            .on_started_leading(move |term| {
                *token.lock().unwrap() = term.fencing_token();
                started.0.lock().unwrap().push((
                    id,
                    Mark::Started,
                    Instant::now(),
                    term.fencing_token(),
                ));
            })
            .on_stopped_leading(move || {
                let token = *current.lock().unwrap();
                stopped
                    .0
                    .lock()
                    .unwrap()
                    .push((id, Mark::Stopped, Instant::now(), token));
            });
        let handle = elector.handle();
        tokio::spawn(elector.run(stop.clone()));
        Candidate { client, handle }
    })
    .collect()
}

/// Waits (on paused time) until exactly one candidate other than `not` leads; returns it.
async fn leader_other_than(candidates: &[Candidate], not: Option<usize>) -> usize {
    for _ in 0..10_000 {
        let leaders: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].handle.is_leader())
            .collect();
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if let [one] = leaders[..]
            && Some(one) != not
        {
            return one;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no new leader within 1000 s");
}

async fn until_not_leading(candidate: &Candidate) -> Instant {
    let mut state = candidate.handle.watch();
    state
        .wait_for(|state| state.leadership.is_none())
        .await
        .unwrap();
    Instant::now()
}

/// The leader's renewals fail: it steps down within the renew deadline of its last renewal
/// (before its lease can expire), and another candidate takes over only after the lease
/// expired, counted from that renewal.
async fn fail_over(candidates: &[Candidate], timeline: &Timeline, inject: impl Fn(&MemoryLock)) {
    let leader = leader_other_than(candidates, None).await;
    let last_renewal = candidates[leader].handle.state().last_renewal.unwrap();
    inject(&candidates[leader].client);
    let stepped_down = until_not_leading(&candidates[leader]).await;
    assert!(
        stepped_down <= last_renewal + RENEW,
        "stepped down {:?} after its last renewal",
        stepped_down - last_renewal
    );
    let next = leader_other_than(candidates, Some(leader)).await;
    let (_, taken_over, _, _) = *timeline.terms().last().unwrap();
    assert!(
        taken_over >= last_renewal + LEASE,
        "took over before expiry"
    );
    assert!(
        taken_over <= last_renewal + LEASE + RETRY + RETRY.mul_f64(1.2),
        "took over only {:?} after the last renewal",
        taken_over - last_renewal
    );
    assert_ne!(next, leader);
    candidates[leader].client.reconnect();
    candidates[leader].client.set_delay(Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn two_candidates_fail_over_when_renewals_fail() {
    let (lock, timeline, stop) = (
        MemoryLock::new(),
        Timeline::default(),
        CancellationToken::new(),
    );
    let candidates = start(&lock, 2, &timeline, &stop);
    fail_over(&candidates, &timeline, MemoryLock::disconnect).await;
    // And back: the first candidate, reconnected, takes over when the second fails.
    fail_over(&candidates, &timeline, MemoryLock::disconnect).await;
    stop.cancel();
    tokio::time::sleep(RENEW).await;
    let terms = timeline.terms();
    assert_eq!(terms.len(), 3);
    timeline.assert_exclusive();
    assert!(candidates.iter().all(|c| c.handle.state().stopped));
}

#[tokio::test(start_paused = true)]
async fn three_candidates_never_overlap_under_faults() {
    let (lock, timeline, stop) = (
        MemoryLock::new(),
        Timeline::default(),
        CancellationToken::new(),
    );
    let candidates = start(&lock, 3, &timeline, &stop);
    for round in 0..6 {
        match round % 3 {
            0 => fail_over(&candidates, &timeline, MemoryLock::disconnect).await,
            // A hung store: every call takes longer than the renew deadline.
            1 => fail_over(&candidates, &timeline, |c| c.set_delay(LEASE * 10)).await,
            // Calls fail for a while, then work again: the leader has lost its term by then.
            _ => fail_over(&candidates, &timeline, |c| c.fail_next(1_000)).await,
        }
        // The failed candidate is back: it may campaign, but the new leader stays.
        let leader = leader_other_than(&candidates, None).await;
        tokio::time::sleep(LEASE * 2).await;
        assert!(
            candidates[leader].handle.is_leader(),
            "a healthy leader keeps its term"
        );
        for candidate in &candidates {
            candidate.client.fail_next(0);
        }
    }
    stop.cancel();
    tokio::time::sleep(RENEW).await;
    assert!(timeline.terms().len() >= 7);
    timeline.assert_exclusive();
}

#[tokio::test(start_paused = true)]
async fn a_released_lock_is_taken_over_at_once() {
    let (lock, timeline) = (MemoryLock::new(), Timeline::default());
    let first_stop = CancellationToken::new();
    let first = start(&lock, 1, &timeline, &first_stop);
    leader_other_than(&first, None).await;
    let others_stop = CancellationToken::new();
    let others = start_from(&lock, 1..2, &timeline, &others_stop);
    tokio::time::sleep(RETRY * 3).await;
    assert!(!others[0].handle.is_leader());
    assert_eq!(others[0].handle.leader().as_deref(), Some("candidate-0"));

    let released = Instant::now();
    first_stop.cancel();
    leader_other_than(&others, None).await;
    assert!(
        released.elapsed() <= RETRY.mul_f64(1.2) + Duration::from_millis(100),
        "took {:?} after a release",
        released.elapsed()
    );
    let record = lock.peek().unwrap().record.unwrap();
    assert_eq!(record.holder_identity, "candidate-1");
    assert_eq!(record.leader_transitions, 1);
    others_stop.cancel();
    tokio::time::sleep(RENEW).await;
    timeline.assert_exclusive();
}

/// A subscriber that keeps the warnings logged on this thread: level, message and fields.
#[derive(Default, Clone)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(start_paused = true)]
async fn a_malformed_lock_of_another_holder_counts_as_held_until_it_expires() {
    // Every task of this test runs on this thread: the subscriber sees their logs.
    let warnings = Warnings::default();
    let _logs = tracing::subscriber::set_default(warnings.clone());
    let lock = MemoryLock::new();
    lock.put_malformed(Some("someone-else"), "spec.leaseDurationSeconds: -3");
    let (timeline, stop) = (Timeline::default(), CancellationToken::new());
    let start_at = Instant::now();
    let candidates = start(&lock, 2, &timeline, &stop);
    let leader = leader_other_than(&candidates, None).await;
    // Held for a lease duration from when the candidates first saw it, by their clocks.
    let (_, taken_over, _, token) = timeline.terms()[0];
    assert!(taken_over >= start_at + LEASE);
    assert!(taken_over <= start_at + LEASE + RETRY.mul_f64(1.2) + Duration::from_millis(100));
    assert!(token > 1);
    assert_eq!(
        candidates[leader].handle.leader().as_deref(),
        Some(format!("candidate-{leader}").as_str())
    );
    stop.cancel();
    tokio::time::sleep(RENEW).await;
    timeline.assert_exclusive();
    // Each candidate logged the malformed record once (when it first saw it), with its holder
    // and what is wrong with it.
    let logged: Vec<String> = warnings
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains("malformed"))
        .cloned()
        .collect();
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(
        logged
            .iter()
            .all(|w| w.contains("someone-else") && w.contains("-3")),
        "{logged:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_expires_by_the_followers_clock_not_the_record_times() {
    // Another holder wrote a record whose times are decades old (its clock is wrong, or ours):
    // the lease still counts as held for a whole lease duration from when we first saw it.
    let lock = MemoryLock::new();
    let epoch = SystemTime::UNIX_EPOCH;
    let stale = LeaderRecord {
        holder_identity: "skewed".into(),
        lease_duration: LEASE,
        acquire_time: epoch,
        renew_time: epoch,
        leader_transitions: 4,
    };
    lock.create(&stale).await.unwrap();
    let (timeline, stop) = (Timeline::default(), CancellationToken::new());
    let start_at = Instant::now();
    let candidates = start(&lock, 1, &timeline, &stop);
    let mut new_leader = candidates[0].handle.watch();
    new_leader
        .wait_for(|s| s.leader.as_deref() == Some("skewed"))
        .await
        .unwrap();
    leader_other_than(&candidates, None).await;
    assert!(timeline.terms()[0].1 >= start_at + LEASE);
    assert_eq!(lock.peek().unwrap().record.unwrap().leader_transitions, 5);

    // And a holder that keeps renewing is never taken over, however old its wall-clock times.
    stop.cancel();
    tokio::time::sleep(RENEW).await;
}

#[tokio::test(start_paused = true)]
async fn a_renewing_holder_is_never_taken_over() {
    let lock = MemoryLock::new();
    let (timeline, stop) = (Timeline::default(), CancellationToken::new());
    let candidates = start(&lock, 3, &timeline, &stop);
    let leader = leader_other_than(&candidates, None).await;
    tokio::time::sleep(LEASE * 20).await;
    assert!(candidates[leader].handle.is_leader());
    assert_eq!(timeline.terms().len(), 1);
    for (i, c) in candidates.iter().enumerate() {
        assert_eq!(
            c.handle.leader(),
            Some(format!("candidate-{leader}")),
            "candidate {i}"
        );
        assert!(c.handle.check_health(Duration::ZERO).is_ok());
    }
    stop.cancel();
    tokio::time::sleep(RENEW).await;
}

#[tokio::test(start_paused = true)]
async fn health_fails_while_the_leaders_renewals_are_overdue() {
    let lock = MemoryLock::new();
    let (timeline, stop) = (Timeline::default(), CancellationToken::new());
    let candidates = start(&lock, 1, &timeline, &stop);
    leader_other_than(&candidates, None).await;
    let handle = &candidates[0].handle;
    assert_eq!(handle.check_health(Duration::from_secs(1)), Ok(()));
    candidates[0].client.set_delay(LEASE * 10);
    tokio::time::sleep(RETRY + RETRY).await;
    assert!(handle.is_leader());
    assert!(matches!(
        handle.check_health(Duration::from_secs(1)),
        Err(HealthError::RenewalOverdue { .. })
    ));
    stop.cancel();
    tokio::time::sleep(RENEW * 2).await;
    assert_eq!(
        handle.check_health(Duration::from_secs(1)),
        Err(HealthError::Stopped)
    );
}

#[test]
fn invalid_durations_are_refused_when_the_elector_is_built() {
    let error = LeaderElector::new(
        MemoryLock::new(),
        LeaderElectionOptions::new("a")
            .lease_duration(Duration::from_secs(5))
            .renew_deadline(Duration::from_secs(5)),
    )
    .unwrap_err();
    assert!(matches!(
        error,
        OptionsError::LeaseNotLongerThanRenewDeadline { .. }
    ));
    assert!(LeaderElector::new(MemoryLock::new(), LeaderElectionOptions::new("")).is_err());
}
