use cached_api::cached_api;

#[cached_api(ttl = "15m", key = "{id}", ttl = 60)]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
