use cached_api::cached_api;

#[cached_api(key = "scaled:{x}", ttl = "1h")]
async fn scaled<const N: u64>(x: u64) -> u64 {
    x * N
}

fn main() {}
