//! The Redis store: one multiplexed, self-reconnecting connection for async
//! callers, a small pool of plain connections for sync callers.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, Connection, FromRedisValue, ParsingError, RedisError, Value};

use super::{Backend, Bytes, GENERATION_TTL, Read};
use crate::Error;
use crate::breaker::{Breaker, Permit};
use crate::error::{StoreError, StoreFailure};
use crate::key::EntryKey;
use crate::stats::BreakerStats;

pub(crate) struct RedisStore {
    client: Client,
    op_timeout: Duration,
    breaker: Breaker,
    multiplexed: OnceLock<ConnectionManager>,
    pool: Mutex<Vec<Connection>>,
    pool_size: usize,
}

impl RedisStore {
    /// Checks the URL; connections are opened on first use, so a server that
    /// is down at start-up is a fail-open miss, not a start-up failure.
    pub(crate) fn new(
        url: &str,
        op_timeout: Duration,
        breaker_cooldown: Duration,
        pool_size: usize,
    ) -> Result<RedisStore, Error> {
        let client = Client::open(url).map_err(|error| Error::Config {
            what: "redis_url",
            detail: format!("{url:?} is not a Redis URL ({error}); expected redis://host:port/db"),
        })?;
        Ok(RedisStore {
            client,
            op_timeout,
            breaker: Breaker::new(breaker_cooldown),
            multiplexed: OnceLock::new(),
            pool: Mutex::new(Vec::with_capacity(pool_size)),
            pool_size,
        })
    }

    /// The shared async connection, created inside the caller's runtime on first use.
    fn multiplexed(&self) -> Result<ConnectionManager, Error> {
        if let Some(manager) = self.multiplexed.get() {
            return Ok(manager.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(Some(self.op_timeout))
            .set_number_of_retries(0)
            .set_max_delay(self.op_timeout);
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(store_error)?;
        Ok(self.multiplexed.get_or_init(|| manager).clone())
    }

    /// Runs `cmd` on the shared async connection, if the breaker lets it.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        let permit = self.breaker.admit()?;
        self.query_with(permit, cmd).await
    }

    /// The connection enforces the op timeout on each reply, and again on a
    /// reconnection: no timer of ours on the hot path.
    async fn query_with<T: FromRedisValue>(&self, permit: Permit, cmd: &Cmd) -> Result<T, Error> {
        let result = match self.multiplexed() {
            Ok(mut connection) => cmd.query_async(&mut connection).await.map_err(store_error),
            Err(error) => Err(error),
        };
        self.breaker.record(permit, &result);
        result
    }

    /// Runs `cmd` on a pooled sync connection, if the breaker lets it.
    fn query_blocking<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        let permit = self.breaker.admit()?;
        self.query_blocking_with(permit, cmd)
    }

    fn query_blocking_with<T: FromRedisValue>(
        &self,
        permit: Permit,
        cmd: &Cmd,
    ) -> Result<T, Error> {
        let result = self.pooled(cmd);
        self.breaker.record(permit, &result);
        result
    }

    fn pooled<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        self.pooled_query(cmd).map_err(store_error)
    }

    fn pooled_query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut connection = match pooled {
            Some(connection) => connection,
            None => {
                let connection = self.client.get_connection_with_timeout(self.op_timeout)?;
                connection.set_read_timeout(Some(self.op_timeout))?;
                connection.set_write_timeout(Some(self.op_timeout))?;
                connection
            }
        };
        // A connection that failed may hold half a reply: it is dropped, not
        // pooled. One the server dropped means the idle ones were dropped too
        // (a restart): they go as well, so that a retry opens a fresh one.
        let reply = cmd.query(&mut connection).inspect_err(|error| {
            if error.is_connection_dropped() {
                self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
        })?;
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < self.pool_size {
            pool.push(connection);
        }
        Ok(reply)
    }

    pub(crate) fn breaker_stats(&self) -> BreakerStats {
        self.breaker.stats()
    }
}

