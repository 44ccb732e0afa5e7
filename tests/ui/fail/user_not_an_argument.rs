use cached_api::cached_api;

#[cached_api(key = "{id}", user = CURRENT_USER)]
fn get(id: u64) -> u64 {
    id
}

const CURRENT_USER: u64 = 1;

fn main() {}
