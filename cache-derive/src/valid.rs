//! Checks that need more than one attribute at a time, and the plan the expansion follows: the
//! key, the resource version, and each index with its name and value type.
//!
//! Every problem is recorded (not just the first), each spanned on the tokens that cause it.
//! A part of the plan that has an error is left out, so the fallback can still emit what is
//! sound (for example the `Object` impl when only an index is wrong).

use std::collections::BTreeMap;

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Error, ExprPath, GenericParam, Ident, Type};

use crate::ast::{Field, Input};
use crate::attr::KeyRole;
use crate::errors::Errors;
use crate::ty;

pub(crate) struct Plan<'a> {
    /// The generics are usable (no lifetime parameters).
    pub(crate) generics_ok: bool,
    /// `None` when the key has an error.
    pub(crate) key: Option<Key<'a>>,
    /// The `#[resource_version]` field, if there is exactly one.
    pub(crate) resource_version: Option<&'a Field<'a>>,
    pub(crate) indexes: Vec<IndexPlan<'a>>,
}

pub(crate) enum Key<'a> {
    /// `#[indexed(object = manual)]`: no `Object` impl is generated.
    Manual,
    /// One `#[key]` field (the key is its type) or several (a tuple, in field order).
    Fields(Vec<&'a Field<'a>>),
    /// `#[key(namespace)]` and `#[key(name)]`, or `#[key(name)]` alone: an `ObjectKey`.
    Object {
        namespace: Option<&'a Field<'a>>,
        name: &'a Field<'a>,
    },
}

pub(crate) struct IndexPlan<'a> {
    pub(crate) field: &'a Field<'a>,
    /// The index's name, as the by-name API and the cache know it.
    pub(crate) name: String,
    /// The root of the generated Rust names: the index name when it is a snake_case
    /// identifier, else the field's name (without `r#`).
    pub(crate) rust_name: String,
    pub(crate) unique: bool,
    pub(crate) value: &'a Type,
    pub(crate) source: Source<'a>,
}

pub(crate) enum Source<'a> {
    /// `#[index]`: the field's value (`Option`'s content).
    Field,
    /// `#[index(each)]`.
    Each { in_option: bool, derefs: usize },
    /// `#[index(each, value = Type)]` on a type the derive cannot see into.
    EachOpaque,
    /// `#[index(by = path)]`.
    By(&'a ExprPath),
}

