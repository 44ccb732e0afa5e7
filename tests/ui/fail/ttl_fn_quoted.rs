use cached_api::cached_api;

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    expires_in: u64,
}

fn token_ttl(token: &Token) -> std::time::Duration {
    std::time::Duration::from_secs(token.expires_in)
}

#[cached_api(key = "{id}", ttl = "token_ttl")]
async fn token(id: u64) -> Token {
    Token { expires_in: id }
}

fn main() {
    let _ = token_ttl;
}
