use cached_api::cached_api;

#[cached_api(key = "{id}", error_ttl = "30s")]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
