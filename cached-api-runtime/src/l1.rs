//! The in-process tier: decoded values of functions with `l1`, each kept
//! beside what makes it current (its user's generation, or the stamp of the
//! tracked read of its entry) and served only while Redis's tracking says
//! that is still so, and never past its cap or its entry's TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use moka::sync::Cache as Moka;

use crate::codec::Shared;

/// One kept value.
#[derive(Clone)]
struct Kept {
    value: Arc<Shared>,
    /// The tracked values it is current at: the user's generation or the
    /// stamp of its entry's read, and the function's generation.
    current_at: (u64, u64),
    until: Instant,
    /// Its encoded size, which stands for its size in memory.
    size: usize,
}

pub(crate) struct L1 {
    /// foldhash rather than SipHash: this lookup is most of a hit.
    entries: Moka<String, Kept, RandomState>,
}

/// What an entry costs beyond its key and value, roughly.
const ENTRY_OVERHEAD: usize = 128;

impl L1 {
    /// A tier that keeps at most `max_bytes` of keys, values and overhead.
    pub(crate) fn new(max_bytes: u64) -> L1 {
        L1 {
            entries: Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, kept: &Kept| {
                    u32::try_from(key.len() + kept.size + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .build_with_hasher(RandomState::default()),
        }
    }

    /// The value kept at `key` if it is current at `current` and not past
    /// its time.
    pub(crate) fn get(&self, key: &str, current: (u64, u64)) -> Option<Arc<Shared>> {
        let kept = self.entries.get(key)?;
        if kept.current_at == current && Instant::now() < kept.until {
            Some(kept.value)
        } else {
            None
        }
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
            until,
            size,
        };
        self.entries.insert(key.into(), kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_served_only_while_current_and_in_time() {
        let l1 = L1::new(1 << 20);
        l1.insert("k", Arc::new(7u32), (3, 0), Duration::from_secs(60), 4);
        let hit = l1.get("k", (3, 0)).expect("current");
        assert_eq!(hit.downcast_ref::<u32>(), Some(&7));
        assert!(l1.get("k", (4, 0)).is_none(), "another generation");
        assert!(
            l1.get("k", (3, 1)).is_none(),
            "the function was invalidated"
        );
        l1.insert("old", Arc::new(1u32), (3, 0), Duration::ZERO, 4);
        assert!(l1.get("old", (3, 0)).is_none(), "past its time");
    }
}
