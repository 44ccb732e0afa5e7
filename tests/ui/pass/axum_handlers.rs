//! Every supported return shape on an axum handler as written, with users
//! taken from a typed extractor and from headers, and keys from extractor
//! patterns and from a query struct; each is still a handler.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use cached_api::cached_api;

#[derive(Clone)]
struct Db;

#[derive(serde::Serialize, serde::Deserialize)]
struct Profile {
    name: String,
}

/// A query struct: `Serialize` but not `Display`, so it enters the key as a digest.
#[derive(serde::Serialize, serde::Deserialize)]
struct Page {
    page: u32,
    per_page: u32,
}

struct Claims {
    sub: String,
}

struct AuthUser(Claims);

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<AuthUser, StatusCode> {
        let sub = parts.headers.get("x-user-id").ok_or(StatusCode::UNAUTHORIZED)?;
        let sub = sub.to_str().map_err(|_| StatusCode::BAD_REQUEST)?.to_owned();
        Ok(AuthUser(Claims { sub }))
    }
}

#[cached_api(
    key = "{id}",
    user = headers.get("x-user-id").and_then(|v| v.to_str().ok()).unwrap_or("anon"),
    ttl = "15m"
)]
async fn from_headers(
    headers: HeaderMap,
    State(_db): State<Db>,
    Path(id): Path<u64>,
) -> Result<Json<Profile>, StatusCode> {
    Ok(Json(Profile { name: format!("{id}") }))
}

#[cached_api(key = "{id}:{q}", ttl = "15m")]
async fn keyed_by_query(Path(id): Path<u64>, Query(q): Query<Page>) -> String {
    format!("{id}: page {} of {}", q.page, q.per_page)
}

#[cached_api(key = "{id}", user = claims.sub, ttl = "15m")]
async fn from_claims(AuthUser(claims): AuthUser, Path(id): Path<u64>) -> Json<Profile> {
    Json(Profile { name: format!("{} {id}", claims.sub) })
}

fn profile_ttl(profile: &Json<Profile>) -> std::time::Duration {
    std::time::Duration::from_secs(profile.name.len() as u64)
}

/// A TTL from the value of a wrapper: the function takes the wrapper.
#[cached_api(key = "{id}", ttl = profile_ttl, tags = ["profiles"])]
async fn timed(Path(id): Path<u64>) -> Result<Json<Profile>, StatusCode> {
    Ok(Json(Profile { name: format!("{id}") }))
}

/// Not a handler (axum answers no `Option`), but a wrapper inside `Option` caches.
#[cached_api(key = "{id}", ttl = "1m")]
async fn maybe(id: u64) -> Option<Json<Profile>> {
    (id > 0).then(|| Json(Profile { name: format!("{id}") }))
}

#[cached_api(key = "page", ttl = "1h")]
async fn page() -> Html<String> {
    Html("<h1>hi</h1>".to_owned())
}

#[cached_api(key = "{id}", ttl = "1h")]
async fn created(Path(id): Path<u64>) -> (StatusCode, Json<Profile>) {
    (StatusCode::CREATED, Json(Profile { name: format!("{id}") }))
}

#[cached_api(key = "{id}", ttl = "1h")]
async fn created_page(Path(id): Path<u64>) -> (StatusCode, Html<String>) {
    (StatusCode::ACCEPTED, Html(format!("<p>{id}</p>")))
}

/// No `key`: the default key is every argument but the app's state
/// (`State<…>`, which is neither `Display` nor `Serialize` here).
#[cached_api(ttl = "24h")]
async fn plans(State(_db): State<Db>) -> Json<Vec<Profile>> {
    Json(Vec::new())
}

#[cached_api(ttl = "1h")]
async fn plan(State(_db): State<Db>, Path(id): Path<u64>) -> Json<Profile> {
    Json(Profile { name: format!("{id}") })
}

fn main() {
    drop(maybe(1));
    let _: Router = Router::new()
        .route("/a/{id}", get(from_headers))
        .route("/b/{id}", get(keyed_by_query))
        .route("/c/{id}", get(from_claims))
        .route("/e", get(page))
        .route("/f/{id}", get(created))
        .route("/g/{id}", get(created_page))
        .route("/plans", get(plans))
        .route("/plans/{id}", get(plan))
        .route("/timed/{id}", get(timed))
        .with_state(Db);
}
