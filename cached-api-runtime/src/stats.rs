//! Hit, miss, set, invalidation and error counts of one cache, per function
//! and in total.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::spec::FnSpec;

/// Live counters of one function in one cache (or of the cache itself, for
/// events that belong to no function, such as `invalidate_user`), striped
/// by thread: every hit counts, and a counter that every core writes makes
/// in-process hits on two cores slower than on one.
#[derive(Debug)]
struct FnCounters {
    stripes: [Stripe; STRIPES],
}

const STRIPES: usize = 8;

/// The stripe this thread counts on: threads take them in turn.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

/// One thread's share of a function's counters, alone on its cache lines.
#[derive(Debug)]
#[repr(align(128))]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
    sets: AtomicU64,
    invalidations: AtomicU64,
    errors: AtomicU64,
    oversized: AtomicU64,
    coalesced: AtomicU64,
    l1_hits: AtomicU64,
    refreshes: AtomicU64,
    stale: AtomicU64,
    lease_waits: AtomicU64,
    not_modified: AtomicU64,
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
    Coalesced,
    /// A hit served by the in-process tier (counted as a hit too).
    L1Hit,
    /// An entry recomputed ahead of its expiry by a caller that found it.
    Refresh,
    /// An answer from an entry past its TTL, within its `stale` window.
    Stale,
    /// A hit on the value another process computed under the entry's lease.
    LeaseWait,
    /// A `304 Not Modified` answer (`http = true`).
    #[cfg_attr(
        not(any(feature = "axum", feature = "metrics")),
        expect(
            dead_code,
            reason = "answered by handlers with `http = true`, which need the axum feature"
        )
    )]
    NotModified,
}

impl FnCounters {
    const fn new() -> FnCounters {
        FnCounters {
            stripes: [const { Stripe::new() }; STRIPES],
        }
    }

    fn count(&self, event: Event) {
        self.stripes[stripe()].count(event);
    }

    fn snapshot(&self) -> Counts {
        let mut counts = Counts::default();
        for stripe in &self.stripes {
            counts.add(&stripe.snapshot());
        }
        counts
    }
}

impl Stripe {
    const fn new() -> Stripe {
        Stripe {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            sets: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            l1_hits: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            lease_waits: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
        }
    }

    fn count(&self, event: Event) {
        let counter = match event {
            Event::Hit => &self.hits,
            Event::Miss => &self.misses,
            Event::Set => &self.sets,
            Event::Invalidation => &self.invalidations,
            Event::Error => &self.errors,
            Event::Oversized => &self.oversized,
            Event::Coalesced => &self.coalesced,
            Event::L1Hit => {
                self.hits.fetch_add(1, Relaxed);
                &self.l1_hits
            }
            Event::Refresh => &self.refreshes,
            Event::Stale => &self.stale,
            Event::LeaseWait => &self.lease_waits,
            Event::NotModified => &self.not_modified,
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
            coalesced: self.coalesced.load(Relaxed),
            l1_hits: self.l1_hits.load(Relaxed),
            refreshes: self.refreshes.load(Relaxed),
            stale: self.stale.load(Relaxed),
            lease_waits: self.lease_waits.load(Relaxed),
            not_modified: self.not_modified.load(Relaxed),
        }
    }
}

/// The id of every function counted so far, by row. Rows are shared by all
/// caches, so a function finds its counters in any cache without a map.
static ROWS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

fn row(spec: &FnSpec) -> usize {
    *spec.stats_row.get_or_init(|| {
        announce(spec);
        let mut rows = ROWS.lock().unwrap_or_else(|p| p.into_inner());
        rows.push(spec.id());
        rows.len() - 1
    })
}

/// Rows in the first bucket; each next bucket holds twice as many.
const FIRST_BUCKET: usize = 64;
const BUCKETS: usize = 24;

/// The counters of one [`Cache`](crate::Cache): a row per function, in
/// buckets allocated when a row in them is first counted, so that counting
/// takes no lock and no map lookup.
pub(crate) struct CacheStats {
    buckets: [OnceLock<Box<[FnCounters]>>; BUCKETS],
    /// Events of no function, such as `invalidate_user`.
    unattributed: FnCounters,
}

