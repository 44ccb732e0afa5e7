//! The behaviour suite on a real Redis Cluster (3 masters, 3 replicas), plus
//! what only a cluster shows: a master killed under load, a slot moved
//! under load, each in a child process with a cluster of its own.

mod behaviour;
mod support;

use std::sync::LazyLock;
use std::time::Duration;

use behaviour::*;
use support::cluster::RedisCluster;
use support::in_child;

static CLUSTER: LazyLock<RedisCluster> = LazyLock::new(|| RedisCluster::start(3));

struct Cluster;

impl StoreUnderTest for Cluster {
    fn install() {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            if !support::is_child() {
                let cache = cached_api::Cache::builder()
                    .redis_cluster(CLUSTER.urls())
                    .prefix("c")
                    // Invalidations wait for a replica, half of this at
                    // most: room for a loaded machine's replicas.
                    .op_timeout(Duration::from_secs(2))
                    .max_value_size(MAX_VALUE_SIZE)
                    .build()
                    .unwrap();
                cached_api::set_global(cache).unwrap();
            }
        });
    }
}

behaviour_tests!(Cluster);

const OP_TIMEOUT: Duration = Duration::from_millis(300);

/// In a child: a cluster of its own and the process-wide cache on it.
fn start_own_cluster(cooldown: Duration) -> RedisCluster {
    start_own_cluster_with(RedisCluster::start(3), cooldown)
}

fn start_own_cluster_with(cluster: RedisCluster, cooldown: Duration) -> RedisCluster {
    start_own_cluster_timed(cluster, cooldown, OP_TIMEOUT)
}

/// With `op_timeout`, of which a `WAIT` for a replica gets half.
fn start_own_cluster_timed(
    cluster: RedisCluster,
    cooldown: Duration,
    op_timeout: Duration,
) -> RedisCluster {
    let cache = cached_api::Cache::builder()
        .redis_cluster(cluster.urls())
        .prefix("f")
        .op_timeout(op_timeout)
        .breaker_cooldown(cooldown)
        .build()
        .unwrap();
    cached_api::set_global(cache).unwrap();
    cluster
}

/// How often the victim's four entries were computed.
fn runs_of(user: &str) -> u32 {
    (0..4).map(|id| profile_runs(user, id)).sum()
}

