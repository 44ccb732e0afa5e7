//! The in-process tier: decoded values of functions with `l1`, each kept
//! beside what makes it current (its user's generation, or the stamp of the
//! tracked read of its entry) and served only while Redis's tracking says
//! that is still so, and never past its cap or its entry's TTL.

mod front;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use moka::sync::Cache as Moka;

use crate::codec::{Decoded, Shared};
use crate::footprint::{allocation, moka_entry};

/// Where the store last saw the tracked values a kept value depends on,
/// in words only the store reads: while they are unchanged, so are the
/// values, and a hit need not look them up.
pub(crate) type Seen = [u64; 3];

/// What a kept value was last checked at before its first hit: nothing.
const NEVER_SEEN: Seen = [u64::MAX; 3];

/// One kept value, shared: a hit clones one reference.
pub(crate) struct Kept {
    value: Arc<Shared>,
    /// The tracked values it is current at: the user's generation or the
    /// stamp of its entry's read, and the function's generation.
    current_at: (u64, u64),
    /// Where they were last seen held; its words are written apart, and
    /// each is a true statement about its own key alone.
    seen: [AtomicU64; 3],
    until: Instant,
    /// What it costs in memory.
    size: usize,
}

pub(crate) struct L1 {
    /// foldhash rather than SipHash: this lookup is much of a hit.
    entries: Moka<String, Arc<Kept>, RandomState>,
    /// This tier among the others of the process, for the [`front`].
    id: u64,
    /// How many values were dropped from this tier: a thread's [`front`]
    /// serves only what it found since the last, since what it holds may
    /// be a value moka replaced and still keeps alive, not the one dropped.
    removals: AtomicU64,
}

/// Ids of tiers, from 1: a thread's empty [`front`] slot names tier 0.
static TIERS: AtomicU64 = AtomicU64::new(1);

impl L1 {
    /// A tier that keeps at most `max_bytes` of keys, values and overhead.
    pub(crate) fn new(max_bytes: u64) -> L1 {
        L1 {
            entries: Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, kept: &Arc<Kept>| {
                    let record = allocation(16 + size_of::<Kept>());
                    u32::try_from(moka_entry(key) + record + kept.size).unwrap_or(u32::MAX)
                })
                .build_with_hasher(RandomState::default()),
            id: TIERS.fetch_add(1, Relaxed),
            removals: AtomicU64::new(0),
        }
    }

    /// The value kept at `key`, through `copy`, if it is current and not
    /// past its time: current while `unchanged` holds for where its
    /// tracked values were last seen, or else if `current` (the tracked
    /// values now, and where they were seen) matches it, which is then
    /// where they were last seen. Looked for in this thread's [`front`]
    /// first, then in moka.
    ///
    /// One copy for every function (trait objects, the kept value as it
    /// is): the caller copies its own type out.
    pub(crate) fn get(
        &self,
        key: &str,
        unchanged: &dyn Fn(&Seen) -> bool,
        current: &dyn Fn() -> Option<((u64, u64), Seen)>,
    ) -> Option<Arc<Kept>> {
        let removals = self.removals.load(Acquire);
        let recent = front::recent(self.id, removals, key);
        let kept = match recent {
            Some(kept) if kept.serves(unchanged, current) => kept,
            recent => {
                let kept = self.entries.get(key)?;
                front::remember(self.id, removals, key, &kept);
                // What the front found was moka's, and is not current.
                let checked = recent.is_some_and(|recent| Arc::ptr_eq(&recent, &kept));
                if checked || !kept.serves(unchanged, current) {
                    return None;
                }
                kept
            }
        };
        Some(kept)
    }

    /// Drops the value kept at `key`.
    pub(crate) fn remove(&self, key: &str) {
        self.entries.invalidate(key);
        self.removals.fetch_add(1, Release);
    }

    /// Keeps `value` for at most `lifetime`.
    pub(crate) fn insert(
        &self,
        key: &str,
        decoded: Decoded,
        current_at: (u64, u64),
        lifetime: Duration,
    ) {
        let Some(until) = Instant::now().checked_add(lifetime) else {
            return;
        };
        let kept = Kept {
            value: decoded.value,
            current_at,
            seen: NEVER_SEEN.map(AtomicU64::new),
            until,
            size: decoded.size,
        };
        self.entries.insert(key.into(), Arc::new(kept));
    }
}

impl Kept {
    /// The value, for the caller to copy its own type out of.
    pub(crate) fn value(&self) -> &Shared {
        // The value, not its `Arc`, which is an `Any` of its own.
        self.value.as_ref()
    }

