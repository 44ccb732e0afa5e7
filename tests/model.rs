//! Model-based test: random sequences of calls, source changes,
//! invalidations, TTL expiry and (on Redis) server restarts, each result
//! checked against what an uncached oracle says may legally be returned:
//! that user's and key's value, current at some moment no older than the
//! user's last invalidation nor than the TTL. Same suite on both stores.

mod support;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use cached_api::cached_api;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::{RedisServer, in_child};

/// The source's current version of each (user, key).
static VERSIONS: LazyLock<Mutex<HashMap<(String, String), u64>>> = LazyLock::new(Default::default);

fn version(user: &str, key: &str) -> u64 {
    let versions = VERSIONS.lock().unwrap();
    versions
        .get(&(user.to_owned(), key.to_owned()))
        .copied()
        .unwrap_or(0)
}

#[cached_api(user = user, key = "{key}", name = "model::read")]
async fn read(user: String, key: String) -> String {
    let version = version(&user, &key);
    format!("{user}|{key}|{version}")
}

#[derive(Debug, Clone)]
enum Op {
    Read(usize, usize),
    /// The source changes; cached copies may stay until their TTL.
    Write(usize, usize),
    /// The source changes and the user is invalidated, as after a PUT.
    WriteThenInvalidate(usize, usize),
    Invalidate(usize),
    Expire,
    Restart,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (0..3usize, 0..2usize).prop_map(|(u, k)| Op::Read(u, k)),
        2 => (0..3usize, 0..2usize).prop_map(|(u, k)| Op::Write(u, k)),
        2 => (0..3usize, 0..2usize).prop_map(|(u, k)| Op::WriteThenInvalidate(u, k)),
        1 => (0..3usize).prop_map(Op::Invalidate),
        1 => Just(Op::Expire),
        1 => Just(Op::Restart),
    ];
    proptest::collection::vec(op, 1..30)
}

/// What the oracle knows: when each version appeared, when each user was
/// last invalidated, in the store's time.
struct Oracle {
    ttl: Duration,
    history: HashMap<(String, String), Vec<(Instant, u64)>>,
    invalidated: HashMap<String, Instant>,
}

impl Oracle {
    /// The versions a read of (user, key) may return at `now`.
    fn legal(&self, user: &str, key: &str, now: Instant) -> std::ops::RangeInclusive<u64> {
        let mut lower = now.checked_sub(self.ttl + SLACK).unwrap_or(now);
        if let Some(&invalidated) = self.invalidated.get(user) {
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

struct Redis(Mutex<Option<RedisServer>>);

impl Store for Redis {
    fn ttl(&self) -> Duration {
        Duration::from_millis(300)
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

fn run_model(store: &dyn Store, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&ops(), |ops| {
        let tag = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let users: Vec<String> = (0..3).map(|u| format!("c{tag}-u{u}")).collect();
        let keys = ["k0".to_owned(), "k:{1}".to_owned()];
        let mut oracle = Oracle {
            ttl: store.ttl(),
            history: HashMap::new(),
            invalidated: HashMap::new(),
        };
        for op in &ops {
            match *op {
                Op::Read(u, k) => {
                    let (user, key) = (&users[u], &keys[k]);
                    let answer = runtime().block_on(read(user.clone(), key.clone()));
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
                Op::Write(u, k) | Op::WriteThenInvalidate(u, k) => {
                    let (user, key) = (users[u].clone(), keys[k].clone());
                    let next = {
                        let mut versions = VERSIONS.lock().unwrap();
                        let version = versions.entry((user.clone(), key.clone())).or_default();
                        *version += 1;
                        *version
                    };
                    oracle
                        .history
                        .entry((user.clone(), key))
                        .or_default()
                        .push((store.now(), next));
                    if let Op::WriteThenInvalidate(..) = op {
                        invalidate(store, &mut oracle, &user)?;
                    }
                }
                Op::Invalidate(u) => invalidate(store, &mut oracle, &users[u])?,
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

/// Invalidates `user`; while Redis restarts the call may fail, and then the
/// oracle must not assume it happened.
fn invalidate(store: &dyn Store, oracle: &mut Oracle, user: &str) -> Result<(), TestCaseError> {
    let at = store.now();
    match runtime().block_on(cached_api::invalidate_user(user)) {
        Ok(()) => {
            oracle.invalidated.insert(user.to_owned(), at);
            Ok(())
        }
        Err(error) => Err(TestCaseError::fail(format!(
            "invalidation failed with Redis up: {error}"
        ))),
    }
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
    run_model(&store, 128);
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
    let server = RedisServer::start();
    let store = Redis(Mutex::new(None));
    let cache = cached_api::Cache::builder()
        .redis_url(server.url())
        .default_ttl(store.ttl())
        .breaker_cooldown(Duration::from_millis(20))
        .build()
        .unwrap();
    *store.0.lock().unwrap() = Some(server);
    cached_api::set_global(cache).unwrap();
    run_model(&store, 24);
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
