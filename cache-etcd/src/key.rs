//! Keys: how an etcd key maps to an object key ([`KeyMapping`]), the key range of a prefix, and
//! the continue tokens of paginated lists.

use std::fmt;
use std::sync::Arc;

type MapFn = dyn Fn(&str) -> Option<String> + Send + Sync;

#[derive(Clone)]
enum Mapping {
    StripPrefix,
    Full,
    Custom(Arc<MapFn>),
}

/// How an etcd key maps to the key of the object stored under it. The result is what the codec
/// sees as [`Meta::key`](crate::Meta::key) and what errors name beside the etcd key.
///
/// ```
/// use cache_etcd::KeyMapping;
///
/// let prefix = "/registry/pods/";
/// assert_eq!(KeyMapping::strip_prefix().map("/registry/pods/default/web", prefix).as_deref(), Some("default/web"));
/// assert_eq!(KeyMapping::full_key().map("/registry/pods/default/web", prefix).as_deref(), Some("/registry/pods/default/web"));
///
/// // Only `namespace/name` keys are objects of this collection; anything deeper is skipped.
/// let two_levels = KeyMapping::custom(|key| {
///     let rest = key.strip_prefix("/registry/pods/")?;
///     (rest.split('/').count() == 2).then(|| rest.to_owned())
/// });
/// assert_eq!(two_levels.map("/registry/pods/default/web", prefix).as_deref(), Some("default/web"));
/// assert_eq!(two_levels.map("/registry/pods/default/web/status", prefix), None);
/// ```
#[derive(Clone)]
pub struct KeyMapping(Mapping);

impl KeyMapping {
    /// The etcd key without the watched prefix (the default): `/registry/pods/default/web` under
    /// `/registry/pods/` is `default/web`.
    pub fn strip_prefix() -> Self {
        Self(Mapping::StripPrefix)
    }

    /// The full etcd key, prefix included.
    pub fn full_key() -> Self {
        Self(Mapping::Full)
    }

    /// A function of the full etcd key. `None` means the key holds no object of this
    /// collection: the source skips it, silently, in lists and watches alike. Use it to leave
    /// out keys nested below the objects (say `…/name/status`).
    pub fn custom(f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Mapping::Custom(Arc::new(f)))
    }

    /// Maps one etcd key, listed or watched under `prefix`.
    pub fn map(&self, etcd_key: &str, prefix: &str) -> Option<String> {
        match &self.0 {
            Mapping::StripPrefix => {
                Some(etcd_key.strip_prefix(prefix).unwrap_or(etcd_key).to_owned())
            }
            Mapping::Full => Some(etcd_key.to_owned()),
            Mapping::Custom(f) => f(etcd_key),
        }
    }
}

impl Default for KeyMapping {
    fn default() -> Self {
        Self::strip_prefix()
    }
}

impl fmt::Debug for KeyMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Mapping::StripPrefix => "KeyMapping::strip_prefix",
            Mapping::Full => "KeyMapping::full_key",
            Mapping::Custom(_) => "KeyMapping::custom",
        })
    }
}

/// The end (exclusive) of the key range holding every key that starts with `prefix`, as etcd's
/// `clientv3.GetPrefixRangeEnd` computes it: the prefix with its last byte below 0xff
/// incremented and what follows dropped; `\0` (every key) when there is no such byte.
pub(crate) fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Where the next page of a list starts: the revision the list is read at and the first key
/// not yet returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Continue {
    pub(crate) revision: i64,
    pub(crate) next_key: Vec<u8>,
}

impl Continue {
    /// `<revision>:<next key in hex>`: opaque to callers, checked when it comes back.
    pub(crate) fn encode(&self) -> String {
        let mut s = format!("{}:", self.revision);
        for b in &self.next_key {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Parses a token and checks that it stays within `[prefix, range_end)`.
    pub(crate) fn decode(token: &str, prefix: &[u8], range_end: &[u8]) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid continue token {token:?}: {why}");
        let (rev, hex) = token.split_once(':').ok_or_else(|| bad("no revision"))?;
        let revision: i64 = rev
            .parse()
            .map_err(|_| bad("the revision is not a number"))?;
        if revision <= 0 {
            return Err(bad("the revision is not positive"));
        }
        if hex.len() % 2 != 0 {
            return Err(bad("odd key length"));
        }
        let next_key = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad("the key is not hex"))
            })
            .collect::<Result<Vec<u8>, String>>()?;
        let within =
            next_key.as_slice() >= prefix && (range_end == [0] || next_key.as_slice() < range_end);
        if !within {
            return Err(bad("the key is outside the listed prefix"));
        }
        Ok(Self { revision, next_key })
    }
}

/// The smallest key after `key`: the start of the next page.
pub(crate) fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_end_matches_etcds() {
        assert_eq!(prefix_range_end(b"/gw/"), b"/gw0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_range_end(b""), b"\0");
    }

    #[test]
    fn continue_tokens_round_trip() {
        let c = Continue {
            revision: 42,
            next_key: key_after(b"/p/a"),
        };
        let token = c.encode();
        assert_eq!(token, "42:2f702f6100");
        assert_eq!(Continue::decode(&token, b"/p/", b"/p0"), Ok(c));
    }

    #[test]
    fn bad_continue_tokens_are_errors_not_panics() {
        for token in [
            "", "x", "abc:00", "-1:2f70", "0:2f70", "5:2f7", "5:zz", "5:2f70é", "5:é2",
        ] {
            let err = Continue::decode(token, b"/p", b"/q").unwrap_err();
            assert!(err.starts_with("invalid continue token"), "{token}: {err}");
        }
        // A token may not lead a list out of its prefix.
        let outside = Continue {
            revision: 3,
            next_key: b"/secrets/x".to_vec(),
        };
        let err = Continue::decode(&outside.encode(), b"/p/", b"/p0").unwrap_err();
        assert!(err.contains("outside the listed prefix"), "{err}");
        let all = Continue::decode(&outside.encode(), b"", b"\0").unwrap();
        assert_eq!(all.next_key, b"/secrets/x");
    }

    #[test]
    fn strip_prefix_keeps_a_key_that_lacks_the_prefix_whole() {
        assert_eq!(
            KeyMapping::default().map("/other", "/p/").as_deref(),
            Some("/other")
        );
        assert_eq!(
            format!("{:?}", KeyMapping::default()),
            "KeyMapping::strip_prefix"
        );
    }
}
