//! Kubernetes label selectors: [`LabelSelector`], parsed from the string syntax of
//! `kubectl -l` and the API's `labelSelector` parameter, and the [`Labels`] an object exposes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;
use std::sync::Arc;

/// What a [`LabelSelector`] reads from an object: its label values by key.
///
/// Implemented for the usual label maps (`BTreeMap<String, String>`, as in Kubernetes'
/// `ObjectMeta`, and `HashMap<String, String>`), for `Option` of those, and for arrays and slices
/// of `(&str, &str)` pairs. For your own type, forward to its map:
///
/// ```
/// use std::collections::BTreeMap;
/// use cache_core::{LabelSelector, Labels};
///
/// struct Pod { labels: BTreeMap<String, String> }
/// impl Labels for Pod {
///     fn label(&self, key: &str) -> Option<&str> { self.labels.label(key) }
/// }
///
/// let pod = Pod { labels: [("app".to_owned(), "web".to_owned())].into() };
/// assert!("app=web".parse::<LabelSelector>().unwrap().matches(&pod));
/// ```
pub trait Labels {
    /// The value of the label `key`, if the object has that label.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<L: Labels> Labels for Option<L> {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_ref()?.label(key)
    }
}

impl<L: Labels + ?Sized> Labels for Arc<L> {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

impl Labels for [(&str, &str)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

impl<const N: usize> Labels for [(&str, &str); N] {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_slice().label(key)
    }
}

/// How a [`Requirement`] compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Operator {
    /// `key=value` or `key==value`: the label is present with this value.
    Equals,
    /// `key!=value`: the label is absent, or present with another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent, or present with none of the values.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
}

/// One condition of a [`LabelSelector`] on one label key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted, without duplicates. One value for `Equals` / `NotEquals`, at least one for `In` /
    /// `NotIn`, none for `Exists` / `DoesNotExist`.
    values: Vec<String>,
}

