use cached_api::cached_api;

#[cached_api(key = "{id}", user = user_id, shared = true, ttl = "1m")]
fn profile(user_id: u64, id: u64) -> String {
    format!("{user_id}/{id}")
}

fn main() {}
