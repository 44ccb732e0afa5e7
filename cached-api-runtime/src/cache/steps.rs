//! The cache-aside steps of one call, as a state machine: look up; on a
//! miss, join the entry's flight; lead (compute, store, share) or follow
//! (take the leader's result, or start over if it is gone).
//!
//! Nothing here performs I/O or waits. Each [`Step`] names what must happen
//! next and hands over what it needs; the caller's driver does it, and the
//! async driver awaits where the sync driver blocks its thread. A step that
//! waits in a new way (a lease, a backoff) is a new variant, and the crate
//! does not compile until both drivers say how they wait for it: no sync
//! caller can ever be handed a future it would have to poll.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Inner, fresh_generation, unit_random};
use crate::Error;
use crate::backend::{L1Read, Read, with_entry};
use crate::codec::{Decoded, Generations, Header, Observed, Shared, TypedCodec};
use crate::flight::{Epoch, Flight, Leader, Outcome, Role};
use crate::key::EntryKey;
use crate::policy::{Lifetime, Policy};
use crate::spec::{FnSpec, Freshness};
use crate::stats::Event;

mod lease;

pub(super) use self::lease::{HeldLease, Lease, Release};

/// What one call must do next.
pub(super) enum Step<'c, P: Policy<R>, R> {
    /// Read the entry, and its user's generation, then [`Lookup::read`].
    Lookup(Lookup<'c, P, R>),
    /// The user has no generation yet: create one, then [`CreateGeneration::created`].
    CreateGeneration(CreateGeneration<'c, P, R>),
    /// Another call in this process computes the entry: wait until it
    /// lands, then [`Follow::landed`].
    Follow(Follow<'c, P, R>),
    /// Wait [`Lease::delay`], then take the entry's lease (so that one
    /// process in the fleet computes it) and read the entry, then
    /// [`Lease::taken`].
    Lease(Lease<'c, P, R>),
    /// Release the lease, then answer with [`Release::released`].
    Release(Release<R>),
    /// The entry answers this call, and may be recomputed by a task of its
    /// own: spawn one with what [`Detach::split`] leaves, or recompute in
    /// this call with [`Detach::inline`].
    Detach(Detach<'c, P, R>),
    /// Run the function, then [`Compute::computed`].
    Compute(Compute<'c, P, R>),
    /// The call's answer, from the cache or from a concurrent call.
    Done(R),
}

/// What a step waits for, described: one type for every function, so that
/// the code that waits is compiled once, not once per cached function.
pub(super) enum Wait<'w> {
    /// [`Step::Lookup`]: read the entry.
    Read(&'w EntryKey, L1Read),
    /// [`Step::CreateGeneration`]: store `candidate` unless a generation is there.
    CreateGeneration { key: &'w str, candidate: u64 },
    /// [`Step::Follow`]: the flight lands.
    Landing(&'w Flight),
    /// [`Step::Lease`]: wait `delay`, then take the lease and read.
    Lease {
        delay: Duration,
        key: &'w str,
        token: u64,
        ttl: Duration,
        entry: &'w EntryKey,
    },
    /// [`Step::Release`]: release the lease.
    Release(&'w HeldLease),
}

/// What a [`Wait`] came to.
pub(super) enum Waited {
    Read(Result<Read, Error>),
    Created(Result<Option<u64>, Error>),
    Landed(Outcome),
    Taken(Result<(bool, Read), Error>),
    Released,
}

impl<'c, P: Policy<R>, R> Step<'c, P, R> {
    /// What this step waits for; `None` for the steps a driver takes apart
    /// itself (they run the function, or answer).
    pub(super) fn wait(&self) -> Option<Wait<'_>> {
        Some(match self {
            Step::Lookup(lookup) => Wait::Read(lookup.key(), lookup.l1()),
            Step::CreateGeneration(create) => Wait::CreateGeneration {
                key: create.key(),
                candidate: create.candidate(),
            },
            Step::Follow(follow) => Wait::Landing(follow.flight()),
            Step::Lease(lease) => Wait::Lease {
                delay: lease.delay(),
                key: lease.key(),
                token: lease.token(),
                ttl: lease.ttl(),
                entry: lease.entry(),
            },
            Step::Release(release) => Wait::Release(release.lease()),
            Step::Detach(_) | Step::Compute(_) | Step::Done(_) => return None,
        })
    }

    /// The next step, given what this step's [`wait`](Self::wait) came to.
    pub(super) fn resume(self, waited: Waited) -> Step<'c, P, R> {
        match (self, waited) {
            (Step::Lookup(lookup), Waited::Read(read)) => lookup.read(read),
            (Step::CreateGeneration(create), Waited::Created(existing)) => create.created(existing),
            (Step::Follow(follow), Waited::Landed(outcome)) => follow.landed(outcome),
            (Step::Lease(lease), Waited::Taken(taken)) => lease.taken(taken),
            (Step::Release(release), Waited::Released) => Step::Done(release.released()),
            _ => unreachable!("a driver resumes a step with what the step's own wait came to"),
        }
    }
}

/// The write a [`Finish::Write`] asks for, described as [`Wait`] describes
/// a step's.
pub(super) struct Storing<'w> {
    pub(super) key: &'w str,
    pub(super) bytes: &'w [u8],
    pub(super) decoded: Option<Decoded>,
    pub(super) ttl: Duration,
    /// Store only if the key still holds this.
    pub(super) expected: &'w Observed,
}

impl<R> Finish<'_, R> {
    /// The write to do before [`Write::written`]; `None` if nothing is stored.
    pub(super) fn storing(&self) -> Option<Storing<'_>> {
        let Finish::Write(write) = self else {
            return None;
        };
        Some(Storing {
            key: write.key.entry(),
            bytes: &write.bytes,
            decoded: write.decoded.clone(),
            ttl: write.ttl,
            expected: &write.expected,
        })
    }
}

/// What comes after the function ran.
#[expect(
    clippy::large_enum_variant,
    reason = "made and taken apart once per miss, on the stack: boxing would allocate per miss"
)]
pub(super) enum Finish<'c, R> {
    /// Nothing to store: return the value.
    Done(R),
    /// Store the entry, then [`Write::written`].
    Write(Write<'c, R>),
}

/// The first step of a call of `spec` under `key`.
pub(super) fn start<'c, P: Policy<R>, R>(
    inner: &'c Inner,
    spec: &'static FnSpec,
    codec: TypedCodec<P::Stored>,
    key: EntryKey,
    detachable: bool,
) -> Step<'c, P, R> {
    Call {
        inner,
        spec,
        codec,
        key,
        observed: Observed::default(),
        detachable,
        looks_again: MAX_LOOKS_AGAIN,
        returns: PhantomData,
    }
    .lookup()
}