#[test]
fn a_master_killed_under_load_fails_over_without_a_wrong_answer() {
    if !in_child("a_master_killed_under_load_fails_over_without_a_wrong_answer") {
        return;
    }
    let mut cluster = start_own_cluster(Duration::from_millis(200));
    let users: Vec<String> = (0..16).map(|i| format!("failover-{i}")).collect();
    let load = Load::start(users.clone());
    run(wait_until(load.progressed(500)));

    // The master of the first user's slot dies.
    let victim_user = users[0].clone();
    let slot = cluster.slot_of(&format!("u:{victim_user}"));
    let master = cluster.master_of(slot);
    // Users whose circuit covers none of the dying master's slots: they
    // must keep hitting throughout (a circuit covers 256 slots, and one
    // that straddles two masters may open with the failing one).
    let dying = cluster.slots_of(master);
    let healthy: Vec<String> = users
        .iter()
        .filter(|user| {
            let range = usize::from(cluster.slot_of(&format!("u:{user}"))) / 256;
            let (first, last) = ((range * 256) as u16, (range * 256 + 255) as u16);
            dying
                .iter()
                .all(|&(start, end)| end < first || start > last)
        })
        .cloned()
        .collect();
    let healthy_runs = |users: &[String]| users.iter().map(|user| runs_of(user)).sum::<u32>();
    let healthy_before = healthy_runs(&healthy);
    let healthy_calls_before = load.calls_of(&healthy);
    let before = cached_api::stats();
    cluster.nodes[master].take().expect("up").kill();
    // An invalidation in the gap either lands or says it did not.
    set_source(&victim_user, "written in the gap");
    let in_gap = run_returning({
        let user = victim_user.clone();
        async move { cached_api::invalidate_user(&user).await.is_ok() }
    });
    let promoted = cluster.wait_for_live_master(slot);
    assert_ne!(promoted, master, "a replica took the slot over");
    // Every circuit closes again once a probe reaches the promoted replica,
    // and the invalidation that failed in the gap is retried until it lands.
    run(wait_until(|| {
        let stats = cached_api::stats();
        !stats.breaker.open && stats.pending_invalidations == 0
    }));
    let gap = cached_api::stats();
    let healthy_recomputed = healthy_runs(&healthy) - healthy_before;
    let healthy_calls = load.calls_of(&healthy) - healthy_calls_before;

    // Hits resume on the slot range of the dead master: each of the
    // victim's entries is computed at most once more (if it had not reached
    // the replica), then served. The victim's call under way when the
    // circuits closed may have looked up before (uncached: its invalidation
    // was pending, or its circuit open) and run its function after; the
    // count starts once that call has answered.
    run(wait_until(load.progressed_for(&victim_user, 1)));
    let settled = cached_api::stats();
    let runs = runs_of(&victim_user);
    run(wait_until(load.progressed(2_000)));
    let calls = load.finish();
    let after = cached_api::stats();
    let reran = runs_of(&victim_user) - runs;
    let gap_hits = gap.total.hits - before.total.hits;
    let gap_lookups =
        (gap.total.hits + gap.total.misses) - (before.total.hits + before.total.misses);
    eprintln!(
        "failover: {calls} calls; from the kill to closed circuits: {} users on healthy masters made {healthy_calls} calls, {healthy_recomputed} of them misses; all users: {gap_hits} of {gap_lookups} lookups hit ({:.0}%), {} failed open on errors, {} short-circuited, {} circuits opened; after: hits {} of {} lookups, {} failed open on errors; {reran} recomputations of the victim's 4 entries after the promotion",
        healthy.len(),
        100.0 * gap_hits as f64 / gap_lookups.max(1) as f64,
        gap.total.errors - before.total.errors,
        gap.breaker.short_circuited - before.breaker.short_circuited,
        gap.breaker.opened - before.breaker.opened,
        after.total.hits - settled.total.hits,
        (after.total.hits + after.total.misses) - (settled.total.hits + settled.total.misses),
        after.total.errors - settled.total.errors,
    );
    assert!(!healthy.is_empty(), "some users live on healthy masters");
    assert_eq!(
        healthy_recomputed, 0,
        "users on healthy masters kept hitting while one master was down"
    );
    assert!(
        reran <= 4,
        "after the promotion the victim's entries are cached again: {reran} recomputations"
    );
    assert!(
        after.total.hits > settled.total.hits + 1_000,
        "hits resumed"
    );
    // What the invalidation in the gap promised holds; a retry lands.
    let served = run_returning({
        let user = victim_user.clone();
        async move {
            if !in_gap {
                cached_api::invalidate_user(&user)
                    .await
                    .expect("after the promotion the invalidation lands");
            }
            profile(user.clone(), 1).await.unwrap().value
        }
    });
    eprintln!(
        "failover: the invalidation in the gap {}",
        if in_gap { "landed" } else { "returned Err" }
    );
    assert_eq!(
        served, "written in the gap",
        "no invalidation was silently dropped"
    );
}

/// The failover that asynchronous replication loses a write to: the
/// replica of a user's master is cut off (stopped, its link killed), the
/// user is invalidated, the master dies, the stale replica is promoted.
/// The invalidation must not have answered `Ok`: it waits for the replica,
/// answers `Err`, and its retry lands on the promoted master, so the read
/// after the failover is new.
#[test]
fn an_invalidation_no_replica_has_is_err_and_lands_after_the_failover() {
    if !in_child("an_invalidation_no_replica_has_is_err_and_lands_after_the_failover") {
        return;
    }
    // A replica on a loaded machine may take longer than 150 ms to
    // acknowledge: the healthy invalidation below must not time out.
    let mut cluster = start_own_cluster_timed(
        RedisCluster::start(3),
        Duration::from_millis(100),
        Duration::from_secs(2),
    );
    let user = "replicated";
    set_source(user, "before");
    let invalidate = || {
        run_returning(async move {
            cached_api::invalidate_user(user)
                .await
                .map_err(|error| error.to_string())
        })
    };
    let read = || run_returning(async move { profile(user.to_owned(), 1).await.unwrap().value });
    invalidate().expect("with its replica up, an invalidation is acknowledged");
    assert_eq!(read(), "before");
    let slot = cluster.slot_of(&format!("u:{user}"));
    let master = cluster.master_of(slot);
    let replica = cluster.replica_of(master);
    // The promoted replica will hold the entry and the generation it was
    // computed at: only the invalidation can make it stale.
    cluster.wait_replicated(master, replica);
    cluster.nodes[replica].as_ref().expect("up").pause();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut cluster.nodes[master].as_ref().expect("up").connection())
        .expect("CLIENT KILL TYPE replica");

    set_source(user, "after");
    let error = invalidate().expect_err("no replica acknowledged the invalidation");
    assert!(error.contains("replicas"), "{error}");
    assert_eq!(
        cached_api::stats().pending_invalidations,
        1,
        "kept for retrying"
    );

    cluster.nodes[master].take().expect("up").kill();
    cluster.nodes[replica].as_ref().expect("up").resume();
    assert_eq!(cluster.wait_for_live_master(slot), replica);
    run(wait_until(|| {
        cached_api::stats().pending_invalidations == 0
    }));
    assert_eq!(
        read(),
        "after",
        "the retried invalidation landed on the promoted master"
    );
    // Another process, which never saw the invalidation, reads it too.
    support::run_in_child(
        "a_fresh_process_reads_the_replicated_user",
        &[
            ("CACHED_API_REDIS_URL", &cluster.url()),
            ("CACHED_API_PREFIX", "f"),
        ],
    );
}

