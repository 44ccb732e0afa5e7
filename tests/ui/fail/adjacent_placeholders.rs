use cached_api::cached_api;

#[cached_api(key = "{a}{b}")]
fn get(a: u64, b: u64) -> u64 {
    a + b
}

fn main() {}
