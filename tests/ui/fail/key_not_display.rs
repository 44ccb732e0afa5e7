use cached_api::cached_api;

struct Filter;

#[cached_api(key = "search:{filter}")]
fn search(filter: Filter) -> u64 {
    let _ = filter;
    1
}

fn main() {}
