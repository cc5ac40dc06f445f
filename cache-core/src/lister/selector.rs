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
    /// `key>n`: the label is present and its value, read as a 64-bit integer, is greater than
    /// `n`. A value that is not an integer does not match.
    GreaterThan,
    /// `key<n`: the label is present and its value, read as a 64-bit integer, is less than `n`.
    /// A value that is not an integer does not match.
    LessThan,
}

/// One condition of a [`LabelSelector`] on one label key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted, without duplicates. One value for `Equals` / `NotEquals`, at least one for `In` /
    /// `NotIn`, none for `Exists` / `DoesNotExist`, one that parses as an `i64` for
    /// `GreaterThan` / `LessThan`.
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
    /// object that lacks the label; `>` and `<` match only a label whose value is an integer).
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(listed),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // The parser guarantees one integer value; a hand-built oddity matches nothing.
                let bound = self.values.first().and_then(|v| v.parse::<i64>().ok());
                let actual = value.and_then(|v| v.parse::<i64>().ok());
                match (actual, bound) {
                    (Some(a), Some(b)) if self.operator == Operator::GreaterThan => a > b,
                    (Some(a), Some(b)) => a < b,
                    _ => false,
                }
            }
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
            Operator::GreaterThan => write!(f, "{key}>{first}"),
            Operator::LessThan => write!(f, "{key}<{first}"),
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
/// | `key>n`, `key<n` | is an integer greater (less) than the integer `n` |
///
/// Keys and values are checked as Kubernetes checks them: a key is a name of at most 63
/// characters (alphanumerics, `-`, `_`, `.`, starting and ending with an alphanumeric) with an
/// optional DNS subdomain prefix and `/` (`app.kubernetes.io/name`); a value is empty or follows
/// the name rule. The value after `>` or `<` must also parse as a 64-bit integer (`x<a` is an
/// error), and a label whose value is not an integer does not match it, as in Kubernetes. Bad
/// input is a [`SelectorParseError`] that says where and what.
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
    #[error(
        "expected '=', '==', '!=', '>', '<', 'in', 'notin', ',' or the end after the key, found \
         {found}"
    )]
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
    /// After `>` or `<` comes an integer (64-bit, decimal).
    #[error("expected an integer after '{operator}', found {found}")]
    ExpectedInteger {
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
    Gt,
    Lt,
    /// A character that is not part of the syntax, reported as such.
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
            Token::Gt => f.write_str("'>'"),
            Token::Lt => f.write_str("'<'"),
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
            (Some('>'), _) => (Token::Gt, 1),
            (Some('<'), _) => (Token::Lt, 1),
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
            Token::Gt => (Operator::GreaterThan, ">"),
            Token::Lt => (Operator::LessThan, "<"),
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
            Operator::GreaterThan | Operator::LessThan => vec![self.integer_value(symbol)?],
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

    /// The value after `>` or `<`: a label value that parses as an `i64` (so `-1`, which is not
    /// a label value, is refused as Kubernetes refuses it).
    fn integer_value(&mut self, operator: &'static str) -> Result<String, SelectorParseError> {
        let Token::Word(v) = self.tok else {
            let found = self.found();
            return Err(self.error(SelectorErrorKind::ExpectedInteger { operator, found }));
        };
        if v.parse::<i64>().is_err() {
            let found = self.found();
            return Err(self.error(SelectorErrorKind::ExpectedInteger { operator, found }));
        }
        let v = self.value(v, self.at)?;
        self.advance();
        Ok(v)
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse(s: &str) -> LabelSelector {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> SelectorParseError {
        match s.parse::<LabelSelector>() {
            Ok(sel) => panic!("{s:?} should not parse, got {sel:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn good_selectors_parse_and_print_in_canonical_form() {
        let long_name = "a".repeat(63);
        let long_prefix = format!("{}.{}", "b".repeat(126), "c".repeat(126));
        let cases: Vec<(String, String)> = [
            ("", ""),
            ("   ", ""),
            ("x=a", "x=a"),
            ("x==a", "x=a"),
            ("x!=a", "x!=a"),
            ("x", "x"),
            ("!x", "!x"),
            ("x in (a,b)", "x in (a,b)"),
            ("x notin (b, a, a)", "x notin (a,b)"),
            ("x in (a)", "x in (a)"),
            // As in Kubernetes, a missing value in a list, or after '=', is the empty value.
            ("x in ()", "x in ()"),
            ("x in (,a)", "x in (,a)"),
            ("x in (a,)", "x in (,a)"),
            ("x=", "x="),
            ("x!=,y", "x!=,y"),
            ("  x = a , y in(b) ,! z ", "x=a,y in (b),!z"),
            ("z,y,x", "x,y,z"),
            ("a=b,a!=c", "a=b,a!=c"),
            (
                "example.com/app=web,app.kubernetes.io/name=db",
                "app.kubernetes.io/name=db,example.com/app=web",
            ),
            ("A_b.c-D=E_f.g-H,9=0", "9=0,A_b.c-D=E_f.g-H"),
            ("x>1", "x>1"),
            ("x < 5", "x<5"),
            ("x>007,x<9223372036854775807", "x>007,x<9223372036854775807"),
            ("b<0, a>10", "a>10,b<0"),
            // The operator words are keys and values where a key or value is expected.
            ("in=notin,notin in (in)", "in=notin,notin in (in)"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .chain([
            (
                format!("{long_name}={long_name}"),
                format!("{long_name}={long_name}"),
            ),
            (format!("{long_prefix}/x"), format!("{long_prefix}/x")),
        ])
        .collect();
        for (input, canonical) in cases {
            let sel = parse(&input);
            assert_eq!(sel.to_string(), canonical, "display of {input:?}");
            assert_eq!(parse(&canonical), sel, "round trip of {input:?}");
        }
        assert!(parse("").is_everything());
        assert_eq!(parse(""), LabelSelector::everything());
    }

    #[test]
    fn requirements_are_exposed_sorted_by_key() {
        let sel = parse("z notin (b,a),!y,x==1");
        let got: Vec<_> = sel
            .requirements()
            .iter()
            .map(|r| (r.key(), r.operator(), r.values().to_vec()))
            .collect();
        assert_eq!(
            got,
            [
                ("x", Operator::Equals, vec!["1".to_owned()]),
                ("y", Operator::DoesNotExist, vec![]),
                ("z", Operator::NotIn, vec!["a".to_owned(), "b".to_owned()]),
            ]
        );
    }

    #[test]
    fn bad_selectors_say_where_and_what() {
        use InvalidLabel as L;
        use SelectorErrorKind as K;
        let found = |s: &str| s.to_owned();
        let cases: Vec<(String, usize, SelectorErrorKind)> = vec![
            (
                "x=a,".into(),
                4,
                K::ExpectedKey {
                    found: found("the end"),
                },
            ),
            (
                ",x".into(),
                0,
                K::ExpectedKey {
                    found: found("','"),
                },
            ),
            (
                "!".into(),
                1,
                K::ExpectedKey {
                    found: found("the end"),
                },
            ),
            (
                "!!x".into(),
                1,
                K::ExpectedKey {
                    found: found("'!'"),
                },
            ),
            (
                "=a".into(),
                0,
                K::ExpectedKey {
                    found: found("'='"),
                },
            ),
            (
                "x y".into(),
                2,
                K::ExpectedOperator {
                    found: found("\"y\""),
                },
            ),
            (
                "x>=1".into(),
                2,
                K::ExpectedInteger {
                    operator: ">",
                    found: found("'='"),
                },
            ),
            (
                "x<a".into(),
                2,
                K::ExpectedInteger {
                    operator: "<",
                    found: found("\"a\""),
                },
            ),
            (
                "x > ".into(),
                4,
                K::ExpectedInteger {
                    operator: ">",
                    found: found("the end"),
                },
            ),
            (
                "x<,y".into(),
                2,
                K::ExpectedInteger {
                    operator: "<",
                    found: found("','"),
                },
            ),
            (
                "x>1.5".into(),
                2,
                K::ExpectedInteger {
                    operator: ">",
                    found: found("\"1.5\""),
                },
            ),
            (
                // Beyond i64, as Go's strconv.ParseInt refuses it.
                "x>9223372036854775808".into(),
                2,
                K::ExpectedInteger {
                    operator: ">",
                    found: found("\"9223372036854775808\""),
                },
            ),
            (
                // An integer, but not a label value (it must start with an alphanumeric).
                "x<-1".into(),
                2,
                K::InvalidValue {
                    value: "-1".into(),
                    reason: L::BadCharacters,
                },
            ),
            (
                "x>1<2".into(),
                3,
                K::ExpectedCommaOrEnd {
                    found: found("'<'"),
                },
            ),
            (
                "!x>1".into(),
                2,
                K::ExpectedCommaOrEnd {
                    found: found("'>'"),
                },
            ),
            (
                "x in (1) > 2".into(),
                9,
                K::ExpectedCommaOrEnd {
                    found: found("'>'"),
                },
            ),
            (
                "x in a".into(),
                5,
                K::ExpectedOpenParen {
                    operator: "in",
                    found: found("\"a\""),
                },
            ),
            (
                "x notin".into(),
                7,
                K::ExpectedOpenParen {
                    operator: "notin",
                    found: found("the end"),
                },
            ),
            (
                "x in (a".into(),
                7,
                K::ExpectedListItem {
                    found: found("the end"),
                },
            ),
            (
                "x in (a b)".into(),
                8,
                K::ExpectedListItem {
                    found: found("\"b\""),
                },
            ),
            (
                "x in ((a)".into(),
                6,
                K::ExpectedListItem {
                    found: found("'('"),
                },
            ),
            (
                "x=(a)".into(),
                2,
                K::ExpectedValue {
                    operator: "=",
                    found: found("'('"),
                },
            ),
            (
                "x!=!a".into(),
                3,
                K::ExpectedValue {
                    operator: "!=",
                    found: found("'!'"),
                },
            ),
            (
                "x=a=b".into(),
                3,
                K::ExpectedCommaOrEnd {
                    found: found("'='"),
                },
            ),
            (
                "x=a)".into(),
                3,
                K::ExpectedCommaOrEnd {
                    found: found("')'"),
                },
            ),
            (
                "!x=a".into(),
                2,
                K::ExpectedCommaOrEnd {
                    found: found("'='"),
                },
            ),
            (
                "x in (a) y".into(),
                9,
                K::ExpectedCommaOrEnd {
                    found: found("\"y\""),
                },
            ),
            (
                "y,-x=a".into(),
                2,
                K::InvalidKey {
                    key: "-x".into(),
                    reason: L::BadCharacters,
                },
            ),
            (
                "x_=a".into(),
                0,
                K::InvalidKey {
                    key: "x_".into(),
                    reason: L::BadCharacters,
                },
            ),
            (
                "é=a".into(),
                0,
                K::InvalidKey {
                    key: "é".into(),
                    reason: L::BadCharacters,
                },
            ),
            (
                "a/b/c=d".into(),
                0,
                K::InvalidKey {
                    key: "a/b/c".into(),
                    reason: L::TooManySlashes,
                },
            ),
            (
                "/x".into(),
                0,
                K::InvalidKey {
                    key: "/x".into(),
                    reason: L::EmptyPrefix,
                },
            ),
            (
                "example.com/".into(),
                0,
                K::InvalidKey {
                    key: "example.com/".into(),
                    reason: L::EmptyName,
                },
            ),
            (
                "Example.com/x".into(),
                0,
                K::InvalidKey {
                    key: "Example.com/x".into(),
                    reason: L::BadPrefix,
                },
            ),
            (
                "a..b/x".into(),
                0,
                K::InvalidKey {
                    key: "a..b/x".into(),
                    reason: L::BadPrefix,
                },
            ),
            (
                "-a.b/x".into(),
                0,
                K::InvalidKey {
                    key: "-a.b/x".into(),
                    reason: L::BadPrefix,
                },
            ),
            (
                "x=-a".into(),
                2,
                K::InvalidValue {
                    value: "-a".into(),
                    reason: L::BadCharacters,
                },
            ),
            (
                "x in (a,b.)".into(),
                8,
                K::InvalidValue {
                    value: "b.".into(),
                    reason: L::BadCharacters,
                },
            ),
            (
                "x=a b".into(),
                4,
                K::ExpectedCommaOrEnd {
                    found: found("\"b\""),
                },
            ),
        ];
        for (input, offset, kind) in cases {
            let e = err(&input);
            assert_eq!((e.offset, &e.kind), (offset, &kind), "for {input:?}");
            assert_eq!(e.selector, input);
        }

        let long = "v".repeat(64);
        let e = err(&format!("x={long}"));
        assert_eq!(
            (e.offset, e.kind),
            (
                2,
                K::InvalidValue {
                    value: long.clone(),
                    reason: L::TooLong { len: 64 }
                }
            )
        );
        let e = err(&long);
        assert_eq!(
            e.kind,
            K::InvalidKey {
                key: long,
                reason: L::TooLong { len: 64 }
            }
        );
        let prefix = "p".repeat(254);
        let e = err(&format!("{prefix}/x"));
        assert_eq!(
            e.kind,
            K::InvalidKey {
                key: format!("{prefix}/x"),
                reason: L::PrefixTooLong { len: 254 }
            }
        );
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            err("app in web").to_string(),
            "invalid label selector \"app in web\" at offset 7: expected '(' after 'in', found \"web\""
        );
        assert_eq!(
            err("app=web,").to_string(),
            "invalid label selector \"app=web,\" at offset 8: expected a label key, found the end"
        );
        assert_eq!(
            err("app web").to_string(),
            "invalid label selector \"app web\" at offset 4: expected '=', '==', '!=', '>', '<', \
             'in', 'notin', ',' or the end after the key, found \"web\""
        );
        assert_eq!(
            err("replicas<a").to_string(),
            "invalid label selector \"replicas<a\" at offset 9: expected an integer after '<', \
             found \"a\""
        );
        assert_eq!(
            err("Foo.io/app=x").to_string(),
            "invalid label selector \"Foo.io/app=x\" at offset 0: invalid label key \
             \"Foo.io/app\": the prefix must be a lowercase DNS subdomain: dot-separated parts \
             of lowercase alphanumeric characters or '-', each starting and ending with an \
             alphanumeric character"
        );
        assert_eq!(
            err("app=we b").to_string(),
            "invalid label selector \"app=we b\" at offset 7: expected ',' or the end after a \
             requirement, found \"b\""
        );
        assert_eq!(
            err("app=-web").to_string(),
            "invalid label selector \"app=-web\" at offset 4: invalid label value \"-web\": must \
             consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character"
        );
    }

    #[test]
    fn matching_truth_tables() {
        let label_sets: [&[(&str, &str)]; 6] = [
            &[],
            &[("x", "a")],
            &[("x", "b")],
            &[("x", "")],
            &[("y", "a")],
            &[("x", "a"), ("y", "b")],
        ];
        let table: [(&str, [bool; 6]); 12] = [
            ("", [true, true, true, true, true, true]),
            ("x=a", [false, true, false, false, false, true]),
            ("x==a", [false, true, false, false, false, true]),
            ("x!=a", [true, false, true, true, true, false]),
            ("x in (a,b)", [false, true, true, false, false, true]),
            ("x notin (a,b)", [true, false, false, true, true, false]),
            ("x", [false, true, true, true, false, true]),
            ("!x", [true, false, false, false, true, false]),
            ("x=", [false, false, false, true, false, false]),
            ("x in ()", [false, false, false, true, false, false]),
            ("x=a,y=b", [false, false, false, false, false, true]),
            ("x,!y", [false, true, true, true, false, false]),
        ];
        for (selector, expected) in table {
            let sel = parse(selector);
            let got: Vec<bool> = label_sets.iter().map(|l| sel.matches(*l)).collect();
            assert_eq!(got, expected, "selector {selector:?}");
        }
    }

    #[test]
    fn greater_and_less_than_compare_integers_and_miss_absent_or_non_integer_labels() {
        let label_sets: [&[(&str, &str)]; 9] = [
            &[],
            &[("x", "1")],
            &[("x", "2")],
            &[("x", "5")],
            &[("x", "-3")],
            &[("x", "+7")],
            &[("x", "a")],
            &[("x", "")],
            &[("y", "3")],
        ];
        let table: [(&str, [bool; 9]); 5] = [
            (
                "x>1",
                [false, false, true, true, false, true, false, false, false],
            ),
            (
                "x<5",
                [false, true, true, false, true, false, false, false, false],
            ),
            (
                "x>1,x<5",
                [false, false, true, false, false, false, false, false, false],
            ),
            (
                "x>01",
                [false, false, true, true, false, true, false, false, false],
            ),
            (
                "x<0",
                [false, false, false, false, true, false, false, false, false],
            ),
        ];
        for (selector, expected) in table {
            let sel = parse(selector);
            let got: Vec<bool> = label_sets.iter().map(|l| sel.matches(*l)).collect();
            assert_eq!(got, expected, "selector {selector:?}");
        }
        let sel = parse("x>7");
        let r = &sel.requirements()[0];
        assert_eq!(
            (r.operator(), r.values()),
            (Operator::GreaterThan, &["7".to_owned()][..])
        );
        // The extremes of i64 do not overflow.
        assert!(parse("x<9223372036854775807").matches(&[("x", "-9223372036854775808")]));
        assert!(!parse("x>9223372036854775807").matches(&[("x", "9223372036854775807")]));
    }

    #[test]
    fn label_sources() {
        let sel = parse("app=web,!canary");
        let btree: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
        let hash: HashMap<String, String> = btree.clone().into_iter().collect();
        assert!(sel.matches(&btree));
        assert!(sel.matches(&hash));
        assert!(sel.matches(&Some(btree.clone())));
        assert!(sel.matches(&Arc::new(btree)));
        // No labels at all.
        assert!(!sel.matches(&None::<BTreeMap<String, String>>));
        assert!(parse("!app").matches(&None::<BTreeMap<String, String>>));
    }

    /// A requirement as written, and whether it matches a label value (`None`: absent).
    #[derive(Debug, Clone)]
    struct Spec {
        key: String,
        op: u8,
        values: Vec<String>,
    }

    impl Spec {
        fn render(&self, pad: &str) -> String {
            let (k, v) = (&self.key, &self.values);
            match self.op {
                0 => format!("{k}{pad}={pad}{}", v[0]),
                1 => format!("{k}{pad}=={pad}{}", v[0]),
                2 => format!("{k}{pad}!={pad}{}", v[0]),
                3 => format!("{k} in{pad}({})", v.join(&format!("{pad},{pad}"))),
                4 => format!("{k} notin{pad}({})", v.join(",")),
                5 => k.clone(),
                6 => format!("!{pad}{k}"),
                7 => format!("{k}{pad}>{pad}{}", v[0]),
                _ => format!("{k}{pad}<{pad}{}", v[0]),
            }
        }

        fn matches(&self, value: Option<&str>) -> bool {
            let listed = value.is_some_and(|x| self.values.iter().any(|v| v == x));
            match self.op {
                0 | 1 | 3 => listed,
                2 | 4 => !listed,
                5 => value.is_some(),
                6 => value.is_none(),
                op => {
                    let bound: i64 = self.values[0].parse().expect("integer bound");
                    match value.and_then(|v| v.parse::<i64>().ok()) {
                        Some(n) if op == 7 => n > bound,
                        Some(n) => n < bound,
                        None => false,
                    }
                }
            }
        }
    }

    fn spec() -> impl Strategy<Value = Spec> {
        let key = prop::sample::select(vec!["app", "tier", "example.com/owner", "x.y-z_1"]);
        let value = prop::sample::select(vec!["", "web", "db", "a.b-c_9", "0", "3", "10"]);
        let integer = prop::sample::select(vec!["0", "3", "007", "10"]);
        (key, 0u8..9, prop::collection::vec(value, 1..4), integer).prop_map(
            |(k, op, mut values, n)| {
                if op < 3 {
                    values.truncate(1); // '=', '==' and '!=' take one value
                }
                if op >= 7 {
                    values = vec![n]; // '>' and '<' take one integer
                }
                Spec {
                    key: k.to_owned(),
                    op,
                    values: values.into_iter().map(str::to_owned).collect(),
                }
            },
        )
    }

    proptest! {
        #[test]
        fn any_written_selector_parses_matches_like_the_model_and_round_trips(
            specs in prop::collection::vec(spec(), 0..5),
            pad in prop::sample::select(vec!["", " ", "  "]),
            labels in prop::collection::btree_map(
                prop::sample::select(vec!["app", "tier", "example.com/owner", "other"]),
                prop::sample::select(vec!["", "web", "db", "a.b-c_9", "zzz", "0", "3", "5", "10", "-4"]),
                0..4,
            ),
        ) {
            let text = specs.iter().map(|s| s.render(pad)).collect::<Vec<_>>().join(&format!("{pad},{pad}"));
            let sel = parse(&text);
            let labels: BTreeMap<String, String> =
                labels.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            let model = specs.iter().all(|s| s.matches(labels.get(&s.key).map(String::as_str)));
            prop_assert_eq!(sel.matches(&labels), model, "{}", text);
            let printed = sel.to_string();
            prop_assert_eq!(parse(&printed), sel.clone(), "{} printed as {}", text, printed);
            prop_assert_eq!(parse(&printed).to_string(), printed);
        }

        #[test]
        fn arbitrary_input_never_panics(s in ".{0,40}") {
            let _ = s.parse::<LabelSelector>();
        }

        #[test]
        fn selector_like_noise_never_panics(s in "[a-z0-9!=(), /.<>-]{0,30}") {
            if let Ok(sel) = s.parse::<LabelSelector>() {
                prop_assert_eq!(parse(&sel.to_string()), sel);
            }
        }
    }
}
