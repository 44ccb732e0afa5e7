//! Behaviour every store must have, run by `tests/memory.rs` and
//! `tests/redis.rs` against the process-wide cache each of them sets up.
//!
//! Tests run in parallel in one process and share the cache, so each uses
//! its own users (`unique`) and counts executions per call site (`Runs`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::Duration;

use cached_api::cached_api;
use proptest::prop_assert_eq;
use proptest::test_runner::{Config, TestRunner};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tokio::sync::{Barrier, Notify};

/// One multi-threaded runtime for the whole binary: the Redis connection
/// lives on the runtime that opened it.
pub fn rt() -> &'static Runtime {
    static RT: LazyLock<Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    &RT
}

/// Runs `test` on the shared runtime, failing it if it hangs.
pub fn run<F: std::future::Future<Output = ()> + Send + 'static>(test: F) {
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(30), test)
            .await
            .expect("the test hung: a caller waited forever")
    })
}

/// Waits until `condition` holds, calling `call` between checks: for
/// states with no signal to wait on (the breaker closes only after a call
/// probes Redis). The test's own timeout bounds the wait.
pub async fn keep_calling_until<F: std::future::Future<Output = ()>>(
    condition: impl Fn() -> bool,
    mut call: impl FnMut() -> F,
) {
    while !condition() {
        call().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `condition` holds while other tasks make it true.
pub async fn wait_until(condition: impl Fn() -> bool) {
    keep_calling_until(condition, || async {}).await;
}

/// [`wait_until`] for threads: checks `condition` every millisecond, and
/// fails the test if it does not hold within 30 s (a hang, not a timing).
pub fn wait_until_blocking(condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "the test hung");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Calls from 16 tasks over 16 users until stopped; every answer checked.
pub struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    /// Calls answered, per user (in the order given).
    per_user: Arc<Vec<AtomicU64>>,
    users: Vec<String>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(users: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let per_user: Arc<Vec<AtomicU64>> =
            Arc::new(users.iter().map(|_| AtomicU64::new(0)).collect());
        let workers = users
            .iter()
            .cloned()
            .enumerate()
            .map(|(index, user)| {
                let (stop, calls) = (Arc::clone(&stop), Arc::clone(&calls));
                let per_user = Arc::clone(&per_user);
                rt().spawn(async move {
                    let mut id = 0;
                    while !stop.load(Ordering::SeqCst) {
                        id = (id + 1) % 4;
                        let answer = profile(user.clone(), id).await.expect("never fails");
                        assert_eq!(
                            (answer.user.as_str(), answer.id),
                            (user.as_str(), id),
                            "wrong entry"
                        );
                        calls.fetch_add(1, Ordering::SeqCst);
                        per_user[index].fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            calls,
            per_user,
            users,
            workers,
        }
    }

    /// Calls answered so far for `users`.
    pub fn calls_of(&self, users: &[String]) -> u64 {
        self.users
            .iter()
            .zip(self.per_user.iter())
            .filter(|(user, _)| users.contains(user))
            .map(|(_, calls)| calls.load(Ordering::SeqCst))
            .sum()
    }

    /// A condition that holds once `by` more calls have answered.
    pub fn progressed(&self, by: u64) -> impl Fn() -> bool + Send + 'static {
        let calls = Arc::clone(&self.calls);
        let from = calls.load(Ordering::SeqCst);
        move || calls.load(Ordering::SeqCst) >= from + by
    }

    /// A condition that holds once the worker of `user` has answered `by`
    /// more calls.
    pub fn progressed_for(&self, user: &str, by: u64) -> impl Fn() -> bool + Send + 'static {
        let index = self
            .users
            .iter()
            .position(|each| each == user)
            .expect("a user of the load");
        let per_user = Arc::clone(&self.per_user);
        let from = per_user[index].load(Ordering::SeqCst);
        move || per_user[index].load(Ordering::SeqCst) >= from + by
    }

    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            rt().block_on(worker)
                .expect("no worker saw a wrong or failed answer");
        }
        self.calls.load(Ordering::SeqCst)
    }
}

/// Runs `test` on the shared runtime, like [`run`], and returns its value.
pub fn run_returning<T: Send + 'static>(
    test: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let slot = Arc::new(std::sync::Mutex::new(None));
    let out = Arc::clone(&slot);
    run(async move {
        *out.lock().unwrap() = Some(test.await);
    });
    let value = slot.lock().unwrap().take();
    value.expect("the test ran")
}

/// A name no other test uses.
pub fn unique(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// How often each function body ran, per tag.
static RUNS: LazyLock<Mutex<HashMap<String, u32>>> = LazyLock::new(Default::default);

fn ran(tag: &str) -> u32 {
    let mut runs = RUNS.lock().unwrap();
    let count = runs.entry(tag.to_owned()).or_default();
    *count += 1;
    *count
}

pub fn runs(tag: &str) -> u32 {
    RUNS.lock().unwrap().get(tag).copied().unwrap_or(0)
}

/// The "database" behind the cached functions: a value per user.
static SOURCE: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Default::default);

fn source(user: &str) -> String {
    SOURCE
        .lock()
        .unwrap()
        .get(user)
        .cloned()
        .unwrap_or_else(|| "v1".to_owned())
}

pub fn set_source(user: &str, value: &str) {
    SOURCE
        .lock()
        .unwrap()
        .insert(user.to_owned(), value.to_owned());
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub user: String,
    pub id: u32,
    pub value: String,
}

#[cached_api(key = "profile:{id}", user = user, ttl = "15m")]
pub async fn profile(user: String, id: u32) -> Result<Profile, String> {
    ran(&format!("profile/{user}/{id}"));
    Ok(Profile {
        value: source(&user),
        user,
        id,
    })
}

pub fn profile_runs(user: &str, id: u32) -> u32 {
    runs(&format!("profile/{user}/{id}"))
}

