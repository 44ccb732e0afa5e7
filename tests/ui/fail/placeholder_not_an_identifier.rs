use cached_api::cached_api;

#[cached_api(key = "p:{1x}", ttl = "1m")]
fn get(x: u32) -> u32 {
    x
}

fn main() {}
