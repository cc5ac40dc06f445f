//! Listers: typed reads of a [`Cache`](crate::Cache) by label selector and by namespace (client-go's
//! `GenericLister` and `ListAll` / `ListAllByNamespace`).
//!
//! A [`Lister`] reads Kubernetes-style objects (keyed by [`ObjectKey`], exposing their
//! [`Labels`]) and filters them with a [`LabelSelector`] parsed from Kubernetes' string syntax.
//! [`Lister::by_namespace`] narrows it to one namespace; it uses the cache's index named
//! [`NAMESPACE_INDEX`] when there is one (build it with [`namespace_indexer`]) and scans the
//! cache otherwise, with the same results.
//!
//! Every read of a lister uses one [`Snapshot`] of the cache: the objects it
//! returns were all in the cache together, at one point in time.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//! use cache_core::lister::{Lister, namespace_indexer};
//! use cache_core::{Cache, Indexers, LabelSelector, Labels, Object, ObjectKey};
//!
//! struct Pod { namespace: String, name: String, labels: BTreeMap<String, String> }
//! impl Object for Pod {
//!     type Key = ObjectKey;
//!     fn key(&self) -> ObjectKey { ObjectKey::new(&self.namespace, &self.name) }
//! }
//! impl Labels for Pod {
//!     fn label(&self, key: &str) -> Option<&str> { self.labels.label(key) }
//! }
//! let pod = |ns: &str, name: &str, app: &str| Arc::new(Pod {
//!     namespace: ns.into(), name: name.into(), labels: [("app".into(), app.into())].into(),
//! });
//!
//! let cache = Arc::new(Cache::with_indexers(Indexers::new().with(namespace_indexer())));
//! cache.replace(vec![pod("a", "web-1", "web"), pod("a", "db-1", "db"), pod("b", "web-2", "web")], None)?;
//!
//! let pods = Lister::new(cache);
//! let web: LabelSelector = "app=web".parse()?;
//! assert_eq!(pods.list(&web).len(), 2);
//! assert_eq!(pods.by_namespace("a").list(&web)[0].name, "web-1");
//! assert!(pods.by_namespace("b").get("web-2").is_some());
//! assert!(pods.get(&ObjectKey::new("a", "db-1")).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod selector;

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

pub use selector::{
    InvalidLabel, LabelSelector, Labels, Operator, Requirement, SelectorErrorKind,
    SelectorParseError,
};

use crate::index::{Index, IndexQuery, IndexValue, Indexer, Lookup};
use crate::object::{Object, ObjectKey};
use crate::store::{CacheReader, Snapshot};

/// The name of the index that [`Lister::by_namespace`] uses when a cache has it (client-go's
/// `NamespaceIndex`). It must be `String`-valued and give each object its namespace, as
/// [`namespace_indexer`] does.
pub const NAMESPACE_INDEX: &str = "namespace";

/// The [`NAMESPACE_INDEX`] index: each object under its key's namespace (cluster-scoped objects
/// under none).
pub fn namespace_indexer<T>() -> Indexer<T>
where
    T: Object<Key = ObjectKey>,
{
    Indexer::new(NAMESPACE_INDEX, |obj: &T| {
        obj.key().namespace().map(str::to_owned)
    })
}

/// Lists and gets the objects of a [`Cache`](crate::Cache), filtered by [`LabelSelector`] (client-go's
/// `GenericLister`). Cheap to clone: it shares the cache. See the [module docs](self).
pub struct Lister<T: Object> {
    cache: CacheReader<T>,
}

impl<T: Object> Clone for Lister<T> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
        }
    }
}

impl<T: Object> fmt::Debug for Lister<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lister")
            .field("len", &self.cache.len())
            .finish()
    }
}

