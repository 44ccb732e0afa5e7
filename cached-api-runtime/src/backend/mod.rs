//! Stores that move bytes under keys: the seam between the cache logic and
//! where entries live. Backends know no user types and no escaping.

mod memory;
mod redis;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use self::memory::MemoryStore;
pub(crate) use self::redis::RedisStore;
use crate::Error;
use crate::codec::{Decoded, Observed, Shared};
use crate::key::EntryKey;
use crate::l1::Seen;
use crate::stats::{BreakerStats, TrackingStats};

/// How long a user's generation outlives its last change. Entries are
/// checked against it, so when it expires they become misses: nothing stale
/// is ever served, and idle users cost no memory forever.
pub(crate) const GENERATION_TTL: Duration = Duration::from_secs(30 * 86_400);

/// What one lookup returns: the entry's bytes and, for per-user entries,
/// the user's current generation, read together in one round trip.
#[derive(Debug, Default)]
pub(crate) struct Read {
    pub(crate) value: Option<Bytes>,
    pub(crate) generation: Option<u64>,
    /// The function's generation (0 until the function is first
    /// invalidated), mixed with its tags' when the entry has tags (see
    /// [`groups`]).
    pub(crate) function_generation: u64,
    /// For a global entry read with tracking: the stamp this read left in
    /// the tracked keys, current until the entry changes.
    pub(crate) stamp: Option<u64>,
    /// The entry's value already decoded, from a store that keeps it.
    pub(crate) decoded: Option<Arc<Shared>>,
}

impl Read {
    /// A read that found nothing.
    pub(crate) fn nothing() -> Read {
        Read {
            value: None,
            generation: None,
            function_generation: 0,
            stamp: None,
            decoded: None,
        }
    }
}

/// What an entry records of the groups it is in: its function's generation,
/// mixed with each of its tags' generations in turn (0 for a tag never
/// invalidated). Each step is a bijection of the stamp so far, so a change
/// of any one generation changes the result; an entry without tags records
/// its function's generation as it is, as before tags existed.
pub(crate) fn groups(function: u64, tags: impl IntoIterator<Item = u64>) -> u64 {
    tags.into_iter().fold(function, |stamp, tag| {
        (stamp ^ tag)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29)
    })
}

/// What the values a function keeps in the in-process tier depend on, so
/// what a read must leave tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L1Read {
    /// The function keeps no values in this process.
    Off,
    /// The entry's generations: a per-user entry's value changes only with them.
    Generations,
    /// The entry too: a global entry (whose value changes when it is
    /// rewritten), or one of a function whose entries are dropped one by one.
    Entry,
}

/// What the in-process tier checks a value against for an entry read at
/// `user` (0 for global entries) whose tracked read left `stamp`.
pub(crate) fn with_entry(user: u64, stamp: u64) -> u64 {
    user ^ stamp.rotate_left(32)
}

/// An entry's bytes as the store hands them over: received from Redis, or
/// shared with the embedded store without a copy.
#[derive(Debug)]
pub(crate) enum Bytes {
    Received(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Received(bytes) => bytes,
            Bytes::Shared(bytes) => bytes,
        }
    }
}

/// The operations the cache needs from a store.
///
/// Each has a blocking form, for sync functions, and an async form; the
/// async forms default to the blocking ones for stores that never wait.
pub(crate) trait Backend: Send + Sync {
    /// Reads the entry and, if the key has one, the user's generation;
    /// with `l1`, for a function with the in-process tier, also asks to be
    /// told when what its values depend on changes.
    fn read_blocking(&self, key: &EntryKey, l1: L1Read) -> Result<Read, Error>;
    /// Stores `bytes` under `key`, expiring after `ttl`, in one command,
    /// unless `expected` is given and the key no longer holds what was
    /// observed there: whether it stored them. A store in this process may
    /// keep `decoded` beside them.
    fn write_blocking(
        &self,
        key: &str,
        bytes: &[u8],
        decoded: Option<Decoded>,
        ttl: Duration,
        expected: Option<&Observed>,
    ) -> Result<bool, Error>;
    /// Returns the generation stored at `key`, storing `candidate` first if
    /// there is none. `None` if what is stored is not a generation.
    fn init_generation_blocking(&self, key: &str, candidate: u64) -> Result<Option<u64>, Error>;
    /// Replaces the generation at `key`: an invalidation, `Ok` once it is
    /// as safe from a failover as the store was asked to make it.
    fn set_generation_blocking(&self, key: &str, generation: u64) -> Result<(), Error>;
    /// Replaces whatever `key` holds with `tombstone`, kept for `ttl`: an
    /// invalidation, `Ok` as for [`set_generation_blocking`](Self::set_generation_blocking).
    fn write_tombstone_blocking(
        &self,
        key: &str,
        tombstone: &[u8],
        ttl: Duration,
    ) -> Result<(), Error> {
        self.write_blocking(key, tombstone, None, ttl, None)
            .map(drop)
    }
    /// Takes the lease at `key` for `ttl`, marked `token`, unless someone
    /// holds it, and reads `entry` as [`read_blocking`](Self::read_blocking)
    /// does, after: whether it was taken, and the read. A store in one
    /// process grants every lease and reads nothing: single-flight already
    /// made its caller the only one.
    fn take_lease_blocking(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
        entry: &EntryKey,
    ) -> Result<(bool, Read), Error> {
        let _ = (key, token, ttl, entry);
        Ok((true, Read::nothing()))
    }
    /// Drops the lease at `key` if it still holds `token`: a holder whose
    /// lease expired never drops its successor's.
    fn release_lease_blocking(&self, key: &str, token: u64) -> Result<(), Error> {
        let _ = (key, token);
        Ok(())
    }

