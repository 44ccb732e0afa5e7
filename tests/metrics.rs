//! With the `metrics` feature, counters reach the `metrics` facade labelled
//! by function id, and never by key or user.
//! Run with `cargo test --features metrics --test metrics`.
#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use cached_api::cached_api;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Counters by `name{label=value,…}`.
#[derive(Default)]
struct Counters(Mutex<HashMap<String, Arc<AtomicU64>>>);

static COUNTERS: LazyLock<Arc<Counters>> = LazyLock::new(Default::default);

struct TestRecorder(Arc<Counters>);

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
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

#[cached_api(key = "{id}", user = user, name = "metrics::lookup")]
fn lookup(user: &str, id: u32) -> u32 {
    let _ = user;
    id
}

#[test]
fn counters_are_labelled_by_function_only() {
    metrics::set_global_recorder(TestRecorder(Arc::clone(&COUNTERS))).unwrap();
    assert_eq!(lookup("secret-user", 1), 1);
    assert_eq!(lookup("secret-user", 1), 1);
    cached_api::blocking::invalidate_user(&"secret-user").unwrap();

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
    assert_eq!(counter("cached_api_invalidations_total{}"), 1);
    let names: Vec<String> = COUNTERS.0.lock().unwrap().keys().cloned().collect();
    assert!(
        names
            .iter()
            .all(|name| !name.contains("secret-user") && !name.contains("key")),
        "no user or key in metric labels: {names:?}"
    );
}
