//! What the attribute knows about one cached function, fixed at compile time.

use std::sync::OnceLock;
use std::time::Duration;

use crate::key;
use crate::stats::{self, Event, FnCounters};

/// The compile-time description of one `#[cached_api]` function.
///
/// The macro emits one `static` of this type per function; it also holds the
/// function's counters, so counting a hit touches no map and no lock.
#[derive(Debug)]
pub struct FnSpec {
    id: &'static str,
    version: u32,
    ttl_secs: u64,
    error_ttl_secs: u64,
    reserved: &'static str,
    pub(crate) counters: FnCounters,
    key_segment: OnceLock<String>,
}

impl FnSpec {
    /// Describes a function. A TTL of 0 means "the cache's default" for `ttl`
    /// and "errors are not cached" for `error_ttl`; `reserved` lists the
    /// characters of the key template's literal text, escaped inside values.
    pub const fn new(
        id: &'static str,
        version: u32,
        ttl_secs: u64,
        error_ttl_secs: u64,
        reserved: &'static str,
    ) -> FnSpec {
        FnSpec {
            id,
            version,
            ttl_secs,
            error_ttl_secs,
            reserved,
            counters: FnCounters::new(),
            key_segment: OnceLock::new(),
        }
    }

    /// The function id used in keys, stats and logs.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// Counts `event` for this function (and, with the `metrics` feature,
    /// emits it labelled by the function id).
    pub(crate) fn record(&self, event: Event) {
        self.counters.count(event);
        stats::emit(Some(self.id), event);
    }

    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    pub(crate) fn reserved(&self) -> &'static str {
        self.reserved
    }

    pub(crate) fn ttl(&self, default: Duration) -> Duration {
        match self.ttl_secs {
            0 => default,
            secs => Duration::from_secs(secs),
        }
    }

    pub(crate) fn error_ttl(&self) -> Duration {
        Duration::from_secs(self.error_ttl_secs)
    }

    /// `{escaped id}:v{version}:`, computed once; registers the function's
    /// counters with [`stats`](crate::stats()) on first use.
    pub(crate) fn key_segment(&'static self) -> &'static str {
        self.key_segment.get_or_init(|| {
            stats::register(self);
            let mut segment = String::with_capacity(self.id.len() + 8);
            key::escape_str(&mut segment, self.id);
            segment.push_str(&format!(":v{}:", self.version));
            segment
        })
    }
}

/// Fingerprint of the stored type, so that bytes written by another shape of
/// the function are a miss instead of a misread. Computed per call, not
/// kept in the spec: a method of a generic impl shares one spec across
/// its instantiations.
pub(crate) fn fingerprint<T: ?Sized>() -> u64 {
    fnv1a(std::any::type_name::<T>().as_bytes())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
