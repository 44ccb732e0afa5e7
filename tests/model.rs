//! Model-based test: random sequences of calls, source changes,
//! invalidations, TTL expiry and (on Redis) server restarts, each result
//! checked against what an uncached oracle says may legally be returned:
//! that user's and key's value, current at some moment no older than the
//! user's last invalidation, its key's tag's last invalidation, nor than the
//! TTL. Same suite on both stores,
//! and on Redis with two processes reading and invalidating, each with
//! values in its in-process tier (`l1`).

mod support;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use cached_api::cached_api;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::peer::{Peer, serve};
use support::{RedisServer, in_child};

/// The source's current version of each (user, key), in this process.
static VERSIONS: LazyLock<Mutex<HashMap<(String, String), u64>>> = LazyLock::new(Default::default);

/// Where the source is when two processes share it: a redis-server of its
/// own, never restarted, named by this variable.
const SOURCE_URL: &str = "MODEL_SOURCE_URL";

static SOURCE: LazyLock<Option<Mutex<redis::Connection>>> = LazyLock::new(|| {
    let url = std::env::var(SOURCE_URL).ok()?;
    let client = redis::Client::open(url).unwrap();
    Some(Mutex::new(client.get_connection().unwrap()))
});

fn source_key(user: &str, key: &str) -> String {
    format!("source:{user}:{key}")
}

fn version(user: &str, key: &str) -> u64 {
    if let Some(source) = &*SOURCE {
        let version: Option<u64> = redis::cmd("GET")
            .arg(source_key(user, key))
            .query(&mut *source.lock().unwrap())
            .unwrap();
        return version.unwrap_or(0);
    }
    let versions = VERSIONS.lock().unwrap();
    versions
        .get(&(user.to_owned(), key.to_owned()))
        .copied()
        .unwrap_or(0)
}

/// Changes the source, and returns the new version.
fn bump(user: &str, key: &str) -> u64 {
    if let Some(source) = &*SOURCE {
        return redis::cmd("INCR")
            .arg(source_key(user, key))
            .query(&mut *source.lock().unwrap())
            .unwrap();
    }
    let mut versions = VERSIONS.lock().unwrap();
    let version = versions
        .entry((user.to_owned(), key.to_owned()))
        .or_default();
    *version += 1;
    *version
}

#[cached_api(user = user, key = "{key}", name = "model::read", l1 = true, tags = ["key:{key}"])]
async fn read(user: String, key: String) -> String {
    let version = version(&user, &key);
    format!("{user}|{key}|{version}")
}

/// A call whose read makes a round trip on the connection Redis pushes
/// changes on: once it returns, every push sent before has been applied.
#[cached_api(user = user, key = "barrier", name = "model::barrier")]
async fn barrier(user: String) -> String {
    user
}

/// An operation; the first number says which process does it (always 0
/// with one process).
#[derive(Debug, Clone)]
enum Op {
    Read(usize, usize, usize),
    /// The source changes; cached copies may stay until their TTL.
    Write(usize, usize),
    /// The source changes and the user is invalidated, as after a PUT.
    WriteThenInvalidate(usize, usize, usize),
    Invalidate(usize, usize),
    /// The source changes and the key's tag is invalidated, for every user.
    WriteThenInvalidateTag(usize, usize, usize),
    Expire,
    Restart,
}