impl Requirement {
    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How the label is compared.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values compared against, sorted.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` meet this requirement (Kubernetes' rules: `!=` and `notin` match an
    /// object that lacks the label).
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(listed),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.first().map_or("", String::as_str);
        match self.operator {
            Operator::Equals => write!(f, "{key}={first}"),
            Operator::NotEquals => write!(f, "{key}!={first}"),
            Operator::In => write!(f, "{key} in ({})", self.values.join(",")),
            Operator::NotIn => write!(f, "{key} notin ({})", self.values.join(",")),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

/// A Kubernetes label selector: requirements on label keys, all of which an object must meet.
///
/// Parsed from Kubernetes' string syntax, requirements separated by commas:
///
/// | syntax | matches an object whose label `key` |
/// |---|---|
/// | `key=value`, `key==value` | is `value` |
/// | `key!=value` | is absent or not `value` |
/// | `key in (a,b)` | is `a` or `b` |
/// | `key notin (a,b)` | is absent or neither `a` nor `b` |
/// | `key` | is present |
/// | `!key` | is absent |
///
/// Keys and values are checked as Kubernetes checks them: a key is a name of at most 63
/// characters (alphanumerics, `-`, `_`, `.`, starting and ending with an alphanumeric) with an
/// optional DNS subdomain prefix and `/` (`app.kubernetes.io/name`); a value is empty or follows
/// the name rule. Bad input is a [`SelectorParseError`] that says where and what.
///
/// The empty string is [`everything`](Self::everything). `Display` writes the selector back in
/// the same syntax, requirements sorted by key and values sorted, so that it parses to an equal
/// selector.
///
/// ```
/// use cache_core::LabelSelector;
///
/// let sel: LabelSelector = "tier in (web, api), env!=prod, !canary".parse()?;
/// assert!(sel.matches(&[("tier", "web"), ("env", "dev")]));
/// assert!(!sel.matches(&[("tier", "web"), ("canary", "true")]));
/// assert!(!sel.matches(&[("tier", "db")]));
/// assert_eq!(sel.to_string(), "!canary,env!=prod,tier in (api,web)");
///
/// let err = "tier in web".parse::<LabelSelector>().unwrap_err();
/// assert_eq!(err.offset, 8);
/// assert_eq!(
///     err.to_string(),
///     "invalid label selector \"tier in web\" at offset 8: expected '(' after 'in', found \"web\"",
/// );
/// # Ok::<(), cache_core::SelectorParseError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    /// Sorted by key (stable: requirements on one key keep their order).
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector with no requirement: it matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Whether this selector has no requirement (it matches everything).
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Parses Kubernetes' selector syntax; see the [type docs](Self).
    ///
    /// # Errors
    ///
    /// [`SelectorParseError`], with the byte offset of the offending token.
    pub fn parse(selector: &str) -> Result<Self, SelectorParseError> {
        Parser::new(selector).selector()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` meet every requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorParseError;
    fn from_str(s: &str) -> Result<Self, SelectorParseError> {
        Self::parse(s)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// A label selector string that does not parse. Says where (`offset`, in bytes) and what
/// (`kind`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?} at offset {offset}: {kind}")]
pub struct SelectorParseError {
    /// The whole selector string.
    pub selector: String,
    /// The byte offset of the offending token in `selector`.
    pub offset: usize,
    /// What is wrong there.
    pub kind: SelectorErrorKind,
}

/// What is wrong in a [`SelectorParseError`]. A `found` field describes the token found: a
/// quoted word, a quoted symbol, or "the end".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorErrorKind {
    /// A requirement must start with a key (or `!` and a key).
    #[error("expected a label key, found {found}")]
    ExpectedKey {
        /// The token found.
        found: String,
    },
    /// After a key comes an operator, a `,` or the end.
    #[error("expected '=', '==', '!=', 'in', 'notin', ',' or the end after the key, found {found}")]
    ExpectedOperator {
        /// The token found.
        found: String,
    },
    /// After `=`, `==` or `!=` comes a value (or nothing, for the empty value).
    #[error("expected a label value after '{operator}', found {found}")]
    ExpectedValue {
        /// The operator.
        operator: &'static str,
        /// The token found.
        found: String,
    },
    /// After `in` or `notin` comes a parenthesised list.
    #[error("expected '(' after '{operator}', found {found}")]
    ExpectedOpenParen {
        /// The operator.
        operator: &'static str,
        /// The token found.
        found: String,
    },
    /// Inside `( ... )`, values separated by commas.
    #[error("expected a value, ',' or ')' in the value list, found {found}")]
    ExpectedListItem {
        /// The token found.
        found: String,
    },
    /// A requirement is followed by `,` or the end.
    #[error("expected ',' or the end after a requirement, found {found}")]
    ExpectedCommaOrEnd {
        /// The token found.
        found: String,
    },
    /// A key that Kubernetes would reject.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: InvalidLabel,
    },
    /// A value that Kubernetes would reject.
    #[error("invalid label value {value:?}: {reason}")]
    InvalidValue {
        /// The value.
        value: String,
        /// Why.
        reason: InvalidLabel,
    },
}

/// Why a label key or value is invalid (Kubernetes' `IsQualifiedName` and `IsValidLabelValue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidLabel {
    /// The key's name part (after the optional `prefix/`) is empty.
    #[error("the name part must not be empty")]
    EmptyName,
    /// Longer than 63 characters.
    #[error("must be no more than 63 characters (it has {len})")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Characters outside the rule.
    #[error(
        "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with \
         an alphanumeric character"
    )]
    BadCharacters,
    /// The key's prefix (before `/`) is empty.
    #[error("the prefix before '/' must not be empty")]
    EmptyPrefix,
    /// The key's prefix is longer than 253 characters.
    #[error("the prefix must be no more than 253 characters (it has {len})")]
    PrefixTooLong {
        /// Its length.
        len: usize,
    },
    /// The key's prefix is not a DNS subdomain.
    #[error(
        "the prefix must be a lowercase DNS subdomain: dot-separated parts of lowercase \
         alphanumeric characters or '-', each starting and ending with an alphanumeric character"
    )]
    BadPrefix,
    /// More than one `/`.
    #[error("a key has at most one '/', between an optional DNS subdomain prefix and the name")]
    TooManySlashes,
}

