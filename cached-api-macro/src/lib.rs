//! The `#[cached_api]` attribute. Use it through the `cached-api` crate,
//! whose documentation describes the arguments.
//!
//! Steps, one file each: `args` parses the attribute's syntax, `ast` gives
//! a typed view of the function, `valid` checks what they mean and gathers
//! every error, `expand` writes tokens and cannot fail.

mod args;
mod ast;
mod caller;
mod expand;
mod template;
mod valid;

use proc_macro::TokenStream;

/// Turns a `fn` or `async fn` into a cache-aside wrapper: look the result up,
/// run the body only on a miss, store what it returned.
///
/// ```rust,ignore
/// #[cached_api(key = "profile:{id}", user = user_id, ttl = "15m")]
/// async fn get_profile(user_id: u64, id: u64) -> Result<Profile, ApiError> { /* … */ }
/// ```
///
/// | argument | form | meaning |
/// |---|---|---|
/// | `key` | `"profile:{id}"` or an expression | the entry's key; `{arg}` takes an argument's `Display` form, or a digest of its `Serialize` form when it has no `Display`. Default: every argument not in `user` |
/// | `user` | an expression over the arguments | owner of the entry, dropped by `invalidate_user`. Default: a global entry |
/// | `shared` | `true` / `false` | a global entry of a function that takes the caller is meant (below) |
/// | `ttl` | seconds (`90`) or `"30s"`, `"15m"`, `"24h"`, `"7d"`; or a function `fn(&T) -> Duration` of the stored value (`ttl = token_ttl`) | time to live. Default: the cache's default. A function gives each value its own, called once per write; zero stores nothing |
/// | `error_ttl` | a duration, as a fixed `ttl` | also cache `Err`, this long (`Result` only) |
/// | `none` | `true` / `false` | also cache `None` (`Option` only) |
/// | `jitter` | `"10%"` (1% to 50%) | shorten each entry's TTL by a random share up to this, so entries written together do not expire together |
/// | `l1` | `true`, or a cap: `"30s"` | also keep decoded values in this process, served while Redis's tracking says they are current (async functions, `Clone` values) |
/// | `refresh` | `true`, or a β: `2.0` | recompute a hot entry shortly before it expires (XFetch), one computation per entry per process |
/// | `stale` | a duration, as a fixed `ttl`: `"1m"` | past its TTL an entry answers this much longer while it is recomputed, and instead of an `Err` (needs `ttl`) |
/// | `lock` | `true`, or a lease: `"10s"` | on a miss, one caller in the whole fleet computes under a lease in Redis; the others wait for its value |
/// | `invalidate` | a function name: `forget_profile` | also generate that function: it takes the arguments the key and user read and drops that call's entry in every process |
/// | `tags` | a list of templates: `["org:{org_id}", "plans"]` | put the entries in groups that `invalidate_tag("org:42")` drops at once, across functions, users and processes (at most 4) |
/// | `version` | integer | bump to orphan older entries whose meaning changed but not their shape |
/// | `name` | string | function id in keys and stats (default `module_path::fn_name`) |
/// | `http` | `true` / `false` | on an axum handler: an ETag and `Cache-Control` on its answers, and `304 Not Modified` from the entry for a client that holds it (feature `axum`) |
/// | `max_age` | a duration: `"30s"` | with `http`: how long a client may keep an answer without asking again (default: revalidate each time); at most `ttl` |
/// | `cache` | a path to a `static` that derefs to `Cache` (`cache = EU`) | use that cache instead of the process-wide one: its store, its stats, its invalidations |
/// | `crate` | a path (`crate = my_cache`) | where the `cached-api` facade is, if the dependency was renamed or re-exported |
///
/// A `Result` caches its `Ok` value, an `Option` its `Some` value, anything
/// else the whole value; the stored type must implement `serde::Serialize`
/// and `serde::Deserialize`, or be a response wrapper (`Json<T>`, `Html<T>`,
/// `(StatusCode, Json<T>)` with the `axum` feature, or any `CachedResponse`)
/// whose payload does. Mistakes in the arguments are compile errors
/// on the offending token.
///
/// A function that takes the caller must cache per caller: a parameter of
/// type `HeaderMap`, `TypedHeader`, a cookie jar or `Extension`, or whose
/// type or name has a word starting with `auth`, `user`, `claims`,
/// `session`, `principal`, `identity`, `caller`, `token`, `account`,
/// `tenant`, `jwt`, `bearer`, `cookie` or `credential`, is an error on a
/// global entry unless `key` or `user` reads it or `shared = true` says
/// the response is the same for every caller. `State`, `Path`, `Query`,
/// `Json` and `Form` parameters are never the caller.
///
/// A stored type is told apart by its shape (field names and types, enum
/// variants), traced through its `Deserialize`: two builds of a service
/// that store different shapes keep their own entries, and renaming the
/// type keeps them. `version` is the manual override.
#[proc_macro_attribute]
pub fn cached_api(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let model = ast::Function::parse(item.clone())
        .and_then(|func| Ok((syn::parse::<args::Args>(args)?, func)))
        .and_then(|(args, func)| valid::check(args, func));
    match model {
        Ok(model) => expand::expand(&model).into(),
        Err(error) => expand::fallback(item, error).into(),
    }
}
