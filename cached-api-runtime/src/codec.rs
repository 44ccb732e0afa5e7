//! How values become bytes: bincode for the payload inside an envelope
//! whose header says which format, function version, stored shape and user
//! generation wrote it, and when.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::policy::CacheValue;
use crate::response::ResponseShape;

/// Appends the bincode 2 encoding (standard configuration, through serde)
/// of `value` to `out`: the one payload format, since every process of a
/// fleet must read what the others wrote.
pub(crate) fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Reads a value [`encode`] wrote from exactly `bytes`; `None` for bytes
/// it cannot read, which the caller treats as a miss and overwrites.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match bincode::serde::decode_from_slice(bytes, bincode::config::standard()) {
        Ok((value, read)) if read == bytes.len() => Some(value),
        _ => None,
    }
}

/// A codec bound to one stored type, as plain function pointers: the cache
/// logic needs no serde bounds, so a type that cannot be stored is reported
/// once, where the generated code names it, not again at every call.
pub struct TypedCodec<T> {
    encode: fn(&T, &mut Vec<u8>) -> Result<(), String>,
    decode: fn(&[u8]) -> Option<T>,
    fingerprint: fn() -> u64,
    /// What a kept copy of a value costs in memory.
    footprint: fn(&T) -> usize,
    /// How decoded values are kept and copied out, for `Clone` types; set by
    /// [`with_copies`](TypedCodec::with_copies).
    copies: Option<Copies<T>>,
    /// The TTL of each stored value, from the value (`ttl = path`); set by
    /// [`ttl_from`](TypedCodec::ttl_from).
    ttl_of: Option<fn(&T) -> Duration>,
}

/// A decoded value kept in process, and what it costs in memory: what the
/// budget of whatever keeps it is charged.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub(crate) value: Arc<Shared>,
    pub(crate) size: usize,
}

/// Copies of decoded values, in and out of wherever they are kept.
struct Copies<T> {
    share: fn(&T) -> Arc<Shared>,
    copy: fn(&Shared) -> Option<T>,
}

impl<T> Clone for Copies<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Copies<T> {}

/// A decoded value kept in process (in the embedded store beside its
/// bytes, or in the in-process tier), of any type.
pub(crate) type Shared = dyn std::any::Any + Send + Sync;

/// What keeping decoded values needs of a type: a copy for each hit.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be kept in the in-process tier (`l1`): it must implement `Clone` (and be `Send + Sync + 'static`)",
    label = "not `Clone`",
    note = "derive `Clone`, or remove `l1` from `#[cached_api(...)]`"
)]
pub trait L1Value: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> L1Value for T {}

impl<T> Clone for TypedCodec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for TypedCodec<T> {}

impl<T: CacheValue> TypedCodec<T> {
    /// The codec of `T`.
    pub fn bincode() -> TypedCodec<T> {
        TypedCodec {
            encode: |value, out| encode(value, out),
            decode: |bytes| decode(bytes),
            fingerprint: crate::shape::fingerprint::<T>,
            footprint: |value| crate::footprint::in_arc(value, value),
            copies: None,
            ttl_of: None,
        }
    }
}

impl<W: ResponseShape> TypedCodec<W>
where
    W::Payload: CacheValue,
    W::Failure: CacheValue,
{
    /// The codec of a response wrapper `W` (or an `Option` or `Result` of
    /// one): stores its parts and payload, and rebuilds it from them.
    pub fn bincode_response() -> TypedCodec<W> {
        TypedCodec {
            encode: W::encode,
            decode: W::decode,
            fingerprint: W::fingerprint,
            footprint: W::footprint,
            copies: None,
            ttl_of: None,
        }
    }
}

impl<T: L1Value> TypedCodec<T> {
    /// The same codec, keeping decoded values where it can (the embedded
    /// store, the in-process tier) and copying them out on hits there
    /// instead of decoding bytes again.
    pub fn with_copies(self) -> TypedCodec<T> {
        TypedCodec {
            copies: Some(Copies {
                share: |value| Arc::new(value.clone()),
                copy: |shared| shared.downcast_ref::<T>().cloned(),
            }),
            ..self
        }
    }
}

impl<T> TypedCodec<T> {
    /// The same codec, storing each value for as long as `ttl_of` says
    /// (`ttl = path` in the attribute).
    pub fn ttl_from(self, ttl_of: fn(&T) -> Duration) -> TypedCodec<T> {
        TypedCodec {
            ttl_of: Some(ttl_of),
            ..self
        }
    }

    /// How long `value` is to be stored, if its TTL comes from it.
    pub(crate) fn ttl_of(&self, value: &T) -> Option<Duration> {
        self.ttl_of.map(|ttl_of| ttl_of(value))
    }

