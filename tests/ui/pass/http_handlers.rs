//! `http = true` on axum handlers of every supported shape, per user and
//! global, with `max_age`, `l1` and `tags`: each is still a handler.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use cached_api::cached_api;

#[derive(Clone)]
struct Db;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Profile {
    name: String,
}

#[cached_api(key = "{id}", user = headers.get("x-user-id").and_then(|v| v.to_str().ok()).unwrap_or("anon"), ttl = "15m", http = true)]
async fn profile(
    headers: HeaderMap,
    State(_db): State<Db>,
    Path(id): Path<u64>,
) -> Result<Json<Profile>, StatusCode> {
    Ok(Json(Profile { name: format!("{id}") }))
}

#[cached_api(ttl = "24h", http = true, max_age = "1m", l1 = true, tags = ["plans"])]
async fn plans(State(_db): State<Db>) -> Json<Vec<Profile>> {
    Json(Vec::new())
}

#[cached_api(key = "{id}", ttl = "1h", http = true)]
async fn created(Path(id): Path<u64>) -> (StatusCode, Json<Profile>) {
    (StatusCode::CREATED, Json(Profile { name: format!("{id}") }))
}

#[cached_api(key = "page", ttl = "1h", http = true)]
async fn page() -> Html<String> {
    Html("<p>hi</p>".to_owned())
}

fn main() {
    let _: Router = Router::new()
        .route("/profile/{id}", get(profile))
        .route("/plans", get(plans))
        .route("/created/{id}", get(created))
        .route("/page", get(page))
        .with_state(Db);
}