/// `Err` for odd ids: never cached.
#[cached_api(user = user, ttl = 60)]
pub async fn fallible(user: String, id: u32) -> Result<u32, String> {
    ran(&format!("fallible/{user}/{id}"));
    if !id.is_multiple_of(2) {
        Err(format!("{id} is odd"))
    } else {
        Ok(id)
    }
}

#[cached_api(user = user)]
pub async fn maybe(user: String, id: u32) -> Option<u32> {
    ran(&format!("maybe/{user}/{id}"));
    id.is_multiple_of(2).then_some(id)
}

#[cached_api(user = user, none = true)]
pub async fn maybe_cache_none(user: String, id: u32) -> Option<u32> {
    ran(&format!("maybe_cache_none/{user}/{id}"));
    id.is_multiple_of(2).then_some(id)
}

#[cached_api(key = "sync:{id}", user = user, ttl = "1h")]
pub fn profile_sync(user: &str, id: u32) -> String {
    ran(&format!("sync/{user}/{id}"));
    format!("{}:{id}", source(user))
}

/// Two types with a method of the same name and signature in one module.
pub struct Plans;
pub struct Prices;

impl Plans {
    #[cached_api(key = "{id}")]
    pub async fn get(&self, id: String) -> String {
        ran(&format!("plans/{id}"));
        format!("plan {id}")
    }
}

impl Prices {
    #[cached_api(key = "{id}")]
    pub async fn get(&self, id: String) -> String {
        ran(&format!("prices/{id}"));
        format!("price {id}")
    }
}

/// Keyed by a template of two values, whose separator they may contain.
#[cached_api(key = "{a}:{b}", user = user)]
pub async fn pair(user: String, a: String, b: String) -> (String, String, String) {
    (user, a, b)
}

#[cached_api(user = user, key = key)]
pub fn echo(user: &str, key: &str) -> (String, String) {
    (user.to_owned(), key.to_owned())
}

/// Gates that a test holds a function body at, keyed by tag.
#[derive(Default)]
pub struct Gate {
    /// Callers that have started; the body waits for all of them.
    started: Mutex<usize>,
    all_started: Notify,
    all_started_blocking: Condvar,
    expected: usize,
    /// For the stale-write race: body and test meet twice.
    meet: Option<Barrier>,
    /// Whether the test let a held body go on.
    released: Mutex<bool>,
    release: Condvar,
    release_async: Notify,
}

static GATES: LazyLock<Mutex<HashMap<String, Arc<Gate>>>> = LazyLock::new(Default::default);

fn gate(tag: &str) -> Arc<Gate> {
    gate_if_set(tag).expect("the test set a gate")
}

fn gate_if_set(tag: &str) -> Option<Arc<Gate>> {
    GATES.lock().unwrap().get(tag).cloned()
}

/// Makes `tag` wait at the same gate as `other`.
pub fn share_gate(tag: &str, other: &str) {
    let gate = gate(other);
    GATES.lock().unwrap().insert(tag.to_owned(), gate);
}

pub fn set_gate(tag: &str, expected: usize, meet: bool) -> Arc<Gate> {
    let gate = Arc::new(Gate {
        expected,
        meet: meet.then(|| Barrier::new(2)),
        ..Gate::default()
    });
    GATES
        .lock()
        .unwrap()
        .insert(tag.to_owned(), Arc::clone(&gate));
    gate
}

impl Gate {
    pub fn start(&self) {
        let mut started = self.started.lock().unwrap();
        *started += 1;
        if *started >= self.expected {
            self.all_started.notify_waiters();
            self.all_started_blocking.notify_all();
        }
    }

    async fn wait_all_started(&self) {
        loop {
            let notified = self.all_started.notified();
            if *self.started.lock().unwrap() >= self.expected {
                return;
            }
            notified.await;
        }
    }

    pub fn has_started(&self) -> bool {
        *self.started.lock().unwrap() >= self.expected
    }

    pub fn wait_all_started_blocking(&self) {
        let started = self.started.lock().unwrap();
        drop(
            self.all_started_blocking
                .wait_while(started, |started| *started < self.expected)
                .unwrap(),
        );
    }

    pub fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.release.notify_all();
        self.release_async.notify_waiters();
    }

    async fn released(&self) {
        loop {
            let notified = self.release_async.notified();
            if *self.released.lock().unwrap() {
                return;
            }
            notified.await;
        }
    }

    fn wait_released(&self) {
        let released = self.released.lock().unwrap();
        drop(
            self.release
                .wait_while(released, |released| !*released)
                .unwrap(),
        );
    }

    pub async fn meet(&self) {
        self.meet.as_ref().expect("a meeting gate").wait().await;
    }
}

/// Waits for every caller to start before returning: all of them miss
/// together, and only single-flight keeps the body to one run.
#[cached_api(key = "{tag}", name = "behaviour::slow")]
pub async fn slow(tag: String) -> String {
    ran(&tag);
    gate(&tag).wait_all_started().await;
    format!("computed {tag}")
}

/// [`slow`], computed under a lease in the store.
#[cached_api(key = "{tag}", name = "behaviour::leased", lock = true)]
pub async fn leased(tag: String) -> String {
    ran(&tag);
    gate(&tag).wait_all_started().await;
    format!("computed {tag}")
}

/// A sync function of a user's, computed under a lease.
#[cached_api(key = "{tag}", user = user, name = "behaviour::leased_sync", lock = "3s")]
pub fn leased_sync(user: &str, tag: &str) -> String {
    ran(&format!("leased_sync/{user}/{tag}"));
    format!("computed {tag}")
}

/// [`slow`] for sync functions: the waiting happens on threads.
#[cached_api(key = "{tag}")]
pub fn slow_sync(tag: &str) -> String {
    ran(tag);
    gate(tag).wait_all_started_blocking();
    format!("computed {tag}")
}