impl Default for CacheStats {
    fn default() -> Self {
        CacheStats {
            buckets: std::array::from_fn(|_| OnceLock::new()),
            unattributed: FnCounters::new(),
        }
    }
}

/// The bucket of `row`, and its place in it.
fn locate(row: usize) -> (usize, usize) {
    let n = row + FIRST_BUCKET;
    let bucket = (n.ilog2() - FIRST_BUCKET.ilog2()) as usize;
    (bucket, n - (FIRST_BUCKET << bucket))
}

/// What an invalidation dropped: how it is counted, and labelled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dropped<'a> {
    /// Every entry of a user (`invalidate_user`).
    User,
    /// Every entry of the function of this id (`invalidate_function`).
    Function(&'a str),
    /// One entry of this function (its `invalidate =` companion).
    Entry(&'static FnSpec),
    /// Every entry carrying a tag (`invalidate_tag`).
    Tag,
}

impl Dropped<'_> {
    /// The id of the function whose entries were dropped; empty for a user's.
    pub(crate) fn function(&self) -> &str {
        match self {
            Dropped::User | Dropped::Tag => "",
            Dropped::Function(id) => id,
            Dropped::Entry(spec) => spec.id(),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Dropped::User => "user",
            Dropped::Function(_) => "function",
            Dropped::Entry(_) => "entry",
            Dropped::Tag => "tag",
        }
    }
}

impl CacheStats {
    /// Counts `event` for the function of `spec` (and, with the `metrics`
    /// feature, emits it labelled by the function id).
    pub(crate) fn record(&self, spec: &FnSpec, event: Event) {
        self.counters(spec).count(event);
        emit(spec.id(), event);
    }

    fn counters(&self, spec: &FnSpec) -> &FnCounters {
        let (bucket, at) = locate(row(spec));
        let counters = self.buckets[bucket].get_or_init(|| {
            (0..FIRST_BUCKET << bucket)
                .map(|_| FnCounters::new())
                .collect()
        });
        &counters[at]
    }

    /// Counts an event that belongs to no function, such as a failed
    /// `invalidate_user`.
    pub(crate) fn record_unattributed(&self, event: Event) {
        self.unattributed.count(event);
        emit("", event);
    }

    /// Counts an invalidation that landed: for its function, if it dropped
    /// one entry; else for none.
    pub(crate) fn record_invalidation(&self, dropped: Dropped<'_>) {
        match dropped {
            Dropped::Entry(spec) => self.counters(spec).count(Event::Invalidation),
            Dropped::User | Dropped::Function(_) | Dropped::Tag => {
                self.unattributed.count(Event::Invalidation)
            }
        }
        emit_invalidation(dropped);
    }

    /// The counts at this moment; `breaker` comes from the store.
    pub(crate) fn snapshot(&self, breaker: BreakerStats) -> Stats {
        let mut stats = Stats {
            total: self.unattributed.snapshot(),
            breaker,
            ..Stats::default()
        };
        let rows = ROWS.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (row, id) in rows.into_iter().enumerate() {
            let (bucket, at) = locate(row);
            let Some(counters) = self.buckets[bucket].get() else {
                continue;
            };
            let counts = counters[at].snapshot();
            if counts != Counts::default() {
                stats.total.add(&counts);
                stats.functions.entry(id).or_default().add(&counts);
            }
        }
        stats
    }
}

#[cfg(feature = "metrics")]
/// The counters exported with the `metrics` feature, with their help
/// text, by [`Event`] (`L1Hit` is also counted as `Hit`).
const COUNTERS: [(Event, &str, &str); 12] = [
    (
        Event::Hit,
        "cached_api_hits_total",
        "Calls answered from the cache, the in-process tier included.",
    ),
    (
        Event::Miss,
        "cached_api_misses_total",
        "Calls that ran the function (a failed cache read included).",
    ),
    (
        Event::Set,
        "cached_api_sets_total",
        "Entries written to the store.",
    ),
    (
        Event::Invalidation,
        "cached_api_invalidations_total",
        "Invalidations that landed, by what they dropped: kind=user, function, tag or entry.",
    ),
    (
        Event::Error,
        "cached_api_errors_total",
        "Store operations that failed or timed out; function=\"\" for invalidations of users and functions.",
    ),
    (
        Event::Oversized,
        "cached_api_oversized_total",
        "Values returned but not stored: larger than max_value_size.",
    ),
    (
        Event::Coalesced,
        "cached_api_coalesced_total",
        "Calls that waited for a concurrent call of the same entry instead of running the function.",
    ),
    (
        Event::L1Hit,
        "cached_api_l1_hits_total",
        "Hits served by the in-process tier (l1), also counted in hits.",
    ),
    (
        Event::Refresh,
        "cached_api_refreshes_total",
        "Entries recomputed ahead of their expiry (refresh, stale).",
    ),
    (
        Event::Stale,
        "cached_api_stale_total",
        "Answers from an entry past its TTL, within its stale window.",
    ),
    (
        Event::LeaseWait,
        "cached_api_lease_waits_total",
        "Hits on a value another process computed under the entry's lease (lock).",
    ),
    (
        Event::NotModified,
        "cached_api_not_modified_total",
        "304 Not Modified answers of handlers with http = true.",
    ),
];

