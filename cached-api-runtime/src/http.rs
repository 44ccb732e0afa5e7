//! HTTP validators for cached axum handlers (`http = true`): an ETag of the
//! stored content on every response the cache answers or stores, and
//! `304 Not Modified` for a request that holds it already.
//!
//! The attribute makes the handler take a [`Conditional`] first (an
//! extractor of `If-None-Match`) and answer an [`Answer`] of what it
//! returns; both are named here so that code calling the handler itself,
//! a test for instance, can:
//!
//! ```
//! use axum::Json;
//! use axum::response::IntoResponse;
//! use cached_api::cached_api;
//! use cached_api::http::{Answer, Conditional};
//!
//! #[cached_api(key = "plans", ttl = "24h", http = true)]
//! async fn plans() -> Json<Vec<String>> {
//!     Json(vec!["free".to_owned(), "pro".to_owned()])
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let answer: Answer<Json<Vec<String>>> = plans(Conditional::default()).await;
//! let response = answer.into_response();
//! assert_eq!(response.headers()["cache-control"], "public, no-cache");
//! assert!(response.headers().contains_key("etag"));
//! # }
//! ```
//!
//! The ETag is a digest of the entry's key and its payload (the stored
//! value's bytes, after the header): content, not a write's identity, so a
//! recomputation that stores the same bytes keeps the ETag, and another
//! user's entry (another key) never shares one. It is not kept in the
//! entry: a 304 digests the payload the lookup read, which costs a hash of
//! the bytes and no decoding; a 200 digests its value encoded again, which
//! gives the same bytes for every type whose encoding is deterministic (a
//! `HashMap`'s is not: such a value gets a new ETag on each answer, and so
//! never a 304, but never a wrong one either).

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// A strong validator of an entry's content: 128 bits of a SHA-256 of its
/// key and stored bytes, sent as quoted hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ETag([u8; 16]);

impl ETag {
    /// The validator of `payload` stored at `entry`.
    pub(crate) fn of(entry: &str, payload: &[u8]) -> ETag {
        let digest = Sha256::new()
            .chain_update(entry.as_bytes())
            .chain_update([0])
            .chain_update(payload)
            .finalize();
        let mut tag = [0; 16];
        tag.copy_from_slice(&digest[..16]);
        ETag(tag)
    }

    /// As the `ETag` header writes it: quoted hex.
    fn text(self) -> String {
        let mut text = String::with_capacity(34);
        text.push('"');
        crate::key::push_hex(&mut text, &self.0);
        text.push('"');
        text
    }

    fn header(self) -> HeaderValue {
        HeaderValue::from_str(&self.text()).expect("quoted hex is a header value")
    }
}

/// What a request's `If-None-Match` asks, extracted from any axum request:
/// the handler the attribute wraps takes it as a first argument of its own.
/// `Conditional::default()` is a request that holds no copy.
/// Only `GET` and `HEAD` are answered `304` (RFC 9110, 13.1.2: another
/// method's failed precondition is a `412`, the handler's to decide).
#[derive(Debug, Default)]
pub struct Conditional {
    /// The listed entity tags, quoted, without any `W/`; empty when the
    /// request sent none.
    tags: Vec<String>,
    /// `If-None-Match: *`.
    any: bool,
}

impl Conditional {
    /// Whether the request asks at all: only then does a lookup look for
    /// a 304 before answering.
    pub(crate) fn asks(&self) -> bool {
        self.any || !self.tags.is_empty()
    }

    fn for_method(self, method: &Method) -> Conditional {
        if method == Method::GET || method == Method::HEAD {
            self
        } else {
            Conditional::default()
        }
    }

    /// Whether the client's copy is `etag`: weak comparison (RFC 9110,
    /// 13.1.2: `W/` is ignored on either side), or `*` for any current entry.
    pub(crate) fn holds(&self, etag: ETag) -> bool {
        self.any || self.tags.contains(&etag.text())
    }

    fn parse(values: impl Iterator<Item = HeaderValue>) -> Conditional {
        let mut conditional = Conditional::default();
        for value in values {
            let Ok(text) = value.to_str() else { continue };
            for item in text.split(',').map(str::trim) {
                let tag = item.strip_prefix("W/").unwrap_or(item);
                if item == "*" {
                    conditional.any = true;
                } else if tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"') {
                    conditional.tags.push(tag.to_owned());
                }
            }
        }
        conditional
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Conditional {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let values = parts.headers.get_all(IF_NONE_MATCH).iter().cloned();
        Ok(Conditional::parse(values).for_method(&parts.method))
    }
}