    /// Records at `key` (a function's set of shapes) that entries of
    /// `shape` may live until `until_ms`, and forgets the shapes whose
    /// entries are all gone by `now_ms`.
    fn add_shape_blocking(
        &self,
        key: &str,
        shape: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<(), Error>;
    /// The shapes recorded at `key` whose entries may live at `now_ms`.
    /// Always tried, as invalidations are.
    fn shapes_blocking(&self, key: &str, now_ms: u64) -> Result<Vec<String>, Error>;

    fn add_shape(
        &self,
        key: &str,
        shape: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        std::future::ready(self.add_shape_blocking(key, shape, until_ms, now_ms))
    }
    fn shapes(
        &self,
        key: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send {
        std::future::ready(self.shapes_blocking(key, now_ms))
    }
    fn read(&self, key: &EntryKey, l1: L1Read) -> impl Future<Output = Result<Read, Error>> + Send {
        std::future::ready(self.read_blocking(key, l1))
    }
    fn write(
        &self,
        key: &str,
        bytes: &[u8],
        decoded: Option<Decoded>,
        ttl: Duration,
        expected: Option<&Observed>,
    ) -> impl Future<Output = Result<bool, Error>> + Send {
        std::future::ready(self.write_blocking(key, bytes, decoded, ttl, expected))
    }
    fn init_generation(
        &self,
        key: &str,
        candidate: u64,
    ) -> impl Future<Output = Result<Option<u64>, Error>> + Send {
        std::future::ready(self.init_generation_blocking(key, candidate))
    }
    fn set_generation(
        &self,
        key: &str,
        generation: u64,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        std::future::ready(self.set_generation_blocking(key, generation))
    }
    fn write_tombstone(
        &self,
        key: &str,
        tombstone: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        std::future::ready(self.write_tombstone_blocking(key, tombstone, ttl))
    }
    fn take_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
        entry: &EntryKey,
    ) -> impl Future<Output = Result<(bool, Read), Error>> + Send {
        std::future::ready(self.take_lease_blocking(key, token, ttl, entry))
    }
    fn release_lease(
        &self,
        key: &str,
        token: u64,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        std::future::ready(self.release_lease_blocking(key, token))
    }
}

/// The store a [`Cache`](crate::Cache) was built with.
#[expect(
    clippy::large_enum_variant,
    reason = "one per cache, behind its Arc: boxing would add a hop to every call"
)]
pub(crate) enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    /// The circuit breaker's counts; the embedded store has none.
    pub(crate) fn breaker_stats(&self) -> BreakerStats {
        match self {
            Store::Memory(_) => BreakerStats::default(),
            Store::Redis(store) => store.breaker_stats(),
        }
    }

    /// Whether the store keeps decoded values beside their bytes: it is in
    /// this process.
    pub(crate) fn keeps_decoded(&self) -> bool {
        matches!(self, Store::Memory(_))
    }

    /// What a value kept in the in-process tier for `key` must have been
    /// computed at to be current: the tracked generations (or the stamp of
    /// a global entry's tracked read); always `None` on the embedded store.
    pub(crate) fn current(&self, key: &EntryKey, l1: L1Read) -> Option<((u64, u64), Seen)> {
        match self {
            Store::Memory(_) => None,
            Store::Redis(store) => store.current(key, l1),
        }
    }

    /// Whether what [`current`](Self::current) saw as `seen` holds still,
    /// known without looking the keys up again.
    pub(crate) fn unchanged(&self, seen: &Seen) -> bool {
        match self {
            Store::Memory(_) => false,
            Store::Redis(store) => store.unchanged(seen),
        }
    }

    /// Client-side tracking's counts; the embedded store has none.
    pub(crate) fn tracking_stats(&self) -> TrackingStats {
        match self {
            Store::Memory(_) => TrackingStats::default(),
            Store::Redis(store) => store.tracking_stats(),
        }
    }
}