/// The first step of a task that recomputes an entry which answered its
/// caller already; `None` if the entry's bytes no longer open.
pub(super) fn resume<'c, P: Policy<R>, R>(
    inner: &'c Inner,
    resume: Resume<P::Stored>,
) -> Option<Step<'c, P, R>> {
    let call = Call {
        inner,
        spec: resume.spec,
        codec: resume.codec,
        key: resume.key,
        observed: resume.observed,
        detachable: false,
        looks_again: MAX_LOOKS_AGAIN,
        returns: PhantomData,
    };
    let (stored, _) = call.unseal(&resume.bytes, None, Some(resume.generations))?;
    let value = P::restore(stored);
    Some(call.recompute_while_current(resume.generations, Ahead::Detached(value)))
}

/// How often one call may look up again because a result in its shard
/// landed meanwhile: enough to catch the one it missed, bounded so that
/// constant landings cannot keep a call from computing its own.
const MAX_LOOKS_AGAIN: u32 = 3;

/// What a call carries from step to step.
struct Call<'c, P: Policy<R>, R> {
    inner: &'c Inner,
    spec: &'static FnSpec,
    codec: TypedCodec<P::Stored>,
    key: EntryKey,
    /// What the entry's key held at the last read: a value computed now is
    /// stored only if it still does.
    observed: Observed,
    /// Whether a task of its own may recompute an entry that answers this
    /// call (`stale`, `refresh`): the call's computation can move to one.
    detachable: bool,
    looks_again: u32,
    returns: PhantomData<fn() -> R>,
}

