//! With the `metrics` feature, counters reach the `metrics` facade labelled
//! by function id (and invalidations by kind), never by key or user; each
//! is described, and a function's series start at 0.
//! Run with `cargo test --features metrics --test metrics`.
#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use cached_api::cached_api;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Counters by `name{label=value,…}`, and help texts by name.
#[derive(Default)]
struct Counters(
    Mutex<HashMap<String, Arc<AtomicU64>>>,
    Mutex<HashMap<String, String>>,
);

static COUNTERS: LazyLock<Arc<Counters>> = LazyLock::new(Default::default);

struct TestRecorder(Arc<Counters>);

impl Recorder for TestRecorder {
    fn describe_counter(&self, name: KeyName, _: Option<Unit>, help: SharedString) {
        let mut described = self.0.1.lock().unwrap();
        described.insert(name.as_str().to_owned(), help.to_string());
    }
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let counter = Arc::clone(self.0.0.lock().unwrap().entry(name).or_default());
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn counter(name: &str) -> u64 {
    COUNTERS
        .0
        .lock()
        .unwrap()
        .get(name)
        .map_or(0, |c| c.load(Ordering::SeqCst))
}

#[cached_api(key = "{id}", user = user, name = "metrics::lookup", invalidate = forget_lookup)]
fn lookup(user: &str, id: u32) -> u32 {
    let _ = user;
    id
}

#[test]
fn counters_are_described_labelled_by_function_and_kind_and_start_at_zero() {
    metrics::set_global_recorder(TestRecorder(Arc::clone(&COUNTERS))).unwrap();
    assert_eq!(lookup("secret-user", 1), 1);
    assert_eq!(
        counter("cached_api_stale_total{function=metrics::lookup}"),
        0
    );
    assert!(
        COUNTERS
            .0
            .lock()
            .unwrap()
            .contains_key("cached_api_stale_total{function=metrics::lookup}"),
        "a function's series exist from its first call"
    );
    assert_eq!(lookup("secret-user", 1), 1);
    cached_api::blocking::invalidate_user(&"secret-user").unwrap();
    forget_lookup("secret-user", 1).unwrap();
    cached_api::blocking::invalidate_function("metrics::lookup").unwrap();
    cached_api::blocking::invalidate_tag("org:secret-org").unwrap();

    assert_eq!(
        counter("cached_api_misses_total{function=metrics::lookup}"),
        1
    );
    assert_eq!(
        counter("cached_api_hits_total{function=metrics::lookup}"),
        1
    );
    assert_eq!(
        counter("cached_api_sets_total{function=metrics::lookup}"),
        1
    );
    assert_eq!(
        counter("cached_api_invalidations_total{function=,kind=user}"),
        1
    );
    assert_eq!(
        counter("cached_api_invalidations_total{function=metrics::lookup,kind=entry}"),
        1
    );
    assert_eq!(
        counter("cached_api_invalidations_total{function=metrics::lookup,kind=function}"),
        1
    );
    assert_eq!(
        counter("cached_api_invalidations_total{function=,kind=tag}"),
        1
    );
    let names: Vec<String> = COUNTERS.0.lock().unwrap().keys().cloned().collect();
    assert!(
        names.iter().all(|name| !name.contains("secret-user")
            && !name.contains("secret-org")
            && !name.contains("key")),
        "no user or key in metric labels: {names:?}"
    );
    // One set of label names per metric, and a help text for each.
    let described = COUNTERS.1.lock().unwrap().clone();
    let mut labels_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for series in &names {
        let (name, labels) = series.split_once('{').unwrap();
        let keys: Vec<&str> = labels
            .trim_end_matches('}')
            .split(',')
            .map(|label| label.split('=').next().unwrap())
            .collect();
        let first = labels_of.entry(name).or_insert_with(|| keys.clone());
        assert_eq!(*first, keys, "{name}: one set of labels: {names:?}");
        assert!(
            described.contains_key(name),
            "{name} is described: {described:?}"
        );
    }
    assert_eq!(
        labels_of["cached_api_invalidations_total"],
        ["function", "kind"]
    );
    assert_eq!(labels_of["cached_api_errors_total"], ["function"]);
}
