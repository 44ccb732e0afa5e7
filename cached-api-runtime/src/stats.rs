//! Hit, miss, set, invalidation and error counts, per function and in total.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::spec::FnSpec;

/// Live counters of one function (or of the process, for events that belong
/// to no function, such as `invalidate_user`).
#[derive(Debug)]
pub(crate) struct FnCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    sets: AtomicU64,
    invalidations: AtomicU64,
    errors: AtomicU64,
    oversized: AtomicU64,
}

/// One kind of event the cache counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    Hit,
    Miss,
    Set,
    Invalidation,
    Error,
    Oversized,
}

impl FnCounters {
    pub(crate) const fn new() -> FnCounters {
        FnCounters {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            sets: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
        }
    }

    pub(crate) fn count(&self, event: Event) {
        let counter = match event {
            Event::Hit => &self.hits,
            Event::Miss => &self.misses,
            Event::Set => &self.sets,
            Event::Invalidation => &self.invalidations,
            Event::Error => &self.errors,
            Event::Oversized => &self.oversized,
        };
        counter.fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> Counts {
        Counts {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            sets: self.sets.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            errors: self.errors.load(Relaxed),
            oversized: self.oversized.load(Relaxed),
        }
    }
}

static FUNCTIONS: Mutex<Vec<&'static FnSpec>> = Mutex::new(Vec::new());
static PROCESS: FnCounters = FnCounters::new();
static BREAKERS_OPEN: AtomicI64 = AtomicI64::new(0);
static BREAKER_OPENED: AtomicU64 = AtomicU64::new(0);
static SHORT_CIRCUITS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn record_breaker_opened() {
    BREAKER_OPENED.fetch_add(1, Relaxed);
    BREAKERS_OPEN.fetch_add(1, Relaxed);
}

pub(crate) fn record_breaker_closed() {
    BREAKERS_OPEN.fetch_sub(1, Relaxed);
}

pub(crate) fn record_short_circuit() {
    SHORT_CIRCUITS.fetch_add(1, Relaxed);
}

/// Counts an event that belongs to no function, such as `invalidate_user`.
pub(crate) fn record_process(event: Event) {
    PROCESS.count(event);
    emit(None, event);
}

/// Emits `event` through the `metrics` facade, labelled by function id
/// (never by key or user, whose values are unbounded and may be personal).
#[cfg(feature = "metrics")]
pub(crate) fn emit(function: Option<&'static str>, event: Event) {
    let name = match event {
        Event::Hit => "cached_api_hits_total",
        Event::Miss => "cached_api_misses_total",
        Event::Set => "cached_api_sets_total",
        Event::Invalidation => "cached_api_invalidations_total",
        Event::Error => "cached_api_errors_total",
        Event::Oversized => "cached_api_oversized_total",
    };
    match function {
        Some(function) => metrics::counter!(name, "function" => function).increment(1),
        None => metrics::counter!(name).increment(1),
    }
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn emit(_: Option<&'static str>, _: Event) {}

pub(crate) fn register(spec: &'static FnSpec) {
    FUNCTIONS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(spec);
}

/// Counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls that ran the function (including those whose cache read failed).
    pub misses: u64,
    /// Entries written.
    pub sets: u64,
    /// Invalidations performed.
    pub invalidations: u64,
    /// Store operations that failed or timed out.
    pub errors: u64,
    /// Values not stored because they exceeded the maximum size.
    pub oversized: u64,
}

impl Counts {
    /// Share of lookups answered from the cache, 0.0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }

    fn add(&mut self, other: &Counts) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.sets += other.sets;
        self.invalidations += other.invalidations;
        self.errors += other.errors;
        self.oversized += other.oversized;
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Counts", 7)?;
        s.serialize_field("hits", &self.hits)?;
        s.serialize_field("misses", &self.misses)?;
        s.serialize_field("sets", &self.sets)?;
        s.serialize_field("invalidations", &self.invalidations)?;
        s.serialize_field("errors", &self.errors)?;
        s.serialize_field("oversized", &self.oversized)?;
        s.serialize_field("hit_rate", &self.hit_rate())?;
        s.end()
    }
}

/// The circuit breaker of the Redis store (see the README's failure policy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BreakerStats {
    /// Whether the circuit is open now: calls skip Redis.
    pub open: bool,
    /// How often it opened.
    pub opened: u64,
    /// Store operations skipped, without waiting, while it was open.
    pub short_circuited: u64,
}

/// Counts of every cached function that has been called, and their total.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Per function id.
    pub functions: BTreeMap<&'static str, Counts>,
    /// All functions plus events of no function (`invalidate_user`).
    pub total: Counts,
    /// The Redis circuit breaker.
    pub breaker: BreakerStats,
}

impl Stats {
    /// The counts of one function, zero if it has not been called.
    pub fn function(&self, id: &str) -> Counts {
        self.functions.get(id).copied().unwrap_or_default()
    }
}

/// Takes a snapshot of the counters of this process.
///
/// ```
/// let stats = cached_api_runtime::stats();
/// assert!(stats.total.hit_rate() >= 0.0);
/// ```
pub fn stats() -> Stats {
    let mut stats = Stats {
        total: PROCESS.snapshot(),
        breaker: BreakerStats {
            open: BREAKERS_OPEN.load(Relaxed) > 0,
            opened: BREAKER_OPENED.load(Relaxed),
            short_circuited: SHORT_CIRCUITS.load(Relaxed),
        },
        ..Stats::default()
    };
    let functions = FUNCTIONS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for spec in functions.iter() {
        let counts = spec.counters.snapshot();
        stats.total.add(&counts);
        stats.functions.entry(spec.id()).or_default().add(&counts);
    }
    stats
}
