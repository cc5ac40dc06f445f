//! A scripted Kubernetes API server on 127.0.0.1: it answers list and watch requests from
//! queues of recorded responses, over real HTTP/1.1 (chunked watch bodies, one event per line),
//! and records every request it receives.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody as BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A recorded response fixture (`tests/fixtures/<name>`).
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// The lines of a recorded watch fixture (`.jsonl`).
pub fn fixture_lines(name: &str) -> Vec<String> {
    fixture(name)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// One scripted response.
pub enum Reply {
    /// A complete JSON body with this HTTP status (a list page, or an error `Status`).
    Json(u16, String),
    /// A 200 watch body: these chunks, then the end of the response.
    Lines(Vec<String>),
    /// A 200 watch body that stays open: each string the test sends is one chunk; dropping the
    /// sender ends the response.
    Open(mpsc::UnboundedReceiver<String>),
}

impl Reply {
    /// A recorded JSON fixture with a status code.
    pub fn fixture(status: u16, name: &str) -> Self {
        Reply::Json(status, fixture(name))
    }
    /// A recorded watch fixture, one event per chunk.
    pub fn watch(name: &str) -> Self {
        Reply::Lines(fixture_lines(name))
    }
    /// Only the first event of a watch, then the end of the response.
    pub fn first_line(self) -> Self {
        match self {
            Reply::Lines(mut lines) => {
                lines.truncate(1);
                Reply::Lines(lines)
            }
            other => other,
        }
    }
    /// An open watch and the sender that feeds it.
    pub fn open() -> (mpsc::UnboundedSender<String>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Reply::Open(rx))
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method.
    pub method: http::Method,
    /// The request body (empty for a GET).
    pub body: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
    /// The headers.
    pub headers: http::HeaderMap,
}

impl Seen {
    /// Whether this was a watch.
    pub fn is_watch(&self) -> bool {
        self.query.get("watch").map(String::as_str) == Some("true")
    }
    /// The query as sorted `(name, value)` pairs, for comparing with a literal.
    pub fn params(&self) -> Vec<(&str, &str)> {
        self.query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

#[derive(Default)]
struct Script {
    seen: Vec<Seen>,
    lists: VecDeque<Reply>,
    watches: VecDeque<Reply>,
}

type Body = BoxBody<Bytes, Infallible>;

/// The scripted API server. It stops when dropped.
pub struct ApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn full(status: u16, body: String) -> http::Response<Body> {
    let body = StreamBody::new(futures::stream::iter([Ok::<_, Infallible>(Frame::data(
        Bytes::from(body),
    ))]));
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(BoxBody::new(body))
        .unwrap()
}

fn streaming(chunks: futures::stream::BoxStream<'static, String>) -> http::Response<Body> {
    let body = StreamBody::new(chunks.map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c)))));
    http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(BoxBody::new(body))
        .unwrap()
}

fn respond(reply: Reply) -> http::Response<Body> {
    match reply {
        Reply::Json(status, body) => full(status, body),
        Reply::Lines(lines) => streaming(futures::stream::iter(lines).boxed()),
        Reply::Open(rx) => streaming(
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (l, rx)) })
                .boxed(),
        ),
    }
}

impl ApiServer {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = script.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let script = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let script = script.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let body = String::from_utf8_lossy(&body).into_owned();
                            Ok::<_, Infallible>(Self::handle(&script, &parts, body))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            script,
            accept,
        }
    }

    fn handle(
        script: &Mutex<Script>,
        req: &http::request::Parts,
        body: String,
    ) -> http::Response<Body> {
        let query = req
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let seen = Seen {
            method: req.method.clone(),
            body,
            path: req.uri.path().to_owned(),
            query,
            headers: req.headers.clone(),
        };
        let watch = seen.is_watch();
        let mut script = script.lock().unwrap();
        script.seen.push(seen);
        let next = if watch {
            script.watches.pop_front()
        } else {
            script.lists.pop_front()
        };
        match next {
            Some(reply) => respond(reply),
            // A watch with nothing scripted stays open and silent, as a quiet collection does.
            None if watch => streaming(futures::stream::pending().boxed()),
            None => full(
                500,
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"no scripted list response","reason":"InternalError","code":500}"#.into(),
            ),
        }
    }

    /// Queues the reply to the next request that is not a watch (a list, or a get, create or
    /// update of one object).
    pub fn on_list(&self, reply: Reply) -> &Self {
        self.script.lock().unwrap().lists.push_back(reply);
        self
    }

    /// Queues the reply to the next watch request.
    pub fn on_watch(&self, reply: Reply) -> &Self {
        self.script.lock().unwrap().watches.push_back(reply);
        self
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    /// A kube client for this server, with kube's own retries off so that every response
    /// reaches the source.
    pub fn client(&self) -> kube::Client {
        client_for(&format!("http://{}", self.addr))
    }
}

/// A kube client for `url`, with kube's own retries off.
pub fn client_for(url: &str) -> kube::Client {
    let mut config = kube::Config::new(url.parse().unwrap());
    config.default_retry = false;
    config.connect_timeout = Some(Duration::from_secs(5));
    kube::Client::try_from(config).unwrap()
}

/// Guards a test step against a hang (real time: the server is real I/O).
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("step did not finish within 20s")
}
