use cached_api::cached_api;

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    expires_in: u64,
}

fn by_value(token: Token) -> std::time::Duration {
    std::time::Duration::from_secs(token.expires_in)
}

fn in_seconds(token: &Token) -> u64 {
    token.expires_in
}

#[cached_api(key = "{id}", ttl = by_value)]
async fn token(id: u64) -> Token {
    Token { expires_in: id }
}

#[cached_api(key = "{id}", ttl = in_seconds)]
async fn other_token(id: u64) -> Token {
    Token { expires_in: id }
}

fn main() {}
