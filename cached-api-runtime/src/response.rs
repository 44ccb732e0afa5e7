//! Response wrappers cached through what they wrap: a handler returns
//! `Json<T>`, the cache stores `T` and rebuilds the `Json` on a hit.
//!
//! Implemented for axum's `Json<T>`, `Html<T>` and `(StatusCode, W)` with the
//! `axum` feature; implement [`CachedResponse`] for a wrapper of your own.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A return type that is cached as the value inside it, plus whatever else
/// it needs to be rebuilt (such as a status code).
///
/// The attribute uses this trait for a stored type that implements it, and
/// serde otherwise; the payload must then be serializable. What is stored is
/// `(parts, payload)`, encoded like the tuple.
///
/// ```
/// use cached_api_runtime::CachedResponse;
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
