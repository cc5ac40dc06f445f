//! A typed view of the derive input that borrows from `syn::DeriveInput` and keeps the original
//! tokens for spans. Only structs with named fields get this far.

use syn::{Data, DeriveInput, Error, Fields, Ident, Type};

use crate::attr::{ContainerAttrs, FieldAttrs};
use crate::errors::Errors;

pub(crate) struct Input<'a> {
    pub(crate) original: &'a DeriveInput,
    pub(crate) attrs: ContainerAttrs,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: FieldAttrs,
}

const SHAPE: &str = "`#[derive(Indexed)]` needs a struct with named fields";

impl<'a> Input<'a> {
    /// The typed view, or `None` (with the error recorded) when the input is not a struct with
    /// named fields.
    pub(crate) fn from_syn(
        node: &'a DeriveInput,
        attrs: ContainerAttrs,
        cx: &mut Errors,
    ) -> Option<Self> {
        let named = match &node.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named,
                Fields::Unnamed(unnamed) => {
                    cx.push(Error::new_spanned(
                        unnamed,
                        format!("{SHAPE}; a tuple struct's fields cannot be named in attributes"),
                    ));
                    return None;
                }
                Fields::Unit => {
                    cx.push(Error::new_spanned(
                        &node.ident,
                        format!("{SHAPE}; a unit struct has no key"),
                    ));
                    return None;
                }
            },
            Data::Enum(data) => {
                cx.push(Error::new_spanned(
                    data.enum_token,
                    format!("{SHAPE}, not an enum"),
                ));
                return None;
            }
            Data::Union(data) => {
                cx.push(Error::new_spanned(
                    data.union_token,
                    format!("{SHAPE}, not a union"),
                ));
                return None;
            }
        };
        let fields = named
            .named
            .iter()
            .filter_map(|field| {
                Some(Field {
                    ident: field.ident.as_ref()?,
                    ty: &field.ty,
                    attrs: FieldAttrs::from_syn(&field.attrs, cx),
                })
            })
            .collect();
        Some(Self {
            original: node,
            attrs,
            fields,
        })
    }
}
