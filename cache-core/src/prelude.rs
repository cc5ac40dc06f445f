//! What a typical program imports: `use cache_core::prelude::*;`.
//!
//! The types of the [crate root](crate) a program starts from, and the traits whose methods it
//! calls ([`Object`], [`Store`], [`Indexed`], [`IndexQuery`], [`Labels`], [`EventHandler`],
//! [`ListerWatcher`]).
//!
//! ```
//! use cache_core::prelude::*;
//!
//! #[derive(Clone, Debug, Indexed)]
//! struct Pod {
//!     #[key] name: String,
//!     #[index] node: String,
//!     #[resource_version] rv: Option<ResourceVersion>,
//! }
//!
//! let source = MemorySource::<Pod>::new();
//! source.put(Pod { name: "web".into(), node: "n1".into(), rv: None });
//! let pods = SharedIndexInformer::new(source);
//! assert_eq!(pods.cache().len(), 0); // filled once it runs
//! ```

pub use crate::source::ListerWatcher;
pub use crate::{
    Action, Cache, CacheReader, Context, Controller, DeletedObject, EventHandler, HandlerFns,
    HandlerRegistration, IndexQuery, Indexed, Indexer, Indexers, InformerEvent, LabelSelector,
    Labels, Lister, MemorySource, Object, ObjectKey, Reflector, ReflectorOptions, ResourceVersion,
    SharedIndexInformer, Snapshot, Store,
};
