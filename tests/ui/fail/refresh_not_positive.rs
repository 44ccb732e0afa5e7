use cached_api::cached_api;

#[cached_api(ttl = "1h", refresh = 0.0)]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
