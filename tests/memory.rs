//! The behaviour suite on the embedded store, plus what only it can show.

mod behaviour;
mod support;

use behaviour::*;

struct Memory;

impl StoreUnderTest for Memory {
    fn install() {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            if !support::is_child() {
                let cache = cached_api::Cache::builder()
                    .prefix("mem")
                    .max_value_size(behaviour::MAX_VALUE_SIZE)
                    .build()
                    .unwrap();
                cached_api::set_global(cache).unwrap();
            }
        });
    }
}

behaviour_tests!(Memory);

#[test]
fn the_kill_switch_runs_every_call() {
    if !support::is_child() {
        for spelling in ["1", "true", "YES", "On"] {
            support::run_in_child(
                "the_kill_switch_runs_every_call",
                &[("CACHED_API_DISABLED", spelling)],
            );
        }
        return;
    }
    run(async {
        let user = unique("disabled");
        for _ in 0..3 {
            profile(user.clone(), 1).await.unwrap();
        }
        assert_eq!(
            profile_runs(&user, 1),
            3,
            "a disabled cache must run every call"
        );
        cached_api::invalidate_user(&user).await.unwrap();
        cached_api::status().expect("switched off on purpose, not misconfigured");
    });
}

/// A value that is no switch is not read as on or off: `from_env` refuses
/// it, and the process-wide cache runs every call, as for any malformed
/// setting.
#[test]
fn a_kill_switch_that_is_no_switch_is_refused() {
    if !support::is_child() {
        support::run_in_child(
            "a_kill_switch_that_is_no_switch_is_refused",
            &[("CACHED_API_DISABLED", "maybe")],
        );
        return;
    }
    let error = cached_api::Cache::from_env().unwrap_err().to_string();
    assert!(error.contains("CACHED_API_DISABLED"), "{error}");
    run(async {
        let user = unique("no-switch");
        for _ in 0..3 {
            profile(user.clone(), 1).await.unwrap();
        }
        assert_eq!(profile_runs(&user, 1), 3, "caching is off");
    });
}

#[test]
fn a_malformed_environment_disables_caching_instead_of_failing() {
    if !support::is_child() {
        support::run_in_child(
            "a_malformed_environment_disables_caching_instead_of_failing",
            &[("CACHED_API_DEFAULT_TTL", "15 min")],
        );
        return;
    }
    run(async {
        let user = unique("bad-env");
        assert_eq!(profile(user.clone(), 1).await.unwrap().user, user);
        assert_eq!(profile(user.clone(), 1).await.unwrap().user, user);
        assert_eq!(profile_runs(&user, 1), 2);
        // Invalidations would reach no store while other processes keep
        // serving: each is an error that names the problem, never `Ok`.
        let refused = [
            cached_api::invalidate_user(&user).await,
            cached_api::invalidate_function("behaviour::label").await,
            cached_api::blocking::invalidate_user(&user),
            behaviour::forget_label("x"),
        ];
        for result in refused {
            let error = result.unwrap_err().to_string();
            assert!(
                error.contains("CACHED_API_DEFAULT_TTL")
                    && error.contains("nothing was invalidated"),
                "{error}"
            );
        }
        let error = cached_api::status().unwrap_err().to_string();
        assert!(error.contains("environment is invalid"), "{error}");
    });
}

static SEARCHES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A query of tags: a map, serialized into the key as a digest.
#[cached_api::cached_api(key = "{tags}", ttl = "1h")]
fn search(tags: std::collections::HashMap<String, u32>) -> usize {
    SEARCHES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tags.len()
}

#[test]
fn equal_maps_share_one_entry_whatever_their_order() {
    Memory::install();
    let pairs: Vec<(String, u32)> = (0..16).map(|i| (format!("tag{i}"), i)).collect();
    for round in 0..5 {
        let mut tags = std::collections::HashMap::with_capacity(round * 100);
        if round % 2 == 0 {
            tags.extend(pairs.iter().cloned());
        } else {
            tags.extend(pairs.iter().rev().cloned());
        }
        assert_eq!(search(tags), 16);
    }
    assert_eq!(
        SEARCHES.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "five equal maps, one computation"
    );
}

/// A companion's invalidation is counted for its function, and once in
/// the total.
#[test]
fn a_companion_s_invalidation_is_counted_for_its_function() {
    Memory::install();
    let before = cached_api::stats();
    label("counted-companion");
    forget_label("counted-companion").unwrap();
    let after = cached_api::stats();
    let of = |stats: &cached_api::Stats| stats.function("behaviour::label").invalidations;
    // Other tests of this binary may drop labels too, never fewer.
    assert!(
        of(&after) > of(&before),
        "{} -> {}",
        of(&before),
        of(&after)
    );
    assert!(after.total.invalidations > before.total.invalidations);
}

