//! The embedded store's clock: the system's, which tests may move forward
//! to expire entries without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Time as the embedded store sees it when it checks TTLs.
///
/// Clones share one offset, so a test keeps a clone, hands one to
/// [`CacheBuilder::clock`](crate::CacheBuilder::clock) and calls
/// [`advance`](Clock::advance) to let entries expire.
///
/// ```
/// use std::time::Duration;
///
/// let clock = cached_api_runtime::Clock::default();
/// let cache = cached_api_runtime::Cache::builder().clock(clock.clone()).build()?;
/// clock.advance(Duration::from_secs(3600)); // every entry of an hour or less is gone
/// # Ok::<(), cached_api_runtime::Error>(())
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

    /// Whether the clock was ever moved: until then it is the system's,
    /// and what expired by it moka has already dropped.
    pub(crate) fn was_advanced(&self) -> bool {
        self.ahead_ms.load(Ordering::Relaxed) != 0
    }
}
