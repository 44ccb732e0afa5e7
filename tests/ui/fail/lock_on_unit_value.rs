use cached_api::cached_api;

#[cached_api(key = "{id}", lock = true)]
fn touch(id: u64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

fn main() {}
