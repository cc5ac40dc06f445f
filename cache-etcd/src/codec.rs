//! Values: how the bytes etcd stores become typed objects ([`Codec`]), with JSON by default
//! ([`JsonCodec`]).

use std::error::Error as StdError;
use std::fmt;

use cache_core::Object;
use serde::de::DeserializeOwned;

/// Where a value came from: its etcd key, the object key that key maps to, and etcd's
/// revisions. A codec gets it beside the value's bytes.
///
/// For the last state carried by a delete, `mod_revision` is the revision of the delete (as
/// Kubernetes' etcd storage does), so the reflector's resource version moves past the delete;
/// `create_revision` and `version` are those of the last state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta<'a> {
    /// The full etcd key, prefix included.
    pub etcd_key: &'a str,
    /// The object key the etcd key maps to through the source's
    /// [`KeyMapping`](crate::KeyMapping) (by default: the etcd key without the prefix).
    pub key: &'a str,
    /// The revision of the last change to the key: the object's resource version.
    pub mod_revision: u64,
    /// The revision at which the key was (last) created.
    pub create_revision: u64,
    /// How many times the key was written since it was created (1 on creation).
    pub version: u64,
}

/// Why a value did not decode. The source turns it into a
/// [`SourceErrorKind::Decode`](cache_core::source::SourceErrorKind::Decode) error that names the
/// etcd key, skips that object and goes on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(Box<dyn StdError + Send + Sync>);

impl CodecError {
    /// An error from any error value or message.
    ///
    /// ```
    /// let e = cache_etcd::CodecError::new("missing field `node`");
    /// assert_eq!(e.to_string(), "missing field `node`");
    /// ```
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self(error.into())
    }

    /// The underlying error.
    pub fn into_inner(self) -> Box<dyn StdError + Send + Sync> {
        self.0
    }
}

impl From<serde_json::Error> for CodecError {
    fn from(e: serde_json::Error) -> Self {
        Self::new(e)
    }
}

/// Turns an etcd value into an object.
///
/// [`JsonCodec`] is the default. Any closure `Fn(&[u8], &Meta) -> Result<T, CodecError>` is a
/// codec too:
///
/// ```
/// use cache_etcd::{Codec, CodecError, Meta};
///
/// #[derive(Debug, PartialEq)]
/// struct Flag { name: String, on: bool, rev: u64 }
/// # impl cache_core::Object for Flag {
/// #     type Key = String;
/// #     fn key(&self) -> String { self.name.clone() }
/// # }
///
/// // Values are the plain strings "on" and "off"; the name comes from the key.
/// let codec = |value: &[u8], meta: &Meta<'_>| match value {
///     b"on" | b"off" => Ok(Flag { name: meta.key.into(), on: value == b"on", rev: meta.mod_revision }),
///     other => Err(CodecError::new(format!("not on/off: {:?}", String::from_utf8_lossy(other)))),
/// };
/// let meta = Meta { etcd_key: "/flags/dark-mode", key: "dark-mode", mod_revision: 7, create_revision: 7, version: 1 };
/// assert_eq!(codec.decode(b"on", &meta).unwrap(), Flag { name: "dark-mode".into(), on: true, rev: 7 });
/// assert!(codec.decode(b"maybe", &meta).is_err());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot decode `{T}`: implement `EtcdObject` for `{T}`",
    label = "no codec for `{T}`",
    note = "the default codec, `JsonCodec`, decodes JSON values into types that implement \
            `cache_etcd::EtcdObject` (and `serde::Deserialize`); `impl cache_etcd::EtcdObject for {T} {{}}` \
            is enough for a type that derives `Indexed`",
    note = "any `Fn(&[u8], &Meta) -> Result<{T}, CodecError>` closure is a codec too"
)]
pub trait Codec<T>: Send + Sync + 'static {
    /// Decodes one value.
    ///
    /// # Errors
    ///
    /// [`CodecError`] when the bytes are not a valid `T`; the source reports it and skips the
    /// object (a watched put that does not decode also removes the object the key held; see
    /// [`EtcdListWatch`](crate::EtcdListWatch)).
    fn decode(&self, value: &[u8], meta: &Meta<'_>) -> Result<T, CodecError>;

    /// The object a delete removes when etcd sent no last state for it, or that last state does
    /// not decode: built from the key alone. `meta.mod_revision` is the revision of the delete.
    /// A watched put whose value does not decode uses it the same way, to remove the object.
    ///
    /// Return `None` (the default) when a `T` cannot be built from its key; such a delete is
    /// then reported as a decode error and the cache keeps the object. Implement it when your
    /// objects take their key from the etcd key, so that a delete always reaches the cache.
    fn tombstone(&self, meta: &Meta<'_>) -> Option<T> {
        let _ = meta;
        None
    }
}

