//! Circuit breaker: after consecutive store outages, calls stop paying the
//! op timeout and run their function at once; after a cooldown one call
//! probes the store, and its success closes the circuit again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::Error;
use crate::stats;

/// Consecutive outages that open the circuit.
pub(crate) const FAILURE_THRESHOLD: u32 = 3;

pub(crate) struct Breaker {
    cooldown: Duration,
    started: Instant,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `started` at which the circuit opened, plus one;
    /// 0 while closed.
    opened_at: AtomicU64,
    probing: AtomicBool,
}

/// Why an operation was let through, which decides what its outcome does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// The circuit is closed.
    Closed,
    /// The one call let through an open circuit after the cooldown.
    Probe,
    /// Let through whatever the state: invalidations must always be tried.
    Always,
}

impl Breaker {
    pub(crate) fn new(cooldown: Duration) -> Breaker {
        Breaker {
            cooldown,
            started: Instant::now(),
            consecutive_failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    /// Lets an operation through, or refuses it while the circuit is open.
    pub(crate) fn admit(&self) -> Result<Permit, Error> {
        let opened_at = self.opened_at.load(SeqCst);
        if opened_at == 0 {
            return Ok(Permit::Closed);
        }
        let cooled = self.now() >= opened_at + self.cooldown_ms();
        if cooled && !self.probing.swap(true, SeqCst) {
            return Ok(Permit::Probe);
        }
        stats::record_short_circuit();
        Err(Error::CircuitOpen(self.cooldown))
    }

    /// Records how an admitted operation went. Only outages count: a reply
    /// Redis gave, even an error reply, shows the server is there.
    pub(crate) fn record<T>(&self, permit: Permit, result: &Result<T, Error>) {
        let outage = match result {
            Ok(_) => false,
            Err(Error::Redis(error)) => {
                error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_refusal()
                    || error.is_connection_dropped()
            }
            Err(_) => false,
        };
        if !outage {
            self.consecutive_failures.store(0, SeqCst);
            if self.opened_at.swap(0, SeqCst) != 0 {
                stats::record_breaker_closed();
                tracing::warn!("redis answers again: the circuit is closed, caching resumes");
            }
            self.probing.store(false, SeqCst);
            return;
        }
        let failures = self.consecutive_failures.fetch_add(1, SeqCst) + 1;
        if permit == Permit::Probe {
            self.opened_at.store(self.now(), SeqCst);
            self.probing.store(false, SeqCst);
        } else if failures >= FAILURE_THRESHOLD
            && self
                .opened_at
                .compare_exchange(0, self.now(), SeqCst, SeqCst)
                .is_ok()
        {
            stats::record_breaker_opened();
            tracing::error!(
                cooldown = ?self.cooldown,
                "redis failed {failures} times in a row: the circuit is open, calls skip the cache"
            );
        }
    }

    fn cooldown_ms(&self) -> u64 {
        u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX)
    }
}
