//! The expansion names nothing the user can shadow, keeps the function's
//! attributes, and leaves `return`, `?` and `Send` as they were.

#![deny(unused_must_use)]

use cached_api::cached_api;

#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct String;
#[allow(dead_code)]
struct Vec;
#[allow(dead_code)]
struct Box;
mod core {}
mod std {}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Profile {
    name: ::std::string::String,
}

#[derive(Debug)]
struct ApiError;

type Result<T> = ::core::result::Result<T, ApiError>;

fn parse(id: &str) -> Result<u64> {
    id.parse().map_err(|_| ApiError)
}

/// Doc comments and other attributes survive.
#[must_use]
#[cached_api(key = "profile:{id}", user = user_id, ttl = "15m", l1 = true, stale = "1m", lock = true, invalidate = forget_profile)]
async fn get_profile(user_id: u64, id: ::std::string::String) -> Result<Profile> {
    let number = parse(&id)?;
    if number == 0 {
        return Err(ApiError);
    }
    Ok(Profile { name: ::std::format!("{user_id}/{number}") })
}

#[cached_api(user = user_id, none = true, version = 2, name = "custom", invalidate = forget_find)]
fn find(user_id: &str, id: u64) -> ::core::option::Option<u64> {
    let _ = user_id;
    if id == 0 {
        return None;
    }
    Some(id)
}

struct Repo {
    base: u64,
}

impl Repo {
    #[cached_api(key = "{id}", ttl = 90, error_ttl = "5s", stale = 30, lock = "2s", invalidate = forget_load)]
    async fn load(&self, id: u64) -> ::core::result::Result<u64, ::std::string::String> {
        Ok(self.base + id)
    }

    #[cached_api]
    fn total(&mut self) -> u64 {
        self.base += 1;
        self.base
    }
}

fn assert_send<F: Send>(future: F) -> F {
    future
}

fn main() {
    let _ = assert_send(get_profile(1, "7".into()));
    let _ = find("u", 1);
    let mut repo = Repo { base: 1 };
    let _ = assert_send(repo.load(2));
    let _ = repo.total();
    let _: ::core::result::Result<(), cached_api::Error> = forget_find("u", 1);
    let _ = assert_send(Repo::forget_load(2));
    let _ = assert_send(forget_profile(1, "7".into()));
}
