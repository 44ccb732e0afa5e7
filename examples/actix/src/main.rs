//! cached-api on actix-web 4. actix-web's `web::Json` is another crate's
//! type, so no crate but actix-web may implement `cached_api::CachedResponse`
//! for it (Rust's orphan rule): a handler returns a newtype of its own
//! instead, which implements both `Responder` and `CachedResponse`. The
//! cache stores the value inside and rebuilds the newtype on a hit.
//!
//! `cargo run --manifest-path examples/actix/Cargo.toml`, then
//! `curl localhost:8080/profiles/7`.

use std::sync::atomic::{AtomicU32, Ordering};

use actix_web::body::BoxBody;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, Responder, web};
use cached_api::{CachedResponse, cached_api};
use serde::{Deserialize, Serialize};

/// A JSON response that the cache stores as the value it holds.
pub struct Json<T>(pub T);

impl<T: Serialize> Responder for Json<T> {
    type Body = BoxBody;

    fn respond_to(self, request: &HttpRequest) -> HttpResponse {
        web::Json(self.0).respond_to(request).map_into_boxed_body()
    }
}

impl<T> CachedResponse for Json<T> {
    type Payload = T;
    type Parts = ();

    fn split(&self) -> ((), &T) {
        ((), &self.0)
    }

    fn join((): (), payload: T) -> Option<Self> {
        Some(Json(payload))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub id: u64,
    pub name: String,
}

/// How often a profile was loaded from the "database".
pub static LOADS: AtomicU32 = AtomicU32::new(0);

/// `Path<u64>` is `Display`, so `{path}` puts the id in the key. An `Err`
/// is answered, not cached: the next request loads again.
#[cached_api(key = "profile:{path}", ttl = "1m")]
async fn profile(path: web::Path<u64>) -> Result<Json<Profile>, actix_web::Error> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    match path.into_inner() {
        0 => Err(actix_web::error::ErrorNotFound("no profile 0")),
        id => Ok(Json(Profile {
            id,
            name: format!("user {id}"),
        })),
    }
}

fn routes(config: &mut web::ServiceConfig) {
    config.route("/profiles/{id}", web::get().to(profile));
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    HttpServer::new(|| App::new().configure(routes))
        .bind(("127.0.0.1", 8080))?
        .run()
        .await
}

#[cfg(test)]
mod tests {
    use actix_web::test::{self, TestRequest};
    use actix_web::{App, http::StatusCode};

    use super::*;

    #[actix_web::test]
    async fn a_second_request_is_a_hit_and_an_error_is_not_cached() {
        let app = test::init_service(App::new().configure(routes)).await;
        let get = |uri: &str| TestRequest::get().uri(uri).to_request();

        let first = test::call_service(&app, get("/profiles/7")).await;
        assert_eq!(first.status(), StatusCode::OK);
        let first = test::read_body(first).await;
        let second = test::call_and_read_body(&app, get("/profiles/7")).await;
        assert_eq!(first, second);
        assert_eq!(&first[..], br#"{"id":7,"name":"user 7"}"#);
        assert_eq!(LOADS.load(Ordering::SeqCst), 1, "the second request hit");
        assert_eq!(cached_api::stats().total.hits, 1);

        for _ in 0..2 {
            let missing = test::call_service(&app, get("/profiles/0")).await;
            assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        }
        assert_eq!(LOADS.load(Ordering::SeqCst), 3, "errors are not cached");
    }
}
