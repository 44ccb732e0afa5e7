use axum::Json;
use cached_api::cached_api;

struct Profile {
    name: String,
}

#[cached_api(key = "{id}")]
async fn get(id: u64) -> Json<Profile> {
    Json(Profile { name: format!("{id}") })
}

fn main() {}