impl<'c, P: Policy<R>, R> Call<'c, P, R> {
    fn lookup(self) -> Step<'c, P, R> {
        tracing::trace!(
            function = self.spec.id(),
            key = self.key.entry(),
            user_generation = self.key.generation(),
            "lookup"
        );
        if let Some(value) = self.l1_value() {
            self.record(Event::L1Hit);
            return Step::Done(value);
        }
        let seen = self.inner.flights.epoch(self.key.entry());
        Step::Lookup(Lookup { call: self, seen })
    }

    /// The value the in-process tier keeps for this call, if it is current.
    fn l1_value(&self) -> Option<R> {
        if !self.spec.has_l1() {
            return None;
        }
        let store = &self.inner.store;
        let kept = self
            .inner
            .l1
            .get(self.key.entry(), &|seen| store.unchanged(seen), &|| {
                store.current(&self.key, self.l1_read())
            })?;
        Some(P::restore(self.codec.copy(kept.value())?))
    }

    /// What this call's values in the in-process tier depend on.
    fn l1_read(&self) -> L1Read {
        if !self.spec.has_l1() {
            L1Read::Off
        } else if self.key.generation().is_none() || self.spec.drops_entries() {
            L1Read::Entry
        } else {
            L1Read::Generations
        }
    }

    /// Keeps a copy of the value, current while the tracked key holds
    /// `current_at` and the function's generation is `function`, in the
    /// in-process tier; `left_ms` is what is left of the entry's TTL, asked
    /// only if the function has `l1`.
    fn keep_in_l1(
        &self,
        copy: &dyn Fn() -> Option<Decoded>,
        current_at: u64,
        function: u64,
        left_ms: &dyn Fn() -> u64,
    ) {
        if self.spec.has_l1() {
            keep_in_l1(
                self.inner,
                self.spec,
                &self.key,
                copy,
                (current_at, function),
                left_ms,
            );
        }
    }

    /// Joins the computation of the entry at `generations`.
    fn join(mut self, generations: Generations, seen: Epoch) -> Step<'c, P, R> {
        let inner = self.inner;
        let seen = (self.looks_again > 0).then_some(seen);
        match inner
            .flights
            .join(self.key.entry(), generations, self.observed, seen)
        {
            Role::LookAgain => {
                self.looks_again -= 1;
                self.lookup()
            }
            Role::Follower(flight) => {
                self.record(Event::Coalesced);
                Step::Follow(Follow { call: self, flight })
            }
            Role::Leader(leader) => self.lead(leader, generations, Reason::Miss),
        }
    }

    /// Computes the entry as this process's leader: under the entry's
    /// lease, if the function takes one.
    fn lead(
        self,
        leader: Leader<'c>,
        generations: Generations,
        reason: Reason<R>,
    ) -> Step<'c, P, R> {
        if self.spec.lease().is_some() {
            return Step::Lease(Lease::new(self, leader, generations, reason));
        }
        Step::Compute(Compute {
            call: self,
            lead: Some((leader, generations)),
            reason,
            lease: None,
            started: Instant::now(),
        })
    }

    /// Recomputes an entry that still answers with `value` if no call in
    /// this process does already; else answers with `value`.
    fn recompute_while_current(self, generations: Generations, ahead: Ahead<R>) -> Step<'c, P, R> {
        let flights = &self.inner.flights;
        match flights.join(self.key.entry(), generations, self.observed, None) {
            Role::Leader(leader) => self.lead(leader, generations, Reason::Ahead(ahead)),
            Role::Follower(_) | Role::LookAgain => self.answer_current(ahead),
        }
    }

    /// Answers with the value of an entry that another call, process or
    /// task recomputes.
    fn answer_current(&self, ahead: Ahead<R>) -> Step<'c, P, R> {
        Step::Done(self.answered(ahead))
    }

    /// The value of an entry that still answers, counted as this call's
    /// answer.
    fn answered(&self, ahead: Ahead<R>) -> R {
        match ahead {
            Ahead::Stale(value) => {
                self.record(Event::Stale);
                tracing::debug!(
                    function = self.spec.id(),
                    "stale entry answered while it is recomputed"
                );
                value
            }
            Ahead::Refresh(value) => {
                self.record(Event::Hit);
                value
            }
            // Nobody's answer: the task's caller was answered already.
            Ahead::Detached(value) => value,
        }
    }

    /// Recomputes an entry that still answers (`ahead`, read as `bytes`):
    /// in a task of its own if this call allows it, else in this call,
    /// unless another call does already.
    fn recompute_ahead(
        self,
        generations: Generations,
        ahead: Ahead<R>,
        bytes: &[u8],
    ) -> Step<'c, P, R> {
        if self.detachable {
            return Step::Detach(Detach {
                call: self,
                generations,
                ahead,
                bytes: Arc::from(bytes),
            });
        }
        self.recompute_while_current(generations, ahead)
    }

    /// Runs the function once for every call of this entry in the process
    /// that could not read the store (it is down, or its circuit open): the
    /// origin is hit hardest when the cache is gone. The leader stores
    /// nothing and shares its value (if the policy would cache it).
    fn share_unread(self) -> Step<'c, P, R> {
        let unread = Generations::UNREAD;
        let flights = &self.inner.flights;
        match flights.join(self.key.entry(), unread, self.observed, None) {
            Role::Follower(flight) => {
                self.record(Event::Coalesced);
                Step::Follow(Follow { call: self, flight })
            }
            // No lease: the store that would hold it cannot be read.
            Role::Leader(leader) => Step::Compute(Compute {
                call: self,
                lead: Some((leader, unread)),
                reason: Reason::Miss,
                lease: None,
                started: Instant::now(),
            }),
            Role::LookAgain => self.uncached(),
        }
    }

    /// Runs the function without storing what it returns.
    fn uncached(self) -> Step<'c, P, R> {
        Step::Compute(Compute {
            call: self,
            lead: None,
            reason: Reason::Miss,
            lease: None,
            started: Instant::now(),
        })
    }

    /// Now by the cache's clock, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64 {
        self.inner.config.clock.unix_ms()
    }

    fn record(&self, event: Event) {
        self.inner.stats.record(self.spec, event);
    }

    fn record_error(&self, error: &Error, what: &'static str) {
        record_error(self.inner, self.spec, error, what);
    }

    /// The stored value, if it was written by this shape of the function and,
    /// when `expected` is given, at those generations: copied
    /// from `decoded` if the store kept it so, else decoded from `bytes`.
    fn unseal(
        &self,
        bytes: &[u8],
        decoded: Option<&Shared>,
        expected: Option<Generations>,
    ) -> Option<(P::Stored, Header)> {
        let (header, payload) = self.opened(bytes, expected)?;
        let value = match decoded.and_then(|decoded| self.codec.copy(decoded)) {
            Some(value) => value,
            None => self.codec.decode(payload)?,
        };
        Some((value, header))
    }

    /// The header and payload of `bytes`, if they were written by this
    /// shape of the function and, when `expected` is given, at those
    /// generations.
    fn opened<'b>(
        &self,
        bytes: &'b [u8],
        expected: Option<Generations>,
    ) -> Option<(Header, &'b [u8])> {
        let (header, payload) = Header::open(bytes)?;
        let current = header.version == self.spec.version()
            && header.fingerprint == self.spec.fingerprint(&self.codec)
            && expected.is_none_or(|expected| header.generations() == expected);
        current.then_some((header, payload))
    }

    /// The bytes to store for `value`, how long the store keeps them and
    /// its TTL; `None` if it is not cached.
    fn seal(
        &self,
        generations: Generations,
        value: &R,
        compute_ms: u32,
    ) -> Option<(Vec<u8>, Duration, Duration)> {
        let (stored, lifetime) = P::keep(value)?;
        let from_value = match lifetime {
            Lifetime::Value => self.codec.ttl_of(stored),
            Lifetime::Error => None,
        };
        let fingerprint = self.spec.fingerprint(&self.codec);
        let header = header(
            self.inner,
            self.spec,
            lifetime,
            from_value,
            generations,
            fingerprint,
            compute_ms,
        )?;
        let bytes = header.seal(self.codec, stored)?;
        let ttl = header.ttl();
        let (bytes, kept_for) = storable(self.inner, self.spec, bytes, lifetime, ttl)?;
        Some((bytes, kept_for, ttl))
    }
}

