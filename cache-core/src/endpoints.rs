//! The HTTP endpoints of a controller process (feature `endpoints`): `/metrics`, `/healthz`
//! and `/readyz`, as a cluster probes and scrapes them.
//!
//! - `/metrics`: every metric of the `metrics` facade (the controllers', the work queues',
//!   the informers', the electors'), in Prometheus' text exposition format, from a
//!   [`PrometheusHandle`];
//! - `/healthz` (liveness): 200 while every health check passes; by default none, so it means
//!   "the process serves HTTP". [`Endpoints::leader`] adds client-go's leader-election check:
//!   unhealthy when the leader's renewals are overdue (its elector is stuck);
//! - `/readyz` (readiness): 200 once every readiness check passes, such as
//!   [`Endpoints::controller`]: the controller's informers have synced. 503 before.
//!
//! A failing probe answers 503 with one line per check, as Kubernetes' own components do:
//! `[+]name ok` or `[-]name failed: reason`.
//!
//! ```no_run
//! use cache_core::endpoints::Endpoints;
//! use cache_core::endpoints::PrometheusBuilder;
//! use tokio_util::sync::CancellationToken;
//!
//! # #[allow(dead_code)]
//! # async fn example(controller: cache_core::controller::ControllerHandle, leader: cache_core::leader::LeaderHandle) -> std::io::Result<()> {
//! let prometheus = PrometheusBuilder::new().install_recorder().expect("the only recorder");
//! let endpoints = Endpoints::new()
//!     .metrics(prometheus)
//!     .controller("pods", controller)
//!     .leader("pods-leader", leader, std::time::Duration::from_secs(10));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! endpoints.serve(listener, CancellationToken::new()).await
//! # }
//! ```

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
pub use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::controller::ControllerHandle;
use crate::leader::LeaderHandle;

type Check = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The endpoints of one process: what `/metrics` renders, and the checks behind `/healthz` and
/// `/readyz`. Build it, then [`serve`](Self::serve) it.
#[derive(Default)]
pub struct Endpoints {
    metrics: Option<PrometheusHandle>,
    health: Vec<(String, Check)>,
    ready: Vec<(String, Check)>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names =
            |checks: &[(String, Check)]| checks.iter().map(|c| c.0.clone()).collect::<Vec<_>>();
        f.debug_struct("Endpoints")
            .field("metrics", &self.metrics.is_some())
            .field("health", &names(&self.health))
            .field("ready", &names(&self.ready))
            .finish()
    }
}

/// The answer of one probe: the status code and the body.
fn probe(checks: &[(String, Check)]) -> (u16, String) {
    let mut body = String::new();
    let mut ok = true;
    for (name, check) in checks {
        match check() {
            Ok(()) => {
                let _ = writeln!(body, "[+]{name} ok");
            }
            Err(reason) => {
                ok = false;
                let _ = writeln!(body, "[-]{name} failed: {reason}");
            }
        }
    }
    if ok {
        body.push_str("ok\n");
        (200, body)
    } else {
        body.push_str("check failed\n");
        (503, body)
    }
}

impl Endpoints {
    /// Endpoints with no metrics and no checks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renders `/metrics` from `handle` (the handle of the installed Prometheus recorder, or of
    /// one used locally). Without it, `/metrics` is 404.
    #[must_use]
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Adds a readiness check: `/readyz` is 503 until the controller is ready (every cache it
    /// waits for, every informer it uses, has synced) and again once it stops.
    #[must_use]
    pub fn controller(mut self, name: impl Into<String>, handle: ControllerHandle) -> Self {
        self.ready.push((
            name.into(),
            Box::new(move || {
                if handle.is_ready() {
                    Ok(())
                } else if handle.is_stopped() {
                    Err("the controller has stopped".into())
                } else {
                    Err("the controller's caches have not synced".into())
                }
            }),
        ));
        self
    }

    /// Adds client-go's leader-election health check: `/healthz` fails while this candidate
    /// leads and has not renewed for longer than its retry period plus `tolerance`, or when its
    /// elector has stopped. A follower is healthy.
    #[must_use]
    pub fn leader(
        mut self,
        name: impl Into<String>,
        handle: LeaderHandle,
        tolerance: Duration,
    ) -> Self {
        self.health.push((
            name.into(),
            Box::new(move || handle.check_health(tolerance).map_err(|e| e.to_string())),
        ));
        self
    }

    /// Adds a readiness check of your own (an informer's `has_synced`, a connection).
    #[must_use]
    pub fn ready_when(
        mut self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.ready.push((name.into(), Box::new(check)));
        self
    }

    /// Adds a liveness check of your own.
    #[must_use]
    pub fn healthy_when(
        mut self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.health.push((name.into(), Box::new(check)));
        self
    }

    /// The answer to a `GET` of `path`: status code, content type and body.
    pub fn answer(&self, path: &str) -> (u16, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        match path {
            "/healthz" | "/livez" => {
                let (status, body) = probe(&self.health);
                (status, TEXT, body)
            }
            "/readyz" => {
                let (status, body) = probe(&self.ready);
                (status, TEXT, body)
            }
            "/metrics" => match &self.metrics {
                Some(handle) => (
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    handle.render(),
                ),
                None => (404, TEXT, "no metrics recorder\n".into()),
            },
            _ => (404, TEXT, "not found\n".into()),
        }
    }

    /// Serves the endpoints over HTTP/1.1 on `listener` until `cancel` is cancelled; the
    /// connections open then are closed.
    ///
    /// # Errors
    ///
    /// An error of `accept` on the listener.
    pub async fn serve(
        self,
        listener: TcpListener,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        let endpoints = Arc::new(self);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => accepted?,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let endpoints = endpoints.clone();
            let cancel = cancel.clone();
            connections.spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (status, content_type, body) = endpoints.answer(request.uri().path());
                    let response = hyper::Response::builder()
                        .status(status)
                        .header(hyper::header::CONTENT_TYPE, content_type)
                        .body(Full::new(Bytes::from(body)));
                    async move { Ok::<_, Infallible>(response.unwrap_or_default()) }
                });
                let connection =
                    http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    result = connection => {
                        if let Err(error) = result {
                            debug!(%peer, %error, "endpoint connection failed");
                        }
                    }
                    () = cancel.cancelled() => {}
                }
            });
        }
        connections.shutdown().await;
        Ok(())
    }
}
