//! Redis failing under the cache: calls still answer correctly (fail open),
//! the circuit breaker stops them paying timeouts, invalidations say they
//! failed, and caching resumes by itself when Redis is back.
//!
//! Each scenario runs in a child process of its own, with its own
//! redis-server and process-wide cache, so that killing or pausing one
//! server disturbs no other test.

mod behaviour;
mod support;

use std::time::Duration;

use behaviour::*;
use support::{RedisServer, in_child};

const OP_TIMEOUT: Duration = Duration::from_millis(200);
/// Long enough that no probe happens while a test counts.
const NO_PROBE: Duration = Duration::from_secs(600);
/// Short, for tests that wait for caching to resume.
const QUICK_PROBE: Duration = Duration::from_millis(100);

/// In the child: a server and the process-wide cache on it.
fn start(cooldown: Duration) -> RedisServer {
    let server = RedisServer::start();
    let cache = cached_api::Cache::builder()
        .redis_url(server.url())
        .prefix("f")
        .op_timeout(OP_TIMEOUT)
        .breaker_cooldown(cooldown)
        .build()
        .unwrap();
    cached_api::set_global(cache).unwrap();
    server
}

fn stats() -> cached_api::Stats {
    cached_api::stats()
}

#[test]
fn a_killed_server_fails_open_and_the_breaker_stops_paying_timeouts() {
    if !in_child("a_killed_server_fails_open_and_the_breaker_stops_paying_timeouts") {
        return;
    }
    let server = start(NO_PROBE);
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

    server.kill();
    let before = stats();
    run({
        let user = user.clone();
        async move {
            set_source(&user, "v2");
            for round in 1..=5 {
                let answer = profile(user.clone(), 1)
                    .await
                    .expect("the call never fails");
                assert_eq!(
                    answer.value, "v2",
                    "round {round}: the function ran and answered"
                );
            }
            assert_eq!(profile_runs(&user, 1), 6, "every call ran the function");
            let error = cached_api::invalidate_user(&user).await.unwrap_err();
            assert!(error.to_string().contains("redis"), "{error}");
        }
    });
    assert_eq!(profile_sync(&user, 1), "v2:1");
    assert_eq!(profile_sync(&user, 2), "v2:2");
    assert!(cached_api::blocking::invalidate_user(&user).is_err());

    let after = stats();
    eprintln!("killed: {:?} {:?}", after.total, after.breaker);
    assert_eq!(after.breaker.opened - before.breaker.opened, 1, "{after:?}");
    assert!(after.breaker.open);
    // Three reads failed and opened the circuit; the next two were turned
    // away without waiting; both invalidations were tried and failed, and
    // the sync reads after the first one did not touch Redis at all: the
    // user's invalidation is pending.
    assert_eq!(after.total.errors - before.total.errors, 3 + 2, "{after:?}");
    assert_eq!(
        after.breaker.short_circuited - before.breaker.short_circuited,
        2,
        "{after:?}"
    );
    assert_eq!(after.pending_invalidations, 1, "{after:?}");
}

#[test]
fn caching_resumes_after_a_kill_and_restart_under_load() {
    if !in_child("caching_resumes_after_a_kill_and_restart_under_load") {
        return;
    }
    let server = start(QUICK_PROBE);
    let port = server.port();
    let load = Load::start((0..16).map(|worker| format!("load-{worker}")).collect());
    run(wait_until(load.progressed(200)));
    assert!(stats().total.hits > 0, "the load is served from Redis");

    let opened = stats().breaker.opened;
    server.kill();
    run(wait_until(move || stats().breaker.opened > opened));
    let skipped = stats().breaker.short_circuited;
    run(wait_until(load.progressed(200)));
    assert!(
        stats().breaker.short_circuited > skipped,
        "while the circuit is open, calls skip the dead server"
    );

    let restarted = RedisServer::start_on(port);
    let hits = stats().total.hits;
    run(wait_until(move || {
        !stats().breaker.open && stats().total.hits > hits + 100
    }));
    let calls = load.finish();
    let after = stats();
    eprintln!(
        "kill and restart under load: {calls} calls, {:?} {:?}",
        after.total, after.breaker
    );
    drop(restarted);
}

