//! A configured cache: its store, its in-flight computations, its stats,
//! and the two drivers that walk a call through the cache-aside [`steps`],
//! one awaiting and one blocking.

#[cfg(feature = "axum")]
mod http;
mod shapes;
mod steps;

use std::fmt::Display;
use std::future::Future;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};

use self::steps::{Finish, HeldLease, Resume, Step, Storing, Wait, Waited};
use crate::Error;
use crate::backend::{Backend, MemoryStore, RedisStore, Store};
use crate::codec::{TypedCodec, tombstone};
use crate::config::{CacheBuilder, Config};
use crate::flight::Flights;
use crate::invalidation::{Kept, MAX_PENDING, PendingInvalidations, Target, retry_in_background};
use crate::key::{self, EntryKey, KeyWriter, UserId};
use crate::l1::L1;
use crate::policy::Policy;
use crate::spec::FnSpec;
use crate::stats::{CacheStats, Dropped, Event, Stats};

/// A configured cache: where entries live and how calls use them.
///
/// Cheap to clone; clones share the store and the in-flight computations.
/// Most programs never build one: cached functions use the process-wide
/// cache, configured from the environment (see [`crate::config`]) or by
/// [`set_global`](crate::set_global).
///
/// ```
/// let cache = cached_api::Cache::builder()
///     .prefix("my_service")
///     .default_ttl(std::time::Duration::from_secs(300))
///     .build()?;
/// cached_api::set_global(cache)?;
/// # Ok::<(), cached_api::Error>(())
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    flights: Flights,
    stats: CacheStats,
    pending: PendingInvalidations,
    l1: L1,
    /// The shapes this cache recorded for functions with a companion.
    shapes: shapes::Recorded,
    /// Why the environment this cache was to be built from could not be
    /// used: it then refuses invalidations.
    misconfigured: Option<String>,
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

impl Cache {
    /// Builds the store `config` names; the config is already validated.
    pub(crate) fn new(config: Config) -> Result<Cache, Error> {
        let store = match &config.redis {
            Some(target) => Store::Redis(RedisStore::new(target, &config)?),
            None => Store::Memory(MemoryStore::new(
                config.memory_max_bytes,
                config.clock.clone(),
            )),
        };
        Ok(Cache {
            inner: Arc::new(Inner {
                store,
                flights: Flights::default(),
                stats: CacheStats::default(),
                pending: PendingInvalidations::default(),
                l1: L1::new(config.l1_max_bytes),
                shapes: shapes::Recorded::default(),
                misconfigured: None,
                config,
            }),
        })
    }

    /// The process-wide cache when its environment is invalid: disabled,
    /// and refusing invalidations with `error`'s reason.
    pub(crate) fn misconfigured(error: &Error) -> Cache {
        let config = Config {
            disabled: true,
            ..Config::default()
        };
        let mut cache = Cache::new(config).expect("the default configuration is valid");
        Arc::get_mut(&mut cache.inner)
            .expect("a cache just built has no clones")
            .misconfigured = Some(error.to_string());
        cache
    }

    /// `Err` when this cache stands for one whose environment was invalid.
    pub(crate) fn usable(&self) -> Result<(), Error> {
        match &self.inner.misconfigured {
            Some(why) => Err(Error::Misconfigured(why.clone())),
            None => Ok(()),
        }
    }

    /// A builder with every setting at its default (embedded store).
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// A cache configured from `CACHED_API_*` environment variables.
    pub fn from_env() -> Result<Cache, Error> {
        CacheBuilder::starting_from(Config::from_env()?).build()
    }

