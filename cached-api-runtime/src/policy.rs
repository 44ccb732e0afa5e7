//! Which part of a function's return value is cached, and for how long.
//!
//! The attribute picks one policy per function from the shape of its return
//! type and its options; each is a zero-sized type implementing [`Policy`].

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A type that can be stored: serde in both directions.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: it must implement `serde::Serialize` and `serde::de::DeserializeOwned`",
    label = "not serializable",
    note = "derive them with `#[derive(serde::Serialize, serde::Deserialize)]`",
    note = "a raw response (axum's `Response`, actix's `HttpResponse`) cannot be cached: its body is a stream that can be read once; return `Json<T>`, `Html<T>` or `(StatusCode, Json<T>)` (feature `axum`), or a type implementing `cached_api::CachedResponse`",
    note = "another framework's wrapper (actix-web's `web::Json`) cannot implement `CachedResponse` outside that framework: return a newtype of your own that implements it (README, \"Other frameworks\")"
)]
pub trait CacheValue: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> CacheValue for T {}

/// Which TTL of the function a kept value gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// The function's `ttl`.
    Value,
    /// The function's `error_ttl`.
    Error,
}

/// How a return type `R` is cached.
#[diagnostic::on_unimplemented(
    message = "#[cached_api] cannot cache a return value of type `{R}` this way",
    note = "`Result` and `Option` are recognised by name: a type of that name must be `core::result::Result` or `core::option::Option`; other types are cached whole"
)]
pub trait Policy<R> {
    /// What is written to the store; the generated code checks that it is
    /// a [`CacheValue`], once, where it names the type.
    type Stored;
    /// The part of `value` to store and which TTL it gets; `None` to store nothing.
    fn keep(value: &R) -> Option<(&Self::Stored, Lifetime)>;
    /// Rebuilds the return value from what was stored.
    fn restore(stored: Self::Stored) -> R;
    /// Whether `value` reports a failure, which a stale value may replace.
    fn failed(value: &R) -> bool {
        let _ = value;
        false
    }
}

/// Plain return types: every value is cached.
#[derive(Debug)]
pub struct Whole;

impl<T> Policy<T> for Whole {
    type Stored = T;
    fn keep(value: &T) -> Option<(&T, Lifetime)> {
        Some((value, Lifetime::Value))
    }
    fn restore(stored: T) -> T {
        stored
    }
}

/// `Result` without `error_ttl`: only `Ok` is cached.
#[derive(Debug)]
pub struct OkOnly;

impl<T, E> Policy<Result<T, E>> for OkOnly {
    type Stored = T;
    fn keep(value: &Result<T, E>) -> Option<(&T, Lifetime)> {
        value.as_ref().ok().map(|ok| (ok, Lifetime::Value))
    }
    fn restore(stored: T) -> Result<T, E> {
        Ok(stored)
    }
    fn failed(value: &Result<T, E>) -> bool {
        value.is_err()
    }
}

/// `Result` with `error_ttl`: `Ok` and `Err` are cached, each with its TTL.
#[derive(Debug)]
pub struct OkAndErr;

impl<T, E> Policy<Result<T, E>> for OkAndErr {
    type Stored = Result<T, E>;
    fn keep(value: &Result<T, E>) -> Option<(&Result<T, E>, Lifetime)> {
        let lifetime = match value {
            Ok(_) => Lifetime::Value,
            Err(_) => Lifetime::Error,
        };
        Some((value, lifetime))
    }
    fn restore(stored: Result<T, E>) -> Result<T, E> {
        stored
    }
    fn failed(value: &Result<T, E>) -> bool {
        value.is_err()
    }
}

/// `Option` without `none = true`: only `Some` is cached.
#[derive(Debug)]
pub struct SomeOnly;

impl<T> Policy<Option<T>> for SomeOnly {
    type Stored = T;
    fn keep(value: &Option<T>) -> Option<(&T, Lifetime)> {
        value.as_ref().map(|some| (some, Lifetime::Value))
    }
    fn restore(stored: T) -> Option<T> {
        Some(stored)
    }
}
