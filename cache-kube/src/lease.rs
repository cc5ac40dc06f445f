//! [`KubeLeaseLock`]: a leader-election lock on a `coordination.k8s.io/v1` Lease, updated under
//! resourceVersion preconditions.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::leader::{LeaderRecord, LeaseLock, LockError, LockState, MalformedRecord, Written};
use futures::future::BoxFuture;
use kube::Client;
use serde::Deserialize;
use serde_json::{Value, json};

/// The spec of a Lease, as far as leader election reads it (client-go's
/// `LeaseSpecToLeaderElectionRecord`). Missing fields are zero values.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LeaseSpec {
    holder_identity: Option<String>,
    lease_duration_seconds: Option<i64>,
    acquire_time: Option<String>,
    renew_time: Option<String>,
    lease_transitions: Option<i64>,
}

/// Kubernetes' `MicroTime`: RFC 3339 in UTC with six fractional digits.
fn micro_time(t: SystemTime) -> Result<String, LockError> {
    let ts = jiff::Timestamp::try_from(t).map_err(|e| LockError::Invalid(e.to_string()))?;
    Ok(ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

fn parse_time(field: &str, value: Option<&str>) -> Result<SystemTime, String> {
    match value {
        None => Ok(UNIX_EPOCH),
        Some(text) => text
            .parse::<jiff::Timestamp>()
            .map(SystemTime::from)
            .map_err(|e| format!("spec.{field} {text:?}: {e}")),
    }
}

/// Reads a Lease's spec; one that cannot be read is malformed, naming its holder if it can.
fn decode_spec(spec: Option<&Value>) -> Result<LeaderRecord, MalformedRecord> {
    let holder_of = |spec: Option<&Value>| {
        spec.and_then(|s| s.get("holderIdentity"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let malformed = |reason: String| MalformedRecord {
        holder_identity: holder_of(spec),
        reason,
    };
    let parsed: LeaseSpec = match spec {
        None | Some(Value::Null) => LeaseSpec::default(),
        Some(value) => {
            LeaseSpec::deserialize(value).map_err(|e| malformed(format!("spec: {e}")))?
        }
    };
    let holder = parsed.holder_identity.unwrap_or_default();
    let seconds = parsed.lease_duration_seconds.unwrap_or(0);
    if !holder.is_empty() && seconds <= 0 {
        return Err(malformed(format!(
            "spec.leaseDurationSeconds is {seconds} for holder {holder:?}"
        )));
    }
    let transitions = parsed.lease_transitions.unwrap_or(0);
    Ok(LeaderRecord {
        holder_identity: holder,
        lease_duration: Duration::from_secs(u64::try_from(seconds).unwrap_or(0)),
        acquire_time: parse_time("acquireTime", parsed.acquire_time.as_deref())
            .map_err(malformed)?,
        renew_time: parse_time("renewTime", parsed.renew_time.as_deref()).map_err(malformed)?,
        leader_transitions: u32::try_from(transitions)
            .map_err(|_| malformed(format!("spec.leaseTransitions is {transitions}")))?,
    })
}

fn spec_of(record: &LeaderRecord) -> Result<Value, LockError> {
    // Kubernetes stores whole seconds; round up, so the lease is never shorter than asked.
    let d = record.lease_duration;
    let seconds = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Ok(json!({
        "holderIdentity": record.holder_identity,
        "leaseDurationSeconds": seconds.max(1),
        "acquireTime": micro_time(record.acquire_time)?,
        "renewTime": micro_time(record.renew_time)?,
        "leaseTransitions": record.leader_transitions,
    }))
}

fn resource_version(object: &Value) -> Result<String, LockError> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| LockError::Invalid("a Lease without metadata.resourceVersion".into()))
}

fn lock_error(error: kube::Error) -> LockError {
    match error {
        kube::Error::Api(status) if status.code == 409 => LockError::Conflict,
        kube::Error::Api(status) => LockError::Unavailable(format!(
            "API server: {} {}: {}",
            status.code, status.reason, status.message
        )),
        other => LockError::Unavailable(other.to_string()),
    }
}

/// A [`LeaseLock`] on a `coordination.k8s.io/v1` Lease: client-go's `LeaseLock`.
///
/// - The record is the Lease's spec (`holderIdentity`, `leaseDurationSeconds`, `acquireTime`,
///   `renewTime`, `leaseTransitions`), in the format every Kubernetes tool reads (`kubectl get
///   lease`).
/// - A create is a POST, which the server refuses (409) if the Lease exists; an update is a PUT
///   carrying the resourceVersion read, which the server refuses (409) if the Lease changed
///   since: both are [`LockError::Conflict`]. The rest of the object (labels, annotations,
///   owner references) is kept as read.
/// - The lock's version is the Lease's resourceVersion, and a write's fencing token is the
///   resourceVersion the server gives it, read as a number: on an etcd-backed API server it is
///   the etcd revision, which increases with every write, across deletions of the Lease too
///   (unlike `leaseTransitions`, which starts again at 0).
/// - A spec that cannot be read (a holder with no lease duration, a time that does not parse,
///   a field of the wrong type) is a [`MalformedRecord`]: the elector counts it as held by
///   its holder until it has not changed for a lease duration, and logs it.
///
/// ```
/// use cache_core::leader::{LeaderElectionOptions, LeaderElector};
/// use cache_kube::KubeLeaseLock;
/// use kube::{Client, Config};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let client = Client::try_from(Config::new("http://127.0.0.1:1".parse()?))?;
/// // let client = Client::try_default().await?;
/// let lock = KubeLeaseLock::new(client, "kube-system", "pod-controller");
/// let elector = LeaderElector::new(lock, LeaderElectionOptions::new("pod-controller-7f9c"))?;
/// # drop(elector); Ok(()) }
/// ```
pub struct KubeLeaseLock {
    client: Client,
    namespace: String,
    name: String,
    /// The Lease as last read or written, to update without losing its other fields.
    last: Mutex<Option<Value>>,
}

impl std::fmt::Debug for KubeLeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLeaseLock")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KubeLeaseLock {
    /// A lock on the Lease `namespace/name`.
    pub fn new(client: Client, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            name: name.into(),
            last: Mutex::new(None),
        }
    }

    fn collection(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
            self.namespace
        )
    }

    fn path(&self) -> String {
        format!("{}/{}", self.collection(), self.name)
    }

    fn remember(&self, object: Option<Value>) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = object;
    }

    /// Sends `request`; `None` if the server answers 404 (the Lease does not exist).
    async fn send(&self, request: http::Request<Vec<u8>>) -> Result<Option<Value>, LockError> {
        let text = match self.client.request_text(request).await {
            Ok(text) => text,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
            Err(error) => return Err(lock_error(error)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LockError::Invalid(format!("not a Lease: {e}")))
    }

    async fn write(
        &self,
        method: http::Method,
        uri: String,
        object: Value,
    ) -> Result<Written, LockError> {
        let body = serde_json::to_vec(&object).map_err(|e| LockError::Invalid(e.to_string()))?;
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .map_err(|e| LockError::Invalid(e.to_string()))?;
        // An update of a Lease deleted since it was read: it changed, as for a 409.
        let written = self.send(request).await?.ok_or(LockError::Conflict)?;
        let version = resource_version(&written)?;
        let token = version.parse::<u64>().map_err(|_| {
            LockError::Invalid(format!(
                "the resourceVersion {version:?} is not a number: no fencing token"
            ))
        })?;
        self.remember(Some(written));
        Ok(Written { version, token })
    }
}

