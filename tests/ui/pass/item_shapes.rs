//! Holes the attribute once had: a companion keeps the function's
//! lifetimes and where-clause, and a serializable type named `Response`
//! is cached like any other (only what a type is decides, not its name).

use cached_api::cached_api;
use serde::{Deserialize, Serialize};

#[cached_api(key = "item:{id}", user = user, ttl = "1m", invalidate = forget_item)]
async fn item<'a, 'b: 'a>(user: &'a str, id: &'b u64) -> String
where
    'a: 'a,
{
    format!("{user}/{id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Response {
    ok: bool,
}

#[cached_api(key = "health", ttl = "1m")]
fn health() -> Response {
    Response { ok: true }
}

#[tokio::main]
async fn main() {
    assert_eq!(item("ann", &7).await, "ann/7");
    forget_item("ann", &7).await.unwrap();
    assert_eq!(health(), Response { ok: true });
    assert_eq!(health(), Response { ok: true });
    assert_eq!(cached_api::stats().total.hits, 1, "the second health() hit");
}
