use axum::response::IntoResponse;
use cached_api::cached_api;

#[cached_api(key = "{id}")]
async fn get(id: u64) -> impl IntoResponse {
    format!("{id}")
}

fn main() {}
