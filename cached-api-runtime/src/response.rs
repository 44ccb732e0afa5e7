//! Response wrappers cached through what they wrap: a handler returns
//! `Json<T>`, the cache stores `T` and rebuilds the `Json` on a hit.
//!
//! Implemented for axum's `Json<T>`, `Html<T>` and `(StatusCode, W)` with the
//! `axum` feature; implement [`CachedResponse`] for a wrapper of your own.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::policy::CacheValue;

/// A return type that is cached as the value inside it, plus whatever else
/// it needs to be rebuilt (such as a status code).
///
/// The attribute uses this trait for a stored type that implements it, and
/// serde otherwise; the payload must then be serializable. What is stored is
/// `(parts, payload)`, encoded like the tuple.
///
/// ```
/// use cached_api::CachedResponse;
///
/// /// A handler's answer: a value and how long clients may keep it.
/// pub struct WithMaxAge<T>(pub u32, pub T);
///
/// impl<T> CachedResponse for WithMaxAge<T> {
///     type Payload = T;
///     type Parts = u32;
///
///     fn split(&self) -> (u32, &T) {
///         (self.0, &self.1)
///     }
///
///     fn join(max_age: u32, payload: T) -> Option<Self> {
///         Some(WithMaxAge(max_age, payload))
///     }
/// }
/// ```
pub trait CachedResponse: Sized {
    /// The value inside, stored with serde (`T` of `Json<T>`).
    type Payload;
    /// What else must be kept to rebuild the wrapper; `()` for nothing.
    type Parts: Serialize + DeserializeOwned;

    /// The parts, and the payload by reference.
    fn split(&self) -> (Self::Parts, &Self::Payload);

    /// The wrapper rebuilt from what was stored; `None` when the parts are
    /// not valid, which makes the entry a miss.
    fn join(parts: Self::Parts, payload: Self::Payload) -> Option<Self>;
}

/// How a return type built of response wrappers is stored: a wrapper as its
/// parts and payload, and `Option`/`Result` of a wrapper (with `none = true`
/// or `error_ttl`) as the same `Option`/`Result` of them. The generated code
/// uses it for every such type; the bounds that make a type storable are on
/// the methods, so an unfit payload or error is named by them.
#[doc(hidden)]
pub trait ResponseShape: Sized {
    /// The serialized value inside (`T` of `Json<T>`).
    type Payload;
    /// The error of a `Result`; `()` for other shapes.
    type Failure;

    /// Appends the stored form to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String>
    where
        Self::Payload: CacheValue,
        Self::Failure: CacheValue;

    /// The value rebuilt from exactly `bytes`; `None` for bytes it cannot
    /// read or parts that are not valid.
    fn decode(bytes: &[u8]) -> Option<Self>
    where
        Self::Payload: CacheValue,
        Self::Failure: CacheValue;

    /// The fingerprint of the stored form's shape.
    fn fingerprint() -> u64
    where
        Self::Payload: CacheValue,
        Self::Failure: CacheValue;

    /// What a copy of the value kept in process costs in memory.
    fn footprint(&self) -> usize
    where
        Self::Payload: CacheValue,
        Self::Failure: CacheValue;
}

impl<W: CachedResponse> ResponseShape for W {
    type Payload = W::Payload;
    type Failure = ();

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String>
    where
        W::Payload: CacheValue,
    {
        crate::codec::encode(&self.split(), out)
    }

    fn decode(bytes: &[u8]) -> Option<W>
    where
        W::Payload: CacheValue,
    {
        let (parts, payload) = crate::codec::decode(bytes)?;
        W::join(parts, payload)
    }

    fn fingerprint() -> u64
    where
        W::Payload: CacheValue,
    {
        crate::shape::fingerprint::<(W::Parts, W::Payload)>()
    }

    fn footprint(&self) -> usize
    where
        W::Payload: CacheValue,
    {
        crate::footprint::in_arc(self, &self.split())
    }
}

/// `Option` of a wrapper, with `none = true`: `None` is stored as such.
impl<W: CachedResponse> ResponseShape for Option<W> {
    type Payload = W::Payload;
    type Failure = ();

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String>
    where
        W::Payload: CacheValue,
    {
        crate::codec::encode(&self.as_ref().map(W::split), out)
    }

    fn decode(bytes: &[u8]) -> Option<Option<W>>
    where
        W::Payload: CacheValue,
    {
        match crate::codec::decode::<Option<(W::Parts, W::Payload)>>(bytes)? {
            Some((parts, payload)) => W::join(parts, payload).map(Some),
            None => Some(None),
        }
    }

    fn fingerprint() -> u64
    where
        W::Payload: CacheValue,
    {
        crate::shape::fingerprint::<Option<(W::Parts, W::Payload)>>()
    }

    fn footprint(&self) -> usize
    where
        W::Payload: CacheValue,
    {
        crate::footprint::in_arc(self, &self.as_ref().map(W::split))
    }
}

/// `Result` of a wrapper, with `error_ttl`: the error is stored whole.
impl<W: CachedResponse, E> ResponseShape for Result<W, E> {
    type Payload = W::Payload;
    type Failure = E;

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String>
    where
        W::Payload: CacheValue,
        E: CacheValue,
    {
        crate::codec::encode(&self.as_ref().map(W::split), out)
    }

    fn decode(bytes: &[u8]) -> Option<Result<W, E>>
    where
        W::Payload: CacheValue,
        E: CacheValue,
    {
        match crate::codec::decode::<Result<(W::Parts, W::Payload), E>>(bytes)? {
            Ok((parts, payload)) => W::join(parts, payload).map(Ok),
            Err(error) => Some(Err(error)),
        }
    }

    fn fingerprint() -> u64
    where
        W::Payload: CacheValue,
        E: CacheValue,
    {
        crate::shape::fingerprint::<Result<(W::Parts, W::Payload), E>>()
    }

    fn footprint(&self) -> usize
    where
        W::Payload: CacheValue,
        E: CacheValue,
    {
        crate::footprint::in_arc(self, &self.as_ref().map(W::split))
    }
}

#[cfg(feature = "axum")]
mod axum_impls {
    use axum::Json;
    use axum::http::StatusCode;
    use axum::response::Html;

    use super::CachedResponse;

    impl<T> CachedResponse for Json<T> {
        type Payload = T;
        type Parts = ();

        fn split(&self) -> ((), &T) {
            ((), &self.0)
        }

        fn join((): (), payload: T) -> Option<Self> {
            Some(Json(payload))
        }
    }

    impl<T> CachedResponse for Html<T> {
        type Payload = T;
        type Parts = ();

        fn split(&self) -> ((), &T) {
            ((), &self.0)
        }

        fn join((): (), payload: T) -> Option<Self> {
            Some(Html(payload))
        }
    }

    /// The status is stored as its number beside the wrapper's parts.
    impl<W: CachedResponse> CachedResponse for (StatusCode, W) {
        type Payload = W::Payload;
        type Parts = (u16, W::Parts);

        fn split(&self) -> ((u16, W::Parts), &W::Payload) {
            let (parts, payload) = self.1.split();
            ((self.0.as_u16(), parts), payload)
        }

        fn join((status, parts): (u16, W::Parts), payload: W::Payload) -> Option<Self> {
            Some((StatusCode::from_u16(status).ok()?, W::join(parts, payload)?))
        }
    }
}