/// Who may keep a response, and for how long without asking again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Freshness {
    /// A per-user entry: `private`, never `public`.
    pub(crate) private: bool,
    /// `max-age`, in seconds; `None`: `no-cache`, revalidate each time.
    pub(crate) max_age_secs: Option<u64>,
}

impl Freshness {
    fn header(self) -> HeaderValue {
        let scope = if self.private { "private" } else { "public" };
        let text = match self.max_age_secs {
            Some(secs) => format!("{scope}, max-age={secs}"),
            None => format!("{scope}, no-cache"),
        };
        HeaderValue::from_str(&text).expect("ASCII")
    }
}

/// What a handler with `http = true` answers: its own response with the
/// validator and cache headers, or `304 Not Modified` with them.
pub struct Answer<R> {
    kind: Kind<R>,
    freshness: Option<Freshness>,
}

enum Kind<R> {
    /// The handler's response; `None` for one that was not cached (an
    /// `Err`, a `None`, a call that ran uncached), which gets no validator.
    Full(R, Option<ETag>),
    NotModified(ETag),
}

impl<R> Answer<R> {
    pub(crate) fn full(value: R, etag: Option<ETag>, freshness: Option<Freshness>) -> Answer<R> {
        Answer {
            kind: Kind::Full(value, etag),
            freshness,
        }
    }

    pub(crate) fn not_modified(etag: ETag, freshness: Freshness) -> Answer<R> {
        Answer {
            kind: Kind::NotModified(etag),
            freshness: Some(freshness),
        }
    }

    /// Whether this answer is a `304`.
    pub fn is_not_modified(&self) -> bool {
        matches!(self.kind, Kind::NotModified(_))
    }
}

impl<R: IntoResponse> IntoResponse for Answer<R> {
    fn into_response(self) -> Response {
        let (mut response, etag) = match self.kind {
            Kind::Full(value, etag) => (value.into_response(), etag),
            Kind::NotModified(etag) => (StatusCode::NOT_MODIFIED.into_response(), Some(etag)),
        };
        // A validator describes the content cached; an error the handler
        // answered with is not that content.
        let status = response.status();
        if let (Some(etag), Some(freshness)) = (etag, self.freshness)
            && (status.is_success() || status == StatusCode::NOT_MODIFIED)
        {
            let headers = response.headers_mut();
            headers.insert(ETAG, etag.header());
            headers.insert(CACHE_CONTROL, freshness.header());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditional(values: &[&str]) -> Conditional {
        Conditional::parse(
            values
                .iter()
                .map(|value| HeaderValue::from_str(value).unwrap()),
        )
    }

    #[test]
    fn if_none_match_compares_weakly_any_listed_tag() {
        let etag = ETag::of("p:f:v0:s1:g:k", b"payload");
        let opaque = etag.text();
        assert!(conditional(&[&opaque]).holds(etag));
        assert!(conditional(&[&format!("W/{opaque}")]).holds(etag));
        assert!(conditional(&[&format!("\"other\", {opaque}")]).holds(etag));
        assert!(conditional(&["\"other\"", &opaque]).holds(etag));
        assert!(conditional(&["*"]).holds(etag));
        assert!(!conditional(&["\"other\""]).holds(etag));
        assert!(
            !conditional(&[opaque.trim_matches('"')]).holds(etag),
            "unquoted is no tag"
        );
        assert!(!conditional(&[]).asks());
    }

    #[test]
    fn only_a_safe_method_is_answered_from_the_entry() {
        let etag = ETag::of("k", b"v");
        let asked = || conditional(&[&etag.text()]);
        assert!(asked().for_method(&Method::HEAD).holds(etag));
        assert!(!asked().for_method(&Method::PUT).asks());
    }

    #[test]
    fn per_user_answers_are_private_and_revalidated_unless_a_max_age_is_given() {
        let header = |private, max_age_secs| {
            Freshness {
                private,
                max_age_secs,
            }
            .header()
        };
        assert_eq!(header(true, None), "private, no-cache");
        assert_eq!(header(false, None), "public, no-cache");
        assert_eq!(header(true, Some(30)), "private, max-age=30");
    }

    #[test]
    fn the_tag_is_of_the_content_and_the_entry() {
        let a = ETag::of("p:f:v0:s1:{u:1}:k", b"same");
        assert_eq!(a, ETag::of("p:f:v0:s1:{u:1}:k", b"same"));
        assert_ne!(a, ETag::of("p:f:v0:s1:{u:2}:k", b"same"), "another user's");
        assert_ne!(a, ETag::of("p:f:v0:s1:{u:1}:k", b"other"));
    }
}
