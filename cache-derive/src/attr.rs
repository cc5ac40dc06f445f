//! Parsing of the attributes: `#[key]`, `#[resource_version]`, `#[index(...)]` on fields and
//! `#[indexed(...)]` on the struct. Each parsed attribute keeps its tokens so that later errors
//! can point at them. Unknown keys inside our attributes are errors; attributes that are not
//! ours are left alone.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Error, ExprPath, LitStr, Meta, Path, Token, Type};

use crate::errors::Errors;

const INDEX_OPTIONS: &str = "`each`, `unique`, `name = \"...\"`, `by = path` or `value = Type`";

/// `#[indexed(...)]` on the struct.
#[derive(Default)]
pub(crate) struct ContainerAttrs {
    /// `object = manual`: the type implements `Object` by hand; no key is derived.
    pub(crate) manual_object: Option<TokenStream>,
    /// `crate = path`: where `cache_core` is, when the dependency is renamed.
    pub(crate) krate: Option<Path>,
}

/// Which part of the key a `#[key]` field is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRole {
    /// `#[key]`: the field is the key, or one part of a tuple key.
    Whole,
    /// `#[key(namespace)]`: the namespace of an `ObjectKey`.
    Namespace,
    /// `#[key(name)]`: the name of an `ObjectKey`.
    Name,
}

pub(crate) struct KeyAttr {
    pub(crate) tokens: TokenStream,
    pub(crate) role: KeyRole,
}

/// `#[index(...)]` on a field.
pub(crate) struct IndexAttr {
    pub(crate) each: Option<Span>,
    pub(crate) unique: Option<Span>,
    pub(crate) name: Option<LitStr>,
    pub(crate) by: Option<ExprPath>,
    pub(crate) value: Option<Type>,
}

#[derive(Default)]
pub(crate) struct FieldAttrs {
    pub(crate) key: Option<KeyAttr>,
    /// A `#[key...]` attribute was there but had an error (already reported).
    pub(crate) bad_key: bool,
    pub(crate) resource_version: Option<TokenStream>,
    pub(crate) index: Option<IndexAttr>,
}

fn duplicate(tokens: impl ToTokens, what: &str) -> Error {
    Error::new_spanned(tokens, format!("duplicate {what}"))
}

impl ContainerAttrs {
    pub(crate) fn from_syn(attrs: &[Attribute], cx: &mut Errors) -> Self {
        let mut out = Self::default();
        for attr in attrs {
            let path = attr.path();
            if path.is_ident("indexed") {
                cx.ok(out.parse_indexed(attr));
            } else if path.is_ident("key")
                || path.is_ident("index")
                || path.is_ident("resource_version")
            {
                cx.push(Error::new_spanned(
                    attr,
                    format!(
                        "`#[{}]` goes on a field, not on the struct",
                        path.to_token_stream()
                    ),
                ));
            }
        }
        out
    }

    fn parse_indexed(&mut self, attr: &Attribute) -> syn::Result<()> {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("object") {
                let value = meta.value()?;
                let ident: syn::Ident = value.parse()?;
                if ident != "manual" {
                    return Err(Error::new_spanned(
                        ident,
                        "expected `object = manual` (the type implements `Object` by hand)",
                    ));
                }
                if self.manual_object.is_some() {
                    return Err(duplicate(&meta.path, "`object` option"));
                }
                self.manual_object = Some(quote::quote!(#ident));
                Ok(())
            } else if meta.path.is_ident("crate") {
                let value = meta.value()?;
                let path: Path = if value.peek(LitStr) {
                    value.parse::<LitStr>()?.parse()?
                } else {
                    value.call(Path::parse_mod_style)?
                };
                if self.krate.is_some() {
                    return Err(duplicate(&meta.path, "`crate` option"));
                }
                self.krate = Some(path);
                Ok(())
            } else {
                Err(meta.error(format!(
                    "unknown `#[indexed]` option `{}`; expected `object = manual` or `crate = path`",
                    meta.path.to_token_stream()
                )))
            }
        })
    }
}

impl FieldAttrs {
    pub(crate) fn from_syn(attrs: &[Attribute], cx: &mut Errors) -> Self {
        let mut out = Self::default();
        for attr in attrs {
            let path = attr.path();
            if path.is_ident("key") {
                let parsed = cx.ok(parse_key(attr));
                out.bad_key |= parsed.is_none();
                if let Some(key) = parsed {
                    if out.key.is_some() {
                        cx.push(duplicate(attr, "`#[key]` attribute"));
                    } else {
                        out.key = Some(key);
                    }
                }
            } else if path.is_ident("resource_version") {
                if let Err(e) = attr.meta.require_path_only() {
                    cx.push(Error::new(
                        e.span(),
                        "`#[resource_version]` takes no arguments",
                    ));
                } else if out.resource_version.is_some() {
                    cx.push(duplicate(attr, "`#[resource_version]` attribute"));
                } else {
                    out.resource_version = Some(attr.to_token_stream());
                }
            } else if path.is_ident("index") {
                let parsed = parse_index(attr, cx);
                if out.index.is_some() {
                    cx.push(Error::new_spanned(
                        attr,
                        "duplicate `#[index]` attribute: a field has at most one index; \
                         index other views of the object with `by = path` on another field",
                    ));
                } else {
                    out.index = Some(parsed);
                }
            } else if path.is_ident("indexed") {
                cx.push(Error::new_spanned(
                    attr,
                    "`#[indexed(...)]` goes on the struct, not on a field",
                ));
            }
        }
        out
    }
}

