//! [`EtcdLock`]: a leader-election lock on an etcd key, attached to an etcd lease and written
//! by revision-guarded transactions.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::leader::{LeaderRecord, LeaseLock, LockError, LockState, MalformedRecord, Written};
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// The record as stored in the key, in JSON (client-go's `LeaderElectionRecord` fields).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRecord {
    holder_identity: String,
    lease_duration_millis: u64,
    acquire_time_millis: u64,
    renew_time_millis: u64,
    leader_transitions: u32,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl StoredRecord {
    fn from_record(r: &LeaderRecord) -> Self {
        Self {
            holder_identity: r.holder_identity.clone(),
            lease_duration_millis: u64::try_from(r.lease_duration.as_millis()).unwrap_or(u64::MAX),
            acquire_time_millis: millis(r.acquire_time),
            renew_time_millis: millis(r.renew_time),
            leader_transitions: r.leader_transitions,
        }
    }

    fn into_record(self) -> Result<LeaderRecord, String> {
        if self.lease_duration_millis == 0 && !self.holder_identity.is_empty() {
            return Err("leaseDurationMillis is 0".into());
        }
        Ok(LeaderRecord {
            holder_identity: self.holder_identity,
            lease_duration: Duration::from_millis(self.lease_duration_millis),
            acquire_time: UNIX_EPOCH + Duration::from_millis(self.acquire_time_millis),
            renew_time: UNIX_EPOCH + Duration::from_millis(self.renew_time_millis),
            leader_transitions: self.leader_transitions,
        })
    }
}

/// Reads a stored value; a value that is not a record is malformed, with the holder it names
/// if that much can be read.
fn decode(value: &[u8]) -> Result<LeaderRecord, MalformedRecord> {
    serde_json::from_slice::<StoredRecord>(value)
        .map_err(|e| e.to_string())
        .and_then(StoredRecord::into_record)
        .map_err(|reason| MalformedRecord {
            holder_identity: serde_json::from_slice::<serde_json::Value>(value)
                .ok()
                .and_then(|v| v.get("holderIdentity")?.as_str().map(str::to_owned)),
            reason,
        })
}

fn unavailable(error: &etcd_client::Error) -> LockError {
    LockError::Unavailable(error.to_string())
}

/// A [`LeaseLock`] on one etcd key: etcd's election semantics.
///
/// - The record (holder, lease duration, times, transitions) is the key's JSON value.
/// - Every write is a transaction guarded by the key's revision: a create succeeds only if the
///   key does not exist (`create_revision == 0`), an update only if its `mod_revision` is still
///   the one read. The lock's version is the key's `mod_revision`, and a write's
///   [fencing token](cache_core::leader::Leadership::fencing_token) is etcd's revision after
///   it: it strictly increases across the whole cluster.
/// - The key is attached to an etcd lease of this candidate, with a TTL of the lease duration
///   (rounded up to whole seconds), kept alive at each renewal. If the leader dies or is cut
///   off, etcd deletes the key when the lease expires, and a follower creates it anew. A
///   release writes the key without a lease (no holder) and revokes the lease.
///
/// ```no_run
/// use std::time::Duration;
/// use cache_core::leader::{LeaderElectionOptions, LeaderElector};
/// use cache_etcd::EtcdLock;
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = cache_etcd::connect(&["http://127.0.0.1:2379"]).await?;
/// let lease = Duration::from_secs(15);
/// let lock = EtcdLock::new(client, "/leases/pod-controller", lease);
/// let config = LeaderElectionOptions::new("replica-a").lease_duration(lease);
/// let elector = LeaderElector::new(lock, config)?;
/// let leader = elector.handle();
/// tokio::spawn(elector.run(CancellationToken::new()));
/// let term = leader.started_leading().await.expect("running");
/// println!("leading, fencing token {}", term.fencing_token());
/// # Ok(()) }
/// ```
pub struct EtcdLock {
    client: Client,
    key: String,
    ttl_seconds: i64,
    lease: Mutex<Option<i64>>,
}

impl std::fmt::Debug for EtcdLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLock")
            .field("key", &self.key)
            .field("ttl_seconds", &self.ttl_seconds)
            .field("lease", &self.current_lease())
            .finish_non_exhaustive()
    }
}

impl EtcdLock {
    /// A lock on `key`, whose etcd lease lasts `lease_duration` (rounded up to whole seconds,
    /// at least one): pass the elector's lease duration.
    pub fn new(client: Client, key: impl Into<String>, lease_duration: Duration) -> Self {
        let secs = lease_duration.as_secs() + u64::from(lease_duration.subsec_nanos() > 0);
        Self {
            client,
            key: key.into(),
            ttl_seconds: i64::try_from(secs.max(1)).unwrap_or(i64::MAX),
            lease: Mutex::new(None),
        }
    }

