//! The commands the cache sends to Redis, and how their replies are read.

use std::borrow::Cow;
use std::time::Duration;

use redis::{Cmd, Pipeline, Value};

use super::gather::KEYS_PER_MGET;
use crate::backend::{Bytes, GENERATION_TTL, Read, groups};
use crate::codec::Observed;
use crate::key::EntryKey;

/// Where a lookup reads the generations of the groups its entry is in: its
/// function's and its tags', each the key itself on one node and its copy
/// in the entry's slot on a cluster.
pub(super) struct GroupKeys<'k> {
    pub(super) function: Cow<'k, str>,
    pub(super) tags: Vec<Cow<'k, str>>,
}

impl GroupKeys<'_> {
    fn iter(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&*self.function).chain(self.tags.iter().map(|tag| &**tag))
    }
}

/// `MGET` of an entry, its user's generation (which shares its hash tag
/// and so its cluster slot) and its groups' generations.
pub(super) fn read_cmd(key: &EntryKey, groups: &GroupKeys<'_>) -> Cmd {
    let size = read_keys(key, groups).map(str::len).sum::<usize>();
    let mut cmd = Cmd::with_capacity(4 + groups.tags.len(), "MGET".len() + size);
    cmd.arg("MGET");
    for read in read_keys(key, groups) {
        cmd.arg(read);
    }
    cmd
}

/// The keys a lookup reads, in the order [`read_reply`] takes them.
fn read_keys<'k>(key: &'k EntryKey, groups: &'k GroupKeys<'_>) -> impl Iterator<Item = &'k str> {
    [Some(key.entry()), key.generation()]
        .into_iter()
        .flatten()
        .chain(groups.iter())
}

/// The reply of [`read_cmd`], in its order.
pub(super) fn read_reply(key: &EntryKey, items: Vec<Option<Vec<u8>>>) -> Read {
    let mut items = items.into_iter();
    let value = items.next().flatten();
    let generation = key.generation().and_then(|_| items.next().flatten());
    let function = group_generation(items.next().flatten().as_deref());
    let tags = items.map(|tag| group_generation(tag.as_deref()));
    Read {
        value: value.map(Bytes::Received),
        generation: generation.as_deref().and_then(parse_generation),
        function_generation: groups(function, tags),
        stamp: None,
        decoded: None,
    }
}

/// A function's or a tag's generation as read: 0 if it was never
/// invalidated, and bytes that are not a generation match no entry.
pub(super) fn group_generation(bytes: Option<&[u8]>) -> u64 {
    bytes.map_or(0, |bytes| parse_generation(bytes).unwrap_or(u64::MAX))
}

/// `GET` of one key: an entry whose generations are tracked already, or a
/// function's generation.
pub(super) fn get_cmd(key: &str) -> Cmd {
    // Sized up front: `redis::cmd` grows its buffer for the key, on every hit.
    let mut cmd = Cmd::with_capacity(2, "GET".len() + key.len());
    cmd.arg("GET").arg(key);
    cmd
}

/// `MGET`s of gathered reads' entries, [`KEYS_PER_MGET`] keys each, in one
/// pipeline: its reply is one list of values per `MGET`.
pub(super) fn gathered_read<'k>(keys: impl ExactSizeIterator<Item = &'k str>) -> Pipeline {
    let mut pipeline = Pipeline::with_capacity(keys.len().div_ceil(KEYS_PER_MGET));
    let mut keys = keys.peekable();
    while keys.peek().is_some() {
        let cmd = pipeline.cmd("MGET");
        for key in keys.by_ref().take(KEYS_PER_MGET) {
            cmd.arg(key);
        }
    }
    pipeline
}

/// A read that also makes Redis track, for the connection in OPTIN mode,
/// the groups' generations, the user's if there is one, and the entry
/// itself with `track_entry` (only then: entries change too often to be
/// worth a push each). Replies: function generation, tag generations, user
/// generation if any, entry.
pub(super) fn tracked_read_pipeline(
    key: &EntryKey,
    groups: &GroupKeys<'_>,
    track_entry: bool,
) -> Pipeline {
    let mut pipeline = redis::pipe();
    let mut tracked_get = |key: &str| {
        pipeline.cmd("CLIENT").arg("CACHING").arg("YES").ignore();
        pipeline.cmd("GET").arg(key);
    };
    for group in groups.iter() {
        tracked_get(group);
    }
    if let Some(generation) = key.generation() {
        tracked_get(generation);
    }
    if track_entry {
        tracked_get(key.entry());
    } else {
        pipeline.cmd("GET").arg(key.entry());
    }
    pipeline
}

pub(super) fn parse_generation(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

pub(super) fn write_cmd(key: &str, bytes: &[u8], ttl: Duration) -> Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(bytes).arg("PX").arg(millis(ttl));
    cmd
}

