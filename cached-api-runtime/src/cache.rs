//! The cache-aside call: look up, single-flight on a miss, compute, store.
//! It orchestrates key, codec, flight and stats over one [`Backend`].

use std::fmt::Display;
use std::future::{Future, ready};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::Error;
use crate::backend::{Backend, MemoryStore, Read, RedisStore, Store};
use crate::codec::{Header, TypedCodec};
use crate::config::{CacheBuilder, Config};
use crate::flight::{Flight, Flights, Outcome, Role};
use crate::key::{self, EntryKey, KeyWriter};
use crate::policy::{Lifetime, Policy};
use crate::spec::FnSpec;
use crate::stats::{self, Event};

/// A configured cache: where entries live and how calls use them.
///
/// Cheap to clone; clones share the store and the in-flight computations.
/// Most programs never build one: cached functions use the process-wide
/// cache, configured from the environment (see [`crate::config`]) or by
/// [`set_global`](crate::set_global).
///
/// ```
/// let cache = cached_api_runtime::Cache::builder()
///     .prefix("my_service")
///     .default_ttl(std::time::Duration::from_secs(300))
///     .build()?;
/// cached_api_runtime::set_global(cache)?;
/// # Ok::<(), cached_api_runtime::Error>(())
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    flights: Flights,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match self.inner.store {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        };
        f.debug_struct("Cache")
            .field("store", &store)
            .field("prefix", &self.inner.config.prefix)
            .field("disabled", &self.inner.config.disabled)
            .finish()
    }
}

/// What a follower does once its leader is done.
enum Follow<R> {
    /// Return the leader's result.
    Take(R),
    /// The result cannot be shared: run the function.
    Compute,
    /// The leader is gone: look up again.
    StartOver,
}

/// Where a lookup left the call.
enum Lookup<R> {
    Hit(R),
    /// Not cached, or not usable, at the user's generation (`None`: the user has none yet).
    Miss(Option<u64>),
    /// The store failed: run the function without caching.
    Unavailable,
}

impl Cache {
    /// Builds the store `config` names; the config is already validated.
    pub(crate) fn new(config: Config) -> Result<Cache, Error> {
        let store = match &config.redis_url {
            Some(url) => Store::Redis(RedisStore::new(
                url,
                config.op_timeout,
                config.breaker_cooldown,
                config.pool_size,
            )?),
            None => Store::Memory(MemoryStore::new(
                config.memory_capacity,
                config.clock.clone(),
            )),
        };
        Ok(Cache {
            inner: Arc::new(Inner {
                config,
                store,
                flights: Flights::default(),
            }),
        })
    }

    /// A builder with every setting at its default (embedded store).
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// A cache configured from `CACHED_API_*` environment variables.
    pub fn from_env() -> Result<Cache, Error> {
        CacheBuilder::from(Config::from_env()?).build()
    }

    /// Whether cached functions run every time.
    pub fn is_disabled(&self) -> bool {
        self.inner.config.disabled
    }

    /// Makes every entry of `user` unreachable, in one store command.
    ///
    /// On failure the entries may still be served: the error is returned so
    /// that the caller can retry or fail the write that prompted it.
    pub async fn invalidate_user<U: Display + ?Sized>(&self, user: &U) -> Result<(), Error> {
        let generation_key = key::generation_key(&self.inner.config.prefix, &user);
        let result = self
            .inner
            .store
            .set_generation(&generation_key, fresh_generation())
            .await;
        record_invalidation(result)
    }

    /// [`invalidate_user`](Self::invalidate_user) for code outside an async runtime.
    pub fn invalidate_user_blocking<U: Display + ?Sized>(&self, user: &U) -> Result<(), Error> {
        let generation_key = key::generation_key(&self.inner.config.prefix, &user);
        let result = self
            .inner
            .store
            .set_generation_blocking(&generation_key, fresh_generation());
        record_invalidation(result)
    }

