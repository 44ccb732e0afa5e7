//! Side-by-side comparison, every contender measured in the same run:
//! `cargo bench --bench compare`. Starts its own redis-server on a free
//! loopback port and prints one table, with ratios to the baseline of the
//! same run.
//!
//! The Redis measurements run in a child process whose process-wide cache
//! is configured from the environment, as a service's would be; the
//! embedded-store measurements run in the parent, on the default cache.

#[path = "../tests/support/mod.rs"]
mod support;

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cached::ConcurrentCachedAsync;
use cached_api::cached_api;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

const ROUNDS: usize = 7;
const WINDOW: Duration = Duration::from_millis(400);
const CONCURRENCY: [usize; 2] = [1, 64];
const USER: u64 = 42;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    email: String,
    bio: String,
    tags: Vec<String>,
    scores: Vec<u32>,
}

/// About 1 kB once encoded.
fn sample_profile(id: u64) -> Profile {
    Profile {
        id,
        name: format!("User Number {id}"),
        email: format!("user{id}@example.com"),
        bio: "Writes Rust services and caches what they can. ".repeat(16),
        tags: ["rust", "redis", "axum", "tokio", "serde"]
            .map(str::to_owned)
            .to_vec(),
        scores: (0..32).collect(),
    }
}

fn encode(profile: &Profile) -> Vec<u8> {
    bincode::serde::encode_to_vec(profile, bincode::config::standard()).unwrap()
}

fn decode(bytes: &[u8]) -> Profile {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .unwrap()
        .0
}

static EXECUTIONS: AtomicU64 = AtomicU64::new(0);

#[cached_api(key = "global", ttl = "1h", name = "bench::global")]
async fn global_profile() -> Profile {
    sample_profile(1)
}

#[cached_api(key = "profile", user = user, ttl = "1h", name = "bench::per_user")]
async fn user_profile(user: u64) -> Profile {
    sample_profile(user)
}

static HOT_EXECUTIONS: AtomicU64 = AtomicU64::new(0);

#[cached_api(key = "profile", user = user, ttl = "1h", l1 = true, name = "bench::hot")]
async fn hot_profile(user: u64) -> Profile {
    HOT_EXECUTIONS.fetch_add(1, Ordering::SeqCst);
    sample_profile(user)
}

/// [`user_profile`] and [`hot_profile`] in two groups: what tags cost a hit.
#[cached_api(key = "profile", user = user, ttl = "1h", name = "bench::tagged", tags = ["org:{user}", "plans"])]
async fn tagged_profile(user: u64) -> Profile {
    sample_profile(user)
}

#[cached_api(key = "profile", user = user, ttl = "1h", l1 = true, name = "bench::hot_tagged", tags = ["org:{user}", "plans"])]
async fn hot_tagged_profile(user: u64) -> Profile {
    sample_profile(user)
}

/// Row 6's group: 100 entries of one tag.
#[cached_api(key = "{id}", ttl = "1h", name = "bench::grouped", tags = ["bench-group"])]
async fn grouped_profile(id: u64) -> Profile {
    sample_profile(id)
}

/// The same, returning `Arc<Profile>`: an L1 hit clones a reference, not the struct.
#[cached_api(key = "profile", user = user, ttl = "1h", l1 = true, name = "bench::hot_shared")]
async fn shared_profile(user: u64) -> Arc<Profile> {
    Arc::new(sample_profile(user))
}

/// Row 8's two functions: 10 ms to compute, 1 s to live; one refreshed ahead.
#[cached_api(key = "steady", ttl = 1, name = "bench::expiring")]
async fn expiring_profile() -> Profile {
    tokio::time::sleep(Duration::from_millis(10)).await;
    sample_profile(3)
}

#[cached_api(key = "steady", ttl = 1, refresh = true, name = "bench::refreshed")]
async fn refreshed_profile() -> Profile {
    tokio::time::sleep(Duration::from_millis(10)).await;
    sample_profile(3)
}

#[cached_api(key = "{id}", user = user, ttl = "1h", name = "bench::miss")]
async fn fresh_profile(user: u64, id: u64) -> Profile {
    let _ = user;
    sample_profile(id)
}

/// A slow source: the stampede measure counts how often it runs.
#[cached_api(key = "{round}", ttl = "1h", name = "bench::stampede")]
async fn slow_profile(round: u64) -> Profile {
    EXECUTIONS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    sample_profile(round)
}

