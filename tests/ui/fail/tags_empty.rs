use cached_api::cached_api;

#[cached_api(key = "{id}", tags = [])]
async fn plan(id: u64) -> u64 {
    id
}

fn main() {}
