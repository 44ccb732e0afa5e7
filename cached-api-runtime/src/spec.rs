//! What the attribute knows about one cached function, fixed at compile time.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use crate::codec::TypedCodec;
use crate::{key, shape};

/// What `#[cached_api]` says about one function, by name, so that no value
/// can be read as another.
#[derive(Debug)]
pub struct FnOptions {
    /// The function id used in keys, stats and logs; for a `method`, its
    /// name alone.
    pub id: &'static str,
    /// Whether the function is a method whose id is written by its first
    /// call: the path of its `Self` type, then `id`, so that methods of
    /// one name on two types are two functions.
    pub method: bool,
    /// The attribute's `version`; entries of another version are misses.
    pub version: u32,
    /// How long values live; `None` takes the cache's default.
    pub ttl: Option<Duration>,
    /// How long `Err` values live; `None`: errors are not stored.
    pub error_ttl: Option<Duration>,
    /// Each entry's TTL is shortened by a random share of up to this many
    /// percent (1 to 50), so that entries written together expire apart;
    /// `None`: every entry lives its full TTL.
    pub jitter_percent: Option<u8>,
    /// Keep decoded values in the in-process tier, at most this long
    /// (`Duration::MAX` for as long as their entry lives); `None` for off.
    pub l1: Option<Duration>,
    /// Recompute hot entries before they expire (XFetch), with this β;
    /// `None` for off.
    pub refresh: Option<f64>,
    /// How long past its TTL an entry may still answer while one caller
    /// recomputes it, or when the function fails; `None` for never.
    pub stale: Option<Duration>,
    /// On a miss, one caller in the fleet computes, under a lease in the
    /// store that lasts at most this long; `None` for no lease.
    pub lock: Option<Duration>,
    /// Whether the attribute generates a companion that drops single
    /// entries (`invalidate = …`), so that kept values must follow them.
    pub drops_entries: bool,
    /// The characters of the key template's literal text, escaped inside values.
    pub reserved: &'static str,
}

/// The compile-time description of one `#[cached_api]` function.
///
/// The macro emits one `static` of this type per function.
#[derive(Debug)]
pub struct FnSpec {
    options: FnOptions,
    /// The stored type's shape, beside the function that traced it: a
    /// method of a generic impl shares one spec across its instantiations,
    /// which store different types.
    shape: OnceLock<Shape>,
    /// The function's row in every cache's stats, given on first count.
    pub(crate) stats_row: OnceLock<usize>,
    /// Whether a value of this function was found too large to store yet.
    oversized: AtomicBool,
    /// A method's id, with its `Self` type: a `static` in a method cannot
    /// name `Self`, so its first call writes it.
    method_id: OnceLock<&'static str>,
}

impl FnSpec {
    /// Describes a function.
    pub const fn new(options: FnOptions) -> FnSpec {
        FnSpec {
            options,
            shape: OnceLock::new(),
            stats_row: OnceLock::new(),
            oversized: AtomicBool::new(false),
            method_id: OnceLock::new(),
        }
    }

