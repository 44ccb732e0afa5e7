//! Redis failing under the cache: calls still answer correctly (fail open),
//! invalidations say they failed. The server is a real redis-server that
//! the test kills; the second test starts with nothing listening at all.

mod behaviour;
mod support;

use std::sync::Mutex;
use std::time::Duration;

use support::RedisServer;

static SERVER: Mutex<Option<RedisServer>> = Mutex::new(None);

fn setup() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if support::is_child() {
            return;
        }
        let server = RedisServer::start();
        let cache = cached_api::Cache::builder()
            .redis_url(server.url())
            .prefix("f")
            .op_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        cached_api::set_global(cache).unwrap();
        *SERVER.lock().unwrap() = Some(server);
    });
}

use behaviour::*;

#[test]
fn a_killed_server_fails_open_and_invalidation_reports_it() {
    setup();
    let user = unique("killed");
    run({
        let user = user.clone();
        async move {
            profile(user.clone(), 1).await.unwrap();
            profile(user.clone(), 1).await.unwrap();
            assert_eq!(profile_runs(&user, 1), 1, "cached while Redis is up");
        }
    });
    assert_eq!(profile_sync(&user, 1), "v1:1");

    SERVER.lock().unwrap().take().expect("the server").kill();
    let errors_before = cached_api::stats().total.errors;

    run({
        let user = user.clone();
        async move {
            set_source(&user, "v2");
            for round in 1..=3 {
                let answer = profile(user.clone(), 1)
                    .await
                    .expect("the call itself never fails");
                assert_eq!(
                    answer.value, "v2",
                    "round {round}: the function ran and answered"
                );
            }
            assert_eq!(profile_runs(&user, 1), 4, "every call ran the function");
            let error = cached_api::invalidate_user(&user).await.unwrap_err();
            assert!(error.to_string().contains("redis"), "{error}");
        }
    });
    assert_eq!(profile_sync(&user, 1), "v2:1");
    assert_eq!(profile_sync(&user, 2), "v2:2");
    assert!(cached_api::blocking::invalidate_user(&user).is_err());

    let stats = cached_api::stats();
    assert!(
        stats.total.errors >= errors_before + 7,
        "each failed read and invalidation is counted: {:?}",
        stats.total
    );
}

#[test]
fn a_server_that_was_never_there_fails_open_from_the_start() {
    if !support::is_child() {
        // A port that was free a moment ago: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}/");
        support::run_in_child(
            "a_server_that_was_never_there_fails_open_from_the_start",
            &[("CACHED_API_REDIS_URL", &url)],
        );
        return;
    }
    run(async {
        let user = unique("absent");
        for _ in 0..3 {
            assert_eq!(profile(user.clone(), 1).await.unwrap().user, user);
        }
        assert_eq!(profile_runs(&user, 1), 3);
        assert!(cached_api::invalidate_user(&user).await.is_err());
        assert!(cached_api::stats().total.errors >= 4);
    });
    assert_eq!(profile_sync("absent-sync", 1), "v1:1");
    assert!(cached_api::blocking::invalidate_user(&"absent-sync").is_err());
}
