//! A real Kubernetes API server for tests and benchmarks: `kube-apiserver` and its own `etcd`,
//! started on free loopback ports in a temporary directory, stopped by PID when dropped (on a
//! failed or panicking test too).
//!
//! ```ignore
//! #[path = "apiserver/mod.rs"] // or `mod apiserver;` from a file in `tests/`
//! mod apiserver;
//! use apiserver::KubeApiServer;
//!
//! #[tokio::test]
//! async fn leases() {
//!     // `None` after a printed notice when the binaries are missing (a skip);
//!     // under `CI=true` a missing binary panics instead.
//!     let Some(server) = KubeApiServer::for_test("leases").await else { return };
//!     let client: kube::Client = server.client().await;
//!     // ... kube::Api::<Lease>::namespaced(client, "default") ...
//! }
//! ```
//!
//! What is started:
//!
//! - `etcd` on `127.0.0.1` (its data in memory, `/dev/shm`, where there is one);
//! - `kube-apiserver` serving HTTPS on `127.0.0.1` only, with a self-signed certificate
//!   (`--cert-dir`, trusted by [`KubeApiServer::client`]), a generated service-account key
//!   (`openssl genrsa`), a static token file with one token in `system:masters`, `AlwaysAllow`
//!   authorization, and the `ServiceAccount` admission plugin off (no controller manager runs
//!   here to create the `default` service accounts, so pods would be refused without it).
//!
//! No scheduler, kubelet or controller manager runs: objects are stored and served, nothing
//! acts on them (pods stay `Pending` unless a test sets `spec.nodeName` itself).
//!
//! Binaries, both built by `.ci/kube-apiserver` (which `.ci/setup` runs) and cached under
//! `$XDG_CACHE_HOME` or `~/.cache`, then `typed-cache/` (`KUBE_APISERVER_CACHE` overrides it):
//! `KUBE_APISERVER_BIN`, else the cached `kube-apiserver/<KUBE_VERSION>/kube-apiserver`, else
//! `kube-apiserver` on `PATH`; `KUBE_ETCD_BIN`, else the cached `etcd/<ETCD_VERSION>/etcd` (not
//! the system's etcd: Debian's 3.4 lacks the watch progress requests that kube-apiserver's
//! streaming list needs).

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

/// The Kubernetes release `.ci/kube-apiserver` builds by default, and the one looked up in its
/// cache (`KUBE_APISERVER_VERSION` overrides both).
pub const KUBE_VERSION: &str = "v1.37.2";

/// The etcd release `.ci/kube-apiserver` builds by default, and the one looked up in its cache
/// (`KUBE_ETCD_VERSION` overrides both).
pub const ETCD_VERSION: &str = "v3.7.3";

/// How long etcd and the API server may take to become ready (measured: etcd under 1 s, the
/// API server about 3-6 s; a machine busy compiling is slower).
const READY_WITHIN: Duration = Duration::from_secs(90);

/// The bearer token of the test user (a member of `system:masters`).
const TOKEN: &str = "typed-cache-test-token";

/// Why a server could not be started.
#[derive(Debug)]
pub enum StartError {
    /// A binary is not installed: the caller may skip (see [`KubeApiServer::for_test`]).
    Missing(String),
    /// It is installed but did not start or become ready; the message has its log's tail.
    Failed(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Missing(m) => write!(f, "not installed: {m}"),
            StartError::Failed(m) => write!(f, "did not start: {m}"),
        }
    }
}

impl std::error::Error for StartError {}

fn failed(e: impl std::fmt::Display) -> StartError {
    StartError::Failed(e.to_string())
}

/// How to start the API server: feature gates and extra flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    feature_gates: Vec<(String, bool)>,
    args: Vec<String>,
}

impl Options {
    /// Default flags (see the module's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns a feature gate on or off (`--feature-gates=NAME=true|false`).
    pub fn feature_gate(mut self, name: &str, enabled: bool) -> Self {
        self.feature_gates.push((name.to_owned(), enabled));
        self
    }

    /// Adds a flag, e.g. `--watch-cache-sizes=pods#100`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }
}

/// A running kube-apiserver with its own etcd. Dropping it kills both by PID and removes the
/// temporary directory (printing the tail of both logs first when the thread is panicking).
pub struct KubeApiServer {
    dir: PathBuf,
    etcd: Process,
    apiserver: Process,
    binary: PathBuf,
    options: Options,
}

/// One child process, its port and its log.
struct Process {
    name: &'static str,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `Err` with the log's tail when the process has exited.
    fn check_alive(&mut self) -> Result<(), StartError> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.child = None;
            return Err(failed(format!(
                "{} exited ({status}):\n{}",
                self.name,
                log_tail(&self.log, 30)
            )));
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.report_if_panicking();
        self.kill();
    }
}

