use cached_api::cached_api;

#[cached_api(key = "profile:{id")]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