/// The header of a value kept for `lifetime` (for `from_value`, when the
/// value chose its TTL), stored now; `None` if the function keeps no value
/// of that kind, or the value chose not to be kept (a TTL of zero). In one
/// copy for every function, as [`storable`].
fn header(
    inner: &Inner,
    spec: &FnSpec,
    lifetime: Lifetime,
    from_value: Option<Duration>,
    generations: Generations,
    fingerprint: u64,
    compute_ms: u32,
) -> Option<Header> {
    let ttl = match (lifetime, from_value) {
        (Lifetime::Value, Some(ttl)) if ttl.is_zero() => return None,
        (Lifetime::Value, Some(ttl)) => ttl.min(cached_api_duration::MAX),
        (Lifetime::Value, None) => spec.ttl(inner.config.default_ttl),
        (Lifetime::Error, _) => spec.error_ttl()?,
    };
    let ttl = spec.jittered(ttl, unit_random());
    let now_ms = inner.config.clock.unix_ms();
    Some(Header {
        version: spec.version(),
        mark: fresh_generation(),
        fingerprint,
        generation: generations.user,
        function_generation: generations.function,
        stored_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        compute_ms,
    })
}

/// The sealed `bytes` and how long the store keeps them, if they are not
/// too large to store.
fn storable(
    inner: &Inner,
    spec: &FnSpec,
    bytes: Vec<u8>,
    lifetime: Lifetime,
    ttl: Duration,
) -> Option<(Vec<u8>, Duration)> {
    let max = inner.config.max_value_size;
    if bytes.len() > max {
        inner.stats.record(spec, Event::Oversized);
        // A hot function would log this on every call: once, then counted.
        if spec.first_oversized() {
            tracing::warn!(
                function = spec.id(),
                size = bytes.len(),
                max,
                "value too large to cache; returned uncached (said once per function; `Counts::oversized` counts every one)"
            );
        } else {
            tracing::debug!(
                function = spec.id(),
                size = bytes.len(),
                max,
                "value too large to cache; returned uncached"
            );
        }
        return None;
    }
    let kept_for = match lifetime {
        Lifetime::Value => spec.kept_for(ttl),
        Lifetime::Error => ttl,
    };
    Some((bytes, kept_for))
}

