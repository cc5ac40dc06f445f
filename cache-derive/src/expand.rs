//! Code generation. Every path is absolute, through `cache_core::__private`, so the output means
//! the same whatever the user's module has in scope. Generated names carry the call-site span;
//! expressions that can fail to type-check carry the span of the user's tokens they come from,
//! so the compiler's error points there.

use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, Error, GenericParam, Generics, Ident, WhereClause, WherePredicate};

use crate::ast::{Field, Input};
use crate::attr::ContainerAttrs;
use crate::errors::Errors;
use crate::fallback;
use crate::generics::TypeParams;
use crate::valid::{IndexPlan, Key, Plan, Source, camel_case};

pub(crate) fn derive(node: &DeriveInput) -> TokenStream {
    let mut cx = Errors::new();
    let attrs = ContainerAttrs::from_syn(&node.attrs, &mut cx);
    let krate = match &attrs.krate {
        Some(path) => quote!(#path),
        None => quote!(::cache_core),
    };
    let Some(input) = Input::from_syn(node, attrs, &mut cx) else {
        let error = cx.finish().err().unwrap_or_else(|| {
            Error::new(
                Span::call_site(),
                "`#[derive(Indexed)]` cannot use this input",
            )
        });
        return fallback::expand(node, &krate, None, error);
    };
    let plan = input.plan(&mut cx);
    let generator = Gen::new(&input, krate);
    match cx.finish() {
        Ok(()) => generator.expand(&plan),
        Err(error) => fallback::expand(node, &generator.krate, Some((&generator, &plan)), error),
    }
}

/// What every part of the expansion needs.
pub(crate) struct Gen<'a> {
    input: &'a Input<'a>,
    krate: TokenStream,
    /// `<krate>::__private`.
    p: TokenStream,
    params: TypeParams,
}

