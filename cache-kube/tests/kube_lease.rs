//! The Lease lock against recorded API server responses (served over real HTTP by
//! `support::ApiServer`): create, read, update under the resourceVersion precondition,
//! conflicts, a malformed spec, and an elector winning a missing Lease.
//!
//! The same against a real kube-apiserver is still to be added, on that harness.

mod support;

use std::time::{Duration, UNIX_EPOCH};

use cache_core::leader::{
    LeaderElectionOptions, LeaderElector, LeaderRecord, LeaseLock, LockError,
};
use cache_kube::KubeLeaseLock;
use serde_json::Value;
use support::{ApiServer, Reply, within};
use tokio_util::sync::CancellationToken;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/ha-controller";

fn record(holder: &str, transitions: u32) -> LeaderRecord {
    LeaderRecord {
        holder_identity: holder.into(),
        lease_duration: Duration::from_secs(15),
        acquire_time: UNIX_EPOCH + Duration::from_secs(1_796_000_000),
        renew_time: UNIX_EPOCH + Duration::from_secs(1_796_000_000),
        leader_transitions: transitions,
    }
}

fn lock(server: &ApiServer) -> KubeLeaseLock {
    KubeLeaseLock::new(server.client(), "kube-system", "ha-controller")
}

fn body(server: &ApiServer, request: usize) -> Value {
    serde_json::from_str(&server.seen()[request].body).unwrap()
}

#[tokio::test]
async fn a_missing_lease_is_created_and_its_resource_version_is_the_token() {
    let server = ApiServer::start().await;
    server
        .on_list(Reply::fixture(404, "status-404-lease.json"))
        .on_list(Reply::fixture(201, "lease-created.json"));
    let lock = lock(&server);
    assert_eq!(within(lock.get()).await, Ok(None));
    let written = within(lock.create(&record("replica-a", 0))).await.unwrap();
    assert_eq!((written.version.as_str(), written.token), ("5012", 5012));

    let seen = server.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", LEASE)
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("POST", LEASES)
    );
    let sent = body(&server, 1);
    assert_eq!(sent["kind"], "Lease");
    assert_eq!(sent["metadata"]["name"], "ha-controller");
    assert_eq!(sent["spec"]["holderIdentity"], "replica-a");
    assert_eq!(sent["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(sent["spec"]["acquireTime"], "2026-11-30T00:53:20.000000Z");
}

#[tokio::test]
async fn an_update_carries_the_resource_version_read_and_keeps_the_other_fields() {
    let server = ApiServer::start().await;
    server
        .on_list(Reply::fixture(200, "lease-held.json"))
        .on_list(Reply::fixture(200, "lease-taken-over.json"));
    let lock = lock(&server);
    let held = within(lock.get()).await.unwrap().unwrap();
    assert_eq!(held.version, "5120");
    let current = held.record.clone().unwrap();
    assert_eq!(current.holder_identity, "replica-b");
    assert_eq!(current.lease_duration, Duration::from_secs(15));
    assert_eq!(current.leader_transitions, 3);

    let written = within(lock.update(&held.version, &record("replica-a", 4)))
        .await
        .unwrap();
    assert_eq!(written.token, 5200);
    let seen = server.seen();
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("PUT", LEASE)
    );
    let sent = body(&server, 1);
    assert_eq!(
        sent["metadata"]["resourceVersion"], "5120",
        "the precondition"
    );
    assert_eq!(
        sent["metadata"]["uid"],
        "6f1d3a52-8c1e-4a36-9d0b-2a4f1e7c9b10"
    );
    assert_eq!(
        sent["metadata"]["labels"]["app.kubernetes.io/name"],
        "ha-controller"
    );
    assert_eq!(sent["spec"]["holderIdentity"], "replica-a");
    assert_eq!(sent["spec"]["leaseTransitions"], 4);
}

#[tokio::test]
async fn stale_updates_and_existing_creates_are_conflicts() {
    let server = ApiServer::start().await;
    server
        .on_list(Reply::fixture(409, "status-409-conflict.json"))
        .on_list(Reply::fixture(409, "status-409-exists.json"))
        .on_list(Reply::fixture(404, "status-404-lease.json"))
        .on_list(Reply::fixture(500, "status-500.json"));
    let lock = lock(&server);
    let update = within(lock.update("5000", &record("replica-a", 1))).await;
    assert_eq!(update, Err(LockError::Conflict));
    assert_eq!(
        within(lock.create(&record("replica-a", 0))).await,
        Err(LockError::Conflict)
    );
    // Updating a Lease deleted since it was read: it changed.
    let deleted = within(lock.update("5000", &record("replica-a", 1))).await;
    assert_eq!(deleted, Err(LockError::Conflict));
    assert!(
        matches!(within(lock.get()).await, Err(LockError::Unavailable(m)) if m.contains("500"))
    );
}

#[tokio::test]
async fn a_malformed_spec_is_read_as_held_by_its_holder() {
    let server = ApiServer::start().await;
    server.on_list(Reply::fixture(200, "lease-malformed.json"));
    let state = within(lock(&server).get()).await.unwrap().unwrap();
    assert_eq!(state.version, "5130");
    assert_eq!(state.holder(), Some("replica-b"));
    let malformed = state.record.unwrap_err();
    assert!(
        malformed.reason.contains("leaseDurationSeconds"),
        "{}",
        malformed.reason
    );
}

#[tokio::test]
async fn an_elector_wins_a_missing_lease_with_the_created_version_as_token() {
    let server = ApiServer::start().await;
    server
        .on_list(Reply::fixture(404, "status-404-lease.json"))
        .on_list(Reply::fixture(201, "lease-created.json"));
    let config = LeaderElectionOptions::new("replica-a")
        .lease_duration(Duration::from_secs(15))
        .renew_deadline(Duration::from_secs(10))
        .retry_period(Duration::from_secs(2));
    let elector = LeaderElector::new(lock(&server), config).unwrap();
    let handle = elector.handle();
    let stop = CancellationToken::new();
    let run = tokio::spawn(elector.run(stop.clone()));
    let term = within(handle.started_leading()).await.unwrap();
    assert_eq!(term.fencing_token(), 5012);
    assert_eq!(handle.leader().as_deref(), Some("replica-a"));
    stop.cancel();
    within(run).await.unwrap();
    assert!(!term.is_valid());
}
