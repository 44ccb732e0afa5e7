//! The Redis store, on one node or a cluster: the cache's operations as
//! commands, each admitted by the circuit of the part of the store it goes
//! to, and failures classified once so that nothing above needs redis-rs.

mod command;
mod gather;
mod link;
mod replicas;
mod tracking;

use std::borrow::Cow;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::Poll;
use std::time::Duration;

use redis::{Cmd, FromRedisValue, RedisError, RedisResult, Value};

use self::command::{
    GroupKeys, add_shape_cmd, group_generation, init_generation_cmd, init_generation_reply, millis,
    parse_generation, read_cmd, read_reply, release_lease_cmd, server_version, set_generation_cmd,
    shapes_cmd, store_cmd, store_reply, take_lease_cmd, take_lease_reply, tracked_read_pipeline,
    write_cmd,
};
use self::link::{Link, Request, Tracked};
use self::replicas::Replicas;
use self::tracking::{Mark, Ticket, TrackedKeys, stamp};
use super::{Backend, Bytes, L1Read, Read, with_entry};
use crate::Error;
use crate::breaker::{Breaker, Breakers, Permit};
use crate::codec::{Decoded, Observed};
use crate::config::{Config, RedisTarget};
use crate::error::{StoreError, StoreFailure};
use crate::key::{EntryKey, SLOTS, cluster_slot, in_slot, is_group_generation};
use crate::l1::Seen;
use crate::stats::{BreakerStats, TrackingStats};

pub(crate) struct RedisStore {
    link: Link,
    breakers: Breakers,
    op_timeout: Duration,
    /// Whether the server's refusal of this client was logged already.
    rejection_reported: AtomicBool,
    /// Whether a server too old for `SET … NX GET` was logged already.
    old_server_reported: AtomicBool,
    replicas: Replicas,
    /// Whether a server that would not list its replicas was logged already.
    replicas_refusal_reported: AtomicBool,
}

