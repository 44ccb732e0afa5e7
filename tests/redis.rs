//! The behaviour suite on a real redis-server, plus what only Redis shows:
//! TTLs, bytes planted by hand, a second process sharing entries.

mod behaviour;
mod support;

use behaviour::*;

use std::sync::LazyLock;

use redis::Commands;
use support::RedisServer;

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);

struct Redis;

impl StoreUnderTest for Redis {
    fn install() {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            if !support::is_child() {
                let cache = cached_api::Cache::builder()
                    .redis_url(SERVER.url())
                    .prefix("t")
                    .max_value_size(behaviour::MAX_VALUE_SIZE)
                    .build()
                    .unwrap();
                cached_api::set_global(cache).unwrap();
            }
        });
    }
}

behaviour_tests!(Redis);

/// Entries written together, each living 900 to 1000 s.
#[cached_api::cached_api(key = "{id}", ttl = 1000, jitter = "10%", name = "redis::jittered")]
fn jittered(id: u32) -> u32 {
    id
}

#[test]
fn jitter_spreads_the_expiry_of_entries_written_together() {
    Redis::install();
    for id in 0..1_000 {
        assert_eq!(jittered(id), id);
    }
    let mut connection = SERVER.connection();
    let keys: Vec<String> = connection.keys("t:redis%3A%3Ajittered:v0:s*:g:*").unwrap();
    assert_eq!(keys.len(), 1_000);
    let mut pttls: Vec<i64> = keys
        .iter()
        .map(|key| redis::cmd("PTTL").arg(key).query(&mut connection).unwrap())
        .collect();
    pttls.sort_unstable();
    let (shortest, longest) = (pttls[0], pttls[pttls.len() - 1]);
    eprintln!("jitter: PTTL of 1000 entries from {shortest} to {longest} ms");
    assert!(
        shortest > 890_000 && longest <= 1_000_000,
        "{shortest}..{longest}"
    );
    // Uniform over 100 s: 1000 draws spread over far more than half of it.
    assert!(longest - shortest > 50_000, "{shortest}..{longest}");
}

/// The one entry key of `user` (there is one when the test made one).
fn entry_key_of(connection: &mut redis::Connection, user: &str) -> String {
    let keys: Vec<String> = connection
        .keys(format!("t:*:v0:s*:{{u:{user}}}:*"))
        .unwrap();
    assert_eq!(keys.len(), 1, "one entry for {user}: {keys:?}");
    keys.into_iter().next().unwrap()
}

#[test]
fn entries_carry_their_ttl_set_with_the_value() {
    Redis::install();
    run(async {
        let user = unique("ttl");
        profile(user.clone(), 1).await.unwrap();
        let mut connection = SERVER.connection();
        let key = entry_key_of(&mut connection, &user);
        assert!(key.starts_with("t:"), "{key}");
        assert!(key.contains(&format!("{{u:{user}}}:profile:1")), "{key}");
        let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut connection).unwrap();
        assert!(pttl > 0 && pttl <= 15 * 60 * 1000, "PTTL {pttl}");
        let generation_ttl: i64 = redis::cmd("PTTL")
            .arg(format!("t:gen:{{u:{user}}}"))
            .query(&mut connection)
            .unwrap();
        assert!(
            generation_ttl > 0,
            "the generation expires too: {generation_ttl}"
        );
    });
}

#[test]
fn planted_bytes_are_a_miss_then_overwritten() {
    Redis::install();
    run(async {
        let user = unique("corrupt");
        profile(user.clone(), 1).await.unwrap();
        let mut connection = SERVER.connection();
        let key = entry_key_of(&mut connection, &user);
        let valid: Vec<u8> = connection.get(&key).unwrap();
        let with_byte = |at: usize, value: u8| {
            let mut bytes = valid.clone();
            bytes[at] ^= value;
            bytes
        };
        let planted: [(&str, Vec<u8>); 7] = [
            ("foreign bytes", b"not an envelope".to_vec()),
            ("a truncated header", valid[..4].to_vec()),
            ("a truncated payload", valid[..valid.len() - 1].to_vec()),
            ("nothing", Vec::new()),
            ("another format", with_byte(1, 0x7F)),
            ("an older version of the function", with_byte(10, 1)),
            ("another stored type", with_byte(14, 1)),
        ];
        for (what, planted) in planted {
            let _: () = connection.set(&key, &planted).unwrap();
            let before = profile_runs(&user, 1);
            assert_eq!(profile(user.clone(), 1).await.unwrap().user, user);
            assert_eq!(
                profile_runs(&user, 1),
                before + 1,
                "planted bytes are a miss"
            );
            let stored: Vec<u8> = connection.get(&key).unwrap();
            assert_eq!(stored.len(), valid.len(), "the miss rewrote {what}");
            profile(user.clone(), 1).await.unwrap();
            assert_eq!(
                profile_runs(&user, 1),
                before + 1,
                "and the next call hits it"
            );
        }
    });
}

