//! `#[derive(Indexed)]` for `cache-core`. Use it through `cache_core::Indexed`, with
//! `cache-core`'s default `derive` feature; the reference (attributes, generated items, value
//! types, diagnostics) is on that re-export.
//!
//! The crate follows thiserror's layout: `ast` gives a typed view of the input, `attr`
//! parses the attributes, `valid` checks them together and plans the expansion, `expand`
//! writes the code, and `fallback` writes what is still sound when the input is wrong, so one
//! mistake is one error. Every error is collected (not just the first) and spanned on the
//! tokens that cause it.
#![forbid(unsafe_code)]

mod ast;
mod attr;
mod errors;
mod expand;
mod fallback;
mod generics;
mod ty;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `cache_core::Indexed` (and `cache_core::Object` from `#[key]`): typed indexes from
/// field attributes, checked by the compiler. Use it through `cache_core`, with its default
/// `derive` feature; `cache_core`'s documentation of `Indexed` is the reference.
#[proc_macro_derive(Indexed, attributes(key, index, resource_version, indexed))]
pub fn derive_indexed(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
