//! `#[derive(Indexed)]` for `cache-core`. Use it through `cache_core::Indexed`, with
//! `cache-core`'s default `derive` feature; the reference (attributes, generated items, value
//! types, diagnostics) is on that re-export.
//!
//! The crate follows thiserror's layout: [`ast`] gives a typed view of the input, [`attr`]
//! parses the attributes, [`valid`] checks them together and plans the expansion, [`expand`]
//! writes the code, and [`fallback`] writes what is still sound when the input is wrong, so one
//! mistake is one error. Every error is collected (not just the first) and spanned on the
//! tokens that cause it.

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
/// field attributes, checked by the compiler.
///
/// ```text
/// #[derive(Indexed)]
/// struct Pod {
///     #[key(namespace)] namespace: String,
///     #[key(name)]      name: String,
///     #[resource_version] rv: u64,
///     #[index] node: Option<String>,           // None: not in the index
///     #[index(each)] finalizers: Vec<String>,  // one value per element
///     #[index(unique)] uid: String,            // at most one object per value
///     #[index(by = Pod::label_pairs, name = "label", value = String)]
///     labels: BTreeMap<String, String>,        // values computed from the whole object
/// }
/// ```
///
/// Field attributes: `#[key]` (several make a tuple key), `#[key(namespace)]` +
/// `#[key(name)]` (an `ObjectKey`; `#[key(name)]` alone is cluster-scoped),
/// `#[resource_version]`, and `#[index(...)]` with `each`, `unique`, `name = "..."`,
/// `by = path` and `value = Type`. Struct attribute: `#[indexed(object = manual)]` (the type
/// implements `Object` by hand) and `#[indexed(crate = path)]` (a renamed `cache-core`).
///
/// Generated: `impl Object` (from the key), `impl Indexed`, one typed handle per index
/// (`Pod::NODE: Index<Pod, String>`), the enum `PodIndex` of index names, and the extension
/// trait `PodIndexes` (`by_node(&value)`, `node_values()`, and `Option<Arc<Pod>>` for a unique
/// index) implemented for every `IndexQuery<Pod>`.
///
/// The full reference, with runnable examples, is on `cache_core::Indexed` (this derive, as
/// re-exported there) and in the `cache_core::index` module.
#[proc_macro_derive(Indexed, attributes(key, index, resource_version, indexed))]
pub fn derive_indexed(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
