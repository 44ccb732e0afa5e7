use cached_api::cached_api;

/// As axum-extra's: one typed header of the caller's request.
struct TypedHeader<T>(T);

struct Authorization(String);

#[cached_api(key = "inbox", ttl = "1m")]
async fn inbox(TypedHeader(auth): TypedHeader<Authorization>) -> String {
    auth.0
}

fn main() {}