/// A server restarted on its port is used from the first probe after the
/// cooldown, for async and sync calls alike: a probe does not fail on what
/// the connection remembers of the outage.
#[test]
fn a_restarted_server_is_used_from_the_first_probe() {
    if !in_child("a_restarted_server_is_used_from_the_first_probe") {
        return;
    }
    let mut server = start(QUICK_PROBE);
    let port = server.port();
    let user = unique("first-probe");
    for sync in [false, true] {
        let call = {
            let user = user.clone();
            move || {
                let user = user.clone();
                async move {
                    if sync {
                        assert_eq!(profile_sync(&user, 1), "v1:1");
                    } else {
                        assert_eq!(profile(user.clone(), 1).await.unwrap().user, user);
                    }
                }
            }
        };
        run(call());
        server.kill();
        run(keep_calling_until(|| stats().breaker.open, call.clone()));
        server = RedisServer::start_on(port);
        let probes = stats().breaker.probes;
        run(keep_calling_until(|| !stats().breaker.open, call.clone()));
        let after = stats().breaker;
        assert_eq!(
            after.probes - probes,
            1,
            "sync {sync}: the first probe after the restart closes the circuit: {after:?}"
        );
        let hits = stats().total.hits;
        run(call());
        run(call());
        assert!(stats().total.hits > hits, "sync {sync}: caching resumed");
    }
}

/// Invalidations are always tried, open circuit or not: an `invalidate =`
/// companion lands, like `invalidate_user`, while the circuit that a kill
/// opened has not yet let a probe through the restarted server.
#[test]
fn with_the_circuit_open_a_companion_is_tried_and_lands() {
    if !in_child("with_the_circuit_open_a_companion_is_tried_and_lands") {
        return;
    }
    let mut server = start(NO_PROBE);
    let port = server.port();
    let tag = unique("companion-open");
    assert_eq!(label(&tag), "v1");
    assert_eq!(label(&tag), "v1");
    assert_eq!(runs(&format!("label/{tag}")), 1, "cached while Redis is up");
    server.kill();
    while !stats().breaker.open {
        label(&tag);
    }
    server = RedisServer::start_on(port);
    assert!(stats().breaker.open, "no call probes within the cooldown");
    forget_label(&tag).expect("a companion is tried with the circuit open, and lands");
    // The restarted server is empty but for what the companion wrote: the
    // tombstone at the entry's key. Its reply also closed the circuit.
    let written: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{tag}*"))
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(!stats().breaker.open);
}

/// An invalidation that fails is retried in the background until it lands,
/// and until then this process never serves what it was meant to drop.
#[test]
fn a_failed_invalidation_is_retried_and_nothing_it_drops_is_served_meanwhile() {
    if !in_child("a_failed_invalidation_is_retried_and_nothing_it_drops_is_served_meanwhile") {
        return;
    }
    let server = start(NO_PROBE);
    let user = unique("retried");
    set_source(&user, "before the write");
    let read = {
        let user = user.clone();
        move || {
            let user = user.clone();
            run_returning(async move { profile(user, 1).await.unwrap().value })
        }
    };
    assert_eq!(read(), "before the write");
    assert_eq!(read(), "before the write");
    assert_eq!(profile_runs(&user, 1), 1, "cached");

    // Redis refuses every write (out of memory) but still answers reads,
    // with the old entry and the old generation: the invalidation fails.
    let mut admin = server.connection();
    let config = |admin: &mut redis::Connection, name: &str, value: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(admin)
            .unwrap();
    };
    config(&mut admin, "maxmemory-policy", "noeviction");
    config(&mut admin, "maxmemory", "1");
    set_source(&user, "after the write");
    let failed = run_returning({
        let user = user.clone();
        async move { cached_api::invalidate_user(&user).await }
    });
    assert!(failed.is_err(), "the caller learns it failed");
    assert_eq!(stats().pending_invalidations, 1);
    for read_number in 0..20 {
        assert_eq!(
            read(),
            "after the write",
            "read {read_number} served a dropped value"
        );
    }

    // Redis takes writes again: the retry lands, then the cache serves the user.
    config(&mut admin, "maxmemory", "0");
    let mut reads = 0;
    while stats().pending_invalidations > 0 {
        assert_eq!(
            read(),
            "after the write",
            "read {reads} served a dropped value"
        );
        reads += 1;
    }
    assert_eq!(stats().retried_invalidations, 1);
    assert_eq!(read(), "after the write");
    let runs = profile_runs(&user, 1);
    assert_eq!(read(), "after the write");
    assert_eq!(
        profile_runs(&user, 1),
        runs,
        "cached again once the retry landed"
    );
    eprintln!("retried invalidation: landed after {reads} more reads, none stale");
}