/// Holds its body until the test releases it, so that a second caller
/// must wait for it as a follower.
#[cached_api(key = "{tag}", name = "behaviour::held_sync")]
pub fn held_sync(tag: &str) -> String {
    ran(tag);
    let gate = gate(tag);
    gate.start();
    gate.wait_released();
    format!("computed {tag}")
}

/// Panics on its first run, after every caller has started.
#[cached_api(key = "{tag}", name = "behaviour::panics_first")]
pub async fn panics_first(tag: String) -> String {
    if ran(&tag) == 1 {
        gate(&tag).wait_all_started().await;
        panic!("leader panics on purpose");
    }
    format!("computed {tag}")
}

/// Never finishes its first run; later runs return at once.
#[cached_api(key = "{tag}")]
pub async fn hangs_first(tag: String) -> String {
    if ran(&tag) == 1 {
        gate(&tag).meet().await;
        std::future::pending::<()>().await;
    }
    format!("computed {tag}")
}

/// Reads the source, then (on its first run) lets the test invalidate the
/// user before it returns: the value it stores is stale when stored.
#[cached_api(user = user, key = "race")]
pub async fn racy(user: String) -> String {
    let value = source(&user);
    if ran(&format!("racy/{user}")) == 1 {
        let gate = gate(&user);
        gate.meet().await;
        gate.meet().await;
    }
    value
}

/// A global entry of a function that only the function-wide tests use.
#[cached_api(name = "behaviour::catalog", key = "{tag}")]
pub async fn catalog(tag: String) -> String {
    ran(&format!("catalog/{tag}"));
    source(&tag)
}

/// A per-user entry of the same kind, for a sync caller.
#[cached_api(name = "behaviour::catalog_for", key = "{tag}", user = user)]
pub fn catalog_for(user: &str, tag: &str) -> String {
    ran(&format!("catalog_for/{user}/{tag}"));
    source(tag)
}

/// Another function, which the function-wide invalidation must not touch.
#[cached_api(name = "behaviour::catalog_other", key = "{tag}")]
pub async fn catalog_other(tag: String) -> String {
    ran(&format!("catalog_other/{tag}"));
    source(&tag)
}

/// [`racy`], for the function-wide invalidation.
#[cached_api(name = "behaviour::racy_function", key = "{tag}")]
pub async fn racy_function(tag: String) -> String {
    let value = source(&tag);
    if ran(&format!("racy_function/{tag}")) == 1 {
        let gate = gate(&tag);
        gate.meet().await;
        gate.meet().await;
    }
    value
}

/// A member's view of an organisation, dropped with the organisation's tag
/// or the tag every dashboard carries; kept in process too (`l1`).
#[cached_api(key = "{org}", user = user, tags = ["org:{org}", "dashboards"], l1 = true)]
pub async fn dashboard(user: String, org: String) -> String {
    ran(&format!("dashboard/{user}/{org}"));
    source(&org)
}

/// A global entry of the same organisation, in another function.
#[cached_api(key = "{org}", tags = ["org:{org}"])]
pub async fn org_settings(org: String) -> String {
    ran(&format!("org_settings/{org}"));
    source(&org)
}

/// The same tag from a sync function, with a template of its own.
#[cached_api(key = "{org}", user = user, tags = ["org:{org}"])]
pub fn member_view(user: &str, org: &str) -> String {
    ran(&format!("member_view/{user}/{org}"));
    source(org)
}

/// [`racy`], for the tag invalidation.
#[cached_api(key = "{tag}", tags = ["race:{tag}"])]
pub async fn racy_tagged(tag: String) -> String {
    let value = source(&tag);
    if ran(&format!("racy_tagged/{tag}")) == 1 {
        let gate = gate(&tag);
        gate.meet().await;
        gate.meet().await;
    }
    value
}

/// [`racy`], for single-entry invalidation: per user, and with an
/// argument the key does not read (so the companion does not take it).
#[cached_api(
    name = "behaviour::racy_entry",
    key = "{tag}",
    user = user,
    invalidate = forget_racy_entry
)]
pub async fn racy_entry(user: String, tag: String, attempt: u32) -> String {
    let _ = attempt;
    let value = source(&tag);
    if ran(&format!("racy_entry/{tag}")) == 1 {
        let gate = gate(&tag);
        gate.meet().await;
        gate.meet().await;
    }
    format!("{user}:{value}")
}

/// One entry per tag, each droppable alone; sync.
#[cached_api(name = "behaviour::label", key = "{tag}", invalidate = forget_label)]
pub fn label(tag: &str) -> String {
    ran(&format!("label/{tag}"));
    source(tag)
}

/// A value of `size` bytes; the suites cap stored values at [`MAX_VALUE_SIZE`].
#[cached_api(name = "behaviour::sized", key = "{size}", user = user)]
pub fn sized(user: &str, size: usize) -> String {
    ran(&format!("sized/{user}/{size}"));
    "x".repeat(size)
}

pub const MAX_VALUE_SIZE: usize = 64 * 1024;

/// The source's value, or an error while it is "down"; held at the tag's
/// gate if the test set one. Entries live 1 s and answer stale 3 s more.
#[cached_api(name = "behaviour::stale_sync", key = "{tag}", ttl = 1, stale = 3)]
pub fn stale_sync(tag: &str) -> Result<String, String> {
    ran(tag);
    match source(tag).as_str() {
        "down" => Err("the source is down".to_owned()),
        value => Ok(value.to_owned()),
    }
}

/// [`stale_async`] for sync functions: the caller that finds the entry
/// stale recomputes it.
#[cached_api(name = "behaviour::stale_held", key = "{tag}", ttl = 1, stale = 60)]
pub fn stale_held(tag: &str) -> String {
    ran(tag);
    if let Some(gate) = gate_if_set(tag) {
        gate.start();
        gate.wait_released();
    }
    source(tag)
}