impl Process {
    /// On a failing test, the tail of the log goes to stderr.
    fn report_if_panicking(&self) {
        if std::thread::panicking() && self.child.is_some() {
            let _ = writeln!(
                std::io::stderr(),
                "--- {} log (port {}):\n{}",
                self.name,
                self.port,
                log_tail(&self.log, 40)
            );
        }
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        self.etcd.report_if_panicking();
        self.apiserver.report_if_panicking();
        // The API server first: it would log a storm of errors while etcd is gone.
        self.apiserver.kill();
        self.etcd.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl KubeApiServer {
    /// Starts etcd and kube-apiserver with default [`Options`], for `test`: `None` after a
    /// printed notice when a binary is missing outside CI (the caller returns: a skip).
    ///
    /// # Panics
    ///
    /// When a binary is missing under `CI=true` (CI builds and installs them, so a missing one
    /// there is a broken setup, not a reason to pass), and when the servers do not start.
    pub async fn for_test(test: &str) -> Option<Self> {
        Self::for_test_with(test, Options::new()).await
    }

    /// [`for_test`](Self::for_test) with these options.
    pub async fn for_test_with(test: &str, options: Options) -> Option<Self> {
        match Self::start_with(options).await {
            Ok(server) => Some(server),
            Err(StartError::Missing(message)) => {
                if env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{message}: CI=true requires it");
                }
                // Straight to stderr: the test harness would swallow an eprintln! of a passing
                // test.
                let _ = writeln!(std::io::stderr(), "NOTICE: skipping {test}: {message}");
                None
            }
            Err(e) => panic!("kube-apiserver for {test}: {e}"),
        }
    }

    /// Starts etcd and kube-apiserver with default [`Options`] and waits for `/readyz`.
    pub async fn start() -> Result<Self, StartError> {
        Self::start_with(Options::new()).await
    }

    /// Starts etcd and kube-apiserver with these options and waits for `/readyz`.
    pub async fn start_with(options: Options) -> Result<Self, StartError> {
        let binary = find_apiserver()?;
        let etcd_binary = find_etcd()?;
        let dir = scratch_dir()?;
        // Dropped (killing what started) on every early return below.
        let mut server = Self {
            etcd: Process {
                name: "etcd",
                port: 0,
                log: dir.join("etcd.log"),
                child: None,
            },
            apiserver: Process {
                name: "kube-apiserver",
                port: 0,
                log: dir.join("kube-apiserver.log"),
                child: None,
            },
            dir,
            binary,
            options,
        };
        server.write_credentials()?;
        server.start_etcd(&etcd_binary)?;
        let mut last = String::new();
        // A port that was free a moment ago may be taken by the time the server binds it.
        for _attempt in 0..3 {
            server.apiserver.port = free_port()?;
            match server.start_apiserver().await {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.apiserver.kill();
                    last = e.to_string();
                }
            }
        }
        Err(failed(last))
    }