/// Row 9's functions: 50 ms to compute, counted in Redis across the
/// fleet's processes as they start (`bench:runs:<name>`) and end
/// (`bench:done:<name>`).
async fn fleet_source(name: &str, round: u64) -> Profile {
    static SOURCE: tokio::sync::OnceCell<redis::aio::MultiplexedConnection> =
        tokio::sync::OnceCell::const_new();
    let source = SOURCE
        .get_or_init(|| async {
            let url = std::env::var("CACHED_API_REDIS_URL").unwrap();
            let client = redis::Client::open(url).unwrap();
            client.get_multiplexed_async_connection().await.unwrap()
        })
        .await;
    redis::cmd("INCR")
        .arg(format!("bench:runs:{name}"))
        .exec_async(&mut source.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    redis::cmd("INCR")
        .arg(format!("bench:done:{name}"))
        .exec_async(&mut source.clone())
        .await
        .unwrap();
    sample_profile(round)
}

#[cached_api(key = "{round}", ttl = "1h", name = "bench::fleet_plain")]
async fn fleet_plain(round: u64) -> Profile {
    fleet_source("plain", round).await
}

#[cached_api(key = "{round}", ttl = "1h", lock = true, name = "bench::fleet_leased")]
async fn fleet_leased(round: u64) -> Profile {
    fleet_source("leased", round).await
}

#[cached_api(key = "{round}", ttl = 1, name = "bench::fleet_expiring")]
async fn fleet_expiring(round: u64) -> Profile {
    fleet_source("expiring", round).await
}

#[cached_api(key = "{round}", ttl = 1, stale = 60, name = "bench::fleet_stale")]
async fn fleet_stale(round: u64) -> Profile {
    fleet_source("stale", round).await
}

#[cached_api(
    key = "{round}",
    ttl = 1,
    stale = 60,
    lock = true,
    name = "bench::fleet_stale_leased"
)]
async fn fleet_stale_leased(round: u64) -> Profile {
    fleet_source("stale_leased", round).await
}