/// Stores an entry: a plain `SET` without `expected`; with it, a script
/// that sets only if the key still starts with the observed bytes (nothing,
/// if nothing was observed). Reply: `OK`, or 1 if stored and 0 if not.
pub(super) fn store_cmd(
    key: &str,
    bytes: &[u8],
    ttl: Duration,
    expected: Option<&Observed>,
) -> Cmd {
    const STORE_IF: &str = "local current = redis.call('GET', KEYS[1]) \
        local seen = current and string.sub(current, 1, tonumber(ARGV[2])) or '' \
        if seen ~= ARGV[1] then return 0 end \
        redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4]) \
        return 1";
    let Some(expected) = expected else {
        return write_cmd(key, bytes, ttl);
    };
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(STORE_IF)
        .arg(1)
        .arg(key)
        .arg(expected.as_bytes())
        .arg(Observed::LEN)
        .arg(bytes)
        .arg(millis(ttl));
    cmd
}

/// Whether [`store_cmd`] stored.
pub(super) fn store_reply(reply: &Value) -> bool {
    matches!(reply, Value::Okay | Value::Int(1))
}

/// `SET NX GET` answers the existing value, or nil when it stored ours: one
/// round trip, and racing writers all end up with the same generation. It
/// needs Redis 7.0 (Valkey 7.2).
pub(super) fn init_generation_cmd(key: &str, candidate: u64) -> Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key)
        .arg(candidate)
        .arg("NX")
        .arg("GET")
        .arg("PX")
        .arg(millis(GENERATION_TTL));
    cmd
}

pub(super) fn init_generation_reply(candidate: u64, existing: Option<Vec<u8>>) -> Option<u64> {
    match existing {
        None => Some(candidate),
        Some(bytes) => parse_generation(&bytes),
    }
}

pub(super) fn set_generation_cmd(key: &str, generation: u64) -> Cmd {
    write_cmd(key, generation.to_string().as_bytes(), GENERATION_TTL)
}

/// Takes the lease at `lease`, marked `token`, if nobody holds it (`SET NX
/// PX`), then reads the entry as [`read_cmd`] does, in one script: one
/// round trip per attempt, and a value stored just before the lease was
/// taken is seen. Every key shares the entry's slot. Reply: `"1"` if taken
/// (else `"0"`), then the `MGET`'s.
pub(super) fn take_lease_cmd(
    lease: &str,
    token: u64,
    ttl: Duration,
    key: &EntryKey,
    groups: &GroupKeys<'_>,
) -> Cmd {
    const TAKE: &str = "local taken = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and '1' or '0' \
        local read = redis.call('MGET', unpack(KEYS, 2)) \
        table.insert(read, 1, taken) \
        return read";
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(TAKE)
        .arg(1 + read_keys(key, groups).count())
        .arg(lease);
    for read in read_keys(key, groups) {
        cmd.arg(read);
    }
    cmd.arg(token).arg(millis(ttl));
    cmd
}

/// The reply of [`take_lease_cmd`]: whether the lease was taken, and the read.
pub(super) fn take_lease_reply(key: &EntryKey, mut items: Vec<Option<Vec<u8>>>) -> (bool, Read) {
    let taken = !items.is_empty() && items.remove(0).as_deref() == Some(b"1");
    (taken, read_reply(key, items))
}

/// Deletes the lease at `key` only if it still holds `token`, atomically:
/// a `GET` then `DEL` from the client could delete a successor's lease
/// taken in between.
pub(super) fn release_lease_cmd(key: &str, token: u64) -> Cmd {
    const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(RELEASE).arg(1).arg(key).arg(token);
    cmd
}

/// Records `shape` in the sorted set at `key` with the time its entries
/// may live until (a score only ever raised), and drops the shapes whose
/// entries are all gone by `now_ms`: one script, so the set stays small.
pub(super) fn add_shape_cmd(key: &str, shape: &str, until_ms: u64, now_ms: u64) -> Cmd {
    const ADD: &str = "local known = redis.call('ZSCORE', KEYS[1], ARGV[1]) \
        if not known or tonumber(known) < tonumber(ARGV[2]) then \
            redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) \
        end \
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3]) \
        return 1";
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(ADD)
        .arg(1)
        .arg(key)
        .arg(shape)
        .arg(until_ms)
        .arg(now_ms);
    cmd
}

/// The shapes at `key` whose entries may still live at `now_ms`.
pub(super) fn shapes_cmd(key: &str, now_ms: u64) -> Cmd {
    let mut cmd = redis::cmd("ZRANGEBYSCORE");
    cmd.arg(key).arg(now_ms).arg("+inf");
    cmd
}

/// The server's version, from the reply to `INFO server`.
pub(super) fn server_version(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(str::trim)
}

pub(super) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
