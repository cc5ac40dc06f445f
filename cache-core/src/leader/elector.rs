//! [`LeaderElector`]: campaigns for a [`LeaseLock`], leads while it renews it, and steps down
//! before its lease can expire anywhere else.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use metrics::{Counter, Gauge, SharedString};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::lock::{LeaderRecord, LeaseLock, LockError, LockState, Written};
use super::options::{LeaderElectionOptions, OptionsError};

/// Metric names of an elector, labelled `name` (the election's name).
pub mod names {
    /// Gauge: 1 while this candidate leads, 0 otherwise (client-go's name).
    pub const MASTER_STATUS: &str = "leader_election_master_status";
    /// Counter: how many times this candidate started or stopped leading.
    pub const TRANSITIONS_TOTAL: &str = "leader_election_transitions_total";
}

/// How much an acquire retry may be lengthened at random, so that candidates started together
/// do not poll in step. client-go waits up to 2.2 retry periods; a smaller spread keeps a
/// takeover within a lease duration and about one retry period.
const ACQUIRE_JITTER: f64 = 0.2;

struct LeadershipInner {
    identity: String,
    token: u64,
    acquired_at: Instant,
    valid_until: Mutex<Instant>,
    lost: CancellationToken,
}

/// One term of leadership of this candidate: its fencing token, and until when it is sure to
/// lead. Cloning is cheap; every clone sees the term end.
///
/// Guard writes with the [`fencing_token`](Self::fencing_token): it is greater than the token of
/// every earlier term of every candidate on the same lock, so a store that remembers the
/// greatest token it has seen can refuse the writes of a leader that was replaced.
#[derive(Clone)]
pub struct Leadership(Arc<LeadershipInner>);

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("identity", &self.0.identity)
            .field("token", &self.0.token)
            .field("valid", &self.is_valid())
            .finish()
    }
}

impl Leadership {
    fn new(identity: &str, token: u64, acquired_at: Instant, valid_until: Instant) -> Self {
        Self(Arc::new(LeadershipInner {
            identity: identity.to_owned(),
            token,
            acquired_at,
            valid_until: Mutex::new(valid_until),
            lost: CancellationToken::new(),
        }))
    }

    /// The fencing token of this term: strictly greater than that of any earlier term on the
    /// same lock (the version of the write that began it: an etcd revision, a Lease's
    /// resourceVersion).
    pub fn fencing_token(&self) -> u64 {
        self.0.token
    }

    /// The identity of the leader (this candidate).
    pub fn identity(&self) -> &str {
        &self.0.identity
    }

    /// When the term began (when the write that won the lock was sent).
    pub fn acquired_at(&self) -> Instant {
        self.0.acquired_at
    }

    /// Until when this candidate is sure to lead unless it renews again: the start of its last
    /// successful renewal plus the renew deadline. No other candidate can take over before.
    pub fn valid_until(&self) -> Instant {
        *self
            .0
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn extend(&self, until: Instant) {
        let mut valid = self
            .0
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *valid = (*valid).max(until);
    }

    /// Whether the term is still on: not ended, and not past [`valid_until`](Self::valid_until).
    pub fn is_valid(&self) -> bool {
        !self.0.lost.is_cancelled() && Instant::now() < self.valid_until()
    }

    /// Completes when the term ends (stepped down, lost, cancelled).
    pub async fn lost(&self) {
        self.0.lost.cancelled().await;
    }

    /// A token cancelled when the term ends, to hand to work that must stop with it.
    pub fn cancellation(&self) -> CancellationToken {
        self.0.lost.child_token()
    }

    fn end(&self) {
        self.0.lost.cancel();
    }
}

/// What a candidate knows of the election, as published to its [`LeaderHandle`]s.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ElectionState {
    /// This candidate's current term, if it leads.
    pub leadership: Option<Leadership>,
    /// The leader it last observed in the lock (itself included); `None` before it has read the
    /// lock, or when the lock is released.
    pub leader: Option<String>,
    /// When this candidate last renewed (or acquired) the lock successfully, while leading.
    pub last_renewal: Option<Instant>,
    /// Whether the elector has stopped (cancelled, or its task gone).
    pub stopped: bool,
}