#[test]
fn a_paused_server_times_out_into_the_function() {
    if !in_child("a_paused_server_times_out_into_the_function") {
        return;
    }
    let server = start(NO_PROBE);
    let user = unique("paused");
    run({
        let user = user.clone();
        async move {
            profile(user.clone(), 1).await.unwrap();
            server.pause();
            for _ in 0..5 {
                assert_eq!(profile(user.clone(), 1).await.unwrap().user, user);
            }
            let after = stats();
            eprintln!("paused: {:?} {:?}", after.total, after.breaker);
            assert!(after.breaker.open, "timeouts open the circuit: {after:?}");
            assert_eq!(after.total.errors, 3, "three timeouts: {after:?}");
            assert_eq!(
                after.breaker.short_circuited, 2,
                "then no more waiting: {after:?}"
            );
            server.resume();
            // An invalidation is always tried; its success closes the circuit.
            cached_api::invalidate_user(&user).await.unwrap();
            assert!(!stats().breaker.open);
            profile(user.clone(), 1).await.unwrap();
            let hits = stats().total.hits;
            profile(user.clone(), 1).await.unwrap();
            assert_eq!(stats().total.hits, hits + 1, "caching resumed");
        }
    });
}

#[test]
fn a_sync_invalidation_after_a_restart_succeeds_despite_stale_pooled_connections() {
    if !in_child("a_sync_invalidation_after_a_restart_succeeds_despite_stale_pooled_connections") {
        return;
    }
    let server = start(NO_PROBE);
    let port = server.port();
    // Four calls whose bodies all end together, so that their writes overlap
    // and leave several connections in the pool.
    let gate = set_gate("pool-0", 4, false);
    for thread in 1..4 {
        share_gate(&format!("pool-{thread}"), "pool-0");
    }
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let gate = &gate;
            scope.spawn(move || {
                gate.start();
                assert_eq!(
                    slow_sync(&format!("pool-{thread}")),
                    format!("computed pool-{thread}")
                );
            });
        }
    });
    drop(server);
    let _restarted = RedisServer::start_on(port);
    // Every pooled connection is now dead; the invalidation must still land.
    cached_api::blocking::invalidate_user(&"after-restart").expect("invalidation succeeds");
    assert_eq!(profile_sync("after-restart", 1), "v1:1");
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
        assert!(stats().total.errors >= 4);
    });
    assert_eq!(profile_sync("absent-sync", 1), "v1:1");
    assert!(cached_api::blocking::invalidate_user(&"absent-sync").is_err());
}

