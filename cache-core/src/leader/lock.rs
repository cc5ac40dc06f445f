//! The [`LeaseLock`] contract: where candidates read and write who leads.

use std::fmt;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use thiserror::Error;

/// Who holds a lock, and since when: client-go's `LeaderElectionRecord`.
///
/// The times are wall-clock times, written for people and tools that read the lock. The
/// elector never decides anything by them: a follower measures a lease's age by its own
/// clock, from the moment it saw the lock change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRecord {
    /// The identity of the holder; empty when the lock was released.
    pub holder_identity: String,
    /// How long the holder's lease lasts after it was last renewed.
    pub lease_duration: Duration,
    /// When the holder acquired the lock.
    pub acquire_time: SystemTime,
    /// When the holder last renewed it.
    pub renew_time: SystemTime,
    /// How many times the lock changed hands.
    pub leader_transitions: u32,
}

/// A lock whose content could not be read as a [`LeaderRecord`] (a Lease with a malformed
/// spec, a key with a value that is not a record). If it names a holder other than the
/// reader, it counts as held until it has not changed for the reader's own lease duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRecord {
    /// The holder it names, if that much could be read.
    pub holder_identity: Option<String>,
    /// What is wrong with it.
    pub reason: String,
}

/// A lock as read: its record (or why it could not be read) and its version, the
/// precondition of the next update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockState {
    /// The record, or why it is malformed.
    pub record: Result<LeaderRecord, MalformedRecord>,
    /// The lock's version (a resourceVersion, an etcd mod revision): every write changes it,
    /// and an update succeeds only against the current one.
    pub version: String,
}

impl LockState {
    /// The holder the record names, if any ("" after a release).
    pub fn holder(&self) -> Option<&str> {
        match &self.record {
            Ok(record) => Some(&record.holder_identity),
            Err(malformed) => malformed.holder_identity.as_deref(),
        }
    }
}

/// What a successful create or update of a lock returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The lock's new version.
    pub version: String,
    /// The fencing token of this write: it strictly increases from write to write of this
    /// lock (an etcd revision, a Lease's resourceVersion). A leadership's token is the token of
    /// the write that began it.
    pub token: u64,
}

/// Why a lock operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock changed since it was read (or exists already, for a create): someone else
    /// wrote it first.
    #[error("the lock was changed by another writer (conflict)")]
    Conflict,
    /// The lock's store could not be reached or refused the operation; try again later.
    #[error("the lock is unavailable: {0}")]
    Unavailable(String),
    /// The lock's store answered with something that is not a lock.
    #[error("the lock's store gave a bad answer: {0}")]
    Invalid(String),
}

/// Where candidates read and write who leads: client-go's `resourcelock.Interface`, async.
///
/// Implementations: [`MemoryLock`](super::MemoryLock) here, an etcd key on an etcd lease in
/// `cache-etcd`, a `coordination.k8s.io/v1` Lease in `cache-kube`.
///
/// The contract, on which the elector's safety rests:
/// - `create` fails with [`LockError::Conflict`] if the lock exists;
/// - `update` fails with [`LockError::Conflict`] unless the lock's version is still `version`
///   (a compare-and-swap), and every successful write gives a new version and a greater
///   [`Written::token`].
pub trait LeaseLock: Send + Sync + 'static {
    /// Reads the lock; `None` if it does not exist.
    fn get(&self) -> BoxFuture<'_, Result<Option<LockState>, LockError>>;

    /// Creates the lock with `record`, if it does not exist.
    fn create<'a>(&'a self, record: &'a LeaderRecord) -> BoxFuture<'a, Result<Written, LockError>>;

    /// Replaces the record of the lock, if its version is still `version`.
    fn update<'a>(
        &'a self,
        version: &'a str,
        record: &'a LeaderRecord,
    ) -> BoxFuture<'a, Result<Written, LockError>>;

    /// What the lock is, for logs (`etcd key /leases/pods`, `Lease kube-system/pods`).
    fn describe(&self) -> String;
}

impl fmt::Display for LeaderRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "held by {:?} for {:?}, {} transitions",
            self.holder_identity, self.lease_duration, self.leader_transitions
        )
    }
}