/// Why a [`LeaderHandle::check_health`] failed: client-go's leader-election healthz check.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HealthError {
    /// The leader has not renewed for longer than the retry period plus the tolerance.
    #[error("the leader's renewals are overdue: last renewed {since:?} ago")]
    RenewalOverdue {
        /// How long ago it last renewed.
        since: Duration,
    },
    /// The elector is not running.
    #[error("the leader elector is not running")]
    Stopped,
}

/// A handle on a candidate's election, to use while it runs: is it leading, who leads, wait
/// for a term, check health. Cloning is cheap.
#[derive(Clone)]
pub struct LeaderHandle {
    state: watch::Receiver<ElectionState>,
    identity: Arc<str>,
    retry_period: Duration,
}

impl fmt::Debug for LeaderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderHandle")
            .field("identity", &self.identity)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl LeaderHandle {
    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// What the candidate knows now.
    pub fn state(&self) -> ElectionState {
        self.state.borrow().clone()
    }

    /// A receiver of every change of the [`ElectionState`] (terms begun and ended, new leaders
    /// observed, renewals).
    pub fn watch(&self) -> watch::Receiver<ElectionState> {
        self.state.clone()
    }

    /// Whether this candidate leads now (its term is valid).
    pub fn is_leader(&self) -> bool {
        self.state
            .borrow()
            .leadership
            .as_ref()
            .is_some_and(Leadership::is_valid)
    }

    /// The current term, if this candidate leads.
    pub fn leadership(&self) -> Option<Leadership> {
        self.state.borrow().leadership.clone()
    }

    /// The leader last observed (client-go's `GetLeader`).
    pub fn leader(&self) -> Option<String> {
        self.state.borrow().leader.clone()
    }

    /// Waits until this candidate leads, and returns its term; `None` if the elector stops
    /// first.
    pub async fn started_leading(&self) -> Option<Leadership> {
        let mut rx = self.state.clone();
        let state = rx
            .wait_for(|state| state.leadership.is_some() || state.stopped)
            .await
            .ok()?;
        state.leadership.clone()
    }

    /// Waits until the observed leader differs from `previous`, and returns it.
    pub async fn new_leader(&self, previous: Option<&str>) -> Option<String> {
        let mut rx = self.state.clone();
        let state = rx
            .wait_for(|state| state.leader.as_deref() != previous || state.stopped)
            .await
            .ok()?;
        state.leader.clone()
    }

    /// client-go's leader-election health check: healthy unless this candidate leads and has
    /// not renewed for longer than the retry period plus `tolerance` (its renewals are stuck,
    /// or its elector is), or the elector has stopped.
    ///
    /// # Errors
    ///
    /// [`HealthError`] says which.
    pub fn check_health(&self, tolerance: Duration) -> Result<(), HealthError> {
        let state = self.state.borrow();
        if state.stopped || self.state.has_changed().is_err() {
            return Err(HealthError::Stopped);
        }
        if let (Some(_), Some(last)) = (&state.leadership, state.last_renewal) {
            let since = last.elapsed();
            if since > self.retry_period + tolerance {
                return Err(HealthError::RenewalOverdue { since });
            }
        }
        Ok(())
    }
}

type Callback<A> = Box<dyn Fn(A) + Send + Sync>;

#[derive(Default)]
struct Callbacks {
    started: Option<Callback<Leadership>>,
    stopped: Option<Callback<()>>,
    new_leader: Option<Callback<String>>,
}

/// Why an acquire or renew attempt did not make this candidate the leader.
#[derive(Debug)]
enum Attempt {
    /// Another candidate holds an unexpired lease.
    Held(String),
    /// The lock refused or failed.
    Lock(LockError),
}

impl From<LockError> for Attempt {
    fn from(error: LockError) -> Self {
        Attempt::Lock(error)
    }
}

/// What the candidate last saw in the lock, and when, by its own clock.
struct Observed {
    version: String,
    at: Instant,
}

struct ElectorMetrics {
    master: Gauge,
    transitions: Counter,
}

