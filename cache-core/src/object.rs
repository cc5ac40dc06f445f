//! What can live in a cache: [`Object`], its typed key ([`ObjectKey`] for Kubernetes-style
//! objects) and its [`ResourceVersion`].

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

/// A value that can be stored in a [`Cache`](crate::Cache) and carried through the queues and
/// the reflector.
///
/// An object has a typed key, which identifies it within its collection, and optionally the
/// resource version at which the source last wrote it.
///
/// # Examples
///
/// ```
/// use cache_core::{Object, ObjectKey, ResourceVersion};
///
/// struct ConfigMap { namespace: String, name: String, rv: u64 }
///
/// impl Object for ConfigMap {
///     type Key = ObjectKey;
///     fn key(&self) -> ObjectKey { ObjectKey::new(&self.namespace, &self.name) }
///     fn resource_version(&self) -> Option<ResourceVersion> { Some(self.rv.into()) }
/// }
///
/// let cm = ConfigMap { namespace: "default".into(), name: "settings".into(), rv: 7 };
/// assert_eq!(cm.key().to_string(), "default/settings");
/// ```
pub trait Object: Send + Sync + 'static {
    /// The key type. [`ObjectKey`] for Kubernetes-style `namespace/name` keys; any cheap-to-clone
    /// ordered hashable type otherwise (a composite key is a tuple or a struct).
    type Key: Clone + Eq + Ord + Hash + fmt::Debug + Send + Sync + 'static;

    /// The object's key. It must be a pure function of the object.
    fn key(&self) -> Self::Key;

    /// The resource version at which the source wrote this object, if it carries one.
    fn resource_version(&self) -> Option<ResourceVersion> {
        None
    }
}

impl<T: Object> Object for Arc<T> {
    type Key = T::Key;
    fn key(&self) -> T::Key {
        (**self).key()
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        (**self).resource_version()
    }
}

/// The key of a Kubernetes-style object: an optional namespace and a name.
///
/// Its string form is client-go's: `namespace/name`, or `name` alone for a cluster-scoped object.
/// The key is one shared allocation, so cloning it (into every index bucket, every queue entry)
/// costs an atomic increment, not a string copy.
///
/// # Examples
///
/// ```
/// use cache_core::ObjectKey;
///
/// let key = ObjectKey::new("kube-system", "coredns");
/// assert_eq!(key.namespace(), Some("kube-system"));
/// assert_eq!(key.name(), "coredns");
/// assert_eq!(key.to_string(), "kube-system/coredns");
/// assert_eq!("kube-system/coredns".parse::<ObjectKey>().unwrap(), key);
/// assert_eq!(ObjectKey::cluster("node-1").to_string(), "node-1");
/// assert!("a/b/c".parse::<ObjectKey>().is_err());
/// ```
#[derive(Clone)]
pub struct ObjectKey {
    /// `namespace/name` or `name`.
    full: Arc<str>,
    /// Length of the namespace prefix, or `NO_NAMESPACE`.
    ns_len: u32,
}

const NO_NAMESPACE: u32 = u32::MAX;

impl ObjectKey {
    /// A namespaced key. An empty namespace gives a cluster-scoped key, as in client-go.
    pub fn new(namespace: &str, name: &str) -> Self {
        if namespace.is_empty() {
            return Self::cluster(name);
        }
        match u32::try_from(namespace.len()) {
            Ok(ns_len) if ns_len != NO_NAMESPACE => Self {
                full: join(namespace, name),
                ns_len,
            },
            // A namespace of 4 GiB cannot come from any real source; keep it whole in the name.
            _ => Self::cluster(&format!("{namespace}/{name}")),
        }
    }

    /// A cluster-scoped key: a name with no namespace.
    pub fn cluster(name: &str) -> Self {
        Self {
            full: name.into(),
            ns_len: NO_NAMESPACE,
        }
    }

    /// The namespace, or `None` for a cluster-scoped object.
    pub fn namespace(&self) -> Option<&str> {
        if self.ns_len == NO_NAMESPACE {
            None
        } else {
            Some(&self.full[..self.ns_len as usize])
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        if self.ns_len == NO_NAMESPACE {
            &self.full
        } else {
            &self.full[self.ns_len as usize + 1..]
        }
    }

    /// The client-go string form, without allocating: `namespace/name` or `name`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// Splits client-go's key format: one part is a name, two parts are `namespace/name`.
    ///
    /// # Errors
    ///
    /// [`KeyParseError`] when the string holds more than one `/`.
    pub fn parse(s: &str) -> Result<Self, KeyParseError> {
        s.parse()
    }
}

impl FromStr for ObjectKey {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, KeyParseError> {
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(name), None, None) => Ok(Self::cluster(name)),
            (Some(ns), Some(name), None) => Ok(Self::new(ns, name)),
            _ => Err(KeyParseError { key: s.to_owned() }),
        }
    }
}

impl PartialEq for ObjectKey {
    fn eq(&self, other: &Self) -> bool {
        self.ns_len == other.ns_len && self.full == other.full
    }
}
impl Eq for ObjectKey {}

impl Hash for ObjectKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.full.hash(state);
    }
}

