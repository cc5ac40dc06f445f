//! A typed client-side cache: the Rust answer to client-go's `tools/cache`.
//!
//! Programs that watch a remote source of truth (a Kubernetes API server, an etcd cluster, any
//! list+watch API) keep a local, indexed mirror of it and answer questions from memory. This
//! crate is that mirror, typed: an [`Object`] with a typed key ([`ObjectKey`] is client-go's
//! `namespace/name`) is kept in a [`Cache`], whose readers never block (every read goes through
//! an immutable [`Snapshot`] in which the objects, every index and the resource version agree),
//! filled by a [`Reflector`] or shared through a [`SharedIndexInformer`], and worked on by a
//! [`Controller`].
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
//!
//! # Modules
//!
//! - [`object`]: what can be cached: [`Object`], its key, its [`ResourceVersion`].
//! - [`store`]: client-go's [`Store`] contract, the [`Cache`] and the specialised stores
//!   (expiration, mutation, undelta).
//! - [`index`]: indexes from closures ([`Indexer`]) or, typed, from
//!   [`#[derive(Indexed)]`](derive@Indexed).
//! - [`lister`]: reads by Kubernetes label selector ([`LabelSelector`]) and by namespace.
//! - [`source`]: the [`ListerWatcher`](source::ListerWatcher) contract and the in-memory
//!   [`MemorySource`].
//! - [`reflector`]: the [`Reflector`], which keeps a store equal to a source by list and watch.
//! - [`fifo`]: the queues between a reflector and a cache (`Fifo`, `DeltaFifo`, `RealFifo`), and
//!   the keyed priority queue `Heap`.
//! - [`informer`]: the [`SharedIndexInformer`], one list+watch shared as a cache and as
//!   notifications, and waiting for several informers at once.
//! - [`workqueue`]: the rate-limited queue of keys a controller works from, and its rate
//!   limiters.
//! - [`controller`]: the [`Controller`] runtime around a reconcile function.
//! - [`leader`]: leader election among a controller's replicas, with fencing tokens.
//! - `endpoints` (feature `endpoints`): `/metrics`, `/healthz` and `/readyz` over HTTP.
//! - [`prelude`]: what a typical program imports, in one line.
//!
//! # What the crate root exports
//!
//! The root holds the types a program starts from and the errors their methods return: objects
//! and keys, the store contract and the cache, indexes, listers and selectors, the in-memory
//! source, the reflector, the informer and its handlers, and the controller. Specialist types
//! stay in their modules, named by their module's path: the queues of [`fifo`], the work queue,
//! its rate limiters and metrics ([`workqueue`], [`controller::names`]), the specialised stores
//! of [`store`], and the reflector's backoff ([`reflector::BackoffOptions`]). The [`prelude`]
//! adds, to the root's types, the traits whose methods a program calls.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod controller;
#[cfg(feature = "endpoints")]
#[cfg_attr(docsrs, doc(cfg(feature = "endpoints")))]
pub mod endpoints;
mod engine;
pub mod fifo;
pub mod index;
pub mod informer;
pub mod leader;
pub mod lister;
pub mod object;
pub mod prelude;
pub mod reflector;
pub mod source;
pub mod store;
pub mod workqueue;

pub use controller::{Action, Context, Controller};
pub use fifo::DeletedObject;
pub use index::{
    Index, IndexFn, IndexQuery, IndexValue, Indexed, Indexer, Indexers, IntoIndexValue, Lookup,
};
pub use informer::{
    EventHandler, HandlerFns, HandlerRegistration, InformerEvent, SharedIndexInformer,
};
pub use lister::{LabelSelector, Labels, Lister, NamespaceLister, SelectorParseError};
pub use object::{
    InvalidKeyReason, InvalidObjectKey, KeyParseError, KeyPart, Object, ObjectKey, ResourceVersion,
};
pub use reflector::{Reflector, ReflectorError, ReflectorOptions, ReflectorStats};
pub use source::MemorySource;
pub use store::{
    ByEntries, ByIter, Cache, CacheReader, Change, Snapshot, Store, StoreError, TransactionError,
};

#[doc = include_str!("derive.md")]
#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use cache_derive::Indexed;

#[doc(hidden)]
pub mod __private;

/// The default name of an informer, a controller or a handler: the last path segment of its
/// type's name, without generic arguments (`Pod` for `my_crate::model::Pod<X>`).
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// The message of a caught panic, for logs: its `&str` or `String` payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<non-string panic payload>")
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_message_is_its_string_payload_whatever_its_type() {
        let caught = |f: fn()| std::panic::catch_unwind(f).unwrap_err();
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let literal = caught(|| panic!("literal"));
        let formatted = caught(|| panic!("formatted {}", 7));
        let other = caught(|| std::panic::panic_any(7_u32));
        std::panic::set_hook(prev);
        assert_eq!(super::panic_message(&*literal), "literal");
        assert_eq!(super::panic_message(&*formatted), "formatted 7");
        assert_eq!(super::panic_message(&*other), "<non-string panic payload>");
    }
}
