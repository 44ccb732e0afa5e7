//! The embedded store: a bounded in-process map (moka) with a TTL per entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache as Moka;

use super::{Backend, GENERATION_TTL, Read};
use crate::Error;
use crate::key::EntryKey;

#[derive(Clone)]
struct Slot {
    bytes: Arc<[u8]>,
    ttl: Duration,
}

struct SlotTtl;

impl Expiry<String, Slot> for SlotTtl {
    fn expire_after_create(&self, _: &String, slot: &Slot, _: Instant) -> Option<Duration> {
        Some(slot.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        slot: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.ttl)
    }
}

/// Entries and generations of this process only; used when no Redis URL is set.
pub(crate) struct MemoryStore {
    slots: Moka<String, Slot>,
}

impl MemoryStore {
    pub(crate) fn new(capacity: u64) -> MemoryStore {
        MemoryStore {
            slots: Moka::builder()
                .max_capacity(capacity)
                .expire_after(SlotTtl)
                .build(),
        }
    }

    fn generation_at(&self, key: &str) -> Option<u64> {
        self.slots
            .get(key)
            .and_then(|slot| decode_generation(&slot.bytes))
    }
}

fn decode_generation(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn generation_slot(generation: u64) -> Slot {
    Slot {
        bytes: Arc::new(generation.to_le_bytes()),
        ttl: GENERATION_TTL,
    }
}

impl Backend for MemoryStore {
    fn read_blocking(&self, key: &EntryKey) -> Result<Read, Error> {
        Ok(Read {
            value: self.slots.get(key.entry()).map(|slot| slot.bytes.to_vec()),
            generation: key
                .generation()
                .and_then(|gen_key| self.generation_at(gen_key)),
        })
    }

    fn write_blocking(&self, key: &str, bytes: &[u8], ttl: Duration) -> Result<(), Error> {
        let slot = Slot {
            bytes: bytes.into(),
            ttl,
        };
        self.slots.insert(key.to_owned(), slot);
        Ok(())
    }

    fn init_generation_blocking(&self, key: &str, candidate: u64) -> Result<Option<u64>, Error> {
        let entry = self
            .slots
            .entry_by_ref(key)
            .or_insert_with(|| generation_slot(candidate));
        Ok(decode_generation(&entry.value().bytes))
    }

    fn set_generation_blocking(&self, key: &str, generation: u64) -> Result<(), Error> {
        self.slots
            .insert(key.to_owned(), generation_slot(generation));
        Ok(())
    }
}
