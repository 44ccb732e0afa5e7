//! Handlers that take the caller and cache per caller, or say that the
//! response is the same for every caller; and extractors that are not the
//! caller (state, path, query, bodies), which need neither.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use cached_api::cached_api;

#[derive(Clone)]
struct AppState;

struct AuthUser(u64);

#[derive(serde::Serialize, serde::Deserialize)]
struct UserSearch {
    name: String,
}

#[derive(serde::Deserialize)]
struct UpdateUser {
    name: String,
}

#[cached_api(key = "me", user = id, ttl = "1m")]
async fn me(AuthUser(id): AuthUser) -> String {
    format!("user {id}")
}

#[cached_api(key = "me:{id}", ttl = "1m")]
async fn me_in_key(AuthUser(id): AuthUser) -> String {
    format!("user {id}")
}

#[cached_api(key = "banner", shared = true, ttl = "1m")]
async fn banner(headers: HeaderMap) -> String {
    format!("{} headers, the same banner for all", headers.len())
}

#[cached_api(key = "all", ttl = "24h")]
async fn plans(State(state): State<AppState>) -> Vec<String> {
    let _ = state;
    vec!["free".to_owned()]
}

#[cached_api(key = "{user_id}", ttl = "1m")]
async fn public_profile(Path(user_id): Path<u64>) -> String {
    format!("public page of {user_id}")
}

#[cached_api(ttl = "1m")]
async fn search(Query(q): Query<UserSearch>) -> Vec<String> {
    vec![q.name]
}

#[cached_api(key = "validate", ttl = "1m")]
async fn validate(Json(body): Json<UpdateUser>) -> bool {
    !body.name.is_empty()
}

/// The default key reads every argument, the account id among them.
#[cached_api(ttl = "1m")]
fn balance(account_id: u64) -> u64 {
    account_id
}

fn main() {
    let _ = (me, me_in_key, banner, plans, public_profile, search, validate, balance);
}