/// Entries live 1 s and answer stale a minute more; held at the tag's
/// gate, if the test set one, until it is released. It borrows nothing,
/// so stale entries are recomputed by a task of their own.
#[cached_api(name = "behaviour::stale_async", key = "{tag}", ttl = 1, stale = 60)]
pub async fn stale_async(tag: String) -> String {
    ran(&tag);
    if let Some(gate) = gate_if_set(&tag) {
        gate.start();
        gate.released().await;
    }
    source(&tag)
}

#[cached_api(name = "behaviour::counted", key = "{id}")]
pub async fn counted(id: u32) -> u32 {
    id
}

pub fn second_call_is_a_hit<S: StoreUnderTest>() {
    S::install();
    run(async {
        let user = unique("hit");
        let first = profile(user.clone(), 1).await.unwrap();
        let second = profile(user.clone(), 1).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(first.user, user);
        assert_eq!(
            profile_runs(&user, 1),
            1,
            "the second call must not run the body"
        );
        profile(user.clone(), 2).await.unwrap();
        assert_eq!(profile_runs(&user, 2), 1, "another key is another entry");
    });
}

pub fn users_are_isolated<S: StoreUnderTest>() {
    S::install();
    run(async {
        let (a, b) = (unique("iso-a"), unique("iso-b"));
        set_source(&a, "a's data");
        set_source(&b, "b's data");
        assert_eq!(profile(a.clone(), 1).await.unwrap().value, "a's data");
        assert_eq!(profile(b.clone(), 1).await.unwrap().value, "b's data");
        assert_eq!(profile(a.clone(), 1).await.unwrap().value, "a's data");
        assert_eq!(profile(b.clone(), 1).await.unwrap().value, "b's data");
        assert_eq!((profile_runs(&a, 1), profile_runs(&b, 1)), (1, 1));
    });
}

pub fn invalidate_user_drops_only_that_user<S: StoreUnderTest>() {
    S::install();
    run(async {
        let (a, b) = (unique("inv-a"), unique("inv-b"));
        profile(a.clone(), 1).await.unwrap();
        profile(a.clone(), 2).await.unwrap();
        profile(b.clone(), 1).await.unwrap();
        set_source(&a, "a v2");
        set_source(&b, "b v2");
        cached_api::invalidate_user(&a)
            .await
            .expect("invalidation succeeds");
        assert_eq!(profile(a.clone(), 1).await.unwrap().value, "a v2");
        assert_eq!(profile(a.clone(), 2).await.unwrap().value, "a v2");
        assert_eq!(
            profile(b.clone(), 1).await.unwrap().value,
            "v1",
            "b stays cached"
        );
        assert_eq!(
            (
                profile_runs(&a, 1),
                profile_runs(&a, 2),
                profile_runs(&b, 1)
            ),
            (2, 2, 1)
        );
    });
}

pub fn errors_are_not_cached<S: StoreUnderTest>() {
    S::install();
    run(async {
        let user = unique("err");
        for _ in 0..3 {
            assert_eq!(fallible(user.clone(), 1).await, Err("1 is odd".to_owned()));
            assert_eq!(fallible(user.clone(), 2).await, Ok(2));
        }
        assert_eq!(runs(&format!("fallible/{user}/1")), 3);
        assert_eq!(runs(&format!("fallible/{user}/2")), 1);
    });
}

pub fn none_is_cached_only_when_asked<S: StoreUnderTest>() {
    S::install();
    run(async {
        let user = unique("none");
        for _ in 0..3 {
            assert_eq!(maybe(user.clone(), 1).await, None);
            assert_eq!(maybe(user.clone(), 2).await, Some(2));
            assert_eq!(maybe_cache_none(user.clone(), 1).await, None);
        }
        assert_eq!(runs(&format!("maybe/{user}/1")), 3);
        assert_eq!(runs(&format!("maybe/{user}/2")), 1);
        assert_eq!(runs(&format!("maybe_cache_none/{user}/1")), 1);
    });
}

pub fn sync_functions_cache_and_invalidate<S: StoreUnderTest>() {
    S::install();
    let user = unique("sync");
    assert_eq!(profile_sync(&user, 1), "v1:1");
    assert_eq!(profile_sync(&user, 1), "v1:1");
    assert_eq!(runs(&format!("sync/{user}/1")), 1);
    set_source(&user, "v2");
    cached_api::blocking::invalidate_user(&user).expect("invalidation succeeds");
    assert_eq!(profile_sync(&user, 1), "v2:1");
    assert_eq!(runs(&format!("sync/{user}/1")), 2);
}

pub fn methods_of_different_types_have_their_own_entries<S: StoreUnderTest>() {
    S::install();
    run(async {
        let id = unique("method");
        assert_eq!(Plans.get(id.clone()).await, format!("plan {id}"));
        assert_eq!(Prices.get(id.clone()).await, format!("price {id}"));
        assert_eq!(Plans.get(id.clone()).await, format!("plan {id}"));
        assert_eq!(Prices.get(id.clone()).await, format!("price {id}"));
        assert_eq!(
            (runs(&format!("plans/{id}")), runs(&format!("prices/{id}"))),
            (1, 1)
        );
        // Each is a function of its own, by its type's path: its own stats
        // row, and dropping one leaves the other.
        let plans = concat!(module_path!(), "::Plans::get");
        let prices = concat!(module_path!(), "::Prices::get");
        let rows = cached_api::stats();
        assert!(
            rows.functions.contains_key(plans) && rows.functions.contains_key(prices),
            "{:?}",
            rows.functions.keys()
        );
        cached_api::invalidate_function(plans)
            .await
            .expect("invalidation succeeds");
        assert_eq!(Plans.get(id.clone()).await, format!("plan {id}"));
        assert_eq!(Prices.get(id.clone()).await, format!("price {id}"));
        assert_eq!(
            (runs(&format!("plans/{id}")), runs(&format!("prices/{id}"))),
            (2, 1)
        );
    });
}

