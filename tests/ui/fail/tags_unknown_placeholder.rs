use cached_api::cached_api;

#[cached_api(key = "{id}", user = user, tags = ["org:{org_id}", "team:{team.id}"])]
async fn dashboard(user: u64, id: u64) -> u64 {
    user + id
}

fn main() {}