fn ops(processes: usize) -> BoxedStrategy<Vec<Op>> {
    if processes == 1 {
        let op = prop_oneof![
            6 => (0..3usize, 0..2usize).prop_map(|(u, k)| Op::Read(0, u, k)),
            2 => (0..3usize, 0..2usize).prop_map(|(u, k)| Op::Write(u, k)),
            2 => (0..3usize, 0..2usize).prop_map(|(u, k)| Op::WriteThenInvalidate(0, u, k)),
            1 => (0..3usize).prop_map(|u| Op::Invalidate(0, u)),
            1 => (0..3usize, 0..2usize).prop_map(|(u, k)| Op::WriteThenInvalidateTag(0, u, k)),
            1 => Just(Op::Expire),
            1 => Just(Op::Restart),
        ];
        return proptest::collection::vec(op, 1..30).boxed();
    }
    // Two processes: what matters is one process's invalidation reaching
    // the other's cached values, so few entries, read often, rarely expired.
    let op = prop_oneof![
        8 => (0..2usize, 0..2usize, 0..2usize).prop_map(|(p, u, k)| Op::Read(p, u, k)),
        1 => (0..2usize, 0..2usize).prop_map(|(u, k)| Op::Write(u, k)),
        3 => (0..2usize, 0..2usize, 0..2usize)
            .prop_map(|(p, u, k)| Op::WriteThenInvalidate(p, u, k)),
        1 => (0..2usize, 0..2usize).prop_map(|(p, u)| Op::Invalidate(p, u)),
        2 => (0..2usize, 0..2usize, 0..2usize)
            .prop_map(|(p, u, k)| Op::WriteThenInvalidateTag(p, u, k)),
        1 => Just(Op::Restart),
    ];
    proptest::collection::vec(op, 1..40).boxed()
}

/// What the oracle knows: when each version appeared, when each user and
/// each key's tag was last invalidated, in the store's time.
struct Oracle {
    ttl: Duration,
    history: HashMap<(String, String), Vec<(Instant, u64)>>,
    invalidated: HashMap<String, Instant>,
    tag_invalidated: HashMap<String, Instant>,
}

impl Oracle {
    /// The versions a read of (user, key) may return at `now`.
    fn legal(&self, user: &str, key: &str, now: Instant) -> std::ops::RangeInclusive<u64> {
        let mut lower = now.checked_sub(self.ttl + SLACK).unwrap_or(now);
        if let Some(&invalidated) = self.invalidated.get(user) {
            lower = lower.max(invalidated);
        }
        if let Some(&invalidated) = self.tag_invalidated.get(key) {
            lower = lower.max(invalidated);
        }
        let history = self.history.get(&(user.to_owned(), key.to_owned()));
        let versions = history.map(Vec::as_slice).unwrap_or(&[]);
        let oldest = versions
            .iter()
            .take_while(|(since, _)| *since <= lower)
            .last()
            .map_or(0, |&(_, version)| version);
        let newest = versions.last().map_or(0, |&(_, version)| version);
        oldest..=newest
    }
}

/// Time between the source read and the write that stores it: a value may
/// outlive its read by this much.
const SLACK: Duration = Duration::from_millis(50);

/// How each store runs the parts of the model that touch time and servers.
trait Store {
    fn ttl(&self) -> Duration;
    fn now(&self) -> Instant;
    fn expire(&self);
    fn restart(&self);
}

struct Memory(cached_api::Clock, Mutex<Duration>);

impl Store for Memory {
    fn ttl(&self) -> Duration {
        Duration::from_secs(60)
    }
    fn now(&self) -> Instant {
        Instant::now() + *self.1.lock().unwrap()
    }
    fn expire(&self) {
        let by = self.ttl() + Duration::from_millis(1);
        self.0.advance(by);
        *self.1.lock().unwrap() += by;
    }
    fn restart(&self) {}
}

/// The server, and the TTL of entries.
struct Redis(Mutex<Option<RedisServer>>, Duration);

impl Redis {
    /// A redis-server, and this process's cache on it with entries of `ttl`.
    fn start(ttl: Duration) -> Redis {
        let server = RedisServer::start();
        let cache = cached_api::Cache::builder()
            .redis_url(server.url())
            .default_ttl(ttl)
            .breaker_cooldown(Duration::from_millis(20))
            .build()
            .unwrap();
        cached_api::set_global(cache).unwrap();
        Redis(Mutex::new(Some(server)), ttl)
    }

    fn url(&self) -> String {
        self.0.lock().unwrap().as_ref().expect("a server").url()
    }
}

impl Store for Redis {
    fn ttl(&self) -> Duration {
        self.1
    }
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn expire(&self) {
        std::thread::sleep(self.ttl() + SLACK);
    }
    fn restart(&self) {
        let mut server = self.0.lock().unwrap();
        let port = server.take().expect("a server").port();
        // Dropping the old server kills it; the new one starts empty.
        *server = Some(RedisServer::start_on(port));
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    });
    &RT
}

