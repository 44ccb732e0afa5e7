//! Tokens of the cache-aside wrapper. Nothing here can fail: every check
//! happened in `valid`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::valid::{KeyPart, Model, Policy};

/// The function with its body wrapped in the cache-aside call.
///
/// The user's block is moved, untouched, into an `async move` block or a
/// closure, so `return`, `?` and spans inside it keep their meaning; the
/// attributes and signature are emitted as written.
pub fn expand(model: &Model) -> TokenStream {
    let item = &model.func.item;
    let attrs = &item.attrs;
    let vis = &item.vis;
    let sig = &item.sig;
    let block = &item.block;
    let ret_span = match &sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => Span::call_site(),
    };

    let ident = sig.ident.to_string();
    // A method's id starts with its `Self` type, which only its calls can
    // name (see `FnSpec::own`).
    let method = model.name.is_none() && model.func.has_receiver();
    let id = match &model.name {
        Some(name) => quote!(#name),
        None if method => quote!(#ident),
        None => quote!(::core::concat!(::core::module_path!(), "::", #ident)),
    };
    let krate = &model.krate;
    let version = model.version;
    let ttl = optional_secs(model.ttl_secs);
    let error_ttl = optional_secs(model.error_ttl_secs);
    let stale = optional_secs(model.stale_secs);
    let lock = optional_secs(model.lock_secs);
    let drops_entries = model.companion.is_some();
    let jitter = match model.jitter_percent {
        Some(percent) => quote!(::core::option::Option::Some(#percent)),
        None => quote!(::core::option::Option::None),
    };
    let refresh = match model.refresh_beta {
        Some(beta) => quote!(::core::option::Option::Some(#beta)),
        None => quote!(::core::option::Option::None),
    };
    let stored_span = model.stored.span();
    let l1 = match model.l1_secs {
        Some(Some(secs)) => quote!(::core::option::Option::Some(
            ::core::time::Duration::from_secs(#secs)
        )),
        Some(None) => quote!(::core::option::Option::Some(::core::time::Duration::MAX)),
        None => quote!(::core::option::Option::None),
    };
    // A cache named by the attribute is checked where its path is written.
    let cache = match &model.cache {
        Some(path) => quote_spanned! {at(path.span())=>
            #krate::__private::named(&#path)
        },
        None => quote!(#krate::__private::current()),
    };
    let reserved = &model.reserved;
    let owner = if model.func.has_receiver() {
        quote!(::core::option::Option::Some(
            ::core::any::type_name::<Self>()
        ))
    } else {
        quote!(::core::option::Option::None)
    };
    // Bound once, before the key: the user's expression may borrow
    // arguments that the body moves afterwards.
    let (bind_user, user) = match &model.user {
        Some(user) => (
            quote_spanned! {at(user.span())=>
                let __cached_api_user = &(#user);
            },
            quote_spanned! {at(user.span())=>
                {
                    #[allow(unused_imports)]
                    use #krate::__private::{ViaDisplayUser as _, ViaIntegerUser as _};
                    ::core::option::Option::Some(
                        (&#krate::__private::probe_of(__cached_api_user))
                            .user_kind()
                            .user(&__cached_api_user),
                    )
                }
            },
        ),
        None => (quote!(), quote!(::core::option::Option::None)),
    };
    let writes = model
        .key
        .iter()
        .map(|part| match part {
            KeyPart::Literal(text) => quote!(__cached_api_key.literal(#text);),
            KeyPart::Value(value) => quote_spanned! {at(value.span())=>
                {
                    #[allow(unused_imports)]
                    use #krate::__private::{ViaDigest as _, ViaDisplay as _, ViaIntegerKey as _};
                    let __cached_api_part = #value;
                    (&&&#krate::__private::probe_of(__cached_api_part))
                        .key_kind()
                        .write(__cached_api_key, __cached_api_part);
                }
            },
        })
        .collect::<Vec<_>>();
    // The attribute's bound is checked against the runtime's, which keeps
    // no more tags than it: a tag past it would be dropped unread.
    let tag_count = model.tags.len();
    let tags_bound = (tag_count > 0).then(|| {
        quote! {
            const _: () = ::core::assert!(
                #tag_count <= #krate::__private::MAX_TAGS,
                "cached-api-macro allows more tags than cached-api-runtime keeps",
            );
        }
    });
    let tag_writes = model.tags.iter().map(|tag| {
        let parts = tag.iter().map(|part| match part {
            KeyPart::Literal(text) => quote!(__cached_api_key.tag_literal(#text);),
            KeyPart::Value(value) => quote_spanned! {at(value.span())=>
                __cached_api_key.tag_value(#value);
            },
        });
        quote! {
            __cached_api_key.tag();
            #(#parts)*
        }
    });
    let policy = match model.policy {
        Policy::Whole => quote!(Whole),
        Policy::OkOnly => quote!(OkOnly),
        Policy::OkAndErr => quote!(OkAndErr),
        Policy::SomeOnly => quote!(SomeOnly),
    };
    let stored = &model.stored;
    let with_l1 = model.l1_secs.map(|_| {
        quote_spanned! {at(stored_span)=>
            let __cached_api_codec = #krate::__private::with_l1::<#stored>(__cached_api_codec);
        }
    });
    let bare_codec = quote_spanned! {at(stored.span())=>
        let __cached_api_codec = {
            #[allow(unused_imports)]
            use #krate::__private::{ViaResponse as _, ViaSerde as _};
            (&#krate::__private::Probe::<#stored>::new())
                .codec_kind()
                .codec::<#stored>()
        };
    };
    // The function's type is checked where its path is written.
    let ttl_of = model.ttl_of.as_ref().map(|path| {
        quote_spanned! {at(path.span())=>
            let __cached_api_codec = __cached_api_codec.ttl_from(#path);
        }
    });
    let codec = quote_spanned! {at(stored.span())=>
        #bare_codec
        let __cached_api_codec = {
            #[allow(unused_imports)]
            use #krate::__private::{ViaBytes as _, ViaClone as _};
            (&#krate::__private::Probe::<#stored>::new())
                .copies_kind()
                .with(__cached_api_codec)
        };
        #with_l1
        #ttl_of
    };
    let call = if let Some(max_age) = model.http {
        let max_age = optional_secs(max_age);
        let body = quote_spanned!(at(ret_span)=> __cached_api_body);
        quote_spanned! {at(ret_span)=>
            let #body = async move #block;
            #krate::__private::call_http::<#krate::__private::#policy, _, _>(
                __cached_api_cache,
                &__CACHED_API_SPEC,
                __cached_api_codec,
                __cached_api_key,
                __cached_api_request,
                #max_age,
                #body,
            )
            .await
        }
    } else if model.func.is_async() {
        // With `stale` or `refresh`, the body runs in a task of its own, which
        // needs its future `Send`: an error about that points at the argument.
        let (call, span) = match model.detached {
            Some(span) => (
                quote!(call_detached::<#krate::__private::#policy, _, _, _>),
                span,
            ),
            None => (quote!(call::<#krate::__private::#policy, _, _>), ret_span),
        };
        // Named before the call, so that an error about the body's future
        // (not `Send`, with `stale`) lands on the name's span, not the
        // attribute's.
        let body = quote_spanned!(at(span)=> __cached_api_body);
        let krate = respan(krate.clone(), at(span));
        quote_spanned! {at(span)=>
            let #body = async move #block;
            #krate::__private::#call(
                __cached_api_cache,
                &__CACHED_API_SPEC,
                __cached_api_codec,
                __cached_api_key,
                #body,
            )
            .await
        }
    } else {
        let output = &sig.output;
        quote_spanned! {at(ret_span)=>
            #krate::__private::call_blocking::<#krate::__private::#policy, _, _>(
                __cached_api_cache,
                &__CACHED_API_SPEC,
                __cached_api_codec,
                __cached_api_key,
                move || #output #block,
            )
        }
    };

    let spec = quote! {
        static __CACHED_API_SPEC: #krate::__private::FnSpec =
            #krate::__private::FnSpec::new(#krate::__private::FnOptions {
                id: #id,
                method: #method,
                version: #version,
                ttl: #ttl,
                error_ttl: #error_ttl,
                jitter_percent: #jitter,
                l1: #l1,
                refresh: #refresh,
                stale: #stale,
                lock: #lock,
                drops_entries: #drops_entries,
                reserved: #reserved,
            });
    };
    let companion = model.companion.as_ref().map(|companion| {
        let name = &companion.name;
        let inputs = &companion.inputs;
        let doc = format!(
            "Drops the cached entry of [`{}`] for these arguments, in every process: calls after this returns `Ok` compute it again. Generated by `#[cached_api(invalidate = {name})]`.",
            sig.ident
        );
        let (asyncness, invalidate, wait) = if model.func.is_async() {
            (quote!(async), quote!(invalidate), quote!(.await))
        } else {
            (quote!(), quote!(invalidate_blocking), quote!())
        };
        // Lifetimes and their bounds, as the function declares them: the
        // arguments are the function's.
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        quote_spanned! {at(name.span())=>
            #[doc = #doc]
            #[allow(unused_mut, clippy::needless_lifetimes)]
            #vis #asyncness fn #name #generics (#(#inputs),*)
                -> ::core::result::Result<(), #krate::__private::Error>
                #where_clause
            {
                #spec
                // The key names the stored type's shape, as the function's does.
                #bare_codec
                let __cached_api_cache = #cache;
                let __cached_api_cache = &*__cached_api_cache;
                #bind_user
                let __cached_api_key = #krate::__private::entry_key(
                    __cached_api_cache,
                    &__CACHED_API_SPEC,
                    &__cached_api_codec,
                    #owner,
                    #user,
                    |__cached_api_key| { #(#writes)* },
                );
                #krate::__private::#invalidate(__cached_api_cache, &__CACHED_API_SPEC, __cached_api_key)
                    #wait
            }
        }
    });

    // A handler answering conditional requests takes the request's
    // validators as an extractor of its own, first, and answers with them.
    let sig = match model.http {
        Some(_) => {
            let mut sig = sig.clone();
            sig.inputs.insert(
                0,
                syn::parse_quote!(__cached_api_request: #krate::__private::Conditional),
            );
            if let syn::ReturnType::Type(_, ty) = &mut sig.output {
                let answered = &**ty;
                **ty = syn::parse_quote_spanned! {at(ret_span)=>
                    #krate::__private::Answer<#answered>
                };
            }
            std::borrow::Cow::Owned(sig)
        }
        None => std::borrow::Cow::Borrowed(sig),
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #spec
            #tags_bound
            #codec
            let __cached_api_cache = #cache;
            let __cached_api_cache = &*__cached_api_cache;
            #bind_user
            let __cached_api_key = #krate::__private::key(
                __cached_api_cache,
                &__CACHED_API_SPEC,
                &__cached_api_codec,
                #owner,
                #user,
                |__cached_api_key| { #(#writes)* #(#tag_writes)* },
            );
            #call
        }
        #companion
    }
}

/// Where generated tokens point: at the user's `span`, so that an error
/// about them lands there, but resolved as the attribute's own tokens, so
/// that the wrapper's locals see each other even when the user's tokens come
/// from a `macro_rules!` invocation (whose locals are hygienic).
fn at(span: Span) -> Span {
    Span::call_site().located_at(span)
}

/// `tokens`, every one of them at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

fn optional_secs(secs: Option<u64>) -> TokenStream {
    match secs {
        Some(secs) => quote!(::core::option::Option::Some(
            ::core::time::Duration::from_secs(#secs)
        )),
        None => quote!(::core::option::Option::None),
    }
}

/// The function as written plus the errors, so that the rest of the crate
/// (and the IDE) still sees it.
pub fn fallback(item: TokenStream, error: syn::Error) -> TokenStream {
    let mut tokens = item;
    tokens.extend(error.to_compile_error());
    tokens
}
