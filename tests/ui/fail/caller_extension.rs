use axum::Extension;
use cached_api::cached_api;

#[derive(Clone)]
struct Current {
    id: u64,
}

#[cached_api(key = "dashboard", ttl = "1m")]
async fn dashboard(Extension(current): Extension<Current>) -> String {
    format!("dashboard of {}", current.id)
}

fn main() {}
