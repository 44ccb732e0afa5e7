use axum::Json;
use cached_api::cached_api;

#[derive(serde::Serialize, serde::Deserialize)]
struct Plan {
    id: u64,
}

/// An error that is not serializable cannot be cached with `error_ttl`;
/// without it, only `Ok` is stored and the error need not be.
#[derive(Debug)]
struct ApiError;

#[cached_api(key = "{id}", error_ttl = "10s")]
async fn plan(id: u64) -> Result<Json<Plan>, ApiError> {
    Ok(Json(Plan { id }))
}

#[cached_api(key = "{id}")]
async fn plan_ok_only(id: u64) -> Result<Json<Plan>, ApiError> {
    Ok(Json(Plan { id }))
}

fn main() {}
