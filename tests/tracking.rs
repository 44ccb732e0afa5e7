//! Tracked generations on one redis-server, between two processes: this
//! one, and a peer process with a cache of its own (see `support::peer`).

mod support;

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use support::RedisServer;
use support::cluster::RedisCluster;
use support::logs::{capture_logs, logs};
use support::peer::{Peer, serve};

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Which process computed a value, and how many computations it had made.
#[cached_api::cached_api(key = "profile:{user}", user = user, ttl = "1h", name = "tracking::profile")]
async fn profile(user: String) -> String {
    let process = std::env::var("PEER_NAME").unwrap_or_else(|_| "parent".to_owned());
    format!("{process}-{}", RUNS.fetch_add(1, Relaxed) + 1)
}

/// The same, with decoded values kept in the in-process tier.
#[cached_api::cached_api(key = "hot:{user}", user = user, ttl = "1h", l1 = true, name = "tracking::hot")]
async fn hot(user: String) -> String {
    let process = std::env::var("PEER_NAME").unwrap_or_else(|_| "parent".to_owned());
    format!("{process}-{}", RUNS.fetch_add(1, Relaxed) + 1)
}

/// The same, with entries that can be dropped one by one.
#[cached_api::cached_api(key = "pinned:{user}", user = user, ttl = "1h", l1 = true, name = "tracking::pinned", invalidate = forget_pinned)]
async fn pinned(user: String) -> String {
    let process = std::env::var("PEER_NAME").unwrap_or_else(|_| "parent".to_owned());
    format!("{process}-{}", RUNS.fetch_add(1, Relaxed) + 1)
}

/// A global entry in the in-process tier.
#[cached_api::cached_api(key = "motd", ttl = "1h", l1 = "10m", name = "tracking::motd")]
async fn motd() -> String {
    let process = std::env::var("PEER_NAME").unwrap_or_else(|_| "parent".to_owned());
    format!("{process}-{}", RUNS.fetch_add(1, Relaxed) + 1)
}

/// The same, tagged: dropped with its tag.
#[cached_api::cached_api(key = "tagged:{user}", user = user, ttl = "1h", l1 = true, tags = ["tracking"], name = "tracking::tagged")]
async fn tagged(user: String) -> String {
    let process = std::env::var("PEER_NAME").unwrap_or_else(|_| "parent".to_owned());
    format!("{process}-{}", RUNS.fetch_add(1, Relaxed) + 1)
}