impl Ord for ObjectKey {
    /// Namespace first (cluster-scoped keys sort first), then name.
    fn cmp(&self, other: &Self) -> Ordering {
        if self.ns_len == other.ns_len {
            // Namespaces of equal length (or none): comparing the whole `ns/name` strings
            // compares the namespaces first (same length, so the first differing byte decides),
            // then, past the equal `/`, the names. One comparison instead of two.
            if Arc::ptr_eq(&self.full, &other.full) {
                return Ordering::Equal;
            }
            return self.full.as_bytes().cmp(other.full.as_bytes());
        }
        (self.namespace(), self.name()).cmp(&(other.namespace(), other.name()))
    }
}
impl PartialOrd for ObjectKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.full, f)
    }
}

/// `namespace/name` in one shared allocation. Keys are made on every write, so a short key is
/// assembled on the stack and copied once, instead of through a `String`.
fn join(namespace: &str, name: &str) -> Arc<str> {
    const SHORT: usize = 128;
    let len = namespace.len() + 1 + name.len();
    if len <= SHORT {
        let mut buf = [0u8; SHORT];
        buf[..namespace.len()].copy_from_slice(namespace.as_bytes());
        buf[namespace.len()] = b'/';
        buf[namespace.len() + 1..len].copy_from_slice(name.as_bytes());
        if let Ok(s) = std::str::from_utf8(&buf[..len]) {
            return Arc::from(s);
        }
    }
    let mut full = String::with_capacity(len);
    full.push_str(namespace);
    full.push('/');
    full.push_str(name);
    full.into()
}

/// A key string that is not client-go's `name` or `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected key format: {key:?} (expected \"name\" or \"namespace/name\")")]
pub struct KeyParseError {
    /// The string that failed to parse.
    pub key: String,
}

/// The version at which a source wrote an object or a collection.
///
/// Opaque to the cache, as in Kubernetes: it is compared for equality and carried along. Sources
/// whose versions are numbers (etcd revisions, the in-memory source) can read it back with
/// [`as_u64`](Self::as_u64). Cloning is an atomic increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceVersion(Arc<str>);

impl ResourceVersion {
    /// A version from its string form.
    pub fn new(rv: &str) -> Self {
        Self(rv.into())
    }

    /// The string form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The version as a number, when it is one.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }
}

impl From<u64> for ResourceVersion {
    fn from(v: u64) -> Self {
        Self(v.to_string().into())
    }
}
impl From<&str> for ResourceVersion {
    fn from(v: &str) -> Self {
        Self::new(v)
    }
}
impl From<String> for ResourceVersion {
    fn from(v: String) -> Self {
        Self(v.into())
    }
}
impl Borrow<str> for ResourceVersion {
    fn borrow(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for ResourceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for ResourceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Keys sort by namespace (cluster-scoped first), then by name, whatever the lengths
        /// and bytes of the parts.
        #[test]
        fn keys_order_by_namespace_then_name(
            a in ("[a-c/-]{0,3}", "[a-c.-]{0,3}"),
            b in ("[a-c/-]{0,3}", "[a-c.-]{0,3}"),
        ) {
            let ka = ObjectKey::new(&a.0, &a.1);
            let kb = ObjectKey::new(&b.0, &b.1);
            let expected = (ka.namespace(), ka.name()).cmp(&(kb.namespace(), kb.name()));
            proptest::prop_assert_eq!(ka.cmp(&kb), expected);
            proptest::prop_assert_eq!(ka.cmp(&ka.clone()), std::cmp::Ordering::Equal);
            fn norm<'a>(ns: &'a str, n: &'a str) -> (Option<&'a str>, &'a str) {
                (if ns.is_empty() { None } else { Some(ns) }, n)
            }
            proptest::prop_assert_eq!(ka.cmp(&kb), norm(&a.0, &a.1).cmp(&norm(&b.0, &b.1)));
        }
    }

    #[test]
    fn key_string_form_is_client_gos() {
        assert_eq!(ObjectKey::new("ns", "name").to_string(), "ns/name");
        assert_eq!(ObjectKey::new("", "name").to_string(), "name");
        assert_eq!(ObjectKey::new("", "name"), ObjectKey::cluster("name"));
        assert_eq!(ObjectKey::cluster("n").namespace(), None);
    }

    #[test]
    fn split_meta_namespace_key() {
        let k: ObjectKey = "name".parse().unwrap();
        assert_eq!((k.namespace(), k.name()), (None, "name"));
        let k: ObjectKey = "ns/name".parse().unwrap();
        assert_eq!((k.namespace(), k.name()), (Some("ns"), "name"));
        let err = "a/b/c".parse::<ObjectKey>().unwrap_err();
        assert_eq!(err.key, "a/b/c");
        assert!(err.to_string().contains("unexpected key format"));
        // "/name" has an empty namespace: cluster scoped, as SplitMetaNamespaceKey says.
        let k: ObjectKey = "/name".parse().unwrap();
        assert_eq!((k.namespace(), k.name()), (None, "name"));
    }

    #[test]
    fn key_order_is_namespace_then_name() {
        let mut keys = [
            ObjectKey::new("a-b", "x"),
            ObjectKey::new("a", "y"),
            ObjectKey::cluster("z"),
            ObjectKey::new("a", "x"),
        ];
        keys.sort();
        let s: Vec<_> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["z", "a/x", "a/y", "a-b/x"]);
    }

    #[test]
    fn resource_version_numbers() {
        let rv = ResourceVersion::from(42);
        assert_eq!(rv.as_str(), "42");
        assert_eq!(rv.as_u64(), Some(42));
        assert_eq!(ResourceVersion::new("abc").as_u64(), None);
    }
}
