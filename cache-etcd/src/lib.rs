//! An etcd v3 source for `cache-core`: list and watch one key prefix, typed.
//!
//! etcd is the store Kubernetes is built on, and its MVCC revisions are exactly the resource
//! versions a reflector needs. [`EtcdListWatch`] is a
//! [`ListerWatcher`](cache_core::source::ListerWatcher) over one key prefix: give it to a
//! reflector and a [`Cache`](cache_core::Cache) mirrors the prefix, through compactions (the
//! reflector relists) and member failures (it re-watches through the client's other endpoints).
//!
//! - [`EtcdListWatch`]: the source; its docs list the exact semantics.
//! - [`Codec`], [`JsonCodec`], [`EtcdObject`], [`Meta`]: how values become objects. JSON through
//!   serde by default; any closure can decode instead.
//! - [`KeyMapping`]: how an etcd key maps to an object key.
//! - [`connect`]: a client with the keep-alive and failover settings a watch wants.
//! - [`EtcdLock`]: a leader-election lock (etcd lease + revision-guarded key) for
//!   [`cache_core::leader::LeaderElector`].
//!
//! This is a crate of its own, not a feature of `cache-core`, so that the core's dependency
//! tree stays small: the etcd client brings tonic, prost and hyper, and its build needs
//! `protoc`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod codec;
mod error;
mod key;
mod list_watch;
mod lock;

pub use codec::{Codec, CodecError, EtcdObject, JsonCodec, Meta};
pub use key::KeyMapping;
pub use list_watch::{DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PAGE_SIZE, EtcdListWatch, connect};
pub use lock::EtcdLock;

/// The etcd client this crate is built on, re-exported so that your client is the same version.
pub use etcd_client;