pub fn concurrent_first_calls_run_the_body_once<S: StoreUnderTest>() {
    S::install();
    run(async {
        let tag = unique("stampede");
        let gate = set_gate(&tag, 64, false);
        let calls: Vec<_> = (0..64)
            .map(|_| {
                let (tag, gate) = (tag.clone(), gate.clone());
                tokio::spawn(async move {
                    gate.start();
                    slow(tag).await
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), format!("computed {tag}"));
        }
        let stats = cached_api::stats().function("behaviour::slow");
        assert_eq!(
            runs(&tag),
            1,
            "64 concurrent misses must run the body once: {stats:?}"
        );
    });
}

pub fn with_lock_concurrent_first_calls_run_the_body_once_under_one_lease<S: StoreUnderTest>() {
    S::install();
    run(async {
        let tag = unique("leased");
        let gate = set_gate(&tag, 16, false);
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let (tag, gate) = (tag.clone(), gate.clone());
                tokio::spawn(async move {
                    gate.start();
                    leased(tag).await
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), format!("computed {tag}"));
        }
        assert_eq!(leased(tag.clone()).await, format!("computed {tag}"));
        assert_eq!(runs(&tag), 1);
        let user = unique("leased-user");
        let (sync_user, sync_tag) = (user.clone(), tag.clone());
        tokio::task::spawn_blocking(move || {
            for _ in 0..2 {
                assert_eq!(
                    leased_sync(&sync_user, &sync_tag),
                    format!("computed {sync_tag}")
                );
            }
        })
        .await
        .unwrap();
        cached_api::invalidate_user(&user).await.unwrap();
        let (sync_user, sync_tag) = (user.clone(), tag.clone());
        tokio::task::spawn_blocking(move || leased_sync(&sync_user, &sync_tag))
            .await
            .unwrap();
        assert_eq!(runs(&format!("leased_sync/{user}/{tag}")), 2);
        for function in ["behaviour::leased", "behaviour::leased_sync"] {
            let counts = cached_api::stats().function(function);
            // On a cluster, a lease outside its entry's slot would fail (and
            // the call compute without it): counted here.
            assert_eq!(counts.errors, 0, "{function}: {counts:?}");
        }
    });
}

pub fn concurrent_first_calls_of_a_sync_function_run_the_body_once<S: StoreUnderTest>() {
    S::install();
    let tag = unique("stampede-sync");
    let gate = set_gate(&tag, 16, false);
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    gate.start();
                    slow_sync(&tag)
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.join().unwrap(), format!("computed {tag}"));
        }
    });
    assert_eq!(
        runs(&tag),
        1,
        "16 concurrent misses on threads must run the body once"
    );
}

pub fn a_sync_follower_blocks_its_thread_until_the_leader_lands<S: StoreUnderTest>() {
    S::install();
    let tag = unique("held-sync");
    let gate = set_gate(&tag, 1, false);
    let coalesced = || {
        cached_api::stats()
            .function("behaviour::held_sync")
            .coalesced
    };
    let before = coalesced();
    std::thread::scope(|scope| {
        let leader = scope.spawn(|| held_sync(&tag));
        gate.wait_all_started_blocking();
        let follower = scope.spawn(|| held_sync(&tag));
        // The follower counts itself before it waits: the signal that it
        // is blocked behind the leader, which is still held.
        wait_until_blocking(|| coalesced() > before);
        assert!(!follower.is_finished(), "the follower waits for the leader");
        gate.release();
        assert_eq!(leader.join().unwrap(), format!("computed {tag}"));
        assert_eq!(
            follower
                .join()
                .expect("a waiting sync caller blocks, never panics"),
            format!("computed {tag}")
        );
    });
    assert_eq!(runs(&tag), 1, "the follower took the leader's value");
}

pub fn a_panicking_leader_does_not_strand_followers<S: StoreUnderTest>() {
    S::install();
    run(async {
        let tag = unique("panic");
        let gate = set_gate(&tag, 8, false);
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (tag, gate) = (tag.clone(), gate.clone());
                tokio::spawn(async move {
                    gate.start();
                    panics_first(tag).await
                })
            })
            .collect();
        let mut panicked = 0;
        for call in calls {
            match call.await {
                Ok(value) => assert_eq!(value, format!("computed {tag}")),
                Err(error) => {
                    assert!(error.is_panic());
                    panicked += 1;
                }
            }
        }
        assert_eq!(panicked, 1, "only the leader panics");
        let stats = cached_api::stats().function("behaviour::panics_first");
        assert_eq!(
            runs(&tag),
            2,
            "one follower takes over, the rest share its result: {stats:?}"
        );
    });
}

pub fn a_cancelled_leader_hands_over<S: StoreUnderTest>() {
    S::install();
    run(async {
        let tag = unique("cancel");
        let gate = set_gate(&tag, 1, true);
        let leader = tokio::spawn(hangs_first(tag.clone()));
        gate.meet().await;
        let follower = tokio::spawn(hangs_first(tag.clone()));
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        assert_eq!(follower.await.unwrap(), format!("computed {tag}"));
        assert_eq!(runs(&tag), 2);
    });
}

pub fn a_value_computed_before_an_invalidation_is_never_served_after_it<S: StoreUnderTest>() {
    S::install();
    run(async {
        let user = unique("race");
        set_source(&user, "old");
        let gate = set_gate(&user, 1, true);
        let slow_write = tokio::spawn(racy(user.clone()));
        gate.meet().await; // the body has read "old" and holds
        set_source(&user, "new");
        cached_api::invalidate_user(&user)
            .await
            .expect("invalidation succeeds");
        gate.meet().await; // the body returns "old", which is then stored
        assert_eq!(slow_write.await.unwrap(), "old");
        assert_eq!(
            racy(user.clone()).await,
            "new",
            "the stale write must not be served"
        );
        assert_eq!(racy(user.clone()).await, "new");
        assert_eq!(runs(&format!("racy/{user}")), 2);
    });
}