impl RedisStore {
    /// Checks the configuration; connections are opened on first use, so a
    /// server that is down at start-up is a fail-open miss, not a start-up
    /// failure.
    pub(crate) fn new(target: &RedisTarget, config: &Config) -> Result<RedisStore, Error> {
        #[cfg(feature = "tls")]
        {
            // rustls needs a crypto provider; another crate may have chosen
            // one for the process already, and then that one is used.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let link = Link::new(target, config)?;
        Ok(RedisStore {
            breakers: Breakers::new(config.breaker_cooldown, link.is_cluster()),
            replicas: Replicas::new(config.replica_acks, link.is_cluster()),
            replicas_refusal_reported: AtomicBool::new(false),
            link,
            op_timeout: config.op_timeout,
            rejection_reported: AtomicBool::new(false),
            old_server_reported: AtomicBool::new(false),
        })
    }

    pub(crate) fn breaker_stats(&self) -> BreakerStats {
        self.breakers.stats()
    }

    pub(crate) fn tracking_stats(&self) -> TrackingStats {
        let Some(tracked) = self.link.tracked() else {
            return TrackingStats::default();
        };
        TrackingStats {
            tracked_keys: tracked.keys().len(),
            races: tracked.keys().races(),
        }
    }

    /// Reads an entry on the tracked connection: only the entry when every
    /// generation it depends on is tracked already, else those too, leaving
    /// them tracked (and the entry itself, with `track_entry`).
    async fn read_tracked(
        &self,
        tracked: Tracked<'_>,
        key: &EntryKey,
        track_entry: bool,
    ) -> Result<Read, RedisError> {
        let keys = tracked.keys();
        let groups = self.group_keys(key);
        let known_function = self.known_function(keys, &groups.function);
        let known_tags: Vec<Option<(u64, Mark)>> = groups
            .tags
            .iter()
            .map(|tag| keys.known_marked(tag))
            .collect();
        let known_user = match key.generation() {
            Some(user_key) => keys
                .known_marked(user_key)
                .map(|known| Some((user_key, known))),
            None => Some(None),
        };
        if tracked.ordered()
            && !track_entry
            && let (Some(function), Some(user)) = (known_function, known_user)
            && known_tags.iter().all(Option::is_some)
        {
            let value = tracked.get(key.entry()).await?;
            // A change Redis made before answering was pushed ahead of the
            // reply and has been applied: a generation is still current if
            // it is still known.
            let current = |key: &str, (value, mark): (u64, Mark)| {
                keys.unchanged(mark) || keys.known(key) == Some(value)
            };
            let tags = groups
                .tags
                .iter()
                .zip(&known_tags)
                .flat_map(|(tag, known)| known.map(|known| (&**tag, known)));
            if current(&groups.function, function)
                && tags.clone().all(|(tag, known)| current(tag, known))
                && user.is_none_or(|(user_key, known)| current(user_key, known))
            {
                return Ok(Read {
                    value: value.map(Bytes::Received),
                    generation: user.map(|(_, (generation, _))| generation),
                    function_generation: super::groups(
                        function.0,
                        tags.map(|(_, (generation, _))| generation),
                    ),
                    stamp: None,
                    decoded: None,
                });
            }
        }
        // Only what is not known is read into the table anew: while a key
        // is known, a change is pushed and forgets it, and beginning it again
        // would leave it unknown for a round trip to every other call (for
        // a function's generation, every call of the function).
        let function_ticket = known_function
            .is_none()
            .then(|| keys.begin(&groups.function));
        let tag_tickets: Vec<Option<Ticket>> = groups
            .tags
            .iter()
            .zip(&known_tags)
            .map(|(tag, known)| known.is_none().then(|| keys.begin(tag)).flatten())
            .collect();
        let user_ticket = key
            .generation()
            .filter(|_| known_user.is_none())
            .map(|user_key| keys.begin(user_key));
        let entry_ticket = track_entry.then(|| keys.begin(key.entry())).flatten();
        let pipeline = tracked_read_pipeline(key, &groups, track_entry);
        let slot = cluster_slot(key.entry());
        let request = Request::Pipeline(&pipeline, slot);
        let replies: Vec<Option<Vec<u8>>> = tracked.query(&request).await?;
        let mut replies = replies.into_iter();
        let mut next = || replies.next().flatten();
        // A group never invalidated has no generation key: 0, tracked
        // like any value, since Redis tracks the missing key too.
        let function = group_generation(next().as_deref());
        if let Some(Some(ticket)) = function_ticket {
            keys.finish(&groups.function, ticket, function);
        }
        let mut tags = Vec::with_capacity(groups.tags.len());
        for (tag_key, ticket) in groups.tags.iter().zip(tag_tickets) {
            let tag = group_generation(next().as_deref());
            if let Some(ticket) = ticket {
                keys.finish(tag_key, ticket, tag);
            }
            tags.push(tag);
        }
        let generation = key
            .generation()
            .and_then(|_| next())
            .as_deref()
            .and_then(parse_generation);
        if let (Some(user_key), Some(Some(ticket)), Some(generation)) =
            (key.generation(), user_ticket, generation)
        {
            keys.finish(user_key, ticket, generation);
        }
        let value = next();
        let stamp = entry_ticket.and_then(|ticket| {
            let stamp = stamp();
            keys.finish(key.entry(), ticket, stamp).then_some(stamp)
        });
        Ok(Read {
            value: value.map(Bytes::Received),
            generation,
            function_generation: super::groups(function, tags),
            stamp,
            decoded: None,
        })
    }

    /// Reads an entry and its generations without tracking: one `MGET`.
    async fn read_untracked(&self, key: &EntryKey) -> Result<Read, Error> {
        let groups = self.group_keys(key);
        let items = self.query(key.entry(), &read_cmd(key, &groups)).await?;
        Ok(read_reply(key, items))
    }

    fn read_untracked_blocking(&self, key: &EntryKey) -> Result<Read, Error> {
        let groups = self.group_keys(key);
        let items = self.query_blocking(key.entry(), &read_cmd(key, &groups))?;
        Ok(read_reply(key, items))
    }

    /// Where a lookup of `key` reads its groups' generations: the keys
    /// themselves on one node; on a cluster, their copies in the entry's slot.
    fn group_keys<'k>(&self, key: &'k EntryKey) -> GroupKeys<'k> {
        let in_entry_slot = |group: &'k str| {
            if self.link.is_cluster() {
                Cow::Owned(in_slot(group, cluster_slot(key.entry())))
            } else {
                Cow::Borrowed(group)
            }
        };
        GroupKeys {
            function: in_entry_slot(key.function_generation()),
            tags: key.tag_generations().map(in_entry_slot).collect(),
        }
    }

    /// What `keys` knows of a function's generation at `function_key`, as
    /// [`group_keys`](Self::group_keys) gives it: on one node a hot key,
    /// on a cluster a copy, which is not.
    fn known_function(&self, keys: &TrackedKeys, function_key: &str) -> Option<(u64, Mark)> {
        if self.link.is_cluster() {
            keys.known_marked(function_key)
        } else {
            keys.known_marked_hot(function_key)
        }
    }

    /// The keys a function's generation is written to: the key on one
    /// node, a copy in each slot on a cluster; any other key, itself.
    fn generation_copies(&self, key: &str) -> Vec<String> {
        if self.link.is_cluster() && is_group_generation(key) {
            (0..SLOTS as u16).map(|slot| in_slot(key, slot)).collect()
        } else {
            vec![key.to_owned()]
        }
    }

    /// What the in-process tier checks a value of `key` against: the
    /// tracked user generation, or with [`L1Read::Entry`] that and the
    /// stamp of the entry's tracked read, and the function's generation,
    /// while all are tracked; and where the table held each of them.
    pub(crate) fn current(&self, key: &EntryKey, l1: L1Read) -> Option<((u64, u64), Seen)> {
        let tracked = self.link.tracked()?;
        let keys = tracked.keys();
        let mut seen = [0; 3];
        let mut known = |at: usize, key: &str| {
            let (value, mark) = keys.known_marked(key)?;
            seen[at] = mark.word();
            Some(value)
        };
        let user = match key.generation() {
            Some(user_key) => known(0, user_key)?,
            None => 0,
        };
        let primary = match l1 {
            L1Read::Entry => with_entry(user, known(1, key.entry())?),
            L1Read::Generations | L1Read::Off => user,
        };
        let groups = self.group_keys(key);
        let (function, mark) = self.known_function(keys, &groups.function)?;
        let tags: Option<Vec<u64>> = groups.tags.iter().map(|tag| keys.known(tag)).collect();
        // Tags may be many (one per organisation), so they are not hot keys
        // and sit in any shard: a value with tags is looked up again on
        // every hit (a word that is no mark is never unchanged), which costs
        // a shard's read lock per key.
        seen[2] = if key.has_tags() {
            u64::MAX
        } else {
            mark.word()
        };
        Some(((primary, super::groups(function, tags?)), seen))
    }

    /// Whether no tracked key was forgotten where [`current`](Self::current)
    /// saw them, so that what they held then they hold still (a change
    /// would have been pushed and forgotten there).
    pub(crate) fn unchanged(&self, seen: &Seen) -> bool {
        self.link.tracked().is_some_and(|tracked| {
            let keys = tracked.keys();
            seen.iter()
                .all(|&word| word == 0 || keys.unchanged_word(word))
        })
    }

    /// This process changed the generation at `key`: it forgets what it
    /// knew without waiting for the push.
    fn generation_changed(&self, key: &str) {
        let Some(tracked) = self.link.tracked() else {
            return;
        };
        if self.link.is_cluster() && is_group_generation(key) {
            // Tracked as its copies, one per slot read.
            tracked.keys().forget_all();
        } else {
            tracked.keys().forget(key);
        }
    }

    /// An entry was replaced whatever it held (a tombstone): this process
    /// forgets having read it without waiting for the push.
    fn entry_replaced(&self, key: &str, expected: Option<&Observed>) {
        if let (None, Some(tracked)) = (expected, self.link.tracked()) {
            tracked.keys().forget(key);
        }
    }

    /// Runs `cmd`, which touches `key`, if the circuit of `key` lets it.
    async fn query<T: FromRedisValue>(&self, key: &str, cmd: &Cmd) -> Result<T, Error> {
        let breaker = self.breakers.for_key(key);
        let permit = breaker.admit()?;
        self.query_with(breaker, permit, cmd).await
    }

    async fn query_with<T: FromRedisValue>(
        &self,
        breaker: &Breaker,
        permit: Permit,
        cmd: &Cmd,
    ) -> Result<T, Error> {
        self.run(breaker, permit, || self.link.query(cmd, self.op_timeout))
            .await
    }

    /// Runs `op`, admitted by `breaker` with `permit`, and again at once if
    /// [`retries`] says so; the breaker learns how it went.
    async fn run<T, F: Future<Output = RedisResult<T>>>(
        &self,
        breaker: &Breaker,
        permit: Permit,
        op: impl Fn() -> F,
    ) -> Result<T, Error> {
        let mut result = op().await.map_err(|error| self.store_error(error));
        if retries(permit, &result) {
            result = op().await.map_err(|error| self.store_error(error));
        }
        breaker.record(permit, &result);
        result
    }

    async fn query_once<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        let result = self.link.query(cmd, self.op_timeout).await;
        result.map_err(|error| self.store_error(error))
    }

    /// [`query`](Self::query) on a pooled sync connection.
    fn query_blocking<T: FromRedisValue>(&self, key: &str, cmd: &Cmd) -> Result<T, Error> {
        let breaker = self.breakers.for_key(key);
        let permit = breaker.admit()?;
        self.query_blocking_with(breaker, permit, cmd)
    }

    fn query_blocking_with<T: FromRedisValue>(
        &self,
        breaker: &Breaker,
        permit: Permit,
        cmd: &Cmd,
    ) -> Result<T, Error> {
        self.run_blocking(breaker, permit, || {
            self.link.query_blocking(cmd, self.op_timeout)
        })
    }

    /// [`run`](Self::run), blocking.
    fn run_blocking<T>(
        &self,
        breaker: &Breaker,
        permit: Permit,
        op: impl Fn() -> RedisResult<T>,
    ) -> Result<T, Error> {
        let mut result = op().map_err(|error| self.store_error(error));
        if retries(permit, &result) {
            result = op().map_err(|error| self.store_error(error));
        }
        breaker.record(permit, &result);
        result
    }

    fn query_blocking_once<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        let result = self.link.query_blocking(cmd, self.op_timeout);
        result.map_err(|error| self.store_error(error))
    }

    /// Classifies a client error once, so that nothing above this store
    /// needs redis-rs's types to tell an outage from an error reply; a
    /// refusal of this client is logged here, once.
    fn store_error(&self, error: RedisError) -> Error {
        let failure = classify(&error);
        let hint = match failure {
            StoreFailure::Rejected => {
                "check the user, password and ACL permissions in the Redis URL"
            }
            StoreFailure::Refused | StoreFailure::Unreplicated => {
                "redis-server answered with this error"
            }
            StoreFailure::Dropped | StoreFailure::Unreachable => {
                "check that redis-server is reachable at the configured URL"
            }
        };
        let error = StoreError::new("redis", failure, hint, error);
        if failure == StoreFailure::Rejected && !self.rejection_reported.swap(true, Relaxed) {
            tracing::error!(
                %error,
                "redis refuses this client: calls run uncached and invalidations fail until the configuration is fixed"
            );
        }
        error.into()
    }

    /// Whether creating a generation failed because the server is too old
    /// for `SET … NX GET`, the first time it does: every per-user call would
    /// then run uncached with nothing but a syntax error to show for it, so
    /// the caller logs it once, with the server's version.
    fn first_old_server_error(&self, error: &Error) -> bool {
        let syntax_error = error
            .store_failure()
            .is_some_and(|failure| failure.to_string().contains("syntax error"));
        syntax_error && !self.old_server_reported.swap(true, Relaxed)
    }
}

