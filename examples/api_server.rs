//! The reference service: the caching plan of a typical API, on axum.
//!
//! ```sh
//! cargo run --example api_server                                        # embedded store
//! CACHED_API_REDIS_URL=redis://127.0.0.1:6379/ cargo run --example api_server   # Redis
//! ```
//!
//! Listens on `API_SERVER_ADDR` (default `127.0.0.1:3000`); the caller's
//! identity comes from the `x-user-id` header, through the `Caller`
//! extractor. `API_SERVER_LOG=debug` shows the cache's hit/miss/set/invalidate
//! events.
//!
//! Most endpoints put `#[cached_api]` on the axum handler itself: `Json<T>`,
//! `(StatusCode, Json<T>)` and `Result<Json<T>, ApiError>` returns are stored
//! as what they wrap (the `axum` feature). `/rate-limit` shows the other
//! style, a cached service function called by a plain handler.
//!
//! | endpoint | cached as | ttl |
//! |---|---|---|
//! | `GET /plans`, `GET /plans/{id}` | global, tagged `plans`; `PUT /admin/plans/{id}` drops both; `/plans` answers conditional requests (`http = true`) | 24h |
//! | `GET /profile`, `PUT /profile` | per user; the PUT drops the user's entries; answers conditional requests | 15m |
//! | `GET /notes?page=&per_page=`, `POST /notes` | per user, keyed by the query; the POST drops the user's entries | 10m |
//! | `GET /rate-limit` | per user, keyed by the minute | 2m |
//! | `GET /questionnaires/{id}` | per user; a 404 is not cached | 5m |
//! | `POST /summarize` | global, keyed by the SHA-256 of the body; answers 201 | 7d |
//! | `GET /health` | global | 30s |
//! | `GET /stats` | not cached: the cache's own counters | |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cached_api::cached_api;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the handlers share: the data source and the clock.
#[derive(Clone, Default)]
pub struct AppState {
    pub source: Arc<Source>,
    pub clock: Clock,
}

/// Wall-clock seconds, which tests may move forward.
#[derive(Clone, Default)]
pub struct Clock {
    skew_secs: Arc<AtomicU64>,
}

impl Clock {
    pub fn now_secs(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        now.as_secs() + self.skew_secs.load(Ordering::Relaxed)
    }

    pub fn advance(&self, by: Duration) {
        self.skew_secs.fetch_add(by.as_secs(), Ordering::Relaxed);
    }
}

/// The slow systems behind the API, with a count of how often each was asked.
#[derive(Default)]
pub struct Source {
    profiles: Mutex<HashMap<String, Profile>>,
    /// Monthly prices an admin set, over the defaults.
    prices: Mutex<HashMap<String, u32>>,
    notes: Mutex<HashMap<String, Vec<Note>>>,
    pub reads: Reads,
    /// Simulated latency of every read.
    pub latency: Duration,
}

/// Reads of the source per endpoint: a cache hit adds none.
#[derive(Default)]
pub struct Reads {
    pub plans: AtomicU64,
    pub plan: AtomicU64,
    pub profile: AtomicU64,
    pub notes: AtomicU64,
    pub rate_limit: AtomicU64,
    pub questionnaire: AtomicU64,
    pub summarize: AtomicU64,
    pub health: AtomicU64,
}

impl Source {
    async fn read(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
    }

