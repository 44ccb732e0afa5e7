//! The commands the cache sends to Redis, and how their replies are read.

use std::time::Duration;

use redis::{Cmd, FromRedisValue, ParsingError, Pipeline, Value};

use crate::backend::{Bytes, GENERATION_TTL, Read};
use crate::key::EntryKey;

/// `GET` of a global entry; `MGET` of a per-user entry and its user's
/// generation, which share a hash tag and so a cluster slot.
pub(super) fn read_cmd(key: &EntryKey) -> Cmd {
    let mut cmd;
    match key.generation() {
        Some(generation) => {
            cmd = redis::cmd("MGET");
            cmd.arg(key.entry()).arg(generation);
        }
        None => {
            cmd = redis::cmd("GET");
            cmd.arg(key.entry());
        }
    }
    cmd
}

/// `GET` of an entry whose user's generation is tracked already.
pub(super) fn get_cmd(key: &str) -> Cmd {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    cmd
}

/// A per-user read that also makes Redis track the generation (and only
/// the generation: entries change too often to be worth a push each) for
/// the connection, in OPTIN mode.
pub(super) fn tracked_read_pipeline(key: &EntryKey, generation: &str) -> Pipeline {
    let mut pipeline = redis::pipe();
    pipeline
        .cmd("CLIENT")
        .arg("CACHING")
        .arg("YES")
        .ignore()
        .cmd("GET")
        .arg(generation)
        .cmd("GET")
        .arg(key.entry());
    pipeline
}

/// A global entry's read that makes Redis track the entry for the
/// connection, for the in-process tier.
pub(super) fn tracked_entry_pipeline(key: &str) -> Pipeline {
    let mut pipeline = redis::pipe();
    pipeline
        .cmd("CLIENT")
        .arg("CACHING")
        .arg("YES")
        .ignore()
        .cmd("GET")
        .arg(key);
    pipeline
}

/// The reply of [`read_cmd`]: a bulk string or nil for `GET`, an array of
/// entry and generation for `MGET`; parsed in place, without copies.
impl FromRedisValue for Read {
    fn from_redis_value(value: Value) -> Result<Read, ParsingError> {
        let bulk = |value: Option<Value>| match value {
            Some(Value::BulkString(bytes)) => Ok(Some(bytes)),
            Some(Value::Nil) | None => Ok(None),
            Some(other) => Err(ParsingError::from(format!(
                "a cache entry read as {other:?}"
            ))),
        };
        match value {
            Value::Array(items) => {
                let mut items = items.into_iter();
                let value = bulk(items.next())?;
                let generation = bulk(items.next())?;
                Ok(Read {
                    value: value.map(Bytes::Received),
                    generation: generation.as_deref().and_then(parse_generation),
                    stamp: None,
                    decoded: None,
                })
            }
            single => Ok(Read {
                value: bulk(Some(single))?.map(Bytes::Received),
                generation: None,
                stamp: None,
                decoded: None,
            }),
        }
    }
}

pub(super) fn parse_generation(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

pub(super) fn write_cmd(key: &str, bytes: &[u8], ttl: Duration) -> Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(bytes).arg("PX").arg(millis(ttl));
    cmd
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

/// The server's version, from the reply to `INFO server`.
pub(super) fn server_version(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(str::trim)
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