const MAX_NAME: usize = 63;
const MAX_PREFIX: usize = 253;

/// A name part or a non-empty value: `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, 63 at most.
fn check_name(s: &str) -> Result<(), InvalidLabel> {
    if s.len() > MAX_NAME {
        return Err(InvalidLabel::TooLong { len: s.len() });
    }
    let b = s.as_bytes();
    let inner_ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    let ends_ok = b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric);
    if inner_ok && ends_ok {
        Ok(())
    } else {
        Err(InvalidLabel::BadCharacters)
    }
}

/// A lowercase RFC 1123 subdomain of at most 253 characters.
fn check_prefix(s: &str) -> Result<(), InvalidLabel> {
    if s.is_empty() {
        return Err(InvalidLabel::EmptyPrefix);
    }
    if s.len() > MAX_PREFIX {
        return Err(InvalidLabel::PrefixTooLong { len: s.len() });
    }
    let part_ok = |p: &str| {
        let b = p.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(alnum)
            && b.last().is_some_and(alnum)
            && b.iter().all(|c| alnum(c) || *c == b'-')
    };
    if s.split('.').all(part_ok) {
        Ok(())
    } else {
        Err(InvalidLabel::BadPrefix)
    }
}

/// A label key: `[prefix/]name`.
pub(crate) fn check_key(key: &str) -> Result<(), InvalidLabel> {
    let mut parts = key.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => return Err(InvalidLabel::TooManySlashes),
    };
    if let Some(prefix) = prefix {
        check_prefix(prefix)?;
    }
    if name.is_empty() {
        return Err(InvalidLabel::EmptyName);
    }
    check_name(name)
}

/// A label value: empty, or a name.
pub(crate) fn check_value(value: &str) -> Result<(), InvalidLabel> {
    if value.is_empty() {
        Ok(())
    } else {
        check_name(value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Open,
    Close,
    Comma,
    /// A character that is not part of the syntax (`<`, `>`, ...), reported as such.
    Other(char),
    End,
}

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "{w:?}"),
            Token::Not => f.write_str("'!'"),
            Token::Eq => f.write_str("'='"),
            Token::DoubleEq => f.write_str("'=='"),
            Token::NotEq => f.write_str("'!='"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
            Token::Comma => f.write_str("','"),
            Token::Other(c) => write!(f, "'{c}'"),
            Token::End => f.write_str("the end"),
        }
    }
}

