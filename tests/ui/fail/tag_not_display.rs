use cached_api::cached_api;

#[derive(serde::Serialize)]
struct Filter {
    org: u64,
}

#[cached_api(key = "{id}", tags = ["filter:{filter}"])]
async fn plan(id: u64, filter: Filter) -> u64 {
    id + filter.org
}

fn main() {}
