//! A real etcd for the tests and the benchmark: one member or a cluster, started on free
//! loopback ports with a temporary data dir, stopped by PID when dropped.
//!
//! When the `etcd` binary is missing, [`Etcd::start`] prints a notice and returns `None` (the
//! test returns early: a skip), except under `CI=true`, where it panics: CI installs etcd, so
//! a missing binary there is a broken setup, not a reason to pass. Set `ETCD_BIN` to use a
//! binary that is not on `PATH`.

// Each test binary and the benchmark use a different part of the harness.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs};

use cache_etcd::etcd_client::{Client, CompactionOptions, Txn, TxnOp};

/// How long a member may take to become healthy (measured: under 1.3 s alone, under 3 s for a
/// cluster; a machine busy compiling is slower).
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// How often etcd sends watch progress notifications (the source's bookmarks) in tests.
pub const PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_millis(500);

/// One etcd member process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd: one member or a cluster, on loopback. Dropping it kills every member by PID
/// and removes the data.
pub struct Etcd {
    binary: PathBuf,
    dir: PathBuf,
    members: Vec<Member>,
    token: String,
    extra_args: Vec<String>,
}

impl Etcd {
    /// One member; `None` (after a printed notice) when etcd is not installed and this is not CI.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_cluster(test, 1, &[])
    }

    /// `members` members forming one cluster, each started with `extra_args` too.
    ///
    /// # Panics
    ///
    /// When etcd does not become healthy (after three tries on fresh ports), and when etcd is
    /// missing under `CI=true`.
    pub fn start_cluster(test: &str, members: usize, extra_args: &[&str]) -> Option<Self> {
        let binary = find_etcd(test)?;
        let mut last = String::new();
        for _attempt in 0..3 {
            match Self::try_start(&binary, members, extra_args) {
                Ok(etcd) => return Some(etcd),
                Err(why) => last = why,
            }
        }
        panic!("etcd did not start for {test}: {last}");
    }

    fn try_start(binary: &Path, members: usize, extra_args: &[&str]) -> Result<Self, String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let unique = format!(
            "typed-cache-etcd-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = scratch_root().join(&unique);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ports = free_ports(members * 2)?;
        let members = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.join(format!("m{i}")),
                log: dir.join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let mut etcd = Etcd {
            binary: binary.to_owned(),
            dir,
            members,
            token: unique,
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
        };
        for i in 0..etcd.members.len() {
            etcd.spawn(i)?;
        }
        for i in 0..etcd.members.len() {
            etcd.wait_healthy(i)?;
        }
        Ok(etcd)
    }

    fn initial_cluster(&self) -> String {
        let mut s = String::new();
        for m in &self.members {
            if !s.is_empty() {
                s.push(',');
            }
            let _ = write!(s, "{}=http://127.0.0.1:{}", m.name, m.peer_port);
        }
        s
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let cluster = self.initial_cluster();
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = fs::File::create(&m.log).map_err(|e| format!("{}: {e}", m.log.display()))?;
        let interval = format!("{}ms", PROGRESS_NOTIFY_INTERVAL.as_millis());
        let child = Command::new(&self.binary)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
            ])
            .args(["--initial-cluster-token", &self.token])
            .args(["--listen-metrics-urls", ""])
            .args(["--experimental-watch-progress-notify-interval", &interval])
            .args([
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                "--log-level",
                "warn",
            ])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.binary.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            let m = &mut self.members[i];
            if let Some(child) = m.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                m.child = None;
                return Err(format!(
                    "{} exited ({status}):\n{}",
                    m.name,
                    log_tail(&m.log)
                ));
            }
            if http_get(m.client_port, "/health")
                .is_some_and(|body| body.contains(r#""health":"true""#))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not healthy within {HEALTHY_WITHIN:?}:\n{}",
                    m.name,
                    log_tail(&m.log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client URL of every member, dead or alive.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Kills member `i` with SIGKILL (by its PID) and reaps it: a crash, not a clean stop.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// How many watch streams member `i` serves, from its metrics; `None` when it is down.
    pub fn watch_streams(&self, i: usize) -> Option<u64> {
        let body = http_get(self.members[i].client_port, "/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watch_stream_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }

    /// A client of every member.
    pub async fn client(&self) -> Client {
        Client::connect(self.endpoints(), None)
            .await
            .expect("connect to etcd")
    }

    /// A client of member `i` alone.
    pub async fn member_client(&self, i: usize) -> Client {
        Client::connect([self.endpoint(i)], None)
            .await
            .expect("connect to etcd")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        for i in 0..self.members.len() {
            self.kill(i);
            if failing {
                let m = &self.members[i];
                let _ = writeln!(
                    std::io::stderr(),
                    "--- etcd {} log (port {}):\n{}",
                    m.name,
                    m.client_port,
                    log_tail(&m.log)
                );
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Writes `items` (key, value) in transactions of at most 128 puts (etcd's `--max-txn-ops`).
pub async fn put_all(
    client: &mut Client,
    items: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> i64 {
    let mut revision = 0;
    let mut ops = Vec::with_capacity(128);
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        ops.clear();
        ops.extend(
            items
                .by_ref()
                .take(128)
                .map(|(k, v)| TxnOp::put(k, v, None)),
        );
        let resp = client
            .txn(Txn::new().and_then(ops.clone()))
            .await
            .expect("etcd txn");
        revision = resp.header().expect("header").revision();
    }
    revision
}

/// Compacts etcd's history up to `revision` and waits for it to be physically applied.
pub async fn compact(client: &mut Client, revision: i64) {
    client
        .compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .expect("etcd compact");
}

/// Where the data dirs go: memory (`/dev/shm`) where there is one, for fast fsyncs.
fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
        shm.to_owned()
    } else {
        env::temp_dir()
    }
}

fn find_etcd(test: &str) -> Option<PathBuf> {
    let found = env::var_os("ETCD_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env::var_os("PATH").and_then(|path| {
                env::split_paths(&path)
                    .map(|dir| dir.join("etcd"))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        let message = format!(
            "etcd is not installed (no `etcd` on PATH, ETCD_BIN unset); install Debian's \
             etcd-server (apt-get install etcd-server) to run {test}"
        );
        if env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}: CI=true requires it");
        }
        // Straight to stderr: the test harness would swallow an eprintln! of a passing test.
        let _ = writeln!(std::io::stderr(), "NOTICE: skipping {test}: {message}");
    }
    found
}

/// `n` distinct ports that were free a moment ago.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no free port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// A plain HTTP/1.0 GET on a loopback port; the body, or `None` on any failure.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