    /// Every plan, at its current price.
    fn plans(&self) -> Vec<Plan> {
        let prices = self.prices.lock().unwrap();
        [("free", 0), ("pro", 1_500)]
            .into_iter()
            .map(|(id, default)| Plan {
                id: id.to_owned(),
                monthly_cents: prices.get(id).copied().unwrap_or(default),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub monthly_cents: u32,
}

#[derive(Debug, Deserialize)]
pub struct PlanUpdate {
    pub monthly_cents: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub user_id: String,
    pub display_name: String,
    pub bio: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub limit: u32,
    pub window_start: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Questionnaire {
    pub id: u32,
    pub title: String,
    pub questions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub prompt_sha256: String,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: usize,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotePage {
    pub page: u32,
    pub per_page: u32,
    pub total: usize,
    pub notes: Vec<Note>,
}

#[derive(Debug, Deserialize)]
pub struct NewNote {
    pub text: String,
}

/// Which page of a list: the query string of `GET /notes`. It is part of the
/// cache key through its `Serialize` form, so `?page=1&per_page=20` and
/// `?per_page=20&page=1` are one entry.
#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    #[serde(default = "first_page")]
    pub page: u32,
    #[serde(default = "twenty")]
    pub per_page: u32,
}

fn first_page() -> u32 {
    1
}

fn twenty() -> u32 {
    20
}

#[derive(Debug, Deserialize)]
pub struct ProfileUpdate {
    pub display_name: String,
    pub bio: String,
}

/// One entry per user and minute: a new minute is a new key, so the old
/// window's entry simply expires.
#[cached_api(key = "{minute}", user = user_id, ttl = "2m", name = "rate_limit")]
async fn rate_limit(source: &Source, user_id: &str, minute: u64) -> RateLimit {
    source.read(&source.reads.rate_limit).await;
    let _ = user_id;
    RateLimit {
        limit: 100,
        window_start: minute * 60,
    }
}

/// An error answered as `{"error": …}` with its status.
pub struct ApiError(StatusCode, &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// The caller, from the `x-user-id` header; a request without one is a 401
/// before any handler (or cache) runs.
pub struct Caller(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        parts
            .headers
            .get("x-user-id")
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(|user_id| Caller(user_id.to_owned()))
            .ok_or(ApiError(
                StatusCode::UNAUTHORIZED,
                "send the caller's id in the x-user-id header",
            ))
    }
}

/// The plan list and each plan's page carry the tag `plans`: an admin's
/// change drops all of them with one `invalidate_tag`.
#[cached_api(key = "all", ttl = "24h", name = "plans", tags = ["plans"], http = true)]
async fn get_plans(State(state): State<AppState>) -> Json<Vec<Plan>> {
    state.source.read(&state.source.reads.plans).await;
    Json(state.source.plans())
}

/// A 404 is not cached.
#[cached_api(key = "{id}", ttl = "24h", name = "plan", tags = ["plans"])]
async fn get_plan(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Plan>, ApiError> {
    state.source.read(&state.source.reads.plan).await;
    let plan = state.source.plans().into_iter().find(|plan| plan.id == id);
    plan.map(Json)
        .ok_or(ApiError(StatusCode::NOT_FOUND, "no such plan"))
}

/// An admin sets a plan's price, then drops every cached view of the plans
/// (the list and every plan's page) in every process. Only the caller
/// `admin` may; not cached: a write.
async fn put_plan(
    State(state): State<AppState>,
    Caller(user_id): Caller,
    Path(id): Path<String>,
    Json(update): Json<PlanUpdate>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if user_id != "admin" {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "only admin may change plans",
        ));
    }
    if !state.source.plans().iter().any(|plan| plan.id == id) {
        return Err(ApiError(StatusCode::NOT_FOUND, "no such plan"));
    }
    state
        .source
        .prices
        .lock()
        .unwrap()
        .insert(id, update.monthly_cents);
    let invalidated = match cached_api::invalidate_tag("plans").await {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(%error, "plans saved but their cached copies were not invalidated");
            false
        }
    };
    Ok(Json(
        serde_json::json!({ "plans": state.source.plans(), "cache_invalidated": invalidated }),
    ))
}

#[cached_api(key = "profile", user = user_id, ttl = "15m", name = "profile", http = true)]
async fn get_profile(State(state): State<AppState>, Caller(user_id): Caller) -> Json<Profile> {
    let source = &state.source;
    source.read(&source.reads.profile).await;
    let stored = source.profiles.lock().unwrap().get(&user_id).cloned();
    Json(stored.unwrap_or_else(|| Profile {
        display_name: format!("user {user_id}"),
        user_id,
        bio: String::new(),
    }))
}

/// A paginated list per user, keyed by its query: every page is an entry
/// of the user, so one `invalidate_user` after a write drops all of them.
#[cached_api(key = "{page}", user = user_id, ttl = "10m", name = "notes")]
async fn list_notes(
    State(state): State<AppState>,
    Caller(user_id): Caller,
    Query(page): Query<Page>,
) -> Result<Json<NotePage>, ApiError> {
    if page.page == 0 || !(1..=100).contains(&page.per_page) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "page starts at 1; per_page is 1 to 100",
        ));
    }
    let source = &state.source;
    source.read(&source.reads.notes).await;
    let notes = source.notes.lock().unwrap();
    let all = notes.get(&user_id).map(Vec::as_slice).unwrap_or_default();
    let start = ((page.page - 1) * page.per_page) as usize;
    Ok(Json(NotePage {
        page: page.page,
        per_page: page.per_page,
        total: all.len(),
        notes: all
            .iter()
            .skip(start)
            .take(page.per_page as usize)
            .cloned()
            .collect(),
    }))
}

