use cached_api::cached_api;

struct Profile {
    name: String,
}

#[cached_api(key = "{id}")]
async fn get(id: u64) -> Result<Profile, String> {
    Ok(Profile { name: id.to_string() })
}

fn main() {}