/// Run by the test above in a process of its own.
#[test]
#[ignore = "a fresh process, started by the failover test"]
fn a_fresh_process_reads_the_replicated_user() {
    std::env::var("CACHED_API_REDIS_URL").expect("the failover test names the cluster");
    set_source("replicated", "after");
    let value = run_returning(async { profile("replicated".to_owned(), 1).await.unwrap().value });
    assert_eq!(value, "after");
}

#[test]
fn a_slot_moved_under_load_loses_no_answer_and_no_invalidation() {
    if !in_child("a_slot_moved_under_load_loses_no_answer_and_no_invalidation") {
        return;
    }
    // Room for a loaded machine's replicas: the invalidation after the move
    // waits for one.
    let cluster = start_own_cluster_timed(
        RedisCluster::start(3),
        Duration::from_millis(200),
        Duration::from_secs(2),
    );
    let users: Vec<String> = (0..16).map(|i| format!("reshard-{i}")).collect();
    let moved_user = users[0].clone();
    // The user's entries are cached before the move.
    run({
        let user = moved_user.clone();
        async move {
            for id in 0..4 {
                profile(user.clone(), id).await.unwrap();
            }
        }
    });
    let load = Load::start(users.clone());
    run(wait_until(load.progressed(500)));

    let slot = cluster.slot_of(&format!("u:{moved_user}"));
    let from = cluster.master_of(slot);
    let to = (0..cluster.nodes.len())
        .find(|&index| index != from && cluster.master_of_index(index))
        .expect("another master");
    let before = cached_api::stats();
    cluster.move_slot(slot, to);
    run(wait_until(load.progressed(2_000)));
    let calls = load.finish();
    assert_eq!(cluster.master_of(slot), to, "the slot moved");
    let after = cached_api::stats();
    eprintln!(
        "resharding: {calls} calls, 0 wrong; during and after the move {} failed open on errors, {} short-circuited, hits {} of {} lookups",
        after.total.errors - before.total.errors,
        after.breaker.short_circuited - before.breaker.short_circuited,
        after.total.hits - before.total.hits,
        (after.total.hits + after.total.misses) - (before.total.hits + before.total.misses),
    );

    // The user's invalidation still reaches the slot's new master.
    set_source(&moved_user, "after the move");
    run({
        let user = moved_user.clone();
        async move {
            cached_api::invalidate_user(&user)
                .await
                .expect("the invalidation lands on the new master");
            for id in 0..4 {
                assert_eq!(
                    profile(user.clone(), id).await.unwrap().value,
                    "after the move"
                );
            }
        }
    });
}

