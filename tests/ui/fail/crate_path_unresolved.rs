use cached_api::cached_api;

#[cached_api(crate = not_the_facade, key = "{id}")]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
