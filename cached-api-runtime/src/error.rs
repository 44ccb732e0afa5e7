//! The one error type of the runtime.

use std::time::Duration;

/// What can go wrong when configuring the cache or talking to its store.
///
/// Reads and writes done on behalf of a cached function never surface this
/// type: they fail open (the function runs, the error is counted). Only
/// configuration and invalidation return it, because a lost invalidation
/// would serve stale data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value could not be used.
    #[error("invalid cache configuration: {what}: {detail}")]
    Config {
        /// The setting or environment variable at fault.
        what: &'static str,
        /// Why it was rejected and what a valid value looks like.
        detail: String,
    },

    /// Redis answered with an error or the connection failed.
    #[error(
        "redis operation failed: {0}; check that redis-server is reachable at the configured URL"
    )]
    Redis(#[from] redis::RedisError),

    /// Redis failed repeatedly; the call did not wait for it.
    #[error("redis is failing: calls skip it, and one call every {0:?} probes whether it is back")]
    CircuitOpen(Duration),

    /// `set_global` was called after the process-wide cache was set or used.
    #[error(
        "the process-wide cache is already set; call set_global once, before the first cached call"
    )]
    GlobalAlreadySet,
}
