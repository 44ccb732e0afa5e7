//! Production Redis on one node: TLS with certificates made at test time,
//! ACL users, and passwords that never reach an error, a log line, `Debug`
//! output or the stats. Each scenario runs in a child process whose cache
//! comes from the environment, as a service's would.

mod behaviour;
mod support;

use behaviour::*;
use support::logs::{capture_logs, logs};
use support::tls::Certificates;
use support::{RedisServer, free_port, is_child, run_in_child};

/// Calls of one entry until one stored its value, then one more, which
/// must be a hit; then an invalidation: the store works. The first calls
/// may fail open while a connection's TLS handshake outlasts the operation
/// timeout (a debug build on a loaded machine): what is tested is that
/// entries are stored and served, not how fast the first connection opens.
fn caches() {
    let user = unique("works");
    let sets = || cached_api::stats().total.sets;
    run({
        let user = user.clone();
        async move {
            let before = sets();
            keep_calling_until(
                || sets() > before,
                || async {
                    profile(user.clone(), 1).await.unwrap();
                },
            )
            .await;
            let computed = profile_runs(&user, 1);
            profile(user.clone(), 1).await.unwrap();
            assert_eq!(profile_runs(&user, 1), computed, "the next call is a hit");
            cached_api::invalidate_user(&user)
                .await
                .expect("invalidation succeeds");
        }
    });
    // Sync calls use pooled connections of their own.
    let before = sets();
    wait_until_blocking(|| {
        assert_eq!(profile_sync(&user, 2), "v1:2");
        sets() > before
    });
    let computed = runs(&format!("sync/{user}/2"));
    assert_eq!(profile_sync(&user, 2), "v1:2");
    assert_eq!(
        runs(&format!("sync/{user}/2")),
        computed,
        "sync calls hit too"
    );
}

/// Every call answers by running the function; invalidations say they failed.
fn fails_open() -> cached_api::Error {
    let user = unique("open");
    let error = run_returning({
        let user = user.clone();
        async move {
            for _ in 0..10 {
                assert_eq!(profile(user.clone(), 1).await.unwrap().user, user);
            }
            assert_eq!(profile_runs(&user, 1), 10, "every call ran the function");
            cached_api::invalidate_user(&user).await.unwrap_err()
        }
    });
    assert_eq!(profile_sync(&user, 2), "v1:2");
    assert!(cached_api::blocking::invalidate_user(&user).is_err());
    error
}

#[test]
fn tls_with_a_private_ca_caches() {
    if is_child() {
        caches();
        return;
    }
    let certificates = Certificates::new("trusted");
    let server = certificates.start_server();
    run_in_child(
        "tls_with_a_private_ca_caches",
        &[
            ("CACHED_API_REDIS_URL", &server.tls_url()),
            (
                "CACHED_API_REDIS_CA_FILE",
                certificates.ca().to_str().unwrap(),
            ),
        ],
    );
}

#[test]
fn tls_with_an_untrusted_certificate_fails_open_and_says_why() {
    if is_child() {
        capture_logs();
        fails_open();
        let logs = logs();
        assert!(
            logs.contains("certificate") || logs.contains("UnknownIssuer"),
            "the log says the certificate is not trusted:\n{logs}"
        );
        return;
    }
    let served = Certificates::new("served");
    let other = Certificates::new("other");
    let server = served.start_server();
    run_in_child(
        "tls_with_an_untrusted_certificate_fails_open_and_says_why",
        &[
            ("CACHED_API_REDIS_URL", &server.tls_url()),
            ("CACHED_API_REDIS_CA_FILE", other.ca().to_str().unwrap()),
        ],
    );
}

const PASSWORD: &str = "s3cret-4c1d";
const WRONG_PASSWORD: &str = "not-the-password-8d1f";

/// A server whose only user is `app`, with [`PASSWORD`].
fn acl_server() -> RedisServer {
    let rule = format!(">{PASSWORD}");
    RedisServer::start_with(
        free_port(),
        &[
            "--user", "default", "off", "--user", "app", "on", &rule, "~*", "&*", "+@all",
        ],
    )
}

fn url_with_password(server: &RedisServer, password: &str) -> String {
    format!("redis://app:{password}@127.0.0.1:{}/", server.port())
}

#[test]
fn an_acl_user_caches() {
    if is_child() {
        caches();
        return;
    }
    let server = acl_server();
    run_in_child(
        "an_acl_user_caches",
        &[(
            "CACHED_API_REDIS_URL",
            &url_with_password(&server, PASSWORD),
        )],
    );
}

#[test]
fn a_wrong_password_is_one_error_fails_open_and_never_leaks() {
    if is_child() {
        capture_logs();
        let error = fails_open();
        let error = error.to_string();
        assert!(!error.contains(WRONG_PASSWORD), "{error}");
        let debug = format!("{:?}", cached_api::Cache::from_env().unwrap());
        assert!(!debug.contains(WRONG_PASSWORD), "{debug}");
        let stats = serde_json::to_string(&cached_api::stats()).unwrap();
        assert!(!stats.contains(WRONG_PASSWORD), "{stats}");
        let logs = logs();
        assert!(
            !logs.contains(WRONG_PASSWORD),
            "the password is in the log:\n{logs}"
        );
        let refusals = logs.matches("redis refuses this client").count();
        assert_eq!(refusals, 1, "one clear error, not one per call:\n{logs}");
        assert!(
            !logs.contains("the store failed; calls run"),
            "the refusal is not also an outage's warning:\n{logs}"
        );
        let warnings = logs.lines().filter(|line| line.contains(" WARN ")).count();
        assert!(warnings < 10, "fewer warnings than calls:\n{logs}");
        return;
    }
    let server = acl_server();
    run_in_child(
        "a_wrong_password_is_one_error_fails_open_and_never_leaks",
        &[(
            "CACHED_API_REDIS_URL",
            &url_with_password(&server, WRONG_PASSWORD),
        )],
    );
}

#[test]
fn a_malformed_url_is_a_build_error_without_its_password() {
    for url in [
        format!("redis://app:{PASSWORD}@[::1"),
        format!("http://app:{PASSWORD}@cache:6379"),
        format!("redis+cluster://app:{PASSWORD}@"),
    ] {
        let error = cached_api::Cache::builder()
            .redis_url(&url)
            .build()
            .unwrap_err()
            .to_string();
        assert!(error.contains("redis_url"), "{error}");
        assert!(!error.contains(PASSWORD), "the password leaked: {error}");
        assert!(
            error.contains("app:***@"),
            "the URL is shown redacted: {error}"
        );
    }
}
