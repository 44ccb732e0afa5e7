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
//! Without `CACHED_API_REDIS_URL` the entries live in this process; with it,
//! in Redis, shared by every process of the service. See the README for the
//! attribute's arguments, the key layout and the failure policy.
//!
//! With the `axum` feature the attribute goes on a handler as written:
//! `Json<T>`, `Html<T>` and `(StatusCode, Json<T>)` returns are stored as what
//! they wrap ([`CachedResponse`]), and a `Query` struct can be part of the key.

pub use cached_api_macro::cached_api;
pub use cached_api_runtime::{
    BreakerStats, Cache, CacheBuilder, CachedResponse, Clock, Counts, Error, Stats, StoreError,
    TrackingStats, blocking, config, invalidate_function, invalidate_user, set_global, stats,
    status,
};

/// What `#[cached_api]` expands to calls. Not a public API: it changes
/// whenever the macro does.
#[doc(hidden)]
pub mod __private {
    pub use cached_api_runtime::__private::*;
}
