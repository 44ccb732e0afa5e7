//! The classic leak: a handler that takes the caller, cached globally.
use cached_api::cached_api;

struct AuthUser(u64);

#[derive(serde::Serialize, serde::Deserialize)]
struct Profile {
    name: String,
}

#[cached_api(key = "me", ttl = "1m")]
async fn me(AuthUser(id): AuthUser) -> Profile {
    Profile {
        name: format!("user {id}"),
    }
}

fn main() {}