/// Characters that end a word.
fn is_special(c: char) -> bool {
    c.is_whitespace() || matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>')
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// The current token and its offset.
    tok: Token<'a>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        let mut p = Self {
            src,
            pos: 0,
            tok: Token::End,
            at: 0,
        };
        p.advance();
        p
    }

    /// Moves to the next token.
    fn advance(&mut self) {
        let rest = &self.src[self.pos..];
        let skipped = rest.len() - rest.trim_start().len();
        self.pos += skipped;
        self.at = self.pos;
        let rest = &self.src[self.pos..];
        let mut chars = rest.chars();
        let (tok, len) = match (chars.next(), chars.next()) {
            (None, _) => (Token::End, 0),
            (Some('!'), Some('=')) => (Token::NotEq, 2),
            (Some('!'), _) => (Token::Not, 1),
            (Some('='), Some('=')) => (Token::DoubleEq, 2),
            (Some('='), _) => (Token::Eq, 1),
            (Some('('), _) => (Token::Open, 1),
            (Some(')'), _) => (Token::Close, 1),
            (Some(','), _) => (Token::Comma, 1),
            (Some(c), _) if is_special(c) => (Token::Other(c), c.len_utf8()),
            (Some(_), _) => {
                let len = rest.find(is_special).unwrap_or(rest.len());
                (Token::Word(&rest[..len]), len)
            }
        };
        self.tok = tok;
        self.pos += len;
    }

    fn error(&self, kind: SelectorErrorKind) -> SelectorParseError {
        self.error_at(self.at, kind)
    }

    fn error_at(&self, offset: usize, kind: SelectorErrorKind) -> SelectorParseError {
        SelectorParseError {
            selector: self.src.to_owned(),
            offset,
            kind,
        }
    }

    fn found(&self) -> String {
        self.tok.to_string()
    }

    fn selector(mut self) -> Result<LabelSelector, SelectorParseError> {
        let mut requirements = Vec::new();
        if self.tok == Token::End {
            return Ok(LabelSelector::everything());
        }
        loop {
            requirements.push(self.requirement()?);
            match self.tok {
                Token::End => break,
                Token::Comma => self.advance(),
                _ => {
                    let found = self.found();
                    return Err(self.error(SelectorErrorKind::ExpectedCommaOrEnd { found }));
                }
            }
        }
        requirements.sort_by(|a: &Requirement, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    fn key(&mut self) -> Result<String, SelectorParseError> {
        let Token::Word(key) = self.tok else {
            let found = self.found();
            return Err(self.error(SelectorErrorKind::ExpectedKey { found }));
        };
        check_key(key).map_err(|reason| {
            self.error(SelectorErrorKind::InvalidKey {
                key: key.to_owned(),
                reason,
            })
        })?;
        self.advance();
        Ok(key.to_owned())
    }

    fn value(&mut self, value: &'a str, at: usize) -> Result<String, SelectorParseError> {
        check_value(value).map_err(|reason| {
            self.error_at(
                at,
                SelectorErrorKind::InvalidValue {
                    value: value.to_owned(),
                    reason,
                },
            )
        })?;
        Ok(value.to_owned())
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorParseError> {
        let negated = self.tok == Token::Not;
        if negated {
            self.advance();
        }
        let key = self.key()?;
        if negated || matches!(self.tok, Token::Comma | Token::End) {
            // `!key` stands alone: what follows is checked by the caller.
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Ok(Requirement {
                key,
                operator,
                values: Vec::new(),
            });
        }
        let (operator, symbol) = match self.tok {
            Token::Eq => (Operator::Equals, "="),
            Token::DoubleEq => (Operator::Equals, "=="),
            Token::NotEq => (Operator::NotEquals, "!="),
            Token::Word("in") => (Operator::In, "in"),
            Token::Word("notin") => (Operator::NotIn, "notin"),
            _ => {
                let found = self.found();
                return Err(self.error(SelectorErrorKind::ExpectedOperator { found }));
            }
        };
        self.advance();
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_list(symbol)?,
            _ => vec![self.exact_value(symbol)?],
        };
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// The value after `=`, `==` or `!=`; nothing before `,` or the end is the empty value.
    fn exact_value(&mut self, operator: &'static str) -> Result<String, SelectorParseError> {
        match self.tok {
            Token::Word(v) => {
                let v = self.value(v, self.at)?;
                self.advance();
                Ok(v)
            }
            Token::Comma | Token::End => Ok(String::new()),
            _ => {
                let found = self.found();
                Err(self.error(SelectorErrorKind::ExpectedValue { operator, found }))
            }
        }
    }

    /// `( v1, v2, ... )`. As in Kubernetes, a missing item is the empty value: `()` is `("")`.
    fn value_list(&mut self, operator: &'static str) -> Result<Vec<String>, SelectorParseError> {
        if self.tok != Token::Open {
            let found = self.found();
            return Err(self.error(SelectorErrorKind::ExpectedOpenParen { operator, found }));
        }
        self.advance();
        let mut values = Vec::new();
        loop {
            match self.tok {
                Token::Word(v) => {
                    values.push(self.value(v, self.at)?);
                    self.advance();
                    match self.tok {
                        Token::Comma => self.advance(),
                        Token::Close => {
                            self.advance();
                            break;
                        }
                        _ => {
                            let found = self.found();
                            return Err(self.error(SelectorErrorKind::ExpectedListItem { found }));
                        }
                    }
                }
                Token::Comma => {
                    values.push(String::new());
                    self.advance();
                }
                Token::Close => {
                    values.push(String::new());
                    self.advance();
                    break;
                }
                _ => {
                    let found = self.found();
                    return Err(self.error(SelectorErrorKind::ExpectedListItem { found }));
                }
            }
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }
}
