//! Invalidations that failed: kept, retried in the background until they
//! land, and meanwhile the users they name are served uncached by this
//! process, so that a write whose invalidation failed is never followed by
//! this process serving what it replaced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::Duration;

use crate::key::EntryKey;

/// Most failed invalidations kept at once. One more is still returned as
/// an `Err` and counted as dropped, and logged: never silent.
pub(crate) const MAX_PENDING: usize = 100_000;

/// The generation keys whose invalidation has not landed yet.
#[derive(Default)]
pub(crate) struct PendingInvalidations {
    keys: Mutex<HashMap<String, Target>>,
    /// `keys.len()`, read without the lock on every per-user call.
    count: AtomicUsize,
    /// Whether a retry thread is running.
    retrying: AtomicBool,
    landed: AtomicU64,
    dropped: AtomicU64,
}

/// What [`PendingInvalidations::keep`] did with a failed invalidation.
/// What a pending invalidation writes at its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A fresh generation, a user's or a function's.
    Generation,
    /// A tombstone in place of one entry, kept this long.
    Entry(Duration),
}

pub(crate) enum Kept {
    /// Kept; a retry thread must be started.
    NeedsRetryThread,
    /// Kept; a retry thread runs already.
    Queued,
    /// The queue is full: nobody will retry it.
    Dropped,
}

impl PendingInvalidations {
    fn keys(&self) -> MutexGuard<'_, HashMap<String, Target>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an invalidation of `key`'s user, function, tags or entry is
    /// pending. Nearly every call finds none pending, and learns it without
    /// the lock.
    pub(crate) fn affect(&self, key: &EntryKey) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let pending = self.keys();
        key.generation()
            .into_iter()
            .chain([key.function_generation(), key.entry()])
            .chain(key.tag_generations())
            .any(|key| pending.contains_key(key))
    }

    /// Keeps a failed invalidation of `generation_key` for retrying.
    pub(crate) fn keep(&self, generation_key: &str, target: Target) -> Kept {
        let mut keys = self.keys();
        if keys.len() >= MAX_PENDING && !keys.contains_key(generation_key) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Kept::Dropped;
        }
        keys.insert(generation_key.to_owned(), target);
        self.count.store(keys.len(), Ordering::Release);
        if self.retrying.swap(true, Ordering::AcqRel) {
            Kept::Queued
        } else {
            Kept::NeedsRetryThread
        }
    }

    /// An invalidation of `generation_key` landed: its user is served from
    /// the cache again.
    pub(crate) fn landed(&self, generation_key: &str, by_retry: bool) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut keys = self.keys();
        if keys.remove(generation_key).is_some() && by_retry {
            self.landed.fetch_add(1, Ordering::Relaxed);
        }
        self.count.store(keys.len(), Ordering::Release);
    }

    /// The keys to retry now; `None`, and the thread stops, when there are none.
    fn to_retry(&self) -> Option<Vec<(String, Target)>> {
        let keys = self.keys();
        if keys.is_empty() {
            // Under the lock: a key kept after this sees `retrying` false
            // and starts a new thread.
            self.retrying.store(false, Ordering::Release);
            return None;
        }
        Some(
            keys.iter()
                .map(|(key, target)| (key.clone(), *target))
                .collect(),
        )
    }

    pub(crate) fn pending(&self) -> u64 {
        self.count.load(Ordering::Acquire) as u64
    }

    pub(crate) fn retried(&self) -> u64 {
        self.landed.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Retries the pending invalidations of the cache behind `owner` with
/// `invalidate` (blocking), every `interval`, until none is left or the
/// cache is gone. A thread, not a task: sync and async users alike, with
/// or without a runtime, have their invalidations retried.
pub(crate) fn retry_in_background<T: Send + Sync + 'static>(
    owner: Weak<T>,
    pending: fn(&T) -> &PendingInvalidations,
    invalidate: fn(&T, &str, Target) -> bool,
    interval: Duration,
) {
    let spawned = std::thread::Builder::new()
        .name("cached-api-invalidations".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(owner) = owner.upgrade() else {
                    return;
                };
                let Some(keys) = pending(&owner).to_retry() else {
                    return;
                };
                for (key, target) in keys {
                    if invalidate(&owner, &key, target) {
                        pending(&owner).landed(&key, true);
                        tracing::warn!("a failed invalidation was retried and landed");
                    }
                }
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "could not start the thread that retries failed invalidations");
    }
}