fn parse_key(attr: &Attribute) -> syn::Result<KeyAttr> {
    let tokens = attr.to_token_stream();
    let role = match &attr.meta {
        Meta::Path(_) => KeyRole::Whole,
        Meta::NameValue(nv) => {
            return Err(Error::new_spanned(
                nv,
                "expected `#[key]`, `#[key(namespace)]` or `#[key(name)]`",
            ));
        }
        Meta::List(_) => {
            let mut role = None;
            attr.parse_nested_meta(|meta| {
                let this = if meta.path.is_ident("namespace") {
                    KeyRole::Namespace
                } else if meta.path.is_ident("name") {
                    KeyRole::Name
                } else {
                    return Err(meta.error(format!(
                        "unknown `#[key]` option `{}`; expected `#[key]`, `#[key(namespace)]` or `#[key(name)]`",
                        meta.path.to_token_stream()
                    )));
                };
                if role.is_some() {
                    return Err(meta.error(
                        "a field is one part of the key: `#[key(namespace)]` or `#[key(name)]`",
                    ));
                }
                role = Some(this);
                Ok(())
            })?;
            role.ok_or_else(|| {
                Error::new_spanned(
                    attr,
                    "expected `#[key]`, `#[key(namespace)]` or `#[key(name)]`",
                )
            })?
        }
    };
    Ok(KeyAttr { tokens, role })
}

/// Parses one `#[index(...)]`, recording a bad option and carrying on with the next one, so
/// that every bad option of the attribute is reported.
fn parse_index(attr: &Attribute, cx: &mut Errors) -> IndexAttr {
    let mut out = IndexAttr {
        each: None,
        unique: None,
        name: None,
        by: None,
        value: None,
    };
    match &attr.meta {
        Meta::Path(_) => return out,
        Meta::NameValue(nv) => {
            cx.push(Error::new_spanned(
                nv,
                format!("expected `#[index]` or `#[index(...)]` with {INDEX_OPTIONS}"),
            ));
            return out;
        }
        Meta::List(_) => {}
    }
    let result = attr.parse_nested_meta(|meta| {
        if let Err(e) = index_option(&mut out, &meta) {
            cx.push(e);
            skip_value(&meta)?;
        }
        Ok(())
    });
    cx.ok(result);
    out
}

fn index_option(out: &mut IndexAttr, meta: &ParseNestedMeta) -> syn::Result<()> {
    let path = &meta.path;
    let flag = |slot: &mut Option<Span>, name: &str| {
        if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
            return Err(meta.error(format!("`{name}` takes no value")));
        }
        if slot.is_some() {
            return Err(duplicate(path, &format!("`{name}` option")));
        }
        *slot = Some(path.span());
        Ok(())
    };
    if path.is_ident("each") {
        flag(&mut out.each, "each")
    } else if path.is_ident("unique") {
        flag(&mut out.unique, "unique")
    } else if path.is_ident("name") {
        let lit: LitStr = meta.value()?.parse()?;
        if out.name.is_some() {
            return Err(duplicate(path, "`name` option"));
        }
        if lit.value().is_empty() {
            return Err(Error::new_spanned(lit, "an index name cannot be empty"));
        }
        out.name = Some(lit);
        Ok(())
    } else if path.is_ident("by") {
        let by: ExprPath = meta.value()?.parse()?;
        if out.by.is_some() {
            return Err(duplicate(path, "`by` option"));
        }
        out.by = Some(by);
        Ok(())
    } else if path.is_ident("value") {
        let ty: Type = meta.value()?.parse()?;
        if out.value.is_some() {
            return Err(duplicate(path, "`value` option"));
        }
        out.value = Some(ty);
        Ok(())
    } else {
        Err(meta.error(format!(
            "unknown `#[index]` option `{}`; expected {INDEX_OPTIONS}",
            path.to_token_stream()
        )))
    }
}

/// Steps over what follows an option that was rejected (`= value` or `(...)`), so parsing can
/// go on with the next option.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    let input = meta.input;
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
    }
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<proc_macro2::TokenTree>()?;
    }
    Ok(())
}
