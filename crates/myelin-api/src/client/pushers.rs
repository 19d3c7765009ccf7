//! Pushers and notifications (spec: client-server "Push notifications": `/pushers`,
//! `/pushers/set`, `/notifications`).

use axum::{
    extract::State,
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::ApiResult,
    extract::{Auth, JsonBody, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v3/pushers", get(get_pushers))
        .route("/_matrix/client/v3/pushers/set", post(set_pusher))
        .route("/_matrix/client/v3/notifications", get(notifications))
}

/// GET /_matrix/client/v3/pushers.
async fn get_pushers(
    State(state): State<SharedState>,
    Auth(authed): Auth,
) -> ApiResult<Json<Value>> {
    let pushers = state.services.push.pushers_json(&authed.user_id).await?;
    Ok(Json(json!({ "pushers": pushers })))
}

/// POST /_matrix/client/v3/pushers/set.
async fn set_pusher(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    state
        .services
        .push
        .set_pusher(&authed.user_id, &authed.device_id, &body)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
struct NotificationParams {
    from: Option<String>,
    limit: Option<usize>,
    only: Option<String>,
}

/// GET /_matrix/client/v3/notifications.
async fn notifications(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(params): Query<NotificationParams>,
) -> ApiResult<Json<Value>> {
    let page = state
        .services
        .push
        .notifications(
            &authed.user_id,
            params.from.as_deref(),
            params.limit,
            params.only.as_deref(),
        )
        .await?;
    Ok(Json(json!(page)))
}
