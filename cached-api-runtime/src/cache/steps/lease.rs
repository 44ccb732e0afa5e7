//! The steps of a call of a function with `lock`: take the entry's lease
//! before computing it, so that one process in the fleet does, and wait
//! for the holder's value when another process has it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Call, Compute, Reason, Step, fresh_generation, unit_random};
use crate::Error;
use crate::backend::Read;
use crate::codec::{Generations, Observed};
use crate::flight::{Leader, Outcome};
use crate::key::{self, EntryKey};
use crate::policy::Policy;
use crate::spec::Freshness;
use crate::stats::Event;

/// The entry's lease must be taken before the entry is computed.
pub(in crate::cache) struct Lease<'c, P: Policy<R>, R> {
    call: Call<'c, P, R>,
    leader: Leader<'c>,
    generations: Generations,
    reason: Reason<R>,
    key: String,
    token: u64,
    /// When waiting for another holder gives up: set at the first refusal.
    deadline: Option<Instant>,
    /// Attempts refused so far.
    refusals: u32,
}

impl<'c, P: Policy<R>, R> Lease<'c, P, R> {
    /// The first attempt of `call`, which leads its entry's flight.
    pub(super) fn new(
        call: Call<'c, P, R>,
        leader: Leader<'c>,
        generations: Generations,
        reason: Reason<R>,
    ) -> Lease<'c, P, R> {
        Lease {
            key: key::lease_key(call.key.entry()),
            token: fresh_generation(),
            call,
            leader,
            generations,
            reason,
            deadline: None,
            refusals: 0,
        }
    }

    pub(in crate::cache) fn key(&self) -> &str {
        &self.key
    }

    /// What marks this call's lease, so that only it releases it.
    pub(in crate::cache) fn token(&self) -> u64 {
        self.token
    }

    /// How long the lease lasts if its holder never releases it.
    pub(in crate::cache) fn ttl(&self) -> Duration {
        self.call
            .spec
            .lease()
            .expect("only functions with `lock` take leases")
    }

    /// The entry, read with each attempt: the value another holder stored
    /// ends the wait.
    pub(in crate::cache) fn entry(&self) -> &EntryKey {
        &self.call.key
    }

    /// How long to wait before this attempt: none for the first; then
    /// 5 ms, half as long again each time up to 100 ms, each drawn within
    /// ±25 % so that waiters spread out.
    pub(in crate::cache) fn delay(&self) -> Duration {
        if self.refusals == 0 {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(self.refusals.min(16)).unwrap_or(16) - 1;
        let ms = (5.0 * 1.5_f64.powi(exponent)).min(100.0);
        Duration::from_secs_f64(ms * (0.75 + 0.5 * unit_random()) / 1000.0)
    }

    /// Answers with the value a holder stored, if the read found one;
    /// else computes under the lease if it was taken. If another process
    /// holds it, answers with the entry that still answers, or waits for
    /// the holder's value, at most one lease long, then computes anyway.
    pub(in crate::cache) fn taken(mut self, taken: Result<(bool, Read), Error>) -> Step<'c, P, R> {
        let (held, read) = match taken {
            Ok(taken) => taken,
            Err(error) => {
                self.call
                    .record_error(&error, "lease unavailable; computing without it");
                return self.compute(false);
            }
        };
        match self.reason {
            Reason::Miss => {}
            // Another process recomputes the entry, which answers meanwhile.
            Reason::Ahead(ahead) if !held => return self.call.answer_current(ahead),
            Reason::Ahead(_) => return self.compute(true),
        }
        let observed = Observed::of(read.value.as_deref());
        if let Some((value, bytes)) = self.stored_value(read) {
            let Lease {
                leader, key, token, ..
            } = self;
            leader.land(Outcome::Value(bytes));
            return match held {
                // Stored just before this call took the lease.
                true => Step::Release(Release {
                    lease: HeldLease { key, token },
                    value,
                }),
                false => Step::Done(value),
            };
        }
        self.call.observed = observed;
        if held {
            return self.compute(true);
        }
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + self.ttl());
        if now >= deadline {
            tracing::debug!(
                function = self.call.spec.id(),
                "another process held the lease too long; computing without it"
            );
            return self.compute(false);
        }
        self.refusals += 1;
        Step::Lease(self)
    }

    /// The current, fresh value in `read`, and its bytes for this
    /// process's followers.
    fn stored_value(&self, read: Read) -> Option<(R, Arc<[u8]>)> {
        let user = match self.call.key.generation() {
            None => 0,
            Some(_) => read.generation?,
        };
        let current = Generations {
            user,
            function: read.function_generation,
        };
        let bytes = read.value?;
        let (stored, header) = self.call.unseal(&bytes, None, Some(current))?;
        let now_ms = || self.call.now_ms();
        if self.call.spec.freshness(&now_ms, header.expires_at_ms) != Freshness::Fresh {
            return None;
        }
        self.call.record(Event::Hit);
        if self.refusals > 0 {
            self.call.record(Event::LeaseWait);
            tracing::debug!(
                function = self.call.spec.id(),
                "took the value another process computed under its lease"
            );
        }
        Some((P::restore(stored), Arc::from(&*bytes)))
    }

    fn compute(self, held: bool) -> Step<'c, P, R> {
        let lease = held.then_some(HeldLease {
            key: self.key,
            token: self.token,
        });
        Step::Compute(Compute {
            call: self.call,
            lead: Some((self.leader, self.generations)),
            reason: self.reason,
            lease,
            started: Instant::now(),
        })
    }
}

/// A lease taken after all, to release before answering.
pub(in crate::cache) struct Release<R> {
    lease: HeldLease,
    value: R,
}

impl<R> Release<R> {
    pub(in crate::cache) fn lease(&self) -> &HeldLease {
        &self.lease
    }

    pub(in crate::cache) fn released(self) -> R {
        self.value
    }
}

/// A lease this call holds, to release once its value is stored.
pub(in crate::cache) struct HeldLease {
    pub(in crate::cache) key: String,
    pub(in crate::cache) token: u64,
}
