//! What the derive emits when the input is wrong: the errors, plus the impls that are still
//! sound, so that the user sees the errors and not a cascade of follow-on errors about `Pod`
//! not being `Object` or `Indexed` wherever the type is used (thiserror's `fallback.rs`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::expand::Gen;
use crate::valid::Plan;

pub(crate) fn expand(
    node: &DeriveInput,
    krate: &TokenStream,
    parsed: Option<(&Gen, &Plan)>,
    error: syn::Error,
) -> TokenStream {
    let error = error.into_compile_error();
    let p = quote!(#krate::__private);
    let ident = &node.ident;
    let (impl_generics, ty_generics, _) = node.generics.split_for_impl();

    // The key is sound on its own: keep the `Object` impl, so `get_by_key` and friends still
    // type-check in the user's code.
    let object = match parsed {
        Some((generator, plan)) if plan.generics_ok => match &plan.key {
            Some(key) => generator.impl_object(key, plan.resource_version),
            None => TokenStream::new(),
        },
        _ => TokenStream::new(),
    };

    // An `Indexed` impl with no indexes. The higher-ranked bound stops the compiler from
    // checking `Object` here: when the type has no `Object` impl, this impl does not apply
    // rather than reporting one more error.
    let mut generics = node.generics.clone();
    generics
        .make_where_clause()
        .predicates
        .push(syn::parse_quote!(for<'__w> #ident #ty_generics: #p::Object));
    let where_clause = &generics.where_clause;
    quote! {
        #error

        #object

        #[automatically_derived]
        #[allow(unused_qualifications)]
        impl #impl_generics #p::Indexed for #ident #ty_generics #where_clause {
            fn indexers() -> #p::Indexers<Self> {
                #p::Indexers::new()
            }
        }
    }
}
