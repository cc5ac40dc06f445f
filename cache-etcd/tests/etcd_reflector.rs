//! The reflector mirroring an etcd prefix into a `Cache`, against a real etcd (or a 3-member
//! cluster) that each test starts on loopback: initial sync, ordered events, compaction while
//! disconnected, a killed member, bad values.
//!
//! Without an `etcd` binary these tests print a notice and pass locally; under `CI=true` they
//! fail. Time here is real (a real server runs beside the test); every wait is bounded.

mod harness;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::reflector::{BackoffOptions, Reflector, ReflectorError};
use cache_core::source::SourceErrorKind;
use cache_core::store::{Change, Store, StoreError, TransactionError};
use cache_core::{Cache, Index, Indexer, Indexers, Object, ObjectKey, ResourceVersion};
use cache_etcd::etcd_client::{Client, GetOptions};
use cache_etcd::{EtcdListWatch, EtcdObject, Meta};
use harness::{Etcd, compact, put_all};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "/r/pods/";
/// A hang guard for every test: none should come near it.
const TEST_LIMIT: Duration = Duration::from_secs(120);
/// The bound on convergence after the last write.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pod {
    namespace: String,
    name: String,
    node: String,
    #[serde(skip)]
    revision: u64,
}

impl Object for Pod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        Some(self.revision.into())
    }
}

impl EtcdObject for Pod {
    fn set_meta(&mut self, meta: &Meta<'_>) {
        self.revision = meta.mod_revision;
    }
}

const NODE: Index<Pod, String> = Index::new("node");

fn pod_cache() -> Arc<Cache<Pod>> {
    Arc::new(Cache::with_indexers(
        Indexers::new().with(Indexer::for_index(NODE, |p: &Pod| [p.node.clone()])),
    ))
}

fn key(i: usize) -> String {
    format!("{PREFIX}ns-{}/pod-{i:05}", i % 10)
}

fn pod_json(i: usize, node: &str) -> Vec<u8> {
    serde_json::to_vec(&Pod {
        namespace: format!("ns-{}", i % 10),
        name: format!("pod-{i:05}"),
        node: node.into(),
        revision: 0,
    })
    .unwrap()
}

/// A reflector from etcd into `store`, running until the returned token is cancelled; errors
/// are collected. The backoff is short: these tests wait on recovery in real time.
struct Running {
    reflector: Reflector<Pod>,
    errors: Arc<Mutex<Vec<ReflectorError>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start<S: Store<Pod> + 'static>(source: EtcdListWatch<Pod>, store: Arc<S>) -> Running {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let reflector = Reflector::builder(source, store.clone())
        .name("etcd-pods")
        .backoff(BackoffOptions::new(
            Duration::from_millis(50),
            2.0,
            Duration::from_millis(500),
        ))
        .watch_error_handler({
            let errors = errors.clone();
            move |e| errors.lock().unwrap().push(e.clone())
        })
        .build();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (reflector, stop) = (reflector.clone(), stop.clone());
        async move { reflector.run(stop).await }
    });
    Running {
        reflector,
        errors,
        stop,
        task,
    }
}

impl Running {
    async fn synced(&self) {
        tokio::time::timeout(CONVERGE_WITHIN, self.reflector.wait_for_sync())
            .await
            .expect("no initial sync");
    }

    fn errors(&self) -> Vec<ReflectorError> {
        self.errors.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the reflector did not stop")
            .unwrap();
    }
}

/// etcd's state of the prefix: object key → (node, mod_revision).
async fn etcd_state(client: &mut Client) -> BTreeMap<String, (String, u64)> {
    let resp = client
        .get(PREFIX, Some(GetOptions::new().with_prefix()))
        .await
        .expect("read etcd");
    resp.kvs()
        .iter()
        .filter_map(|kv| {
            let pod: Pod = serde_json::from_slice(kv.value()).ok()?;
            Some((
                ObjectKey::new(&pod.namespace, &pod.name).to_string(),
                (pod.node, kv.mod_revision() as u64),
            ))
        })
        .collect()
}

fn cache_state(cache: &Cache<Pod>) -> BTreeMap<String, (String, u64)> {
    cache
        .snapshot()
        .iter()
        .map(|p| (p.key().to_string(), (p.node.clone(), p.revision)))
        .collect()
}

