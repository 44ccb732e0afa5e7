//! A fleet on one redis-server: several processes of the service (this
//! test binary again, see `support::peer`) missing the same entry at once,
//! with and without `lock`.
//!
//! Function bodies count their runs in Redis and hold at a gate there until
//! the test opens it, so that every process misses while one computes.

mod support;

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use support::RedisServer;
use support::peer::{Peer, serve};

/// Counts this run under `runs:{tag}`, waits for `gate:{tag}` to open,
/// and answers which process computed.
async fn compute(tag: &str) -> String {
    let url = std::env::var("FLEET_SOURCE_URL").expect("the test names the source");
    let client = redis::Client::open(url).unwrap();
    let mut source = client.get_multiplexed_async_connection().await.unwrap();
    let run: u64 = source.incr(format!("runs:{tag}"), 1).await.unwrap();
    // Each body takes the gate's token and puts it back for the next; in
    // short waits, within the connection's response timeout.
    loop {
        let token: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(format!("gate:{tag}"))
            .arg(0.1)
            .query_async(&mut source)
            .await
            .unwrap();
        if token.is_some() {
            break;
        }
    }
    let _: () = source.lpush(format!("gate:{tag}"), "open").await.unwrap();
    let process = std::env::var("PEER_NAME").unwrap();
    format!("{process}-{run}")
}

#[cached_api::cached_api(key = "{tag}", ttl = "1h", lock = "10s", name = "fleet::leased")]
async fn leased(tag: String) -> String {
    compute(&tag).await
}

/// A lease short enough for a test to outlive a dead holder's.
#[cached_api::cached_api(key = "{tag}", ttl = "1h", lock = 1, name = "fleet::short_lease")]
async fn short_lease(tag: String) -> String {
    compute(&tag).await
}

#[cached_api::cached_api(key = "{tag}", ttl = "1h", name = "fleet::unleased")]
async fn unleased(tag: String) -> String {
    compute(&tag).await
}

/// The peer process: `burst <function> <tag> <callers>` makes that many
/// concurrent first calls and answers the distinct values they got, then
/// how many calls of this process waited for another's lease, then errors.
#[test]
#[ignore = "a peer process, started by the other tests"]
fn peer() {
    // A loaded machine (CI runs these tests side by side, each with four
    // peers) can take longer than the default 250 ms to answer; a read that
    // times out fails open and runs the body uncached, an execution these
    // tests would count against the lease.
    let cache = cached_api::Cache::builder()
        .redis_url(std::env::var("CACHED_API_REDIS_URL").expect("the test names the store"))
        .prefix("fleet")
        .op_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    cached_api::set_global(cache).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    serve(|verb, arg| {
        assert_eq!(verb, "burst", "the only request");
        let mut words = arg.split(' ');
        let (function, tag) = (words.next().unwrap(), words.next().unwrap().to_owned());
        let callers: usize = words.next().unwrap().parse().unwrap();
        let mut values: Vec<String> = rt.block_on(async {
            let calls: Vec<_> = (0..callers)
                .map(|_| {
                    let tag = tag.clone();
                    match function {
                        "leased" => tokio::spawn(leased(tag)),
                        "short_lease" => tokio::spawn(short_lease(tag)),
                        _ => tokio::spawn(unleased(tag)),
                    }
                })
                .collect();
            let mut values = Vec::new();
            for call in calls {
                values.push(call.await.unwrap());
            }
            values
        });
        values.sort();
        values.dedup();
        let total = cached_api::stats().total;
        format!(
            "{} {} {}",
            values.join(","),
            total.lease_waits,
            total.errors
        )
    });
}

fn start_peers(server: &RedisServer, names: &[&str]) -> Vec<Peer> {
    let url = server.url();
    names
        .iter()
        .map(|name| {
            Peer::start(
                "peer",
                &[
                    ("CACHED_API_REDIS_URL", url.as_str()),
                    ("FLEET_SOURCE_URL", url.as_str()),
                    ("PEER_NAME", name),
                ],
            )
        })
        .collect()
}