/// Calls `name` for `round` from `callers` tasks at once; each call's
/// latency in µs.
async fn fleet_burst(name: &str, round: u64, callers: usize) -> Vec<u64> {
    let calls: Vec<_> = (0..callers)
        .map(|_| {
            let name = name.to_owned();
            tokio::spawn(async move {
                let began = Instant::now();
                let profile = match name.as_str() {
                    "plain" => fleet_plain(round).await,
                    "leased" => fleet_leased(round).await,
                    "expiring" => fleet_expiring(round).await,
                    "stale" => fleet_stale(round).await,
                    _ => fleet_stale_leased(round).await,
                };
                black_box(profile);
                u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(callers);
    for call in calls {
        latencies.push(call.await.unwrap());
    }
    latencies
}

/// A process of row 9's fleet: `burst <name> <round> <callers>`, answered
/// with the calls' latencies.
fn fleet_member() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    support::peer::serve(|verb, arg| {
        assert_eq!(verb, "burst");
        let mut words = arg.split(' ');
        let name = words.next().unwrap();
        let round = words.next().unwrap().parse().unwrap();
        let callers = words.next().unwrap().parse().unwrap();
        let latencies = runtime.block_on(fleet_burst(name, round, callers));
        let latencies: Vec<String> = latencies.iter().map(u64::to_string).collect();
        latencies.join(",")
    });
}

/// Row 9: 4 processes × 16 callers missing one key at once (a first call,
/// or an expiry): how often the function runs in the fleet, and how long
/// callers wait.
async fn fleet_rows() {
    const PROCESSES: usize = 4;
    const CALLERS: usize = 16;
    const ROUNDS: u64 = 5;
    let mut fleet: Vec<_> = (0..PROCESSES)
        .map(|_| support::peer::Peer::start("fleet", &[("CACHED_API_BENCH_FLEET", "1")]))
        .collect();
    let url = std::env::var("CACHED_API_REDIS_URL").unwrap();
    let mut source = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut burst = |name: &str, round: u64| -> Vec<u64> {
        for member in &mut fleet {
            member.send(&format!("burst {name} {round} {CALLERS}"));
        }
        fleet
            .iter_mut()
            .flat_map(|member| {
                let answer = member.receive();
                answer
                    .split(',')
                    .map(|latency| latency.parse::<u64>().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let section = format!(
        "9. Fleet stampede: {PROCESSES} processes × {CALLERS} callers miss one key at once (50 ms computation; {ROUNDS} rounds)"
    );
    let mut count = |counter: &str, name: &str| -> u64 {
        redis::cmd("GET")
            .arg(format!("bench:{counter}:{name}"))
            .query::<Option<u64>>(&mut source)
            .unwrap()
            .unwrap_or(0)
    };
    let percentiles = |mut latencies: Vec<u64>| {
        latencies.sort_unstable();
        let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] as f64 / 1e3;
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        )
    };
    for (name, contender) in [
        ("plain", "first calls, without `lock`"),
        ("leased", "first calls, `lock = true`"),
    ] {
        let latencies: Vec<u64> = (0..ROUNDS).flat_map(|round| burst(name, round)).collect();
        let executions = count("runs", name) as f64 / ROUNDS as f64;
        row(
            &section,
            contender,
            format!(
                "{executions:.1} executions per key; {}",
                percentiles(latencies)
            ),
            None,
        );
    }
    for (name, contender) in [
        ("expiring", "at expiry, without `stale`"),
        ("stale", "at expiry, `stale = 60`"),
        ("stale_leased", "at expiry, `stale = 60, lock = true`"),
    ] {
        let (mut latencies, mut at_expiry) = (Vec::new(), 0);
        for round in 0..ROUNDS {
            burst(name, 100 + round);
            // The entry is stored; let it pass its 1 s TTL.
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            let before = count("runs", name);
            latencies.extend(burst(name, 100 + round));
            // With `stale`, the callers are answered before the entry is
            // recomputed, by a task: count the recomputations once one has
            // started (or 2 s went by without one) and every one started
            // has ended (bounded, so that a lost one shows as a count).
            let waited = Instant::now();
            while count("runs", name) == before && waited.elapsed() < Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            while count("done", name) < count("runs", name)
                && waited.elapsed() < Duration::from_secs(10)
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            at_expiry += count("runs", name) - before;
        }
        let executions = at_expiry as f64 / ROUNDS as f64;
        row(
            &section,
            contender,
            format!(
                "{executions:.1} executions per expiry; {}",
                percentiles(latencies)
            ),
            None,
        );
    }
}

#[cached_api(key = "profile", ttl = "1h", name = "bench::memory")]
fn memory_profile() -> Profile {
    sample_profile(7)
}

#[cached_api(key = "small", ttl = "1h", name = "bench::memory_small")]
fn memory_small() -> u64 {
    7
}

/// One row of the printed table.
fn row(section: &str, contender: &str, figure: String, ratio: Option<f64>) {
    let ratio = ratio.map_or(String::new(), |ratio| format!("{ratio:.2}×"));
    println!("| {section} | {contender} | {figure} | {ratio} |");
}

/// Operations and per-operation latencies of one timed window.
#[derive(Default)]
struct Sample {
    ops_per_sec: Vec<f64>,
    latencies_ns: Vec<u64>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

impl Sample {
    fn median_ops(&self) -> f64 {
        median(self.ops_per_sec.clone())
    }

    /// This contender's throughput relative to the baseline window measured
    /// just before each of its windows, one per round, sorted: drift
    /// between windows cancels out, and what is left shows in their spread.
    fn paired_ratios(&self, baseline_ops: &[f64]) -> Vec<f64> {
        let ratios = self.ops_per_sec.iter().zip(baseline_ops);
        let mut ratios: Vec<f64> = ratios.map(|(ours, base)| ours / base).collect();
        ratios.sort_by(f64::total_cmp);
        ratios
    }

    fn percentile_us(&mut self, p: f64) -> f64 {
        self.latencies_ns.sort_unstable();
        let at = ((self.latencies_ns.len() - 1) as f64 * p) as usize;
        self.latencies_ns[at] as f64 / 1_000.0
    }
}

/// One call in this many is timed, and checks the window's deadline: a
/// clock read costs a tenth of an in-process hit, and would be counted as
/// part of it.
const TIMED_EVERY: usize = 8;

/// Runs `op` from `tasks` concurrent tasks for one window.
async fn measure<F, Fut>(tasks: usize, op: F, into: &mut Sample)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now();
    let deadline = start + WINDOW;
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                let (mut calls, mut latencies) = (0, Vec::with_capacity(8_192));
                loop {
                    let timed = (calls % TIMED_EVERY == 0).then(Instant::now);
                    if timed.is_some_and(|began| began >= deadline) {
                        break;
                    }
                    op().await;
                    if let Some(began) = timed {
                        latencies.push(began.elapsed().as_nanos() as u64);
                    }
                    calls += 1;
                }
                (calls, latencies)
            })
        })
        .collect();
    let mut ops = 0;
    for worker in workers {
        let (calls, latencies) = worker.await.unwrap();
        ops += calls;
        into.latencies_ns.extend(latencies);
    }
    into.ops_per_sec
        .push(ops as f64 / start.elapsed().as_secs_f64());
}

/// One contender of the hit measures: a name and how to make one call.
type Contender = (
    &'static str,
    Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
);

/// A raw `GET` of the entry's bytes and their decoding: what a handler
/// does by hand, the baseline of the Redis rows.
fn raw_get(name: &'static str, raw: &ConnectionManager) -> Contender {
    let raw = raw.clone();
    contender(name, move || {
        let mut raw = raw.clone();
        async move {
            let bytes: Vec<u8> = redis::cmd("GET")
                .arg("raw:profile")
                .query_async(&mut raw)
                .await
                .unwrap();
            black_box(decode(&bytes));
        }
    })
}

fn contender<F, Fut>(name: &'static str, op: F) -> Contender
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    (name, Box::new(move || Box::pin(op())))
}

/// Rows 1 and 2 for `store`: hit throughput and latency of `contenders`,
/// each window of one paired with a window of the first (the baseline)
/// just before it, round by round.
async fn compare_hits(store: &str, contenders: Vec<Contender>) {
    let contenders: Vec<(&str, Arc<Contender>)> =
        contenders.into_iter().map(|c| (c.0, Arc::new(c))).collect();
    let mut samples: Vec<[Sample; 2]> = contenders.iter().map(|_| Default::default()).collect();
    // The baseline's throughput in the window before each of contender i's.
    let mut paired: Vec<[Vec<f64>; 2]> = contenders.iter().map(|_| Default::default()).collect();
    let baseline = Arc::clone(&contenders[0].1);
    for _ in 0..ROUNDS {
        for (i, (_, contender)) in contenders.iter().enumerate().skip(1) {
            for (c, &tasks) in CONCURRENCY.iter().enumerate() {
                let base = Arc::clone(&baseline);
                measure(tasks, move || (base.1)(), &mut samples[0][c]).await;
                paired[i][c].push(*samples[0][c].ops_per_sec.last().unwrap());
                let contender = Arc::clone(contender);
                measure(tasks, move || (contender.1)(), &mut samples[i][c]).await;
            }
        }
    }
    let tasks_label = |tasks: usize| format!("{tasks} task{}", if tasks == 1 { "" } else { "s" });
    for (c, &tasks) in CONCURRENCY.iter().enumerate() {
        for (i, (name, _)) in contenders.iter().enumerate() {
            let ops = samples[i][c].median_ops();
            let (figure, ratio) = match i {
                0 => (format!("{ops:.0} ops/s"), 1.0),
                _ => {
                    let ratios = samples[i][c].paired_ratios(&paired[i][c]);
                    let (lowest, highest) = (ratios[0], ratios[ratios.len() - 1]);
                    let figure = format!("{ops:.0} ops/s; pairs {lowest:.2}–{highest:.2}×");
                    (figure, median(ratios))
                }
            };
            row(
                &format!("1. {store} hit throughput, {}", tasks_label(tasks)),
                name,
                figure,
                Some(ratio),
            );
        }
    }
    for (c, &tasks) in CONCURRENCY.iter().enumerate() {
        let base_p50 = samples[0][c].percentile_us(0.5);
        for (i, (name, _)) in contenders.iter().enumerate() {
            let p50 = samples[i][c].percentile_us(0.5);
            let p99 = samples[i][c].percentile_us(0.99);
            row(
                &format!("2. {store} hit latency p50 / p99, {}", tasks_label(tasks)),
                name,
                format!("{p50:.1} µs / {p99:.1} µs"),
                Some(p50 / base_p50),
            );
        }
    }
}

/// The cluster rows: a per-user hit on a 3-master cluster against a raw
/// cluster `GET` (and `MGET` of the two keys, same slot) of the same bytes.
async fn cluster_section(nodes: Vec<String>) {
    let client = redis::cluster::ClusterClient::new(nodes.clone()).unwrap();
    let raw = client.get_async_connection().await.unwrap();
    let profile = sample_profile(USER);
    let bytes = encode(&profile);
    let mut setup = raw.clone();
    let _: () = redis::cmd("MSET")
        .arg("raw:{u:42}:profile")
        .arg(&bytes)
        .arg("raw:gen:{u:42}")
        .arg("7466191830245731841")
        .query_async(&mut setup)
        .await
        .unwrap();
    assert_eq!(user_profile(USER).await, profile);
    assert_eq!(global_profile().await, sample_profile(1));
    let raw_get = |keys: &'static [&'static str]| {
        let raw = raw.clone();
        move || {
            let mut raw = raw.clone();
            async move {
                let command = if keys.len() == 1 { "GET" } else { "MGET" };
                let reply: redis::Value = redis::cmd(command)
                    .arg(keys)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                let bytes = match reply {
                    redis::Value::BulkString(bytes) => bytes,
                    redis::Value::Array(mut items) => match items.swap_remove(0) {
                        redis::Value::BulkString(bytes) => bytes,
                        other => panic!("an entry, not {other:?}"),
                    },
                    other => panic!("an entry, not {other:?}"),
                };
                black_box(decode(&bytes));
            }
        }
    };
    let contenders = vec![
        contender(
            "raw cluster GET + decode (baseline)",
            raw_get(&["raw:{u:42}:profile"]),
        ),
        contender(
            "raw cluster MGET of entry + generation + decode",
            raw_get(&["raw:{u:42}:profile", "raw:gen:{u:42}"]),
        ),
        contender("cached-api, global entry", || async {
            black_box(global_profile().await);
        }),
        contender("cached-api, per-user entry", || async {
            black_box(user_profile(USER).await);
        }),
    ];
    compare_hits("Redis Cluster (3 masters)", contenders).await;
    replicated_invalidation_rows(nodes).await;
}

