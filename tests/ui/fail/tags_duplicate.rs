use cached_api::cached_api;

#[cached_api(key = "{id}", tags = ["plans", "plan:{id}", "plans"])]
async fn plan(id: u64) -> u64 {
    id
}

fn main() {}