    /// The key of one call of `spec`; `None` when the cache is disabled.
    pub(crate) fn key(
        &self,
        spec: &'static FnSpec,
        owner: Option<&str>,
        user: Option<&dyn Display>,
        write_key: impl FnOnce(&mut KeyWriter),
    ) -> Option<EntryKey> {
        if self.inner.config.disabled {
            return None;
        }
        let mut writer = KeyWriter::new(
            &self.inner.config.prefix,
            spec.key_segment(),
            owner,
            spec.reserved(),
            user,
        );
        write_key(&mut writer);
        Some(writer.finish())
    }

    /// Serves a call of an async function from the cache, or computes and stores it.
    pub(crate) async fn call<P: Policy<R>, R>(
        &self,
        spec: &'static FnSpec,
        codec: TypedCodec<P::Stored>,
        key: EntryKey,
        compute: impl Future<Output = R>,
    ) -> R {
        self.serve::<P, R>(&self.inner.store, spec, codec, key, compute)
            .await
    }

    /// [`call`](Self::call) for sync functions: the same steps on blocking I/O.
    pub(crate) fn call_blocking<P: Policy<R>, R>(
        &self,
        spec: &'static FnSpec,
        codec: TypedCodec<P::Stored>,
        key: EntryKey,
        compute: impl FnOnce() -> R,
    ) -> R {
        let io = Blocking(&self.inner.store);
        let serve = self.serve::<P, R>(&io, spec, codec, key, async move { compute() });
        let mut serve = pin!(serve);
        match serve.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(value) => value,
            Poll::Pending => unreachable!("blocking I/O completes before it returns"),
        }
    }

    /// The cache-aside steps, written once for both kinds of I/O: look up;
    /// on a miss, join the entry's flight; lead (compute, store, share) or
    /// follow (take the leader's result, or start over if it is gone).
    async fn serve<P: Policy<R>, R>(
        &self,
        io: &(impl Backend + FlightWait),
        spec: &'static FnSpec,
        codec: TypedCodec<P::Stored>,
        key: EntryKey,
        compute: impl Future<Output = R>,
    ) -> R {
        let mut looks_again = MAX_LOOKS_AGAIN;
        loop {
            let seen = self.inner.flights.epoch(key.entry());
            let generation = match self.lookup::<P, R>(spec, codec, &key, io.read(&key).await) {
                Lookup::Hit(value) => return value,
                Lookup::Miss(Some(generation)) => generation,
                Lookup::Miss(None) => {
                    let (gen_key, candidate) = new_generation(&key);
                    let existing = io.init_generation(gen_key, candidate).await;
                    match self.settle_generation(spec, existing) {
                        Some(generation) => generation,
                        None => return self.uncached(spec, compute.await),
                    }
                }
                Lookup::Unavailable => return self.uncached(spec, compute.await),
            };
            let seen = (looks_again > 0).then_some(seen);
            match self.inner.flights.join(key.entry(), generation, seen) {
                Role::LookAgain => {
                    looks_again -= 1;
                    continue;
                }
                Role::Follower(flight) => {
                    let outcome = io.wait(&flight).await;
                    match self.follow::<P, R>(spec, codec, outcome) {
                        Follow::Take(value) => return value,
                        Follow::Compute => return self.uncached(spec, compute.await),
                        Follow::StartOver => continue,
                    }
                }
                Role::Leader(leader) => {
                    let value = self.uncached(spec, compute.await);
                    let outcome = match self.seal::<P, R>(spec, codec, generation, &value) {
                        Some((bytes, ttl)) => {
                            let written = io.write(key.entry(), &bytes, ttl).await;
                            self.record_write(spec, &key, written);
                            Outcome::Value(bytes.into())
                        }
                        None => Outcome::NotShared,
                    };
                    leader.land(outcome);
                    return value;
                }
            }
        }
    }

    /// Judges what the store returned for `key`.
    fn lookup<P: Policy<R>, R>(
        &self,
        spec: &'static FnSpec,
        codec: TypedCodec<P::Stored>,
        key: &EntryKey,
        read: Result<Read, Error>,
    ) -> Lookup<R> {
        let read = match read {
            Ok(read) => read,
            Err(error) => {
                record_error(spec, &error, "read failed; running the function uncached");
                return Lookup::Unavailable;
            }
        };
        let expected = match (key.generation(), read.generation) {
            (None, _) => None,
            (Some(_), Some(generation)) => Some(generation),
            (Some(_), None) => return Lookup::Miss(None),
        };
        let generation = expected.unwrap_or(GLOBAL_GENERATION);
        let Some(bytes) = read.value else {
            return Lookup::Miss(Some(generation));
        };
        match self.unseal::<P, R>(spec, codec, &bytes, expected) {
            Some((value, header)) => {
                spec.record(Event::Hit);
                tracing::debug!(function = spec.id(), age_ms = header.age_ms(), "cache hit");
                Lookup::Hit(value)
            }
            None => Lookup::Miss(Some(generation)),
        }
    }

    /// What a follower does with its leader's outcome.
    fn follow<P: Policy<R>, R>(
        &self,
        spec: &'static FnSpec,
        codec: TypedCodec<P::Stored>,
        outcome: Outcome,
    ) -> Follow<R> {
        let bytes = match outcome {
            Outcome::Value(bytes) => bytes,
            Outcome::NotShared => return Follow::Compute,
            Outcome::Abandoned => return Follow::StartOver,
        };
        match self.unseal::<P, R>(spec, codec, &bytes, None) {
            Some((value, _)) => {
                spec.record(Event::Hit);
                tracing::debug!(function = spec.id(), "shared result of a concurrent call");
                Follow::Take(value)
            }
            None => Follow::Compute,
        }
    }

    /// The stored value, if it was written by this shape of the function and,
    /// when `generation` is given, at that generation of its user.
    fn unseal<P: Policy<R>, R>(
        &self,
        spec: &'static FnSpec,
        codec: TypedCodec<P::Stored>,
        bytes: &[u8],
        generation: Option<u64>,
    ) -> Option<(R, Header)> {
        let (header, payload) = Header::open(bytes)?;
        let current = header.version == spec.version()
            && header.fingerprint == codec.fingerprint()
            && generation.is_none_or(|generation| header.generation == generation);
        if !current {
            return None;
        }
        let value = codec.decode(payload).map(P::restore)?;
        Some((value, header))
    }

    /// The bytes to store for `value` and their TTL; `None` if it is not cached.
    fn seal<P: Policy<R>, R>(
        &self,
        spec: &'static FnSpec,
        codec: TypedCodec<P::Stored>,
        generation: u64,
        value: &R,
    ) -> Option<(Vec<u8>, Duration)> {
        let (stored, lifetime) = P::keep(value)?;
        let header = Header {
            version: spec.version(),
            fingerprint: codec.fingerprint(),
            generation,
            stored_at_ms: Header::now_ms(),
        };
        let ttl = match lifetime {
            Lifetime::Value => spec.ttl(self.inner.config.default_ttl),
            Lifetime::Error => spec.error_ttl(),
        };
        let bytes = header.seal(codec, stored)?;
        if bytes.len() > self.inner.config.max_value_size {
            spec.record(Event::Oversized);
            tracing::warn!(
                function = spec.id(),
                size = bytes.len(),
                max = self.inner.config.max_value_size,
                "value too large to cache; returned uncached"
            );
            return None;
        }
        Some((bytes, ttl))
    }

    fn settle_generation(
        &self,
        spec: &'static FnSpec,
        existing: Result<Option<u64>, Error>,
    ) -> Option<u64> {
        match existing {
            Ok(Some(generation)) => Some(generation),
            Ok(None) => {
                spec.record(Event::Error);
                tracing::warn!(
                    function = spec.id(),
                    "user generation holds foreign bytes; not caching until the user is invalidated"
                );
                None
            }
            Err(error) => {
                record_error(
                    spec,
                    &error,
                    "generation unavailable; running the function uncached",
                );
                None
            }
        }
    }

    fn uncached<R>(&self, spec: &'static FnSpec, value: R) -> R {
        spec.record(Event::Miss);
        tracing::debug!(function = spec.id(), "cache miss");
        value
    }

    fn record_write(&self, spec: &'static FnSpec, key: &EntryKey, written: Result<(), Error>) {
        match written {
            Ok(()) => {
                spec.record(Event::Set);
                tracing::debug!(function = spec.id(), "cache set");
            }
            Err(error) => {
                tracing::trace!(key = key.entry(), "write failed");
                record_error(
                    spec,
                    &error,
                    "write failed; the result was returned uncached",
                );
            }
        }
    }
}

