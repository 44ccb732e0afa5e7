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
mod global;
mod invalidation;
mod key;
mod l1;
mod policy;
mod probe;
mod response;
mod spec;
mod stats;

pub use crate::cache::Cache;
pub use crate::clock::Clock;
pub use crate::codec::{Bincode, Codec, L1Value, TypedCodec};
pub use crate::config::CacheBuilder;
pub use crate::error::{Error, StoreError};
pub use crate::global::{
    blocking, global, invalidate_function, invalidate_user, set_global, stats,
};
pub use crate::key::{EntryKey, MAX_KEY_LEN, MAX_USER_LEN};
pub use crate::response::CachedResponse;
pub use crate::stats::{BreakerStats, Counts, Stats, TrackingStats};

/// What `#[cached_api]` expands to calls. Not a public API: it changes
/// whenever the macro does.
#[doc(hidden)]
pub mod __private {
    use std::fmt::Display;
    use std::future::Future;

    pub use crate::Error;
    use crate::codec::L1Value;
    pub use crate::global::global;
    pub use crate::key::KeyWriter;
    pub use crate::policy::{CacheValue, OkAndErr, OkOnly, Policy, SomeOnly, Whole};
    pub use crate::probe::{
        CloneCopies, DigestKey, DisplayKey, KeyValue, NoCopies, Probe, ResponseCodec, SerdeCodec,
        ViaBytes, ViaClone, ViaDigest, ViaDisplay, ViaResponse, ViaSerde, probe_of,
    };
    pub use crate::spec::{FnOptions, FnSpec};
    use crate::{Cache, EntryKey, TypedCodec};

    /// The codec of a function with `l1`; the bound names a type that is
    /// not `Clone` where the function's return type is written.
    pub fn with_l1<T: L1Value>(codec: TypedCodec<T>) -> TypedCodec<T> {
        codec.with_copies()
    }

    /// The key of one call; `None` when the cache is disabled or an
    /// argument could not be serialized into it. `owner` is
    /// `type_name::<Self>()` for methods.
    pub fn key(
        cache: &Cache,
        spec: &'static FnSpec,
        owner: Option<&str>,
        user: Option<&dyn Display>,
        write_key: impl FnOnce(&mut KeyWriter),
    ) -> Option<EntryKey> {
        cache.key(spec, owner, user, write_key)
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
            Some(key) => cache.call::<P, R>(spec, codec, key, compute).await,
            None => compute.await,
        }
    }

    /// The key of one call, for an `invalidate = …` companion; `None` if
    /// an argument could not be written into it (such a call is never
    /// cached). Unlike [`key`], given even when the cache is disabled.
    pub fn entry_key(
        cache: &Cache,
        spec: &'static FnSpec,
        owner: Option<&str>,
        user: Option<&dyn Display>,
        write_key: impl FnOnce(&mut KeyWriter),
    ) -> Option<EntryKey> {
        cache.entry_key(spec, owner, user, write_key)
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
