use cached_api::cached_api;

#[cached_api(ttl = "1h", jitter = 0.1)]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