/// Classifies a client error once, so that nothing above this store needs
/// redis-rs's types to tell an outage from an error reply.
fn store_error(error: RedisError) -> Error {
    let (kind, hint) = if error.is_connection_dropped() {
        (StoreFailure::Dropped, REACHABLE)
    } else if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() {
        (StoreFailure::Unreachable, REACHABLE)
    } else {
        (
            StoreFailure::Refused,
            "redis-server answered with this error",
        )
    };
    StoreError::new("redis", kind, hint, error).into()
}

const REACHABLE: &str = "check that redis-server is reachable at the configured URL";

fn read_cmd(key: &EntryKey) -> Cmd {
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
                })
            }
            single => Ok(Read {
                value: bulk(Some(single))?.map(Bytes::Received),
                generation: None,
            }),
        }
    }
}

fn parse_generation(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn write_cmd(key: &str, bytes: &[u8], ttl: Duration) -> Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(bytes).arg("PX").arg(millis(ttl));
    cmd
}

/// `SET NX GET` answers the existing value, or nil when it stored ours: one
/// round trip, and racing writers all end up with the same generation.
fn init_generation_cmd(key: &str, candidate: u64) -> Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key)
        .arg(candidate)
        .arg("NX")
        .arg("GET")
        .arg("PX")
        .arg(millis(GENERATION_TTL));
    cmd
}

fn init_generation_reply(candidate: u64, existing: Option<Vec<u8>>) -> Option<u64> {
    match existing {
        None => Some(candidate),
        Some(bytes) => parse_generation(&bytes),
    }
}

/// Whether the connection broke under the command, rather than the server
/// refusing, timing out or answering with an error.
fn was_dropped(error: &Error) -> bool {
    error.store_failure().is_some_and(StoreError::was_dropped)
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Backend for RedisStore {
    fn read_blocking(&self, key: &EntryKey) -> Result<Read, Error> {
        self.query_blocking(&read_cmd(key))
    }

    fn write_blocking(&self, key: &str, bytes: &[u8], ttl: Duration) -> Result<(), Error> {
        self.query_blocking(&write_cmd(key, bytes, ttl))
    }

    fn init_generation_blocking(&self, key: &str, candidate: u64) -> Result<Option<u64>, Error> {
        let existing = self.query_blocking(&init_generation_cmd(key, candidate))?;
        Ok(init_generation_reply(candidate, existing))
    }

    /// Tried even while the circuit is open: an invalidation is never
    /// skipped, and its success shows Redis is back. Retried once on a
    /// connection that turned out dead (a restarted server): the write is
    /// idempotent, and the retry runs on a fresh connection.
    fn set_generation_blocking(&self, key: &str, generation: u64) -> Result<(), Error> {
        let cmd = write_cmd(key, generation.to_string().as_bytes(), GENERATION_TTL);
        match self.query_blocking_with(Permit::Always, &cmd) {
            Err(error) if was_dropped(&error) => self.query_blocking_with(Permit::Always, &cmd),
            result => result,
        }
    }

    async fn read(&self, key: &EntryKey) -> Result<Read, Error> {
        self.query(&read_cmd(key)).await
    }

    async fn write(&self, key: &str, bytes: &[u8], ttl: Duration) -> Result<(), Error> {
        self.query(&write_cmd(key, bytes, ttl)).await
    }

    async fn init_generation(&self, key: &str, candidate: u64) -> Result<Option<u64>, Error> {
        let existing = self.query(&init_generation_cmd(key, candidate)).await?;
        Ok(init_generation_reply(candidate, existing))
    }

    async fn set_generation(&self, key: &str, generation: u64) -> Result<(), Error> {
        let cmd = write_cmd(key, generation.to_string().as_bytes(), GENERATION_TTL);
        match self.query_with(Permit::Always, &cmd).await {
            Err(error) if was_dropped(&error) => self.query_with(Permit::Always, &cmd).await,
            result => result,
        }
    }
}
