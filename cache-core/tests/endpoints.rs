//! The endpoints of a controller process, read by a real HTTP client (hyper's): `/metrics`
//! parsed as Prometheus' text exposition format, `/readyz` 503 before the informers have
//! synced and 200 after, `/healthz` 503 while the leader's renewals are stalled.
//!
//! Time is real (real sockets); every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_core::controller::{Action, Context, Controller};
use cache_core::endpoints::{Endpoints, PrometheusBuilder};
use cache_core::informer::SharedIndexInformer;
use cache_core::leader::{LeaderElectionOptions, LeaderElector, MemoryLock};
use cache_core::source::memory::MemorySource;
use cache_core::{Indexed, ResourceVersion};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Indexed)]
struct Pod {
    #[key]
    name: String,
    #[resource_version]
    rv: Option<ResourceVersion>,
}

async fn reconcile(_pod: Arc<Pod>, _ctx: Context<Pod, ()>) -> Result<Action, String> {
    Ok(Action::await_change())
}

/// A GET through hyper's HTTP/1 client: the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn serve(endpoints: Endpoints, stop: &CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(endpoints.serve(listener, stop.clone()));
    addr
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("hung")
}

/// Parses Prometheus' text exposition format (version 0.0.4): `# HELP` and `# TYPE` lines,
/// and samples `name{label="value",...} value`. Returns each sample, keyed by its name and
/// sorted labels (`name{k=v,...}`); panics on a line that is neither, or a sample of a family
/// with no `# TYPE`.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "an unknown comment: {line:?}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("labels end with }");
                let mut labels: Vec<String> = rest
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once('=').expect("label=value");
                        assert!(v.starts_with('"') && v.ends_with('"'), "unquoted {line:?}");
                        assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                        format!("{k}={}", v.trim_matches('"'))
                    })
                    .collect();
                labels.sort();
                (name, labels)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name in {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| types.contains_key(*f))
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} has no # TYPE");
        samples.insert(format!("{name}{{{}}}", labels.join(",")), value);
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_informers_sync_and_metrics_parse_as_prometheus_text() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let source = MemorySource::new();
    for i in 0..3 {
        source.put(Pod {
            name: format!("web-{i}"),
            rv: None,
        });
    }
    let informer = SharedIndexInformer::builder(source).name("pods").build();
    let elector = LeaderElector::new(
        MemoryLock::new(),
        LeaderElectionOptions::new("replica-a").name("pods"),
    )
    .unwrap();
    let leader = elector.handle();
    let controller = Controller::new(&informer)
        .unwrap()
        .name("pods")
        .leader_election(elector);
    let handle = controller.handle();
    let stop = CancellationToken::new();
    let run = tokio::spawn(metrics::with_local_recorder(&recorder, || {
        controller.run(reconcile, Arc::new(()), stop.clone())
    }));
    let endpoints = Endpoints::new()
        .metrics(prometheus)
        .controller("pods", handle.clone())
        .leader("pods-leader", leader.clone(), Duration::from_secs(1));
    let addr = serve(endpoints, &stop).await;

    // The informer has not run: not ready, yet alive.
    let (status, body) = within(get(addr, "/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("[-]pods failed: the controller's caches have not synced"),
        "{body}"
    );
    assert_eq!(within(get(addr, "/healthz")).await.0, 200);
    assert_eq!(within(get(addr, "/nothing")).await.0, 404);

    let informer_run = tokio::spawn({
        let (informer, stop) = (informer.clone(), stop.clone());
        async move { informer.run(stop).await }
    });
    within(handle.wait_for_sync()).await.unwrap();
    let (status, body) = within(get(addr, "/readyz")).await;
    assert_eq!((status, body.as_str()), (200, "[+]pods ok\nok\n"));

    within(leader.started_leading()).await;
    within(async {
        while handle.stats().reconciles < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let (status, text) = within(get(addr, "/metrics")).await;
    assert_eq!(status, 200);
    let samples = parse_exposition(&text);
    assert_eq!(
        samples.get("leader_election_master_status{name=pods}"),
        Some(&1.0),
        "{text}"
    );
    assert_eq!(
        samples.get("leader_election_transitions_total{name=pods}"),
        Some(&1.0)
    );
    assert_eq!(
        samples.get("controller_reconcile_total{controller=pods,result=success}"),
        Some(&3.0)
    );
    assert_eq!(samples.get("controller_ready{controller=pods}"), Some(&1.0));

    stop.cancel();
    within(run).await.unwrap();
    within(informer_run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_while_the_leaders_renewals_stall() {
    const RETRY: Duration = Duration::from_secs(1);
    let lock = MemoryLock::new();
    let config = LeaderElectionOptions::new("replica-a")
        .lease_duration(Duration::from_secs(6))
        .renew_deadline(Duration::from_secs(4))
        .retry_period(RETRY);
    let elector = LeaderElector::new(lock.clone(), config).unwrap();
    let leader = elector.handle();
    let stop = CancellationToken::new();
    let run = tokio::spawn(elector.run(stop.clone()));
    let tolerance = Duration::from_millis(500);
    let addr = serve(
        Endpoints::new().leader("leader", leader.clone(), tolerance),
        &stop,
    )
    .await;
    within(leader.started_leading()).await;
    assert_eq!(
        within(get(addr, "/healthz")).await,
        (200, "[+]leader ok\nok\n".into())
    );

    // Every lock call now hangs: the renewals stall. Past the retry period plus the
    // tolerance, and before the renew deadline ends the term, the leader is unhealthy.
    lock.set_delay(Duration::from_secs(60));
    tokio::time::sleep(RETRY * 2).await;
    assert!(
        leader.is_leader(),
        "the term lasts until the renew deadline"
    );
    let (status, body) = within(get(addr, "/healthz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("[-]leader failed: the leader's renewals are overdue"),
        "{body}"
    );

    // Once the term has ended, this replica is a healthy follower.
    within(async {
        while leader.leadership().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(within(get(addr, "/healthz")).await.0, 200);
    lock.set_delay(Duration::ZERO);
    stop.cancel();
    within(run).await.unwrap();
}