/// Row 7: what waiting for a replica costs an invalidation, on the 3+3
/// cluster: the same calls with `ReplicaAcks::Off` (the baseline: the
/// master's acknowledgement alone) and the default, one `WAIT` pipelined
/// with the write; pairs of calls alternate, medians of each.
async fn replicated_invalidation_rows(nodes: Vec<String>) {
    use cached_api::config::ReplicaAcks;
    let cache = |acks| {
        cached_api::Cache::builder()
            .redis_cluster(nodes.clone())
            .prefix("bench-wait")
            .replica_acks(acks)
            .build()
            .unwrap()
    };
    let (off, auto) = (cache(ReplicaAcks::Off), cache(ReplicaAcks::Auto));
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let mut times = (Vec::new(), Vec::new());
    for user in 0..501 {
        for (cache, times) in [(&off, &mut times.0), (&auto, &mut times.1)] {
            let began = Instant::now();
            cache.invalidate_user(&user).await.unwrap();
            times.push(began.elapsed());
        }
    }
    let section = "7. Invalidation with replication (3+3 cluster)";
    let (base, waited) = (median(times.0), median(times.1));
    row(
        section,
        "invalidate_user, ReplicaAcks::Off (baseline)",
        format!("{:.0} µs", base.as_secs_f64() * 1e6),
        Some(1.0),
    );
    row(
        section,
        "invalidate_user, ReplicaAcks::Auto (WAIT 1)",
        format!(
            "{:.0} µs (+{:.0} µs)",
            waited.as_secs_f64() * 1e6,
            (waited.as_secs_f64() - base.as_secs_f64()) * 1e6
        ),
        Some(waited.as_secs_f64() / base.as_secs_f64()),
    );
    let mut times = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        for (cache, times) in [(&off, &mut times.0), (&auto, &mut times.1)] {
            let began = Instant::now();
            cache.invalidate_function("bench::per_user").await.unwrap();
            times.push(began.elapsed());
        }
        let blocking = auto.clone();
        let began = Instant::now();
        tokio::task::spawn_blocking(move || {
            blocking
                .invalidate_function_blocking("bench::per_user")
                .unwrap()
        })
        .await
        .unwrap();
        times.2.push(began.elapsed());
        let began = Instant::now();
        auto.invalidate_tag("plans").await.unwrap();
        times.3.push(began.elapsed());
    }
    let (base, waited, blocking) = (median(times.0), median(times.1), median(times.2));
    let tag = median(times.3);
    for (contender, time) in [
        ("invalidate_function, ReplicaAcks::Off (baseline)", base),
        ("invalidate_function, ReplicaAcks::Auto (3 WAITs)", waited),
        ("invalidate_function_blocking, ReplicaAcks::Auto", blocking),
        ("invalidate_tag, ReplicaAcks::Auto (3 WAITs)", tag),
    ] {
        row(
            section,
            contender,
            format!("{:.1} ms", time.as_secs_f64() * 1e3),
            Some(time.as_secs_f64() / base.as_secs_f64()),
        );
    }
}

