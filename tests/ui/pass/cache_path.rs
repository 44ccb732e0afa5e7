//! `cache = PATH` names a `static` whose type derefs to `Cache`, by any path:
//! the function and its companion use it, and the process-wide cache does
//! not see them.

use std::sync::LazyLock;

use cached_api::{Cache, cached_api};

mod caches {
    use super::*;

    pub static EU: LazyLock<Cache> =
        LazyLock::new(|| Cache::builder().prefix("eu").build().expect("the EU cache"));
}

#[cached_api(key = "{id}", ttl = "1m", cache = caches::EU, invalidate = forget_price)]
async fn price(id: u64) -> u64 {
    id * 100
}

#[tokio::main]
async fn main() {
    assert_eq!(price(3).await, 300);
    assert_eq!(price(3).await, 300);
    assert_eq!(caches::EU.stats().total.hits, 1);
    assert_eq!(cached_api::stats().total.misses, 0);
    forget_price(3).await.unwrap();
    assert_eq!(caches::EU.stats().total.invalidations, 1);
}
