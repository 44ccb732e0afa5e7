use cached_api::cached_api;

#[cached_api(key = "{id}")]
fn get<T: Default + serde::Serialize>(id: u64) -> u64 {
    id
}

fn main() {}
