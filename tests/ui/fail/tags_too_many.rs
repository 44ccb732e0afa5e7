use cached_api::cached_api;

#[cached_api(key = "{id}", tags = ["a", "b", "c", "d", "e:{id}"])]
async fn plan(id: u64) -> u64 {
    id
}

fn main() {}