    /// The counts of this cache: per function, in total, and its store's
    /// circuit breaker. [`stats()`](crate::stats()) is the process-wide cache's.
    ///
    /// ```
    /// let cache = cached_api::Cache::builder().build()?;
    /// assert_eq!(cache.stats().total.hits, 0);
    /// # Ok::<(), cached_api::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.stats.snapshot(self.inner.store.breaker_stats());
        stats.tracking = self.inner.store.tracking_stats();
        stats.pending_invalidations = self.inner.pending.pending();
        stats.retried_invalidations = self.inner.pending.retried();
        stats.dropped_invalidations = self.inner.pending.dropped();
        stats
    }

    /// Whether cached functions run every time.
    pub fn is_disabled(&self) -> bool {
        self.inner.config.disabled
    }

    /// Makes every entry of `user` unreachable, in one store command.
    ///
    /// On failure the error is returned, so that the caller can fail the
    /// write that prompted it, and the invalidation is also kept and retried
    /// in the background until it lands; until then this process serves no
    /// cached entry of `user` (other processes may, until it lands).
    pub async fn invalidate_user<U: Display + ?Sized>(&self, user: &U) -> Result<(), Error> {
        let key = key::generation_key(&self.inner.config.prefix, &user);
        self.invalidate(&key, Target::Generation, Dropped::User)
            .await
    }

    /// [`invalidate_user`](Self::invalidate_user) for code outside an async runtime.
    pub fn invalidate_user_blocking<U: Display + ?Sized>(&self, user: &U) -> Result<(), Error> {
        let key = key::generation_key(&self.inner.config.prefix, &user);
        self.invalidate_blocking(&key, Target::Generation, Dropped::User)
    }

    /// Makes every entry of the cached function `id` unreachable, in every
    /// process, in one store command: entries carry their function's
    /// generation, and this replaces it. `id` is the function's `name = …`
    /// argument, or else its path, `module_path!()` and the function's name
    /// (`my_service::handlers::get_profile`); a method's is its `Self`
    /// type's path and the method's name (`my_service::handlers::Plans::get`).
    ///
    /// A computation that started before this returned `Ok` is never served
    /// after it. Failures are returned, kept and retried, as for
    /// [`invalidate_user`](Self::invalidate_user).
    ///
    /// `id` is not checked against the functions that exist: the store keeps
    /// no list of them, and the process dropping a function's entries need
    /// not have run it. A mistyped id returns `Ok` having dropped nothing;
    /// take ids from [`stats`](Self::stats), whose rows are keyed by them.
    ///
    /// ```
    /// let cache = cached_api::Cache::builder().build()?;
    /// cache.invalidate_function_blocking("my_service::handlers::get_profile")?;
    /// # Ok::<(), cached_api::Error>(())
    /// ```
    pub async fn invalidate_function(&self, id: &str) -> Result<(), Error> {
        let key = key::function_generation_key(&self.inner.config.prefix, id);
        self.invalidate(&key, Target::Generation, Dropped::Function(id))
            .await
    }

    /// [`invalidate_function`](Self::invalidate_function) for code outside an async runtime.
    pub fn invalidate_function_blocking(&self, id: &str) -> Result<(), Error> {
        let key = key::function_generation_key(&self.inner.config.prefix, id);
        self.invalidate_blocking(&key, Target::Generation, Dropped::Function(id))
    }

    /// Makes every entry carrying the tag `tag` unreachable, whatever its
    /// function and user, in every process, in one store command (on a
    /// cluster, one per slot, as [`invalidate_function`](Self::invalidate_function)):
    /// entries carry their tags' generations, and this replaces the tag's.
    /// `tag` is the text a `tags = [...]` template of the attribute writes
    /// for the call (`"org:42"` for `"org:{org_id}"` with `org_id = 42`).
    ///
    /// A computation that started before this returned `Ok` is never served
    /// after it. Failures are returned, kept and retried, as for
    /// [`invalidate_user`](Self::invalidate_user).
    ///
    /// ```
    /// let cache = cached_api::Cache::builder().build()?;
    /// cache.invalidate_tag_blocking("plans")?;
    /// # Ok::<(), cached_api::Error>(())
    /// ```
    pub async fn invalidate_tag(&self, tag: &str) -> Result<(), Error> {
        let key = key::tag_generation_key(&self.inner.config.prefix, tag);
        self.invalidate(&key, Target::Generation, Dropped::Tag)
            .await
    }

    /// [`invalidate_tag`](Self::invalidate_tag) for code outside an async runtime.
    pub fn invalidate_tag_blocking(&self, tag: &str) -> Result<(), Error> {
        let key = key::tag_generation_key(&self.inner.config.prefix, tag);
        self.invalidate_blocking(&key, Target::Generation, Dropped::Tag)
    }

    /// Writes what invalidating `target` at `key` writes (a fresh
    /// generation: every entry computed at the old one becomes
    /// unreachable; or a tombstone), and keeps it to be retried if that
    /// failed; a dropped entry also leaves this process's in-process tier.
    /// Counted as `dropped`.
    async fn invalidate(
        &self,
        key: &str,
        target: Target,
        dropped: Dropped<'_>,
    ) -> Result<(), Error> {
        self.usable()?;
        let result = self.inner.write_invalidation(key, target).await;
        self.invalidated(key, target, dropped, result)
    }

    fn invalidate_blocking(
        &self,
        key: &str,
        target: Target,
        dropped: Dropped<'_>,
    ) -> Result<(), Error> {
        self.usable()?;
        let result = self.inner.write_invalidation_blocking(key, target);
        self.invalidated(key, target, dropped, result)
    }

    fn invalidated(
        &self,
        key: &str,
        target: Target,
        dropped: Dropped<'_>,
        result: Result<(), Error>,
    ) -> Result<(), Error> {
        if let Target::Entry(_) = target {
            self.inner.l1.remove(key);
        }
        self.record_invalidation(key, target, dropped, result)
    }

    /// The key of one call of `spec`; `None` when the cache is disabled,
    /// or an invalidation of the call's user, function or entry has not
    /// landed yet.
    pub(crate) fn key<T>(
        &self,
        spec: &'static FnSpec,
        codec: &TypedCodec<T>,
        owner: Option<&str>,
        user: Option<UserId<'_>>,
        write_key: impl FnOnce(&mut KeyWriter),
    ) -> Option<EntryKey> {
        if self.inner.config.disabled {
            return None;
        }
        let key = self.entry_key(spec, codec, owner, user, write_key)?;
        if self.inner.pending.affect(&key) {
            self.inner.stats.record(spec, Event::Miss);
            tracing::debug!(
                function = spec.id(),
                "an invalidation has not landed yet; running the function uncached"
            );
            return None;
        }
        Some(key)
    }

    /// The key of one call of `spec`, whose values `codec` stores; `None`
    /// if an argument could not be written into it (such a call is never
    /// cached).
    pub(crate) fn entry_key<T>(
        &self,
        spec: &'static FnSpec,
        codec: &TypedCodec<T>,
        owner: Option<&str>,
        user: Option<UserId<'_>>,
        write_key: impl FnOnce(&mut KeyWriter),
    ) -> Option<EntryKey> {
        if let Some(owner) = owner {
            spec.own(owner);
        }
        let mut writer = KeyWriter::new(
            &self.inner.config.prefix,
            &spec.entry_segment(codec),
            owner,
            spec.reserved(),
            user,
        );
        write_key(&mut writer);
        if writer.failed() {
            return None;
        }
        Some(writer.finish())
    }

    /// Serves a call of an async function from the cache, or computes and
    /// stores it: every step that waits is awaited. With `detach`, an
    /// entry that answers the call but is stale or due for refresh is
    /// recomputed by a task of its own, which `detach` spawns.
    pub(crate) async fn call<P: Policy<R>, R, F: Future<Output = R>>(
        &self,
        spec: &'static FnSpec,
        codec: TypedCodec<P::Stored>,
        key: EntryKey,
        compute: F,
        detach: Option<Detacher<P::Stored, F>>,
    ) -> R {
        if spec.drops_entries() && !self.shape_recorded(spec, &key).await {
            return compute.await;
        }
        let step = match steps::start::<P, R>(&self.inner, spec, codec, key, detach.is_some()) {
            // An in-process hit: no future is made.
            Step::Done(value) => return value,
            // A hit in the store is one read. The driver every other call
            // needs is boxed: its future is kilobytes, and would otherwise
            // be part of this one, copied at each level that makes it.
            Step::Lookup(lookup) => {
                let read = self.inner.store.read(lookup.key(), lookup.l1()).await;
                match lookup.read(read) {
                    Step::Done(value) => return value,
                    step => step,
                }
            }
            step => step,
        };
        Box::pin(self.drive(step, compute, detach)).await
    }

    /// Recomputes an entry that answered its caller already, in a task of
    /// its own.
    async fn recompute<P: Policy<R>, R, F: Future<Output = R>>(
        self,
        resume: Resume<P::Stored>,
        compute: F,
    ) {
        if let Some(step) = steps::resume::<P, R>(&self.inner, resume) {
            self.drive(step, compute, None).await;
        }
    }

    /// Walks a call from `step` to its answer.
    async fn drive<P: Policy<R>, R, F: Future<Output = R>>(
        &self,
        mut step: Step<'_, P, R>,
        compute: F,
        detach: Option<Detacher<P::Stored, F>>,
    ) -> R {
        let mut compute_step = loop {
            if let Some(wait) = step.wait() {
                let waited = self.perform(wait).await;
                step = step.resume(waited);
                continue;
            }
            step = match step {
                Step::Detach(recompute) => match detach {
                    Some(detach) if tokio::runtime::Handle::try_current().is_ok() => {
                        let (value, resume) = recompute.split();
                        if let Some(resume) = resume {
                            detach(self, resume, compute);
                        }
                        return value;
                    }
                    _ => recompute.inline(),
                },
                Step::Compute(compute_step) => break compute_step,
                Step::Done(value) => return value,
                waits => waits,
            }
        };
        let lease = compute_step.take_lease();
        let finish = compute_step.computed(compute.await);
        let written = self.conclude(finish.storing(), lease).await;
        match finish {
            Finish::Done(value) => value,
            Finish::Write(write) => write.written(written),
        }
    }

    /// Stores what the function computed, if asked, then releases the
    /// call's lease, if it holds one: whether it stored.
    async fn conclude(
        &self,
        storing: Option<Storing<'_>>,
        lease: Option<HeldLease>,
    ) -> Result<bool, Error> {
        let store = &self.inner.store;
        let written = match storing {
            Some(s) => {
                store
                    .write(s.key, s.bytes, s.decoded, s.ttl, Some(s.expected))
                    .await
            }
            None => Ok(false),
        };
        if let Some(lease) = lease {
            lease_released(store.release_lease(&lease.key, lease.token).await);
        }
        written
    }

    /// [`conclude`](Self::conclude), blocking the calling thread.
    fn conclude_blocking(
        &self,
        storing: Option<Storing<'_>>,
        lease: Option<HeldLease>,
    ) -> Result<bool, Error> {
        let store = &self.inner.store;
        let written = match storing {
            Some(s) => store.write_blocking(s.key, s.bytes, s.decoded, s.ttl, Some(s.expected)),
            None => Ok(false),
        };
        if let Some(lease) = lease {
            lease_released(store.release_lease_blocking(&lease.key, lease.token));
        }
        written
    }

    /// Does what a step waits for: in one copy for every function.
    async fn perform(&self, wait: Wait<'_>) -> Waited {
        let store = &self.inner.store;
        match wait {
            Wait::Read(key, l1) => Waited::Read(store.read(key, l1).await),
            Wait::CreateGeneration { key, candidate } => {
                Waited::Created(store.init_generation(key, candidate).await)
            }
            Wait::Landing(flight) => Waited::Landed(flight.wait().await),
            Wait::Lease {
                delay,
                key,
                token,
                ttl,
                entry,
            } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Waited::Taken(store.take_lease(key, token, ttl, entry).await)
            }
            Wait::Release(held) => {
                lease_released(store.release_lease(&held.key, held.token).await);
                Waited::Released
            }
        }
    }

    /// [`perform`](Self::perform), blocking the calling thread.
    fn perform_blocking(&self, wait: Wait<'_>) -> Waited {
        let store = &self.inner.store;
        match wait {
            Wait::Read(key, l1) => Waited::Read(store.read_blocking(key, l1)),
            Wait::CreateGeneration { key, candidate } => {
                Waited::Created(store.init_generation_blocking(key, candidate))
            }
            Wait::Landing(flight) => Waited::Landed(flight.wait_blocking()),
            Wait::Lease {
                delay,
                key,
                token,
                ttl,
                entry,
            } => {
                std::thread::sleep(delay);
                Waited::Taken(store.take_lease_blocking(key, token, ttl, entry))
            }
            Wait::Release(held) => {
                lease_released(store.release_lease_blocking(&held.key, held.token));
                Waited::Released
            }
        }
    }

    /// [`call`](Self::call) for sync functions: the same steps, and every
    /// one that waits blocks the calling thread.
    pub(crate) fn call_blocking<P: Policy<R>, R>(
        &self,
        spec: &'static FnSpec,
        codec: TypedCodec<P::Stored>,
        key: EntryKey,
        compute: impl FnOnce() -> R,
    ) -> R {
        if spec.drops_entries() && !self.shape_recorded_blocking(spec, &key) {
            return compute();
        }
        let mut step = steps::start::<P, R>(&self.inner, spec, codec, key, false);
        // A hit in the store is one read, taken apart here rather than
        // through the loop's descriptions of what it waits for.
        if let Step::Lookup(lookup) = step {
            let read = self.inner.store.read_blocking(lookup.key(), lookup.l1());
            step = lookup.read(read);
        }
        let mut compute_step = loop {
            if let Some(wait) = step.wait() {
                let waited = self.perform_blocking(wait);
                step = step.resume(waited);
                continue;
            }
            step = match step {
                Step::Detach(recompute) => recompute.inline(),
                Step::Compute(compute_step) => break compute_step,
                Step::Done(value) => return value,
                waits => waits,
            }
        };
        let lease = compute_step.take_lease();
        let finish = compute_step.computed(compute());
        let written = self.conclude_blocking(finish.storing(), lease);
        match finish {
            Finish::Done(value) => value,
            Finish::Write(write) => write.written(written),
        }
    }

    fn record_invalidation(
        &self,
        generation_key: &str,
        target: Target,
        dropped: Dropped<'_>,
        result: Result<(), Error>,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let Err(error) = &result else {
            inner.pending.landed(generation_key, false);
            inner.stats.record_invalidation(dropped);
            tracing::debug!(
                function = dropped.function(),
                kind = dropped.kind(),
                "invalidated"
            );
            return result;
        };
        match dropped {
            Dropped::Entry(spec) => inner.stats.record(spec, Event::Error),
            Dropped::User | Dropped::Function(_) | Dropped::Tag => {
                inner.stats.record_unattributed(Event::Error)
            }
        }
        match inner.pending.keep(generation_key, target) {
            Kept::Dropped => tracing::error!(
                %error,
                "invalidation failed, and {MAX_PENDING} others wait to be retried: this one will not be; what it drops may be served until it expires"
            ),
            kept => {
                tracing::error!(
                    %error,
                    "invalidation failed; it is retried in the background, and this process serves what it drops uncached until it lands"
                );
                if let Kept::NeedsRetryThread = kept {
                    retry_in_background(
                        Arc::downgrade(inner),
                        |inner| &inner.pending,
                        |inner, key, target| inner.write_invalidation_blocking(key, target).is_ok(),
                        inner.config.breaker_cooldown.clamp(RETRY_MIN, RETRY_MAX),
                    );
                }
            }
        }
        result
    }
}

