//! The shapes a function's entries are stored in, across builds: recorded
//! in the store before a process first looks one up, and read by the
//! companion that drops one entry, which drops it in every shape.
//!
//! Entries of different shapes live at different keys (the shape is part
//! of the key), so a tombstone at one build's key leaves another build's
//! entry. Each function with a companion keeps the set of its shapes at
//! `{prefix}:shapes:{fn_id}`, each with the time its entries may live
//! until. Why recorded *before the first lookup*: a build that looked up an
//! entry before a companion read the set, and then stored a value computed
//! from older data after the companion returned, would otherwise bring that
//! value back. Its lookup came after its record, so the companion sees it.

use std::collections::HashMap;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Cache, TOMBSTONE_MIN, steps};
use crate::Error;
use crate::backend::Backend;
use crate::invalidation::Target;
use crate::key::EntryKey;
use crate::spec::FnSpec;
use crate::stats::{Dropped, Event};

/// How often a process records its shape again while it runs, so that the
/// record outlives every entry it writes.
const RECORD_AGAIN: Duration = Duration::from_secs(86_400);

/// The shapes this cache recorded, by function id and shape, and when. By
/// id, not by spec: a companion has a spec of its own, with the same id.
/// Read on every call of a function with a companion, written once a day
/// per shape: a map replaced whole, read without a lock.
#[derive(Default)]
pub(super) struct Recorded(ArcSwap<HashMap<&'static str, HashMap<String, u64>>>);

impl Recorded {
    fn at(&self, spec: &'static FnSpec, shape: &str) -> Option<u64> {
        self.0.load().get(spec.id())?.get(shape).copied()
    }

    fn set(&self, spec: &'static FnSpec, shape: &str, now_ms: Option<u64>) {
        self.0.rcu(|recorded| {
            let mut recorded = HashMap::clone(recorded);
            let shapes = recorded.entry(spec.id()).or_default();
            match now_ms {
                Some(now_ms) => shapes.insert(shape.to_owned(), now_ms),
                None => shapes.remove(shape),
            };
            recorded
        });
    }
}

impl Cache {
    /// Whether a call of `spec` at `key` may use the store: the shape it
    /// stores is recorded (now, if it was not yet or a day ago). A call
    /// whose shape could not be recorded runs uncached.
    pub(super) async fn shape_recorded(&self, spec: &'static FnSpec, key: &EntryKey) -> bool {
        let Some((until_ms, now_ms)) = self.record_due(spec, key) else {
            return true;
        };
        let added = self
            .inner
            .store
            .add_shape(&key.shapes(), key.shape(), until_ms, now_ms)
            .await;
        self.recorded(spec, key, now_ms, added)
    }

    /// [`shape_recorded`](Self::shape_recorded) for sync functions.
    pub(super) fn shape_recorded_blocking(&self, spec: &'static FnSpec, key: &EntryKey) -> bool {
        let Some((until_ms, now_ms)) = self.record_due(spec, key) else {
            return true;
        };
        let added =
            self.inner
                .store
                .add_shape_blocking(&key.shapes(), key.shape(), until_ms, now_ms);
        self.recorded(spec, key, now_ms, added)
    }

    /// When the shape's entries may live until, and now, if it must be
    /// recorded before this call.
    fn record_due(&self, spec: &'static FnSpec, key: &EntryKey) -> Option<(u64, u64)> {
        let now_ms = self.inner.config.clock.unix_ms();
        let again_ms = RECORD_AGAIN.as_millis() as u64;
        if let Some(at) = self.inner.shapes.at(spec, key.shape())
            && now_ms.saturating_sub(at) < again_ms
        {
            return None;
        }
        let lives_ms = u64::try_from(self.tombstone_ttl(spec).as_millis()).unwrap_or(u64::MAX);
        Some((
            now_ms.saturating_add(again_ms).saturating_add(lives_ms),
            now_ms,
        ))
    }

    fn recorded(
        &self,
        spec: &'static FnSpec,
        key: &EntryKey,
        now_ms: u64,
        added: Result<(), Error>,
    ) -> bool {
        match added {
            Ok(()) => {
                self.inner.shapes.set(spec, key.shape(), Some(now_ms));
                true
            }
            Err(error) => {
                self.inner.stats.record(spec, Event::Miss);
                steps::record_error(
                    &self.inner,
                    spec,
                    &error,
                    "the stored shape could not be recorded; the call runs uncached",
                );
                false
            }
        }
    }

    /// Makes one entry of `spec` unreachable in every shape it is stored
    /// in: a tombstone with a fresh mark replaces it, and a computation
    /// that read the entry before cannot store over it (writes compare what
    /// they read). The tombstone lives as long as the entry could, and at
    /// least [`TOMBSTONE_MIN`], to outlive computations in flight.
    pub(crate) async fn invalidate_entry(
        &self,
        spec: &'static FnSpec,
        key: &EntryKey,
    ) -> Result<(), Error> {
        let target = Target::Entry(self.tombstone_ttl(spec));
        let now_ms = self.inner.config.clock.unix_ms();
        let shapes = self.inner.store.shapes(&key.shapes(), now_ms).await;
        let mut result = self
            .invalidate(key.entry(), target, Dropped::Entry(spec))
            .await;
        match self.other_shapes(spec, key, shapes) {
            Ok(others) => {
                for other in others {
                    let dropped = self
                        .invalidate(&key.entry_of_shape(&other), target, Dropped::Entry(spec))
                        .await;
                    result = result.and(dropped);
                }
            }
            Err(why) => {
                tracing::warn!(
                    function = spec.id(),
                    "{why}; every entry of the function is dropped instead"
                );
                result = result.and(self.invalidate_function(spec.id()).await);
            }
        }
        result
    }

    /// [`invalidate_entry`](Self::invalidate_entry) for sync functions.
    pub(crate) fn invalidate_entry_blocking(
        &self,
        spec: &'static FnSpec,
        key: &EntryKey,
    ) -> Result<(), Error> {
        let target = Target::Entry(self.tombstone_ttl(spec));
        let now_ms = self.inner.config.clock.unix_ms();
        let shapes = self.inner.store.shapes_blocking(&key.shapes(), now_ms);
        let mut result = self.invalidate_blocking(key.entry(), target, Dropped::Entry(spec));
        match self.other_shapes(spec, key, shapes) {
            Ok(others) => {
                for other in others {
                    let dropped = self.invalidate_blocking(
                        &key.entry_of_shape(&other),
                        target,
                        Dropped::Entry(spec),
                    );
                    result = result.and(dropped);
                }
            }
            Err(why) => {
                tracing::warn!(
                    function = spec.id(),
                    "{why}; every entry of the function is dropped instead"
                );
                result = result.and(self.invalidate_function_blocking(spec.id()));
            }
        }
        result
    }

    /// The shapes besides `key`'s that entries of `spec` may be stored in;
    /// `Err` (why) when the record cannot be trusted to list them all.
    fn other_shapes(
        &self,
        spec: &'static FnSpec,
        key: &EntryKey,
        shapes: Result<Vec<String>, Error>,
    ) -> Result<Vec<String>, String> {
        let shapes =
            shapes.map_err(|error| format!("the function's shapes could not be read: {error}"))?;
        let own = key.shape();
        if self.inner.shapes.at(spec, own).is_some() && !shapes.iter().any(|shape| shape == own) {
            // This process recorded its shape and the record lost it: the
            // set was evicted or flushed, and may have lost others too.
            self.inner.shapes.set(spec, own, None);
            return Err("the function's record of shapes lost this build's".to_owned());
        }
        Ok(shapes.into_iter().filter(|shape| shape != own).collect())
    }

    pub(super) fn tombstone_ttl(&self, spec: &FnSpec) -> Duration {
        let ttl = spec.ttl(self.inner.config.default_ttl);
        let error_ttl = spec.error_ttl().unwrap_or_default();
        spec.kept_for(ttl).max(error_ttl).max(TOMBSTONE_MIN)
    }
}