/// Whether an operation is worth a second try at once: a probe, or an
/// invalidation, whose connection turned out to be one the outage killed
/// (the connection answers with the failure it remembers, then
/// reconnects), so that a server that is back is used from the first try.
fn retries<T>(permit: Permit, result: &Result<T, Error>) -> bool {
    let Err(error) = result else {
        return false;
    };
    match permit {
        Permit::Probe => error.is_outage(),
        Permit::Always => error.store_failure().is_some_and(StoreError::was_dropped),
        Permit::Closed => false,
    }
}

fn classify(error: &RedisError) -> StoreFailure {
    use redis::{ErrorKind, ServerErrorKind};
    match error.kind() {
        _ if error.is_connection_dropped() => StoreFailure::Dropped,
        _ if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() => {
            StoreFailure::Unreachable
        }
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
            StoreFailure::Rejected
        }
        _ if error.code() == Some("WRONGPASS") => StoreFailure::Rejected,
        // A cluster between a master's failure and its replica's promotion,
        // or a server still loading its data after a restart.
        ErrorKind::Server(
            ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::BusyLoading,
        )
        | ErrorKind::ClusterConnectionNotFound => StoreFailure::Unreachable,
        // A reply came: the server is there, whatever it said.
        ErrorKind::Server(_)
        | ErrorKind::Extension
        | ErrorKind::UnexpectedReturnType
        | ErrorKind::Parse => StoreFailure::Refused,
        // The client gave up before any reply (a connection it cannot use,
        // a configuration it refuses): counted as an outage, so that the
        // breaker never closes, nor says caching resumes, on an answer that
        // did not come from the server.
        _ => StoreFailure::Unreachable,
    }
}

