use cached_api::cached_api;

#[cached_api(key = "{id}", invalidate = plan)]
async fn plan(id: u64) -> String {
    id.to_string()
}

fn main() {}