impl<T, F> Codec<T> for F
where
    F: Fn(&[u8], &Meta<'_>) -> Result<T, CodecError> + Send + Sync + 'static,
{
    fn decode(&self, value: &[u8], meta: &Meta<'_>) -> Result<T, CodecError> {
        self(value, meta)
    }
}

/// An object that [`JsonCodec`] can decode: its value is JSON (serde), and it learns where it
/// came from after the JSON is parsed.
///
/// etcd keeps the revision beside the value, not in it (as Kubernetes' storage does). The codec
/// records the key's mod revision through [`Object::set_resource_version`], which
/// `#[derive(Indexed)]` implements for the `#[resource_version]` field, so the reflector resumes
/// its watch from the right place; give that field a serde default (an `Option` needs none).
/// With the derive, the impl is empty:
///
/// ```
/// use cache_core::{Indexed, Object, ResourceVersion};
/// use cache_etcd::{Codec, EtcdObject, JsonCodec, Meta};
///
/// #[derive(Debug, serde::Deserialize, Indexed)]
/// struct Pod {
///     #[key(namespace)] namespace: String,
///     #[key(name)] name: String,
///     #[index] node: String,
///     #[resource_version] revision: Option<ResourceVersion>, // not in the JSON: set by the codec
/// }
///
/// impl EtcdObject for Pod {}
///
/// let meta = Meta { etcd_key: "/pods/default/web", key: "default/web", mod_revision: 12, create_revision: 9, version: 3 };
/// let pod: Pod = JsonCodec.decode(br#"{"namespace":"default","name":"web","node":"n1"}"#, &meta)?;
/// assert_eq!(pod.resource_version().unwrap().as_u64(), Some(12));
/// assert_eq!((pod.key().to_string(), pod.node.as_str()), ("default/web".to_owned(), "n1"));
/// # Ok::<(), cache_etcd::CodecError>(())
/// ```
///
/// [`set_meta`](Self::set_meta) records more of the metadata, e.g. the key when the value does
/// not carry it; [`tombstone`](Self::tombstone) builds the object a delete removes.
///
/// A type that [`EtcdListWatch`](crate::EtcdListWatch) cannot decode is a compile error that
/// says so:
///
/// ```compile_fail,E0277
/// use cache_core::Indexed;
///
/// #[derive(serde::Deserialize, Indexed)]
/// struct Endpoint { #[key] name: String }
/// // no `impl EtcdObject for Endpoint {}`
///
/// # fn run(client: cache_etcd::etcd_client::Client) {
/// let cache = std::sync::Arc::new(cache_core::Cache::<Endpoint>::new());
/// let source = cache_etcd::EtcdListWatch::new(client, "/endpoints/");
/// let reflector = cache_core::Reflector::new(source, cache);
/// // error[E0277]: `Endpoint` is not an `EtcdObject`: implement `EtcdObject` for `Endpoint`
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an `EtcdObject`: implement `EtcdObject` for `{Self}`",
    label = "`JsonCodec` decodes only `EtcdObject`s",
    note = "`impl cache_etcd::EtcdObject for {Self} {{}}` is enough for a type that derives \
            `serde::Deserialize` and `Indexed` (its `#[resource_version]` field gets the revision)"
)]
pub trait EtcdObject: Object + DeserializeOwned {
    /// Records more of the etcd metadata of a freshly parsed value, after its resource version
    /// was set to `meta.mod_revision` (through [`Object::set_resource_version`]): the key, when
    /// the value does not carry it, or the create revision. Does nothing by default.
    fn set_meta(&mut self, meta: &Meta<'_>) {
        let _ = meta;
    }

    /// The object a delete removes when its last state is missing or does not decode; see
    /// [`Codec::tombstone`]. `None` by default. [`JsonCodec`] sets its resource version to
    /// `meta.mod_revision`.
    fn tombstone(meta: &Meta<'_>) -> Option<Self> {
        let _ = meta;
        None
    }
}

/// The default codec: each value is the JSON form of a `T: `[`EtcdObject`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCodec;

impl<T: EtcdObject> Codec<T> for JsonCodec {
    fn decode(&self, value: &[u8], meta: &Meta<'_>) -> Result<T, CodecError> {
        let mut object: T = serde_json::from_slice(value)?;
        object.set_resource_version(meta.mod_revision.into());
        object.set_meta(meta);
        Ok(object)
    }

    fn tombstone(&self, meta: &Meta<'_>) -> Option<T> {
        let mut object = T::tombstone(meta)?;
        object.set_resource_version(meta.mod_revision.into());
        Some(object)
    }
}

