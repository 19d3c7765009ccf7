//! Walking back through room history (spec: Server-Server API, "Backfilling and retrieving
//! missing events").

use axum::{
    extract::{Path, RawQuery, State},
    routing::{get, post},
    Json, Router,
};
use myelin_service::federation::MissingEventsRequest;
use ruma::{OwnedEventId, OwnedRoomId};
use serde::Serialize;
use serde_json::value::RawValue as RawJsonValue;

use super::{events::PduTransaction, FederationJson, FederationOrigin};
use crate::{
    error::{ApiError, ApiResult},
    extract::parse_id,
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/federation/v1/backfill/{room_id}", get(backfill))
        .route(
            "/_matrix/federation/v1/timestamp_to_event/{room_id}",
            get(timestamp_to_event),
        )
        .route(
            "/_matrix/federation/v1/get_missing_events/{room_id}",
            post(get_missing_events),
        )
}

/// GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit= (spec: Server-Server API,
/// "Backfilling and retrieving missing events" → "GET /_matrix/federation/v1/backfill/{roomId}").
///
/// `v` repeats, once per event to start from; `limit` is required.
async fn backfill(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path(room_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<PduTransaction>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
            .map_err(|e| ApiError::invalid_param(format!("Invalid query parameter: {e}")))?;
    let mut from: Vec<OwnedEventId> = Vec::new();
    let mut limit = None;
    for (key, value) in pairs {
        match key.as_str() {
            "v" => from.push(parse_id(value, "event ID in v")?),
            "limit" => {
                limit = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| ApiError::invalid_param("Invalid limit"))?,
                )
            }
            _ => {}
        }
    }
    let limit = limit.ok_or_else(|| ApiError::invalid_param("Missing limit"))?;
    if from.is_empty() {
        return Err(ApiError::invalid_param("Missing v"));
    }
    let pdus = state
        .services
        .federation_reads
        .federation_backfill(&origin, &room_id, &from, limit)
        .await?;
    Ok(Json(PduTransaction::new(&state, pdus)))
}

#[derive(Serialize)]
struct MissingEventsResponse {
    events: Vec<Box<RawJsonValue>>,
}

/// POST /_matrix/federation/v1/get_missing_events/{roomId} (spec: Server-Server API,
/// "Backfilling and retrieving missing events" → "POST
/// /_matrix/federation/v1/get_missing_events/{roomId}").
async fn get_missing_events(
    State(state): State<SharedState>,
    Path(room_id): Path<String>,
    request: FederationJson<MissingEventsRequest>,
) -> ApiResult<Json<MissingEventsResponse>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let events = state
        .services
        .federation_reads
        .federation_missing_events(&request.origin, &room_id, &request.body)
        .await?;
    Ok(Json(MissingEventsResponse { events }))
}

/// GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=&dir=.
async fn timestamp_to_event(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path(room_id): Path<String>,
    crate::extract::Query(query): crate::extract::Query<crate::extract::TimestampQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let (event_id, ts) = state
        .services
        .federation_reads
        .federation_timestamp_to_event(&origin, &room_id, query.ts, query.direction()?)
        .await?;
    Ok(axum::Json(
        serde_json::json!({ "event_id": event_id, "origin_server_ts": ts }),
    ))
}
