//! One attribute turns an API handler into a cache-aside wrapper on Redis
//! (or an embedded in-memory store), with per-user entries that one call drops.
//!
//! ```
//! use cached_api::cached_api;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Profile { name: String }
//!
//! #[cached_api(key = "profile:{id}", user = user_id, ttl = "15m")]
//! async fn get_profile(user_id: u64, id: u64) -> Result<Profile, String> {
//!     Ok(Profile { name: format!("user {id}") })
//! }
//!
//! # async fn demo() -> Result<(), cached_api::Error> {
//! let profile = get_profile(7, 42).await;   // miss: runs the body
//! let again = get_profile(7, 42).await;     // hit
//! cached_api::invalidate_user(&7).await?;   // every entry of user 7 is gone
//! # Ok(()) }
//! ```
//!
//! # Where entries live
//!
//! Without `CACHED_API_REDIS_URL` the entries live in this process (moka,
//! bounded by the memory its entries take); with it, in Redis (one node,
//! TLS with `rediss://`, or `redis+cluster://h1:p1,h2:p2`), shared by every
//! process of the service. A service that would rather refuse to start on a
//! bad environment installs the cache itself:
//!
//! ```
//! # fn main() -> Result<(), cached_api::Error> {
//! cached_api::set_global(cached_api::Cache::from_env()?)?;
//! # Ok(()) }
//! ```
//!
//! When Redis fails, calls run their function and answer (fail open), a
//! circuit breaker stops them waiting on it, and an invalidation that did
//! not land returns `Err`, is retried in the background, and keeps this
//! process from serving what it drops.
//!
//! # The attribute
//!
//! [`cached_api`](macro@cached_api) documents every argument: the key and
//! the user, TTLs (`ttl`, `error_ttl`, `stale`, `jitter`), the in-process
//! tier (`l1`), `refresh`, `lock`, the `invalidate = …` companion that drops
//! one call's entry, and `cache = …`. Mistakes in it are compile errors on
//! the token at fault.
//!
//! With the `axum` feature the attribute goes on a handler as written:
//! `Json<T>`, `Html<T>` and `(StatusCode, Json<T>)` returns (and `Option`s
//! and `Result`s of them) are stored as what they wrap ([`CachedResponse`]),
//! the app's `State` is left out of the default key, and a `Query` struct can
//! be part of it. Another framework's wrapper needs a newtype of your own
//! that implements [`CachedResponse`] (the repository's `examples/actix`).
//!
//! # Dropping entries
//!
//! [`invalidate_user`] drops every entry of one user, [`invalidate_function`]
//! every entry of one function, [`invalidate_tag`] every entry of a group
//! named by `tags = [...]`, across functions, and an `invalidate = …`
//! companion one call's entry: each in every process, in one store command,
//! and never undone by a computation that started before it returned `Ok`.
//!
//! ```
//! use cached_api::cached_api;
//!
//! #[cached_api(key = "plan:{id}", ttl = "24h", invalidate = forget_plan, tags = ["plans"])]
//! fn plan(id: u64) -> String {
//!     format!("plan {id}")
//! }
//!
//! #[cached_api(key = "all", ttl = "24h", tags = ["plans"])]
//! fn plan_list() -> Vec<u64> {
//!     vec![1, 2]
//! }
//!
//! # fn main() -> Result<(), cached_api::Error> {
//! plan(1);
//! forget_plan(1)?;                                        // the next call computes again
//! cached_api::blocking::invalidate_function(concat!(module_path!(), "::plan"))?;
//! cached_api::blocking::invalidate_tag("plans")?;         // plan pages and the list
//! # Ok(()) }
//! ```
//!
//! # Several caches, and tests
//!
//! A function uses the process-wide cache unless its attribute names
//! another (`cache = EU`, a `static` that derefs to [`Cache`]). Inside
//! [`Cache::scope`] (or [`Cache::scope_blocking`]) every cached call uses
//! that cache instead: a test gets a cache of its own, with its own
//! [`stats`](Cache::stats), and a [`Clock`] it can move forward.
//!
//! ```
//! use std::time::Duration;
//!
//! use cached_api::{Cache, Clock, cached_api};
//!
//! #[cached_api(key = "{id}", ttl = "15m")]
//! async fn price(id: u64) -> u64 {
//!     id * 100
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cached_api::Error> {
//! let clock = Clock::default();
//! let cache = Cache::builder().clock(clock.clone()).build()?;
//! cache.scope(async {
//!     price(1).await;
//!     price(1).await;                                   // a hit
//!     clock.advance(Duration::from_secs(15 * 60));
//!     price(1).await;                                   // expired: computed again
//! }).await;
//! let counted = cache.stats().total;
//! assert_eq!((counted.hits, counted.misses), (1, 2));
//! # Ok(()) }
//! ```
//!
//! # Observing it
//!
//! [`stats`] counts hits, misses, sets, invalidations and errors per
//! function; `tracing` logs at DEBUG per call and says an outage once; the
//! `metrics` feature exports the same counters, labelled by function id.
//! The repository's README has the rest: the key layout, how coherence
//! between processes works, deploys that change a stored type, and the
//! measured costs.

pub use cached_api_macro::cached_api;
pub use cached_api_runtime::{
    BreakerStats, Cache, CacheBuilder, CachedResponse, Clock, Counts, Error, Stats, StoreError,
    TrackingStats, blocking, config, invalidate_function, invalidate_tag, invalidate_user,
    set_global, stats, status,
};

/// HTTP validators of handlers with `http = true` (feature `axum`).
#[cfg(feature = "axum")]
pub use cached_api_runtime::http;

/// What `#[cached_api]` expands to calls. Not a public API: it changes
/// whenever the macro does.
#[doc(hidden)]
pub mod __private {
    pub use cached_api_runtime::__private::*;
}
