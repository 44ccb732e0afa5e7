use cached_api::cached_api;

#[cached_api(key = "{id}", ttl = "1h", stale = 1m)]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