/// A candidate in a leader election on a [`LeaseLock`]: client-go's `LeaderElector`.
///
/// [`run`](Self::run) campaigns until it wins, leads while it renews, and campaigns again
/// after it loses, until it is cancelled. Its guarantees:
///
/// - **Takeover by the follower's clock.** A follower takes over a lock only once it has seen
///   it unchanged for the lease duration, measured on its own clock from the moment it saw it
///   change: a skewed wall clock does not matter.
/// - **Steps down in time.** A leader whose renewals fail steps down when the renew deadline
///   has passed since the start of its last successful renewal, before the lease duration
///   (longer, by the rules) can have passed for any follower. It leaves a term as soon as it
///   sees another holder.
/// - **Fencing.** Each term carries a [`fencing token`](Leadership::fencing_token) greater than
///   any earlier term's.
/// - **Release on cancel**, when configured: the leader clears the holder, and a follower
///   takes over at once.
/// - **Malformed locks** (a record that cannot be read) count as held by another candidate
///   until they have not changed for this candidate's lease duration; each is logged.
///
/// Unlike client-go's, a candidate that loses leadership campaigns again (its caches stay
/// warm, so it can take over quickly).
///
/// ```
/// use std::time::Duration;
/// use cache_core::leader::{LeaderElectionOptions, LeaderElector, MemoryLock};
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_core::leader::OptionsError> {
/// let lock = MemoryLock::new();
/// let config = LeaderElectionOptions::new("replica-a")
///     .lease_duration(Duration::from_secs(15))
///     .renew_deadline(Duration::from_secs(10))
///     .retry_period(Duration::from_secs(2));
/// let elector = LeaderElector::new(lock.connect(), config)?
///     .on_started_leading(|term| println!("leading with token {}", term.fencing_token()));
/// let handle = elector.handle();
/// let stop = CancellationToken::new();
/// let run = tokio::spawn(elector.run(stop.clone()));
///
/// let term = handle.started_leading().await.expect("the only candidate wins");
/// assert_eq!(handle.leader().as_deref(), Some("replica-a"));
/// stop.cancel(); // steps down and releases the lock
/// run.await.unwrap();
/// assert!(!term.is_valid());
/// assert_eq!(lock.peek().and_then(|s| s.holder().map(str::to_owned)).as_deref(), Some(""));
/// # Ok(())
/// # }
/// ```
pub struct LeaderElector {
    lock: Box<dyn LeaseLock>,
    config: LeaderElectionOptions,
    callbacks: Callbacks,
    state: watch::Sender<ElectionState>,
    observed: Option<Observed>,
}

impl fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderElector")
            .field("lock", &self.lock.describe())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// A candidate on `lock`, configured by `config`.
    ///
    /// # Errors
    ///
    /// [`OptionsError`] if `config` breaks one of client-go's rules
    /// ([`LeaderElectionOptions::validate`]).
    pub fn new(lock: impl LeaseLock, config: LeaderElectionOptions) -> Result<Self, OptionsError> {
        config.validate()?;
        Ok(Self {
            lock: Box::new(lock),
            config,
            callbacks: Callbacks::default(),
            state: watch::Sender::new(ElectionState::default()),
            observed: None,
        })
    }

    /// Calls `f` with each term when this candidate starts leading (client-go's
    /// `OnStartedLeading`); [`Leadership::lost`] tells when the term ends.
    #[must_use]
    pub fn on_started_leading(mut self, f: impl Fn(Leadership) + Send + Sync + 'static) -> Self {
        self.callbacks.started = Some(Box::new(f));
        self
    }

    /// Calls `f` when this candidate stops leading (client-go's `OnStoppedLeading`).
    #[must_use]
    pub fn on_stopped_leading(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.callbacks.stopped = Some(Box::new(move |()| f()));
        self
    }

    /// Calls `f` with the identity of each new leader this candidate observes, itself included
    /// (client-go's `OnNewLeader`).
    #[must_use]
    pub fn on_new_leader(mut self, f: impl Fn(String) + Send + Sync + 'static) -> Self {
        self.callbacks.new_leader = Some(Box::new(f));
        self
    }

    /// A handle on this candidate's election.
    pub fn handle(&self) -> LeaderHandle {
        LeaderHandle {
            state: self.state.subscribe(),
            identity: Arc::from(self.config.identity.as_str()),
            retry_period: self.config.retry_period,
        }
    }

    /// The configuration.
    pub fn options(&self) -> &LeaderElectionOptions {
        &self.config
    }

    /// Campaigns, leads, and campaigns again after a lost term, until `cancel` is cancelled;
    /// then ends the current term and, if so configured, releases the lock.
    ///
    /// The metric handles ([`names`]) are registered when `run` is called, with the recorder
    /// installed then.
    pub fn run(self, cancel: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
        let name = SharedString::from(self.config.name.clone());
        let metrics = ElectorMetrics {
            master: metrics::gauge!(names::MASTER_STATUS, "name" => name.clone()),
            transitions: metrics::counter!(names::TRANSITIONS_TOTAL, "name" => name),
        };
        metrics.master.set(0.0);
        let span = tracing::info_span!(
            "leader_election",
            name = %self.config.name,
            identity = %self.config.identity
        );
        self.run_inner(metrics, cancel).instrument(span)
    }

    async fn run_inner(mut self, metrics: ElectorMetrics, cancel: CancellationToken) {
        info!(lock = %self.lock.describe(), "Campaigning for leadership");
        while !cancel.is_cancelled() {
            let term = tokio::select! {
                () = cancel.cancelled() => break,
                term = self.acquire() => term,
            };
            self.lead(term, &metrics, &cancel).await;
        }
        self.state.send_modify(|state| state.stopped = true);
    }

    /// Tries until it wins the lock.
    async fn acquire(&mut self) -> Leadership {
        loop {
            let started = Instant::now();
            let attempt = tokio::time::timeout(
                self.config.renew_deadline,
                self.try_acquire_or_renew(started, false),
            )
            .await;
            match attempt {
                Ok(Ok(written)) => {
                    return Leadership::new(
                        &self.config.identity,
                        written.token,
                        started,
                        started + self.config.renew_deadline,
                    );
                }
                Ok(Err(Attempt::Held(holder))) => debug!(%holder, "the lock is held"),
                Ok(Err(Attempt::Lock(error))) => debug!(%error, "could not acquire the lock"),
                Err(_) => debug!("acquiring the lock timed out"),
            }
            let jitter = 1.0 + ACQUIRE_JITTER * rand::random::<f64>();
            tokio::time::sleep(self.config.retry_period.mul_f64(jitter)).await;
        }
    }

    /// Leads for one term: renews every retry period until a renewal misses the deadline, the
    /// lock shows another holder, or `cancel`.
    async fn lead(
        &mut self,
        term: Leadership,
        metrics: &ElectorMetrics,
        cancel: &CancellationToken,
    ) {
        info!(token = term.fencing_token(), "Started leading");
        metrics.master.set(1.0);
        metrics.transitions.increment(1);
        self.state.send_modify(|state| {
            state.leadership = Some(term.clone());
            state.last_renewal = Some(term.acquired_at());
        });
        if let Some(f) = &self.callbacks.started {
            f(term.clone());
        }
        let why = 'term: loop {
            tokio::select! {
                () = cancel.cancelled() => break 'term "cancelled",
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
            // Renew, retrying until the deadline.
            loop {
                let deadline = term.valid_until();
                let started = Instant::now();
                if started >= deadline {
                    break 'term "the renew deadline passed";
                }
                let attempt = tokio::select! {
                    () = cancel.cancelled() => break 'term "cancelled",
                    attempt = tokio::time::timeout_at(
                        deadline,
                        self.try_acquire_or_renew(started, true),
                    ) => attempt,
                };
                match attempt {
                    Ok(Ok(_)) => {
                        term.extend(started + self.config.renew_deadline);
                        self.state
                            .send_modify(|state| state.last_renewal = Some(started));
                        break;
                    }
                    Ok(Err(Attempt::Held(_))) => break 'term "another candidate holds the lock",
                    Ok(Err(Attempt::Lock(error))) => warn!(%error, "renewal failed"),
                    Err(_) => break 'term "the renew deadline passed",
                }
                let next = (Instant::now() + self.config.retry_period).min(deadline);
                tokio::select! {
                    () = cancel.cancelled() => break 'term "cancelled",
                    () = tokio::time::sleep_until(next) => {}
                }
            }
        };
        // Step down first, then release: nothing of this term may run once another can start.
        term.end();
        metrics.master.set(0.0);
        metrics.transitions.increment(1);
        self.state.send_modify(|state| {
            state.leadership = None;
            state.last_renewal = None;
        });
        info!(
            token = term.fencing_token(),
            reason = why,
            "Stopped leading"
        );
        if let Some(f) = &self.callbacks.stopped {
            f(());
        }
        if cancel.is_cancelled() && self.config.release_on_cancel {
            self.release().await;
        }
    }

    /// Clears the holder, if this candidate still holds the lock, so another can take over at
    /// once. Retried every retry period until the renew deadline.
    async fn release(&mut self) {
        let deadline = Instant::now() + self.config.renew_deadline;
        loop {
            match tokio::time::timeout_at(deadline, self.release_once()).await {
                Ok(Ok(true)) => return info!("Released the lock"),
                Ok(Ok(false)) => return,
                Ok(Err(error)) => debug!(%error, "releasing the lock failed"),
                Err(_) => break,
            }
            if Instant::now() + self.config.retry_period >= deadline {
                break;
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
        warn!("could not release the lock: it expires by itself");
    }

    /// One attempt to release the lock; whether it was this candidate's to release.
    async fn release_once(&self) -> Result<bool, LockError> {
        let Some(current) = self.lock.get().await? else {
            return Ok(false);
        };
        let Ok(record) = &current.record else {
            return Ok(false);
        };
        if record.holder_identity != self.config.identity {
            return Ok(false);
        }
        let released = LeaderRecord {
            holder_identity: String::new(),
            lease_duration: Duration::from_secs(1),
            renew_time: SystemTime::now(),
            ..record.clone()
        };
        self.lock.update(&current.version, &released).await?;
        Ok(true)
    }

    /// Notes what the lock holds now, and when this candidate first saw this version of it.
    fn observe(&mut self, current: &LockState, now: Instant) {
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|observed| observed.version != current.version);
        if !changed {
            return;
        }
        self.observed = Some(Observed {
            version: current.version.clone(),
            at: now,
        });
        if let Err(malformed) = &current.record {
            warn!(
                holder = malformed.holder_identity.as_deref().unwrap_or("(unreadable)"),
                reason = %malformed.reason,
                version = %current.version,
                "the lock's record is malformed: it counts as held until it expires"
            );
        }
        let holder = current
            .holder()
            .filter(|h| !h.is_empty())
            .map(str::to_owned);
        self.set_leader(holder);
    }

    fn set_leader(&mut self, leader: Option<String>) {
        let mut new = None;
        self.state.send_if_modified(|state| {
            if state.leader == leader {
                return false;
            }
            state.leader.clone_from(&leader);
            new.clone_from(&leader);
            true
        });
        if let Some(leader) = new {
            info!(%leader, "New leader observed");
            if let Some(f) = &self.callbacks.new_leader {
                f(leader);
            }
        }
    }

    /// One attempt to acquire the lock (`leading` false) or renew it (`leading` true):
    /// client-go's `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(
        &mut self,
        now: Instant,
        leading: bool,
    ) -> Result<Written, Attempt> {
        let identity = self.config.identity.clone();
        let wall = SystemTime::now();
        let Some(current) = self.lock.get().await? else {
            let record = LeaderRecord {
                holder_identity: identity.clone(),
                lease_duration: self.config.lease_duration,
                acquire_time: wall,
                renew_time: wall,
                leader_transitions: 0,
            };
            let written = self.lock.create(&record).await?;
            self.wrote(written.version.clone(), now);
            return Ok(written);
        };
        self.observe(&current, now);
        let observed_at = self.observed.as_ref().map_or(now, |o| o.at);
        let (held_by_other, lease, previous) = match &current.record {
            Ok(record) => (
                !record.holder_identity.is_empty() && record.holder_identity != identity,
                record.lease_duration,
                Some(record),
            ),
            // Whatever it names, a record that cannot be read is not ours to renew.
            Err(_) => (true, self.config.lease_duration, None),
        };
        if held_by_other && observed_at + lease > now {
            let holder = current.holder().unwrap_or("(unreadable)").to_owned();
            return Err(Attempt::Held(holder));
        }
        if leading && held_by_other {
            return Err(Attempt::Held(
                current.holder().unwrap_or_default().to_owned(),
            ));
        }
        let ours = previous.filter(|r| r.holder_identity == identity);
        let record = LeaderRecord {
            holder_identity: identity,
            lease_duration: self.config.lease_duration,
            acquire_time: ours.map_or(wall, |r| r.acquire_time),
            renew_time: wall,
            leader_transitions: match (ours, previous) {
                (Some(r), _) => r.leader_transitions,
                (None, Some(r)) => r.leader_transitions.saturating_add(1),
                (None, None) => 1,
            },
        };
        let written = self.lock.update(&current.version, &record).await?;
        self.wrote(written.version.clone(), now);
        Ok(written)
    }

    fn wrote(&mut self, version: String, now: Instant) {
        self.observed = Some(Observed { version, at: now });
        self.set_leader(Some(self.config.identity.clone()));
    }
}
