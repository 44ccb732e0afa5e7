//! The embedded store's byte budget against the memory it really takes:
//! fills the store with many more distinct ~1 kB entries than the budget
//! holds, then prints the resident growth as a ratio of the budget, and how
//! many entries are kept (from the hit rate of keys spread evenly over all
//! of them) against what the budget would hold at the bytes each entry
//! really costs.
//!
//! `cargo bench --bench memory_budget` (Linux: resident size from
//! `/proc/self/statm`); `-- 64 300000 100` for another budget in MiB,
//! count of entries, and length of the profile's longest string (900).

use cached_api::{Cache, cached_api};
use serde::{Deserialize, Serialize};

/// A user profile of about 1 kB, encoded (by default): strings, as most
/// API values are.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    bio: String,
    tags: Vec<String>,
}

static BIO: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn make(id: u64) -> Profile {
    Profile {
        id,
        name: format!("user {id}"),
        bio: "x".repeat(*BIO.get().unwrap_or(&900)),
        tags: (0..8).map(|tag| format!("tag-{tag}")).collect(),
    }
}

#[cached_api(key = "{id}", ttl = "1h")]
fn profile(id: u64) -> Profile {
    make(id)
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux: /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .expect("statm's second field");
    pages * 4096
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .map(|arg| arg.parse::<u64>().expect("a number"));
    let budget_mib = args.next().unwrap_or(256);
    let count = args.next().unwrap_or(1_000_000);
    BIO.set(args.next().map_or(900, |bio| bio as usize))
        .unwrap();
    let budget = budget_mib << 20;
    cached_api::set_global(Cache::builder().memory_max_bytes(budget).build().unwrap()).unwrap();
    // Warm the allocator and the function's first call before measuring.
    profile(u64::MAX);
    let before = resident_bytes();
    for id in 0..count {
        profile(id);
    }
    let after = resident_bytes();
    let encoded = bincode::serde::encode_to_vec(make(count / 2), bincode::config::standard())
        .unwrap()
        .len();
    let probes = 1_000;
    let hits_before = cached_api::stats().total.hits;
    for probe in 0..probes {
        profile(probe * count / probes);
    }
    let hits = cached_api::stats().total.hits - hits_before;
    let kept = hits * count / probes;
    let growth = after.saturating_sub(before);
    println!(
        "budget {budget_mib} MiB, {count} distinct entries of {encoded} encoded bytes: resident growth {:.0} MiB = {:.2}x the budget; {hits} of {probes} evenly spread keys hit, so about {kept} entries kept, {:.0} resident bytes each",
        growth as f64 / f64::from(1 << 20),
        growth as f64 / budget as f64,
        growth as f64 / kept.max(1) as f64,
    );
}
