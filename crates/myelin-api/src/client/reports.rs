//! Reporting content (spec: Client-Server API, "Reporting content"): events, rooms and users
//! reported to this server's administrators, answered by the `Reports` subsystem.

use axum::{
    extract::{Path, State},
    routing::post,
    Json, Router,
};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::ApiResult,
    extract::{parse_id, Auth, JsonBody},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/client/v3/rooms/{room}/report/{event}",
            post(report_event),
        )
        .route("/_matrix/client/v3/rooms/{room}/report", post(report_room))
        .route("/_matrix/client/v3/users/{user}/report", post(report_user))
}

#[derive(Deserialize)]
struct ReportBody {
    reason: Option<String>,
    score: Option<i64>,
}

/// POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}.
async fn report_event(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room, event)): Path<(String, String)>,
    JsonBody(body): JsonBody<ReportBody>,
) -> ApiResult<Json<Value>> {
    let room: OwnedRoomId = parse_id(room, "room ID")?;
    let event: OwnedEventId = parse_id(event, "event ID")?;
    state
        .services
        .reports
        .report_event(&authed, &room, &event, body.reason, body.score)
        .await?;
    Ok(Json(json!({})))
}

/// POST /_matrix/client/v3/rooms/{roomId}/report (spec v1.13).
async fn report_room(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<ReportBody>,
) -> ApiResult<Json<Value>> {
    let room: OwnedRoomId = parse_id(room, "room ID")?;
    state
        .services
        .reports
        .report_room(&authed, &room, body.reason)
        .await?;
    Ok(Json(json!({})))
}

/// POST /_matrix/client/v3/users/{userId}/report (spec v1.14).
async fn report_user(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<ReportBody>,
) -> ApiResult<Json<Value>> {
    let user: OwnedUserId = parse_id(user, "user ID")?;
    state
        .services
        .reports
        .report_user(&authed, &user, body.reason)
        .await?;
    Ok(Json(json!({})))
}
