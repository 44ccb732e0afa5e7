use cached_api::cached_api;

#[cached_api(key = "report:{day}", ttl = "1h")]
fn report(session_id: String, day: u32) -> String {
    format!("{session_id}: day {day}")
}

fn main() {}