/// A hot function whose values are too large logs that once, then counts.
#[test]
fn an_oversized_value_is_logged_once_per_function() {
    if !support::is_child() {
        support::run_in_child("an_oversized_value_is_logged_once_per_function", &[]);
        return;
    }
    support::logs::capture_logs();
    let cache = cached_api::Cache::builder()
        .max_value_size(behaviour::MAX_VALUE_SIZE)
        .build()
        .unwrap();
    cached_api::set_global(cache).unwrap();
    let user = unique("oversized");
    for _ in 0..3 {
        assert_eq!(sized(&user, 100_000).len(), 100_000);
    }
    let logs = support::logs::logs();
    let said = |level: &str| {
        logs.lines()
            .filter(|line| line.contains(level) && line.contains("value too large to cache"))
            .count()
    };
    assert_eq!((said("WARN"), said("DEBUG")), (1, 2), "{logs}");
    let counted = cached_api::stats().function("behaviour::sized").oversized;
    assert_eq!(counted, 3);
}

/// Keys and users are logged at TRACE only: each lookup names its entry and
/// its user's generation in one line at TRACE, and no line above it does.
#[test]
fn keys_and_users_appear_at_trace_level_only() {
    if !support::is_child() {
        support::run_in_child("keys_and_users_appear_at_trace_level_only", &[]);
        return;
    }
    support::logs::capture_logs_down_to(tracing::Level::TRACE);
    cached_api::set_global(cached_api::Cache::builder().build().unwrap()).unwrap();
    let user = unique("traced");
    for _ in 0..2 {
        assert_eq!(sized(&user, 10).len(), 10);
    }
    let logs = support::logs::logs();
    let naming: Vec<&str> = logs.lines().filter(|line| line.contains(&user)).collect();
    let lookups = naming.iter().filter(|line| line.contains("lookup")).count();
    assert_eq!(lookups, 2, "one line per lookup: {logs}");
    assert!(
        naming.iter().all(|line| line.contains("TRACE")),
        "{naming:#?}"
    );
}

#[test]
fn build_rejects_bad_settings_with_a_clear_error() {
    let error = cached_api::Cache::builder()
        .redis_url("http://not-redis")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("redis_url"), "{error}");
    let error = cached_api::Cache::builder()
        .prefix("a{b}")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("hash tags"), "{error}");
    let error = cached_api::Cache::builder()
        .default_ttl(std::time::Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("default_ttl"), "{error}");
}

#[test]
fn set_global_twice_is_an_error() {
    Memory::install();
    let again = cached_api::set_global(cached_api::Cache::builder().build().unwrap());
    assert!(matches!(again, Err(cached_api::Error::GlobalAlreadySet)));
}

/// Counts how often it is decoded and copied.
#[derive(serde::Serialize)]
struct Counted(u32);

static DECODED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static COPIED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl<'de> serde::Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        DECODED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        u32::deserialize(deserializer).map(Counted)
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        COPIED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Counted(self.0)
    }
}

#[cached_api::cached_api(key = "{id}", name = "memory::counted")]
fn counted(id: u32) -> Counted {
    Counted(id)
}

#[test]
fn a_hit_on_the_embedded_store_copies_the_kept_value_instead_of_decoding() {
    use std::sync::atomic::Ordering::SeqCst;
    Memory::install();
    assert_eq!(counted(7).0, 7);
    let (decoded, copied) = (DECODED.load(SeqCst), COPIED.load(SeqCst));
    for _ in 0..3 {
        assert_eq!(counted(7).0, 7);
    }
    assert_eq!(DECODED.load(SeqCst), decoded, "no hit decoded bytes");
    assert_eq!(
        COPIED.load(SeqCst),
        copied + 3,
        "each hit copied the kept value"
    );
}

/// A cache of its own, named by `cache = …`.
static REGION: std::sync::LazyLock<cached_api::Cache> = std::sync::LazyLock::new(|| {
    cached_api::Cache::builder()
        .prefix("region")
        .build()
        .unwrap()
});

