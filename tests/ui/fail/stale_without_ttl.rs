use cached_api::cached_api;

#[cached_api(key = "{id}", stale = "1m")]
fn get(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
