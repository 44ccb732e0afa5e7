use cached_api::cached_api;

#[derive(serde::Serialize, serde::Deserialize)]
struct Profile {
    name: String,
}

#[cached_api(key = "{id}", http = true)]
async fn profile(id: u64) -> Profile {
    Profile { name: id.to_string() }
}

fn main() {}
