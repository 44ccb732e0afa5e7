//! The pure-CPU parts of a call, so that their regressions show:
//! `cargo bench --bench micro`.

use std::hint::black_box;

use cached_api::__private::{FnOptions, FnSpec, KeyWriter, TypedCodec, UserId, global, key};
use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    bio: String,
    scores: Vec<u32>,
}

static SPEC: FnSpec = FnSpec::new(FnOptions {
    id: "bench::profile",
    method: false,
    version: 1,
    ttl: Some(std::time::Duration::from_secs(900)),
    error_ttl: None,
    jitter_percent: None,
    l1: None,
    refresh: None,
    stale: None,
    lock: None,
    drops_entries: false,
    reserved: ":",
});

fn keys(c: &mut Criterion) {
    let cache = global();
    let codec = TypedCodec::<Profile>::bincode();
    c.bench_function("key: per-user, template profile:{id}", |b| {
        b.iter(|| {
            let write = |writer: &mut KeyWriter| {
                writer.literal("profile:");
                writer.value(black_box(&42u64));
            };
            black_box(key(
                cache,
                &SPEC,
                &codec,
                None,
                Some(UserId::Display(black_box(&"user-1234"))),
                write,
            ))
        })
    });
    c.bench_function("key: user needing escapes", |b| {
        b.iter(|| {
            let write = |writer: &mut KeyWriter| {
                writer.value(black_box(&"a:b{c}"));
            };
            black_box(key(
                cache,
                &SPEC,
                &codec,
                None,
                Some(UserId::Display(black_box(&"tenant:{7}:user"))),
                write,
            ))
        })
    });
}

fn codec(c: &mut Criterion) {
    let profile = Profile {
        id: 7,
        name: "User Seven".to_owned(),
        bio: "Writes Rust services. ".repeat(40),
        scores: (0..32).collect(),
    };
    // The payload format entries use: bincode 2, standard configuration.
    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&profile, config).unwrap();
    c.bench_function("codec: encode ~1 kB", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1_024);
            bincode::serde::encode_into_std_write(black_box(&profile), &mut out, config).unwrap();
            black_box(out)
        })
    });
    c.bench_function("codec: decode ~1 kB", |b| {
        b.iter(|| {
            let decoded: (Profile, usize) =
                bincode::serde::decode_from_slice(black_box(&bytes), config).unwrap();
            black_box(decoded)
        })
    });
}

criterion_group!(benches, keys, codec);
criterion_main!(benches);