/// A master that stops answering, then answers again before the cluster
/// fails it over: each circuit it opened closes at its first probe, at the
/// latest.
#[test]
fn a_master_that_is_back_is_used_from_the_first_probe() {
    if !in_child("a_master_that_is_back_is_used_from_the_first_probe") {
        return;
    }
    support::logs::capture_logs();
    // A cooldown long enough that no probe runs while the master is paused,
    // and a node timeout long enough that the cluster does not fail it over.
    let cluster = start_own_cluster_with(
        RedisCluster::start_with_node_timeout(3, 10_000),
        Duration::from_secs(2),
    );
    let users: Vec<String> = (0..16).map(|i| format!("pause-{i}")).collect();
    let load = Load::start(users.clone());
    run(wait_until(load.progressed(500)));
    let slot = cluster.slot_of(&format!("u:{}", users[0]));
    let master = cluster.master_of(slot);
    // The circuits (256 slots each) of the users on the paused master.
    let mut ranges: Vec<u16> = users
        .iter()
        .map(|user| cluster.slot_of(&format!("u:{user}")))
        .filter(|&slot| cluster.master_of(slot) == master)
        .map(|slot| slot / 256)
        .collect();
    ranges.sort_unstable();
    ranges.dedup();
    let paused = cluster.nodes[master].as_ref().expect("up");
    let before = cached_api::stats().breaker;
    paused.pause();
    // Timeouts open the circuits of its slots, all of them; the master is
    // resumed well before the cluster's node timeout would fail it over.
    let open = ranges.len() as u64;
    run(wait_until(move || {
        cached_api::stats().breaker.open_circuits >= open
    }));
    paused.resume();
    run(wait_until(|| !cached_api::stats().breaker.open));
    let after = cached_api::stats().breaker;
    load.finish();
    // Counted at the end: a call that was waiting on the paused master when
    // it resumed may still time out and open one more circuit.
    let opened = after.opened - before.opened;
    eprintln!(
        "paused master: {opened} circuits opened, {} probes closed them",
        after.probes - before.probes
    );
    assert_eq!(cluster.master_of(slot), master, "no failover happened");
    // A circuit closes at its first probe, or sooner, when a call admitted
    // before it opened succeeds after the master is back.
    assert!(
        after.probes - before.probes <= opened,
        "each open circuit closed by its first probe at the latest: {after:?}"
    );
    // One outage, said once when it began and once when it ended, however
    // many circuits it opened.
    assert!(opened >= 2, "the test opens several circuits: {ranges:?}");
    let logs = support::logs::logs();
    let count = |line: &str| logs.lines().filter(|logged| logged.contains(line)).count();
    assert_eq!(
        count("the circuit is open, calls skip the cache"),
        1,
        "{logs}"
    );
    assert_eq!(
        count("every circuit is closed, caching resumes"),
        1,
        "{logs}"
    );
    // The calls that failed before their circuit opened are not a line each.
    assert_eq!(
        count("the store failed; calls run their function"),
        1,
        "{logs}"
    );
    let others: Vec<&str> = logs
        .lines()
        .filter(|line| {
            line.contains("cached_api") && (line.contains(" WARN ") || line.contains(" ERROR "))
        })
        .filter(|line| !line.contains("cached_api_runtime::breaker"))
        .collect();
    assert!(others.is_empty(), "{others:#?}");
}

/// The connection to a cluster survives the runtime that opened it: two
/// runtimes in sequence (two `#[tokio::test]`s, a CLI's command each), and
/// the second caches and invalidates as the first did.
#[test]
fn a_second_runtime_uses_the_cluster_after_the_first_is_gone() {
    if !in_child("a_second_runtime_uses_the_cluster_after_the_first_is_gone") {
        return;
    }
    support::logs::capture_logs();
    let _cluster = start_own_cluster_timed(
        RedisCluster::start(3),
        Duration::from_millis(100),
        Duration::from_secs(2),
    );
    let user = "two-runtimes";
    for round in 1..=2 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            set_source(user, &format!("round {round}"));
            cached_api::invalidate_user(user)
                .await
                .unwrap_or_else(|error| panic!("round {round}: {error}"));
            let runs = profile_runs(user, 1);
            assert_eq!(
                profile(user.to_owned(), 1).await.unwrap().value,
                format!("round {round}")
            );
            assert_eq!(
                profile(user.to_owned(), 1).await.unwrap().value,
                format!("round {round}")
            );
            assert_eq!(
                profile_runs(user, 1),
                runs + 1,
                "round {round}: the second call hit"
            );
        });
        drop(runtime);
    }
    // Nothing failed, so nothing was said to resume.
    let logs = support::logs::logs();
    for line in ["circuit is open", "caching resumes", "failed"] {
        assert!(!logs.contains(line), "`{line}` was logged:\n{logs}");
    }
}
