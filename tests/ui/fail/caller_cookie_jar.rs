use cached_api::cached_api;

/// As axum-extra's: the caller's cookies.
struct CookieJar;

#[cached_api(key = "cart", ttl = "1m")]
fn cart(jar: &CookieJar) -> Vec<u64> {
    let _ = jar;
    Vec::new()
}

fn main() {}
