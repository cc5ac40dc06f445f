//! A typed client-side cache: the Rust answer to client-go's `tools/cache`.
//!
//! Programs that watch a remote source of truth (a Kubernetes API server, an etcd cluster, any
//! list+watch API) keep a local, indexed mirror of it and answer questions from memory. This
//! crate is that mirror, typed:
//!
//! - [`Object`]: what can be cached, with a typed key ([`ObjectKey`] is client-go's
//!   `namespace/name`) and an optional [`ResourceVersion`];
//! - [`Store`]: client-go's store contract;
//! - [`Cache`]: the thread-safe indexed store, whose readers never block: every read goes
//!   through an immutable [`Snapshot`] in which the objects, every index and the resource version
//!   agree;
//! - indexes ([`Indexer`], [`Index`]) from closures or, typed and checked by the compiler, from
//!   [`#[derive(Indexed)]`](derive@Indexed);
//! - [`lister`]: reads by Kubernetes label selector ([`LabelSelector`]) and by namespace;
//! - [`controller`]: the rate-limited [`WorkQueue`] a controller works from.
//! - [`informer`]: the [`SharedIndexInformer`]: one list+watch shared as an indexed cache and
//!   as notifications to any number of handlers.
//! - [`leader`]: leader election among a controller's replicas, with fencing tokens.
//! - `endpoints` (feature `endpoints`): `/metrics`, `/healthz` and `/readyz` over HTTP.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use cache_core::{Cache, Indexed, ObjectKey};
//!
//! #[derive(Debug, Indexed)]
//! struct Pod {
//!     #[key(namespace)]
//!     namespace: String,
//!     #[key(name)]
//!     name: String,
//!     #[index] // generates `by_node`, `node_values` and the typed handle `Pod::NODE`
//!     node: Option<String>,
//!     #[resource_version]
//!     rv: u64,
//! }
//!
//! let cache = Cache::<Pod>::new(); // with Pod's indexes
//! let pod = |name: &str, node: &str, rv| Arc::new(Pod {
//!     namespace: "default".into(), name: name.into(), node: Some(node.into()), rv,
//! });
//! cache.replace(vec![pod("web-1", "n1", 1), pod("web-2", "n1", 2)], Some(2.into()))?;
//! cache.update(pod("web-2", "n2", 3))?; // moves between index values
//!
//! // One snapshot: objects, indexes and resource version agree.
//! let snap = cache.snapshot();
//! assert_eq!(snap.by_node("n1").len(), 1); // typed: `by_node(&7)` or `by_nod` do not compile
//! assert_eq!(snap.by(Pod::NODE, "n2")[0].name, "web-2"); // the same, through the handle
//! assert_eq!(snap.node_values(), ["n1", "n2"]);
//! assert_eq!(snap.resource_version().map(|rv| rv.as_str()), Some("3"));
//! let key = ObjectKey::new("default", "web-1");
//! assert_eq!(snap.get(&key).map(|p| p.rv), Some(1));
//! # Ok::<(), cache_core::StoreError>(())
//! ```
//!
//! Types you cannot annotate get indexes from closures ([`Indexer`]); the attributes and what
//! they generate are described on [`Indexed`](derive@Indexed).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod controller;
#[cfg(feature = "endpoints")]
#[cfg_attr(docsrs, doc(cfg(feature = "endpoints")))]
pub mod endpoints;
mod engine;
pub mod index;
pub mod informer;
pub mod leader;
pub mod lister;
pub mod object;
pub mod queue;
pub mod reflector;
pub mod source;
pub mod store;

pub use controller::{QueueMetrics, RateLimiter, WorkQueue};
pub use index::{Index, IndexFn, IndexValue, Indexed, Indexer, Indexers, IntoIndexValue, Lookup};
pub use informer::{
    EventHandler, HandlerFns, HandlerRegistration, InformerEvent, SharedIndexInformer,
};
pub use lister::{LabelSelector, Labels, Lister, NamespaceLister, SelectorParseError};
pub use object::{
    InvalidKeyReason, InvalidObjectKey, KeyParseError, KeyPart, Object, ObjectKey, ResourceVersion,
};
pub use queue::Heap;
pub use queue::{
    Closed, DeletedFinalStateUnknown, DeletedObject, Delta, DeltaFifo, DeltaFifoOptions, Deltas,
    Fifo, KnownObjects, Queue, RealFifo, RealFifoOptions, ReplaceMode, Transformer,
};
pub use reflector::{Reflector, ReflectorError, ReflectorOptions, ReflectorStats};
pub use store::UndeltaStore;
pub use store::{
    ByEntries, ByIter, Cache, CacheReader, Change, Snapshot, Store, StoreError, TransactionError,
};
pub use store::{
    Clock, ExpirationCache, ExpirationPolicy, FakeClock, RealClock, TimestampedEntry, TtlPolicy,
};
pub use store::{MutatedObject, MutationDetector, MutationDetectorError};
pub use store::{MutationCache, MutationCacheOptions, UncomparableVersion};

pub use index::IndexQuery;

#[doc = include_str!("derive.md")]
#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use cache_derive::Indexed;

#[doc(hidden)]
pub mod __private;

#[cfg(test)]
mod test_support;