// `COUNTERS` is in `Event`'s order, so an event's row is its discriminant:
// every counted event finds its name without a search.
#[cfg(feature = "metrics")]
const _: () = {
    let mut row = 0;
    while row < COUNTERS.len() {
        assert!(
            COUNTERS[row].0 as usize == row,
            "COUNTERS follows Event's order"
        );
        row += 1;
    }
};

#[cfg(feature = "metrics")]
fn name(event: Event) -> &'static str {
    COUNTERS[event as usize].1
}

/// Describes every counter (`# HELP`), and starts the series that belong to
/// no function at 0, once per process, at its first counted event: a
/// recorder installed before the first cached call sees them.
#[cfg(feature = "metrics")]
fn describe() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        for (_, name, help) in COUNTERS {
            metrics::describe_counter!(name, metrics::Unit::Count, help);
        }
        metrics::counter!(name(Event::Error), "function" => "").increment(0);
        for kind in ["user", "function"] {
            metrics::counter!(name(Event::Invalidation), "function" => "", "kind" => kind)
                .increment(0);
        }
    });
}

/// Starts a function's series at 0 when it is first counted, so that a
/// rate of misses or errors exists before the first one.
#[cfg(feature = "metrics")]
fn announce(spec: &FnSpec) {
    describe();
    for (event, name, _) in COUNTERS {
        match event {
            Event::Invalidation if spec.drops_entries() => {
                metrics::counter!(name, "function" => spec.id(), "kind" => "entry").increment(0);
            }
            Event::Invalidation => {}
            _ => metrics::counter!(name, "function" => spec.id()).increment(0),
        }
    }
}

#[cfg(not(feature = "metrics"))]
fn announce(_: &FnSpec) {}

/// Emits `event` through the `metrics` facade, labelled by function id
/// (never by key or user, whose values are unbounded and may be personal);
/// `function` is empty for events of no function.
#[cfg(feature = "metrics")]
fn emit(function: &'static str, event: Event) {
    describe();
    metrics::counter!(name(event), "function" => function).increment(1);
    if let Event::L1Hit = event {
        emit(function, Event::Hit);
    }
}