/// [`Call::keep_in_l1`], in one copy for every function.
fn keep_in_l1(
    inner: &Inner,
    spec: &FnSpec,
    key: &EntryKey,
    copy: &dyn Fn() -> Option<Decoded>,
    current_at: (u64, u64),
    left_ms: &dyn Fn() -> u64,
) {
    let lifetime = spec.l1_lifetime(Duration::from_millis(left_ms()));
    if let (Some(lifetime), Some(decoded)) = (lifetime, copy()) {
        inner.l1.insert(key.entry(), decoded, current_at, lifetime);
    }
}

/// The entry (and generation) must be read.
pub(super) struct Lookup<'c, P: Policy<R>, R> {
    call: Call<'c, P, R>,
    /// Landings in the entry's shard before the read.
    seen: Epoch,
}

impl<'c, P: Policy<R>, R> Lookup<'c, P, R> {
    pub(super) fn key(&self) -> &EntryKey {
        &self.call.key
    }

    /// What the function's values in the in-process tier depend on, so
    /// what the read should leave tracked.
    pub(super) fn l1(&self) -> L1Read {
        self.call.l1_read()
    }

    /// The payload of the entry in `read`, if a hit would answer with it
    /// now (current at the generations read with it, and fresh), without
    /// decoding it: what a validator of its content is computed from; and
    /// how long the entry has left.
    #[cfg(feature = "axum")]
    pub(super) fn current_payload<'r>(&self, read: &'r Read) -> Option<(&'r [u8], Duration)> {
        let call = &self.call;
        let user = match (call.key.generation(), read.generation) {
            (None, _) => 0,
            (Some(_), Some(generation)) => generation,
            (Some(_), None) => return None,
        };
        let expected = Generations {
            user,
            function: read.function_generation,
        };
        let (header, payload) = call.opened(read.value.as_deref()?, Some(expected))?;
        let now_ms = call.now_ms();
        let fresh = matches!(
            call.spec.freshness(&|| now_ms, header.expires_at_ms),
            Freshness::Fresh
        );
        let left = Duration::from_millis(header.expires_at_ms.saturating_sub(now_ms));
        fresh.then_some((payload, left))
    }

    /// Judges what the store returned.
    pub(super) fn read(self, read: Result<Read, Error>) -> Step<'c, P, R> {
        let Lookup { mut call, seen } = self;
        let read = match read {
            Ok(read) => read,
            Err(error) => {
                call.record_error(&error, "read failed; running the function uncached");
                return call.share_unread();
            }
        };
        call.observed = Observed::of(read.value.as_deref());
        let function = read.function_generation;
        let user = match (call.key.generation(), read.generation) {
            (None, _) => 0,
            (Some(_), Some(generation)) => generation,
            (Some(_), None) => {
                return Step::CreateGeneration(CreateGeneration {
                    call,
                    seen,
                    candidate: fresh_generation(),
                    function,
                });
            }
        };
        let expected = Generations { user, function };
        let Some(bytes) = read.value else {
            return call.join(expected, seen);
        };
        if let Some((stored, header)) = call.unseal(&bytes, read.decoded.as_deref(), Some(expected))
        {
            match call.spec.freshness(&|| call.now_ms(), header.expires_at_ms) {
                Freshness::Fresh => {}
                Freshness::Stale => {
                    let value = P::restore(stored);
                    return call.recompute_ahead(expected, Ahead::Stale(value), &bytes);
                }
                Freshness::Expired => return call.join(expected, seen),
            }
            let current_at = match call.l1_read() {
                L1Read::Off => None,
                L1Read::Generations => Some(user),
                L1Read::Entry => read.stamp.map(|stamp| with_entry(user, stamp)),
            };
            if let Some(current_at) = current_at {
                let copy = || call.codec.share(&stored);
                let left_ms = || header.expires_at_ms.saturating_sub(call.now_ms());
                call.keep_in_l1(&copy, current_at, function, &left_ms);
            }
            let value = P::restore(stored);
            if call.spec.refresh_due(
                &|| call.now_ms(),
                header.expires_at_ms,
                header.compute_ms,
                &unit_random,
            ) {
                return call.recompute_ahead(expected, Ahead::Refresh(value), &bytes);
            }
            call.record(Event::Hit);
            tracing::debug!(
                function = call.spec.id(),
                age_ms = header.age_ms(call.now_ms()),
                "cache hit"
            );
            return Step::Done(value);
        }
        call.join(expected, seen)
    }
}

