//! Runtime of [`cached-api`](https://docs.rs/cached-api): stores, keys,
//! codec, single-flight, invalidation and stats behind the `#[cached_api]`
//! attribute. Depend on the `cached-api` crate, which re-exports this one.
//!
//! Calls flow one way: generated code → [`__private`] → [`Cache`] (key,
//! single-flight, codec, stats) → a backend (memory or Redis) that moves
//! bytes under keys. `docs/ARCHITECTURE.md` in the repository explains the
//! key layout, the generation protocol and the failure policy.

mod backend;
mod breaker;
mod cache;
mod clock;
mod codec;
pub mod config;
mod error;
mod flight;
mod footprint;
mod global;
#[cfg(feature = "axum")]
pub mod http;
mod invalidation;
mod key;
mod l1;
mod policy;
mod probe;
mod response;
mod scope;
mod shape;
mod spec;
mod stats;

pub use crate::cache::Cache;
pub use crate::clock::Clock;
pub use crate::config::CacheBuilder;
pub use crate::error::{Error, StoreError};
pub use crate::global::{
    blocking, global, invalidate_function, invalidate_tag, invalidate_user, set_global, stats,
    status,
};
pub use crate::response::CachedResponse;
pub use crate::stats::{BreakerStats, Counts, Stats, TrackingStats};