static REGION_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cached_api::cached_api(key = "{id}", ttl = "1m", cache = REGION, invalidate = forget_in_region, name = "memory::in_region")]
fn in_region(id: u64) -> u64 {
    // Only the id its test reads: other tests call it too.
    if id == 7 {
        REGION_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    id
}

/// `cache = …` routes a function, and its companion, to that cache: its
/// stats are that cache's, and the process-wide cache never sees it.
#[test]
fn a_function_with_a_cache_of_its_own_uses_it_and_only_it() {
    Memory::install();
    let runs = || REGION_RUNS.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(in_region(7), 7);
    assert_eq!(in_region(7), 7);
    assert_eq!(runs(), 1, "the second call hit");
    let counted = REGION.stats().function("memory::in_region");
    assert_eq!((counted.hits, counted.misses, counted.sets), (1, 1, 1));
    assert_eq!(
        cached_api::stats().function("memory::in_region"),
        cached_api::Counts::default(),
        "the process-wide cache never saw it"
    );
    forget_in_region(7).unwrap();
    assert_eq!(in_region(7), 7);
    assert_eq!(runs(), 2, "its companion dropped the entry in its cache");
    assert_eq!(
        REGION.stats().function("memory::in_region").invalidations,
        1
    );
    // The process-wide cache's invalidations do not reach it.
    cached_api::blocking::invalidate_function("memory::in_region").unwrap();
    assert_eq!(in_region(7), 7);
    assert_eq!(runs(), 2);
}

static SCOPED_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cached_api::cached_api(key = "{id}", ttl = "1m", name = "memory::scoped")]
async fn scoped(id: u64) -> u32 {
    SCOPED_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
}

#[cached_api::cached_api(key = "{id}", ttl = "1m", name = "memory::scoped_sync")]
fn scoped_sync(id: u64) -> u64 {
    id
}

fn current_thread<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A cache of its own, on a clock the test moves.
fn clocked() -> (cached_api::Clock, cached_api::Cache) {
    let clock = cached_api::Clock::default();
    let cache = cached_api::Cache::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    (clock, cache)
}

fn isolated() -> cached_api::Cache {
    cached_api::Cache::builder().build().unwrap()
}

/// Two scopes joined on one task each use their own cache: the same call
/// misses once in each, and neither is seen by the other or the
/// process-wide cache.
#[test]
fn concurrent_scopes_on_one_task_each_use_their_own_cache() {
    Memory::install();
    let (a, b) = (isolated(), isolated());
    let global_before = cached_api::stats().function("memory::scoped");
    current_thread(async {
        let twice = || async {
            let first = scoped(1).await;
            tokio::task::yield_now().await;
            (first, scoped(1).await)
        };
        let ((a1, a2), (b1, b2)) = tokio::join!(a.scope(twice()), b.scope(twice()));
        assert_eq!(a1, a2, "a's second call hit a's entry");
        assert_eq!(b1, b2, "b's second call hit b's entry");
        assert_ne!(a1, b1, "each scope computed its own");
    });
    for cache in [&a, &b] {
        let counted = cache.stats().function("memory::scoped");
        assert_eq!((counted.misses, counted.hits), (1, 1));
    }
    assert_eq!(
        cached_api::stats().function("memory::scoped"),
        global_before,
        "the process-wide cache saw none of them"
    );
}

/// A sync scope covers the calls of its closure on this thread, overrides a
/// function's `cache = …`, and ends with the closure, even by a panic.
#[test]
fn a_blocking_scope_covers_its_thread_and_overrides_a_named_cache() {
    Memory::install();
    let scoped_cache = isolated();
    let region_before = REGION.stats().function("memory::in_region");
    scoped_cache.scope_blocking(|| {
        scoped_sync(5);
        scoped_sync(5);
        in_region(99);
    });
    assert_eq!(scoped_cache.stats().function("memory::scoped_sync").hits, 1);
    assert_eq!(scoped_cache.stats().function("memory::in_region").misses, 1);
    assert_eq!(
        REGION.stats().function("memory::in_region"),
        region_before,
        "the scope overrides `cache = REGION`"
    );
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scoped_cache.scope_blocking(|| panic!("inside"))
    }));
    assert!(panicked.is_err());
    scoped_sync(6);
    assert_eq!(
        scoped_cache.stats().function("memory::scoped_sync").misses,
        1,
        "the scope ended with its closure"
    );
}

/// A task spawned inside a scope does not inherit it (tokio's task-locals
/// stay with their task): it uses the process-wide cache unless scoped too.
#[test]
fn a_task_spawned_in_a_scope_uses_its_own_scope_or_the_process_wide_cache() {
    Memory::install();
    let scoped_cache = isolated();
    current_thread(scoped_cache.scope(async {
        tokio::spawn(async { scoped(40).await }).await.unwrap();
        let inner = isolated();
        tokio::spawn(inner.scope(async { scoped(41).await }))
            .await
            .unwrap();
        assert_eq!(inner.stats().function("memory::scoped").misses, 1);
    }));
    assert_eq!(scoped_cache.stats().function("memory::scoped").misses, 0);
}

