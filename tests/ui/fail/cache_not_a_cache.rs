use std::sync::OnceLock;

use cached_api::{Cache, cached_api};

static EU: OnceLock<Cache> = OnceLock::new();

#[cached_api(key = "{id}", cache = EU)]
fn price(id: u64) -> u64 {
    id
}

#[cached_api(key = "{id}", cache = "EU")]
fn quoted(id: u64) -> u64 {
    id
}

fn main() {}