/// The user has no generation: one must be stored, unless another caller
/// stored one first.
pub(super) struct CreateGeneration<'c, P: Policy<R>, R> {
    call: Call<'c, P, R>,
    seen: Epoch,
    candidate: u64,
    /// The function's generation, read with the entry.
    function: u64,
}

impl<'c, P: Policy<R>, R> CreateGeneration<'c, P, R> {
    /// The key of the user's generation.
    pub(super) fn key(&self) -> &str {
        self.call
            .key
            .generation()
            .expect("only per-user entries miss their generation")
    }

    /// The generation to store if there is none.
    pub(super) fn candidate(&self) -> u64 {
        self.candidate
    }

    /// Goes on at the generation the store holds now.
    pub(super) fn created(self, existing: Result<Option<u64>, Error>) -> Step<'c, P, R> {
        let CreateGeneration {
            call,
            seen,
            function,
            ..
        } = self;
        match existing {
            Ok(Some(user)) => call.join(Generations { user, function }, seen),
            Ok(None) => {
                call.record(Event::Error);
                tracing::warn!(
                    function = call.spec.id(),
                    "user generation holds foreign bytes; not caching until the user is invalidated"
                );
                call.uncached()
            }
            Err(error) => {
                call.record_error(
                    &error,
                    "generation unavailable; running the function uncached",
                );
                call.uncached()
            }
        }
    }
}

