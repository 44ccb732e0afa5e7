use cached_api::cached_api;

#[cached_api(key = "{id}", user = user_id, l1 = true, invalidate = forget_profile)]
async fn profile(user_id: u64, id: u64) -> String {
    format!("{user_id}/{id}")
}

#[cached_api(key = "{id}", invalidate = plan)]
async fn plan(id: u64) -> String {
    id.to_string()
}

fn main() {}