    /// Whether this value may answer a call: in its time, and current (see
    /// [`L1::get`]).
    fn serves(
        &self,
        unchanged: &dyn Fn(&Seen) -> bool,
        current: &dyn Fn() -> Option<((u64, u64), Seen)>,
    ) -> bool {
        if Instant::now() >= self.until {
            return false;
        }
        if unchanged(&self.seen.each_ref().map(|word| word.load(Relaxed))) {
            return true;
        }
        let Some((current_at, seen)) = current() else {
            return false;
        };
        if current_at != self.current_at {
            return false;
        }
        for (word, seen) in self.seen.iter().zip(seen) {
            word.store(seen, Relaxed);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(value: u32) -> Decoded {
        Decoded {
            value: Arc::new(value),
            size: 4,
        }
    }

    fn copy(shared: &Shared) -> Option<u32> {
        shared.downcast_ref::<u32>().copied()
    }

    fn checked_at(l1: &L1, key: &str, current_at: (u64, u64)) -> Option<u32> {
        let kept = l1.get(key, &|_| false, &|| Some((current_at, [5, 0, 0])));
        copy(kept?.value())
    }

    #[test]
    fn a_value_is_served_only_while_current_and_in_time() {
        let l1 = L1::new(1 << 20);
        l1.insert("k", kept(7u32), (3, 0), Duration::from_secs(60));
        assert_eq!(checked_at(&l1, "k", (3, 0)), Some(7), "current");
        assert_eq!(checked_at(&l1, "k", (4, 0)), None, "another generation");
        assert_eq!(
            checked_at(&l1, "k", (3, 1)),
            None,
            "the function was invalidated"
        );
        l1.insert("old", kept(1u32), (3, 0), Duration::ZERO);
        assert_eq!(checked_at(&l1, "old", (3, 0)), None, "past its time");
    }

    #[test]
    fn a_value_seen_current_is_served_without_a_lookup_while_unchanged() {
        let l1 = L1::new(1 << 20);
        l1.insert("k", kept(7u32), (3, 0), Duration::from_secs(60));
        let lookups = std::cell::Cell::new(0);
        let get = |held: Seen, now: ((u64, u64), Seen)| {
            let lookup = || {
                lookups.set(lookups.get() + 1);
                Some(now)
            };
            copy(l1.get("k", &|seen| *seen == held, &lookup)?.value())
        };
        assert_eq!(get([1, 2, 3], ((3, 0), [1, 2, 3])), Some(7));
        assert_eq!(lookups.get(), 1, "never seen: looked up");
        assert_eq!(get([1, 2, 3], ((4, 0), [1, 2, 4])), Some(7));
        assert_eq!(lookups.get(), 1, "served on where it was seen");
        assert_eq!(get([1, 2, 4], ((4, 0), [1, 2, 4])), None);
        assert_eq!(lookups.get(), 2, "seen changed: looked up, and stale");
    }

    #[test]
    fn a_removed_value_is_not_served_by_a_thread_that_found_it_before() {
        let l1 = L1::new(1 << 20);
        l1.insert("k", kept(7u32), (3, 0), Duration::from_secs(60));
        assert_eq!(checked_at(&l1, "k", (3, 0)), Some(7));
        l1.remove("k");
        assert_eq!(checked_at(&l1, "k", (3, 0)), None);
        // The value found may be one moka replaced since and still keeps.
        l1.insert("k", kept(7u32), (3, 0), Duration::from_secs(60));
        assert_eq!(checked_at(&l1, "k", (3, 0)), Some(7));
        l1.insert("k", kept(8u32), (3, 0), Duration::from_secs(60));
        l1.remove("k");
        assert_eq!(checked_at(&l1, "k", (3, 0)), None);
    }

    #[test]
    fn a_value_replaced_at_a_newer_generation_is_found_anew() {
        let l1 = L1::new(1 << 20);
        l1.insert("k", kept(7u32), (3, 0), Duration::from_secs(60));
        assert_eq!(checked_at(&l1, "k", (3, 0)), Some(7));
        l1.insert("k", kept(8u32), (4, 0), Duration::from_secs(60));
        assert_eq!(checked_at(&l1, "k", (4, 0)), Some(8));
    }

    #[test]
    fn tiers_do_not_share_what_a_thread_found() {
        let (a, b) = (L1::new(1 << 20), L1::new(1 << 20));
        a.insert("k", kept(1u32), (3, 0), Duration::from_secs(60));
        b.insert("k", kept(2u32), (3, 0), Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(checked_at(&a, "k", (3, 0)), Some(1));
            assert_eq!(checked_at(&b, "k", (3, 0)), Some(2));
        }
    }
}