impl LeaseLock for KubeLeaseLock {
    fn get(&self) -> BoxFuture<'_, Result<Option<LockState>, LockError>> {
        Box::pin(async move {
            let request = http::Request::get(self.path())
                .header(http::header::ACCEPT, "application/json")
                .body(Vec::new())
                .map_err(|e| LockError::Invalid(e.to_string()))?;
            let Some(object) = self.send(request).await? else {
                self.remember(None);
                return Ok(None);
            };
            let version = resource_version(&object)?;
            let record = decode_spec(object.get("spec"));
            self.remember(Some(object));
            Ok(Some(LockState { record, version }))
        })
    }

    fn create<'a>(&'a self, record: &'a LeaderRecord) -> BoxFuture<'a, Result<Written, LockError>> {
        Box::pin(async move {
            let object = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": { "name": self.name, "namespace": self.namespace },
                "spec": spec_of(record)?,
            });
            self.write(http::Method::POST, self.collection(), object)
                .await
        })
    }

    fn update<'a>(
        &'a self,
        version: &'a str,
        record: &'a LeaderRecord,
    ) -> BoxFuture<'a, Result<Written, LockError>> {
        Box::pin(async move {
            let last = self
                .last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let mut object = last.unwrap_or_else(|| {
                json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": { "name": self.name, "namespace": self.namespace },
                })
            });
            object["spec"] = spec_of(record)?;
            // The precondition: the server refuses the update if the Lease changed since.
            object["metadata"]["resourceVersion"] = Value::String(version.to_owned());
            self.write(http::Method::PUT, self.path(), object).await
        })
    }

    fn describe(&self) -> String {
        format!("Lease {}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_and_bad_ones_name_their_holder() {
        let record = LeaderRecord {
            holder_identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            acquire_time: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            renew_time: UNIX_EPOCH + Duration::from_secs(1_700_000_010),
            leader_transitions: 2,
        };
        let spec = spec_of(&record).unwrap();
        assert_eq!(spec["acquireTime"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(spec["renewTime"], "2023-11-14T22:13:30.000000Z");
        assert_eq!(decode_spec(Some(&spec)), Ok(record));

        // A released Lease, and one with no spec: no holder.
        let released = json!({"holderIdentity": "", "leaseDurationSeconds": 1});
        assert_eq!(decode_spec(Some(&released)).unwrap().holder_identity, "");
        assert_eq!(decode_spec(None).unwrap().holder_identity, "");

        for (spec, holder) in [
            (json!({"holderIdentity": "b"}), Some("b")),
            (
                json!({"holderIdentity": "b", "leaseDurationSeconds": -5}),
                Some("b"),
            ),
            (
                json!({"holderIdentity": "b", "leaseDurationSeconds": 15, "renewTime": "yesterday"}),
                Some("b"),
            ),
            (
                json!({"holderIdentity": "b", "leaseDurationSeconds": "15"}),
                Some("b"),
            ),
            (json!({"holderIdentity": 7}), None),
            (json!("not a spec"), None),
        ] {
            let malformed = decode_spec(Some(&spec)).unwrap_err();
            assert_eq!(malformed.holder_identity.as_deref(), holder, "{spec}");
        }
    }
}