/// Waits until `condition` holds on the server (a signal the bodies or the
/// cache leave there), failing the test after a minute.
fn wait_for(server: &RedisServer, what: &str, condition: impl Fn(&mut redis::Connection) -> bool) {
    let mut connection = server.connection();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition(&mut connection) {
        assert!(
            Instant::now() < deadline,
            "the test hung waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn runs(connection: &mut redis::Connection, tag: &str) -> u64 {
    redis::cmd("GET")
        .arg(format!("runs:{tag}"))
        .query::<Option<u64>>(connection)
        .unwrap()
        .unwrap_or(0)
}

fn open_gate(server: &RedisServer, tag: &str) {
    redis::cmd("LPUSH")
        .arg(format!("gate:{tag}"))
        .arg("open")
        .exec(&mut server.connection())
        .unwrap();
}

/// Connections whose last command was `command`.
fn connections_last_sending(connection: &mut redis::Connection, command: &str) -> usize {
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(connection).unwrap();
    let field = format!("cmd={command}");
    clients
        .lines()
        .filter(|line| line.split(' ').any(|part| part == field))
        .count()
}

/// Answers of `burst`: (distinct values, lease waits, errors) per peer.
fn bursts(peers: &mut [Peer]) -> Vec<(String, u64, u64)> {
    peers
        .iter_mut()
        .map(|peer| {
            let answer = peer.receive();
            let mut words = answer.split(' ');
            let values = words.next().unwrap().to_owned();
            let waits = words.next().unwrap().parse().unwrap();
            let errors = words.next().unwrap().parse().unwrap();
            (values, waits, errors)
        })
        .collect()
}

#[test]
fn with_lock_one_process_in_the_fleet_computes_a_missing_entry() {
    let server = RedisServer::start();
    let mut peers = start_peers(&server, &["a", "b", "c", "d"]);
    for peer in &mut peers {
        peer.send("burst leased hot 16");
    }
    // One body runs, and every process's leader has asked for the lease:
    // the last command of each process's connection.
    wait_for(&server, "the holder and three waiters", |connection| {
        runs(connection, "hot") == 1 && connections_last_sending(connection, "eval") == 4
    });
    open_gate(&server, "hot");
    let answers = bursts(&mut peers);
    let mut server = server.connection();
    assert_eq!(runs(&mut server, "hot"), 1, "one execution in the fleet");
    let value = &answers[0].0;
    assert!(
        answers
            .iter()
            .all(|(values, _, _)| values == value && !value.contains(',')),
        "all 64 callers got the holder's value: {answers:?}"
    );
    let waits: u64 = answers.iter().map(|(_, waits, _)| waits).sum();
    assert_eq!(waits, 3, "the other processes' leaders waited for it");
    assert!(answers.iter().all(|(_, _, errors)| *errors == 0));
    let leases: Vec<String> = redis::cmd("KEYS")
        .arg("fleet:*:lease:*")
        .query(&mut server)
        .unwrap();
    assert_eq!(
        leases,
        Vec::<String>::new(),
        "the holder released its lease"
    );
}

#[test]
fn without_lock_each_process_computes_a_missing_entry() {
    let server = RedisServer::start();
    let mut peers = start_peers(&server, &["a", "b", "c", "d"]);
    for peer in &mut peers {
        peer.send("burst unleased hot 16");
    }
    // Nothing lands before the gate opens: every process misses.
    wait_for(&server, "four executions", |connection| {
        runs(connection, "hot") == 4
    });
    open_gate(&server, "hot");
    let answers = bursts(&mut peers);
    assert_eq!(runs(&mut server.connection(), "hot"), 4);
    assert!(
        answers.iter().all(|(values, _, _)| !values.contains(',')),
        "single-flight still holds within each process: {answers:?}"
    );
}

#[test]
fn when_the_lease_holder_dies_another_process_computes_after_the_lease_expires() {
    let server = RedisServer::start();
    let mut peers = start_peers(&server, &["a", "b"]);
    peers[0].send("burst short_lease held 1");
    wait_for(&server, "the holder to start", |connection| {
        runs(connection, "held") == 1
    });
    peers[1].send("burst short_lease held 4");
    wait_for(&server, "the second process to be refused", |connection| {
        connections_last_sending(connection, "eval") == 2
    });
    // SIGKILL, mid-computation: its lease is never released.
    let holder = peers.remove(0);
    drop(holder);
    open_gate(&server, "held");
    let answers = bursts(&mut peers);
    assert_eq!(
        answers[0],
        ("b-2".to_owned(), 0, 0),
        "the second process computed once its lease expired, and no caller got an error"
    );
    assert_eq!(runs(&mut server.connection(), "held"), 2);
}
