use axum::http::HeaderMap;
use cached_api::cached_api;

#[cached_api(key = "{page}", ttl = "1m")]
async fn inbox(headers: HeaderMap, page: u32) -> String {
    format!("{} page {page}", headers.len())
}

fn main() {}
