//! Each thread's few most recently served values of the in-process tier,
//! found again without moka: a hot key's hit then skips moka's clock read,
//! its lookup and its read log, which were a third of the cost of a hit.
//!
//! A slot holds a [`Weak`] reference, so it keeps no value alive: what moka
//! evicts or replaces is freed as before, and the byte budget holds. What a
//! slot finds is checked as a value from moka is (its time, its tracked
//! values), and no slot is used across a removal from its tier, so a slot
//! may be out of date but never serves what moka could not.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::{Arc, Weak};

use foldhash::fast::FixedState;

use super::Kept;

/// Slots per thread: the hot keys of a service are few, and a slot costs
/// its key's length and a small allocation once the value is gone.
const SLOTS: usize = 32;

/// One in this many finds of a slot goes to moka instead, so that its
/// eviction policy still learns which keys are hot.
const FEED_EVERY: u32 = 64;

struct Slot {
    /// Which tier the value is of: keys repeat across caches.
    tier: u64,
    /// The tier's count of removals when the value was found.
    removals: u64,
    key: String,
    kept: Weak<Kept>,
    finds: u32,
}

thread_local! {
    static SLOTS_OF_THREAD: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's slots; `None` while the thread is being torn
/// down (a cached call from another thread-local's destructor), which then
/// goes to moka.
fn with_slots<R>(f: impl FnOnce(&mut Vec<Slot>) -> R) -> Option<R> {
    SLOTS_OF_THREAD
        .try_with(|slots| f(&mut slots.borrow_mut()))
        .ok()
}

fn slot_of(key: &str) -> usize {
    // A fixed seed is enough: a collision only shares a slot.
    FixedState::default().hash_one(key) as usize % SLOTS
}

/// The value this thread last found at `key` in `tier`, if it is still
/// kept somewhere and nothing was removed from the tier since (it has had
/// `removals`); `None` now and then, to let moka count the read.
pub(super) fn recent(tier: u64, removals: u64, key: &str) -> Option<Arc<Kept>> {
    with_slots(|slots| {
        let slot = slots.get_mut(slot_of(key))?;
        if slot.tier != tier || slot.removals != removals || slot.key != key {
            return None;
        }
        slot.finds = slot.finds.wrapping_add(1);
        if slot.finds % FEED_EVERY == 0 {
            return None;
        }
        slot.kept.upgrade()
    })
    .flatten()
}

/// Remembers that this thread found `kept` at `key` in `tier`, which had
/// had `removals` before it was looked up.
pub(super) fn remember(tier: u64, removals: u64, key: &str, kept: &Arc<Kept>) {
    with_slots(|slots| {
        if slots.is_empty() {
            slots.resize_with(SLOTS, || Slot {
                tier: 0,
                removals: 0,
                key: String::new(),
                kept: Weak::new(),
                finds: 0,
            });
        }
        let slot = &mut slots[slot_of(key)];
        if slot.tier != tier || slot.key != key {
            slot.tier = tier;
            slot.key.clear();
            slot.key.push_str(key);
        }
        slot.removals = removals;
        slot.kept = Arc::downgrade(kept);
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    use super::*;
    use crate::codec::Shared;

    fn kept(value: &Arc<Shared>) -> Arc<Kept> {
        Arc::new(Kept {
            value: Arc::clone(value),
            current_at: (0, 0),
            seen: [0, 0, 0].map(AtomicU64::new),
            until: Instant::now(),
            size: 0,
        })
    }

    #[test]
    fn a_slot_finds_what_is_kept_and_keeps_nothing_alive() {
        let value: Arc<Shared> = Arc::new(7u32);
        let kept = kept(&value);
        remember(u64::MAX, 5, "k", &kept);
        let found = (0..FEED_EVERY)
            .filter_map(|_| recent(u64::MAX, 5, "k"))
            .count();
        assert_eq!(
            found,
            FEED_EVERY as usize - 1,
            "all but the read left to moka"
        );
        assert!(recent(u64::MAX - 1, 5, "k").is_none(), "another tier's");
        assert!(recent(u64::MAX, 6, "k").is_none(), "found before a removal");
        drop(kept);
        assert!(recent(u64::MAX, 5, "k").is_none());
        assert_eq!(Arc::strong_count(&value), 1, "only this test holds it");
    }
}
