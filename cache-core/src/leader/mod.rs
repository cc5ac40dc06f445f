//! Leader election: several replicas of a controller, one of which reconciles at a time.
//!
//! Each replica runs a [`LeaderElector`] on the same [`LeaseLock`]; the one holding the lock
//! leads until it fails to renew it within its renew deadline, and followers take over only
//! after the lease has expired by their own clocks. This is client-go's `tools/leaderelection`
//! ([`LeaderElectionOptions`] has its timings and validation rules), with a fencing token per
//! term ([`Leadership::fencing_token`]) for guarding writes.
//!
//! Locks: [`MemoryLock`] here (tests, examples, one process), an etcd key on an etcd lease in
//! `cache-etcd`, a `coordination.k8s.io/v1` Lease in `cache-kube`. A
//! [`Controller`](crate::controller::Controller) runs under an elector with
//! [`leader_election`](crate::controller::Controller::leader_election).

mod elector;
mod lock;
mod memory;
mod options;

pub use elector::{ElectionState, HealthError, LeaderElector, LeaderHandle, Leadership, names};
pub use lock::{LeaderRecord, LeaseLock, LockError, LockState, MalformedRecord, Written};
pub use memory::MemoryLock;
pub use options::{
    DEFAULT_LEASE_DURATION, DEFAULT_RENEW_DEADLINE, DEFAULT_RETRY_PERIOD, JITTER_FACTOR,
    LeaderElectionOptions, OptionsError,
};

#[cfg(test)]
mod tests;