/// How a caller waits for the leader of its entry's flight.
trait FlightWait {
    fn wait(&self, flight: &Flight) -> impl Future<Output = Outcome> + Send;
}

/// Async functions use the store as it is: every wait yields to the runtime.
impl FlightWait for Store {
    fn wait(&self, flight: &Flight) -> impl Future<Output = Outcome> + Send {
        flight.wait()
    }
}

/// A sync function's view of the store: every operation blocks the thread,
/// and the trait's async forms wrap the result, ready when first polled.
struct Blocking<'a>(&'a Store);

impl Backend for Blocking<'_> {
    fn read_blocking(&self, key: &EntryKey) -> Result<Read, Error> {
        self.0.read_blocking(key)
    }
    fn write_blocking(&self, key: &str, bytes: &[u8], ttl: Duration) -> Result<(), Error> {
        self.0.write_blocking(key, bytes, ttl)
    }
    fn init_generation_blocking(&self, key: &str, candidate: u64) -> Result<Option<u64>, Error> {
        self.0.init_generation_blocking(key, candidate)
    }
    fn set_generation_blocking(&self, key: &str, generation: u64) -> Result<(), Error> {
        self.0.set_generation_blocking(key, generation)
    }
}

impl FlightWait for Blocking<'_> {
    fn wait(&self, flight: &Flight) -> impl Future<Output = Outcome> + Send {
        ready(flight.wait_blocking())
    }
}

