//! In-process single-flight: concurrent misses of one entry run the function
//! once, and the others take its result.
//!
//! The leader holds a [`Leader`] guard; dropping it without a result (panic,
//! cancelled future) wakes the followers with [`Outcome::Abandoned`] so one
//! of them takes over: nobody waits on a leader that is gone.

use crate::codec::{Generations, Observed};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use foldhash::fast::FixedState;
use tokio::sync::Notify;

/// What the leader left for its followers.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// The sealed entry, as written to the store.
    Value(Arc<[u8]>),
    /// The result is not cacheable (an `Err`, a `None`): run the function yourself.
    NotShared,
    /// The leader panicked or was cancelled: start over.
    Abandoned,
}

/// One entry being computed: the entry key, and the generations it was
/// read at and what its key held then; a call that read something else (an
/// invalidation's tombstone) does not join a computation that started
/// before.
type FlightKey = (String, Generations, Observed);

#[derive(Default)]
pub(crate) struct Flight {
    outcome: Mutex<Option<Outcome>>,
    landed: Condvar,
    notify: Notify,
}

impl Flight {
    fn outcome(&self) -> MutexGuard<'_, Option<Outcome>> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn wait(&self) -> Outcome {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome().clone() {
                return outcome;
            }
            notified.await;
        }
    }

    pub(crate) fn wait_blocking(&self) -> Outcome {
        let guard = self
            .landed
            .wait_while(self.outcome(), |outcome| outcome.is_none())
            .unwrap_or_else(|p| p.into_inner());
        guard
            .clone()
            .expect("wait_while returns once an outcome is set")
    }
}

/// The entries being computed in this process.
pub(crate) struct Flights {
    in_flight: Mutex<HashMap<FlightKey, Arc<Flight>>>,
    /// Landings per shard of entries. A caller that missed, then finds no
    /// flight, may have missed just before a leader stored the entry and
    /// left; if anything in its shard landed since its lookup, it looks
    /// again instead of computing twice. Shards keep other entries'
    /// landings from sending it back needlessly.
    landings: [AtomicU64; SHARDS],
}

const SHARDS: usize = 256;

impl Default for Flights {
    fn default() -> Self {
        Flights {
            in_flight: Mutex::default(),
            landings: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Whether the caller computes the entry, waits for who does, or looks again.
pub(crate) enum Role<'a> {
    Leader(Leader<'a>),
    Follower(Arc<Flight>),
    LookAgain,
}

/// The landing count of an entry's shard, as a caller saw it before its lookup.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch {
    shard: usize,
    landings: u64,
}

/// A fixed-seed hash of the entry key: shards need spread, not secrecy,
/// and two keys that share a shard cost at most a second lookup.
fn shard(entry: &str) -> usize {
    FixedState::default().hash_one(entry) as usize % SHARDS
}

impl Flights {
    /// Taken before a lookup, handed to [`join`](Self::join) after it.
    pub(crate) fn epoch(&self, entry: &str) -> Epoch {
        let shard = shard(entry);
        Epoch {
            shard,
            landings: self.landings[shard].load(Ordering::Acquire),
        }
    }

    /// Whether `entry` is being computed at `generations`, from what a read
    /// observed.
    pub(crate) fn in_flight(
        &self,
        entry: &str,
        generations: Generations,
        observed: Observed,
    ) -> bool {
        let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        in_flight.contains_key(&(entry.to_owned(), generations, observed))
    }

    /// Joins the computation of `entry` at `generation`; `LookAgain` if
    /// there is none but something landed since `seen` (`None`: never).
    pub(crate) fn join(
        &self,
        entry: &str,
        generations: Generations,
        observed: Observed,
        seen: Option<Epoch>,
    ) -> Role<'_> {
        let key = (entry.to_owned(), generations, observed);
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = in_flight.get(&key) {
            return Role::Follower(Arc::clone(flight));
        }
        if seen.is_some_and(|seen| seen != self.epoch(entry)) {
            return Role::LookAgain;
        }
        let flight = Arc::new(Flight::default());
        in_flight.insert(key.clone(), Arc::clone(&flight));
        Role::Leader(Leader {
            flights: self,
            key,
            flight,
            outcome: Outcome::Abandoned,
        })
    }
}

/// Held by the caller that computes the entry; lands its outcome when dropped.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: FlightKey,
    flight: Arc<Flight>,
    outcome: Outcome,
}

impl Leader<'_> {
    pub(crate) fn land(mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .flights
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        in_flight.remove(&self.key);
        self.flights.landings[shard(&self.key.0)].fetch_add(1, Ordering::Release);
        drop(in_flight);
        let outcome = std::mem::replace(&mut self.outcome, Outcome::Abandoned);
        *self.flight.outcome() = Some(outcome);
        self.flight.landed.notify_all();
        self.flight.notify.notify_waiters();
    }
}