/// Forwards each operation to the store variant, without boxing futures.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Memory($store) => $call,
            Store::Redis($store) => $call,
        }
    };
}

impl Backend for Store {
    fn read_blocking(&self, key: &EntryKey, l1: L1Read) -> Result<Read, Error> {
        dispatch!(self, s => s.read_blocking(key, l1))
    }
    fn write_blocking(
        &self,
        key: &str,
        bytes: &[u8],
        decoded: Option<Decoded>,
        ttl: Duration,
        expected: Option<&Observed>,
    ) -> Result<bool, Error> {
        dispatch!(self, s => s.write_blocking(key, bytes, decoded, ttl, expected))
    }
    fn init_generation_blocking(&self, key: &str, candidate: u64) -> Result<Option<u64>, Error> {
        dispatch!(self, s => s.init_generation_blocking(key, candidate))
    }
    fn set_generation_blocking(&self, key: &str, generation: u64) -> Result<(), Error> {
        dispatch!(self, s => s.set_generation_blocking(key, generation))
    }
    async fn read(&self, key: &EntryKey, l1: L1Read) -> Result<Read, Error> {
        dispatch!(self, s => s.read(key, l1).await)
    }
    async fn write(
        &self,
        key: &str,
        bytes: &[u8],
        decoded: Option<Decoded>,
        ttl: Duration,
        expected: Option<&Observed>,
    ) -> Result<bool, Error> {
        dispatch!(self, s => s.write(key, bytes, decoded, ttl, expected).await)
    }
    async fn init_generation(&self, key: &str, candidate: u64) -> Result<Option<u64>, Error> {
        dispatch!(self, s => s.init_generation(key, candidate).await)
    }
    async fn set_generation(&self, key: &str, generation: u64) -> Result<(), Error> {
        dispatch!(self, s => s.set_generation(key, generation).await)
    }
    fn write_tombstone_blocking(
        &self,
        key: &str,
        tombstone: &[u8],
        ttl: Duration,
    ) -> Result<(), Error> {
        dispatch!(self, s => s.write_tombstone_blocking(key, tombstone, ttl))
    }
    async fn write_tombstone(
        &self,
        key: &str,
        tombstone: &[u8],
        ttl: Duration,
    ) -> Result<(), Error> {
        dispatch!(self, s => s.write_tombstone(key, tombstone, ttl).await)
    }
    fn take_lease_blocking(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
        entry: &EntryKey,
    ) -> Result<(bool, Read), Error> {
        dispatch!(self, s => s.take_lease_blocking(key, token, ttl, entry))
    }
    fn release_lease_blocking(&self, key: &str, token: u64) -> Result<(), Error> {
        dispatch!(self, s => s.release_lease_blocking(key, token))
    }
    async fn take_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
        entry: &EntryKey,
    ) -> Result<(bool, Read), Error> {
        dispatch!(self, s => s.take_lease(key, token, ttl, entry).await)
    }
    async fn release_lease(&self, key: &str, token: u64) -> Result<(), Error> {
        dispatch!(self, s => s.release_lease(key, token).await)
    }
    fn add_shape_blocking(
        &self,
        key: &str,
        shape: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<(), Error> {
        dispatch!(self, s => s.add_shape_blocking(key, shape, until_ms, now_ms))
    }
    fn shapes_blocking(&self, key: &str, now_ms: u64) -> Result<Vec<String>, Error> {
        dispatch!(self, s => s.shapes_blocking(key, now_ms))
    }
    async fn add_shape(
        &self,
        key: &str,
        shape: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<(), Error> {
        dispatch!(self, s => s.add_shape(key, shape, until_ms, now_ms).await)
    }
    async fn shapes(&self, key: &str, now_ms: u64) -> Result<Vec<String>, Error> {
        dispatch!(self, s => s.shapes(key, now_ms).await)
    }
}