impl<T> Lister<T>
where
    T: Object<Key = ObjectKey> + Labels,
{
    /// A lister over `cache`: a [`CacheReader`], or the `Arc<Cache>` it reads.
    pub fn new(cache: impl Into<CacheReader<T>>) -> Self {
        Self {
            cache: cache.into(),
        }
    }

    /// The cache it reads.
    pub fn cache(&self) -> &CacheReader<T> {
        &self.cache
    }

    /// The objects whose labels match `selector`, in no particular order.
    /// [`LabelSelector::everything`] returns every object without reading labels.
    pub fn list(&self, selector: &LabelSelector) -> Vec<Arc<T>> {
        let snapshot = self.cache.snapshot();
        if selector.is_everything() {
            return snapshot.list();
        }
        snapshot
            .iter()
            .filter(|obj| selector.matches(&***obj))
            .cloned()
            .collect()
    }

    /// The object with this key.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<T>> {
        self.cache.snapshot().get(key).cloned()
    }

    /// A lister of one namespace. The empty namespace means all namespaces, as client-go's
    /// `NamespaceAll`.
    pub fn by_namespace(&self, namespace: &str) -> NamespaceLister<T> {
        NamespaceLister {
            cache: self.cache.clone(),
            namespace: namespace.into(),
        }
    }
}

/// The typed index queries on the lister's cache, so that the query methods of
/// `#[derive(Indexed)]` (`by_node`, ...) work on a lister too. Each answers from one snapshot.
impl<T: Object> IndexQuery<T> for Lister<T> {
    fn by<V, L>(&self, index: Index<T, V>, value: L) -> Vec<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        self.cache.by(index, value)
    }

    fn by_unique<V, L>(&self, index: Index<T, V>, value: L) -> Option<Arc<T>>
    where
        V: IndexValue + Borrow<L::Borrowed>,
        L: Lookup<V>,
    {
        self.cache.by_unique(index, value)
    }

    fn values<V: IndexValue>(&self, index: Index<T, V>) -> Vec<V> {
        self.cache.values(index)
    }
}

/// Lists and gets the objects of one namespace (client-go's `GenericNamespaceLister`), from
/// [`Lister::by_namespace`].
pub struct NamespaceLister<T: Object> {
    cache: CacheReader<T>,
    namespace: Arc<str>,
}

impl<T: Object> Clone for NamespaceLister<T> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

impl<T: Object> fmt::Debug for NamespaceLister<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamespaceLister")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl<T> NamespaceLister<T>
where
    T: Object<Key = ObjectKey> + Labels,
{
    /// The namespace (empty for all namespaces).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The objects of the namespace whose labels match `selector`, in no particular order.
    ///
    /// Uses the cache's [`NAMESPACE_INDEX`] index when it has one that is `String`-valued, and
    /// scans every object otherwise; the results are the same.
    pub fn list(&self, selector: &LabelSelector) -> Vec<Arc<T>> {
        let snapshot = self.cache.snapshot();
        list_namespace(&snapshot, &self.namespace, selector)
    }

    /// The object named `name` in this namespace (key `namespace/name`; `name` alone, a
    /// cluster-scoped key, for the empty namespace).
    pub fn get(&self, name: &str) -> Option<Arc<T>> {
        let key = ObjectKey::new(&self.namespace, name);
        self.cache.snapshot().get(&key).cloned()
    }
}

fn list_namespace<T>(
    snapshot: &Snapshot<T>,
    namespace: &str,
    selector: &LabelSelector,
) -> Vec<Arc<T>>
where
    T: Object<Key = ObjectKey> + Labels,
{
    if namespace.is_empty() {
        let all = snapshot.iter();
        return if selector.is_everything() {
            all.cloned().collect()
        } else {
            all.filter(|obj| selector.matches(&***obj))
                .cloned()
                .collect()
        };
    }
    if snapshot.index_names().any(|name| name == NAMESPACE_INDEX) {
        // `by_index` refuses an index whose values are not strings: then scan.
        if let Ok(mut objects) = snapshot.by_index(NAMESPACE_INDEX, namespace) {
            if !selector.is_everything() {
                objects.retain(|obj| selector.matches(&**obj));
            }
            return objects;
        }
    }
    snapshot
        .entries()
        .filter(|(key, obj)| key.namespace() == Some(namespace) && selector.matches(&***obj))
        .map(|(_, obj)| obj.clone())
        .collect()
}

#[cfg(test)]
mod tests;