    /// A copy of `value` to keep; `None` unless the codec was made
    /// [`with_copies`](TypedCodec::with_copies).
    pub(crate) fn share(&self, value: &T) -> Option<Decoded> {
        self.copies.map(|copies| Decoded {
            value: (copies.share)(value),
            size: (self.footprint)(value),
        })
    }

    /// A copy of a kept value, if it is a `T`.
    pub(crate) fn copy(&self, shared: &Shared) -> Option<T> {
        self.copies.and_then(|copies| (copies.copy)(shared))
    }

    /// `value` as an entry's payload holds it (the bytes after the header).
    #[cfg(feature = "axum")]
    pub(crate) fn payload(&self, value: &T) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        (self.encode)(value, &mut out).ok().map(|()| out)
    }

    pub(crate) fn decode(&self, payload: &[u8]) -> Option<T> {
        (self.decode)(payload)
    }

    /// The function that traces the stored type's shape: what
    /// [`FnSpec::fingerprint`](crate::spec::FnSpec::fingerprint) remembers.
    pub(crate) fn fingerprint_fn(&self) -> fn() -> u64 {
        self.fingerprint
    }
}

const MAGIC: u8 = 0xCA;
/// 2 added the function's generation, 3 the expiry and the computation's
/// duration, 4 the write's mark, 5 made the fingerprint the stored type's
/// shape instead of its name; entries of an older format are misses.
const FORMAT: u8 = 5;
/// The format byte of a tombstone: what invalidating one entry leaves.
const TOMBSTONE: u8 = 0xDE;
const HEADER_LEN: usize = 2 + 8 + 4 + 8 + 8 + 8 + 8 + 8 + 4;
/// Magic, format and mark: what tells one write from another.
const OBSERVED_LEN: usize = 10;

/// The first bytes of what an entry's key held when a call read it (magic,
/// format and the write's random mark), or nothing. A leader stores its
/// value only if they are still there, so that a computation that started
/// before an entry was invalidated (or rewritten) is never stored after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Observed {
    prefix: [u8; OBSERVED_LEN],
    len: u8,
}

impl Observed {
    /// What a read of `bytes` (`None`: no entry) saw.
    pub(crate) fn of(bytes: Option<&[u8]>) -> Observed {
        let bytes = bytes.unwrap_or_default();
        let len = bytes.len().min(OBSERVED_LEN);
        let mut prefix = [0; OBSERVED_LEN];
        prefix[..len].copy_from_slice(&bytes[..len]);
        Observed {
            prefix,
            len: len as u8,
        }
    }

    /// The bytes a write compares with; empty for no entry.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.prefix[..usize::from(self.len)]
    }

    /// Whether `current` (`None`: no entry) still starts as observed.
    pub(crate) fn matches(&self, current: Option<&[u8]>) -> bool {
        *self == Observed::of(current)
    }

    /// How many bytes a write compares.
    pub(crate) const LEN: usize = OBSERVED_LEN;
}

/// The bytes that replace an invalidated entry: no value, and a fresh mark
/// that no lookup before the invalidation can have seen.
pub(crate) fn tombstone(mark: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(OBSERVED_LEN);
    bytes.push(MAGIC);
    bytes.push(TOMBSTONE);
    bytes.extend_from_slice(&mark.to_le_bytes());
    bytes
}

/// The generations a value was computed at: its user's (0 for global
/// entries, which no user can invalidate) and its function's (0 until the
/// function is first invalidated). A stored value is served only while
/// both are still current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Generations {
    pub(crate) user: u64,
    pub(crate) function: u64,
}

impl Generations {
    /// The generations of a flight whose calls could not read the store:
    /// its value is shared among them and never stored. Generations are
    /// random, so no read ever yields these.
    pub(crate) const UNREAD: Generations = Generations {
        user: u64::MAX,
        function: u64::MAX,
    };
}

/// What an envelope's header records besides the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Random per write, so that a write that compares what it read can
    /// tell two values of identical headers apart.
    pub(crate) mark: u64,
    /// The function's `version` argument.
    pub(crate) version: u32,
    /// Fingerprint of the stored type's shape (`shape.rs`).
    pub(crate) fingerprint: u64,
    /// The user's generation seen before the value was computed; 0 for global entries.
    pub(crate) generation: u64,
    /// The function's generation seen before the value was computed; 0 if
    /// the function was never invalidated.
    pub(crate) function_generation: u64,
    /// When the value was stored, in milliseconds since the Unix epoch.
    pub(crate) stored_at_ms: u64,
    /// When its TTL ends, in the same unit: refresh-ahead and `stale` ask it.
    pub(crate) expires_at_ms: u64,
    /// How long computing the value took, in milliseconds.
    pub(crate) compute_ms: u32,
}

