//! The embedded store: a bounded in-process map (moka) with a TTL per entry.
//!
//! moka evicts an entry when its TTL has passed in real time; the store also
//! checks each entry's expiry against its [`Clock`], which tests move forward.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;
use moka::Expiry;
use moka::ops::compute::Op;
use moka::sync::Cache as Moka;

use super::{Backend, Bytes, GENERATION_TTL, L1Read, Read, groups};
use crate::codec::{Decoded, Observed, Shared};
use crate::footprint::{allocation, moka_entry};
use crate::key::{EntryKey, is_group_generation, is_tag_generation};
use crate::{Clock, Error};

#[derive(Clone)]
struct Slot {
    bytes: Arc<[u8]>,
    /// The value decoded, for types that can be copied: a hit copies it
    /// instead of decoding the bytes.
    decoded: Option<Arc<Shared>>,
    /// What the decoded copy costs in memory (see [`weight`]).
    decoded_size: u32,
    /// In milliseconds, as Redis keeps it: with the size beside it, a slot
    /// stays 64 bytes, which every hit copies out of moka.
    ttl_ms: u64,
    expires_at: Instant,
}

const _: () = assert!(size_of::<Slot>() <= 64);

impl Slot {
    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }
}

struct SlotTtl;

impl Expiry<String, Slot> for SlotTtl {
    fn expire_after_create(&self, _: &String, slot: &Slot, _: Instant) -> Option<Duration> {
        Some(slot.ttl())
    }

    fn expire_after_update(
        &self,
        _: &String,
        slot: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.ttl())
    }
}

/// Entries and generations of this process only; used when no Redis URL is set.
pub(crate) struct MemoryStore {
    /// foldhash rather than SipHash: this lookup is most of a hit.
    slots: Moka<String, Slot, RandomState>,
    /// Functions' generations: one per function ever invalidated, read by
    /// every lookup, so kept apart from the entries and read without a lock
    /// (nor a hash, while no function was ever invalidated). They never
    /// expire, as they never need to: there are as many as functions.
    functions: ArcSwap<HashMap<String, u64, RandomState>>,
    /// Tags' generations, one per tag ever invalidated: tags may be many
    /// (one per organisation), so a change is not a copy of them all. Kept
    /// apart from the entries so that none is evicted: an evicted
    /// generation would read as never set, which entries stored before the
    /// tag's first invalidation carry.
    tags: RwLock<HashMap<String, u64, RandomState>>,
    /// Each function's shapes, and until when their entries may live: one
    /// process holds several only for a method of a generic impl.
    shapes: Mutex<HashMap<String, HashMap<String, u64>>>,
    clock: Clock,
}

/// An entry's weight against the store's byte budget: what keeping it
/// costs in memory (moka's entry and the key, the bytes, and the decoded
/// copy as [`Decoded::size`] estimates it).
fn weight(key: &str, slot: &Slot) -> u32 {
    let bytes = allocation(16 + slot.bytes.len());
    let decoded = usize::try_from(slot.decoded_size).unwrap_or(usize::MAX);
    u32::try_from(
        moka_entry(key)
            .saturating_add(bytes)
            .saturating_add(decoded),
    )
    .unwrap_or(u32::MAX)
}

impl MemoryStore {
    /// A store that keeps at most `max_bytes` of keys, values and overhead.
    pub(crate) fn new(max_bytes: u64, clock: Clock) -> MemoryStore {
        MemoryStore {
            slots: Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, slot: &Slot| weight(key, slot))
                .expire_after(SlotTtl)
                .build_with_hasher(RandomState::default()),
            functions: ArcSwap::default(),
            tags: RwLock::default(),
            shapes: Mutex::default(),
            clock,
        }
    }

    /// The live slot at `key`. moka drops what expired in real time; only
    /// a clock that was moved ahead needs the store's own check.
    fn get(&self, key: &str) -> Option<Slot> {
        let slot = self.slots.get(key)?;
        if self.clock.was_advanced() && slot.expires_at <= self.clock.now() {
            return None;
        }
        Some(slot)
    }

    fn slot(&self, bytes: Arc<[u8]>, decoded: Option<Decoded>, ttl: Duration) -> Slot {
        let (decoded, decoded_size) = match decoded {
            Some(decoded) => (Some(decoded.value), decoded.size),
            None => (None, 0),
        };
        Slot {
            bytes,
            decoded,
            decoded_size: u32::try_from(decoded_size).unwrap_or(u32::MAX),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            expires_at: self.clock.now() + ttl,
        }
    }

    fn generation_slot(&self, generation: u64) -> Slot {
        self.slot(Arc::new(generation.to_le_bytes()), None, GENERATION_TTL)
    }
}

impl MemoryStore {
    fn function_generation(&self, key: &str) -> u64 {
        let functions = self.functions.load();
        if functions.is_empty() {
            return 0;
        }
        functions.get(key).copied().unwrap_or(0)
    }

