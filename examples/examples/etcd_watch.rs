//! Mirrors an etcd key prefix into an indexed cache and prints live index queries.
//!
//! Start a local etcd first (see the README, "Backends", etcd), then:
//!
//! ```sh
//! cargo run -p examples --features etcd --example etcd_watch -- --endpoints 127.0.0.1:2379 --seed 50
//! ```
//!
//! Each value under the prefix (default `/registry/pods/`) is a JSON pod:
//! `{"namespace":"default","name":"web-1","node":"node-1","phase":"Running"}`. Change them
//! with `etcdctl put` / `etcdctl del` and watch the queries follow.
//!
//! Options: `--endpoints a,b,c` (default `127.0.0.1:2379`), `--prefix P`, `--seed N` (write N
//! demo pods first), `--every SECS` (between reports, default 2), `--for SECS` (stop after;
//! default: run until killed).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use cache_core::reflector::{Reflector, ReflectorError};
use cache_core::{Cache, Indexed, Object};
use cache_etcd::{EtcdListWatch, EtcdObject};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// A pod as stored in etcd. The derive writes its key (`namespace/name`), its resource version
/// and its indexes; the revision comes from etcd, not from the JSON.
#[derive(Debug, Serialize, Deserialize, Indexed)]
struct Pod {
    #[key(namespace)]
    #[index]
    namespace: String,
    #[key(name)]
    name: String,
    #[index] // None (not scheduled): in no bucket
    node: Option<String>,
    #[index]
    phase: String,
    /// The key's mod revision, set by the codec: etcd keeps it beside the value.
    #[serde(skip)]
    #[resource_version]
    revision: u64,
}

impl EtcdObject for Pod {}

struct Args {
    endpoints: Vec<String>,
    prefix: String,
    seed: usize,
    every: Duration,
    run_for: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        endpoints: vec!["127.0.0.1:2379".into()],
        prefix: "/registry/pods/".into(),
        seed: 0,
        every: Duration::from_secs(2),
        run_for: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let seconds = |v: String| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{flag}: not a number of seconds: {v}"))
        };
        match flag.as_str() {
            "--endpoints" => args.endpoints = value()?.split(',').map(str::to_owned).collect(),
            "--prefix" => args.prefix = value()?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--every" => args.every = seconds(value()?)?,
            "--for" => args.run_for = Some(seconds(value()?)?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

/// Writes `n` demo pods over 3 namespaces and 5 nodes.
async fn seed(
    client: &mut cache_etcd::etcd_client::Client,
    prefix: &str,
    n: usize,
) -> Result<(), Box<dyn Error>> {
    const PHASES: [&str; 3] = ["Pending", "Running", "Succeeded"];
    for i in 0..n {
        let pod = Pod {
            namespace: format!("team-{}", i % 3),
            name: format!("web-{i}"),
            node: (i % 7 != 0).then(|| format!("node-{}", i % 5)),
            phase: PHASES[i % 3].into(),
            revision: 0,
        };
        let key = format!("{prefix}{}/{}", pod.namespace, pod.name);
        client.put(key, serde_json::to_vec(&pod)?, None).await?;
    }
    Ok(())
}

fn report(cache: &Cache<Pod>) {
    // One snapshot: every query below sees the same point in time.
    let snap = cache.snapshot();
    let rv = snap.resource_version().map_or("-", |rv| rv.as_str());
    println!("--- {} pods at revision {rv}", snap.len());
    let per_node: BTreeMap<String, usize> = snap
        .values(Pod::NODE)
        .into_iter()
        .map(|node| {
            let count = snap.count_by(Pod::NODE, &node);
            (node, count)
        })
        .collect();
    println!("pods per node:      {per_node:?}");
    let unscheduled = snap.iter().filter(|p| p.node.is_none()).count();
    println!("unscheduled:        {unscheduled}");
    for phase in ["Pending", "Running", "Succeeded"] {
        let names: Vec<String> = snap
            .by(Pod::PHASE, phase)
            .iter()
            .take(5)
            .map(|p| p.key().to_string())
            .collect();
        let count = snap.count_by(Pod::PHASE, phase);
        let more = if count > names.len() { " ..." } else { "" };
        println!("{phase:<10} {count:>4}:  {names:?}{more}");
    }
    for ns in snap.values(Pod::NAMESPACE) {
        println!(
            "namespace {ns:<10} {:>4} pods",
            snap.count_by(Pod::NAMESPACE, &ns)
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let mut client = cache_etcd::connect(&args.endpoints).await?;
    if args.seed > 0 {
        seed(&mut client, &args.prefix, args.seed).await?;
    }

    let cache = Arc::new(Cache::<Pod>::new()); // with the derived indexes
    let source = EtcdListWatch::<Pod>::new(client, args.prefix.clone());
    let reflector = Reflector::builder(source, cache.clone())
        .name("etcd_watch")
        // One list request; the source reads it in large pages at one revision (etcd counts
        // every remaining key on each page, so pages of 500 are slow on a large prefix).
        .page_size(0)
        .watch_error_handler(|e: &ReflectorError| eprintln!("reflector: {e}"))
        .build();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (reflector, stop) = (reflector.clone(), stop.clone());
        async move { reflector.run(stop).await }
    });

    println!("watching {} at {}", args.prefix, args.endpoints.join(","));
    reflector.wait_for_sync().await;
    let started = tokio::time::Instant::now();
    loop {
        report(&cache);
        if args.run_for.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        tokio::time::sleep(args.every).await;
    }
    stop.cancel();
    task.await?;
    println!("stats: {:?}", reflector.stats());
    Ok(())
}
