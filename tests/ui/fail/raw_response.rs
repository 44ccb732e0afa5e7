use axum::response::{IntoResponse, Response};
use cached_api::cached_api;

#[cached_api(key = "{id}")]
async fn get(id: u64) -> Result<Response, String> {
    Ok(format!("{id}").into_response())
}

fn main() {}
