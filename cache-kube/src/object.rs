//! Kubernetes objects in the cache: [`KubeObject`] caches a `kube::Resource` whole, and the
//! helpers [`object_key`] and [`resource_version`] give your own compact types the same key and
//! version.

use std::fmt;
use std::ops::Deref;

use cache_core::{Object, ObjectKey, ResourceVersion};
use kube::Resource;

/// A Kubernetes object cached whole, with its key and resource version read once from its
/// metadata.
///
/// `kube::Resource` types (k8s-openapi's `Pod`, your `#[derive(CustomResource)]` types,
/// `DynamicObject`) belong to other crates, and so does [`Object`]: the orphan rule forbids
/// implementing one for the other. `KubeObject<K>` is the bridge. It dereferences to `K`, and
/// its key is client-go's `namespace/name`, computed once when it is built (the cache asks
/// for the key on every write, and a clone of an [`ObjectKey`] does not allocate).
///
/// To keep less than the whole object, map it into a type of your own instead with
/// [`KubeListWatch::map`](crate::KubeListWatch::map).
///
/// ```
/// use cache_core::Object;
/// use cache_kube::KubeObject;
/// use k8s_openapi::api::core::v1::Pod;
/// use kube::api::ObjectMeta;
///
/// let pod = Pod {
///     metadata: ObjectMeta {
///         namespace: Some("default".into()),
///         name: Some("web-0".into()),
///         resource_version: Some("42".into()),
///         ..ObjectMeta::default()
///     },
///     ..Pod::default()
/// };
/// let cached = KubeObject::new(pod).unwrap();
/// assert_eq!(cached.key().to_string(), "default/web-0");
/// assert_eq!(cached.resource_version().unwrap().as_str(), "42");
/// assert_eq!(cached.metadata.name.as_deref(), Some("web-0")); // derefs to the Pod
///
/// // An object with no name has no key.
/// assert!(KubeObject::new(Pod::default()).is_err());
/// ```
#[derive(Clone)]
pub struct KubeObject<K> {
    key: ObjectKey,
    resource_version: Option<ResourceVersion>,
    object: K,
}

impl<K: Resource> KubeObject<K> {
    /// Wraps `object`, reading its key and resource version from its metadata.
    ///
    /// # Errors
    ///
    /// [`MissingName`] when `metadata.name` is unset or empty: such an object has no key.
    /// (Objects from an API server always have a name.)
    pub fn new(object: K) -> Result<Self, MissingName> {
        let key = object_key(&object).ok_or(MissingName)?;
        let resource_version = resource_version(&object);
        Ok(Self {
            key,
            resource_version,
            object,
        })
    }
}

impl<K> KubeObject<K> {
    /// The object.
    pub fn get(&self) -> &K {
        &self.object
    }

    /// Unwraps the object.
    pub fn into_inner(self) -> K {
        self.object
    }
}

impl<K> Deref for KubeObject<K> {
    type Target = K;
    fn deref(&self) -> &K {
        &self.object
    }
}

impl<K> AsRef<K> for KubeObject<K> {
    fn as_ref(&self) -> &K {
        &self.object
    }
}

impl<K: fmt::Debug> fmt::Debug for KubeObject<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.object, f)
    }
}

impl<K: Send + Sync + 'static> Object for KubeObject<K> {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        self.key.clone()
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.resource_version.clone()
    }
}

/// An object without `metadata.name`, which therefore has no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the object has no metadata.name, so it has no key")]
pub struct MissingName;

/// The cache key of a Kubernetes object: client-go's `namespace/name` (or `name` for a
/// cluster-scoped object). `None` when `metadata.name` is unset or empty.
///
/// Use it in a transform to give your own type the same key:
///
/// ```
/// use cache_kube::object_key;
/// use k8s_openapi::api::core::v1::{Namespace, Pod};
/// use kube::api::ObjectMeta;
///
/// let meta = |ns: Option<&str>, name: &str| ObjectMeta {
///     namespace: ns.map(Into::into),
///     name: Some(name.into()),
///     ..ObjectMeta::default()
/// };
/// let pod = Pod { metadata: meta(Some("default"), "web-0"), ..Pod::default() };
/// assert_eq!(object_key(&pod).unwrap().to_string(), "default/web-0");
/// let ns = Namespace { metadata: meta(None, "default"), ..Namespace::default() };
/// assert_eq!(object_key(&ns).unwrap().to_string(), "default");
/// ```
pub fn object_key<K: Resource>(object: &K) -> Option<ObjectKey> {
    let meta = object.meta();
    let name = meta.name.as_deref().filter(|n| !n.is_empty())?;
    Some(ObjectKey::new(
        meta.namespace.as_deref().unwrap_or(""),
        name,
    ))
}

/// The resource version of a Kubernetes object (`metadata.resourceVersion`), if it has one.
pub fn resource_version<K: Resource>(object: &K) -> Option<ResourceVersion> {
    object
        .meta()
        .resource_version
        .as_deref()
        .filter(|rv| !rv.is_empty())
        .map(ResourceVersion::new)
}