/// Waits until the cache holds exactly etcd's state (the same keys, values and revisions: no
/// lost, extra or stale object); panics with the difference after [`CONVERGE_WITHIN`].
async fn converged(cache: &Cache<Pod>, client: &mut Client) {
    let want = etcd_state(client).await;
    let deadline = tokio::time::Instant::now() + CONVERGE_WITHIN;
    loop {
        let have = cache_state(cache);
        if have == want {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, v)| have.get(*k) != Some(v))
                .take(5)
                .collect();
            let extra: Vec<_> = have
                .iter()
                .filter(|(k, v)| want.get(*k) != Some(v))
                .take(5)
                .collect();
            panic!(
                "the cache did not converge within {CONVERGE_WITHIN:?}: {} objects, etcd {}; \
                 missing or stale {missing:?}; extra or stale {extra:?}",
                have.len(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn with_timeout(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test hung");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_sync_mirrors_10000_keys() {
    let Some(etcd) = Etcd::start("the_initial_sync_mirrors_10000_keys") else {
        return;
    };
    with_timeout(async {
        let mut client = etcd.client().await;
        let items = (0..10_000).map(|i| (key(i), pod_json(i, &format!("node-{}", i % 100))));
        let revision = put_all(&mut client, items).await as u64;

        let cache = pod_cache();
        let running = start(EtcdListWatch::new(client.clone(), PREFIX), cache.clone());
        running.synced().await;
        let snap = cache.snapshot();
        assert_eq!(snap.len(), 10_000);
        assert_eq!(
            snap.resource_version().and_then(|rv| rv.as_u64()),
            Some(revision)
        );
        assert_eq!(snap.count_by(NODE, "node-7"), 100);
        assert_eq!(snap.values(NODE).len(), 100);
        let pod = snap
            .get(&ObjectKey::new("ns-3", "pod-01233"))
            .expect("a synced pod");
        assert_eq!(pod.node, "node-33");
        converged(&cache, &mut client).await;
        assert!(running.errors().is_empty(), "{:?}", running.errors());
        running.stop().await;
    })
    .await;
}

/// A store that records every change it is given, in order, then applies it to a cache.
struct Recording {
    cache: Cache<Pod>,
    changes: Mutex<Vec<String>>,
}

impl Recording {
    fn record(&self, change: &Change<Pod>) {
        let (what, p) = match change {
            Change::Add(p) => ("add", p),
            Change::Update(p) => ("update", p),
            Change::Delete(p) => ("delete", p),
        };
        self.changes
            .lock()
            .unwrap()
            .push(format!("{what} {}={} @{}", p.name, p.node, p.revision));
    }
}

impl Store<Pod> for Recording {
    fn add(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.record(&Change::Add(obj.clone()));
        Store::add(&self.cache, obj)
    }
    fn update(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.record(&Change::Update(obj.clone()));
        Store::update(&self.cache, obj)
    }
    fn delete(&self, obj: Arc<Pod>) -> Result<(), StoreError> {
        self.record(&Change::Delete(obj.clone()));
        Store::delete(&self.cache, obj)
    }
    fn list(&self) -> Vec<Arc<Pod>> {
        Store::list(&self.cache)
    }
    fn list_keys(&self) -> Vec<ObjectKey> {
        Store::list_keys(&self.cache)
    }
    fn get(&self, obj: &Pod) -> Option<Arc<Pod>> {
        Store::get(&self.cache, obj)
    }
    fn get_by_key(&self, key: &ObjectKey) -> Option<Arc<Pod>> {
        Store::get_by_key(&self.cache, key)
    }
    fn replace(&self, items: Vec<Arc<Pod>>, rv: Option<ResourceVersion>) -> Result<(), StoreError> {
        Store::replace(&self.cache, items, rv)
    }
    fn resync(&self) -> Result<(), StoreError> {
        Store::resync(&self.cache)
    }
    fn bookmark(&self, rv: ResourceVersion) {
        Store::bookmark(&self.cache, rv)
    }
    fn last_sync_resource_version(&self) -> Option<ResourceVersion> {
        Store::last_sync_resource_version(&self.cache)
    }
    fn transaction(&self, changes: Vec<Change<Pod>>) -> Result<(), TransactionError> {
        for change in &changes {
            self.record(change);
        }
        Store::transaction(&self.cache, changes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_updates_and_deletes_reach_the_store_in_order() {
    let Some(etcd) = Etcd::start("puts_updates_and_deletes_reach_the_store_in_order") else {
        return;
    };
    with_timeout(async {
        let mut client = etcd.client().await;
        put_all(&mut client, (0..3).map(|i| (key(i), pod_json(i, "n0")))).await;
        let store = Arc::new(Recording {
            cache: Cache::with_indexers(Indexers::new()),
            changes: Mutex::new(Vec::new()),
        });
        let running = start(EtcdListWatch::new(client.clone(), PREFIX), store.clone());
        running.synced().await;

        // A scripted history: every kind of change, some keys changed again and again.
        let mut current: BTreeMap<usize, String> = (0..3).map(|i| (i, "n0".to_owned())).collect();
        let mut expected = Vec::new();
        for step in 0..60usize {
            let i = step % 7;
            let name = format!("pod-{i:05}");
            if step % 5 == 4 {
                let resp = client.delete(key(i), None).await.unwrap();
                let rev = resp.header().unwrap().revision();
                if let Some(last) = current.remove(&i) {
                    expected.push(format!("delete {name}={last} @{rev}"));
                }
            } else {
                let node = format!("n{}", step + 1);
                let resp = client.put(key(i), pod_json(i, &node), None).await.unwrap();
                let rev = resp.header().unwrap().revision();
                let what = if current.insert(i, node.clone()).is_some() {
                    "update"
                } else {
                    "add"
                };
                expected.push(format!("{what} {name}={node} @{rev}"));
            }
        }
        converged(&store.cache, &mut client).await;
        let changes = store.changes.lock().unwrap().clone();
        // The reflector may apply an added object as an update (both insert); the order and
        // the contents must be etcd's.
        let normalise = |s: &String| s.replacen("add ", "update ", 1);
        assert_eq!(
            changes.iter().map(normalise).collect::<Vec<_>>(),
            expected.iter().map(normalise).collect::<Vec<_>>()
        );
        assert!(running.errors().is_empty(), "{:?}", running.errors());
        running.stop().await;
    })
    .await;
}

/// A loopback TCP proxy in front of etcd that can drop every connection and refuse new ones.
struct Proxy {
    addr: String,
    connected: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let connected = Arc::new(tokio::sync::watch::Sender::new(true));
        let state = connected.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*state.borrow() {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { addr, connected }
    }

    fn disconnect(&self) {
        self.connected.send_replace(false);
    }

    fn reconnect(&self) {
        self.connected.send_replace(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_while_disconnected_leads_to_a_relist_and_convergence() {
    let Some(etcd) = Etcd::start("a_compaction_while_disconnected") else {
        return;
    };
    with_timeout(async {
        let mut client = etcd.client().await;
        put_all(
            &mut client,
            (0..20).map(|i| (key(i), pod_json(i, "before"))),
        )
        .await;
        let proxy = Proxy::start(etcd.endpoint(0)).await;
        let through_proxy = Client::connect([proxy.addr.as_str()], None).await.unwrap();
        let cache = pod_cache();
        let running = start(EtcdListWatch::new(through_proxy, PREFIX), cache.clone());
        running.synced().await;
        converged(&cache, &mut client).await;
        let lists_before = running.reflector.stats().lists;

        proxy.disconnect();
        // While the reflector cannot reach etcd: updates, deletes, creates, then a compaction
        // of all that history.
        put_all(&mut client, (0..10).map(|i| (key(i), pod_json(i, "after")))).await;
        for i in 10..15 {
            client.delete(key(i), None).await.unwrap();
        }
        let last = put_all(&mut client, (20..30).map(|i| (key(i), pod_json(i, "new")))).await;
        compact(&mut client, last).await;
        assert_eq!(
            cache.len(),
            20,
            "nothing reached the cache while disconnected"
        );
        proxy.reconnect();

        converged(&cache, &mut client).await;
        assert_eq!(cache.len(), 25);
        assert!(
            running.reflector.stats().lists > lists_before,
            "the reflector relisted"
        );
        let expired = running
            .errors()
            .iter()
            .any(|e| e.source_kind() == Some(SourceErrorKind::Expired));
        assert!(
            expired,
            "the watch from before the compaction was expired: {:?}",
            running.errors()
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_watching_member_loses_no_object() {
    let Some(mut etcd) = Etcd::start_cluster("a_killed_watching_member_loses_no_object", 3, &[])
    else {
        return;
    };
    let mut client = etcd.client().await;
    let source_client = cache_etcd::connect(&etcd.endpoints()).await.unwrap();
    let cache = pod_cache();
    let running = start(EtcdListWatch::new(source_client, PREFIX), cache.clone());
    let body = async {
        put_all(&mut client, (0..200).map(|i| (key(i), pod_json(i, "n0")))).await;
        running.synced().await;
        converged(&cache, &mut client).await;

        // The member that serves the reflector's watch (the only watch in the cluster).
        let watching = (0..3)
            .find(|&i| etcd.watch_streams(i).unwrap_or(0) > 0)
            .expect("a member serves the watch");
        let restarts_before = running.reflector.stats().watch_starts;

        // A writer through the other two members, before, during and after the kill.
        let others: Vec<String> = (0..3)
            .filter(|&i| i != watching)
            .map(|i| etcd.endpoint(i))
            .collect();
        let mut writer = Client::connect(&others, None).await.unwrap();
        let writes = tokio::spawn(async move {
            for step in 0..400usize {
                let i = (step * 7) % 250;
                loop {
                    let done = if step % 9 == 8 {
                        writer.delete(key(i), None).await.map(|_| ())
                    } else {
                        writer
                            .put(key(i), pod_json(i, &format!("n{step}")), None)
                            .await
                            .map(|_| ())
                    };
                    match done {
                        Ok(()) => break,
                        // A leader election: retry.
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                if step % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        etcd.kill(watching);
        tokio::time::timeout(Duration::from_secs(60), writes)
            .await
            .expect("the writer finished")
            .unwrap();

        let mut survivor = Client::connect(&others, None).await.unwrap();
        converged(&cache, &mut survivor).await;
        assert!(
            running.reflector.stats().watch_starts > restarts_before,
            "the watch moved to another member"
        );
        let survivors: u64 = (0..3).filter_map(|i| etcd.watch_streams(i)).sum();
        assert!(survivors >= 1, "a surviving member serves the watch now");
        let errors = running.errors();
        eprintln!("killed member {watching}; reported: {errors:?}");
        let broken = errors.iter().any(|e| {
            matches!(e, ReflectorError::WatchEnded(_))
                && e.source_kind() == Some(SourceErrorKind::ConnectionRefused)
        });
        assert!(broken, "the kill broke the watch stream: {errors:?}");
        assert!(
            !errors
                .iter()
                .any(|e| matches!(e, ReflectorError::Decode(_)))
        );
    };
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test hung");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_is_reported_and_the_watch_ends_where_a_relist_would() {
    let Some(etcd) = Etcd::start("bad_json_is_reported_and_the_watch_ends_where_a_relist_would")
    else {
        return;
    };
    with_timeout(async {
        let mut client = etcd.client().await;
        client.put(key(1), pod_json(1, "n1"), None).await.unwrap();
        client.put(key(2), "{\"namespace\": 7", None).await.unwrap();
        client.put(key(3), pod_json(3, "n1"), None).await.unwrap();
        let cache = pod_cache();
        let running = start(EtcdListWatch::new(client.clone(), PREFIX), cache.clone());
        running.synced().await;
        let names = |c: &Cache<Pod>| {
            let mut names: Vec<String> = c.snapshot().keys().map(ToString::to_string).collect();
            names.sort();
            names
        };
        assert_eq!(names(&cache), ["ns-1/pod-00001", "ns-3/pod-00003"]);

        // While watching: a bad value for a new key, a bad value over a cached object, a good
        // value after them.
        client.put(key(4), "not json at all", None).await.unwrap();
        client.put(key(1), "{}", None).await.unwrap();
        client.put(key(5), pod_json(5, "n2"), None).await.unwrap();
        let deadline = tokio::time::Instant::now() + CONVERGE_WITHIN;
        while cache
            .snapshot()
            .get(&ObjectKey::new("ns-5", "pod-00005"))
            .is_none()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "pod 5 never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Pod 1's value no longer decodes: a relist would leave it out, so the watch removes it
        // too (nothing stale stays behind), and the decode error is still reported.
        assert_eq!(names(&cache), ["ns-3/pod-00003", "ns-5/pod-00005"]);
        let relisted = pod_cache();
        let relist = start(EtcdListWatch::new(client.clone(), PREFIX), relisted.clone());
        relist.synced().await;
        assert_eq!(cache_state(&cache), cache_state(&relisted));
        relist.stop().await;

        let reported: Vec<String> = running
            .errors()
            .iter()
            .filter_map(|e| match e {
                ReflectorError::Decode(e) => e.object.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(reported, [key(2), key(4), key(1)]);
        running.stop().await;
    })
    .await;
}
