use cached_api::cached_api;

#[cached_api(ttl = "999999999999999999d")]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