    /// What the entry at `key` records of its function's and tags'
    /// generations (see [`groups`]).
    fn groups(&self, key: &EntryKey) -> u64 {
        let function = self.function_generation(key.function_generation());
        if !key.has_tags() {
            return function;
        }
        let tags = self.tags.read().unwrap_or_else(|e| e.into_inner());
        groups(
            function,
            key.tag_generations()
                .map(|tag| tags.get(tag).copied().unwrap_or(0)),
        )
    }
}

fn decode_generation(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

impl Backend for MemoryStore {
    fn add_shape_blocking(
        &self,
        key: &str,
        shape: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<(), Error> {
        let mut functions = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        let shapes = functions.entry(key.to_owned()).or_default();
        let known = shapes.entry(shape.to_owned()).or_default();
        *known = (*known).max(until_ms);
        shapes.retain(|_, until| *until >= now_ms);
        Ok(())
    }

    fn shapes_blocking(&self, key: &str, now_ms: u64) -> Result<Vec<String>, Error> {
        let functions = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        let shapes = functions.get(key).into_iter().flatten();
        Ok(shapes
            .filter(|&(_, &until)| until >= now_ms)
            .map(|(shape, _)| shape.clone())
            .collect())
    }

    fn read_blocking(&self, key: &EntryKey, _: L1Read) -> Result<Read, Error> {
        let entry = self.get(key.entry());
        Ok(Read {
            decoded: entry.as_ref().and_then(|slot| slot.decoded.clone()),
            value: entry.map(|slot| Bytes::Shared(slot.bytes)),
            generation: key
                .generation()
                .and_then(|gen_key| self.get(gen_key))
                .and_then(|slot| decode_generation(&slot.bytes)),
            function_generation: self.groups(key),
            stamp: None,
        })
    }

    fn write_blocking(
        &self,
        key: &str,
        bytes: &[u8],
        decoded: Option<Decoded>,
        ttl: Duration,
        expected: Option<&Observed>,
    ) -> Result<bool, Error> {
        let slot = self.slot(bytes.into(), decoded, ttl);
        let now = self.clock.now();
        let mut stored = false;
        // Every write of an entry goes through moka's per-key lock, so that
        // none lands between another's check and its store.
        self.slots.entry_by_ref(key).and_compute_with(|current| {
            let current = current
                .map(|entry| entry.into_value())
                .filter(|slot| slot.expires_at > now);
            let current = current.as_ref().map(|slot| &*slot.bytes);
            if expected.is_some_and(|expected| !expected.matches(current)) {
                return Op::Nop;
            }
            stored = true;
            Op::Put(slot)
        });
        Ok(stored)
    }

    fn init_generation_blocking(&self, key: &str, candidate: u64) -> Result<Option<u64>, Error> {
        let now = self.clock.now();
        let entry = self.slots.entry_by_ref(key).or_insert_with_if(
            || self.generation_slot(candidate),
            |slot| slot.expires_at <= now,
        );
        Ok(decode_generation(&entry.value().bytes))
    }

    fn set_generation_blocking(&self, key: &str, generation: u64) -> Result<(), Error> {
        if is_tag_generation(key) {
            let mut tags = self.tags.write().unwrap_or_else(|e| e.into_inner());
            tags.insert(key.to_owned(), generation);
        } else if is_group_generation(key) {
            self.functions.rcu(|functions| {
                let mut functions = HashMap::clone(functions);
                functions.insert(key.to_owned(), generation);
                functions
            });
        } else {
            let slot = self.generation_slot(generation);
            self.slots.insert(key.to_owned(), slot);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_keeps_within_its_byte_budget() {
        let store = MemoryStore::new(64 * 1024, Clock::default());
        let value = vec![7u8; 4 * 1024];
        for i in 0..100 {
            let key = format!("entry:{i}");
            store
                .write_blocking(&key, &value, None, Duration::from_secs(60), None)
                .unwrap();
        }
        store.slots.run_pending_tasks();
        assert!(
            store.slots.weighted_size() <= 64 * 1024,
            "{} bytes kept",
            store.slots.weighted_size()
        );
        let kept = store.slots.entry_count();
        assert!(
            (1..=16).contains(&kept),
            "{kept} entries of 4 KiB in 64 KiB"
        );
    }

    #[test]
    fn an_entry_is_charged_its_key_bytes_decoded_copy_and_records() {
        let store = MemoryStore::new(1 << 20, Clock::default());
        let text = "x".repeat(1000);
        let decoded = Decoded {
            size: crate::footprint::in_arc(&text, &text),
            value: Arc::new(text),
        };
        let ttl = Duration::from_secs(60);
        let bare = store.slot(vec![1; 1000].into(), None, ttl);
        let copied = store.slot(vec![1; 1000].into(), Some(decoded.clone()), ttl);
        assert_eq!(
            weight("k", &bare),
            u32::try_from(moka_entry("k") + allocation(1016)).unwrap()
        );
        assert_eq!(
            weight("k", &copied) - weight("k", &bare),
            u32::try_from(decoded.size).unwrap(),
            "the decoded copy, as estimated: the Arc's block and the string's"
        );
        assert_eq!(decoded.size, allocation(16 + 24) + allocation(1000));
    }
}