    fn write_credentials(&self) -> Result<(), StartError> {
        fs::write(
            self.dir.join("tokens.csv"),
            format!("{TOKEN},admin,admin,\"system:masters\"\n"),
        )
        .map_err(failed)?;
        let key = self.dir.join("sa.key");
        let out = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                StartError::Missing(format!("openssl, to generate the service-account key: {e}"))
            })?;
        if !out.status.success() {
            return Err(failed(format!(
                "openssl genrsa: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    fn start_etcd(&mut self, binary: &Path) -> Result<(), StartError> {
        let mut last = String::new();
        for _attempt in 0..3 {
            let (client, peer) = free_port_pair()?;
            self.etcd.port = client;
            let log = fs::File::create(&self.etcd.log).map_err(failed)?;
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new(binary)
                .args(["--name", "default"])
                .arg("--data-dir")
                .arg(self.dir.join("etcd"))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("default={peer_url}")])
                .args(["--listen-metrics-urls", ""])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .args(["--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(failed)?)
                .stderr(log)
                .spawn()
                .map_err(|e| failed(format!("spawning {}: {e}", binary.display())))?;
            self.etcd.child = Some(child);
            let deadline = Instant::now() + READY_WITHIN;
            loop {
                if let Err(e) = self.etcd.check_alive() {
                    last = e.to_string();
                    break;
                }
                if http(client, "GET", "/health", None)
                    .is_some_and(|body| body.contains(r#""health":"true""#))
                {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    self.etcd.kill();
                    return Err(failed(format!(
                        "etcd not healthy within {READY_WITHIN:?}:\n{}",
                        log_tail(&self.etcd.log, 30)
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(failed(last))
    }

    fn apiserver_args(&self, port: u16) -> Vec<String> {
        let path = |name: &str| self.dir.join(name).display().to_string();
        let mut args = vec![
            format!("--etcd-servers=http://127.0.0.1:{}", self.etcd.port),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", path("certs")),
            format!("--token-auth-file={}", path("tokens.csv")),
            format!("--service-account-key-file={}", path("sa.key")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--authorization-mode=AlwaysAllow".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            // Fewer moving parts on a shared machine.
            "--profiling=false".into(),
            "--enable-priority-and-fairness=false".into(),
            "--endpoint-reconciler-type=none".into(),
        ];
        if !self.options.feature_gates.is_empty() {
            let gates: Vec<String> = self
                .options
                .feature_gates
                .iter()
                .map(|(name, on)| format!("{name}={on}"))
                .collect();
            args.push(format!("--feature-gates={}", gates.join(",")));
        }
        args.extend(self.options.args.iter().cloned());
        args
    }

    fn spawn_apiserver(&self, port: u16, log: &Path) -> Result<Child, StartError> {
        let log = fs::File::create(log).map_err(failed)?;
        Command::new(&self.binary)
            .args(self.apiserver_args(port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(failed)?)
            .stderr(log)
            .spawn()
            .map_err(|e| failed(format!("spawning {}: {e}", self.binary.display())))
    }

    async fn start_apiserver(&mut self) -> Result<(), StartError> {
        let child = self.spawn_apiserver(self.apiserver.port, &self.apiserver.log)?;
        self.apiserver.child = Some(child);
        let kubeconfig = self.kubeconfig();
        write_kubeconfig(&kubeconfig, &self.dir, self.apiserver.port)?;
        wait_ready(&mut self.apiserver, &kubeconfig).await
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver.port)
    }

    /// etcd's client URL, `http://127.0.0.1:<port>`.
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd.port)
    }

    /// A kubeconfig file for this server (its CA, the test token): `KUBECONFIG=<it>` points
    /// `kubectl` or any kube client at it.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// A kube client for this server, as `Client::try_default` builds one from
    /// [`kubeconfig`](Self::kubeconfig). Call it inside a tokio runtime.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig()).await
    }

    /// Kills the API server (SIGKILL, by PID); etcd keeps running.
    pub fn stop_apiserver(&mut self) {
        self.apiserver.kill();
    }

    /// Starts the API server again, on the same port and etcd, and waits for `/readyz`. Its
    /// watch cache starts afresh at etcd's current revision, so a watch from an older
    /// resource version is answered 410 Gone.
    pub async fn restart_apiserver(&mut self) -> Result<(), StartError> {
        self.apiserver.kill();
        let mut last = StartError::Failed(String::new());
        // The port was just freed by the kill; retry briefly if it lingers.
        for _attempt in 0..3 {
            match self.start_apiserver().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.apiserver.kill();
                    last = e;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(last)
    }

    /// etcd's current revision (the newest resource version of any object).
    pub fn etcd_revision(&self) -> Result<i64, String> {
        // The JSON gateway: a range over an empty key returns only the header.
        let body = http(
            self.etcd.port,
            "POST",
            "/v3/kv/range",
            Some(r#"{"key":"AA=="}"#),
        )
        .ok_or("etcd range failed")?;
        json_i64(&body, "revision").ok_or_else(|| format!("no revision in {body}"))
    }

    /// Compacts etcd's history up to its current revision and returns that revision: a watch
    /// from any older resource version can no longer be served from etcd.
    pub fn compact_etcd(&self) -> Result<i64, String> {
        let revision = self.etcd_revision()?;
        let body = http(
            self.etcd.port,
            "POST",
            "/v3/kv/compaction",
            Some(&format!(r#"{{"revision":"{revision}","physical":true}}"#)),
        )
        .ok_or("etcd compaction failed")?;
        if body.contains("\"error\"") {
            return Err(body);
        }
        Ok(revision)
    }

    /// The API server's log so far (for a test's assertion message).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.apiserver.log, lines)
    }
}

async fn client_from(kubeconfig: &Path) -> kube::Client {
    let text = fs::read_to_string(kubeconfig).expect("read the test kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).expect("parse the test kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("the test kubeconfig is a valid config");
    kube::Client::try_from(config).expect("a kube client")
}

fn write_kubeconfig(path: &Path, dir: &Path, port: u16) -> Result<(), StartError> {
    // kube-apiserver writes its self-signed serving certificate, followed by the CA that signed
    // it, to `<cert-dir>/apiserver.crt` when it starts (and reuses them on a restart).
    let ca = dir.join("certs").join("apiserver.crt");
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: test
  user:
    token: {TOKEN}
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
",
        ca = ca.display()
    );
    fs::write(path, text).map_err(failed)
}

/// Waits until `/readyz` answers `ok` (the certificate exists from the first answer on).
async fn wait_ready(process: &mut Process, kubeconfig: &Path) -> Result<(), StartError> {
    let deadline = Instant::now() + READY_WITHIN;
    let cert = kubeconfig
        .parent()
        .map(|d| d.join("certs").join("apiserver.crt"));
    let mut client = None;
    let mut last = String::new();
    loop {
        process.check_alive()?;
        if client.is_none() && cert.as_ref().is_some_and(|c| c.is_file()) {
            client = Some(client_from(kubeconfig).await);
        }
        if let Some(client) = &client {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a GET request");
            match tokio::time::timeout(Duration::from_secs(5), client.request_text(req)).await {
                Ok(Ok(body)) if body.trim() == "ok" => return Ok(()),
                Ok(Ok(body)) => last = body,
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
        }
        if Instant::now() > deadline {
            return Err(failed(format!(
                "{} not ready within {READY_WITHIN:?} (last answer: {last}):\n{}",
                process.name,
                log_tail(&process.log, 30)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `.ci/kube-apiserver`'s cache: `KUBE_APISERVER_CACHE`, else `$XDG_CACHE_HOME` or `~/.cache`,
/// then `typed-cache`.
fn cache_root() -> Option<PathBuf> {
    env::var_os("KUBE_APISERVER_CACHE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env::var_os("XDG_CACHE_HOME")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("typed-cache"))
        })
}

/// `var` if set, else `.ci/kube-apiserver`'s build of `name` at `version` (`version_var`
/// overrides it), else `name` on `PATH` when `path_too`.
fn find_binary(
    var: &str,
    name: &str,
    version_var: &str,
    version: &str,
    path_too: bool,
) -> Result<PathBuf, StartError> {
    if let Some(bin) = env::var_os(var).filter(|p| !p.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(StartError::Missing(format!(
                "{name}: {var}={} is not a file",
                bin.display()
            )))
        };
    }
    let version = env::var(version_var).unwrap_or_else(|_| version.into());
    if let Some(bin) = cache_root().map(|c| c.join(name).join(&version).join(name))
        && bin.is_file()
    {
        return Ok(bin);
    }
    path_too
        .then(|| find_on_path(name))
        .flatten()
        .ok_or_else(|| {
            StartError::Missing(format!(
                "{name} {version} (not built: run .ci/kube-apiserver, or set {var})"
            ))
        })
}

fn find_apiserver() -> Result<PathBuf, StartError> {
    find_binary(
        "KUBE_APISERVER_BIN",
        "kube-apiserver",
        "KUBE_APISERVER_VERSION",
        KUBE_VERSION,
        true,
    )
}

/// The etcd built by `.ci/kube-apiserver`: not the system's, which may be older than
/// kube-apiserver's streaming list needs (3.4.31 or 3.5.13 for watch progress requests).
fn find_etcd() -> Result<PathBuf, StartError> {
    find_binary(
        "KUBE_ETCD_BIN",
        "etcd",
        "KUBE_ETCD_VERSION",
        ETCD_VERSION,
        false,
    )
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    env::var_os("PATH").and_then(|path| {
        env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A fresh directory for one server: in memory (`/dev/shm`) where there is one, for fast
/// fsyncs.
fn scratch_dir() -> Result<PathBuf, StartError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() && fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
        shm.to_owned()
    } else {
        env::temp_dir()
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = root.join(format!(
        "typed-cache-kube-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(dir.join("certs")).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, StartError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed(format!("no free port: {e}")))
}

/// Two distinct ports of 127.0.0.1 that were free a moment ago.
fn free_port_pair() -> Result<(u16, u16), StartError> {
    let bind =
        || TcpListener::bind("127.0.0.1:0").map_err(|e| failed(format!("no free port: {e}")));
    // Both held at once, so that they differ.
    let (a, b) = (bind()?, bind()?);
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(failed);
    Ok((port(&a)?, port(&b)?))
}

/// A plain HTTP/1.0 request on a loopback port; the body, or `None` on any failure.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    if let Some(body) = body {
        let _ = write!(
            request,
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}

/// The integer under `"field"` in a JSON text, written as a number or (int64 in etcd's gateway)
/// as a string.
fn json_i64(text: &str, field: &str) -> Option<i64> {
    let at = text.find(&format!("\"{field}\""))? + field.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn log_tail(log: &Path, lines: usize) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
