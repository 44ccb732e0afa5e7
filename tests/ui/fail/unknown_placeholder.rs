use cached_api::cached_api;

#[cached_api(key = "profile:{idd}", user = user_id)]
async fn get_profile(user_id: u64, id: u64) -> String {
    format!("{user_id}/{id}")
}

fn main() {}