#[test]
fn an_evicted_generation_never_resurrects_entries() {
    Redis::install();
    run(async {
        let user = unique("evicted");
        profile(user.clone(), 1).await.unwrap();
        let mut connection = SERVER.connection();
        let _: () = connection.del(format!("t:gen:{{u:{user}}}")).unwrap();
        profile(user.clone(), 1).await.unwrap();
        assert_eq!(
            profile_runs(&user, 1),
            2,
            "without its generation the entry is a miss"
        );
        profile(user.clone(), 1).await.unwrap();
        assert_eq!(profile_runs(&user, 1), 2, "the rewritten entry is served");
    });
}

#[test]
fn a_second_process_sees_the_entries_of_the_first() {
    Redis::install();
    if support::is_child() {
        run(async {
            let user = std::env::var("SHARED_USER").unwrap();
            let shared = profile(user.clone(), 1).await.unwrap();
            assert_eq!(shared.value, "written by the parent");
            assert_eq!(
                profile_runs(&user, 1),
                0,
                "the child must hit the parent's entry"
            );
        });
        return;
    }
    let user = unique("shared");
    set_source(&user, "written by the parent");
    run({
        let user = user.clone();
        async move {
            profile(user, 1).await.unwrap();
        }
    });
    support::run_in_child(
        "a_second_process_sees_the_entries_of_the_first",
        &[
            ("CACHED_API_REDIS_URL", &SERVER.url()),
            ("CACHED_API_PREFIX", "t"),
            ("SHARED_USER", &user),
        ],
    );
}

static REFRESHED_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Takes 20 ms to compute, lives 1 s, and is recomputed ahead of expiry.
#[cached_api::cached_api(key = "hot", ttl = 1, refresh = 5.0, name = "redis::refreshed")]
fn refreshed() -> u32 {
    std::thread::sleep(std::time::Duration::from_millis(20));
    REFRESHED_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
}

#[test]
fn refresh_ahead_recomputes_a_hot_entry_before_it_expires() {
    use std::time::{Duration, Instant};
    Redis::install();
    refreshed();
    // Steady load across three TTL windows.
    let deadline = Instant::now() + Duration::from_millis(3_200);
    while Instant::now() < deadline {
        refreshed();
    }
    let counts = cached_api::stats().function("redis::refreshed");
    eprintln!("refresh-ahead over 3 TTL windows: {counts:?}");
    assert_eq!(
        counts.misses, 1,
        "after warm-up no caller saw a miss: {counts:?}"
    );
    assert!(
        counts.refreshes >= 3,
        "recomputed ahead in every window: {counts:?}"
    );
    assert!(
        counts.refreshes * 100 < counts.hits,
        "early recomputations are rare: {counts:?}"
    );
}

/// A token that says how long it is valid, as an OAuth token does.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Token {
    id: u32,
    expires_in_secs: u64,
}

fn token_ttl(token: &Token) -> std::time::Duration {
    std::time::Duration::from_secs(token.expires_in_secs)
}

#[cached_api::cached_api(key = "{id}", ttl = token_ttl, name = "redis::token")]
fn token(id: u32, expires_in_secs: u64) -> Token {
    Token {
        id,
        expires_in_secs,
    }
}

#[test]
fn a_ttl_from_the_value_is_the_entry_s_ttl_in_redis() {
    Redis::install();
    let mut connection = SERVER.connection();
    let pttl = |connection: &mut redis::Connection, id: u32| -> Option<i64> {
        let keys: Vec<String> = connection
            .keys(format!("t:redis%3A%3Atoken:v0:s*:g:{id}"))
            .unwrap();
        let key = keys.first()?;
        Some(redis::cmd("PTTL").arg(key).query(connection).unwrap())
    };
    for (id, secs) in [(1, 90), (2, 86_400)] {
        token(id, secs);
        let pttl = pttl(&mut connection, id).expect("stored");
        assert!(
            pttl > (secs as i64 - 5) * 1000 && pttl <= secs as i64 * 1000,
            "{id}: PTTL {pttl} for {secs} s"
        );
    }
    token(3, 0);
    assert_eq!(
        pttl(&mut connection, 3),
        None,
        "a TTL of zero stores nothing"
    );
    token(4, 300 * 365 * 86_400);
    let capped = pttl(&mut connection, 4).expect("stored");
    assert!(
        capped <= 100 * 365 * 86_400 * 1000 && capped > 99 * 365 * 86_400 * 1000,
        "capped at 100 years: {capped}"
    );
}
