//! The cache's clock: the system's, which tests may move forward to expire
//! entries without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time as the cache sees it: when the embedded store expires entries, and
/// when any entry is past its TTL (`stale`, `refresh`), by the times its
/// header records.
///
/// Clones share one offset, so a test keeps a clone, hands one to
/// [`CacheBuilder::clock`](crate::CacheBuilder::clock) and calls
/// [`advance`](Clock::advance) to let entries expire.
///
/// ```
/// use std::time::Duration;
///
/// let clock = cached_api::Clock::default();
/// let cache = cached_api::Cache::builder().clock(clock.clone()).build()?;
/// clock.advance(Duration::from_secs(3600)); // every entry of an hour or less is gone
/// # Ok::<(), cached_api::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Clock {
    ahead_ms: Arc<AtomicU64>,
}

impl Clock {
    /// Moves this clock, and every clone of it, forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ahead_ms.fetch_add(by, Ordering::SeqCst);
    }

    pub(crate) fn now(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.ahead_ms.load(Ordering::SeqCst))
    }

    /// Milliseconds since the Unix epoch: what entries' headers record, so
    /// that processes agree on them as far as their system clocks do.
    pub(crate) fn unix_ms(&self) -> u64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        system.saturating_add(self.ahead_ms.load(Ordering::SeqCst))
    }

    /// Whether the clock was ever moved: until then it is the system's,
    /// and what expired by it moka has already dropped.
    pub(crate) fn was_advanced(&self) -> bool {
        self.ahead_ms.load(Ordering::Relaxed) != 0
    }
}