pub fn invalidate_function_drops_every_entry_of_that_function_only<S: StoreUnderTest>() {
    S::install();
    run(async {
        let (a, b, user) = (unique("fn-a"), unique("fn-b"), unique("fn-user"));
        for tag in [&a, &b] {
            set_source(tag, "v1");
            assert_eq!(catalog(tag.clone()).await, "v1");
            assert_eq!(catalog_other(tag.clone()).await, "v1");
        }
        let sync_user = user.clone();
        let sync_a = a.clone();
        tokio::task::spawn_blocking(move || assert_eq!(catalog_for(&sync_user, &sync_a), "v1"))
            .await
            .unwrap();
        set_source(&a, "v2");
        set_source(&b, "v2");
        cached_api::invalidate_function("behaviour::catalog")
            .await
            .expect("invalidation succeeds");
        cached_api::invalidate_function("behaviour::catalog_for")
            .await
            .expect("invalidation succeeds");
        assert_eq!(catalog(a.clone()).await, "v2");
        assert_eq!(catalog(b.clone()).await, "v2");
        assert_eq!(catalog(a.clone()).await, "v2", "cached again");
        assert_eq!(
            catalog_other(a.clone()).await,
            "v1",
            "other functions stay cached"
        );
        let (sync_user, sync_a) = (user.clone(), a.clone());
        tokio::task::spawn_blocking(move || assert_eq!(catalog_for(&sync_user, &sync_a), "v2"))
            .await
            .unwrap();
        assert_eq!(
            (
                runs(&format!("catalog/{a}")),
                runs(&format!("catalog/{b}")),
                runs(&format!("catalog_other/{a}")),
                runs(&format!("catalog_for/{user}/{a}")),
            ),
            (2, 2, 1, 2)
        );
    });
}

pub fn invalidate_tag_drops_every_entry_carrying_it_only<S: StoreUnderTest>() {
    S::install();
    run(async {
        let (a, b) = (unique("org-a"), unique("org-b"));
        let (ada, bob) = (unique("ada"), unique("bob"));
        let all = async || {
            let sync = (ada.clone(), a.clone());
            let view = tokio::task::spawn_blocking(move || member_view(&sync.0, &sync.1));
            [
                dashboard(ada.clone(), a.clone()).await,
                dashboard(bob.clone(), a.clone()).await,
                org_settings(a.clone()).await,
                view.await.unwrap(),
                dashboard(ada.clone(), b.clone()).await,
                org_settings(b.clone()).await,
            ]
        };
        let runs_of = || {
            [
                format!("dashboard/{ada}/{a}"),
                format!("dashboard/{bob}/{a}"),
                format!("org_settings/{a}"),
                format!("member_view/{ada}/{a}"),
                format!("dashboard/{ada}/{b}"),
                format!("org_settings/{b}"),
            ]
            .map(|tag| runs(&tag))
        };
        assert_eq!(all().await, ["v1"; 6].map(String::from));
        assert_eq!(all().await, ["v1"; 6].map(String::from), "cached");
        assert_eq!(runs_of(), [1; 6]);

        set_source(&a, "v2");
        set_source(&b, "v2");
        cached_api::invalidate_tag(&format!("org:{a}"))
            .await
            .expect("invalidation succeeds");
        let [a1, a2, a3, a4, b1, b2] = all().await;
        assert_eq!(
            [a1, a2, a3, a4],
            ["v2"; 4].map(String::from),
            "org a dropped"
        );
        assert_eq!([b1, b2], ["v1"; 2].map(String::from), "org b kept");
        all().await;
        assert_eq!(
            runs_of(),
            [2, 2, 2, 2, 1, 1],
            "recomputed once, then cached"
        );

        // Another tag of the same entries, from a thread.
        tokio::task::spawn_blocking(|| cached_api::blocking::invalidate_tag("dashboards"))
            .await
            .unwrap()
            .expect("invalidation succeeds");
        let [_, _, _, _, b1, b2] = all().await;
        assert_eq!(
            (b1.as_str(), b2.as_str()),
            ("v2", "v1"),
            "only dashboards dropped"
        );
        assert_eq!(runs_of(), [3, 3, 2, 2, 2, 1]);
    });
}

pub fn a_value_computed_before_a_tag_invalidation_is_never_served_after_it<S: StoreUnderTest>() {
    S::install();
    run(async {
        let tag = unique("tag-race");
        set_source(&tag, "old");
        let gate = set_gate(&tag, 1, true);
        let slow_write = tokio::spawn(racy_tagged(tag.clone()));
        gate.meet().await; // the body has read "old" and holds
        set_source(&tag, "new");
        cached_api::invalidate_tag(&format!("race:{tag}"))
            .await
            .expect("invalidation succeeds");
        gate.meet().await; // the body returns "old", which is then stored
        assert_eq!(slow_write.await.unwrap(), "old");
        assert_eq!(
            racy_tagged(tag.clone()).await,
            "new",
            "the stale write must not be served"
        );
        assert_eq!(racy_tagged(tag.clone()).await, "new");
        assert_eq!(runs(&format!("racy_tagged/{tag}")), 2);
    });
}

pub fn a_value_computed_before_a_function_invalidation_is_never_served_after_it<
    S: StoreUnderTest,
