//! The process-wide cache that `#[cached_api]` functions use, and the
//! invalidation calls that act on it.

use std::fmt::Display;
use std::sync::OnceLock;

use crate::scope::CallCache;
use crate::{Cache, Error, Stats};

static GLOBAL: OnceLock<Cache> = OnceLock::new();

/// The process-wide cache, built from the environment on first use.
///
/// A malformed environment must not fail the requests of a service, so it
/// is logged and the cache is disabled: every call runs its function, and
/// every invalidation returns [`Error::Misconfigured`], which [`status`]
/// also reports.
pub fn global() -> &'static Cache {
    GLOBAL.get_or_init(|| {
        Cache::from_env().unwrap_or_else(|error| {
            tracing::error!(%error, "cached_api is disabled: its environment is invalid");
            Cache::misconfigured(&error)
        })
    })
}

/// Whether the process-wide cache can be used: `Err`
/// ([`Error::Misconfigured`]) when it was built from an environment it
/// could not use, and runs every call uncached. A service that would rather
/// refuse to start checks it at start-up, or installs
/// `set_global(Cache::from_env()?)` itself.
///
/// ```
/// cached_api::status()?;
/// # Ok::<(), cached_api::Error>(())
/// ```
pub fn status() -> Result<(), Error> {
    global().usable()
}

/// Makes `cache` the process-wide cache.
///
/// Call it at start-up, before the first cached call: after that the
/// process-wide cache is fixed and this returns [`Error::GlobalAlreadySet`].
pub fn set_global(cache: Cache) -> Result<(), Error> {
    GLOBAL.set(cache).map_err(|_| Error::GlobalAlreadySet)
}

/// The counts of the process-wide cache: per function, in total, and its
/// store's circuit breaker. A [`Cache`] built and used apart has its own
/// [`Cache::stats`].
///
/// ```
/// let stats = cached_api::stats();
/// assert!(stats.total.hit_rate() >= 0.0);
/// ```
pub fn stats() -> Stats {
    global().stats()
}

/// Drops every cached entry of `user`, across all functions, in one command.
///
/// `user` is compared by its `Display` form, as in the attribute's `user = …`.
/// An `Err` means the entries may still be served: retry, or fail the write
/// that prompted the invalidation.
///
/// Like the free invalidations below, it acts on the cache of the
/// [scope](Cache::scope) it runs in, if any, so that a handler tested in a
/// scope drops what its cached calls stored there; else on the
/// process-wide cache.
///
/// ```
/// # async fn demo() -> Result<(), cached_api::Error> {
/// cached_api::invalidate_user(&42).await?;
/// # Ok(()) }
/// ```
pub async fn invalidate_user<U: Display + ?Sized>(user: &U) -> Result<(), Error> {
    in_scope().invalidate_user(user).await
}

/// Drops every entry of the cached function `id`, in every process that
/// shares the store; see [`Cache::invalidate_function`] for what `id` is.
///
/// ```
/// # async fn demo() -> Result<(), cached_api::Error> {
/// // After a deploy that changed how profiles are rendered:
/// cached_api::invalidate_function("my_service::handlers::get_profile").await?;
/// # Ok(()) }
/// ```
pub async fn invalidate_function(id: &str) -> Result<(), Error> {
    in_scope().invalidate_function(id).await
}

/// Drops every entry carrying the tag `tag` (a `tags = [...]` template's
/// text for a call), whatever its function and user, in every process that
/// shares the store; see [`Cache::invalidate_tag`].
///
/// ```
/// # async fn demo() -> Result<(), cached_api::Error> {
/// // After an admin edited the plans:
/// cached_api::invalidate_tag("plans").await?;
/// # Ok(()) }
/// ```
pub async fn invalidate_tag(tag: &str) -> Result<(), Error> {
    in_scope().invalidate_tag(tag).await
}

/// The cache the free invalidations act on: the scope's, else the
/// process-wide one.
fn in_scope() -> CallCache {
    crate::scope::current(global)
}

/// Invalidation for code outside an async runtime.
pub mod blocking {
    use super::*;

    /// Blocking form of [`invalidate_user`](super::invalidate_user).
    pub fn invalidate_user<U: Display + ?Sized>(user: &U) -> Result<(), Error> {
        in_scope().invalidate_user_blocking(user)
    }

    /// Blocking form of [`invalidate_function`](super::invalidate_function).
    pub fn invalidate_function(id: &str) -> Result<(), Error> {
        in_scope().invalidate_function_blocking(id)
    }

    /// Blocking form of [`invalidate_tag`](super::invalidate_tag).
    pub fn invalidate_tag(tag: &str) -> Result<(), Error> {
        in_scope().invalidate_tag_blocking(tag)
    }
}
