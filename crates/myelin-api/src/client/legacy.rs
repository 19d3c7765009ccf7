//! The deprecated sync endpoints the spec still defines: `/initialSync`,
//! `/rooms/{roomId}/initialSync`, `/events` and `/events/{eventId}`.

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use myelin_service::legacy::EventsRequest;
use ruma::{OwnedEventId, OwnedRoomId};
use serde::Deserialize;
use serde_json::Value;

use super::sync::parse_timeout;
use crate::{
    error::{ApiError, ApiResult},
    extract::{parse_id, Auth, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v3/initialSync", get(initial_sync))
        .route(
            "/_matrix/client/v3/rooms/{room}/initialSync",
            get(room_initial_sync),
        )
        .route("/_matrix/client/v3/events", get(events))
        .route("/_matrix/client/v3/events/{event_id}", get(event))
}

#[derive(Deserialize, Default)]
struct InitialSyncParams {
    limit: Option<String>,
    archived: Option<String>,
}

/// GET /_matrix/client/v3/initialSync — client-server-api/#get_matrixclientv3initialsync.
async fn initial_sync(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(q): Query<InitialSyncParams>,
) -> ApiResult<Json<Value>> {
    let archived = match q.archived.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid_param("archived must be true or false")),
    };
    let limit = parse_limit(q.limit.as_deref())?;
    Ok(Json(
        state
            .services
            .legacy
            .initial_sync(&authed, limit, archived)
            .await?,
    ))
}

/// GET /_matrix/client/v3/rooms/{roomId}/initialSync.
async fn room_initial_sync(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    Query(q): Query<InitialSyncParams>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let limit = parse_limit(q.limit.as_deref())?;
    Ok(Json(
        state
            .services
            .legacy
            .room_initial_sync(&authed, &room_id, limit)
            .await?,
    ))
}

#[derive(Deserialize, Default)]
struct EventsParams {
    from: Option<String>,
    timeout: Option<String>,
    room_id: Option<String>,
}

/// GET /_matrix/client/v3/events — client-server-api/#get_matrixclientv3events (and peeking
/// into one room with `room_id`).
async fn events(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(q): Query<EventsParams>,
) -> ApiResult<Json<Value>> {
    let room_id = q
        .room_id
        .map(|r| parse_id::<OwnedRoomId>(r, "room ID"))
        .transpose()?;
    let req = EventsRequest {
        from: q.from,
        timeout_ms: parse_timeout(q.timeout.as_deref())?,
        room_id,
    };
    Ok(Json(state.services.legacy.events(&authed, req).await?))
}

/// GET /_matrix/client/v3/events/{eventId}.
async fn event(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(event_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let event_id: OwnedEventId = parse_id(event_id, "event ID")?;
    Ok(Json(state.services.legacy.event(&authed, &event_id).await?))
}

fn parse_limit(limit: Option<&str>) -> ApiResult<Option<usize>> {
    limit
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| ApiError::invalid_param("limit must be a non-negative integer"))
        })
        .transpose()
}