impl Backend for RedisStore {
    /// Sync callers read as before: their pooled connections are not
    /// tracked (see the README's tiers).
    fn read_blocking(&self, key: &EntryKey, _: L1Read) -> Result<Read, Error> {
        self.read_untracked_blocking(key)
    }

    fn write_blocking(
        &self,
        key: &str,
        bytes: &[u8],
        _: Option<Decoded>,
        ttl: Duration,
        expected: Option<&Observed>,
    ) -> Result<bool, Error> {
        let reply = self.query_blocking(key, &store_cmd(key, bytes, ttl, expected));
        self.entry_replaced(key, expected);
        Ok(store_reply(&reply?))
    }

    fn add_shape_blocking(
        &self,
        key: &str,
        shape: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<(), Error> {
        let cmd = add_shape_cmd(key, shape, until_ms, now_ms);
        self.query_blocking::<i64>(key, &cmd).map(drop)
    }

    fn shapes_blocking(&self, key: &str, now_ms: u64) -> Result<Vec<String>, Error> {
        let breaker = self.breakers.for_key(key);
        self.query_blocking_with(breaker, Permit::Always, &shapes_cmd(key, now_ms))
    }

    fn init_generation_blocking(&self, key: &str, candidate: u64) -> Result<Option<u64>, Error> {
        let existing = self.query_blocking(key, &init_generation_cmd(key, candidate));
        if let Err(error) = &existing
            && self.first_old_server_error(error)
        {
            let info = self.query_blocking_once::<String>(&info_cmd()).ok();
            report_old_server(info.as_deref().and_then(server_version));
        }
        Ok(init_generation_reply(candidate, existing?))
    }

    /// Tried even while the circuit is open: an invalidation is never
    /// skipped, and its success shows the store is back. Retried once on a
    /// connection that turned out dead (a restarted server): the write is
    /// idempotent, and the retry runs on a fresh connection.
    fn set_generation_blocking(&self, key: &str, generation: u64) -> Result<(), Error> {
        let copies = self.generation_copies(key);
        let cmds: Vec<Cmd> = copies
            .iter()
            .map(|copy| set_generation_cmd(copy, generation))
            .collect();
        let result = self.write_invalidation_blocking(key, &cmds);
        self.generation_changed(key);
        result
    }

    fn write_tombstone_blocking(
        &self,
        key: &str,
        tombstone: &[u8],
        ttl: Duration,
    ) -> Result<(), Error> {
        let result = self.write_invalidation_blocking(key, &[write_cmd(key, tombstone, ttl)]);
        self.entry_replaced(key, None);
        result
    }

    fn take_lease_blocking(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
        entry: &EntryKey,
    ) -> Result<(bool, Read), Error> {
        let groups = self.group_keys(entry);
        let cmd = take_lease_cmd(key, token, ttl, entry, &groups);
        Ok(take_lease_reply(entry, self.query_blocking(key, &cmd)?))
    }

    fn release_lease_blocking(&self, key: &str, token: u64) -> Result<(), Error> {
        let _: i64 = self.query_blocking(key, &release_lease_cmd(key, token))?;
        Ok(())
    }

    async fn take_lease(
        &self,
        key: &str,
        token: u64,
        ttl: Duration,
        entry: &EntryKey,
    ) -> Result<(bool, Read), Error> {
        let groups = self.group_keys(entry);
        let cmd = take_lease_cmd(key, token, ttl, entry, &groups);
        Ok(take_lease_reply(entry, self.query(key, &cmd).await?))
    }

    async fn release_lease(&self, key: &str, token: u64) -> Result<(), Error> {
        let _: i64 = self.query(key, &release_lease_cmd(key, token)).await?;
        Ok(())
    }

    /// Read on the tracked connection while the server allows it; as
    /// before, with every generation beside the entry, once it refused.
    async fn read(&self, key: &EntryKey, l1: L1Read) -> Result<Read, Error> {
        if let Some(tracked) = self.link.tracked()
            && (tracked.ordered() || l1 != L1Read::Off)
        {
            // The breaker and the read in one function: a hit runs this, and
            // each async layer was a copy of the read and a state to poll.
            let breaker = self.breakers.for_key(key.entry());
            let permit = breaker.admit()?;
            let read = self.read_tracked(tracked, key, l1 == L1Read::Entry).await;
            let read = read.map_err(|error| self.store_error(error));
            breaker.record(permit, &read);
            if tracked.is_available() {
                return read;
            }
        }
        self.read_untracked(key).await
    }

    async fn write(
        &self,
        key: &str,
        bytes: &[u8],
        _: Option<Decoded>,
        ttl: Duration,
        expected: Option<&Observed>,
    ) -> Result<bool, Error> {
        let reply = self.query(key, &store_cmd(key, bytes, ttl, expected)).await;
        self.entry_replaced(key, expected);
        Ok(store_reply(&reply?))
    }

    async fn add_shape(
        &self,
        key: &str,
        shape: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<(), Error> {
        let cmd = add_shape_cmd(key, shape, until_ms, now_ms);
        self.query::<i64>(key, &cmd).await.map(drop)
    }

    async fn shapes(&self, key: &str, now_ms: u64) -> Result<Vec<String>, Error> {
        let breaker = self.breakers.for_key(key);
        self.query_with(breaker, Permit::Always, &shapes_cmd(key, now_ms))
            .await
    }

    async fn init_generation(&self, key: &str, candidate: u64) -> Result<Option<u64>, Error> {
        let existing = self.query(key, &init_generation_cmd(key, candidate)).await;
        if let Err(error) = &existing
            && self.first_old_server_error(error)
        {
            let info = self.query_once::<String>(&info_cmd()).await.ok();
            report_old_server(info.as_deref().and_then(server_version));
        }
        Ok(init_generation_reply(candidate, existing?))
    }

    /// Tried even while the circuit is open, as the blocking form.
    async fn set_generation(&self, key: &str, generation: u64) -> Result<(), Error> {
        let result = if self.link.is_cluster() && is_group_generation(key) {
            self.set_every_copy(key, generation).await
        } else {
            self.write_invalidation(key, &set_generation_cmd(key, generation))
                .await
        };
        self.generation_changed(key);
        result
    }

    async fn write_tombstone(
        &self,
        key: &str,
        tombstone: &[u8],
        ttl: Duration,
    ) -> Result<(), Error> {
        let result = self
            .write_invalidation(key, &write_cmd(key, tombstone, ttl))
            .await;
        self.entry_replaced(key, None);
        result
    }
}

/// Invalidations: writes that wait for replicas (see [`ReplicaAcks`]).
///
/// [`ReplicaAcks`]: crate::config::ReplicaAcks
impl RedisStore {
    /// Writes the invalidation `cmd` at `key`, with a `WAIT` in the same
    /// round trip when its master's replicas are waited for.
    async fn write_invalidation(&self, key: &str, cmd: &Cmd) -> Result<(), Error> {
        let slot = cluster_slot(key);
        let breaker = self.breakers.for_key(key);
        self.know_replicas(slot).await?;
        let wanted = self.replicas.wanted(slot);
        let result = if wanted == 0 {
            self.query_with::<Value>(breaker, Permit::Always, cmd)
                .await
                .map(drop)
        } else {
            let wait = self.wait_cmd(wanted);
            self.run(breaker, Permit::Always, || {
                self.link
                    .query_replicated(cmd, slot, &wait, self.op_timeout)
            })
            .await
            .and_then(|acked| self.replicated(acked, wanted))
        };
        self.checked(result)
    }

    /// A function's generation on a cluster is written to its 16,384
    /// copies, [`COPIES_AT_ONCE`] at a time, so that calls sharing the
    /// connection meanwhile are not held past their timeout, then waited
    /// for at each master: `Ok` once every slot has it.
    async fn set_every_copy(&self, key: &str, generation: u64) -> Result<(), Error> {
        self.know_replicas(cluster_slot(key)).await?;
        let mut result = Ok(());
        for copies in self.generation_copies(key).chunks(COPIES_AT_ONCE) {
            let writes = copies.iter().map(|copy| async move {
                let breaker = self.breakers.for_key(copy);
                let cmd = set_generation_cmd(copy, generation);
                self.query_with::<()>(breaker, Permit::Always, &cmd).await
            });
            result = all(writes.collect()).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            // The copies went out on the connection the cluster client
            // keeps to each master, so each `WAIT` there counts them.
            let waits = self
                .replicas
                .masters()
                .into_iter()
                .map(|master| async move {
                    let breaker = self.breakers.for_slot(master.slot);
                    let wait = self.wait_cmd(master.replicas);
                    self.run(breaker, Permit::Always, || {
                        self.link.query_at(&wait, master.slot, self.op_timeout)
                    })
                    .await
                    .and_then(|acked| self.replicated(acked, master.replicas))
                });
            result = all(waits.collect()).await;
        }
        self.checked(result)
    }

    /// [`write_invalidation`](Self::write_invalidation) of every command of
    /// `cmds` (one, or a function's copies on a cluster, pipelined), with
    /// their `WAIT`s, on one pooled connection.
    fn write_invalidation_blocking(&self, key: &str, cmds: &[Cmd]) -> Result<(), Error> {
        let slot = cluster_slot(key);
        self.know_replicas_blocking(slot)?;
        let waits: Vec<(u16, u32)> = if cmds.len() > 1 {
            let masters = self.replicas.masters().into_iter();
            masters
                .map(|master| (master.slot, master.replicas))
                .collect()
        } else {
            let wanted = self.replicas.wanted(slot);
            (wanted > 0).then_some((slot, wanted)).into_iter().collect()
        };
        let wait_cmds: Vec<(u16, Cmd)> = waits
            .iter()
            .map(|&(slot, wanted)| (slot, self.wait_cmd(wanted)))
            .collect();
        let breaker = self.breakers.for_key(key);
        let result = self
            .run_blocking(breaker, Permit::Always, || {
                self.link
                    .query_all_blocking(cmds, &wait_cmds, self.op_timeout)
            })
            .and_then(|acked| {
                waits
                    .iter()
                    .zip(acked)
                    .try_for_each(|(&(_, wanted), acked)| self.replicated(acked, wanted))
            });
        self.checked(result)
    }

    /// Reads the masters' replicas before an invalidation at `slot`, if
    /// what was read is old or missing.
    /// Like the write, the read is always tried, and retried once on a
    /// connection that turned out dead.
    async fn know_replicas(&self, slot: u16) -> Result<(), Error> {
        if !self.replicas.stale() {
            return Ok(());
        }
        let command = self.replicas.command();
        let breaker = self.breakers.for_slot(slot);
        let reply = self
            .run(breaker, Permit::Always, || {
                self.link.query_at(&command, slot, self.op_timeout)
            })
            .await;
        self.learn_replicas(reply)
    }

    /// [`know_replicas`](Self::know_replicas), blocking.
    fn know_replicas_blocking(&self, slot: u16) -> Result<(), Error> {
        if !self.replicas.stale() {
            return Ok(());
        }
        let command = self.replicas.command();
        let breaker = self.breakers.for_slot(slot);
        let reply = self.run_blocking(breaker, Permit::Always, || {
            self.link.query_at_blocking(&command, slot, self.op_timeout)
        });
        self.learn_replicas(reply)
    }

    fn learn_replicas(&self, reply: Result<String, Error>) -> Result<(), Error> {
        let error = match reply {
            Ok(reply) => {
                self.replicas.learn(&reply);
                return Ok(());
            }
            Err(error) => error,
        };
        if error.is_outage() {
            return Err(error);
        }
        let first = !self.replicas_refusal_reported.swap(true, Relaxed);
        if self.link.is_cluster() {
            if first {
                tracing::error!(
                    %error,
                    "redis refuses to list the cluster's replicas (CLUSTER NODES): invalidations fail until this client may, or CACHED_API_REPLICA_ACKS is off"
                );
            }
            return Err(error);
        }
        if first {
            tracing::warn!(
                %error,
                "redis refuses to say how many replicas it has (INFO replication): invalidations wait for none; set CACHED_API_REPLICA_ACKS to a count if it has some"
            );
        }
        self.replicas.unknown_on_node();
        Ok(())
    }

    /// `WAIT` for `replicas`, bounded by half the op timeout, so that its
    /// answer, and not the connection's timeout, ends it.
    fn wait_cmd(&self, replicas: u32) -> Cmd {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(millis(self.op_timeout / 2));
        cmd
    }

    /// `Ok` if `acked` replicas are enough for `wanted`.
    fn replicated(&self, acked: i64, wanted: u32) -> Result<(), Error> {
        if acked >= i64::from(wanted) {
            return Ok(());
        }
        let shortfall = Unreplicated { acked, wanted };
        let hint = "the master has the invalidation, and a failover before a replica has it would undo it; it is retried until enough replicas acknowledge it (see CACHED_API_REPLICA_ACKS)";
        Err(StoreError::new("redis", StoreFailure::Unreplicated, hint, shortfall).into())
    }

    /// An invalidation that came up short or failed may have met a
    /// failover: the next one reads the replicas again.
    fn checked(&self, result: Result<(), Error>) -> Result<(), Error> {
        if result.is_err() {
            self.replicas.reread();
        }
        result
    }
}

/// Fewer replicas acknowledged a write than were waited for.
#[derive(Debug, thiserror::Error)]
#[error("{acked} of the {wanted} replicas waited for acknowledged the write in time")]
struct Unreplicated {
    acked: i64,
    wanted: u32,
}

/// How many copies of a function's generation are written at once.
const COPIES_AT_ONCE: usize = 256;

/// Awaits every future at once; the first error, if any.
async fn all<F: Future<Output = Result<(), Error>>>(futures: Vec<F>) -> Result<(), Error> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut first_error = None;
    poll_fn(|cx| {
        pending.retain_mut(|future| match future.as_mut().poll(cx) {
            Poll::Ready(result) => {
                if let Err(error) = result {
                    first_error.get_or_insert(error);
                }
                false
            }
            Poll::Pending => true,
        });
        if pending.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    first_error.map_or(Ok(()), Err)
}

fn report_old_server(version: Option<&str>) {
    let version = version.unwrap_or("of unknown version");
    tracing::error!(
        version,
        "redis-server {version} does not support SET … NX GET, which cached-api needs (Redis 7.0 or later, Valkey 7.2 or later): per-user entries are not cached"
    );
}

fn info_cmd() -> Cmd {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("server");
    cmd
}

#[cfg(test)]
mod tests {
    use redis::{ErrorKind, ServerErrorKind};

    use super::*;

    #[test]
    fn only_a_reply_from_the_server_is_not_an_outage() {
        let reply = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "ERR"));
        assert_eq!(classify(&reply), StoreFailure::Refused);
        let loading =
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "LOADING"));
        assert_eq!(classify(&loading), StoreFailure::Unreachable);
        let unsent = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "redis_cluster: Unable to send command",
        ));
        assert_eq!(classify(&unsent), StoreFailure::Dropped);
        let client = RedisError::from((ErrorKind::Client, "no connection to send on"));
        assert_eq!(classify(&client), StoreFailure::Unreachable);
    }
}