/// Adds a note, then drops the user's cached pages. Not cached: a write.
async fn post_note(
    State(state): State<AppState>,
    Caller(user_id): Caller,
    Json(new): Json<NewNote>,
) -> (StatusCode, Json<serde_json::Value>) {
    let note = {
        let mut notes = state.source.notes.lock().unwrap();
        let notes = notes.entry(user_id.clone()).or_default();
        let note = Note {
            id: notes.len() + 1,
            text: new.text,
        };
        notes.push(note.clone());
        note
    };
    let invalidated = invalidate_after_write(&user_id).await;
    (
        StatusCode::CREATED,
        Json(serde_json::json!({ "note": note, "cache_invalidated": invalidated })),
    )
}

/// Drops the user's entries after a write. If that fails, the write stands
/// but the response says so: cached copies may be served until they expire.
async fn invalidate_after_write(user_id: &str) -> bool {
    match cached_api::invalidate_user(user_id).await {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(%error, "write saved but its cached copies were not invalidated");
            false
        }
    }
}

/// Stores the profile, then drops every cached entry of the user. If the
/// invalidation fails, the write stands but the response says so: cached
/// copies may be served until they expire (15 minutes at most).
async fn put_profile(
    State(state): State<AppState>,
    Caller(user_id): Caller,
    Json(update): Json<ProfileUpdate>,
) -> Json<serde_json::Value> {
    let stored = Profile {
        user_id: user_id.clone(),
        display_name: update.display_name,
        bio: update.bio,
    };
    state
        .source
        .profiles
        .lock()
        .unwrap()
        .insert(user_id.clone(), stored.clone());
    let invalidated = invalidate_after_write(&user_id).await;
    Json(serde_json::json!({ "profile": stored, "cache_invalidated": invalidated }))
}

async fn get_rate_limit(State(state): State<AppState>, Caller(user_id): Caller) -> Json<RateLimit> {
    let minute = state.clock.now_secs() / 60;
    Json(rate_limit(&state.source, &user_id, minute).await)
}

/// Ids above 100 do not exist; an `Err` is never cached, so each 404 asks again.
#[cached_api(key = "{id}", user = user_id, ttl = "5m", name = "questionnaire")]
async fn get_questionnaire(
    State(state): State<AppState>,
    Caller(user_id): Caller,
    Path(id): Path<u32>,
) -> Result<Json<Questionnaire>, ApiError> {
    state.source.read(&state.source.reads.questionnaire).await;
    if id > 100 {
        return Err(ApiError(StatusCode::NOT_FOUND, "no such questionnaire"));
    }
    Ok(Json(Questionnaire {
        id,
        title: format!("questionnaire {id}"),
        questions: vec!["How are you?".into(), "Anything else?".into()],
    }))
}

/// The prompt-hash pattern: an expensive external call keyed by a digest
/// of its input, kept for a week. The summary is a resource it creates, so
/// it answers 201, on a hit as on a miss.
#[cached_api(key = sha256_hex(&prompt), ttl = "7d", name = "summarize")]
async fn post_summarize(
    State(state): State<AppState>,
    prompt: String,
) -> (StatusCode, Json<Summary>) {
    state.source.read(&state.source.reads.summarize).await;
    let words = prompt.split_whitespace().count();
    let summary = Summary {
        prompt_sha256: sha256_hex(&prompt),
        summary: format!(
            "{words} words, starting with {:?}",
            prompt.split_whitespace().next()
        ),
    };
    (StatusCode::CREATED, Json(summary))
}

fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cached_api(key = "health", ttl = "30s", name = "health")]
async fn get_health(State(state): State<AppState>) -> Json<Health> {
    state.source.read(&state.source.reads.health).await;
    Json(Health {
        status: "ok".into(),
    })
}

async fn get_stats() -> Json<cached_api::Stats> {
    Json(cached_api::stats())
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/plans", get(get_plans))
        .route("/plans/{id}", get(get_plan))
        .route("/admin/plans/{id}", axum::routing::put(put_plan))
        .route("/profile", get(get_profile).put(put_profile))
        .route("/notes", get(list_notes).post(post_note))
        .route("/rate-limit", get(get_rate_limit))
        .route("/questionnaires/{id}", get(get_questionnaire))
        .route("/summarize", post(post_summarize))
        .route("/health", get(get_health))
        .route("/stats", get(get_stats))
        .with_state(state)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let level = match std::env::var("API_SERVER_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt().with_max_level(level).init();

    let addr = std::env::var("API_SERVER_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let store = match std::env::var(cached_api::config::ENV_REDIS_URL) {
        Ok(url) => format!("Redis at {url}"),
        Err(_) => "the embedded store".to_owned(),
    };
    let state = AppState {
        source: Arc::new(Source {
            latency: Duration::from_millis(200),
            ..Source::default()
        }),
        clock: Clock::default(),
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!("listening on http://{addr}, caching in {store}");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