/// The README's "Testing code that caches", as written there: a scoped
/// cache per test, its stats per function, and expiry by moving its clock.
#[test]
fn a_test_scopes_its_own_cache_and_moves_its_clock() {
    Memory::install();
    let (clock, cache) = clocked();
    current_thread(cache.scope(async {
        scoped(70).await;
        scoped(70).await;
        let counted = cache.stats().function("memory::scoped");
        assert_eq!((counted.misses, counted.hits), (1, 1));
        clock.advance(std::time::Duration::from_secs(60));
        scoped(70).await;
        assert_eq!(
            cache.stats().function("memory::scoped").misses,
            2,
            "expired"
        );
    }));
}

static TAGGED_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cached_api::cached_api(key = "{id}", ttl = "1m", tags = ["scoped:{id}"], name = "memory::scoped_tagged")]
async fn scoped_tagged(id: u64) -> u32 {
    TAGGED_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
}

/// A handler under test calls the free invalidations: in a scope they drop
/// what the scope's cache holds, not the process-wide cache's entries.
#[test]
fn free_invalidations_in_a_scope_act_on_the_scope_s_cache() {
    Memory::install();
    let outside = current_thread(scoped_tagged(41));
    let scoped_cache = isolated();
    current_thread(scoped_cache.scope(async {
        let first = scoped_tagged(41).await;
        assert_eq!(scoped_tagged(41).await, first, "cached in the scope");
        cached_api::invalidate_tag("scoped:41").await.unwrap();
        assert_ne!(scoped_tagged(41).await, first, "dropped in the scope");
    }));
    let drops = scoped_cache.stats().total.invalidations;
    assert_eq!(drops, 1, "counted by the scope's cache");
    scoped_cache.scope_blocking(|| {
        cached_api::blocking::invalidate_function("memory::scoped_tagged").unwrap();
    });
    assert_eq!(scoped_cache.stats().total.invalidations, 2);
    assert_eq!(
        current_thread(scoped_tagged(41)),
        outside,
        "the process-wide cache kept its entry"
    );
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Session {
    id: u64,
    valid_for_secs: u64,
}

fn session_ttl(session: &Session) -> std::time::Duration {
    std::time::Duration::from_secs(session.valid_for_secs)
}

static SESSION_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Sessions valid for as long as they say (the TTL function takes the `Ok`
/// value); `stale` extends each one's own TTL.
#[cached_api::cached_api(key = "{id}", ttl = session_ttl, stale = "1m", name = "memory::session")]
async fn session(id: u64, valid_for_secs: u64) -> Result<Session, String> {
    SESSION_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(Session { id, valid_for_secs })
}

/// Each value lives as long as its TTL says: a short one expires while a
/// long one written at the same time is still a hit; zero stores nothing.
#[test]
fn each_value_lives_as_long_as_its_ttl_function_says() {
    Memory::install();
    let (clock, cache) = clocked();
    let runs = || SESSION_RUNS.load(std::sync::atomic::Ordering::SeqCst);
    current_thread(cache.scope(async {
        session(1, 10).await.unwrap();
        session(2, 1_000).await.unwrap();
        session(3, 0).await.unwrap();
        let before = runs();
        session(1, 10).await.unwrap();
        session(2, 1_000).await.unwrap();
        assert_eq!(runs(), before, "both cached");
        session(3, 0).await.unwrap();
        assert_eq!(runs(), before + 1, "a TTL of zero is not stored");
        // Past the short TTL and its stale window: a miss; the long one hits.
        clock.advance(std::time::Duration::from_secs(10 + 61));
        session(1, 10).await.unwrap();
        session(2, 1_000).await.unwrap();
        assert_eq!(runs(), before + 2, "only the short-lived entry expired");
        let counted = cache.stats().function("memory::session");
        assert_eq!((counted.hits, counted.misses), (3, 5), "{counted:?}");
    }));
}

fn short_ttl(_: &axum::Json<u64>) -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

#[cached_api::cached_api(key = "{id}", ttl = short_ttl, http = true, max_age = "1m", name = "memory::kept_by_clients")]
async fn kept_by_clients(id: u64) -> axum::Json<u64> {
    axum::Json(id)
}

/// A client may keep an answer for `max_age`, and never longer than its
/// entry lives.
#[test]
fn max_age_is_capped_by_the_entry_s_ttl() {
    use axum::response::IntoResponse;
    Memory::install();
    let response = current_thread(isolated().scope(kept_by_clients(Default::default(), 3)));
    let response = response.into_response();
    assert_eq!(response.headers()["cache-control"], "public, max-age=10");
    assert!(response.headers().contains_key("etag"));
}
