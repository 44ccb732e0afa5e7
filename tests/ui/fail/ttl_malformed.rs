use cached_api::cached_api;

#[cached_api(ttl = "15 min")]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
