//! The keys Redis tracks for this process (RESP3 `CLIENT TRACKING`): what
//! it last read at each, kept until Redis says the key changed or the
//! connection that read it is gone.
//!
//! A read and the push that invalidates it travel on one connection, but
//! they are handled by different tasks: the reply wakes the caller, the
//! push runs the handler. So a reply can be handled after the push that
//! voids it. Each read therefore leaves a [`Slot::Reading`] marker before
//! it is sent; a push (or a lost connection) removes the marker, and the
//! reply is kept only if its own marker is still there.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;

/// What this process knows of one tracked key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A read is on its way; the number tells it from later reads.
    Reading(u64),
    /// The key held this (a generation, or a stamp of an entry's bytes)
    /// when it was read, and Redis has not said it changed since.
    Known(u64),
}

/// Keyed with foldhash: a hit looks up two or three keys here, and SipHash
/// was a fifth of an in-process hit; the keys hold user ids and arguments,
/// so the hash stays seeded per process.
type Slots = HashMap<Box<str>, Slot, RandomState>;

/// Some of the keys, and how often one of them was forgotten: a reader
/// that saw the count before its round trip and sees it unchanged after
/// knows, without taking the lock again, that its key was not forgotten.
///
/// The count goes up after the change it counts is made, and a reader
/// takes it before it reads the slots: a reader that sees a count has seen
/// every change counted in it. (Counting first would let a reader of the
/// swapped map, which takes no lock, pair the new count with the old map:
/// a mark that vouches for a value already forgotten.)
#[derive(Default)]
struct Shard {
    slots: ShardSlots,
    forgotten: AtomicU64,
}

/// A shard's map: behind a lock, or, for the few keys that nearly every
/// call reads (function generations), replaced whole on each change and
/// read without a lock, so that hits on many cores share no written line.
enum ShardSlots {
    Locked(RwLock<Slots>),
    Swapped(ArcSwap<Slots>, Mutex<()>),
}

impl Default for ShardSlots {
    fn default() -> Self {
        ShardSlots::Locked(RwLock::default())
    }
}

impl Shard {
    fn swapped() -> Shard {
        Shard {
            slots: ShardSlots::Swapped(ArcSwap::default(), Mutex::new(())),
            forgotten: AtomicU64::new(0),
        }
    }

    fn read<R>(&self, read: impl FnOnce(&Slots) -> R) -> R {
        match &self.slots {
            ShardSlots::Locked(slots) => read(&slots.read().unwrap_or_else(|p| p.into_inner())),
            ShardSlots::Swapped(slots, _) => read(&slots.load()),
        }
    }

    /// Counts a change that made a known key unknown, once the change can
    /// be seen (see [`Shard`]).
    fn count_forgotten(&self) {
        self.forgotten.fetch_add(1, SeqCst);
    }

    fn write<R>(&self, write: impl FnOnce(&mut Slots) -> R) -> R {
        match &self.slots {
            ShardSlots::Locked(slots) => {
                write(&mut slots.write().unwrap_or_else(|p| p.into_inner()))
            }
            ShardSlots::Swapped(slots, writer) => {
                let _writer = writer.lock().unwrap_or_else(|p| p.into_inner());
                let mut copy = Slots::clone(&slots.load());
                let result = write(&mut copy);
                slots.store(Arc::new(copy));
                result
            }
        }
    }
}

/// Where a known value was read: its shard and that shard's forget count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    shard: usize,
    forgotten: u64,
}

/// A [`Mark`] in one word: the shard plus one in the top bits (so that no
/// mark is 0), the forget count in the rest, which it never outgrows.
const SHARD_SHIFT: u32 = 58;
const FORGOTTEN_BITS: u64 = (1 << SHARD_SHIFT) - 1;

impl Mark {
    /// The mark as one word, for [`TrackedKeys::unchanged_word`].
    pub(crate) fn word(self) -> u64 {
        ((self.shard as u64 + 1) << SHARD_SHIFT) | (self.forgotten & FORGOTTEN_BITS)
    }

    /// The mark a [`word`](Self::word) holds; `None` for a word that is none.
    fn of_word(word: u64) -> Option<Mark> {
        let shard = ((word >> SHARD_SHIFT) as usize).checked_sub(1)?;
        Some(Mark {
            shard,
            forgotten: word & FORGOTTEN_BITS,
        })
    }
}

/// A read in progress, to hand back with what it read.
#[derive(Debug)]
#[must_use = "a read that is not finished leaves its marker until the key changes"]
pub(crate) struct Ticket(u64);

/// The tracked keys of one connection's lifetime, sharded so that hits
/// from many tasks rarely share a lock.
pub(crate) struct TrackedKeys {
    /// [`SHARDS`] locked shards, then the swapped one.
    shards: Box<[Shard]>,
    hasher: RandomState,
    /// Which keys go to the swapped shard.
    is_hot: fn(&str) -> bool,
    tickets: AtomicU64,
    /// Replies dropped because their key changed while they travelled.
    races: AtomicU64,
}

