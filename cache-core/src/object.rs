//! What can live in a cache: [`Object`], its typed key ([`ObjectKey`] for Kubernetes-style
//! objects) and its [`ResourceVersion`].

use std::borrow::{Borrow, Cow};
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

    /// Records the resource version at which the source wrote this object.
    ///
    /// The sources call it on every object they store or decode, when the version lives beside
    /// the object rather than in it: the [`MemorySource`](crate::source::memory::MemorySource)
    /// on each write, `cache-etcd`'s `JsonCodec` with the key's mod revision, `cache-kube`'s
    /// `KubeListWatch::map` with the object's `metadata.resourceVersion`.
    /// [`#[derive(Indexed)]`](derive@crate::Indexed) implements it for the
    /// `#[resource_version]` field, so a derived type needs no code for it. The default ignores
    /// the version.
    fn set_resource_version(&mut self, rv: ResourceVersion) {
        let _ = rv;
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
    /// Sets the version on the object when this `Arc` is its only handle; otherwise does
    /// nothing (a shared object is not changed behind its other holders).
    fn set_resource_version(&mut self, rv: ResourceVersion) {
        if let Some(object) = Arc::get_mut(self) {
            object.set_resource_version(rv);
        }
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
///
/// # Checked and unchecked construction
///
/// Kubernetes names never contain `/`, so `namespace/name` splits back into its parts. Two ways
/// to build a key:
///
/// - [`try_new`](Self::try_new) and [`try_cluster`](Self::try_cluster) check the parts as
///   Kubernetes does and return an [`InvalidObjectKey`] otherwise. Use them for input you do not
///   trust: user configuration, command lines, keys of a store you do not control.
/// - [`new`](Self::new) and [`cluster`](Self::cluster) do not check. They are for parts that are
///   already valid names: fields of objects an API server validated, or names your program
///   chose. They cost no validation on the write path, where [`Object::key`] is called for
///   every object, and never fail.
///
/// Every key, however it was built, prints in a form that [`parse`](Self::parse)s back to an
/// equal key. A valid key prints as client-go's `namespace/name`. A part that holds a `/` or a
/// `%` (which no Kubernetes name does) prints with them escaped as `%2F` and `%25`, so that
/// `("a/b", "c")` prints as `a%2Fb/c` and `("a", "b/c")` as `a/b%2Fc`:
///
/// ```
/// use cache_core::ObjectKey;
///
/// let odd = ObjectKey::new("a", "b/c");
/// assert_eq!(odd.to_string(), "a/b%2Fc");
/// assert_eq!(odd.to_string().parse::<ObjectKey>()?, odd);
/// assert_eq!(odd.name(), "b/c");
/// # Ok::<(), cache_core::KeyParseError>(())
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
    /// A namespaced key, unchecked: the parts must be valid names (see the
    /// [type docs](Self#checked-and-unchecked-construction); [`try_new`](Self::try_new) checks).
    /// An empty namespace gives a cluster-scoped key, as in client-go.
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

    /// A namespaced key from parts checked as Kubernetes checks them. An empty namespace gives a
    /// cluster-scoped key, as [`new`](Self::new) does.
    ///
    /// The namespace, when not empty, must be a DNS label (at most 63 lowercase alphanumerics or
    /// `-`, starting and ending with an alphanumeric), as Kubernetes requires of namespaces. The
    /// name must be a valid path segment, the rule every Kubernetes name obeys: not empty, not
    /// `.` or `..`, no `/` and no `%`. (Most kinds require more, a DNS subdomain, but some do
    /// not: RBAC roles are named `system:controller:...`.)
    ///
    /// ```
    /// use cache_core::{InvalidKeyReason, ObjectKey};
    ///
    /// let key = ObjectKey::try_new("default", "web-0")?;
    /// assert_eq!(key, ObjectKey::new("default", "web-0"));
    /// assert_eq!(key.to_string().parse::<ObjectKey>()?, key);
    ///
    /// let err = ObjectKey::try_new("default", "web/0").unwrap_err();
    /// assert_eq!(err.reason, InvalidKeyReason::ContainsSlash);
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid object name \"web/0\": a name must not contain '/'",
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidObjectKey`], naming the part and the reason.
    pub fn try_new(namespace: &str, name: &str) -> Result<Self, InvalidObjectKey> {
        if !namespace.is_empty() {
            check_namespace(namespace)?;
        }
        check_name(name)?;
        Ok(Self::new(namespace, name))
    }

    /// A cluster-scoped key from a name checked as [`try_new`](Self::try_new) checks it.
    ///
    /// # Errors
    ///
    /// [`InvalidObjectKey`] for a name that is not a valid path segment.
    pub fn try_cluster(name: &str) -> Result<Self, InvalidObjectKey> {
        check_name(name)?;
        Ok(Self::cluster(name))
    }

    /// A cluster-scoped key: a name with no namespace. Unchecked: the name must be valid (see
    /// the [type docs](Self#checked-and-unchecked-construction);
    /// [`try_cluster`](Self::try_cluster) checks).
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

    /// The string form, as [`Display`](fmt::Display) prints it: client-go's `namespace/name` or
    /// `name`, borrowed from the key without allocating unless a part holds a `/` or a `%` (see
    /// the [type docs](Self#checked-and-unchecked-construction)).
    pub fn as_str(&self) -> Cow<'_, str> {
        if self.needs_escape() {
            Cow::Owned(self.to_string())
        } else {
            Cow::Borrowed(&self.full)
        }
    }

    /// Whether a part holds a byte that the string form escapes: a `%`, or a `/` other than the
    /// separator.
    fn needs_escape(&self) -> bool {
        let sep = (self.ns_len != NO_NAMESPACE).then_some(self.ns_len as usize);
        self.full
            .bytes()
            .enumerate()
            .any(|(i, b)| b == b'%' || (b == b'/' && Some(i) != sep))
    }

    /// Splits client-go's key format: one part is a name, two parts are `namespace/name`. In
    /// each part, `%2F` stands for `/` and `%25` for `%` (how a key whose parts hold them prints);
    /// any other `%` is kept as it is.
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
            (Some(name), None, None) => Ok(Self::cluster(&unescape(name))),
            (Some(ns), Some(name), None) => Ok(Self::new(&unescape(ns), &unescape(name))),
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
        if !self.needs_escape() {
            return f.write_str(&self.full);
        }
        if let Some(ns) = self.namespace() {
            write_escaped(f, ns)?;
            f.write_str("/")?;
        }
        write_escaped(f, self.name())
    }
}

/// Writes a key part with `%` as `%25` and `/` as `%2F`.
fn write_escaped(f: &mut fmt::Formatter<'_>, part: &str) -> fmt::Result {
    let mut rest = part;
    while let Some(i) = rest.find(['%', '/']) {
        f.write_str(&rest[..i])?;
        f.write_str(if rest.as_bytes()[i] == b'%' {
            "%25"
        } else {
            "%2F"
        })?;
        rest = &rest[i + 1..];
    }
    f.write_str(rest)
}

/// Undoes [`write_escaped`]: `%25` is `%`, `%2F` (or `%2f`) is `/`; any other `%` stays.
fn unescape(part: &str) -> Cow<'_, str> {
    if !part.contains('%') {
        return Cow::Borrowed(part);
    }
    let mut out = String::with_capacity(part.len());
    let mut rest = part;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3);
        match code {
            Some("25") => out.push('%'),
            Some("2F" | "2f") => out.push('/'),
            _ => {
                out.push('%');
                rest = &rest[i + 1..];
                continue;
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Cow::Owned(out)
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

/// Kubernetes' longest DNS label: the limit on a namespace.
const MAX_NAMESPACE: usize = 63;

fn check_namespace(namespace: &str) -> Result<(), InvalidObjectKey> {
    let fail = |reason| {
        Err(InvalidObjectKey {
            part: KeyPart::Namespace,
            value: namespace.to_owned(),
            reason,
        })
    };
    if namespace.len() > MAX_NAMESPACE {
        return fail(InvalidKeyReason::NamespaceTooLong {
            len: namespace.len(),
        });
    }
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = namespace.as_bytes();
    let ok = b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-');
    if ok {
        Ok(())
    } else {
        fail(InvalidKeyReason::NamespaceNotDnsLabel)
    }
}

fn check_name(name: &str) -> Result<(), InvalidObjectKey> {
    let reason = if name.is_empty() {
        InvalidKeyReason::EmptyName
    } else if name == "." || name == ".." {
        InvalidKeyReason::DotName
    } else if name.contains('/') {
        InvalidKeyReason::ContainsSlash
    } else if name.contains('%') {
        InvalidKeyReason::ContainsPercent
    } else {
        return Ok(());
    };
    Err(InvalidObjectKey {
        part: KeyPart::Name,
        value: name.to_owned(),
        reason,
    })
}

/// A namespace or name that [`ObjectKey::try_new`] or [`ObjectKey::try_cluster`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object {part} {value:?}: {reason}")]
pub struct InvalidObjectKey {
    /// Which part is invalid.
    pub part: KeyPart,
    /// The part as given.
    pub value: String,
    /// Why.
    pub reason: InvalidKeyReason,
}

/// The part of an [`ObjectKey`] that an [`InvalidObjectKey`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// The namespace.
    Namespace,
    /// The name.
    Name,
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyPart::Namespace => "namespace",
            KeyPart::Name => "name",
        })
    }
}

/// Why a part of an [`ObjectKey`] is invalid (Kubernetes' `ValidateNamespaceName` and
/// `ValidatePathSegmentName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKeyReason {
    /// The name is empty.
    #[error("a name must not be empty")]
    EmptyName,
    /// The name is `.` or `..`.
    #[error("a name must not be '.' or '..'")]
    DotName,
    /// The name contains `/`, which separates the namespace from the name.
    #[error("a name must not contain '/'")]
    ContainsSlash,
    /// The name contains `%`.
    #[error("a name must not contain '%'")]
    ContainsPercent,
    /// The namespace is longer than a DNS label.
    #[error("a namespace must be no more than 63 characters (it has {len})")]
    NamespaceTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The namespace is not a DNS label.
    #[error(
        "a namespace must consist of lowercase alphanumeric characters or '-', and must start \
         and end with an alphanumeric character"
    )]
    NamespaceNotDnsLabel,
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

/// A version serializes as its string form, as Kubernetes' `metadata.resourceVersion` does.
impl serde::Serialize for ResourceVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A version deserializes from a string, or from an unsigned integer (an etcd revision as a
/// number), which becomes its decimal string.
impl<'de> serde::Deserialize<'de> for ResourceVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ResourceVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a resource version (a string or an unsigned integer)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ResourceVersion, E> {
                Ok(ResourceVersion::new(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ResourceVersion, E> {
                Ok(ResourceVersion::from(v))
            }
        }
        deserializer.deserialize_any(Visitor)
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

    /// A key part drawn from any characters, and often from those that matter to the key
    /// syntax, the escapes and the checks.
    fn part() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            "[a-c0-9/%.:-]{0,5}",
            "(%|/|%2F|%2f|%25|%%|a){0,4}",
            proptest::arbitrary::any::<String>(),
        ]
    }

    /// `parse(display(key)) == key`, with the parts it was built from.
    fn assert_round_trips(key: &ObjectKey) -> Result<(), proptest::test_runner::TestCaseError> {
        let printed = key.to_string();
        proptest::prop_assert_eq!(&*key.as_str(), printed.as_str());
        let back = printed.parse::<ObjectKey>();
        proptest::prop_assert_eq!(back.as_ref(), Ok(key), "printed as {:?}", printed);
        let back = back.unwrap_or_else(|_| ObjectKey::cluster(""));
        proptest::prop_assert_eq!(
            (back.namespace(), back.name()),
            (key.namespace(), key.name())
        );
        Ok(())
    }

    proptest::proptest! {
        /// Every key, whichever constructor built it, prints in a form that parses back to it.
        #[test]
        fn every_key_prints_in_a_form_that_parses_back(ns in part(), name in part(), s in part()) {
            let key = ObjectKey::new(&ns, &name);
            proptest::prop_assert_eq!(key.name(), name.as_str());
            assert_round_trips(&key)?;
            assert_round_trips(&ObjectKey::cluster(&name))?;
            if let Ok(key) = ObjectKey::try_new(&ns, &name) {
                proptest::prop_assert_eq!(&key, &ObjectKey::new(&ns, &name));
                assert_round_trips(&key)?;
            }
            if let Ok(key) = ObjectKey::try_cluster(&name) {
                assert_round_trips(&key)?;
            }
            if let Ok(key) = s.parse::<ObjectKey>() {
                assert_round_trips(&key)?;
            }
        }

        /// A valid key prints exactly as client-go prints it: nothing is escaped.
        #[test]
        fn valid_keys_print_as_client_go(ns in part(), name in part()) {
            if let Ok(key) = ObjectKey::try_new(&ns, &name) {
                let expected = if ns.is_empty() { name.clone() } else { format!("{ns}/{name}") };
                proptest::prop_assert_eq!(key.to_string(), expected);
            }
        }
    }

    #[test]
    fn parts_holding_a_slash_or_a_percent_print_escaped() {
        let cases = [
            (ObjectKey::new("a/b", "c"), "a%2Fb/c"),
            (ObjectKey::new("a", "b/c"), "a/b%2Fc"),
            (ObjectKey::new("ns", "50%"), "ns/50%25"),
            (ObjectKey::cluster("a/b"), "a%2Fb"),
            (ObjectKey::cluster("%2F"), "%252F"),
        ];
        for (key, printed) in cases {
            assert_eq!(key.to_string(), printed);
            assert_eq!(printed.parse::<ObjectKey>(), Ok(key));
        }
        // A `%` that is not one of the two escapes is kept.
        assert_eq!("a/5%".parse::<ObjectKey>(), Ok(ObjectKey::new("a", "5%")));
    }

    #[test]
    fn checked_constructors_say_which_part_is_wrong_and_why() {
        use InvalidKeyReason as R;
        let cases = [
            ("ns", "a/b", KeyPart::Name, R::ContainsSlash),
            ("ns", "", KeyPart::Name, R::EmptyName),
            ("", "", KeyPart::Name, R::EmptyName),
            ("ns", ".", KeyPart::Name, R::DotName),
            ("ns", "..", KeyPart::Name, R::DotName),
            ("ns", "50%", KeyPart::Name, R::ContainsPercent),
            ("a/b", "c", KeyPart::Namespace, R::NamespaceNotDnsLabel),
            ("Default", "c", KeyPart::Namespace, R::NamespaceNotDnsLabel),
            ("-ns", "c", KeyPart::Namespace, R::NamespaceNotDnsLabel),
            ("ns-", "c", KeyPart::Namespace, R::NamespaceNotDnsLabel),
            ("n.s", "c", KeyPart::Namespace, R::NamespaceNotDnsLabel),
            (
                &"n".repeat(64),
                "c",
                KeyPart::Namespace,
                R::NamespaceTooLong { len: 64 },
            ),
        ];
        for (ns, name, part, reason) in cases {
            let err = ObjectKey::try_new(ns, name).unwrap_err();
            assert_eq!((err.part, err.reason), (part, reason), "({ns:?}, {name:?})");
            let value = if part == KeyPart::Name { name } else { ns };
            assert_eq!(err.value, value);
        }
        // Valid: what Kubernetes accepts, ':' and '.' in names included.
        for (ns, name) in [
            ("default", "web-0"),
            ("kube-system", "system:controller:job"),
            ("a", "x.y_z"),
            (&*"n".repeat(63), "..."),
            ("", "node-1"),
        ] {
            let key = ObjectKey::try_new(ns, name).unwrap();
            assert_eq!(key, ObjectKey::new(ns, name));
        }
        assert_eq!(
            ObjectKey::try_cluster("node-1"),
            Ok(ObjectKey::cluster("node-1"))
        );
        let err = ObjectKey::try_cluster("a/b").unwrap_err();
        assert_eq!((err.part, err.reason), (KeyPart::Name, R::ContainsSlash));
        assert_eq!(
            ObjectKey::try_new("Ns", "x").unwrap_err().to_string(),
            "invalid object namespace \"Ns\": a namespace must consist of lowercase alphanumeric \
             characters or '-', and must start and end with an alphanumeric character"
        );
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
    fn resource_versions_serialize_as_strings_and_read_back_numbers_too() {
        let rv = ResourceVersion::new("123");
        assert_eq!(serde_json::to_string(&rv).unwrap(), r#""123""#);
        let back: ResourceVersion = serde_json::from_str(r#""123""#).unwrap();
        assert_eq!(back, rv);
        let number: ResourceVersion = serde_json::from_str("123").unwrap();
        assert_eq!(number, rv);
        let missing: Option<ResourceVersion> = serde_json::from_str("null").unwrap();
        assert_eq!(missing, None);
        let err = serde_json::from_str::<ResourceVersion>("-1").unwrap_err();
        assert!(err.to_string().contains("a resource version"), "{err}");
        let err = serde_json::from_str::<ResourceVersion>("[1]").unwrap_err();
        assert!(err.to_string().contains("a resource version"), "{err}");
    }

    #[test]
    fn resource_version_numbers() {
        let rv = ResourceVersion::from(42);
        assert_eq!(rv.as_str(), "42");
        assert_eq!(rv.as_u64(), Some(42));
        assert_eq!(ResourceVersion::new("abc").as_u64(), None);
    }
}