/// How often one call may look up again because a result in its shard
/// landed meanwhile: enough to catch the one it missed, bounded so that
/// constant landings cannot keep a call from computing its own.
const MAX_LOOKS_AGAIN: u32 = 3;

/// The generation written into global entries, which no user can invalidate.
const GLOBAL_GENERATION: u64 = 0;

fn new_generation(key: &EntryKey) -> (&str, u64) {
    let gen_key = key
        .generation()
        .expect("only per-user entries miss without a generation");
    (gen_key, fresh_generation())
}

/// Counts and logs a store failure; a call the open circuit turned away is
/// neither (the breaker counts those), or the log would repeat every call.
fn record_error(spec: &'static FnSpec, error: &Error, what: &'static str) {
    if let Error::CircuitOpen(_) = error {
        tracing::trace!(function = spec.id(), "circuit open: {what}");
        return;
    }
    spec.record(Event::Error);
    tracing::warn!(function = spec.id(), %error, "{what}");
}

fn record_invalidation(result: Result<(), Error>) -> Result<(), Error> {
    match &result {
        Ok(()) => {
            stats::record_process(Event::Invalidation);
            tracing::debug!("invalidated user");
        }
        Err(error) => {
            stats::record_process(Event::Error);
            tracing::error!(%error, "invalidation failed; entries of the user may still be served");
        }
    }
    result
}

/// A random generation: keyed SipHash of a counter, so values differ across
/// processes (random keys) and within one (the counter).
fn fresh_generation() -> u64 {
    static KEYS: LazyLock<RandomState> = LazyLock::new(RandomState::new);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEYS.build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Relaxed));
    // 0 is what global entries carry; a user's generation is never 0.
    hasher.finish().max(1)
}