    /// The function id used in keys, stats and logs.
    pub fn id(&self) -> &'static str {
        self.method_id.get().copied().unwrap_or(self.options.id)
    }

    /// Writes a method's id from `owner`, its `Self` type's
    /// `type_name`, on its first call: `my_service::Plans::get`. A generic
    /// type's instantiations share one id (their entries stay apart: the
    /// key names the owner whole).
    pub(crate) fn own(&self, owner: &str) {
        if self.options.method {
            self.method_id.get_or_init(|| {
                let path = owner.split('<').next().unwrap_or(owner);
                Box::leak(format!("{path}::{}", self.options.id).into_boxed_str())
            });
        }
    }

    pub(crate) fn version(&self) -> u32 {
        self.options.version
    }

    pub(crate) fn reserved(&self) -> &'static str {
        self.options.reserved
    }

    pub(crate) fn ttl(&self, default: Duration) -> Duration {
        self.options.ttl.unwrap_or(default)
    }

    /// `None` when errors are not stored.
    pub(crate) fn error_ttl(&self) -> Option<Duration> {
        self.options.error_ttl
    }

    /// `ttl` shortened by `random` (uniform in [0, 1)) of the jitter share:
    /// never longer than the TTL the function states.
    pub(crate) fn jittered(&self, ttl: Duration, random: f64) -> Duration {
        match self.options.jitter_percent {
            Some(percent) => ttl.mul_f64(1.0 - random * f64::from(percent) / 100.0),
            None => ttl,
        }
    }

    /// Whether a hit on an entry that expires at `expires_at_ms` and took
    /// `compute_ms` to compute should recompute it now, ahead of its expiry
    /// (XFetch, Vattani et al., VLDB 2015): the closer the expiry and the
    /// longer the computation, the likelier; `random` is uniform in [0, 1).
    /// The clock and the draw are asked only with `refresh`, and taken as
    /// trait objects so that one copy of this serves every function.
    pub(crate) fn refresh_due(
        &self,
        now_ms: &dyn Fn() -> u64,
        expires_at_ms: u64,
        compute_ms: u32,
        random: &dyn Fn() -> f64,
    ) -> bool {
        // Only functions with `refresh` read the clock and draw, per hit.
        let Some(beta) = self.options.refresh else {
            return false;
        };
        let (now_ms, random) = (now_ms(), random());
        // -ln(1 - random) is an exponential draw of mean 1.
        let ahead = f64::from(compute_ms.max(1)) * beta * -(1.0 - random).ln();
        now_ms as f64 + ahead >= expires_at_ms as f64
    }

    /// How an entry whose TTL ends at `expires_at_ms` may answer now.
    pub(crate) fn freshness(&self, now_ms: &dyn Fn() -> u64, expires_at_ms: u64) -> Freshness {
        let Some(stale) = self.options.stale else {
            // Without `stale` the store drops entries at their TTL, and a
            // hit reads no clock.
            return Freshness::Fresh;
        };
        let Some(past) = now_ms().checked_sub(expires_at_ms) else {
            return Freshness::Fresh;
        };
        if u128::from(past) < stale.as_millis() {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    /// How long the store keeps an entry whose TTL is `ttl`: its stale
    /// window longer, so that it can still answer in it.
    pub(crate) fn kept_for(&self, ttl: Duration) -> Duration {
        match self.options.stale {
            Some(stale) => ttl.saturating_add(stale),
            None => ttl,
        }
    }

    /// How long the entry's lease lasts; `None` without `lock`.
    pub(crate) fn lease(&self) -> Option<Duration> {
        self.options.lock
    }

    pub(crate) fn drops_entries(&self) -> bool {
        self.options.drops_entries
    }

    pub(crate) fn has_l1(&self) -> bool {
        self.options.l1.is_some()
    }

    /// How long a value read or written now may serve from the in-process
    /// tier: its cap, and no longer than its entry's TTL has `left`; `None`
    /// without `l1`.
    pub(crate) fn l1_lifetime(&self, left: Duration) -> Option<Duration> {
        Some(self.options.l1?.min(left))
    }

    /// The fingerprint of the shape `codec` stores: traced once per
    /// process, then one load and one comparison per call.
    pub(crate) fn fingerprint<T>(&self, codec: &TypedCodec<T>) -> u64 {
        match self.known_shape(codec) {
            Some(shape) => shape.fingerprint,
            None => shape::remembered(codec.fingerprint_fn()),
        }
    }

    /// `{escaped id}:v{version}:s{shape}:`, where entries of the shape
    /// `codec` stores live: written once per process.
    pub(crate) fn entry_segment<T>(&self, codec: &TypedCodec<T>) -> Cow<'_, str> {
        match self.known_shape(codec) {
            Some(shape) => Cow::Borrowed(&shape.segment),
            None => Cow::Owned(self.shaped(shape::remembered(codec.fingerprint_fn()))),
        }
    }

    /// The shape this spec keeps, if it is `codec`'s (which it is but for a
    /// method of a generic impl instantiated with another type first).
    fn known_shape<T>(&self, codec: &TypedCodec<T>) -> Option<&Shape> {
        let traced = codec.fingerprint_fn();
        let shape = self.shape.get_or_init(|| {
            let fingerprint = shape::remembered(traced);
            Shape {
                traced,
                fingerprint,
                segment: self.shaped(fingerprint),
            }
        });
        std::ptr::fn_addr_eq(shape.traced, traced).then_some(shape)
    }

    /// `{escaped id}:v{version}:s{fingerprint}:`.
    fn shaped(&self, fingerprint: u64) -> String {
        let mut segment = String::with_capacity(self.id().len() + 32);
        key::escape_str(&mut segment, self.id());
        segment.push_str(&format!(":v{}:s{fingerprint:016x}:", self.version()));
        segment
    }

    /// Whether this is the first value of the function found too large to
    /// store in this process: the one that is logged.
    pub(crate) fn first_oversized(&self) -> bool {
        !self.oversized.swap(true, Relaxed)
    }
}

