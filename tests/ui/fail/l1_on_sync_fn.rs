use cached_api::cached_api;

#[cached_api(ttl = "1h", l1 = "30s")]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