/// A function that returns `Arc<T>`, in the in-process tier.
#[cached_api::cached_api(key = "shared:{user}", user = user, ttl = "1h", l1 = true, name = "tracking::shared")]
async fn shared(user: String) -> std::sync::Arc<String> {
    std::sync::Arc::new(format!("{user}-{}", RUNS.fetch_add(1, Relaxed) + 1))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The peer process: its cache comes from the environment, as a service's would.
#[test]
#[ignore = "a peer process, started by the other tests"]
fn peer() {
    let rt = rt();
    serve(|verb, arg| match verb {
        "call" => rt.block_on(profile(arg.to_owned())),
        "hot" => rt.block_on(hot(arg.to_owned())),
        "tagged" => rt.block_on(tagged(arg.to_owned())),
        "warm_tagged" => {
            let before = l1_hits();
            warm(
                || rt.block_on(tagged(arg.to_owned())),
                || l1_hits() > before,
            )
        }
        "motd" => rt.block_on(motd()),
        "pinned" => rt.block_on(pinned(arg.to_owned())),
        "warm_pinned" => warm(|| rt.block_on(pinned(arg.to_owned())), || l1_hits() > 0),
        "l1_hits" => l1_hits().to_string(),
        // Calls until one is an L1 hit: a push for the process's own write of
        // the user's generation may void the read that follows it.
        "warm_hot" => warm(|| rt.block_on(hot(arg.to_owned())), || l1_hits() > 0),
        "warm_motd" => warm(|| rt.block_on(motd()), || l1_hits() > 0),
        // Calls until the user's generation is tracked too.
        "warm" => warm(|| rt.block_on(profile(arg.to_owned())), || tracked() >= 2),
        "tracked" => tracked().to_string(),
        // Waits until fewer keys than `arg` are tracked: a push arrived.
        "wait_below" => {
            let below: u64 = arg.parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while tracked() >= below && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            tracked().to_string()
        }
        other => panic!("unknown request {other}"),
    });
}

/// Calls `call` until `done` holds after it, at most ten times.
fn warm(call: impl Fn() -> String, done: impl Fn() -> bool) -> String {
    let mut value = call();
    for _ in 0..10 {
        if done() {
            break;
        }
        value = call();
    }
    value
}

fn l1_hits() -> u64 {
    cached_api::stats().total.l1_hits
}

fn tracked() -> u64 {
    cached_api::stats().tracking.tracked_keys
}

/// The peer process, its cache on `url` (a node's or a cluster's).
fn start_peer(url: &str) -> Peer {
    Peer::start(
        "peer",
        &[
            ("CACHED_API_REDIS_URL", url),
            ("CACHED_API_PREFIX", "t"),
            ("PEER_NAME", "peer"),
        ],
    )
}

/// This process's cache, on the same store and prefix as the peer's.
fn install(url: &str) {
    install_with(cached_api::Cache::builder().redis_url(url));
}

fn install_with(builder: cached_api::CacheBuilder) {
    let cache = builder.prefix("t").build().unwrap();
    cached_api::set_global(cache).unwrap();
}

/// Calls per command name on one server since its stats were reset.
fn calls(connection: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(connection)
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Kills every tracking connection of one server; how many there were.
fn kill_tracking_clients(connection: &mut redis::Connection) -> usize {
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(connection).unwrap();
    let tracking: Vec<&str> = clients
        .lines()
        .filter(|line| line.split(' ').any(|field| field == "flags=t"))
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .collect();
    for id in &tracking {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .exec(connection)
            .unwrap();
    }
    tracking.len()
}

#[test]
fn a_per_user_hit_reads_only_its_entry() {
    let server = RedisServer::start();
    let mut peer = start_peer(&server.url());
    assert_eq!(peer.ask("call ada"), "peer-1");
    assert_eq!(
        peer.ask("tracked"),
        "1",
        "the function's generation; the user's first call creates the user's"
    );
    assert_eq!(peer.ask("warm ada"), "peer-1");
    assert_eq!(
        peer.ask("tracked"),
        "2",
        "a hit read the user's generation and tracks it"
    );
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(&mut server.connection())
        .unwrap();
    for _ in 0..10 {
        assert_eq!(peer.ask("call ada"), "peer-1");
    }
    assert_eq!(
        calls(&mut server.connection(), "get"),
        10,
        "one GET per hit"
    );
    assert_eq!(
        calls(&mut server.connection(), "mget"),
        0,
        "no generation read per hit"
    );
}

#[test]
fn many_hits_at_once_share_their_round_trips() {
    if !support::in_child("many_hits_at_once_share_their_round_trips") {
        return;
    }
    let server = RedisServer::start();
    let (_rt, value) = warm_profile(&server);
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(&mut server.connection())
        .unwrap();
    let hits = cached_api::stats().total.hits;
    // On one thread, every call starts its read before any reply is read:
    // the first few go alone, the rest are gathered.
    let answers = many_hits_at_once();
    assert!(answers.iter().all(|answer| *answer == value), "{answers:?}");
    assert_eq!(cached_api::stats().total.hits, hits + 64);
    let (gets, mgets) = (
        calls(&mut server.connection(), "get"),
        calls(&mut server.connection(), "mget"),
    );
    assert!(mgets >= 1, "reads were gathered ({gets} GETs)");
    assert!(
        gets + mgets < 64,
        "64 hits took {gets} GETs and {mgets} MGETs"
    );
}

/// This process's cache on `server`, with a user's profile computed and its
/// generations tracked, so that the next hits read only the entry; the
/// runtime that holds the connection, and the value.
fn warm_profile(server: &RedisServer) -> (tokio::runtime::Runtime, String) {
    install(&server.url());
    let rt = rt();
    let value = warm(|| rt.block_on(profile("ada".to_owned())), || tracked() >= 2);
    (rt, value)
}

/// 64 hits at once on a new single-threaded runtime, all their answers.
fn many_hits_at_once() -> Vec<String> {
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    one_thread.block_on(async {
        let calls: Vec<_> = (0..64)
            .map(|_| tokio::spawn(profile("ada".to_owned())))
            .collect();
        let all = async {
            let mut answers = Vec::new();
            for call in calls {
                answers.push(call.await.unwrap());
            }
            answers
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("every hit is answered")
    })
}

#[test]
fn a_runtime_dropped_with_reads_gathered_holds_no_later_read_up() {
    if !support::in_child("a_runtime_dropped_with_reads_gathered_holds_no_later_read_up") {
        return;
    }
    let server = RedisServer::start();
    let (_rt, value) = warm_profile(&server);
    // A runtime (a test's, say) ends while its calls are gathered and the
    // task that would send them has not run: it is dropped with them.
    let short_lived = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    short_lived.block_on(async {
        for _ in 0..64 {
            tokio::spawn(profile("ada".to_owned()));
        }
        tokio::task::yield_now().await;
    });
    drop(short_lived);
    let answers = many_hits_at_once();
    assert!(answers.iter().all(|answer| *answer == value), "{answers:?}");
}

#[test]
fn a_dropped_entry_leaves_the_other_process_in_process_tier_once_the_push_arrives() {
    if !support::in_child(
        "a_dropped_entry_leaves_the_other_process_in_process_tier_once_the_push_arrives",
    ) {
        return;
    }
    let server = RedisServer::start();
    install(&server.url());
    let mut peer = start_peer(&server.url());
    assert_eq!(peer.ask("pinned ada"), "peer-1", "computed");
    assert_eq!(peer.ask("warm_pinned ada"), "peer-1", "kept in L1");
    assert_eq!(peer.ask("pinned bob"), "peer-2");
    assert_eq!(peer.ask("warm_pinned bob"), "peer-2");
    let warm: u64 = peer.ask("l1_hits").parse().unwrap();
    assert_eq!(peer.ask("pinned ada"), "peer-1");
    assert_eq!(peer.ask("l1_hits"), (warm + 1).to_string(), "an L1 hit");
    let tracked: u64 = peer.ask("tracked").parse().unwrap();
    let runtime = rt();
    runtime.block_on(forget_pinned("ada".to_owned())).unwrap();
    assert_eq!(
        peer.ask(&format!("wait_below {tracked}")),
        (tracked - 1).to_string(),
        "the push for the entry arrived"
    );
    assert_eq!(peer.ask("pinned ada"), "peer-3", "recomputed");
    assert_eq!(
        peer.ask("pinned bob"),
        "peer-2",
        "the user's other entries stay"
    );
}

#[test]
fn another_process_stops_serving_an_invalidated_user_on_its_next_call() {
    if !support::in_child("another_process_stops_serving_an_invalidated_user_on_its_next_call") {
        return;
    }
    let server = RedisServer::start();
    install(&server.url());
    let mut peer = start_peer(&server.url());
    assert_eq!(peer.ask("call ada"), "peer-1");
    assert_eq!(peer.ask("call ada"), "peer-1");
    assert_eq!(peer.ask("call bob"), "peer-2");
    cached_api::blocking::invalidate_user("ada").unwrap();
    // No wait: Redis pushes the change to the peer ahead of the reply to
    // its next read, on the same connection.
    assert_eq!(peer.ask("call ada"), "peer-3");
    assert_eq!(peer.ask("call bob"), "peer-2", "other users stay cached");
}

#[test]
fn hot_hits_come_from_the_in_process_tier_until_the_push_arrives() {
    if !support::in_child("hot_hits_come_from_the_in_process_tier_until_the_push_arrives") {
        return;
    }
    let server = RedisServer::start();
    install(&server.url());
    let mut peer = start_peer(&server.url());
    assert_eq!(peer.ask("hot ada"), "peer-1", "computed");
    assert_eq!(peer.ask("warm_hot ada"), "peer-1", "kept in L1");
    let warm: u64 = peer.ask("l1_hits").parse().unwrap();
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(&mut server.connection())
        .unwrap();
    for _ in 0..10 {
        assert_eq!(peer.ask("hot ada"), "peer-1");
    }
    assert_eq!(peer.ask("l1_hits"), (warm + 10).to_string());
    assert_eq!(
        calls(&mut server.connection(), "get") + calls(&mut server.connection(), "mget"),
        0,
        "hot hits never touch Redis"
    );

    cached_api::blocking::invalidate_user("ada").unwrap();
    assert_eq!(peer.ask("wait_below 2"), "1", "the push arrived");
    assert_eq!(peer.ask("hot ada"), "peer-2", "recomputed");
    assert_eq!(peer.ask("l1_hits"), (warm + 10).to_string());
}

#[test]
fn an_arc_from_the_in_process_tier_is_the_kept_one_not_a_copy() {
    if !support::in_child("an_arc_from_the_in_process_tier_is_the_kept_one_not_a_copy") {
        return;
    }
    let server = RedisServer::start();
    install(&server.url());
    let rt = rt();
    warm(
        || rt.block_on(shared("ada".to_owned())).to_string(),
        || l1_hits() > 0,
    );
    let before = l1_hits();
    let (a, b) = rt.block_on(async {
        (
            shared("ada".to_owned()).await,
            shared("ada".to_owned()).await,
        )
    });
    assert_eq!(l1_hits(), before + 2, "both from the in-process tier");
    assert!(std::sync::Arc::ptr_eq(&a, &b), "one kept value, shared");
    assert_eq!(*a, "ada-1");
}

#[test]
fn a_function_invalidated_elsewhere_leaves_the_in_process_tier() {
    if !support::in_child("a_function_invalidated_elsewhere_leaves_the_in_process_tier") {
        return;
    }
    let server = RedisServer::start();
    install(&server.url());
    let mut peer = start_peer(&server.url());
    assert_eq!(peer.ask("warm_hot ada"), "peer-1");
    let warm = peer.ask("l1_hits");
    cached_api::blocking::invalidate_function("tracking::hot").unwrap();
    // Any round trip on the peer's tracked connection: the push for the
    // function's generation comes ahead of its reply.
    assert_eq!(peer.ask("call bob"), "peer-2");
    assert_eq!(
        peer.ask("hot ada"),
        "peer-3",
        "recomputed, not served from L1"
    );
    assert_eq!(peer.ask("l1_hits"), warm);
}

#[test]
fn a_tag_invalidated_elsewhere_leaves_the_in_process_tier() {
    if !support::in_child("a_tag_invalidated_elsewhere_leaves_the_in_process_tier") {
        return;
    }
    let server = RedisServer::start();
    install(&server.url());
    let mut peer = start_peer(&server.url());
    assert_eq!(peer.ask("warm_tagged ada"), "peer-1");
    let warm: u64 = peer.ask("l1_hits").parse().unwrap();
    assert_eq!(peer.ask("tagged ada"), "peer-1");
    assert_eq!(peer.ask("l1_hits"), (warm + 1).to_string(), "kept in L1");
    cached_api::blocking::invalidate_tag("tracking").unwrap();
    // Any round trip on the peer's tracked connection: the push for the
    // tag's generation comes ahead of its reply.
    assert_eq!(peer.ask("call bob"), "peer-2");
    assert_eq!(
        peer.ask("tagged ada"),
        "peer-3",
        "recomputed, not served from L1"
    );
    assert_eq!(peer.ask("l1_hits"), (warm + 1).to_string());
}

#[test]
fn a_flushed_server_empties_the_in_process_tier() {
    let server = RedisServer::start();
    let mut peer = start_peer(&server.url());
    assert_eq!(peer.ask("warm_hot ada"), "peer-1");
    redis::cmd("FLUSHALL")
        .exec(&mut server.connection())
        .unwrap();
    // Redis reports a flush with no key names: everything is forgotten.
    assert_eq!(peer.ask("wait_below 1"), "0");
    assert_eq!(
        peer.ask("hot ada"),
        "peer-2",
        "recomputed, not served from L1"
    );
}

#[test]
fn a_global_entry_leaves_the_in_process_tier_when_it_changes() {
    if !support::in_child("a_global_entry_leaves_the_in_process_tier_when_it_changes") {
        return;
    }
    let server = RedisServer::start();
    install(&server.url());
    let mut peer = start_peer(&server.url());
    assert_eq!(peer.ask("warm_motd"), "peer-1");
    assert_eq!(
        peer.ask("tracked"),
        "2",
        "the entry and the function's generation are tracked"
    );
    // The entry goes (expired, evicted, or deleted by hand); another
    // instance computes it again.
    let mut connection = server.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("t:*motd*")
        .query(&mut connection)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    redis::cmd("DEL")
        .arg(&keys[0])
        .exec(&mut connection)
        .unwrap();
    assert_eq!(peer.ask("wait_below 2"), "1", "the push arrived");
    assert_eq!(rt().block_on(motd()), "parent-1");
    assert_eq!(peer.ask("motd"), "parent-1", "the new entry, from Redis");
}

#[test]
fn a_killed_tracking_connection_forgets_what_it_tracked() {
    if !support::in_child("a_killed_tracking_connection_forgets_what_it_tracked") {
        return;
    }
    let server = RedisServer::start();
    install(&server.url());
    let mut peer = start_peer(&server.url());
    assert_eq!(peer.ask("warm_hot ada"), "peer-1");
    let warm = peer.ask("l1_hits");
    assert_eq!(peer.ask("tracked"), "2");

    let killed = kill_tracking_clients(&mut server.connection());
    assert_eq!(killed, 1, "one tracking connection");
    // Meanwhile, another instance changes the user: the push for it can
    // no longer reach the peer.
    cached_api::blocking::invalidate_user("ada").unwrap();
    let fresh = rt().block_on(hot("ada".to_owned()));
    assert_eq!(fresh, "parent-1");

    assert_eq!(
        peer.ask("wait_below 1"),
        "0",
        "the peer forgot its generations"
    );
    assert_eq!(
        peer.ask("hot ada"),
        fresh,
        "the peer serves what was written meanwhile"
    );
    assert_eq!(peer.ask("l1_hits"), warm, "not its old value from L1");
}

#[test]
fn a_server_that_refuses_tracking_is_logged_once_and_still_caches() {
    if support::is_child() {
        capture_logs();
        rt().block_on(async {
            assert_eq!(profile("ada".to_owned()).await, "parent-1");
            assert_eq!(profile("ada".to_owned()).await, "parent-1");
            cached_api::invalidate_user("ada").await.unwrap();
            assert_eq!(profile("ada".to_owned()).await, "parent-2");
            assert_eq!(profile("ada".to_owned()).await, "parent-2");
        });
        assert_eq!(tracked(), 0);
        let logs = logs();
        let refusals = logs.matches("redis refuses client-side tracking").count();
        assert_eq!(refusals, 1, "one clear line:\n{logs}");
        return;
    }
    // A user that may not run CLIENT, as some proxies and managed services refuse it.
    let server = RedisServer::start_with(
        support::free_port(),
        &[
            "--user", "default", "off", "--user", "app", "on", ">pw", "~*", "&*", "+@all",
            "-client",
        ],
    );
    let url = format!("redis://app:pw@127.0.0.1:{}/", server.port());
    support::run_in_child(
        "a_server_that_refuses_tracking_is_logged_once_and_still_caches",
        &[("CACHED_API_REDIS_URL", &url)],
    );
}

/// Sum of `calls(command)` over the cluster's nodes.
fn cluster_calls(cluster: &RedisCluster, command: &str) -> u64 {
    cluster
        .urls()
        .iter()
        .map(|url| calls(&mut node(url), command))
        .sum()
}

fn node(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

/// The in-process tier on a cluster: hot hits, invalidations reaching
/// another process, and a killed tracking connection. One test, so that
/// one cluster serves all three.
#[test]
fn on_a_cluster_the_in_process_tier_stays_coherent() {
    const NAME: &str = "on_a_cluster_the_in_process_tier_stays_coherent";
    if !support::in_child(NAME) {
        return;
    }
    let cluster = RedisCluster::start(3);
    // Invalidations wait for a replica, half of the op timeout at most:
    // room for a loaded machine's replicas.
    let builder = cached_api::Cache::builder().redis_url(cluster.url());
    install_with(builder.op_timeout(std::time::Duration::from_secs(2)));
    let mut peer = start_peer(&cluster.url());
    assert_eq!(peer.ask("hot ada"), "peer-1", "computed");
    assert_eq!(peer.ask("warm_hot ada"), "peer-1", "kept in L1");
    let warm: u64 = peer.ask("l1_hits").parse().unwrap();
    let before = cluster_calls(&cluster, "get") + cluster_calls(&cluster, "mget");
    for _ in 0..10 {
        assert_eq!(peer.ask("hot ada"), "peer-1");
    }
    assert_eq!(peer.ask("l1_hits"), (warm + 10).to_string());
    let after = cluster_calls(&cluster, "get") + cluster_calls(&cluster, "mget");
    assert_eq!(after, before, "hot hits never touch the cluster");

    cached_api::blocking::invalidate_user("ada").unwrap();
    assert_eq!(peer.ask("wait_below 2"), "1", "the push arrived");
    assert_eq!(peer.ask("hot ada"), "peer-2", "recomputed");
    cached_api::blocking::invalidate_function("tracking::hot").unwrap();
    assert_eq!(peer.ask("wait_below 2"), "1", "the push arrived");
    assert_eq!(peer.ask("hot ada"), "peer-3", "recomputed");

    // A tag's copy in the entry's slot is tracked too.
    assert_eq!(peer.ask("warm_tagged ada"), "peer-4");
    let warm: u64 = peer.ask("l1_hits").parse().unwrap();
    assert_eq!(peer.ask("tagged ada"), "peer-4");
    assert_eq!(peer.ask("l1_hits"), (warm + 1).to_string(), "kept in L1");
    let tracked: u64 = peer.ask("tracked").parse().unwrap();
    cached_api::blocking::invalidate_tag("tracking").unwrap();
    let below = peer.ask(&format!("wait_below {tracked}"));
    assert_eq!(below, (tracked - 1).to_string(), "the push arrived");
    assert_eq!(peer.ask("tagged ada"), "peer-5", "recomputed");

    // Every tracking connection killed: the peer forgets all it tracked,
    // and serves what another instance wrote meanwhile.
    assert_eq!(peer.ask("warm_hot bob"), "peer-6");
    let warm = peer.ask("l1_hits");
    for url in cluster.urls() {
        kill_tracking_clients(&mut node(&url));
    }
    cached_api::blocking::invalidate_user("bob").unwrap();
    let fresh = rt().block_on(hot("bob".to_owned()));
    assert_eq!(fresh, "parent-1");
    assert_eq!(
        peer.ask("wait_below 1"),
        "0",
        "the peer forgot what it tracked"
    );
    assert_eq!(
        peer.ask("hot bob"),
        fresh,
        "the peer serves what was written meanwhile"
    );
    assert_eq!(peer.ask("l1_hits"), warm, "not its old value from L1");
}