    /// The key of the lock.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn current_lease(&self) -> Option<i64> {
        *self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_lease(&self, lease: Option<i64>) {
        *self.lease.lock().unwrap_or_else(PoisonError::into_inner) = lease;
    }

    /// This candidate's etcd lease, kept alive now, or a new one if it has expired (or cannot
    /// be kept alive: the key then moves to the new lease, and the old one expires).
    async fn live_lease(&self) -> Result<i64, LockError> {
        let mut client = self.client.clone();
        if let Some(id) = self.current_lease() {
            let kept = async {
                let (mut keeper, mut stream) = client.lease_keep_alive(id).await?;
                keeper.keep_alive().await?;
                Ok::<_, etcd_client::Error>(stream.message().await?.is_some_and(|r| r.ttl() > 0))
            };
            if let Ok(true) = kept.await {
                return Ok(id);
            }
            self.set_lease(None);
        }
        let granted = client
            .lease_grant(self.ttl_seconds, None)
            .await
            .map_err(|e| unavailable(&e))?;
        self.set_lease(Some(granted.id()));
        Ok(granted.id())
    }

    async fn write(&self, guard: Compare, record: &LeaderRecord) -> Result<Written, LockError> {
        let value = serde_json::to_vec(&StoredRecord::from_record(record))
            .map_err(|e| LockError::Invalid(e.to_string()))?;
        let released = record.holder_identity.is_empty();
        let options = if released {
            None
        } else {
            Some(PutOptions::new().with_lease(self.live_lease().await?))
        };
        let txn = Txn::new()
            .when([guard])
            .and_then([TxnOp::put(self.key.clone(), value, options)]);
        let response = self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(|e| unavailable(&e))?;
        if !response.succeeded() {
            return Err(LockError::Conflict);
        }
        let revision = response
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| LockError::Invalid("a transaction response without a header".into()))?;
        if released && let Some(id) = self.current_lease() {
            self.set_lease(None);
            // The key is no longer attached to it; if this fails, it expires on its own.
            let _ = self.client.clone().lease_revoke(id).await;
        }
        Ok(Written {
            version: revision.to_string(),
            token: u64::try_from(revision)
                .map_err(|_| LockError::Invalid(format!("a negative revision {revision}")))?,
        })
    }
}

impl LeaseLock for EtcdLock {
    fn get(&self) -> BoxFuture<'_, Result<Option<LockState>, LockError>> {
        Box::pin(async move {
            let response = self
                .client
                .clone()
                .get(self.key.as_str(), None)
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(response.kvs().first().map(|kv| LockState {
                record: decode(kv.value()),
                version: kv.mod_revision().to_string(),
            }))
        })
    }

    fn create<'a>(&'a self, record: &'a LeaderRecord) -> BoxFuture<'a, Result<Written, LockError>> {
        Box::pin(async move {
            let guard = Compare::create_revision(self.key.as_str(), CompareOp::Equal, 0);
            self.write(guard, record).await
        })
    }

    fn update<'a>(
        &'a self,
        version: &'a str,
        record: &'a LeaderRecord,
    ) -> BoxFuture<'a, Result<Written, LockError>> {
        Box::pin(async move {
            let revision: i64 = version
                .parse()
                .map_err(|_| LockError::Invalid(format!("not an etcd revision: {version:?}")))?;
            let guard = Compare::mod_revision(self.key.as_str(), CompareOp::Equal, revision);
            self.write(guard, record).await
        })
    }

    fn describe(&self) -> String {
        format!("etcd key {}", self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_values_are_malformed_with_their_holder() {
        let record = LeaderRecord {
            holder_identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            acquire_time: UNIX_EPOCH + Duration::from_secs(100),
            renew_time: UNIX_EPOCH + Duration::from_secs(110),
            leader_transitions: 3,
        };
        let value = serde_json::to_vec(&StoredRecord::from_record(&record)).unwrap();
        assert_eq!(decode(&value), Ok(record));

        let bad = br#"{"holderIdentity":"b","leaseDurationMillis":"soon"}"#;
        let malformed = decode(bad).unwrap_err();
        assert_eq!(malformed.holder_identity.as_deref(), Some("b"));
        let zero = br#"{"holderIdentity":"c","leaseDurationMillis":0,"acquireTimeMillis":0,"renewTimeMillis":0,"leaderTransitions":0}"#;
        assert_eq!(
            decode(zero).unwrap_err().holder_identity.as_deref(),
            Some("c")
        );
        assert_eq!(decode(b"\xff").unwrap_err().holder_identity, None);
    }
}
