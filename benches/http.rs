//! `GET /profile` of the reference service over HTTP (`http = true`), on
//! the embedded store: a miss (a new user each time), a hit, and a `304`
//! for a client that holds the entry, in interleaved rounds on one
//! keep-alive connection. Prints each one's median latency and its ratio
//! to the hit, the baseline, measured in the same run.
//!
//! `cargo bench --bench http`

#[path = "../examples/api_server.rs"]
#[allow(dead_code)]
mod api_server;

use std::time::{Duration, Instant};

use api_server::AppState;

const ROUNDS: usize = 20;
const PER_ROUND: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(measure());
}

async fn measure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/profile", listener.local_addr().unwrap());
    let router = api_server::router(AppState::default());
    tokio::spawn(axum::serve(listener, router).into_future());
    let http = reqwest::Client::new();
    let get = |user: String, etag: Option<String>| {
        let mut request = http.get(&base).header("x-user-id", user);
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let etag = response.headers()["etag"].to_str().unwrap().to_owned();
            let _ = response.bytes().await.unwrap();
            (status, etag)
        }
    };
    let (_, etag) = get("hot".to_owned(), None).await;
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut fresh = 0u64;
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            fresh += 1;
            let began = Instant::now();
            assert_eq!(get(format!("new-{fresh}"), None).await.0, 200);
            times[0].push(began.elapsed());
            let began = Instant::now();
            assert_eq!(get("hot".to_owned(), None).await.0, 200);
            times[1].push(began.elapsed());
            let began = Instant::now();
            assert_eq!(get("hot".to_owned(), Some(etag.clone())).await.0, 304);
            times[2].push(began.elapsed());
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let [miss, hit, not_modified] = times.each_mut().map(median);
    let stats = cached_api::stats().function("profile");
    assert_eq!(stats.not_modified as usize, ROUNDS * PER_ROUND);
    println!("| measure | contender | p50 | ratio to baseline |");
    println!("|---|---|---|---|");
    for (name, time) in [
        ("hit, 200 with the body (baseline)", hit),
        ("miss, 200 (the handler runs)", miss),
        ("304 Not Modified from the entry", not_modified),
    ] {
        println!(
            "| GET /profile over HTTP, embedded store, {} requests each | {name} | {:.1} µs | {:.2}× |",
            ROUNDS * PER_ROUND,
            time.as_secs_f64() * 1e6,
            time.as_secs_f64() / hit.as_secs_f64()
        );
    }
}
