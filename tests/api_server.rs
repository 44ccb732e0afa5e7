//! The reference service over HTTP, on a real redis-server: what a client
//! of `examples/api_server.rs` sees, including while Redis dies under it.

#[path = "../examples/api_server.rs"]
#[allow(dead_code)]
mod api_server;
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use api_server::{AppState, Profile};
use reqwest::StatusCode;
use serde_json::Value;
use support::RedisServer;

struct Service {
    base: String,
    state: AppState,
    http: reqwest::Client,
}

impl Service {
    async fn get(&self, path: &str, user: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(user) = user {
            request = request.header("x-user-id", user);
        }
        let response = request.send().await.expect("the service answers");
        (
            response.status(),
            response.json().await.expect("a JSON body"),
        )
    }

    async fn put_profile(&self, user: &str, name: &str) -> Value {
        let response = self
            .http
            .put(format!("{}/profile", self.base))
            .header("x-user-id", user)
            .json(&serde_json::json!({ "display_name": name, "bio": "" }))
            .send()
            .await
            .expect("the service answers");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("a JSON body")
    }

    /// The summary, checking that hit and miss alike answer 201.
    async fn summarize(&self, prompt: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/summarize", self.base))
            .body(prompt.to_owned())
            .send()
            .await
            .expect("the service answers");
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("a JSON body")
    }

    async fn post_note(&self, user: &str, text: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/notes", self.base))
            .header("x-user-id", user)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            .expect("the service answers");
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("a JSON body")
    }

    /// A `method` request of `path` as `user`, with `If-None-Match:
    /// if_none_match`: its status, `ETag`, `Cache-Control` and body.
    async fn conditional(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&str>,
        if_none_match: Option<&str>,
    ) -> (StatusCode, Option<String>, Option<String>, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(user) = user {
            request = request.header("x-user-id", user);
        }
        if let Some(tag) = if_none_match {
            request = request.header("if-none-match", tag);
        }
        let response = request.send().await.expect("the service answers");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        let (etag, cache_control) = (header("etag"), header("cache-control"));
        let status = response.status();
        let body = response.text().await.expect("a body");
        (status, etag, cache_control, body)
    }

    /// `PUT /admin/plans/{id}` as `caller`: its status and body.
    async fn put_plan(&self, id: &str, monthly_cents: u32, caller: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .put(format!("{}/admin/plans/{id}", self.base))
            .header("x-user-id", caller)
            .json(&serde_json::json!({ "monthly_cents": monthly_cents }))
            .send()
            .await
            .expect("the service answers");
        (
            response.status(),
            response.json().await.expect("a JSON body"),
        )
    }

    fn reads(&self, counter: impl Fn(&api_server::Reads) -> &std::sync::atomic::AtomicU64) -> u64 {
        counter(&self.state.source.reads).load(Ordering::SeqCst)
    }

    async fn stats(&self, function: &str) -> Value {
        let (status, stats) = self.get("/stats", None).await;
        assert_eq!(status, StatusCode::OK);
        stats["functions"][function].clone()
    }
}

/// Starts the reference service on a free port, with its cache the
/// process-wide one.
async fn serve() -> Service {
    let state = AppState::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, api_server::router(state.clone())).into_future());
    Service {
        base,
        state,
        http: reqwest::Client::new(),
    }
}