/// Another call computes the entry.
pub(super) struct Follow<'c, P: Policy<R>, R> {
    call: Call<'c, P, R>,
    flight: Arc<Flight>,
}

impl<'c, P: Policy<R>, R> Follow<'c, P, R> {
    /// The computation to wait for.
    pub(super) fn flight(&self) -> &Flight {
        &self.flight
    }

    /// Takes the leader's result, runs the function if it cannot be shared,
    /// or starts over if the leader is gone.
    pub(super) fn landed(self, outcome: Outcome) -> Step<'c, P, R> {
        let call = self.call;
        let bytes = match outcome {
            Outcome::Value(bytes) => bytes,
            Outcome::NotShared => return call.uncached(),
            Outcome::Abandoned => return call.lookup(),
        };
        match call.unseal(&bytes, None, None) {
            Some((stored, _)) => {
                let value = P::restore(stored);
                call.record(Event::Hit);
                tracing::debug!(
                    function = call.spec.id(),
                    "shared result of a concurrent call"
                );
                Step::Done(value)
            }
            None => call.uncached(),
        }
    }
}

/// The function must run; as the entry's leader, if the call is one.
pub(super) struct Compute<'c, P: Policy<R>, R> {
    call: Call<'c, P, R>,
    /// The flight this call leads and the generations it read.
    lead: Option<(Leader<'c>, Generations)>,
    reason: Reason<R>,
    lease: Option<HeldLease>,
    started: Instant,
}

/// Why a call runs the function.
enum Reason<R> {
    /// No current entry answers it.
    Miss,
    /// Its entry still answers, with the value inside.
    Ahead(Ahead<R>),
}

/// Why an entry that still answers is recomputed.
enum Ahead<R> {
    /// It nears its expiry (`refresh`).
    Refresh(R),
    /// It is past its TTL, within its `stale` window: this value answers
    /// if the function fails.
    Stale(R),
    /// A task of its own recomputes it, after it answered its caller
    /// (stale or due for refresh); the value is nobody's answer.
    Detached(R),
}

/// An entry that answers its call now, and should be recomputed.
pub(super) struct Detach<'c, P: Policy<R>, R> {
    call: Call<'c, P, R>,
    generations: Generations,
    /// Why, with the call's answer: stale, or due for refresh.
    ahead: Ahead<R>,
    /// The entry as read, from which the task decodes its own copy.
    bytes: Arc<[u8]>,
}

impl<'c, P: Policy<R>, R> Detach<'c, P, R> {
    /// Recomputes in this call instead (no task can be spawned).
    pub(super) fn inline(self) -> Step<'c, P, R> {
        self.call
            .recompute_while_current(self.generations, self.ahead)
    }

    /// The call's answer, and what a task needs to recompute the entry;
    /// `None` if a computation of it is under way in this process already.
    pub(super) fn split(self) -> (R, Option<Resume<P::Stored>>) {
        let Detach {
            call,
            generations,
            ahead,
            bytes,
        } = self;
        let value = call.answered(ahead);
        let key = call.key.entry();
        if call
            .inner
            .flights
            .in_flight(key, generations, call.observed)
        {
            return (value, None);
        }
        let resume = Resume {
            spec: call.spec,
            codec: call.codec,
            key: call.key,
            generations,
            observed: call.observed,
            bytes,
        };
        (value, Some(resume))
    }
}

/// What a task needs to recompute an entry: owned, so that it can move.
pub(crate) struct Resume<S> {
    spec: &'static FnSpec,
    codec: TypedCodec<S>,
    key: EntryKey,
    generations: Generations,
    observed: Observed,
    bytes: Arc<[u8]>,
}

impl<'c, P: Policy<R>, R> Compute<'c, P, R> {
    /// The lease this call holds, for the driver to release once the
    /// entry is stored (or not).
    pub(super) fn take_lease(&mut self) -> Option<HeldLease> {
        self.lease.take()
    }

