//! The in-process tier: decoded values of functions with `l1`, each kept
//! beside what makes it current (its user's generation, or the stamp of the
//! tracked read of its entry) and served only while Redis's tracking says
//! that is still so, and never past its cap or its entry's TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use moka::sync::Cache as Moka;

use crate::codec::Shared;

/// Where the store last saw the tracked values a kept value depends on,
/// in words only the store reads: while they are unchanged, so are the
/// values, and a hit need not look them up.
pub(crate) type Seen = [u64; 3];

/// What a kept value was last checked at before its first hit: nothing.
const NEVER_SEEN: Seen = [u64::MAX; 3];

/// One kept value, shared: a hit clones one reference.
struct Kept {
    value: Arc<Shared>,
    /// The tracked values it is current at: the user's generation or the
    /// stamp of its entry's read, and the function's generation.
    current_at: (u64, u64),
    /// Where they were last seen held; its words are written apart, and
    /// each is a true statement about its own key alone.
    seen: [AtomicU64; 3],
    until: Instant,
    /// Its encoded size, which stands for its size in memory.
    size: usize,
}

pub(crate) struct L1 {
    /// foldhash rather than SipHash: this lookup is most of a hit.
    entries: Moka<String, Arc<Kept>, RandomState>,
}

/// What an entry costs beyond its key and value, roughly.
const ENTRY_OVERHEAD: usize = 128;

impl L1 {
    /// A tier that keeps at most `max_bytes` of keys, values and overhead.
    pub(crate) fn new(max_bytes: u64) -> L1 {
        L1 {
            entries: Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, kept: &Arc<Kept>| {
                    u32::try_from(key.len() + kept.size + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .build_with_hasher(RandomState::default()),
        }
    }

    /// The value kept at `key`, through `copy`, if it is current and not
    /// past its time: current while `unchanged` holds for where its
    /// tracked values were last seen, or else if `current` (the tracked
    /// values now, and where they were seen) matches it, which is then
    /// where they were last seen.
    pub(crate) fn get<T>(
        &self,
        key: &str,
        unchanged: impl FnOnce(&Seen) -> bool,
        current: impl FnOnce() -> Option<((u64, u64), Seen)>,
        copy: impl FnOnce(&Shared) -> Option<T>,
    ) -> Option<T> {
        let kept = self.entries.get(key)?;
        if Instant::now() >= kept.until {
            return None;
        }
        if !unchanged(&kept.seen.each_ref().map(|word| word.load(Relaxed))) {
            let (current_at, seen) = current()?;
            if current_at != kept.current_at {
                return None;
            }
            for (word, seen) in kept.seen.iter().zip(seen) {
                word.store(seen, Relaxed);
            }
        }
        copy(&*kept.value)
    }

    /// Drops the value kept at `key`.
    pub(crate) fn remove(&self, key: &str) {
        self.entries.invalidate(key);
    }

    /// Keeps `value` for at most `lifetime`.
    pub(crate) fn insert(
        &self,
        key: &str,
        value: Arc<Shared>,
        current_at: (u64, u64),
        lifetime: Duration,
        size: usize,
    ) {
        let Some(until) = Instant::now().checked_add(lifetime) else {
            return;
        };
        let kept = Kept {
            value,
            current_at,
            seen: NEVER_SEEN.map(AtomicU64::new),
            until,
            size,
        };
        self.entries.insert(key.into(), Arc::new(kept));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(shared: &Shared) -> Option<u32> {
        shared.downcast_ref::<u32>().copied()
    }

    fn checked_at(l1: &L1, key: &str, current_at: (u64, u64)) -> Option<u32> {
        l1.get(key, |_| false, || Some((current_at, [5, 0, 0])), copy)
    }

    #[test]
    fn a_value_is_served_only_while_current_and_in_time() {
        let l1 = L1::new(1 << 20);
        l1.insert("k", Arc::new(7u32), (3, 0), Duration::from_secs(60), 4);
        assert_eq!(checked_at(&l1, "k", (3, 0)), Some(7), "current");
        assert_eq!(checked_at(&l1, "k", (4, 0)), None, "another generation");
        assert_eq!(
            checked_at(&l1, "k", (3, 1)),
            None,
            "the function was invalidated"
        );
        l1.insert("old", Arc::new(1u32), (3, 0), Duration::ZERO, 4);
        assert_eq!(checked_at(&l1, "old", (3, 0)), None, "past its time");
    }

    #[test]
    fn a_value_seen_current_is_served_without_a_lookup_while_unchanged() {
        let l1 = L1::new(1 << 20);
        l1.insert("k", Arc::new(7u32), (3, 0), Duration::from_secs(60), 4);
        let lookups = std::cell::Cell::new(0);
        let get = |held: Seen, now: ((u64, u64), Seen)| {
            let lookup = || {
                lookups.set(lookups.get() + 1);
                Some(now)
            };
            l1.get("k", |seen| *seen == held, lookup, copy)
        };
        assert_eq!(get([1, 2, 3], ((3, 0), [1, 2, 3])), Some(7));
        assert_eq!(lookups.get(), 1, "never seen: looked up");
        assert_eq!(get([1, 2, 3], ((4, 0), [1, 2, 4])), Some(7));
        assert_eq!(lookups.get(), 1, "served on where it was seen");
        assert_eq!(get([1, 2, 4], ((4, 0), [1, 2, 4])), None);
        assert_eq!(lookups.get(), 2, "seen changed: looked up, and stale");
    }
}