async fn redis_section(url: String) {
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut raw: ConnectionManager = client.get_connection_manager().await.unwrap();
    let profile = sample_profile(USER);
    let bytes = encode(&profile);
    let _: () = redis::cmd("MSET")
        .arg("raw:profile")
        .arg(&bytes)
        .arg("raw:generation")
        .arg("7466191830245731841")
        .query_async(&mut raw)
        .await
        .unwrap();

    let cached_store = cached::AsyncRedisCache::<String, Profile>::builder("cached:")
        .ttl(Duration::from_secs(3_600))
        .connection_string(&url)
        .connection_manager(true)
        .build()
        .await
        .unwrap();
    cached_store
        .async_cache_set("profile".to_owned(), profile.clone())
        .await
        .unwrap();
    assert_eq!(global_profile().await, sample_profile(1));
    assert_eq!(user_profile(USER).await, profile);
    // The user's generation is tracked by now: the first call computes and
    // keeps the value in L1, the next ones are L1 hits.
    for _ in 0..3 {
        assert_eq!(hot_profile(USER).await, profile);
    }
    assert_eq!(cached_api::stats().function("bench::hot").l1_hits, 2);
    for _ in 0..3 {
        assert_eq!(*shared_profile(USER).await, profile);
    }
    assert_eq!(cached_api::stats().function("bench::hot_shared").l1_hits, 2);
    for _ in 0..3 {
        assert_eq!(tagged_profile(USER).await, profile);
        assert_eq!(hot_tagged_profile(USER).await, profile);
    }
    assert_eq!(cached_api::stats().function("bench::hot_tagged").l1_hits, 2);

    // 1 and 2: hit throughput and latency, contenders interleaved round by round.
    let contenders: Vec<Contender> = vec![
        raw_get("raw GET + decode (baseline)", &raw),
        contender("raw MGET of entry + generation + decode", {
            let raw = raw.clone();
            move || {
                let mut raw = raw.clone();
                async move {
                    let reply: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                        .arg("raw:profile")
                        .arg("raw:generation")
                        .query_async(&mut raw)
                        .await
                        .unwrap();
                    black_box(decode(reply[0].as_deref().unwrap()));
                }
            }
        }),
        contender("cached-api, global entry", || async {
            black_box(global_profile().await);
        }),
        contender("cached-api, per-user entry", || async {
            black_box(user_profile(USER).await);
        }),
        contender("cached-api, per-user entry, `l1` hit", || async {
            black_box(hot_profile(USER).await);
        }),
        contender(
            "cached-api, per-user entry, `l1` hit, `Arc<Profile>` returned",
            || async {
                black_box(shared_profile(USER).await);
            },
        ),
        contender("cached-api, per-user entry, 2 tags", || async {
            black_box(tagged_profile(USER).await);
        }),
        contender("cached-api, per-user entry, 2 tags, `l1` hit", || async {
            black_box(hot_tagged_profile(USER).await);
        }),
        contender("`cached` crate, AsyncRedisCache", {
            let store = cached_store.clone();
            move || {
                let store = store.clone();
                async move {
                    black_box(
                        store
                            .async_cache_get(&"profile".to_owned())
                            .await
                            .unwrap()
                            .unwrap(),
                    );
                }
            }
        }),
        raw_get("raw GET + decode again (the noise of this run)", &raw),
    ];
    compare_hits("Redis", contenders).await;

    // 3: miss cost, one caller, a new key each time.
    const MISSES: u64 = 2_000;
    let began = Instant::now();
    for id in 0..MISSES {
        let key = format!("manual:{id}");
        let found: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(found.is_none());
        let bytes = encode(&sample_profile(id));
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(bytes)
            .arg("PX")
            .arg(3_600_000)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let manual = began.elapsed().as_secs_f64() * 1e6 / MISSES as f64;
    let began = Instant::now();
    for id in 0..MISSES {
        black_box(fresh_profile(USER, id).await);
    }
    let ours = began.elapsed().as_secs_f64() * 1e6 / MISSES as f64;
    row(
        "3. Miss cost (1 task)",
        "GET + SET by hand (baseline)",
        format!("{manual:.1} µs"),
        Some(1.0),
    );
    row(
        "3. Miss cost (1 task)",
        "cached-api, per-user entry",
        format!("{ours:.1} µs"),
        Some(ours / manual),
    );

    // 4: stampede, 64 concurrent first calls of one key.
    let before = EXECUTIONS.load(Ordering::SeqCst);
    let calls: Vec<_> = (0..64).map(|_| tokio::spawn(slow_profile(1))).collect();
    for call in calls {
        call.await.unwrap();
    }
    let ours = EXECUTIONS.load(Ordering::SeqCst) - before;
    let theirs = Arc::new(AtomicU64::new(0));
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let (store, theirs) = (cached_store.clone(), Arc::clone(&theirs));
            tokio::spawn(async move {
                // What #[io_cached] expands to: get, and on a miss compute and set.
                let key = "stampede".to_owned();
                if store.async_cache_get(&key).await.unwrap().is_none() {
                    theirs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    store.async_cache_set(key, sample_profile(1)).await.unwrap();
                }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let theirs = theirs.load(Ordering::SeqCst);
    row(
        "4. Stampede: 64 concurrent first calls",
        "cached-api",
        format!("{ours} execution(s)"),
        None,
    );
    row(
        "4. Stampede: 64 concurrent first calls",
        "`cached` crate",
        format!("{theirs} execution(s)"),
        None,
    );

    coherence_rows().await;
    refresh_rows().await;
    fleet_rows().await;

    // 6: invalidating one user with a million unrelated keys on the server
    // (loaded over a connection without a response timeout: it takes seconds).
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut setup = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(1_000_000)
        .arg("unrelated")
        .arg(16)
        .query_async(&mut setup)
        .await
        .unwrap();
    let victim = 4_242;
    for id in 0..100 {
        fresh_profile(victim, id).await;
    }
    let dbsize: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
    let mut ours = Vec::new();
    for _ in 0..21 {
        let began = Instant::now();
        cached_api::invalidate_user(&victim).await.unwrap();
        ours.push(began.elapsed());
    }
    ours.sort();
    let pattern = format!("manual:{{u:{victim}}}:*");
    let mut theirs = Vec::new();
    for _ in 0..3 {
        let mut pipe = redis::pipe();
        for id in 0..100 {
            pipe.cmd("SET")
                .arg(format!("manual:{{u:{victim}}}:{id}"))
                .arg(&bytes)
                .ignore();
        }
        let _: () = pipe.query_async(&mut raw).await.unwrap();
        let began = Instant::now();
        let mut cursor = 0u64;
        let mut unlinked = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut raw)
                .await
                .unwrap();
            if !keys.is_empty() {
                unlinked += keys.len();
                let _: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(unlinked, 100);
        theirs.push(began.elapsed());
    }
    theirs.sort();
    for id in 0..100 {
        grouped_profile(id).await;
    }
    let mut group = Vec::new();
    for _ in 0..21 {
        let began = Instant::now();
        cached_api::invalidate_tag("bench-group").await.unwrap();
        group.push(began.elapsed());
    }
    group.sort();
    let group = group[group.len() / 2];
    let (ours, theirs) = (ours[ours.len() / 2], theirs[theirs.len() / 2]);
    let section = format!("6. Drop one user's 100 entries, {dbsize} keys on the server");
    row(
        &section,
        "SCAN MATCH + UNLINK (baseline)",
        format!("{:.3} ms", theirs.as_secs_f64() * 1e3),
        Some(1.0),
    );
    row(
        &section,
        "cached-api invalidate_user",
        format!("{:.3} ms", ours.as_secs_f64() * 1e3),
        Some(ours.as_secs_f64() / theirs.as_secs_f64()),
    );
    row(
        &section,
        "cached-api invalidate_tag (100 entries of one tag)",
        format!("{:.3} ms", group.as_secs_f64() * 1e3),
        Some(group.as_secs_f64() / theirs.as_secs_f64()),
    );
}

/// Nanoseconds per call of `op`, over one run of many calls.
fn ns_per_call(op: &mut impl FnMut()) -> f64 {
    const CALLS: u32 = 100_000;
    let began = Instant::now();
    for _ in 0..CALLS {
        op();
    }
    began.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

fn memory_section() {
    let profile = sample_profile(7);
    let moka_profiles = moka::sync::Cache::<String, Profile>::new(10_000);
    moka_profiles.insert("profile".to_owned(), profile.clone());
    let moka_small = moka::sync::Cache::<String, u64>::new(10_000);
    moka_small.insert("small".to_owned(), 7);
    assert_eq!(memory_profile(), profile);
    assert_eq!(memory_small(), 7);

    memory_rows(
        "7. Embedded store hit, 1 kB struct",
        "bare moka get + clone (baseline)",
        || {
            black_box(moka_profiles.get("profile"));
        },
        || {
            black_box(memory_profile());
        },
    );
    memory_rows(
        "7. Embedded store hit, u64",
        "bare moka get (baseline)",
        || {
            black_box(moka_small.get("small"));
        },
        || {
            black_box(memory_small());
        },
    );
}

/// The bare operation and ours, measured in alternating runs: the figures
/// are medians, the ratio the median of each run's ratio, so that drift of
/// a shared machine between runs cancels out.
fn memory_rows(section: &str, baseline: &str, mut bare: impl FnMut(), mut ours: impl FnMut()) {
    let (mut bares, mut ourses, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (b, o) = (ns_per_call(&mut bare), ns_per_call(&mut ours));
        bares.push(b);
        ourses.push(o);
        ratios.push(o / b);
    }
    let (bare, ours, ratio) = (median(bares), median(ourses), median(ratios));
    row(section, baseline, format!("{bare:.0} ns"), Some(1.0));
    row(
        section,
        "cached-api, sync fn",
        format!("{ours:.0} ns"),
        Some(ratio),
    );
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let redis = std::process::Command::new(support::redis_server_binary())
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores; {redis}; client and server share the machine")
}

/// Row 5: how long after `invalidate_user` returns in another process this
/// one stops serving the user's old value from L1: the other process
/// stamps the moment its call returned, this one the moment a call of the
/// user first ran the function again (it calls without pause meanwhile).
async fn coherence_rows() {
    const ROUNDS: u64 = 300;
    let mut invalidator =
        support::peer::Peer::start("invalidator", &[("CACHED_API_BENCH_INVALIDATOR", "1")]);
    let mut delays_us = Vec::with_capacity(ROUNDS as usize);
    let mut early = 0;
    for round in 0..ROUNDS {
        let user = 1_000_000 + round;
        for _ in 0..3 {
            black_box(hot_profile(user).await);
        }
        let executions = HOT_EXECUTIONS.load(Ordering::SeqCst);
        invalidator.send(&format!("invalidate {user}"));
        while HOT_EXECUTIONS.load(Ordering::SeqCst) == executions {
            black_box(hot_profile(user).await);
            tokio::task::yield_now().await;
        }
        let seen = unix_nanos();
        let returned: i128 = invalidator.receive().parse().unwrap();
        let delay = seen - returned;
        if delay <= 0 {
            early += 1;
        }
        delays_us.push(delay.max(0) as f64 / 1_000.0);
    }
    delays_us.sort_by(f64::total_cmp);
    let at = |p: f64| delays_us[((delays_us.len() - 1) as f64 * p) as usize];
    row(
        "5. Invalidation to coherence across two processes (L1 hits until the push arrives)",
        "delay p50 / p99 / max",
        format!(
            "{:.0} µs / {:.0} µs / {:.0} µs ({early} of {ROUNDS} before the invalidating call returned)",
            at(0.5),
            at(0.99),
            at(1.0)
        ),
        None,
    );
}

/// Row 8: callers that had to wait for a computation, per 1 s TTL window,
/// under steady load from 8 tasks for 3 windows, without and with `refresh`.
async fn refresh_rows() {
    const WINDOWS: u32 = 3;
    async fn steady<F, Fut>(call: F) -> Duration
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Profile> + Send,
    {
        black_box(call().await);
        let deadline = Instant::now() + Duration::from_secs(u64::from(WINDOWS));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let call = call.clone();
                tokio::spawn(async move {
                    let mut slowest = Duration::ZERO;
                    while Instant::now() < deadline {
                        let began = Instant::now();
                        black_box(call().await);
                        slowest = slowest.max(began.elapsed());
                    }
                    slowest
                })
            })
            .collect();
        let mut slowest = Duration::ZERO;
        for task in tasks {
            slowest = slowest.max(task.await.unwrap());
        }
        slowest
    }
    let section = "8. Refresh-ahead: callers that waited for a computation, per 1 s TTL window (8 tasks, 3 windows)";
    for (name, id, slowest) in [
        (
            "without `refresh`",
            "bench::expiring",
            steady(expiring_profile).await,
        ),
        (
            "`refresh = true`",
            "bench::refreshed",
            steady(refreshed_profile).await,
        ),
    ] {
        let counts = cached_api::stats().function(id);
        let waited = (counts.misses - 1) + counts.coalesced;
        row(
            section,
            name,
            format!(
                "{:.1} per window; {} early recomputations; slowest call {:.1} ms",
                f64::from(u32::try_from(waited).unwrap_or(u32::MAX)) / f64::from(WINDOWS),
                counts.refreshes,
                slowest.as_secs_f64() * 1e3
            ),
            None,
        );
    }
}

fn unix_nanos() -> i128 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_nanos() as i128
}

/// The other process of row 5: invalidates users when told to, and answers
/// the moment each invalidation returned.
fn invalidator() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    support::peer::serve(|verb, user| {
        assert_eq!(verb, "invalidate");
        runtime.block_on(cached_api::invalidate_user(user)).unwrap();
        unix_nanos().to_string()
    });
}

