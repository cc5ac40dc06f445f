//! The Kubernetes backend of `cache-core`: a `kube::Api<K>` as a
//! [`ListerWatcher`](cache_core::source::ListerWatcher).
//!
//! kube-rs users keep their client and their `Api<K>`; this crate turns it into a source the
//! reflector can list and watch, so the objects land in a `cache_core::Cache` with typed
//! indexes and lock-free snapshot reads.
//!
//! - [`KubeListWatch`]: paginated lists, watches with bookmarks, the streaming initial list
//!   (`sendInitialEvents`, ended by the bookmark annotated `k8s.io/initial-events-end`) with a
//!   fallback to list+watch, and errors mapped onto
//!   [`SourceErrorKind`](cache_core::source::SourceErrorKind)s ([`error_from_status`]).
//! - [`KubeObject<K>`]: caches a whole object under its `namespace/name` key.
//! - [`KubeLeaseLock`]: a leader-election lock on a `coordination.k8s.io/v1` Lease, for
//!   [`cache_core::leader::LeaderElector`].
//! - [`KubeListWatch::map`]: caches a compact type of your own instead (one that derives
//!   `Indexed`), made from each object before it is stored: it drops managed fields and
//!   everything else you do not read.
//!
//! # Choosing the Kubernetes version
//!
//! Like every library on k8s-openapi, this crate enables no `k8s-openapi` version feature: the
//! application does (`k8s-openapi = { version = "0.29", features = ["v1_33"] }`, the oldest API
//! server it supports).
//!
//! # Retries
//!
//! kube's default client retries 429, 503 and 504 responses itself, with backoff, before this
//! crate sees them. With `Config::default_retry = false` they reach the reflector as typed
//! errors ([`SourceErrorKind::TooManyRequests`](cache_core::source::SourceErrorKind), ...)
//! and its own backoff applies.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod error;
mod lease;
mod object;
mod source;
mod wire;

pub use error::{error_from_kube, error_from_status};
pub use lease::KubeLeaseLock;
pub use object::{KubeObject, MissingName, object_key, resource_version};
pub use source::{DEFAULT_WATCH_TIMEOUT, IDLE_GRACE, KubeListWatch};
pub use wire::INITIAL_EVENTS_END;

/// The README's Rust examples, compiled (and, unless marked `no_run`, run) as doctests of this
/// crate: they use both backends, whose crates this one has as dev-dependencies.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;

/// The example of `cache-derive`'s README, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../cache-derive/README.md")]
pub struct DeriveReadmeExamples;