>() {
    S::install();
    run(async {
        let tag = unique("fn-race");
        set_source(&tag, "old");
        let gate = set_gate(&tag, 1, true);
        let slow_write = tokio::spawn(racy_function(tag.clone()));
        gate.meet().await; // the body has read "old" and holds
        set_source(&tag, "new");
        cached_api::invalidate_function("behaviour::racy_function")
            .await
            .expect("invalidation succeeds");
        gate.meet().await; // the body returns "old", which is then stored
        assert_eq!(slow_write.await.unwrap(), "old");
        assert_eq!(
            racy_function(tag.clone()).await,
            "new",
            "the stale write must not be served"
        );
        assert_eq!(racy_function(tag.clone()).await, "new");
        assert_eq!(runs(&format!("racy_function/{tag}")), 2);
    });
}

pub fn a_stale_entry_answers_failures_within_its_window_then_the_error_does<S: StoreUnderTest>() {
    S::install();
    let tag = unique("stale");
    set_source(&tag, "v1");
    assert_eq!(stale_sync(&tag).as_deref(), Ok("v1"));
    set_source(&tag, "down");
    let before = cached_api::stats().function("behaviour::stale_sync");
    // Calls until the window ends: hits within the TTL, then the stale
    // value after each failed run, then the error.
    let error = loop {
        match stale_sync(&tag) {
            Ok(value) => assert_eq!(value, "v1", "only the cached value answers"),
            Err(error) => break error,
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(error, "the source is down");
    let counts = cached_api::stats().function("behaviour::stale_sync");
    let stale = counts.stale - before.stale;
    assert!(stale >= 1, "failures within the window answer stale");
    assert_eq!(
        runs(&tag),
        1 + u32::try_from(stale).unwrap() + 1,
        "each stale answer follows one failed run, and the error one more"
    );
    assert_eq!(stale_sync(&tag), Err("the source is down".to_owned()));
}

pub fn a_stale_entry_answers_while_one_caller_recomputes_it<S: StoreUnderTest>() {
    S::install();
    run(async {
        let tag = unique("stale-sync");
        let call = |tag: &str| {
            let tag = tag.to_owned();
            tokio::task::spawn_blocking(move || stale_held(&tag))
        };
        set_source(&tag, "v1");
        assert_eq!(call(&tag).await.unwrap(), "v1");
        set_source(&tag, "v2");
        let gate = set_gate(&tag, 1, false);
        // Hits until the TTL ends; then the first caller recomputes, held.
        let leader = loop {
            let mut caller = call(&tag);
            tokio::select! {
                answer = &mut caller => assert_eq!(answer.unwrap(), "v1"),
                () = gate.wait_all_started() => break caller,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let before = cached_api::stats().function("behaviour::stale_held");
        for caller in (0..8).map(|_| call(&tag)).collect::<Vec<_>>() {
            // A caller that waited for the held leader would hang the test.
            let answer = caller.await.unwrap();
            assert_eq!(answer, "v1", "callers do not wait for the leader");
        }
        let counts = cached_api::stats().function("behaviour::stale_held");
        assert_eq!(
            counts.stale - before.stale,
            8,
            "stale answers counted apart"
        );
        assert_eq!(counts.hits, before.hits);
        gate.release();
        assert_eq!(leader.await.unwrap(), "v2", "the sync caller waited for it");
        assert_eq!(call(&tag).await.unwrap(), "v2", "cached again");
        assert_eq!(runs(&tag), 2);
    });
}

pub fn an_async_stale_entry_answers_at_once_while_a_task_recomputes_it<S: StoreUnderTest>() {
    S::install();
    run(async {
        let tag = unique("stale-async");
        set_source(&tag, "v1");
        assert_eq!(stale_async(tag.clone()).await, "v1");
        set_source(&tag, "v2");
        let gate = set_gate(&tag, 1, false);
        // Hits until the TTL ends; then stale answers, while a task of its
        // own recomputes the entry, held at the gate.
        keep_calling_until(
            || gate.has_started(),
            || async { assert_eq!(stale_async(tag.clone()).await, "v1") },
        )
        .await;
        let before = cached_api::stats().function("behaviour::stale_async");
        for caller in (0..8)
            .map(|_| tokio::spawn(stale_async(tag.clone())))
            .collect::<Vec<_>>()
        {
            assert_eq!(caller.await.unwrap(), "v1", "nobody waits for the task");
        }
        let counts = cached_api::stats().function("behaviour::stale_async");
        assert_eq!(
            counts.stale - before.stale,
            8,
            "stale answers counted apart"
        );
        assert_eq!(runs(&tag), 2, "one task recomputes, not one per caller");
        gate.release();
        // The refresh is counted when the value is computed, before it is
        // stored: what shows the task has stored it is the answer itself.
        loop {
            let answer = stale_async(tag.clone()).await;
            if answer == "v2" {
                break;
            }
            assert_eq!(answer, "v1", "stale until the task has stored v2");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Not an exact count: a caller that read the stale entry just before
        // the task's write may start a task of its own once the first has
        // landed, and a write that times out on a loaded machine leaves the
        // entry to be refreshed again.
        let counts = cached_api::stats().function("behaviour::stale_async");
        assert!(counts.refreshes > before.refreshes, "a task refreshed it");
    });
}

pub fn an_entry_invalidation_drops_that_entry_only<S: StoreUnderTest>() {
    S::install();
    let (a, b) = (unique("entry-a"), unique("entry-b"));
    for tag in [&a, &b] {
        set_source(tag, "v1");
        assert_eq!(label(tag), "v1");
    }
    set_source(&a, "v2");
    set_source(&b, "v2");
    forget_label(&a).expect("invalidation succeeds");
    assert_eq!(label(&a), "v2", "dropped");
    assert_eq!(label(&a), "v2", "cached again");
    assert_eq!(label(&b), "v1", "the other entry stays cached");
    assert_eq!(
        (runs(&format!("label/{a}")), runs(&format!("label/{b}"))),
        (2, 1)
    );
}

pub fn a_value_computed_before_an_entry_invalidation_is_never_served_after_it<S: StoreUnderTest>() {
    S::install();
    run(async {
        let (user, tag) = (unique("entry-race-user"), unique("entry-race"));
        set_source(&tag, "old");
        let gate = set_gate(&tag, 1, true);
        let slow_write = tokio::spawn(racy_entry(user.clone(), tag.clone(), 1));
        gate.meet().await; // the body has read "old" and holds
        set_source(&tag, "new");
        forget_racy_entry(user.clone(), tag.clone())
            .await
            .expect("invalidation succeeds");
        // A call made now does not join the held computation.
        let fresh = racy_entry(user.clone(), tag.clone(), 2).await;
        assert_eq!(fresh, format!("{user}:new"));
        gate.meet().await; // the body returns "old", and tries to store it
        assert_eq!(slow_write.await.unwrap(), format!("{user}:old"));
        assert_eq!(
            racy_entry(user.clone(), tag.clone(), 3).await,
            format!("{user}:new"),
            "the stale write must not be served"
        );
        assert_eq!(runs(&format!("racy_entry/{tag}")), 2);
    });
}

pub fn stats_count_each_function<S: StoreUnderTest>() {
    S::install();
    run(async {
        let before = cached_api::stats().function("behaviour::counted");
        assert_eq!(counted(7).await, 7);
        assert_eq!(counted(7).await, 7);
        let after = cached_api::stats();
        let counts = after.function("behaviour::counted");
        assert_eq!(counts.misses - before.misses, 1);
        assert_eq!(counts.hits - before.hits, 1);
        assert_eq!(counts.sets - before.sets, 1);
        assert_eq!(counts.errors, 0);
        assert!(after.total.hits >= counts.hits);
        let json = serde_json::to_value(&after).unwrap();
        assert!(json["functions"]["behaviour::counted"]["hit_rate"].is_f64());
    });
}

pub fn values_over_the_size_limit_are_returned_but_not_stored<S: StoreUnderTest>() {
    S::install();
    let user = unique("sized");
    let before = cached_api::stats().function("behaviour::sized").oversized;
    for _ in 0..2 {
        assert_eq!(sized(&user, 100_000).len(), 100_000);
        assert_eq!(sized(&user, 1_000).len(), 1_000);
    }
    assert_eq!(
        runs(&format!("sized/{user}/100000")),
        2,
        "too large: computed each time"
    );
    assert_eq!(
        runs(&format!("sized/{user}/1000")),
        1,
        "small enough: cached"
    );
    let after = cached_api::stats().function("behaviour::sized").oversized;
    assert_eq!(after - before, 2);
}

pub fn template_values_containing_the_separator_do_not_collide<S: StoreUnderTest>() {
    S::install();
    run(async {
        let user = unique("tpl");
        let x = pair(user.clone(), "a:b".into(), "c".into()).await;
        let y = pair(user.clone(), "a".into(), "b:c".into()).await;
        assert_eq!((x.1.as_str(), x.2.as_str()), ("a:b", "c"));
        assert_eq!((y.1.as_str(), y.2.as_str()), ("a", "b:c"));
    });
}

/// Any two distinct (user, key) pairs have their own entries: each call,
/// first or cached, returns its own inputs.
pub fn distinct_users_and_keys_never_share_an_entry<S: StoreUnderTest>() {
    S::install();
    let pairs = proptest::collection::vec(
        (
            "[a-c:{}%#\\\\\u{0}é ]{0,4}|x{300}",
            "[a-c:{}%#\u{0}é ]{0,4}|y{300}",
        ),
        1..8,
    );
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&pairs, |pairs| {
        let tag = unique("prop");
        let pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(u, k)| (format!("{tag}{u}"), k))
            .collect();
        for _ in 0..2 {
            for (user, key) in &pairs {
                prop_assert_eq!(echo(user, key), (user.clone(), key.clone()));
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("two calls shared an entry: {failure}");
    }
}

/// A store the suite runs on: `install` makes the process-wide cache use
/// it, once per test binary.
pub trait StoreUnderTest {
    fn install();
}

/// One `#[test]` per behaviour of this suite, run on `$store`: a store's
/// test binary says `behaviour_tests!(TheStore);` and gets all of them.
#[macro_export]
macro_rules! behaviour_tests {
    ($store:ty) => {
        $crate::behaviour_tests!(
            @each $store:
            second_call_is_a_hit,
            users_are_isolated,
            invalidate_user_drops_only_that_user,
            errors_are_not_cached,
            none_is_cached_only_when_asked,
            sync_functions_cache_and_invalidate,
            methods_of_different_types_have_their_own_entries,
            concurrent_first_calls_run_the_body_once,
            concurrent_first_calls_of_a_sync_function_run_the_body_once,
            with_lock_concurrent_first_calls_run_the_body_once_under_one_lease,
            a_sync_follower_blocks_its_thread_until_the_leader_lands,
            a_panicking_leader_does_not_strand_followers,
            a_cancelled_leader_hands_over,
            a_value_computed_before_an_invalidation_is_never_served_after_it,
            invalidate_function_drops_every_entry_of_that_function_only,
            a_value_computed_before_a_function_invalidation_is_never_served_after_it,
            invalidate_tag_drops_every_entry_carrying_it_only,
            a_value_computed_before_a_tag_invalidation_is_never_served_after_it,
            an_entry_invalidation_drops_that_entry_only,
            a_value_computed_before_an_entry_invalidation_is_never_served_after_it,
            a_stale_entry_answers_failures_within_its_window_then_the_error_does,
            a_stale_entry_answers_while_one_caller_recomputes_it,
            an_async_stale_entry_answers_at_once_while_a_task_recomputes_it,
            stats_count_each_function,
            values_over_the_size_limit_are_returned_but_not_stored,
            template_values_containing_the_separator_do_not_collide,
            distinct_users_and_keys_never_share_an_entry,
        );
    };
    (@each $store:ty: $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::behaviour::$test::<$store>();
            }
        )*
    };
}