/// A stored type's shape, as a spec keeps it.
#[derive(Debug)]
struct Shape {
    /// The function that traced it.
    traced: fn() -> u64,
    fingerprint: u64,
    /// [`FnSpec::entry_segment`].
    segment: String,
}

/// Where an entry stands against its TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Within its TTL.
    Fresh,
    /// Past its TTL, within its `stale` window.
    Stale,
    /// Past both: a miss.
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option off.
    fn options() -> FnOptions {
        FnOptions {
            id: "f",
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
        }
    }

    #[test]
    fn refresh_is_drawn_likelier_as_the_expiry_nears() {
        let spec = |refresh| {
            FnSpec::new(FnOptions {
                refresh,
                ..options()
            })
        };
        let off = spec(None);
        assert!(
            !off.refresh_due(&|| 10_000, 10_000, 100, &|| 0.99),
            "never without refresh"
        );
        let on = spec(Some(1.0));
        // 100 ms computations, a median draw (ln 2 ≈ 0.69): ~69 ms ahead.
        assert!(
            !on.refresh_due(&|| 0, 10_000, 100, &|| 0.5),
            "far from the expiry"
        );
        assert!(
            on.refresh_due(&|| 9_950, 10_000, 100, &|| 0.5),
            "close to it"
        );
        assert!(
            on.refresh_due(&|| 10_000, 10_000, 100, &|| 0.0),
            "at it, whatever the draw"
        );
        assert!(!on.refresh_due(&|| 9_000, 10_000, 100, &|| 0.5));
        assert!(
            on.refresh_due(&|| 9_000, 10_000, 100, &|| 0.999_999_9),
            "a rare draw, far ahead"
        );
        let eager = spec(Some(4.0));
        assert!(
            eager.refresh_due(&|| 9_750, 10_000, 100, &|| 0.5),
            "a larger β, earlier"
        );
    }

    #[test]
    fn jitter_shortens_the_ttl_by_at_most_its_share() {
        let spec = |jitter_percent| {
            FnSpec::new(FnOptions {
                jitter_percent,
                ..options()
            })
        };
        let ttl = Duration::from_secs(1_000);
        assert_eq!(spec(None).jittered(ttl, 0.99), ttl);
        let jittered = spec(Some(10));
        assert_eq!(jittered.jittered(ttl, 0.0), ttl);
        assert_eq!(jittered.jittered(ttl, 0.5), Duration::from_secs(950));
        assert!(jittered.jittered(ttl, 0.999_999) > Duration::from_secs(900));
    }

    #[test]
    fn an_oversized_value_is_reported_once_per_function() {
        let (a, b) = (FnSpec::new(options()), FnSpec::new(options()));
        assert!(a.first_oversized());
        assert!(!a.first_oversized());
        assert!(!a.first_oversized());
        assert!(b.first_oversized());
    }

    #[test]
    fn an_entry_is_stale_only_within_its_window() {
        let spec = |stale| FnSpec::new(FnOptions { stale, ..options() });
        let off = spec(None);
        assert_eq!(off.freshness(&|| 5_000, 1_000), Freshness::Fresh);
        assert_eq!(off.kept_for(Duration::from_secs(1)), Duration::from_secs(1));
        let on = spec(Some(Duration::from_secs(2)));
        assert_eq!(on.freshness(&|| 999, 1_000), Freshness::Fresh);
        assert_eq!(on.freshness(&|| 1_000, 1_000), Freshness::Stale);
        assert_eq!(on.freshness(&|| 2_999, 1_000), Freshness::Stale);
        assert_eq!(on.freshness(&|| 3_000, 1_000), Freshness::Expired);
        assert_eq!(on.kept_for(Duration::from_secs(1)), Duration::from_secs(3));
    }
}
