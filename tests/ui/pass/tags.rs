//! Tags over arguments of every kind a handler takes, on async and sync
//! functions, beside the other arguments; the tag's text is the same
//! whichever template writes it.

use cached_api::cached_api;

#[cached_api(key = "{id}", user = user, tags = ["org:{org}", "plans", "plan:{id}"], l1 = true, invalidate = forget_plan)]
async fn plan(user: &str, org: u64, id: String) -> String {
    format!("{user}/{org}/{id}")
}

#[cached_api(tags = ["org:{org}"], ttl = "5m", stale = "1m", refresh = true)]
async fn members(org: u64) -> Vec<u64> {
    vec![org]
}

#[cached_api(key = "{org}", tags = ["org:{org}"], lock = true)]
fn settings(org: &str) -> Option<String> {
    Some(org.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(plan("ada", 7, "pro".to_owned()).await, "ada/7/pro");
    assert_eq!(plan("ada", 7, "pro".to_owned()).await, "ada/7/pro");
    assert_eq!(members(7).await, [7]);
    assert_eq!(settings("7").as_deref(), Some("7"));
    assert_eq!(cached_api::stats().total.hits, 1);
    cached_api::invalidate_tag("org:7").await.unwrap();
    forget_plan("ada", "pro".to_owned()).await.unwrap();
    cached_api::blocking::invalidate_tag("plans").unwrap();
    assert_eq!(plan("ada", 7, "pro".to_owned()).await, "ada/7/pro");
    assert_eq!(cached_api::stats().total.misses, 4);
}