impl Inner {
    /// What invalidating `target` at `key` writes: a fresh generation, or a
    /// tombstone with a fresh mark in place of an entry.
    async fn write_invalidation(&self, key: &str, target: Target) -> Result<(), Error> {
        match target {
            Target::Generation => self.store.set_generation(key, fresh_generation()).await,
            Target::Entry(ttl) => {
                let bytes = tombstone(fresh_generation());
                self.store.write_tombstone(key, &bytes, ttl).await
            }
        }
    }

    fn write_invalidation_blocking(&self, key: &str, target: Target) -> Result<(), Error> {
        match target {
            Target::Generation => self.store.set_generation_blocking(key, fresh_generation()),
            Target::Entry(ttl) => {
                let bytes = tombstone(fresh_generation());
                self.store.write_tombstone_blocking(key, &bytes, ttl)
            }
        }
    }
}

impl CacheBuilder {
    /// Checks the settings and builds the cache. Connections to Redis open
    /// on first use, so a server that is down now is not an error here.
    pub fn build(self) -> Result<Cache, Error> {
        Cache::new(self.checked()?)
    }
}

/// Spawns the task that recomputes an entry, with the call's computation:
/// given by callers whose computation can move to a task (`Send + 'static`).
pub(crate) type Detacher<S, F> = fn(&Cache, Resume<S>, F);

