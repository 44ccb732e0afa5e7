//! A call of a handler with `http = true`: the cache-aside call, answering
//! a conditional request from the entry when the client holds it already.

use std::future::Future;
use std::time::Duration;

use super::Cache;
use super::steps::{self, Step};
use crate::backend::Backend;
use crate::codec::TypedCodec;
use crate::http::{Answer, Conditional, ETag, Freshness};
use crate::key::EntryKey;
use crate::policy::{Lifetime, Policy};
use crate::spec::FnSpec;
use crate::stats::Event;

impl Cache {
    /// [`call`](Cache::call) for a handler that answers conditional
    /// requests: a lookup whose entry is the client's copy answers `304`
    /// without decoding it or running the handler; any other answer carries
    /// the validator of what it is, and a handler that ran is compared too.
    pub(crate) async fn call_http<P: Policy<R>, R, F: Future<Output = R>>(
        &self,
        spec: &'static FnSpec,
        codec: TypedCodec<P::Stored>,
        key: EntryKey,
        request: &Conditional,
        max_age: Option<Duration>,
        compute: F,
    ) -> Answer<R> {
        // A client keeps an answer no longer than its entry lives.
        let private = key.generation().is_some();
        let freshness = |lives: Duration| Freshness {
            private,
            max_age_secs: max_age.map(|max_age| max_age.min(lives).as_secs()),
        };
        if spec.drops_entries() && !self.shape_recorded(spec, &key).await {
            return Answer::full(compute.await, None, None);
        }
        let entry = key.entry().to_owned();
        let value = match steps::start::<P, R>(&self.inner, spec, codec, key, false) {
            Step::Done(value) => value,
            Step::Lookup(lookup) => {
                let read = self.inner.store.read(lookup.key(), lookup.l1()).await;
                let held = read
                    .as_ref()
                    .ok()
                    .filter(|_| request.asks())
                    .and_then(|read| lookup.current_payload(read))
                    .map(|(payload, left)| (ETag::of(&entry, payload), left))
                    .filter(|&(etag, _)| request.holds(etag));
                if let Some((etag, left)) = held {
                    self.inner.stats.record(spec, Event::Hit);
                    self.inner.stats.record(spec, Event::NotModified);
                    return Answer::not_modified(etag, freshness(left));
                }
                match lookup.read(read) {
                    Step::Done(value) => value,
                    step => Box::pin(self.drive(step, compute, None)).await,
                }
            }
            step => Box::pin(self.drive(step, compute, None)).await,
        };
        let kept = P::keep(&value);
        let stored = kept.map(|(stored, _)| stored);
        let lives = match kept {
            Some((_, Lifetime::Error)) => spec.error_ttl(),
            Some((stored, Lifetime::Value)) => codec.ttl_of(stored),
            None => None,
        }
        .unwrap_or_else(|| spec.ttl(self.inner.config.default_ttl));
        let etag = stored
            .and_then(|stored| codec.payload(stored))
            .map(|payload| ETag::of(&entry, &payload));
        match etag {
            Some(etag) if request.asks() && request.holds(etag) => {
                self.inner.stats.record(spec, Event::NotModified);
                Answer::not_modified(etag, freshness(lives))
            }
            _ => Answer::full(value, etag, Some(freshness(lives))),
        }
    }
}
