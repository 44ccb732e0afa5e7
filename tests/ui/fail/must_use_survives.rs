//! The attribute keeps the function's other attributes: here `#[must_use]`
//! still fires on a cached function.

#![deny(unused_must_use)]

use cached_api::cached_api;

#[must_use = "the total is the point"]
#[cached_api(key = "{id}")]
fn total(id: u64) -> u64 {
    id
}

fn main() {
    total(1);
}
