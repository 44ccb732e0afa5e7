use cached_api::cached_api;

#[cached_api(key = "{id}", http = true)]
fn sync_handler(id: u64) -> String {
    id.to_string()
}

#[cached_api(key = "{id}", http = true)]
async fn no_answer(id: u64) {
    let _ = id;
}

#[cached_api(key = "{id}", max_age = "30s")]
async fn max_age_alone(id: u64) -> String {
    id.to_string()
}

#[cached_api(key = "{id}", ttl = "1m", http = true, max_age = "1h")]
async fn max_age_over_ttl(id: u64) -> String {
    id.to_string()
}

fn main() {}