impl<'a> Gen<'a> {
    fn new(input: &'a Input<'a>, krate: TokenStream) -> Self {
        Self {
            input,
            p: quote!(#krate::__private),
            krate,
            params: TypeParams::new(&input.original.generics),
        }
    }

    /// The path to `__private`, carrying `span`: a call through it that fails to type-check is
    /// then reported on the user's tokens alone.
    fn p_at(&self, span: Span) -> TokenStream {
        respan(&self.p, span)
    }

    pub(crate) fn ident(&self) -> &Ident {
        &self.input.original.ident
    }

    pub(crate) fn generics(&self) -> &Generics {
        &self.input.original.generics
    }

    /// The struct's where-clause plus `extra`.
    fn where_with(&self, extra: Vec<WherePredicate>) -> Option<WhereClause> {
        let mut generics = self.generics().clone();
        if !extra.is_empty() {
            generics.make_where_clause().predicates.extend(extra);
        }
        generics.where_clause
    }

    fn expand(&self, plan: &Plan) -> TokenStream {
        let object = match &plan.key {
            Some(key) => self.impl_object(key, plan.resource_version),
            None => TokenStream::new(),
        };
        let indexed = self.impl_indexed(&plan.indexes);
        let handles = self.index_handles(&plan.indexes);
        let index_enum = self.index_enum(&plan.indexes);
        let queries = self.query_trait(&plan.indexes);
        quote! {
            #object
            #indexed
            #handles
            #index_enum
            #queries
        }
    }

    /// `impl Object`, unless the type implements it by hand.
    pub(crate) fn impl_object(&self, key: &Key, rv: Option<&Field>) -> TokenStream {
        let p = &self.p;
        let mut bounds: Vec<WherePredicate> = Vec::new();
        let (key_ty, key_expr) = match key {
            Key::Manual => return TokenStream::new(),
            Key::Fields(fields) => {
                for field in fields {
                    let ty = field.ty;
                    if self.params.mentioned_in(ty) {
                        bounds.push(syn::parse_quote!(#ty: #p::IndexValue));
                    }
                }
                let clones = fields.iter().map(|field| {
                    let (ident, ty) = (at(field.ident, field.ty.span()), field.ty);
                    let p = self.p_at(ty.span());
                    quote_spanned!(ty.span()=> #p::Clone::clone(&self.#ident))
                });
                if let [field] = fields.as_slice() {
                    let ty = field.ty;
                    (quote!(#ty), quote!(#(#clones)*))
                } else {
                    let tys = fields.iter().map(|f| f.ty);
                    (quote!((#(#tys,)*)), quote!((#(#clones,)*)))
                }
            }
            Key::Object { namespace, name } => {
                let (name_ident, name_ty) = (at(name.ident, name.ty.span()), name.ty);
                if self.params.mentioned_in(name_ty) {
                    bounds.push(syn::parse_quote!(#name_ty: #p::KeyName));
                }
                let name_p = self.p_at(name_ty.span());
                let name_expr = quote_spanned!(name_ty.span()=>
                    #name_p::KeyName::key_name(&self.#name_ident)
                );
                let expr = match namespace {
                    Some(ns) => {
                        let (ns_ident, ns_ty) = (at(ns.ident, ns.ty.span()), ns.ty);
                        if self.params.mentioned_in(ns_ty) {
                            bounds.push(syn::parse_quote!(#ns_ty: #p::KeyNamespace));
                        }
                        let ns_p = self.p_at(ns_ty.span());
                        let ns_expr = quote_spanned!(ns_ty.span()=>
                            #ns_p::KeyNamespace::key_namespace(&self.#ns_ident)
                        );
                        quote!(#p::ObjectKey::new(#ns_expr, #name_expr))
                    }
                    None => quote!(#p::ObjectKey::cluster(#name_expr)),
                };
                (quote!(#p::ObjectKey), expr)
            }
        };
        let rv_fn = rv.map(|field| {
            let (ident, ty) = (at(field.ident, field.ty.span()), field.ty);
            if self.params.mentioned_in(ty) {
                bounds.push(syn::parse_quote!(#ty: #p::ResourceVersionField));
            }
            let rv_p = self.p_at(ty.span());
            let expr = quote_spanned!(ty.span()=>
                #rv_p::ResourceVersionField::resource_version(&self.#ident)
            );
            let set = quote_spanned!(ty.span()=>
                #rv_p::ResourceVersionField::set_resource_version(&mut self.#ident, rv)
            );
            quote! {
                #[inline]
                fn resource_version(&self) -> #p::Option<#p::ResourceVersion> {
                    #expr
                }

                #[inline]
                fn set_resource_version(&mut self, rv: #p::ResourceVersion) {
                    #set
                }
            }
        });
        if !self.params.is_empty() {
            bounds.push(syn::parse_quote!(Self: #p::Send + #p::Sync + 'static));
        }
        let ident = self.ident();
        let (impl_generics, ty_generics, _) = self.generics().split_for_impl();
        let where_clause = self.where_with(bounds);
        quote! {
            #[automatically_derived]
            #[allow(unused_qualifications)]
            impl #impl_generics #p::Object for #ident #ty_generics #where_clause {
                type Key = #key_ty;

                #[inline]
                fn key(&self) -> Self::Key {
                    #key_expr
                }

                #rv_fn
            }
        }
    }

    /// Bounds for the index value types that mention the struct's type parameters (the others
    /// are checked once, by `__assert_index_value`).
    fn value_bounds(&self, indexes: &[IndexPlan]) -> Vec<WherePredicate> {
        let p = &self.p;
        indexes
            .iter()
            .filter(|ix| self.params.mentioned_in(ix.value))
            .map(|ix| {
                let value = ix.value;
                syn::parse_quote!(#value: #p::IndexValue)
            })
            .collect()
    }

    fn impl_indexed(&self, indexes: &[IndexPlan]) -> TokenStream {
        let p = &self.p;
        let pushes = indexes.iter().map(|ix| {
            let value = ix.value;
            let name = &ix.name;
            let unique = ix.unique;
            let extract = self.extract(ix);
            let value_p = self.p_at(value.span());
            let assert = quote_spanned! {value.span()=>
                (&#value_p::Values::<#value>::new()).__assert_index_value();
            };
            quote! {
                #assert
                __indexers.push((&#p::Values::<#value>::new()).__indexer(
                    #name,
                    #unique,
                    |__obj: &Self, __out: &mut #p::Vec<#value>| { #extract },
                ));
            }
        });
        let mut bounds = self.value_bounds(indexes);
        if !self.params.is_empty() {
            bounds.push(syn::parse_quote!(Self: #p::Object));
        }
        let ident = self.ident();
        let (impl_generics, ty_generics, _) = self.generics().split_for_impl();
        let where_clause = self.where_with(bounds);
        let body = if indexes.is_empty() {
            quote!(#p::Indexers::new())
        } else {
            quote! {
                #[allow(unused_imports)]
                use #p::{InvalidValue as _, ValidValue as _};
                let mut __indexers = #p::Indexers::new();
                #(#pushes)*
                __indexers
            }
        };
        quote! {
            #[automatically_derived]
            #[allow(unused_qualifications)]
            impl #impl_generics #p::Indexed for #ident #ty_generics #where_clause {
                fn indexers() -> #p::Indexers<Self> {
                    #body
                }
            }
        }
    }

    /// The body of an index's value function: pushes `__obj`'s values into `__out`.
    fn extract(&self, ix: &IndexPlan) -> TokenStream {
        let value = ix.value;
        let ty = ix.field.ty;
        let field = at(ix.field.ident, ty.span());
        let p = match &ix.source {
            Source::By(path) => self.p_at(path.span()),
            _ => self.p_at(ty.span()),
        };
        match &ix.source {
            Source::Field => quote_spanned! {ty.span()=>
                #p::FieldValues::<#value>::push_values(&__obj.#field, __out);
            },
            Source::Each { in_option, derefs } => {
                let stars = (0..*derefs).map(|_| quote!(*));
                if *in_option {
                    let collection = if *derefs == 0 {
                        quote!(__c)
                    } else {
                        quote!(&*#(#stars)* __c)
                    };
                    quote_spanned! {ty.span()=>
                        if let #p::Some(__c) = &__obj.#field {
                            #p::push_each::<#value, _>(#collection, __out);
                        }
                    }
                } else {
                    quote_spanned! {ty.span()=>
                        #p::push_each::<#value, _>(&#(#stars)* __obj.#field, __out);
                    }
                }
            }
            Source::EachOpaque => quote_spanned! {ty.span()=>
                #p::push_each::<#value, _>(&__obj.#field, __out);
            },
            Source::By(path) => quote_spanned! {path.span()=>
                #p::ByValues::<#value>::push_values(#path(__obj), __out);
            },
        }
    }

    fn const_ident(ix: &IndexPlan) -> Ident {
        format_ident!("{}", ix.rust_name.to_uppercase(), span = Span::call_site())
    }

    /// The typed handles: `Pod::NODE: Index<Pod, String>`.
    fn index_handles(&self, indexes: &[IndexPlan]) -> TokenStream {
        if indexes.is_empty() {
            return TokenStream::new();
        }
        let p = &self.p;
        let vis = &self.input.original.vis;
        let consts = indexes.iter().map(|ix| {
            let const_ident = Self::const_ident(ix);
            let value = ix.value;
            let name = &ix.name;
            let mut doc = format!(
                "Typed handle to the `{name}` index of [`{}`] (`#[index]` on `{}`): queries \
                 through it are checked by the compiler.",
                self.ident().unraw(),
                ix.field.ident
            );
            if ix.unique {
                doc.push_str(" A unique index: at most one object holds each value.");
            }
            quote! {
                #[doc = #doc]
                #vis const #const_ident: #p::Index<Self, #value> = #p::Index::new(#name);
            }
        });
        let ident = self.ident();
        let (impl_generics, ty_generics, where_clause) = self.generics().split_for_impl();
        quote! {
            #[automatically_derived]
            #[allow(unused_qualifications)]
            impl #impl_generics #ident #ty_generics #where_clause {
                #(#consts)*
            }
        }
    }

    fn enum_ident(&self) -> Ident {
        format_ident!("{}Index", self.ident().unraw(), span = Span::call_site())
    }

    fn trait_ident(&self) -> Ident {
        format_ident!("{}Indexes", self.ident().unraw(), span = Span::call_site())
    }

    /// `PodIndex`: the indexes as names, for the by-name API.
    fn index_enum(&self, indexes: &[IndexPlan]) -> TokenStream {
        if indexes.is_empty() {
            return TokenStream::new();
        }
        let p = &self.p;
        let vis = &self.input.original.vis;
        let ident = self.ident().unraw();
        let enum_ident = self.enum_ident();
        let variants: Vec<Ident> = indexes
            .iter()
            .map(|ix| format_ident!("{}", camel_case(&ix.rust_name), span = Span::call_site()))
            .collect();
        let names: Vec<&String> = indexes.iter().map(|ix| &ix.name).collect();
        let uniques = indexes.iter().map(|ix| ix.unique);
        let variant_docs = indexes.iter().map(|ix| {
            format!(
                "The `{}` index (typed handle: [`{ident}::{}`]).",
                ix.name,
                Self::const_ident(ix)
            )
        });
        let count = Literal::usize_unsuffixed(indexes.len());
        let doc = format!(
            "The indexes of [`{ident}`], by name: for the by-name queries (`Cache::by_index`, \
             `Cache::index_values`, ...) and for listing them. Generated by \
             `#[derive(Indexed)]`."
        );
        let all_doc = format!("Every index of [`{ident}`], in declaration order.");
        quote! {
            #[doc = #doc]
            #[derive(
                #p::Clone, #p::Copy, #p::PartialEq, #p::Eq, #p::PartialOrd, #p::Ord, #p::Hash,
                #p::Debug
            )]
            #vis enum #enum_ident {
                #(
                    #[doc = #variant_docs]
                    #variants,
                )*
            }

            #[automatically_derived]
            #[allow(unused_qualifications)]
            impl #enum_ident {
                #[doc = #all_doc]
                #vis const ALL: [Self; #count] = [#(Self::#variants),*];

                /// The index's name, as the cache and the by-name queries know it.
                #[must_use]
                #vis const fn as_str(self) -> &'static #p::str {
                    match self {
                        #(Self::#variants => #names,)*
                    }
                }

                /// Whether at most one object may hold each value of the index.
                #[must_use]
                #vis const fn is_unique(self) -> #p::bool {
                    match self {
                        #(Self::#variants => #uniques,)*
                    }
                }
            }

            #[automatically_derived]
            #[allow(unused_qualifications)]
            impl #p::fmt::Display for #enum_ident {
                fn fmt(&self, f: &mut #p::fmt::Formatter<'_>) -> #p::fmt::Result {
                    f.write_str(self.as_str())
                }
            }

            #[automatically_derived]
            #[allow(unused_qualifications)]
            impl #p::AsRef<#p::str> for #enum_ident {
                fn as_ref(&self) -> &#p::str {
                    self.as_str()
                }
            }
        }
    }

    /// `PodIndexes`: `by_node(&value)`, `node_values()`, for every `IndexQuery<Pod>`.
    fn query_trait(&self, indexes: &[IndexPlan]) -> TokenStream {
        if indexes.is_empty() {
            return TokenStream::new();
        }
        let p = &self.p;
        let vis = &self.input.original.vis;
        let ident = self.ident();
        let shown = ident.unraw();
        let trait_ident = self.trait_ident();

        // The trait takes the struct's generic parameters (without defaults) and bounds.
        let mut trait_generics = self.generics().clone();
        for param in &mut trait_generics.params {
            match param {
                GenericParam::Type(ty) => {
                    ty.default = None;
                }
                GenericParam::Const(c) => {
                    c.default = None;
                }
                GenericParam::Lifetime(_) => {}
            }
        }
        let (_, ty_generics, _) = self.generics().split_for_impl();
        let self_ty = quote!(#ident #ty_generics);
        let mut impl_generics = trait_generics.clone();
        impl_generics
            .params
            .insert(0, syn::parse_quote!(__R: ?#p::Sized));
        let mut bounds = self.value_bounds(indexes);
        bounds.push(syn::parse_quote!(__R: #p::IndexQuery<#self_ty>));
        if !self.params.is_empty() {
            bounds.push(syn::parse_quote!(#self_ty: #p::Object));
        }
        let impl_where = {
            let mut g = impl_generics.clone();
            g.make_where_clause().predicates.extend(bounds);
            g.where_clause
        };
        let (impl_generics, _, _) = impl_generics.split_for_impl();
        let (trait_params, _, trait_where) = trait_generics.split_for_impl();
        let trait_params = quote!(#trait_params);

        let mut decls = Vec::new();
        let mut defs = Vec::new();
        for ix in indexes {
            let value = ix.value;
            let name = &ix.name;
            let handle = Self::const_ident(ix);
            let by = format_ident!("by_{}", ix.rust_name, span = Span::call_site());
            let values = format_ident!("{}_values", ix.rust_name, span = Span::call_site());
            let (by_doc, ret, call) = if ix.unique {
                (
                    format!(
                        "The object whose `{name}` is `value`, if any (`{name}` is a unique \
                         index)."
                    ),
                    quote!(#p::Option<#p::Arc<#self_ty>>),
                    quote!(__by_unique),
                )
            } else {
                (
                    format!("The objects whose `{name}` index holds `value`, ordered by key."),
                    quote!(#p::Vec<#p::Arc<#self_ty>>),
                    quote!(__by),
                )
            };
            let values_doc = format!("Every value of the `{name}` index, sorted.");
            let by_sig = quote! {
                fn #by<__L>(&self, value: __L) -> #ret
                where
                    __L: #p::Lookup<#value>,
                    #value: #p::Borrow<__L::Borrowed>
            };
            let values_sig = quote!(fn #values(&self) -> #p::Vec<#value>);
            decls.push(quote! {
                #[doc = #by_doc]
                #by_sig;
                #[doc = #values_doc]
                #values_sig;
            });
            defs.push(quote! {
                #[inline]
                #by_sig {
                    #[allow(unused_imports)]
                    use #p::{InvalidValue as _, ValidValue as _};
                    (&#p::Values::<#value>::new()).#call(self, <#self_ty>::#handle, value)
                }
                #[inline]
                #values_sig {
                    #[allow(unused_imports)]
                    use #p::{InvalidValue as _, ValidValue as _};
                    (&#p::Values::<#value>::new()).__values(self, <#self_ty>::#handle)
                }
            });
        }
        let doc = format!(
            "Typed queries on the indexes of [`{shown}`], for every reader of `{shown}`s: \
             `Cache<{shown}>`, `Snapshot<{shown}>`, an `Arc` or a reference to one, and any \
             other `IndexQuery<{shown}>`. Generated by `#[derive(Indexed)]`; bring it into scope \
             (`use ...::{trait_ident} as _;`) to call its methods."
        );
        quote! {
            #[doc = #doc]
            #vis trait #trait_ident #trait_params #trait_where {
                #(#decls)*
            }

            #[automatically_derived]
            #[allow(unused_qualifications)]
            impl #impl_generics #trait_ident #ty_generics for __R #impl_where {
                #(#defs)*
            }
        }
    }
}

fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut respanned = Group::new(group.delimiter(), respan(&group.stream(), span));
                respanned.set_span(span);
                token = TokenTree::Group(respanned);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// `ident` with `span`, so that an expression naming the field is reported on its type alone.
fn at(ident: &Ident, span: Span) -> Ident {
    let mut ident = ident.clone();
    ident.set_span(span);
    ident
}