#[cfg(not(feature = "metrics"))]
fn emit(_: &'static str, _: Event) {}

/// Emits a landed invalidation, labelled by the function it dropped (empty
/// for a user's) and its kind.
#[cfg(feature = "metrics")]
fn emit_invalidation(dropped: Dropped<'_>) {
    describe();
    let function: metrics::SharedString = match dropped {
        Dropped::Entry(spec) => spec.id().into(),
        other => other.function().to_owned().into(),
    };
    metrics::counter!(name(Event::Invalidation), "function" => function, "kind" => dropped.kind())
        .increment(1);
}

#[cfg(not(feature = "metrics"))]
fn emit_invalidation(_: Dropped<'_>) {}

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
    /// Calls that waited for a concurrent call of the same entry in this
    /// process instead of running the function; counted as hits too when
    /// they took its value.
    pub coalesced: u64,
    /// Hits served by the in-process tier without a Redis round trip;
    /// they are in `hits` too, so `hits - l1_hits` were served by the store.
    pub l1_hits: u64,
    /// Entries recomputed while they still answered: ahead of their expiry
    /// (`refresh`), or past it by a task of their own (`stale`, async
    /// functions that borrow nothing). Counted neither as hits nor as misses.
    pub refreshes: u64,
    /// Answers from entries past their TTL, within their `stale` window:
    /// while another caller recomputed them, or because the function
    /// failed. Counted neither as hits nor as misses, so that an origin
    /// outage shows here rather than as hits.
    pub stale: u64,
    /// Calls (`lock`) that waited while another process computed their
    /// entry under its lease, and took its value: counted in `hits` too.
    pub lease_waits: u64,
    /// `304 Not Modified` answers of handlers with `http = true`: in `hits`
    /// too when the entry answered without running the handler, in
    /// `misses` when the handler ran and its value was the client's.
    pub not_modified: u64,
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
        self.coalesced += other.coalesced;
        self.l1_hits += other.l1_hits;
        self.refreshes += other.refreshes;
        self.stale += other.stale;
        self.lease_waits += other.lease_waits;
        self.not_modified += other.not_modified;
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Counts", 13)?;
        s.serialize_field("hits", &self.hits)?;
        s.serialize_field("misses", &self.misses)?;
        s.serialize_field("sets", &self.sets)?;
        s.serialize_field("invalidations", &self.invalidations)?;
        s.serialize_field("errors", &self.errors)?;
        s.serialize_field("oversized", &self.oversized)?;
        s.serialize_field("coalesced", &self.coalesced)?;
        s.serialize_field("l1_hits", &self.l1_hits)?;
        s.serialize_field("refreshes", &self.refreshes)?;
        s.serialize_field("stale", &self.stale)?;
        s.serialize_field("lease_waits", &self.lease_waits)?;
        s.serialize_field("not_modified", &self.not_modified)?;
        s.serialize_field("hit_rate", &self.hit_rate())?;
        s.end()
    }
}

/// The circuit breakers of the Redis store (see the README's failure policy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BreakerStats {
    /// Whether a circuit is open now: calls to its part of the store skip it.
    pub open: bool,
    /// How many circuits are open now: one for a single node; for a
    /// cluster, each covers 1/64 of the slots.
    pub open_circuits: u64,
    /// How often it opened.
    pub opened: u64,
    /// Store operations skipped, without waiting, while it was open.
    pub short_circuited: u64,
    /// Operations let through the open circuit to see whether the store is back.
    pub probes: u64,
}

/// Client-side tracking of user generations (see the README's tiers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TrackingStats {
    /// Keys this process knows through tracking now: user generations (a
    /// hit of their users reads only its entry, and may come from the
    /// in-process tier) and global entries of functions with `l1`.
    pub tracked_keys: u64,
    /// Generation reads not kept because Redis said the generation changed
    /// while the reply was on its way.
    pub races: u64,
}

/// Counts of one cache: every cached function it has counted, and their total.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Per function id.
    pub functions: BTreeMap<&'static str, Counts>,
    /// All functions plus events of no function (`invalidate_user`).
    pub total: Counts,
    /// The Redis circuit breaker.
    pub breaker: BreakerStats,
    /// Client-side tracking; zero on the embedded store, a cluster, or a
    /// server that refuses it.
    pub tracking: TrackingStats,
    /// Failed invalidations waiting to be retried; their users are served
    /// uncached by this process until they land.
    pub pending_invalidations: u64,
    /// Failed invalidations that a retry made land.
    pub retried_invalidations: u64,
    /// Failed invalidations not kept for retrying because too many were
    /// pending (each was returned as an `Err` and logged).
    pub dropped_invalidations: u64,
}

impl Stats {
    /// The counts of one function, zero if it has not been called.
    pub fn function(&self, id: &str) -> Counts {
        self.functions.get(id).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fill_buckets_of_doubling_size_without_gaps() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(FIRST_BUCKET - 1), (0, FIRST_BUCKET - 1));
        assert_eq!(locate(FIRST_BUCKET), (1, 0));
        assert_eq!(locate(3 * FIRST_BUCKET - 1), (1, 2 * FIRST_BUCKET - 1));
        assert_eq!(locate(3 * FIRST_BUCKET), (2, 0));
        let last = (FIRST_BUCKET << BUCKETS) - FIRST_BUCKET - 1;
        assert_eq!(
            locate(last),
            (BUCKETS - 1, (FIRST_BUCKET << (BUCKETS - 1)) - 1)
        );
    }
}
