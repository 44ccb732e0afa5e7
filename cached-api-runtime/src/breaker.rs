//! Circuit breaker: after consecutive store outages, calls stop paying the
//! op timeout and run their function at once; after a cooldown one call
//! probes the store, and its success closes the circuit again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::Error;
use crate::error::StoreError;
use crate::key::cluster_slot;
use crate::stats::BreakerStats;

/// Consecutive outages that open the circuit.
pub(crate) const FAILURE_THRESHOLD: u32 = 3;

pub(crate) struct Breaker {
    cooldown: Duration,
    started: Instant,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `started` at which the circuit opened, plus one;
    /// 0 while closed.
    opened_at: AtomicU64,
    /// When the current probe was let through, like `opened_at`; 0 when
    /// none is out. A probe whose call was cancelled never reports, so a
    /// probe older than the cooldown no longer holds the others back.
    probe_at: AtomicU64,
    opened: AtomicU64,
    short_circuited: AtomicU64,
    probes: AtomicU64,
    /// The store's outage, shared by all its circuits.
    outage: Arc<Outage>,
}

/// What all circuits of a store know of its outage, so that it is logged
/// once, not once per circuit (a cluster has 64) nor per failed call: a
/// WARN at its first failure, an ERROR when its first circuit opens, and a
/// WARN when its last closes.
#[derive(Default)]
pub(crate) struct Outage {
    /// Circuits whose last operation was an outage.
    failing: AtomicUsize,
    /// Circuits that are open.
    open: AtomicUsize,
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
    /// A circuit of a store whose outage `outage` follows.
    pub(crate) fn new(cooldown: Duration, outage: Arc<Outage>) -> Breaker {
        Breaker {
            cooldown,
            started: Instant::now(),
            consecutive_failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probe_at: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            short_circuited: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            outage,
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
        let now = self.now();
        let cooldown = self.cooldown_ms();
        let probe_at = self.probe_at.load(SeqCst);
        let probe_due =
            now >= opened_at + cooldown && (probe_at == 0 || now >= probe_at + cooldown);
        if probe_due
            && self
                .probe_at
                .compare_exchange(probe_at, now, SeqCst, SeqCst)
                .is_ok()
        {
            self.probes.fetch_add(1, Relaxed);
            return Ok(Permit::Probe);
        }
        self.short_circuited.fetch_add(1, Relaxed);
        Err(Error::CircuitOpen(self.cooldown))
    }

    /// Records how an admitted operation went. Only outages count: a reply
    /// the store gave, even an error reply, shows the server is there.
    pub(crate) fn record<T>(&self, permit: Permit, result: &Result<T, Error>) {
        if !result.as_ref().is_err_and(Error::is_outage) {
            // Loads first: in the steady state nothing is written, so calls
            // on different cores do not fight over these cache lines.
            if self.consecutive_failures.load(SeqCst) != 0
                && self.consecutive_failures.swap(0, SeqCst) != 0
            {
                self.outage.failing.fetch_sub(1, SeqCst);
            }
            if self.opened_at.load(SeqCst) != 0 && self.opened_at.swap(0, SeqCst) != 0 {
                if self.outage.open.fetch_sub(1, SeqCst) == 1 {
                    tracing::warn!(
                        "the store answers again: every circuit is closed, caching resumes"
                    );
                } else {
                    tracing::debug!(
                        "the store answers again for one circuit; others are still open"
                    );
                }
            }
            if self.probe_at.load(SeqCst) != 0 {
                self.probe_at.store(0, SeqCst);
            }
            return;
        }
        let failures = self.consecutive_failures.fetch_add(1, SeqCst) + 1;
        // A rejected password is not said here: the store says it once,
        // as the error it is.
        if failures == 1
            && self.outage.failing.fetch_add(1, SeqCst) == 0
            && self.outage.open.load(SeqCst) == 0
            && let Err(error) = result
            && !error.store_failure().is_some_and(StoreError::is_rejection)
        {
            tracing::warn!(
                %error,
                "the store failed; calls run their function uncached (further failures of this outage are counted in stats() and logged at DEBUG)"
            );
        }
        if permit == Permit::Probe {
            self.opened_at.store(self.now(), SeqCst);
            self.probe_at.store(0, SeqCst);
        } else if failures >= FAILURE_THRESHOLD
            && self
                .opened_at
                .compare_exchange(0, self.now(), SeqCst, SeqCst)
                .is_ok()
        {
            self.opened.fetch_add(1, Relaxed);
            if self.outage.open.fetch_add(1, SeqCst) == 0 {
                tracing::error!(
                    cooldown = ?self.cooldown,
                    "the store failed {failures} times in a row: the circuit is open, calls skip the cache (said once until every circuit is closed again)"
                );
            } else {
                tracing::debug!(
                    "the store failed {failures} times in a row: one more circuit is open"
                );
            }
        }
    }

    pub(crate) fn stats(&self) -> BreakerStats {
        let open = self.opened_at.load(SeqCst) != 0;
        BreakerStats {
            open,
            open_circuits: u64::from(open),
            opened: self.opened.load(Relaxed),
            short_circuited: self.short_circuited.load(Relaxed),
            probes: self.probes.load(Relaxed),
        }
    }

    fn cooldown_ms(&self) -> u64 {
        u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The circuits of one store: one for a single node; for a cluster, one per
/// range of slots, so that a master that is down opens the circuits of its
/// slots and calls to the healthy masters keep caching. Ranges, not nodes,
/// because which node serves a slot changes with failovers and resharding,
/// and the cluster client does not say; a range that straddles two masters
/// opens with the one that fails.
pub(crate) struct Breakers {
    circuits: Box<[Breaker]>,
}

/// Circuits of a cluster: 256 slots each.
const SLOT_RANGES: usize = 64;
const SLOTS: usize = 16_384;

impl Breakers {
    pub(crate) fn new(cooldown: Duration, cluster: bool) -> Breakers {
        let count = if cluster { SLOT_RANGES } else { 1 };
        Breakers {
            circuits: {
                let outage = Arc::default();
                (0..count)
                    .map(|_| Breaker::new(cooldown, Arc::clone(&outage)))
                    .collect()
            },
        }
    }

    /// The circuit of the node that serves `key`.
    pub(crate) fn for_key(&self, key: &str) -> &Breaker {
        match self.circuits.len() {
            1 => &self.circuits[0],
            _ => self.for_slot(cluster_slot(key)),
        }
    }

    /// The circuit of the node that serves `slot` of a cluster.
    pub(crate) fn for_slot(&self, slot: u16) -> &Breaker {
        let ranges = self.circuits.len();
        &self.circuits[usize::from(slot) * ranges / SLOTS]
    }

    /// All circuits' counts, added up.
    pub(crate) fn stats(&self) -> BreakerStats {
        self.circuits
            .iter()
            .map(Breaker::stats)
            .fold(BreakerStats::default(), |total, one| BreakerStats {
                open: total.open || one.open,
                open_circuits: total.open_circuits + one.open_circuits,
                opened: total.opened + one.opened,
                short_circuited: total.short_circuited + one.short_circuited,
                probes: total.probes + one.probes,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{StoreError, StoreFailure};

    fn outage() -> Result<(), Error> {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        Err(StoreError::new("test", StoreFailure::Unreachable, "", refused).into())
    }

    /// Waits out a cooldown: the breaker reads the clock, nothing to signal.
    fn cool(breaker: &Breaker) {
        std::thread::sleep(breaker.cooldown + Duration::from_millis(2));
    }

    fn opened(cooldown: Duration) -> Breaker {
        let breaker = Breaker::new(cooldown, Arc::default());
        for _ in 0..FAILURE_THRESHOLD {
            breaker.record(breaker.admit().unwrap(), &outage());
        }
        assert!(
            breaker.admit().is_err(),
            "open after {FAILURE_THRESHOLD} outages"
        );
        breaker
    }

    #[test]
    fn a_successful_probe_closes_the_circuit() {
        let breaker = opened(Duration::from_millis(5));
        cool(&breaker);
        let probe = breaker.admit().unwrap();
        assert_eq!(probe, Permit::Probe);
        assert!(breaker.admit().is_err(), "one probe at a time");
        breaker.record(probe, &Ok(()));
        assert_eq!(breaker.admit().unwrap(), Permit::Closed);
    }

    #[test]
    fn a_probe_that_never_reports_does_not_keep_the_circuit_open() {
        let breaker = opened(Duration::from_millis(5));
        cool(&breaker);
        // The probing call is cancelled: its future is dropped before `record`.
        assert_eq!(breaker.admit().unwrap(), Permit::Probe);
        cool(&breaker);
        assert_eq!(
            breaker.admit().unwrap(),
            Permit::Probe,
            "another call probes"
        );
    }

    #[test]
    fn a_cluster_opens_only_the_circuits_of_the_failing_slots() {
        let breakers = Breakers::new(Duration::from_secs(60), true);
        // Two users whose hash tags fall in different slot ranges.
        let (down, up) = ("x:{u:a}:k", "x:{u:b}:k");
        assert!(!std::ptr::eq(breakers.for_key(down), breakers.for_key(up)));
        assert!(std::ptr::eq(
            breakers.for_key(down),
            breakers.for_key("gen:{u:a}")
        ));
        for _ in 0..FAILURE_THRESHOLD {
            let breaker = breakers.for_key(down);
            breaker.record(breaker.admit().unwrap(), &outage());
        }
        assert!(breakers.for_key(down).admit().is_err());
        assert_eq!(breakers.for_key(up).admit().unwrap(), Permit::Closed);
        let stats = breakers.stats();
        assert_eq!(
            (stats.open, stats.open_circuits, stats.opened),
            (true, 1, 1)
        );
    }

    #[test]
    fn an_error_reply_is_not_an_outage() {
        let breaker = Breaker::new(Duration::from_secs(60), Arc::default());
        for _ in 0..2 * FAILURE_THRESHOLD {
            let reply = StoreError::new("test", StoreFailure::Refused, "", "WRONGTYPE");
            breaker.record(breaker.admit().unwrap(), &Err::<(), _>(reply.into()));
        }
        assert_eq!(breaker.admit().unwrap(), Permit::Closed);
        assert_eq!(breaker.stats().opened, 0);
    }
}