/// One node with a replica, as a managed primary endpoint is: an
/// invalidation waits for the replica, and once the replica is cut off it
/// returns `Err` (the master forgot the replica; this process did not), is
/// kept, and lands when the replica is back. Async and sync alike.
#[test]
fn on_one_node_an_invalidation_its_cut_off_replica_missed_is_err() {
    if !in_child("on_one_node_an_invalidation_its_cut_off_replica_missed_is_err") {
        return;
    }
    let master = RedisServer::start();
    // A replica on a loaded machine may take longer than the usual 100 ms
    // to acknowledge: a `WAIT` gets half of this.
    let cache = cached_api::Cache::builder()
        .redis_url(master.url())
        .prefix("f")
        .op_timeout(Duration::from_secs(2))
        .breaker_cooldown(QUICK_PROBE)
        .build()
        .unwrap();
    cached_api::set_global(cache).unwrap();
    let replica = RedisServer::start_with(
        support::free_port(),
        &["--replicaof", "127.0.0.1", &master.port().to_string()],
    );
    // No event says the first sync is over: the master's INFO does.
    wait_until_blocking(|| {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut master.connection())
            .expect("INFO replication");
        info.contains("state=online")
    });
    let user = unique("replicated");
    let invalidate = {
        let user = user.clone();
        move || {
            run_returning({
                let user = user.clone();
                async move {
                    cached_api::invalidate_user(&user)
                        .await
                        .map_err(|e| e.to_string())
                }
            })
        }
    };
    invalidate().expect("the replica acknowledges it");

    replica.pause();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut master.connection())
        .expect("CLIENT KILL TYPE replica");
    let error = invalidate().expect_err("no replica acknowledged it");
    assert!(error.contains("replicas"), "{error}");
    let error = cached_api::blocking::invalidate_user(&user).expect_err("nor this one");
    assert!(error.to_string().contains("replicas"), "{error}");
    assert_eq!(stats().pending_invalidations, 1, "kept for retrying");

    replica.resume();
    wait_until_blocking(|| stats().pending_invalidations == 0);
    invalidate().expect("the replica is back");
}

/// How many calls of one entry [`merged`] runs at once.
const MERGED_CALLS: u64 = 20;

static MERGED_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Returns only once every other call of the entry has joined this one:
/// with the store down, nothing but single-flight keeps the body to one
/// run (were it gone, `coalesced` would stay 0 and the wait would hang).
#[cached_api::cached_api(key = "{tag}", ttl = "1m", name = "fail_open::merged")]
async fn merged(tag: String) -> String {
    MERGED_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    wait_until(|| stats().function("fail_open::merged").coalesced >= MERGED_CALLS - 1).await;
    format!("computed {tag}")
}

/// `MERGED_CALLS` concurrent calls of one entry, on a store that cannot
/// be read: the body runs once, the others share its value, and nothing
/// is stored (the next call runs it again).
fn concurrent_calls_share_one_run() {
    let tag = unique("merged");
    run(async move {
        let calls: Vec<_> = (0..MERGED_CALLS)
            .map(|_| tokio::spawn(merged(tag.clone())))
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), format!("computed {tag}"));
        }
        assert_eq!(MERGED_RUNS.load(std::sync::atomic::Ordering::SeqCst), 1);
        let counts = stats().function("fail_open::merged");
        assert_eq!(
            (counts.coalesced, counts.misses),
            (MERGED_CALLS - 1, 1),
            "{counts:?}"
        );
        assert_eq!(counts.sets, 0, "nothing stored: {counts:?}");
    });
}

#[test]
fn with_the_server_killed_concurrent_calls_of_one_entry_run_it_once() {
    if !in_child("with_the_server_killed_concurrent_calls_of_one_entry_run_it_once") {
        return;
    }
    start(QUICK_PROBE).kill();
    concurrent_calls_share_one_run();
}

#[test]
fn with_the_server_stopped_concurrent_calls_of_one_entry_run_it_once() {
    if !in_child("with_the_server_stopped_concurrent_calls_of_one_entry_run_it_once") {
        return;
    }
    let server = start(NO_PROBE);
    server.pause();
    concurrent_calls_share_one_run();
    server.resume();
}
