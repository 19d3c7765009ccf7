//! `/sync`, simplified sliding sync (MSC4186) and filters.

use axum::{
    extract::{Path, State},
    routing::{get, post},
    Json, Router,
};
use myelin_service::{
    sliding_sync::{SlidingSyncRequest, SlidingSyncResponse},
    sync::SyncRequest,
};
use ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::{ApiError, ApiResult},
    extract::{parse_id, Auth, JsonBody, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v3/sync", get(sync))
        .route(
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
            post(sliding_sync),
        )
        .route(
            "/_matrix/client/v3/user/{user_id}/filter",
            post(create_filter),
        )
        .route(
            "/_matrix/client/v3/user/{user_id}/filter/{filter_id}",
            get(get_filter),
        )
}

#[derive(Deserialize, Default)]
struct SyncParams {
    since: Option<String>,
    timeout: Option<String>,
    full_state: Option<String>,
    filter: Option<String>,
    set_presence: Option<String>,
}

/// GET /_matrix/client/v3/sync — client-server-api/#get_matrixclientv3sync.
async fn sync(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(q): Query<SyncParams>,
) -> ApiResult<Json<Value>> {
    let timeout_ms = parse_timeout(q.timeout.as_deref())?;
    let full_state = match q.full_state.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid_param("full_state must be true or false")),
    };
    let req = SyncRequest {
        since: q.since,
        timeout_ms,
        full_state,
        filter: q.filter,
        set_presence: q.set_presence,
    };
    Ok(Json(state.services.sync.sync(&authed, req).await?))
}

#[derive(Deserialize, Default)]
struct SlidingSyncParams {
    pos: Option<String>,
    timeout: Option<String>,
}

/// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync — MSC4186 (simplified
/// sliding sync), as Synapse serves it and matrix-sdk (Element X) uses it.
async fn sliding_sync(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(q): Query<SlidingSyncParams>,
    JsonBody(req): JsonBody<SlidingSyncRequest>,
) -> ApiResult<Json<SlidingSyncResponse>> {
    let timeout_ms = parse_timeout(q.timeout.as_deref())?;
    let response = state
        .services
        .sliding_sync
        .sync(&authed, q.pos.as_deref(), timeout_ms, req)
        .await?;
    Ok(Json(response))
}

/// The `timeout` query parameter in milliseconds (0 when absent).
pub(crate) fn parse_timeout(timeout: Option<&str>) -> ApiResult<u64> {
    match timeout {
        None => Ok(0),
        Some(t) => t
            .parse::<u64>()
            .map_err(|_| ApiError::invalid_param("timeout must be a non-negative integer")),
    }
}

pub(crate) fn own_user(
    authed: &myelin_service::accounts::Authed,
    user: String,
) -> ApiResult<OwnedUserId> {
    let user_id: OwnedUserId = parse_id(user, "user ID")?;
    if user_id != authed.user_id {
        return Err(ApiError::forbidden("Cannot access another user's data"));
    }
    Ok(user_id)
}

/// POST /_matrix/client/v3/user/{userId}/filter.
async fn create_filter(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(user): Path<String>,
    JsonBody(filter): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&authed, user)?;
    if !filter.is_object() {
        return Err(ApiError::bad_json("Filter must be a JSON object"));
    }
    let id = state.services.users.create_filter(&user_id, filter).await?;
    Ok(Json(json!({ "filter_id": id })))
}

/// GET /_matrix/client/v3/user/{userId}/filter/{filterId}.
async fn get_filter(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((user, filter_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&authed, user)?;
    Ok(Json(
        state
            .services
            .users
            .get_filter(&user_id, &filter_id)
            .await?,
    ))
}
