use cached_api::cached_api;

#[cached_api(key = "{id}")]
fn get(id: u64) -> impl std::fmt::Display {
    id
}

fn main() {}