impl Header {
    /// How long before `now_ms` the value was stored (0 if the clocks disagree).
    pub(crate) fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.stored_at_ms)
    }

    /// The TTL it was stored with, to the millisecond.
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_millis(self.expires_at_ms.saturating_sub(self.stored_at_ms))
    }

    pub(crate) fn generations(&self) -> Generations {
        Generations {
            user: self.generation,
            function: self.function_generation,
        }
    }

    /// Writes header then payload; `None` if the codec refused the value.
    pub(crate) fn seal<T>(self, codec: TypedCodec<T>, value: &T) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(HEADER_LEN + 64);
        out.push(MAGIC);
        out.push(FORMAT);
        out.extend_from_slice(&self.mark.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.function_generation.to_le_bytes());
        out.extend_from_slice(&self.stored_at_ms.to_le_bytes());
        out.extend_from_slice(&self.expires_at_ms.to_le_bytes());
        out.extend_from_slice(&self.compute_ms.to_le_bytes());
        match (codec.encode)(value, &mut out) {
            Ok(()) => Some(out),
            Err(error) => {
                tracing::warn!(%error, "value could not be encoded; it is not cached");
                None
            }
        }
    }

    /// Splits bytes into header and payload; `None` for foreign or truncated bytes.
    pub(crate) fn open(bytes: &[u8]) -> Option<(Header, &[u8])> {
        let (head, payload) = bytes.split_at_checked(HEADER_LEN)?;
        if head[0] != MAGIC || head[1] != FORMAT {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap());
        let header = Header {
            mark: u64_at(2),
            version: u32::from_le_bytes(head[10..14].try_into().unwrap()),
            fingerprint: u64_at(14),
            generation: u64_at(22),
            function_generation: u64_at(30),
            stored_at_ms: u64_at(38),
            expires_at_ms: u64_at(46),
            compute_ms: u32::from_le_bytes(head[54..58].try_into().unwrap()),
        };
        Some((header, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::CachedResponse;

    const HEADER: Header = Header {
        mark: 2,
        version: 3,
        fingerprint: 7,
        generation: 9,
        function_generation: 10,
        stored_at_ms: 11,
        expires_at_ms: 12,
        compute_ms: 13,
    };

    #[test]
    fn a_tombstone_is_no_value_and_is_told_apart_from_every_write() {
        assert!(Header::open(&tombstone(5)).is_none());
        let value = HEADER.seal(TypedCodec::bincode(), &1u8).unwrap();
        let other = Header { mark: 3, ..HEADER }
            .seal(TypedCodec::bincode(), &1u8)
            .unwrap();
        let observed = Observed::of(Some(&value));
        assert!(observed.matches(Some(&value)));
        assert!(!observed.matches(Some(&other)), "same header but the mark");
        assert!(!observed.matches(Some(&tombstone(2))));
        assert!(!observed.matches(None));
        assert!(Observed::of(None).matches(None));
        assert!(!Observed::of(Some(&tombstone(5))).matches(Some(&tombstone(6))));
    }

    #[test]
    fn round_trip() {
        let bytes = HEADER
            .seal(TypedCodec::bincode(), &("hi".to_owned(), 5u32))
            .unwrap();
        let (header, payload) = Header::open(&bytes).unwrap();
        assert_eq!(header, HEADER);
        assert_eq!(decode(payload), Some(("hi".to_owned(), 5u32)));
    }

    /// A wrapper of the user's: a value and how long clients may keep it.
    #[derive(Debug, PartialEq)]
    struct WithMaxAge(u32, String);

    impl CachedResponse for WithMaxAge {
        type Payload = String;
        type Parts = u32;

        fn split(&self) -> (u32, &String) {
            (self.0, &self.1)
        }

        fn join(max_age: u32, payload: String) -> Option<Self> {
            (max_age > 0).then_some(WithMaxAge(max_age, payload))
        }
    }

    #[test]
    fn a_response_wrapper_is_stored_as_its_parts_and_payload() {
        let codec = TypedCodec::<WithMaxAge>::bincode_response();
        let value = WithMaxAge(60, "hello".to_owned());
        let bytes = HEADER.seal(codec, &value).unwrap();
        let (_, payload) = Header::open(&bytes).unwrap();
        assert_eq!(decode(payload), Some((60u32, "hello".to_owned())));
        assert_eq!(codec.decode(payload), Some(value));
        let invalid = HEADER
            .seal(codec, &WithMaxAge(0, "parts join refuses".to_owned()))
            .unwrap();
        assert_eq!(codec.decode(Header::open(&invalid).unwrap().1), None);
    }

    #[test]
    fn foreign_and_truncated_bytes_are_rejected() {
        let bytes = HEADER
            .seal(TypedCodec::bincode(), &"value".to_owned())
            .unwrap();
        assert!(Header::open(b"plain text set by hand").is_none());
        assert!(Header::open(&bytes[..10]).is_none());
        let (_, payload) = Header::open(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(decode::<String>(payload), None);
    }
}
