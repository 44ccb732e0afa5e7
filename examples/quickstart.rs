//! The embedded store, no setup: `cargo run --example quickstart`.
//! With `CACHED_API_REDIS_URL=redis://127.0.0.1:6379` the same code uses Redis.

use std::sync::atomic::{AtomicU32, Ordering};

use cached_api::cached_api;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    user_id: u64,
    name: String,
    plan: String,
}

static DATABASE_READS: AtomicU32 = AtomicU32::new(0);

/// Stands in for a slow database read.
#[cached_api(key = "profile:{id}", user = user_id, ttl = "15m")]
async fn get_profile(user_id: u64, id: u64) -> Result<Profile, String> {
    DATABASE_READS.fetch_add(1, Ordering::SeqCst);
    Ok(Profile {
        user_id,
        name: format!("user-{id}"),
        plan: "pro".to_owned(),
    })
}

async fn show(step: &str) {
    let before = DATABASE_READS.load(Ordering::SeqCst);
    let profile = get_profile(7, 7)
        .await
        .expect("the source never fails here");
    let ran = DATABASE_READS.load(Ordering::SeqCst) > before;
    let outcome = if ran { "miss (body ran)" } else { "hit" };
    println!("{step:<22} {outcome:<16} {profile:?}");
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), cached_api::Error> {
    show("first call").await;
    show("second call").await;
    cached_api::invalidate_user(&7).await?;
    println!("{:<22} user 7", "invalidate_user");
    show("after invalidation").await;

    let stats = cached_api::stats();
    println!(
        "\nstats: {}",
        serde_json::to_string_pretty(&stats).expect("stats serialize")
    );
    Ok(())
}