/// `GET /profile` and `GET /plans` (`http = true`): an ETag and cache
/// headers on each answer, a `304` with no body and no source read for a
/// client that holds the entry, a `200` for another user's tag or after a
/// write, and `HEAD` alike.
async fn conditional_requests_are_answered_from_the_entry(svc: &Service) {
    use reqwest::Method;
    let not_modified_before = svc.stats("profile").await["not_modified"]
        .as_u64()
        .unwrap_or(0);
    let (status, etag, cache_control, body) = svc
        .conditional(Method::GET, "/profile", Some("carol"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        cache_control.as_deref(),
        Some("private, no-cache"),
        "per user, revalidated"
    );
    let etag = etag.expect("an ETag on a cached answer");
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    assert_eq!(
        profile(&serde_json::from_str(&body).unwrap()).user_id,
        "carol"
    );
    let reads = svc.reads(|r| &r.profile);

    let (status, again, cache_control, body) = svc
        .conditional(Method::GET, "/profile", Some("carol"), Some(&etag))
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!((again.as_deref(), body.as_str()), (Some(etag.as_str()), ""));
    assert_eq!(cache_control.as_deref(), Some("private, no-cache"));
    let weak = format!("\"x\", W/{etag}");
    let (status, ..) = svc
        .conditional(Method::GET, "/profile", Some("carol"), Some(&weak))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_MODIFIED,
        "weak comparison, any listed tag"
    );
    let (status, _, _, body) = svc
        .conditional(Method::HEAD, "/profile", Some("carol"), Some(&etag))
        .await;
    assert_eq!((status, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
    let (status, head_etag, _, body) = svc
        .conditional(Method::HEAD, "/profile", Some("carol"), None)
        .await;
    assert_eq!(
        (status, head_etag.as_deref(), body.as_str()),
        (StatusCode::OK, Some(etag.as_str()), "")
    );
    assert_eq!(svc.reads(|r| &r.profile), reads, "no 304 read the source");
    let not_modified = svc.stats("profile").await["not_modified"].as_u64().unwrap();
    assert_eq!(not_modified - not_modified_before, 3);

    // Another user's tag is not this user's content.
    let (status, dave, ..) = svc
        .conditional(Method::GET, "/profile", Some("dave"), Some(&etag))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(dave.as_deref(), Some(etag.as_str()));

    // A write changes the content, and so the tag.
    svc.put_profile("carol", "Carol C.").await;
    let (status, changed, _, body) = svc
        .conditional(Method::GET, "/profile", Some("carol"), Some(&etag))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(changed.as_deref(), Some(etag.as_str()));
    assert_eq!(
        profile(&serde_json::from_str(&body).unwrap()).display_name,
        "Carol C."
    );

    // A global entry may be kept by shared caches; still revalidated.
    let (status, plans_etag, cache_control, _) =
        svc.conditional(Method::GET, "/plans", None, None).await;
    assert_eq!(
        (status, cache_control.as_deref()),
        (StatusCode::OK, Some("public, no-cache"))
    );
    let plans_etag = plans_etag.unwrap();
    let (status, ..) = svc
        .conditional(Method::GET, "/plans", None, Some(&plans_etag))
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
}

#[test]
fn the_reference_service_answers_conditional_requests_on_the_embedded_store() {
    const NAME: &str = "the_reference_service_answers_conditional_requests_on_the_embedded_store";
    if !support::in_child(NAME) {
        return;
    }
    cached_api::set_global(cached_api::Cache::builder().build().unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let svc = serve().await;
        conditional_requests_are_answered_from_the_entry(&svc).await;
    });
}

fn profile(body: &Value) -> Profile {
    serde_json::from_value(body.clone()).expect("a profile")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_service_caches_per_plan_and_survives_redis_dying() {
    let redis = RedisServer::start();
    let cache = cached_api::Cache::builder()
        .redis_url(redis.url())
        .prefix("api")
        .op_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    cached_api::set_global(cache).unwrap();
    let svc = serve().await;

    // A second GET is a hit: the source is read once, and /stats says so.
    let (status, first) = svc.get("/profile", Some("alice")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, second) = svc.get("/profile", Some("alice")).await;
    assert_eq!(
        (status, &second),
        (StatusCode::OK, &first),
        "a hit answers as the miss did"
    );
    assert_eq!(profile(&first).display_name, "user alice");
    assert_eq!(
        svc.reads(|r| &r.profile),
        1,
        "the second GET /profile is served from Redis"
    );
    let stats = svc.stats("profile").await;
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(1), Some(1)),
        "{stats}"
    );
    assert_eq!(stats["hit_rate"].as_f64(), Some(0.5));

    // No user, no profile.
    let (status, body) = svc.get("/profile", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"].as_str().unwrap().contains("x-user-id"),
        "{body}"
    );

    // Two users never see each other's profile.
    let (_, bob) = svc.get("/profile", Some("bob")).await;
    assert_eq!(profile(&bob).user_id, "bob");
    let (_, alice) = svc.get("/profile", Some("alice")).await;
    assert_eq!(profile(&alice).user_id, "alice");

    // PUT then GET shows the change at once, and only alice's entries went.
    let put = svc.put_profile("alice", "Alice A.").await;
    assert_eq!(put["cache_invalidated"], Value::Bool(true));
    let (_, alice) = svc.get("/profile", Some("alice")).await;
    assert_eq!(profile(&alice).display_name, "Alice A.");
    let reads_before_bob = svc.reads(|r| &r.profile);
    let (_, bob_again) = svc.get("/profile", Some("bob")).await;
    assert_eq!(bob_again, bob);
    assert_eq!(
        svc.reads(|r| &r.profile),
        reads_before_bob,
        "bob stays cached"
    );

    // A paginated list keyed by its query: the order of the parameters does
    // not matter, another page is another entry, a write drops every page.
    for text in ["one", "two", "three"] {
        let posted = svc.post_note("alice", text).await;
        assert_eq!(posted["cache_invalidated"], Value::Bool(true));
    }
    let (status, page_one) = svc.get("/notes?page=1&per_page=2", Some("alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page_one["total"], 3);
    assert_eq!(page_one["notes"][1]["text"], "two");
    let (status, reordered) = svc.get("/notes?per_page=2&page=1", Some("alice")).await;
    assert_eq!((status, &reordered), (StatusCode::OK, &page_one));
    assert_eq!(
        svc.reads(|r| &r.notes),
        1,
        "the same query in another order is the same entry"
    );
    let (_, page_two) = svc.get("/notes?page=2&per_page=2", Some("alice")).await;
    assert_eq!(page_two["notes"][0]["text"], "three");
    assert_eq!(svc.reads(|r| &r.notes), 2, "another page is another entry");
    let (_, bobs) = svc.get("/notes?page=1&per_page=2", Some("bob")).await;
    assert_eq!(bobs["total"], 0, "users never share a page");
    svc.post_note("alice", "four").await;
    let (_, page_two) = svc.get("/notes?page=2&per_page=2", Some("alice")).await;
    assert_eq!(
        page_two["notes"][1]["text"], "four",
        "the write dropped the cached page"
    );
    let (status, _) = svc.get("/notes?page=0", Some("alice")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The rate-limit entry lives for its minute; the next minute is a new entry.
    let (_, window) = svc.get("/rate-limit", Some("alice")).await;
    let (_, same) = svc.get("/rate-limit", Some("alice")).await;
    assert_eq!(window, same);
    assert_eq!(svc.reads(|r| &r.rate_limit), 1);
    svc.state.clock.advance(Duration::from_secs(60));
    let (_, next) = svc.get("/rate-limit", Some("alice")).await;
    assert_eq!(
        svc.reads(|r| &r.rate_limit),
        2,
        "a new minute reads the source again"
    );
    assert_eq!(
        next["window_start"].as_u64().unwrap() - window["window_start"].as_u64().unwrap(),
        60
    );

    // A questionnaire is cached; a 404 is asked again every time.
    for _ in 0..2 {
        let (status, body) = svc.get("/questionnaires/7", Some("alice")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["id"], 7);
    }
    assert_eq!(svc.reads(|r| &r.questionnaire), 1);
    for _ in 0..3 {
        let (status, body) = svc.get("/questionnaires/404", Some("alice")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].is_string());
    }
    assert_eq!(
        svc.reads(|r| &r.questionnaire),
        4,
        "each 404 reads the source"
    );

    // Global entries: plans, health, and the prompt-hash summary.
    for _ in 0..2 {
        assert_eq!(svc.get("/plans", None).await.1[1]["id"], "pro");
        assert_eq!(svc.get("/health", None).await.1["status"], "ok");
        assert!(
            svc.summarize("one two three").await["summary"]
                .as_str()
                .unwrap()
                .starts_with("3 words")
        );
    }
    assert_eq!(
        (
            svc.reads(|r| &r.plans),
            svc.reads(|r| &r.health),
            svc.reads(|r| &r.summarize)
        ),
        (1, 1, 1)
    );
    assert_eq!(
        svc.summarize("four").await["summary"].as_str().unwrap(),
        "1 words, starting with Some(\"four\")"
    );

    // The plan list and each plan's page are tagged `plans`: an admin's
    // price change drops all of them at once, and nothing else.
    for _ in 0..2 {
        let (status, pro) = svc.get("/plans/pro", None).await;
        assert_eq!(
            (status, pro["monthly_cents"].as_u64()),
            (StatusCode::OK, Some(1_500))
        );
        assert_eq!(svc.get("/plans/free", None).await.1["monthly_cents"], 0);
    }
    assert_eq!((svc.reads(|r| &r.plans), svc.reads(|r| &r.plan)), (1, 2));
    let (status, _) = svc.put_plan("pro", 1_900, "alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admin changes plans");
    let (status, put) = svc.put_plan("pro", 1_900, "admin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(put["cache_invalidated"], Value::Bool(true));
    for _ in 0..2 {
        assert_eq!(svc.get("/plans", None).await.1[1]["monthly_cents"], 1_900);
        assert_eq!(svc.get("/plans/pro", None).await.1["monthly_cents"], 1_900);
        assert_eq!(svc.get("/plans/free", None).await.1["monthly_cents"], 0);
    }
    assert_eq!(
        (svc.reads(|r| &r.plans), svc.reads(|r| &r.plan)),
        (2, 4),
        "the list and both pages were read again once, then cached"
    );
    assert_eq!(svc.reads(|r| &r.health), 1, "untagged entries stay");
    let (status, _) = svc.get("/plans/gold", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    conditional_requests_are_answered_from_the_entry(&svc).await;

    // Redis dies: every request still answers 200 with the right body.
    redis.kill();
    let errors_before = svc.get("/stats", None).await.1["total"]["errors"]
        .as_u64()
        .unwrap();
    for round in 0..3 {
        let (status, alice) = svc.get("/profile", Some("alice")).await;
        assert_eq!(status, StatusCode::OK, "round {round}");
        assert_eq!(profile(&alice).display_name, "Alice A.");
        let (status, bob) = svc.get("/profile", Some("bob")).await;
        assert_eq!(
            (status, profile(&bob).user_id.as_str()),
            (StatusCode::OK, "bob")
        );
        let (status, plans) = svc.get("/plans", None).await;
        assert_eq!(
            (status, plans[0]["id"].as_str()),
            (StatusCode::OK, Some("free"))
        );
        let (status, window) = svc.get("/rate-limit", Some("alice")).await;
        assert_eq!(
            (status, window["limit"].as_u64()),
            (StatusCode::OK, Some(100))
        );
        let (status, health) = svc.get("/health", None).await;
        assert_eq!(
            (status, health["status"].as_str()),
            (StatusCode::OK, Some("ok"))
        );
    }
    let put = svc.put_profile("alice", "Alice B.").await;
    assert_eq!(
        put["cache_invalidated"],
        Value::Bool(false),
        "a failed invalidation is reported"
    );
    let (_, alice) = svc.get("/profile", Some("alice")).await;
    assert_eq!(profile(&alice).display_name, "Alice B.");
    let errors_after = svc.get("/stats", None).await.1["total"]["errors"]
        .as_u64()
        .unwrap();
    assert!(errors_after > errors_before, "the failures are counted");
}