const SHARDS: usize = 32;

/// Keys tracked at most, per shard: Redis's default tracking table holds a
/// million keys for all clients; beyond this a read is simply not kept.
const MAX_PER_SHARD: usize = 1_000_000 / SHARDS;

impl TrackedKeys {
    /// A table whose keys for which `is_hot` holds are read by nearly every
    /// call and change seldom.
    pub(crate) fn new(is_hot: fn(&str) -> bool) -> TrackedKeys {
        let mut shards: Vec<Shard> = (0..SHARDS).map(|_| Shard::default()).collect();
        shards.push(Shard::swapped());
        TrackedKeys {
            shards: shards.into(),
            hasher: RandomState::default(),
            is_hot,
            tickets: AtomicU64::new(0),
            races: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &str) -> &Shard {
        &self.shards[self.shard_index(key)]
    }

    fn shard_index(&self, key: &str) -> usize {
        if (self.is_hot)(key) {
            SHARDS
        } else {
            self.hasher.hash_one(key) as usize % SHARDS
        }
    }

    /// What `key` held when last read, if Redis tracks it for us still.
    pub(crate) fn known(&self, key: &str) -> Option<u64> {
        self.known_marked(key).map(|(value, _)| value)
    }

    /// [`known`](Self::known), with a mark to ask [`unchanged`](Self::unchanged) later.
    pub(crate) fn known_marked(&self, key: &str) -> Option<(u64, Mark)> {
        self.known_marked_in(self.shard_index(key), key)
    }

    /// [`known_marked`](Self::known_marked) for a key the caller knows to be
    /// hot: asking which shard it is in was a third of the lookup.
    pub(crate) fn known_marked_hot(&self, key: &str) -> Option<(u64, Mark)> {
        debug_assert!((self.is_hot)(key), "{key} is not hot");
        self.known_marked_in(SHARDS, key)
    }

    fn known_marked_in(&self, at: usize, key: &str) -> Option<(u64, Mark)> {
        let shard = &self.shards[at];
        let forgotten = shard.forgotten.load(SeqCst);
        shard.read(|slots| match slots.get(key) {
            Some(Slot::Known(value)) => Some((
                *value,
                Mark {
                    shard: at,
                    forgotten,
                },
            )),
            _ => None,
        })
    }

    /// Whether no key of the marked shard was forgotten since the mark:
    /// then a value known at the mark is known still.
    pub(crate) fn unchanged(&self, mark: Mark) -> bool {
        let forgotten = self.shards[mark.shard].forgotten.load(SeqCst);
        forgotten & FORGOTTEN_BITS == mark.forgotten & FORGOTTEN_BITS
    }

    /// [`unchanged`](Self::unchanged) for a [`Mark::word`]; any other word
    /// is not.
    pub(crate) fn unchanged_word(&self, word: u64) -> bool {
        Mark::of_word(word)
            .is_some_and(|mark| mark.shard < self.shards.len() && self.unchanged(mark))
    }

    /// Marks a read of `key` as under way; `None` if the table is full.
    pub(crate) fn begin(&self, key: &str) -> Option<Ticket> {
        let ticket = self.tickets.fetch_add(1, Relaxed);
        let shard = self.shard(key);
        let was_known = shard.write(|slots| {
            if slots.len() >= MAX_PER_SHARD && !slots.contains_key(key) {
                return None;
            }
            let previous = slots.insert(key.into(), Slot::Reading(ticket));
            Some(matches!(previous, Some(Slot::Known(_))))
        })?;
        // A known value stops being known here, as when it is forgotten:
        // a mark taken while it was known must not vouch for what the read
        // brings (on a cluster, its push may come after its reply).
        if was_known {
            shard.count_forgotten();
        }
        Some(Ticket(ticket))
    }

    /// Keeps `value` as what `key` holds, unless the key changed (or
    /// another read of it began) since `ticket` was taken.
    pub(crate) fn finish(&self, key: &str, ticket: Ticket, value: u64) -> bool {
        let kept = self.shard(key).write(|slots| match slots.get_mut(key) {
            Some(slot) if *slot == Slot::Reading(ticket.0) => {
                *slot = Slot::Known(value);
                true
            }
            _ => false,
        });
        if !kept {
            self.races.fetch_add(1, Relaxed);
        }
        kept
    }

    /// Forgets `key`: it changed, or this process changed it.
    pub(crate) fn forget(&self, key: &str) {
        let shard = self.shard(key);
        shard.write(|slots| slots.remove(key));
        shard.count_forgotten();
    }

    /// Forgets every key: the connection that read them is gone, or the
    /// server was flushed.
    pub(crate) fn forget_all(&self) {
        for shard in &self.shards {
            shard.write(|slots| slots.clear());
            shard.count_forgotten();
        }
    }

    /// How many keys are known now.
    pub(crate) fn len(&self) -> u64 {
        let known = |shard: &Shard| {
            shard.read(|slots| {
                slots
                    .values()
                    .filter(|slot| matches!(slot, Slot::Known(_)))
                    .count() as u64
            })
        };
        self.shards.iter().map(known).sum()
    }

    /// Replies dropped because their key changed while they travelled.
    pub(crate) fn races(&self) -> u64 {
        self.races.load(Relaxed)
    }
}

/// A stamp for one tracked read of an entry: unique in the process, so
/// that a value kept beside it matches only that read.
pub(crate) fn stamp() -> u64 {
    static STAMPS: AtomicU64 = AtomicU64::new(1);
    STAMPS.fetch_add(1, Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_handled_after_the_push_for_its_key_is_not_kept() {
        let keys = TrackedKeys::new(|_| false);
        let ticket = keys.begin("g").unwrap();
        // The push that voids the read is handled before its reply.
        keys.forget("g");
        assert!(!keys.finish("g", ticket, 7));
        assert_eq!(keys.known("g"), None);
        assert_eq!(keys.races(), 1);
    }

    #[test]
    fn a_reply_handled_after_the_connection_was_lost_is_not_kept() {
        let keys = TrackedKeys::new(|_| false);
        let ticket = keys.begin("g").unwrap();
        keys.forget_all();
        assert!(!keys.finish("g", ticket, 7));
        assert_eq!(keys.known("g"), None);
    }

    #[test]
    fn of_two_overlapping_reads_only_the_later_is_kept() {
        let keys = TrackedKeys::new(|_| false);
        let first = keys.begin("g").unwrap();
        let second = keys.begin("g").unwrap();
        assert!(!keys.finish("g", first, 1));
        assert!(keys.finish("g", second, 2));
        assert_eq!(keys.known("g"), Some(2));
    }

    #[test]
    fn a_mark_tells_whether_its_shard_forgot_anything_since() {
        let keys = TrackedKeys::new(|_| false);
        let ticket = keys.begin("g").unwrap();
        keys.finish("g", ticket, 7);
        let (value, mark) = keys.known_marked("g").unwrap();
        assert_eq!(value, 7);
        assert!(keys.unchanged(mark));
        keys.forget("g");
        assert!(
            !keys.unchanged(mark),
            "the push for the key came in between"
        );
    }

    #[test]
    fn a_new_read_of_a_known_key_voids_its_marks() {
        let keys = TrackedKeys::new(|_| false);
        let ticket = keys.begin("g").unwrap();
        keys.finish("g", ticket, 7);
        let (_, mark) = keys.known_marked("g").unwrap();
        let ticket = keys.begin("g").unwrap();
        assert!(!keys.unchanged(mark), "no longer known");
        keys.finish("g", ticket, 8);
        assert!(!keys.unchanged(mark), "known again, maybe as another value");
    }

    #[test]
    fn a_mark_in_one_word_says_the_same() {
        let keys = TrackedKeys::new(|key| key.starts_with("hot"));
        for key in ["g", "hot:f"] {
            let ticket = keys.begin(key).unwrap();
            keys.finish(key, ticket, 7);
            let (_, mark) = keys.known_marked(key).unwrap();
            assert!(keys.unchanged_word(mark.word()), "{key}");
            keys.forget(key);
            assert!(!keys.unchanged_word(mark.word()), "{key} forgotten");
        }
        assert!(!keys.unchanged_word(0), "no mark");
        assert!(!keys.unchanged_word(u64::MAX), "no shard");
    }

    #[test]
    fn hot_keys_follow_the_same_rules() {
        let keys = TrackedKeys::new(|key| key.starts_with("hot"));
        let ticket = keys.begin("hot:f").unwrap();
        keys.forget("hot:f");
        assert!(!keys.finish("hot:f", ticket, 1), "the push came first");
        let ticket = keys.begin("hot:f").unwrap();
        assert!(keys.finish("hot:f", ticket, 2));
        let (value, mark) = keys.known_marked("hot:f").unwrap();
        assert_eq!(value, 2);
        keys.forget("cold");
        assert!(keys.unchanged(mark), "other keys do not disturb it");
        keys.forget("hot:f");
        assert!(!keys.unchanged(mark));
        assert_eq!(keys.known("hot:f"), None);
    }

    #[test]
    fn a_push_after_the_reply_forgets_the_value() {
        let keys = TrackedKeys::new(|_| false);
        let ticket = keys.begin("g").unwrap();
        assert!(keys.finish("g", ticket, 7));
        assert_eq!((keys.known("g"), keys.len()), (Some(7), 1));
        keys.forget("g");
        assert_eq!((keys.known("g"), keys.len()), (None, 0));
    }
}