impl fmt::Display for Meta<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (revision {})", self.etcd_key, self.mod_revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::ResourceVersion;

    #[derive(Debug, serde::Deserialize)]
    struct Item {
        #[serde(skip)]
        name: String,
        node: String,
        #[serde(skip)]
        rev: u64,
    }
    impl Object for Item {
        type Key = String;
        fn key(&self) -> String {
            self.name.clone()
        }
        fn resource_version(&self) -> Option<ResourceVersion> {
            Some(self.rev.into())
        }
    }
    impl EtcdObject for Item {
        fn set_meta(&mut self, meta: &Meta<'_>) {
            self.name = meta.key.to_owned();
            self.rev = meta.mod_revision;
        }
        fn tombstone(meta: &Meta<'_>) -> Option<Self> {
            Some(Item {
                name: meta.key.to_owned(),
                node: String::new(),
                rev: meta.mod_revision,
            })
        }
    }

    fn meta() -> Meta<'static> {
        Meta {
            etcd_key: "/items/a",
            key: "a",
            mod_revision: 5,
            create_revision: 2,
            version: 3,
        }
    }

    #[test]
    fn json_codec_parses_and_stamps_the_revision_and_key() {
        let item: Item = JsonCodec.decode(br#"{"node":"n1"}"#, &meta()).unwrap();
        assert_eq!(
            (item.name.as_str(), item.node.as_str(), item.rev),
            ("a", "n1", 5)
        );
    }

    #[derive(Debug, serde::Deserialize, cache_core::Indexed)]
    struct Derived {
        #[key]
        name: String,
        #[resource_version]
        rv: Option<ResourceVersion>,
    }
    impl EtcdObject for Derived {}

    #[derive(Debug, serde::Deserialize, cache_core::Indexed)]
    struct DerivedNumber {
        #[key]
        name: String,
        #[resource_version]
        #[serde(default)]
        rv: u64,
    }
    impl EtcdObject for DerivedNumber {
        fn tombstone(meta: &Meta<'_>) -> Option<Self> {
            Some(DerivedNumber {
                name: meta.key.to_owned(),
                rv: 0,
            })
        }
    }

    #[test]
    fn json_codec_sets_the_derived_resource_version_field_to_the_mod_revision() {
        let item: Derived = JsonCodec.decode(br#"{"name":"a"}"#, &meta()).unwrap();
        assert_eq!(item.rv, Some(ResourceVersion::from(5)));
        assert_eq!(item.resource_version().unwrap().as_u64(), Some(5));
        // A version in the value is overwritten by etcd's own.
        let item: Derived = JsonCodec
            .decode(br#"{"name":"a","rv":"99"}"#, &meta())
            .unwrap();
        assert_eq!(item.rv, Some(ResourceVersion::from(5)));
        let item: DerivedNumber = JsonCodec.decode(br#"{"name":"a"}"#, &meta()).unwrap();
        assert_eq!((item.name.as_str(), item.rv), ("a", 5));
    }

    #[test]
    fn json_codec_stamps_tombstones_with_the_delete_revision() {
        let t: DerivedNumber = JsonCodec.tombstone(&meta()).unwrap();
        assert_eq!((t.name.as_str(), t.rv), ("a", 5));
        assert!(Codec::<Derived>::tombstone(&JsonCodec, &meta()).is_none());
    }

    #[test]
    fn json_codec_reports_bad_json_as_a_codec_error() {
        let err =
            <JsonCodec as Codec<Item>>::decode(&JsonCodec, b"{not json", &meta()).unwrap_err();
        assert!(err.to_string().contains("key must be a string"), "{err}");
        let err =
            <JsonCodec as Codec<Item>>::decode(&JsonCodec, br#"{"nod":1}"#, &meta()).unwrap_err();
        assert!(err.to_string().contains("missing field `node`"), "{err}");
    }

    #[test]
    fn json_codec_tombstone_comes_from_the_object_type() {
        let t: Item = JsonCodec.tombstone(&meta()).unwrap();
        assert_eq!((t.name.as_str(), t.rev), ("a", 5));
    }

    #[test]
    fn closure_codecs_have_no_tombstone_by_default() {
        let codec = |v: &[u8], m: &Meta<'_>| -> Result<Item, CodecError> {
            Ok(Item {
                name: m.key.into(),
                node: String::from_utf8_lossy(v).into_owned(),
                rev: m.mod_revision,
            })
        };
        assert_eq!(codec.decode(b"n2", &meta()).unwrap().node, "n2");
        assert!(Codec::<Item>::tombstone(&codec, &meta()).is_none());
    }
}
