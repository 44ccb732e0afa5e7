use cached_api::cached_api;

#[cached_api(key = "{id}", tll = "15m")]
fn get(id: u64) -> u64 {
    id
}

fn main() {}
