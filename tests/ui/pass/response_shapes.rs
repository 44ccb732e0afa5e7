//! Every shape of the README's table with every option it lists: `none`
//! and `error_ttl` where the shape takes them, each with `l1`, `stale`,
//! `refresh` and `lock`. Each function's second call must be a hit that
//! rebuilds the same value (every computation numbers its value).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::http::StatusCode;
use axum::response::Html;
use cached_api::cached_api;
use serde::{Deserialize, Serialize};

static RUNS: AtomicU64 = AtomicU64::new(0);

fn run() -> u64 {
    RUNS.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    id: u64,
    run: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ApiError {
    run: u64,
}

fn plan(id: u64) -> Plan {
    Plan { id, run: run() }
}

/// A module of one shape: the function with no option, with each of `l1`,
/// `stale`, `refresh` and `lock`, and a blocking one, all with the shape's
/// own options; `check` calls each twice and asserts the second is a hit
/// with the same value.
macro_rules! every_option {
    ($module:ident: $ret:ty = |$id:ident| $value:expr $(, $option:ident = $setting:expr)*) => {
        mod $module {
            use super::*;

            #[cached_api(ttl = "1m" $(, $option = $setting)*)]
            pub async fn plain($id: u64) -> $ret {
                $value
            }

            #[cached_api(ttl = "1m", l1 = true $(, $option = $setting)*)]
            pub async fn l1($id: u64) -> $ret {
                $value
            }

            #[cached_api(ttl = "1m", stale = "1m" $(, $option = $setting)*)]
            pub async fn stale($id: u64) -> $ret {
                $value
            }

            #[cached_api(ttl = "1m", refresh = true $(, $option = $setting)*)]
            pub async fn refresh($id: u64) -> $ret {
                $value
            }

            #[cached_api(ttl = "1m", lock = true $(, $option = $setting)*)]
            pub async fn lock($id: u64) -> $ret {
                $value
            }

            #[cached_api(ttl = "1m" $(, $option = $setting)*)]
            pub fn blocking($id: u64) -> $ret {
                $value
            }

            pub async fn check() {
                let hits = || cached_api::stats().total.hits;
                macro_rules! twice {
                    ($call:expr) => {{
                        let before = hits();
                        let first = format!("{:?}", $call);
                        let second = format!("{:?}", $call);
                        assert_eq!(first, second, "{}: the second call rebuilds the first's value", stringify!($call));
                        assert_eq!(hits(), before + 1, "{}: the second call is a hit", stringify!($call));
                    }};
                }
                twice!(plain(1).await);
                twice!(l1(1).await);
                twice!(stale(1).await);
                twice!(refresh(1).await);
                twice!(lock(1).await);
                twice!(tokio::task::block_in_place(|| blocking(1)));
            }
        }
    };
}

every_option!(json: Json<Plan> = |id| Json(plan(id)));
every_option!(html: Html<String> = |id| Html(format!("<p>{id}/{}</p>", run())));
every_option!(status: (StatusCode, Json<Plan>) = |id| (StatusCode::CREATED, Json(plan(id))));
every_option!(result_ok: Result<Json<Plan>, ApiError> = |id| Ok(Json(plan(id))));
every_option!(result_ok_with_error_ttl: Result<Json<Plan>, ApiError> = |id| Ok(Json(plan(id))), error_ttl = "10s");
every_option!(result_err_with_error_ttl: Result<Json<Plan>, ApiError> = |id| Err(ApiError { run: run() + id }), error_ttl = "10s");
every_option!(result_status_with_error_ttl: Result<(StatusCode, Html<String>), ApiError> = |id| Ok((StatusCode::ACCEPTED, Html(format!("{id}/{}", run())))), error_ttl = "10s");
every_option!(option_some: Option<Json<Plan>> = |id| Some(Json(plan(id))));
every_option!(option_some_with_none: Option<Json<Plan>> = |id| Some(Json(plan(id))), none = true);
every_option!(option_none_with_none: Option<Json<Plan>> = |id| { run(); (id == 0).then(|| Json(plan(id))) }, none = true);
every_option!(option_status_with_none: Option<(StatusCode, Json<Plan>)> = |id| Some((StatusCode::CREATED, Json(plan(id)))), none = true);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    json::check().await;
    html::check().await;
    status::check().await;
    result_ok::check().await;
    result_ok_with_error_ttl::check().await;
    result_err_with_error_ttl::check().await;
    result_status_with_error_ttl::check().await;
    option_some::check().await;
    option_some_with_none::check().await;
    option_none_with_none::check().await;
    option_status_with_none::check().await;
}