impl<'a> Input<'a> {
    pub(crate) fn plan(&'a self, cx: &mut Errors) -> Plan<'a> {
        Plan {
            generics_ok: self.check_generics(cx),
            key: self.key(cx),
            resource_version: self.resource_version(cx),
            indexes: self.indexes(cx),
        }
    }

    fn check_generics(&self, cx: &mut Errors) -> bool {
        let mut ok = true;
        for param in &self.original.generics.params {
            if let GenericParam::Lifetime(lifetime) = param {
                cx.push(Error::new_spanned(
                    lifetime,
                    "an `Indexed` type is stored in a cache and must be `'static`: \
                     lifetime parameters are not supported",
                ));
                ok = false;
            }
        }
        ok
    }

    fn key(&'a self, cx: &mut Errors) -> Option<Key<'a>> {
        let keyed: Vec<&Field> = self
            .fields
            .iter()
            .filter(|f| f.attrs.key.is_some())
            .collect();
        if self.attrs.manual_object.is_some() {
            let mut ok = true;
            for field in &keyed {
                let key = field.attrs.key.as_ref().map(|k| &k.tokens);
                cx.push(Error::new_spanned(
                    key,
                    "`#[key]` derives `Object`, but `#[indexed(object = manual)]` says it is \
                     implemented by hand; remove one of them",
                ));
                ok = false;
            }
            return ok.then_some(Key::Manual);
        }
        let Some(first) = keyed.first() else {
            if self.fields.iter().any(|f| f.attrs.bad_key) {
                // The key attribute itself is wrong, and that error says so.
                return None;
            }
            cx.push(Error::new_spanned(
                &self.original.ident,
                "`#[derive(Indexed)]` needs a key: mark the key field with `#[key]` (several \
                 fields make a tuple key; `#[key(namespace)]` and `#[key(name)]` make an \
                 `ObjectKey`), or add `#[indexed(object = manual)]` when `Object` is \
                 implemented by hand",
            ));
            return None;
        };
        let role_of = |f: &Field| f.attrs.key.as_ref().map_or(KeyRole::Whole, |k| k.role);
        let tokens_of = |f: &Field| f.attrs.key.as_ref().map(|k| k.tokens.clone());
        if role_of(first) == KeyRole::Whole {
            let mut ok = true;
            for field in keyed.iter().filter(|f| role_of(f) != KeyRole::Whole) {
                cx.push(Error::new_spanned(
                    tokens_of(field),
                    "`#[key(namespace)]`/`#[key(name)]` cannot be mixed with a plain `#[key]`: \
                     use one form for the whole key",
                ));
                ok = false;
            }
            return ok.then_some(Key::Fields(keyed));
        }
        let mut ok = true;
        let mut namespace = None;
        let mut name = None;
        for field in &keyed {
            let (slot, what) = match role_of(field) {
                KeyRole::Whole => {
                    cx.push(Error::new_spanned(
                        tokens_of(field),
                        "a plain `#[key]` cannot be mixed with `#[key(namespace)]`/`#[key(name)]`: \
                         use one form for the whole key",
                    ));
                    ok = false;
                    continue;
                }
                KeyRole::Namespace => (&mut namespace, "namespace"),
                KeyRole::Name => (&mut name, "name"),
            };
            if slot.is_some() {
                cx.push(Error::new_spanned(
                    tokens_of(field),
                    format!("duplicate `#[key({what})]`: the key has one {what}"),
                ));
                ok = false;
            } else {
                *slot = Some(*field);
            }
        }
        match (name, namespace) {
            (Some(name), namespace) if ok => Some(Key::Object { namespace, name }),
            (None, Some(namespace)) => {
                cx.push(Error::new_spanned(
                    tokens_of(namespace),
                    "`#[key(namespace)]` needs a `#[key(name)]` field as well",
                ));
                None
            }
            _ => None,
        }
    }

    fn resource_version(&'a self, cx: &mut Errors) -> Option<&'a Field<'a>> {
        let mut found: Option<&Field> = None;
        for field in &self.fields {
            let Some(tokens) = &field.attrs.resource_version else {
                continue;
            };
            if self.attrs.manual_object.is_some() {
                cx.push(Error::new_spanned(
                    tokens,
                    "`#[resource_version]` feeds the derived `Object` impl, but \
                     `#[indexed(object = manual)]` says it is implemented by hand",
                ));
            } else if found.is_some() {
                cx.push(Error::new_spanned(
                    tokens,
                    "duplicate `#[resource_version]`: an object has one resource version",
                ));
            } else {
                found = Some(field);
            }
        }
        found
    }

    fn indexes(&'a self, cx: &mut Errors) -> Vec<IndexPlan<'a>> {
        let mut plans = Vec::new();
        // Index name -> the field that took it first.
        let mut names: BTreeMap<String, &Ident> = BTreeMap::new();
        // Generated enum variant -> the field that took it first.
        let mut variants: BTreeMap<String, &Ident> = BTreeMap::new();
        for field in &self.fields {
            let Some(attr) = &field.attrs.index else {
                continue;
            };
            let (name, name_span): (String, Span) = match &attr.name {
                Some(lit) => (lit.value(), lit.span()),
                None => (field.ident.unraw().to_string(), field.ident.span()),
            };
            // The Rust names follow the index name when it is a snake_case identifier
            // (`name = "label"` gives `by_label`), the field otherwise (`name = "spec.nodeName"`).
            let rust_name = if is_snake_ident(&name) {
                name.clone()
            } else {
                field.ident.unraw().to_string()
            };
            let mut ok = true;
            if let Some(first) = names.get(&name) {
                cx.push(Error::new(
                    name_span,
                    format!(
                        "duplicate index name `{name}`: the index on field `{first}` has it already"
                    ),
                ));
                ok = false;
            } else {
                names.insert(name.clone(), field.ident);
            }
            let variant = camel_case(&rust_name);
            if ok && RESERVED.contains(&rust_name.as_str()) {
                cx.push(Error::new(
                    name_span,
                    format!(
                        "an index named `{rust_name}` would generate `by_{rust_name}` or \
                         `{rust_name}_values`, which `Cache` and `Snapshot` already have; \
                         name it otherwise with `name = \"...\"`"
                    ),
                ));
                ok = false;
            }
            if !ok {
                // A duplicate name would also collide here; it is reported once.
            } else if !variant.starts_with(char::is_alphabetic) || variant == "Self" {
                cx.push(Error::new_spanned(
                    field.ident,
                    format!(
                        "cannot name an index enum variant after field `{}`; rename it",
                        field.ident
                    ),
                ));
                ok = false;
            } else if let Some(first) = variants.get(&variant) {
                cx.push(Error::new(
                    name_span,
                    format!(
                        "the indexes on fields `{first}` and `{}` would both be \
                         `{}Index::{variant}`; rename one",
                        field.ident,
                        self.original.ident.unraw()
                    ),
                ));
                ok = false;
            } else {
                variants.insert(variant, field.ident);
            }
            let source = match (&attr.by, attr.each) {
                (Some(_), Some(each)) => {
                    cx.push(Error::new(
                        each,
                        "`each` and `by` cannot be combined: a `by` function returns every \
                         value itself",
                    ));
                    None
                }
                (Some(by), None) => Some((
                    Source::By(by),
                    value_or_field_type(attr.value.as_ref(), field.ty),
                )),
                (None, Some(_)) => match (ty::each(field.ty), &attr.value) {
                    (Some(each), value) => Some((
                        Source::Each {
                            in_option: each.in_option,
                            derefs: each.derefs,
                        },
                        value.as_ref().unwrap_or(each.element),
                    )),
                    (None, Some(value)) => Some((Source::EachOpaque, value)),
                    (None, None) => {
                        cx.push(Error::new_spanned(
                            field.ty,
                            format!(
                                "`#[index(each)]` needs a collection field: `Vec<T>`, \
                                 `VecDeque<T>`, `[T; N]`, a slice, `HashSet<T>`, `BTreeSet<T>`, \
                                 or the keys of `HashMap<K, V>`/`BTreeMap<K, V>` (also inside \
                                 `Option`, `Box` or `Arc`), not `{}`; for a type alias, name \
                                 the element type with `value = Type`",
                                field.ty.to_token_stream()
                            ),
                        ));
                        None
                    }
                },
                (None, None) => Some((
                    Source::Field,
                    value_or_field_type(attr.value.as_ref(), field.ty),
                )),
            };
            if let (Some((source, value)), true) = (source, ok) {
                plans.push(IndexPlan {
                    field,
                    name,
                    rust_name,
                    unique: attr.unique.is_some(),
                    value,
                    source,
                });
            }
        }
        plans
    }
}

/// Rust names whose `by_<name>` or `<name>_values` are methods of `Cache` or `Snapshot`: the
/// generated method would be shadowed on them.
const RESERVED: &[&str] = &["index", "index_value", "iter", "unique"];

/// The value type of a plain or `by` index: `value = Type`, else the field's type, or `X` for an
/// `Option<X>` field.
fn value_or_field_type<'a>(value: Option<&'a Type>, field: &'a Type) -> &'a Type {
    value.unwrap_or_else(|| ty::option_inner(field).unwrap_or(field))
}

/// `label`, `node_name`: usable as the root of method and constant names.
fn is_snake_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.chars().any(|c| c.is_ascii_lowercase())
}

/// `node_name` -> `NodeName`.
pub(crate) fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::camel_case;

    #[test]
    fn camel_case_of_field_names() {
        assert_eq!(camel_case("node"), "Node");
        assert_eq!(camel_case("node_name"), "NodeName");
        assert_eq!(camel_case("_private"), "Private");
        assert_eq!(camel_case("owner_uid_2"), "OwnerUid2");
    }

    #[test]
    fn which_index_names_become_rust_names() {
        use super::is_snake_ident;
        assert!(is_snake_ident("label"));
        assert!(is_snake_ident("node_name2"));
        assert!(!is_snake_ident("spec.nodeName"));
        assert!(!is_snake_ident("Label"));
        assert!(!is_snake_ident("2nd"));
        assert!(!is_snake_ident("__"));
        assert!(!is_snake_ident("a-b"));
    }
}