/// What `#[cached_api]` expands to calls. Not a public API: it changes
/// whenever the macro does.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    use crate::Cache;
    pub use crate::Error;
    pub use crate::codec::{L1Value, TypedCodec};
    pub use crate::global::global;
    pub use crate::key::{EntryKey, Integer, KeyWriter, MAX_TAGS, UserId};
    pub use crate::policy::{CacheValue, OkAndErr, OkOnly, Policy, SomeOnly, Whole};
    pub use crate::probe::{
        CloneCopies, DigestKey, DisplayKey, DisplayUser, IntegerKey, IntegerUser, KeyInteger,
        KeyValue, NoCopies, Probe, ResponseCodec, SerdeCodec, UserDisplay, ViaBytes, ViaClone,
        ViaDigest, ViaDisplay, ViaDisplayUser, ViaIntegerKey, ViaIntegerUser, ViaResponse,
        ViaSerde, probe_of,
    };
    pub use crate::scope::CallCache;
    pub use crate::spec::{FnOptions, FnSpec};

    /// What `cache = …` may name: a `static` whose type derefs to [`Cache`].
    #[diagnostic::on_unimplemented(
        message = "`cache = …` must name a `static` whose type derefs to `cached_api::Cache`, not `{Self}`",
        label = "not a `Cache`",
        note = "for example `static EU: LazyLock<Cache> = LazyLock::new(|| Cache::builder().redis_url(\"redis://eu-cache:6379\").build().expect(\"EU cache\"));`"
    )]
    pub trait NamedCache {
        fn cache(&self) -> &Cache;
    }

    impl<C: std::ops::Deref<Target = Cache>> NamedCache for C {
        fn cache(&self) -> &Cache {
            self
        }
    }

    impl NamedCache for Cache {
        fn cache(&self) -> &Cache {
            self
        }
    }

    /// The cache a call of a function that names one with `cache = …`
    /// uses: the scope's, if it runs in one, else that one.
    pub fn named<C: NamedCache + ?Sized>(cache: &'static C) -> CallCache {
        crate::scope::current(|| cache.cache())
    }

    /// The cache a call uses: the scope's, if it runs in one, else the
    /// process-wide one.
    pub fn current() -> CallCache {
        crate::scope::current(global)
    }

    /// The codec of a function with `l1`; the bound names a type that is
    /// not `Clone` where the function's return type is written.
    pub fn with_l1<T: L1Value>(codec: TypedCodec<T>) -> TypedCodec<T> {
        codec.with_copies()
    }

    /// The key of one call; `None` when the cache is disabled or an
    /// argument could not be serialized into it. `owner` is
    /// `type_name::<Self>()` for methods.
    pub fn key<S>(
        cache: &Cache,
        spec: &'static FnSpec,
        codec: &TypedCodec<S>,
        owner: Option<&str>,
        user: Option<UserId<'_>>,
        write_key: impl FnOnce(&mut KeyWriter),
    ) -> Option<EntryKey> {
        cache.key(spec, codec, owner, user, write_key)
    }

    /// The body of an async `#[cached_api]` function.
    pub async fn call<P: Policy<R, Stored = S>, R, S>(
        cache: &Cache,
        spec: &'static FnSpec,
        codec: TypedCodec<S>,
        key: Option<EntryKey>,
        compute: impl Future<Output = R>,
    ) -> R {
        match key {
            Some(key) => cache.call::<P, R, _>(spec, codec, key, compute, None).await,
            None => compute.await,
        }
    }

    /// The key of one call, for an `invalidate = …` companion; `None` if
    /// an argument could not be written into it (such a call is never
    /// cached). Unlike [`key`], given even when the cache is disabled.
    pub fn entry_key<S>(
        cache: &Cache,
        spec: &'static FnSpec,
        codec: &TypedCodec<S>,
        owner: Option<&str>,
        user: Option<UserId<'_>>,
        write_key: impl FnOnce(&mut KeyWriter),
    ) -> Option<EntryKey> {
        cache.entry_key(spec, codec, owner, user, write_key)
    }

    /// The body of an `invalidate = …` companion of an async function:
    /// drops the entry at `key` in every process.
    pub async fn invalidate(
        cache: &Cache,
        spec: &'static FnSpec,
        key: Option<EntryKey>,
    ) -> Result<(), Error> {
        match key {
            Some(key) => cache.invalidate_entry(spec, &key).await,
            None => Ok(()),
        }
    }

    /// [`invalidate`] for sync functions.
    pub fn invalidate_blocking(
        cache: &Cache,
        spec: &'static FnSpec,
        key: Option<EntryKey>,
    ) -> Result<(), Error> {
        match key {
            Some(key) => cache.invalidate_entry_blocking(spec, &key),
            None => Ok(()),
        }
    }

    /// The future of an async function with `stale` or `refresh` whose
    /// arguments are all owned: the attribute has its stale and due
    /// entries recomputed in a task of their own, which needs it `Send`.
    #[diagnostic::on_unimplemented(
        message = "with `stale` or `refresh`, this async function's entries are recomputed in a background task, so the future of its body must be `Send + 'static`",
        label = "not `Send + 'static`",
        note = "a value that is not `Send` (an `Rc`, a `RefCell` borrow, a `std::sync::MutexGuard`) must not be held across an `.await` in the body"
    )]
    pub trait Detachable<R>: Future<Output = R> + Send + 'static {}

    impl<F: Future<Output = R> + Send + 'static, R> Detachable<R> for F {}

    /// [`call`] for async functions whose stale or due entries are
    /// recomputed in a task of their own: the caller gets the entry at once.
    pub async fn call_detached<P, R, S, F>(
        cache: &Cache,
        spec: &'static FnSpec,
        codec: TypedCodec<S>,
        key: Option<EntryKey>,
        compute: F,
    ) -> R
    where
        P: Policy<R, Stored = S> + 'static,
        S: 'static,
        R: Send + 'static,
        F: Detachable<R>,
    {
        match key {
            Some(key) => {
                let detach = Some(crate::cache::detacher::<P, R, F>());
                cache
                    .call::<P, R, F>(spec, codec, key, compute, detach)
                    .await
            }
            None => compute.await,
        }
    }

    /// What a handler with `http = true` takes and answers.
    #[cfg(feature = "axum")]
    pub use crate::http::{Answer, Conditional};

    /// What a handler with `http = true` may return.
    #[cfg(feature = "axum")]
    #[diagnostic::on_unimplemented(
        message = "`http = true` answers HTTP requests, and `{Self}` is not an axum response",
        label = "not an axum response",
        note = "`http = true` goes on an axum handler returning `Json<T>`, `Html<T>`, `(StatusCode, …)` or a `Result` of them; a function that is not a handler caches without it"
    )]
    pub trait HttpResponse: axum::response::IntoResponse {}

    #[cfg(feature = "axum")]
    impl<R: axum::response::IntoResponse> HttpResponse for R {}

    /// The body of an async handler with `http = true`: [`call`], answering
    /// `request` from the entry when it holds it already. `max_age` is
    /// how long a client may keep the answer without asking again.
    #[cfg(feature = "axum")]
    pub async fn call_http<P: Policy<R, Stored = S>, R, S>(
        cache: &Cache,
        spec: &'static FnSpec,
        codec: TypedCodec<S>,
        key: Option<EntryKey>,
        request: Conditional,
        max_age: Option<std::time::Duration>,
        compute: impl Future<Output = R>,
    ) -> Answer<R>
    where
        R: HttpResponse,
    {
        match key {
            Some(key) => {
                cache
                    .call_http::<P, R, _>(spec, codec, key, &request, max_age, compute)
                    .await
            }
            None => Answer::full(compute.await, None, None),
        }
    }

    /// Without the `axum` feature, `http = true` expands to these, so that
    /// the error names the missing feature rather than missing items.
    #[cfg(not(feature = "axum"))]
    pub use self::without_axum::{Answer, Conditional, call_http};

    #[cfg(not(feature = "axum"))]
    mod without_axum {
        use super::*;

        pub struct Conditional;

        pub struct Answer<R>(R);

        #[diagnostic::on_unimplemented(
            message = "`http = true` needs cached-api's `axum` feature",
            label = "`http = true` without the `axum` feature",
            note = "turn it on: `cached-api = {{ version = \"0.1\", features = [\"axum\"] }}`"
        )]
        pub trait AxumFeature {}

        pub async fn call_http<P: Policy<R, Stored = S>, R: AxumFeature, S>(
            _: &Cache,
            _: &'static FnSpec,
            _: TypedCodec<S>,
            _: Option<EntryKey>,
            _: Conditional,
            _: Option<std::time::Duration>,
            compute: impl Future<Output = R>,
        ) -> Answer<R> {
            Answer(compute.await)
        }
    }

    /// The body of a sync `#[cached_api]` function.
    pub fn call_blocking<P: Policy<R, Stored = S>, R, S>(
        cache: &Cache,
        spec: &'static FnSpec,
        codec: TypedCodec<S>,
        key: Option<EntryKey>,
        compute: impl FnOnce() -> R,
    ) -> R {
        match key {
            Some(key) => cache.call_blocking::<P, R>(spec, codec, key, compute),
            None => compute(),
        }
    }
}
