//! A function's entries are dropped everywhere by its id: the attribute's
//! `name = …` when it has one, else `module_path!()` and the function's name.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use cached_api::cached_api;

static RUNS: AtomicU32 = AtomicU32::new(0);

#[cached_api(key = "{id}", ttl = "1m", name = "catalog::item")]
fn named(id: u64) -> u64 {
    RUNS.fetch_add(1, Relaxed);
    id
}

#[cached_api(key = "{id}", ttl = "1m")]
fn unnamed(id: u64) -> u64 {
    RUNS.fetch_add(1, Relaxed);
    id
}

/// Calls `call(id)` twice, then again after `invalidate`: how many runs
/// there were before and after.
fn runs(call: fn(u64) -> u64, id: u64, invalidate: impl FnOnce()) -> (u32, u32) {
    let start = RUNS.load(Relaxed);
    call(id);
    call(id);
    let cached = RUNS.load(Relaxed) - start;
    invalidate();
    call(id);
    (cached, RUNS.load(Relaxed) - start)
}

fn main() {
    let by_name = runs(named, 7, || {
        cached_api::blocking::invalidate_function("catalog::item").unwrap();
    });
    assert_eq!(by_name, (1, 2), "the second call hit, the third ran again");
    let by_path = runs(unnamed, 7, || {
        cached_api::blocking::invalidate_function(concat!(module_path!(), "::unnamed")).unwrap();
    });
    assert_eq!(by_path, (1, 2));
    let other = runs(named, 8, || {
        cached_api::blocking::invalidate_function("catalog::other").unwrap();
    });
    assert_eq!(other, (1, 1), "another id leaves the function's entries");
}