/// The other process of the two-process variant, which reads and
/// invalidates when told to.
type Other = Mutex<Peer>;

fn run_model(store: &dyn Store, cases: u32, other: Option<&Other>) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let processes = if other.is_some() { 2 } else { 1 };
    let result = runner.run(&ops(processes), |ops| {
        let tag = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let users: Vec<String> = (0..3).map(|u| format!("c{tag}-u{u}")).collect();
        let keys = ["k0".to_owned(), "k:{1}".to_owned()];
        let mut oracle = Oracle {
            ttl: store.ttl(),
            history: HashMap::new(),
            invalidated: HashMap::new(),
            tag_invalidated: HashMap::new(),
        };
        for op in &ops {
            match *op {
                Op::Read(p, u, k) => {
                    let (user, key) = (&users[u], &keys[k]);
                    let answer = match (p, other) {
                        (1, Some(other)) => {
                            other.lock().unwrap().ask(&format!("read {user} {key}"))
                        }
                        _ => runtime().block_on(read(user.clone(), key.clone())),
                    };
                    let now = store.now();
                    let (owner, version) = answer.rsplit_once('|').expect("user|key|version");
                    prop_assert_eq!(owner, format!("{user}|{key}"), "another entry's value");
                    let version: u64 = version.parse().unwrap();
                    let legal = oracle.legal(user, key, now);
                    prop_assert!(
                        legal.contains(&version),
                        "{op:?}: version {version}, legal {legal:?}"
                    );
                }
                Op::Write(u, k)
                | Op::WriteThenInvalidate(_, u, k)
                | Op::WriteThenInvalidateTag(_, u, k) => {
                    let (user, key) = (users[u].clone(), keys[k].clone());
                    let next = bump(&user, &key);
                    oracle
                        .history
                        .entry((user.clone(), key))
                        .or_default()
                        .push((store.now(), next));
                    match *op {
                        Op::WriteThenInvalidate(p, ..) => {
                            invalidate(store, &mut oracle, p, Dropped::User(&user), other)?;
                        }
                        Op::WriteThenInvalidateTag(p, ..) => {
                            invalidate(store, &mut oracle, p, Dropped::Key(&keys[k]), other)?;
                        }
                        _ => {}
                    }
                }
                Op::Invalidate(p, u) => {
                    invalidate(store, &mut oracle, p, Dropped::User(&users[u]), other)?;
                }
                Op::Expire => store.expire(),
                Op::Restart => store.restart(),
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("the cache returned an illegal value: {failure}");
    }
}

/// What an invalidation drops: a user's entries, or every entry of a key
/// (its tag).
#[derive(Clone, Copy)]
enum Dropped<'a> {
    User(&'a str),
    Key(&'a str),
}

/// The peer's request for `dropped`.
fn request(dropped: Dropped<'_>) -> String {
    match dropped {
        Dropped::User(user) => format!("invalidate {user}"),
        Dropped::Key(key) => format!("invalidate_tag key:{key}"),
    }
}

/// Drops what `dropped` names in process `p`. With two processes, the
/// other one then makes a round trip on its tracked connection: the
/// guarantee is that it serves nothing older once the push has reached it.
fn invalidate(
    store: &dyn Store,
    oracle: &mut Oracle,
    p: usize,
    dropped: Dropped<'_>,
    other: Option<&Other>,
) -> Result<(), TestCaseError> {
    let at = store.now();
    let result = match (p, other) {
        (1, Some(other)) => match other.lock().unwrap().ask(&request(dropped)) {
            answer if answer == "ok" => Ok(()),
            error => Err(error),
        },
        _ => runtime()
            .block_on(async {
                match dropped {
                    Dropped::User(user) => cached_api::invalidate_user(user).await,
                    Dropped::Key(key) => cached_api::invalidate_tag(&format!("key:{key}")).await,
                }
            })
            .map_err(|error| error.to_string()),
    };
    if let Err(error) = result {
        return Err(TestCaseError::fail(format!(
            "invalidation failed with Redis up: {error}"
        )));
    }
    match dropped {
        Dropped::User(user) => oracle.invalidated.insert(user.to_owned(), at),
        Dropped::Key(key) => oracle.tag_invalidated.insert(key.to_owned(), at),
    };
    match (p, other) {
        (1, Some(_)) => {
            runtime().block_on(barrier("barrier".to_owned()));
        }
        (_, Some(other)) => {
            other.lock().unwrap().ask("barrier");
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn the_embedded_store_never_serves_an_illegal_value() {
    if !in_child("the_embedded_store_never_serves_an_illegal_value") {
        return;
    }
    let clock = cached_api::Clock::default();
    let store = Memory(clock.clone(), Mutex::new(Duration::ZERO));
    let cache = cached_api::Cache::builder()
        .default_ttl(store.ttl())
        .clock(clock)
        .build()
        .unwrap();
    cached_api::set_global(cache).unwrap();
    run_model(&store, 128, None);
    let stats = cached_api::stats().function("model::read");
    eprintln!("model on the embedded store: {stats:?}");
    assert!(
        stats.hits > 0 && stats.misses > 0,
        "the model exercised both: {stats:?}"
    );
}

#[test]
fn redis_never_serves_an_illegal_value() {
    if !in_child("redis_never_serves_an_illegal_value") {
        return;
    }
    let store = Redis::start(Duration::from_millis(300));
    run_model(&store, 24, None);
    let stats = cached_api::stats().function("model::read");
    eprintln!(
        "model on redis: {stats:?} {:?}",
        cached_api::stats().breaker
    );
    assert!(
        stats.hits > 0 && stats.misses > 0,
        "the model exercised both: {stats:?}"
    );
}

#[test]
fn two_processes_on_redis_never_serve_an_illegal_value() {
    const NAME: &str = "two_processes_on_redis_never_serve_an_illegal_value";
    if !support::is_child() {
        let source = RedisServer::start();
        support::run_in_child(NAME, &[(SOURCE_URL, &source.url())]);
        return;
    }
    // The environment takes whole seconds: both processes use one.
    let store = Redis::start(Duration::from_secs(1));
    let source = std::env::var(SOURCE_URL).unwrap();
    let peer = Peer::start(
        "model_peer",
        &[
            ("CACHED_API_REDIS_URL", &store.url()),
            ("CACHED_API_DEFAULT_TTL", "1"),
            (SOURCE_URL, &source),
        ],
    );
    let peer = Mutex::new(peer);
    run_model(&store, 16, Some(&peer));
    let read = cached_api::stats().function("model::read");
    let peer = peer.lock().unwrap().ask("counts");
    eprintln!("model, two processes: this one {read:?}; the peer {peer}");
    assert!(
        read.hits > 0 && read.misses > 0 && read.l1_hits > 0,
        "the model exercised hits, misses and the in-process tier: {read:?}"
    );
    let peer: serde_json::Value = serde_json::from_str(&peer).unwrap();
    assert!(
        peer["hits"].as_u64() > Some(0) && peer["l1_hits"].as_u64() > Some(0),
        "the peer caches too: {peer}"
    );
}

/// The second process of the two-process model.
#[test]
#[ignore = "a peer process, started by the two-process model"]
fn model_peer() {
    serve(|verb, arg| match verb {
        "read" => {
            let (user, key) = arg.split_once(' ').expect("user key");
            runtime().block_on(read(user.to_owned(), key.to_owned()))
        }
        "invalidate" => match runtime().block_on(cached_api::invalidate_user(arg)) {
            Ok(()) => "ok".to_owned(),
            Err(error) => format!("error: {error}"),
        },
        "invalidate_tag" => match runtime().block_on(cached_api::invalidate_tag(arg)) {
            Ok(()) => "ok".to_owned(),
            Err(error) => format!("error: {error}"),
        },
        "barrier" => runtime().block_on(barrier("barrier".to_owned())),
        "counts" => serde_json::to_string(&cached_api::stats().function("model::read")).unwrap(),
        other => panic!("unknown request {other}"),
    });
}
