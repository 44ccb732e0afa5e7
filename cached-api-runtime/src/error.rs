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

    /// The store answered with an error or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The store failed repeatedly; the call did not wait for it.
    #[error(
        "the cache store is failing: calls skip it, and one call every {0:?} probes whether it is back"
    )]
    CircuitOpen(Duration),

    /// The process-wide cache was built from an environment it could not
    /// use: it runs every call, and refuses invalidations, which would
    /// reach no store while other processes keep serving what they drop.
    #[error(
        "the process-wide cache is disabled because its environment is invalid ({0}): nothing was invalidated; fix the environment, or install the cache with `set_global(Cache::from_env()?)` so that the service refuses to start"
    )]
    Misconfigured(String),

    /// `set_global` was called after the process-wide cache was set or used.
    #[error(
        "the process-wide cache is already set; call set_global once, before the first cached call"
    )]
    GlobalAlreadySet,
}

/// A failure of the store, with its client library's error in its message.
///
/// The store classifies it once, so that what reacts to it (the circuit
/// breaker, a retry) needs no client library's types. The client's error
/// is part of the message and not also its `source()`, so that a printer
/// of error chains shows it once.
#[derive(Debug, thiserror::Error)]
#[error("{store} operation failed: {cause}; {hint}")]
pub struct StoreError {
    store: &'static str,
    kind: StoreFailure,
    hint: &'static str,
    cause: Box<dyn std::error::Error + Send + Sync>,
}

/// How a store operation failed, as far as the cache cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreFailure {
    /// The connection broke under the command: a retry on a fresh one may work.
    Dropped,
    /// Nothing answered in time, or the connection was refused.
    Unreachable,
    /// The server answered, with an error.
    Refused,
    /// The server refuses this client as configured: wrong credentials,
    /// missing permissions. Waiting will not help; the store reports it once.
    Rejected,
    /// The master took a write, and fewer replicas than asked acknowledged
    /// it in time: a failover now could lose it. The master is there, so
    /// this is no outage.
    Unreplicated,
}

impl StoreError {
    pub(crate) fn new(
        store: &'static str,
        kind: StoreFailure,
        hint: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError {
            store,
            kind,
            hint,
            cause: source.into(),
        }
    }

    /// Whether the store cannot be used for now (unreachable, timed out,
    /// dropped, or refusing this client's credentials), rather than
    /// answering one command with an error.
    pub fn is_outage(&self) -> bool {
        !matches!(
            self.kind,
            StoreFailure::Refused | StoreFailure::Unreplicated
        )
    }

    /// Whether the server refuses this client as configured (credentials,
    /// permissions): the store says that once, as an error of its own.
    pub(crate) fn is_rejection(&self) -> bool {
        self.kind == StoreFailure::Rejected
    }

    /// Whether the connection broke under the command.
    pub(crate) fn was_dropped(&self) -> bool {
        self.kind == StoreFailure::Dropped
    }
}

impl Error {
    /// The store failure behind this error, if it is one.
    pub(crate) fn store_failure(&self) -> Option<&StoreError> {
        match self {
            Error::Store(error) => Some(error),
            _ => None,
        }
    }

    /// Whether the store could not be reached (see [`StoreError::is_outage`]).
    pub(crate) fn is_outage(&self) -> bool {
        self.store_failure().is_some_and(StoreError::is_outage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_printer_shows_the_client_error_once() {
        let refused = std::io::Error::other("Connection refused (os error 111)");
        let error = Error::from(StoreError::new(
            "redis",
            StoreFailure::Unreachable,
            "check the URL",
            refused,
        ));
        let mut chain = vec![error.to_string()];
        let mut source = std::error::Error::source(&error);
        while let Some(next) = source {
            chain.push(next.to_string());
            source = next.source();
        }
        let printed = chain.join(": ");
        assert_eq!(
            printed.matches("Connection refused").count(),
            1,
            "{printed}"
        );
        assert!(printed.contains("check the URL"), "{printed}");
    }
}