/// The [`Detacher`] of a call of `P`, `R` whose computation is `F`.
pub(crate) fn detacher<P, R, F>() -> Detacher<P::Stored, F>
where
    P: Policy<R> + 'static,
    P::Stored: 'static,
    R: Send + 'static,
    F: Future<Output = R> + Send + 'static,
{
    |cache, resume, compute| {
        let cache = cache.clone();
        tokio::spawn(cache.recompute::<P, R, F>(resume, compute));
    }
}

/// A lease not released expires on its own: its waiters wait longer, and
/// nothing is lost, so a failure is only logged.
fn lease_released(released: Result<(), Error>) {
    if let Err(error) = released {
        tracing::debug!(%error, "lease not released; it expires on its own");
    }
}

/// The shortest a tombstone lives: longer than any computation it must
/// outlive, within reason, even for entries of a short TTL.
const TOMBSTONE_MIN: std::time::Duration = std::time::Duration::from_secs(600);

/// How often failed invalidations are retried: the breaker's cooldown, within these bounds.
const RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(10);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// A random number in [0, 1), from the same source as generations.
pub(crate) fn unit_random() -> f64 {
    (fresh_generation() >> 11) as f64 / (1u64 << 53) as f64
}

/// A random generation: keyed SipHash of a counter, so values differ across
/// processes (random keys) and within one (the counter).
pub(crate) fn fresh_generation() -> u64 {
    static KEYS: LazyLock<RandomState> = LazyLock::new(RandomState::new);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEYS.build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Relaxed));
    // 0 is what global entries carry; a user's generation is never 0.
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Whole;
    use crate::spec::FnOptions;

    static DOUBLE: FnSpec = FnSpec::new(FnOptions {
        id: "tests::double",
        method: false,
        version: 0,
        ttl: None,
        error_ttl: None,
        jitter_percent: None,
        l1: None,
        refresh: None,
        stale: None,
        lock: None,
        drops_entries: false,
        reserved: "",
    });

    fn double(cache: &Cache, id: u32) -> u32 {
        let codec = TypedCodec::bincode();
        let key = cache
            .key(&DOUBLE, &codec, None, None, |key| {
                key.value(&id);
            })
            .expect("the cache is enabled");
        cache.call_blocking::<Whole, u32>(&DOUBLE, codec, key, || id * 2)
    }

    #[test]
    fn each_cache_counts_its_own_calls() {
        let a = Cache::builder().build().unwrap();
        let b = Cache::builder().build().unwrap();
        assert_eq!(double(&a, 1), 2);
        assert_eq!(double(&a, 1), 2);
        assert_eq!(double(&b, 1), 2);
        a.invalidate_user_blocking(&"someone").unwrap();
        let (a, b) = (a.stats(), b.stats());
        let counts = a.function("tests::double");
        assert_eq!((counts.misses, counts.hits, counts.sets), (1, 1, 1));
        let counts = b.function("tests::double");
        assert_eq!((counts.misses, counts.hits, counts.sets), (1, 0, 1));
        assert_eq!((a.total.invalidations, b.total.invalidations), (1, 0));
        assert_eq!(a.total.hits, 1, "the total is this cache's alone");
    }
}
