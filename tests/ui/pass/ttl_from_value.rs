//! `ttl = path`: a function of what the function stores, on every shape a
//! handler returns, beside `stale`, `jitter`, `l1` and `tags`.

use std::time::Duration;

use cached_api::cached_api;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Token {
    expires_in: u64,
}

fn token_ttl(token: &Token) -> Duration {
    Duration::from_secs(token.expires_in)
}

mod ttls {
    pub fn of_result(found: &Result<super::Token, String>) -> std::time::Duration {
        match found {
            Ok(token) => super::token_ttl(token),
            Err(_) => std::time::Duration::from_secs(5),
        }
    }
}

#[cached_api(key = "{id}", ttl = token_ttl, stale = "1m", jitter = "10%", l1 = true, tags = ["tokens"])]
async fn token(id: u64) -> Token {
    Token { expires_in: id }
}

#[cached_api(key = "{id}", ttl = token_ttl)]
fn token_blocking(id: u64) -> Result<Token, String> {
    Ok(Token { expires_in: id })
}

#[cached_api(key = "{id}", ttl = token_ttl, none = false)]
async fn maybe_token(id: u64) -> Option<Token> {
    Some(Token { expires_in: id })
}

#[cached_api(key = "{id}", ttl = self::ttls::of_result, error_ttl = "5s")]
async fn token_or_error(id: u64) -> Result<Token, String> {
    Ok(Token { expires_in: id })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(token(60).await.expires_in, 60);
    assert_eq!(token(60).await.expires_in, 60);
    assert!(token_blocking(60).is_ok());
    assert!(maybe_token(60).await.is_some());
    assert!(token_or_error(60).await.is_ok());
    assert!(token_or_error(60).await.is_ok());
    assert_eq!(cached_api::stats().total.hits, 2);
}
