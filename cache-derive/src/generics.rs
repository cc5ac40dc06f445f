//! Bounds only where needed: which types mention the struct's type parameters (those need a
//! where-clause predicate; the others are checked once, where they are written).

use std::collections::BTreeSet;

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Generics, Ident};

pub(crate) struct TypeParams(BTreeSet<Ident>);

impl TypeParams {
    pub(crate) fn new(generics: &Generics) -> Self {
        Self(generics.type_params().map(|p| p.ident.clone()).collect())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ty` names one of the parameters anywhere (`T`, `Vec<T>`, `T::Assoc`).
    pub(crate) fn mentioned_in(&self, ty: &impl ToTokens) -> bool {
        !self.is_empty() && self.scan(ty.to_token_stream())
    }

    fn scan(&self, tokens: TokenStream) -> bool {
        tokens.into_iter().any(|tt| match tt {
            TokenTree::Ident(ident) => self.0.contains(&ident),
            TokenTree::Group(group) => self.scan(group.stream()),
            _ => false,
        })
    }
}