/// `cargo bench --bench compare [-- redis|cluster|memory]`: every part by default.
fn main() {
    if std::env::var_os("CACHED_API_BENCH_INVALIDATOR").is_some() {
        invalidator();
        return;
    }
    if std::env::var_os("CACHED_API_BENCH_FLEET").is_some() {
        fleet_member();
        return;
    }
    if std::env::var_os("CACHED_API_BENCH_REDIS").is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = std::env::var("CACHED_API_REDIS_URL").unwrap();
        runtime.block_on(redis_section(url));
        return;
    }
    if let Some(nodes) = std::env::var_os("CACHED_API_BENCH_CLUSTER") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let nodes = nodes
            .to_str()
            .unwrap()
            .split(' ')
            .map(str::to_owned)
            .collect();
        runtime.block_on(cluster_section(nodes));
        return;
    }
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let wants = |part: &str| only.is_empty() || only.iter().any(|arg| arg == part);
    println!("Machine: {}", machine());
    println!(
        "Throughput: {ROUNDS} rounds of {WINDOW:?} windows; each window of a contender follows one of its baseline, and the ratio is the median of those pairs' ratios (their lowest and highest beside the figure). The baseline measured again as a contender shows the noise of the run. Latency: every {TIMED_EVERY}th call of those windows is timed.\n"
    );
    println!("| measure | contender | figure | ratio to baseline |");
    println!("|---|---|---|---|");
    if wants("redis") {
        let server = support::RedisServer::start_with(
            support::free_port(),
            &["--enable-debug-command", "yes"],
        );
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env("CACHED_API_BENCH_REDIS", "1")
            .env("CACHED_API_REDIS_URL", server.url())
            .env("CACHED_API_PREFIX", "bench")
            .status()
            .unwrap();
        assert!(status.success(), "the Redis part of the benchmark failed");
    }
    if wants("cluster") {
        let cluster = support::cluster::RedisCluster::start(3);
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env("CACHED_API_BENCH_CLUSTER", cluster.urls().join(" "))
            // The environment form a service would use.
            .env("CACHED_API_REDIS_URL", cluster.url())
            .env("CACHED_API_PREFIX", "bench")
            .status()
            .unwrap();
        assert!(status.success(), "the cluster part of the benchmark failed");
    }
    if wants("memory") {
        memory_section();
    }
}
