//! Reading single events, room state and auth chains (spec: Server-Server API, "Retrieving
//! events" and "Authentication" → "Retrieving event authorization information").

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue as RawJsonValue;

use super::FederationOrigin;
use crate::{
    error::ApiResult,
    extract::{parse_id, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/federation/v1/event/{event_id}", get(event))
        .route("/_matrix/federation/v1/state/{room_id}", get(state))
        .route("/_matrix/federation/v1/state_ids/{room_id}", get(state_ids))
        .route(
            "/_matrix/federation/v1/event_auth/{room_id}/{event_id}",
            get(event_auth),
        )
}

/// A transaction-shaped answer: `{origin, origin_server_ts, pdus}`.
#[derive(Serialize)]
pub(super) struct PduTransaction {
    pub origin: OwnedServerName,
    pub origin_server_ts: u64,
    pub pdus: Vec<Box<RawJsonValue>>,
}

impl PduTransaction {
    pub fn new(state: &SharedState, pdus: Vec<Box<RawJsonValue>>) -> Self {
        let services = &state.services;
        PduTransaction {
            origin: services.ctx.server_name().to_owned(),
            origin_server_ts: services.ctx.now_ms(),
            pdus,
        }
    }
}

/// GET /_matrix/federation/v1/event/{eventId} (spec: Server-Server API, "Retrieving events" →
/// "GET /_matrix/federation/v1/event/{eventId}").
async fn event(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path(event_id): Path<String>,
) -> ApiResult<Json<PduTransaction>> {
    let event_id: OwnedEventId = parse_id(event_id, "event ID")?;
    let pdu = state
        .services
        .federation_reads
        .federation_event(&origin, &event_id)
        .await?;
    Ok(Json(PduTransaction::new(&state, vec![pdu])))
}

#[derive(Deserialize)]
struct AtEvent {
    event_id: String,
}

#[derive(Serialize)]
struct StateResponse {
    pdus: Vec<Box<RawJsonValue>>,
    auth_chain: Vec<Box<RawJsonValue>>,
}

/// GET /_matrix/federation/v1/state/{roomId}?event_id= (spec: Server-Server API, "Retrieving
/// events" → "GET /_matrix/federation/v1/state/{roomId}"): the state before the event.
async fn state(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path(room_id): Path<String>,
    Query(query): Query<AtEvent>,
) -> ApiResult<Json<StateResponse>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let event_id: OwnedEventId = parse_id(query.event_id, "event_id")?;
    let found = state
        .services
        .federation_reads
        .federation_state(&origin, &room_id, &event_id)
        .await?;
    Ok(Json(StateResponse {
        pdus: found.pdus,
        auth_chain: found.auth_chain,
    }))
}

#[derive(Serialize)]
struct StateIdsResponse {
    pdu_ids: Vec<OwnedEventId>,
    auth_chain_ids: Vec<OwnedEventId>,
}

/// GET /_matrix/federation/v1/state_ids/{roomId}?event_id= (spec: Server-Server API,
/// "Retrieving events" → "GET /_matrix/federation/v1/state_ids/{roomId}").
async fn state_ids(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path(room_id): Path<String>,
    Query(query): Query<AtEvent>,
) -> ApiResult<Json<StateIdsResponse>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let event_id: OwnedEventId = parse_id(query.event_id, "event_id")?;
    let found = state
        .services
        .federation_reads
        .federation_state_ids(&origin, &room_id, &event_id)
        .await?;
    Ok(Json(StateIdsResponse {
        pdu_ids: found.pdu_ids,
        auth_chain_ids: found.auth_chain_ids,
    }))
}

#[derive(Serialize)]
struct EventAuthResponse {
    auth_chain: Vec<Box<RawJsonValue>>,
}

/// GET /_matrix/federation/v1/event_auth/{roomId}/{eventId} (spec: Server-Server API,
/// "Authentication" → "GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}").
async fn event_auth(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path((room_id, event_id)): Path<(String, String)>,
) -> ApiResult<Json<EventAuthResponse>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let event_id: OwnedEventId = parse_id(event_id, "event ID")?;
    let auth_chain = state
        .services
        .federation_reads
        .federation_event_auth(&origin, &room_id, &event_id)
        .await?;
    Ok(Json(EventAuthResponse { auth_chain }))
}