    /// Decides what happens to the function's value.
    pub(super) fn computed(self, value: R) -> Finish<'c, R> {
        let Compute {
            call,
            lead,
            reason,
            started,
            ..
        } = self;
        match reason {
            Reason::Ahead(Ahead::Stale(stale)) if P::failed(&value) => {
                // Nothing is stored: the stale entry keeps answering, and
                // the next caller tries the function again. Dropping the
                // lead sends any follower back to the store.
                call.record(Event::Stale);
                tracing::debug!(
                    function = call.spec.id(),
                    "the function failed; answered with its stale entry"
                );
                return Finish::Done(stale);
            }
            Reason::Ahead(Ahead::Refresh(_) | Ahead::Detached(_)) => {
                call.record(Event::Refresh);
                tracing::debug!(function = call.spec.id(), "recomputed ahead of expiry");
            }
            Reason::Miss | Reason::Ahead(Ahead::Stale(_)) => {
                call.record(Event::Miss);
                tracing::debug!(function = call.spec.id(), "cache miss");
            }
        }
        let compute_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let Some((leader, generations)) = lead else {
            return Finish::Done(value);
        };
        match call.seal(generations, &value, compute_ms) {
            Some((bytes, ..)) if generations == Generations::UNREAD => {
                leader.land(Outcome::Value(bytes.into()));
                Finish::Done(value)
            }
            Some((bytes, kept_for, value_ttl)) => {
                let wanted = call.spec.has_l1() || call.inner.store.keeps_decoded();
                let decoded = P::keep(&value)
                    .filter(|_| wanted)
                    .and_then(|(stored, _)| call.codec.share(stored));
                // Values that depend on the entry are kept from a read of
                // it, which tracks it.
                if call.l1_read() == L1Read::Generations {
                    let copy = || decoded.clone();
                    let (user, function) = (generations.user, generations.function);
                    let left_ms = || u64::try_from(value_ttl.as_millis()).unwrap_or(u64::MAX);
                    call.keep_in_l1(&copy, user, function, &left_ms);
                }
                Finish::Write(Write {
                    inner: call.inner,
                    spec: call.spec,
                    expected: call.observed,
                    key: call.key,
                    bytes,
                    decoded,
                    ttl: kept_for,
                    leader,
                    value,
                })
            }
            None => {
                leader.land(Outcome::NotShared);
                Finish::Done(value)
            }
        }
    }
}

/// The entry must be stored; its followers get it once it is.
pub(super) struct Write<'c, R> {
    inner: &'c Inner,
    spec: &'static FnSpec,
    key: EntryKey,
    /// What the key held when the value's computation was decided.
    expected: Observed,
    bytes: Vec<u8>,
    /// A copy of the value, for a store that keeps one.
    decoded: Option<Decoded>,
    ttl: Duration,
    leader: Leader<'c>,
    value: R,
}

impl<R> Write<'_, R> {
    /// Shares the entry with the followers and answers the call, whether
    /// or not the store took it.
    pub(super) fn written(self, written: Result<bool, Error>) -> R {
        match written {
            Ok(true) => {
                self.inner.stats.record(self.spec, Event::Set);
                tracing::debug!(function = self.spec.id(), "cache set");
            }
            Ok(false) => tracing::debug!(
                function = self.spec.id(),
                "not stored: the entry changed since it was read (invalidated, or stored by another call)"
            ),
            Err(error) => {
                tracing::trace!(key = self.key.entry(), "write failed");
                record_error(
                    self.inner,
                    self.spec,
                    &error,
                    "write failed; the result was returned uncached",
                );
            }
        }
        self.leader.land(Outcome::Value(self.bytes.into()));
        self.value
    }
}

/// Counts and logs a store failure. A call the open circuit turned away is
/// neither (the breaker counts those); an outage is logged by the breaker,
/// once for the store, and a rejection of the client's credentials once by
/// the store: either would otherwise repeat every call.
pub(super) fn record_error(inner: &Inner, spec: &FnSpec, error: &Error, what: &'static str) {
    if let Error::CircuitOpen(_) = error {
        tracing::trace!(function = spec.id(), "circuit open: {what}");
        return;
    }
    inner.stats.record(spec, Event::Error);
    if error.is_outage() {
        tracing::debug!(function = spec.id(), %error, "{what}");
    } else {
        tracing::warn!(function = spec.id(), %error, "{what}");
    }
}
