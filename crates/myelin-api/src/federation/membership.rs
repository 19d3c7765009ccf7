//! Membership over federation (spec: Server-Server API, "Joining Rooms", "Leaving Rooms",
//! "Inviting to a room", knocking): the make_/send_ handshakes, answered by `Handshakes`.

use axum::{
    extract::{Path, State},
    routing::{get, put},
    Json, Router,
};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId};
use serde::Deserialize;
use serde_json::{json, value::RawValue as RawJsonValue, Value};

use super::{FederationJson, FederationOrigin};
use crate::{
    error::ApiResult,
    extract::{parse_id, QueryPairs},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/federation/v1/make_join/{room_id}/{user_id}",
            get(make_join),
        )
        .route(
            "/_matrix/federation/v2/send_join/{room_id}/{event_id}",
            put(send_join),
        )
        .route(
            "/_matrix/federation/v1/make_leave/{room_id}/{user_id}",
            get(make_leave),
        )
        .route(
            "/_matrix/federation/v2/send_leave/{room_id}/{event_id}",
            put(send_leave),
        )
        .route(
            "/_matrix/federation/v2/invite/{room_id}/{event_id}",
            put(invite),
        )
        .route(
            "/_matrix/federation/v1/invite/{room_id}/{event_id}",
            put(invite_v1),
        )
        .route(
            "/_matrix/federation/v1/make_knock/{room_id}/{user_id}",
            get(make_knock),
        )
        .route(
            "/_matrix/federation/v1/send_knock/{room_id}/{event_id}",
            put(send_knock),
        )
        // The v1 forms, still used by some servers: the answer is wrapped in `[200, body]`.
        .route(
            "/_matrix/federation/v1/send_join/{room_id}/{event_id}",
            put(send_join_v1),
        )
        .route(
            "/_matrix/federation/v1/send_leave/{room_id}/{event_id}",
            put(send_leave_v1),
        )
}

/// GET /_matrix/federation/v1/make_join/{roomId}/{userId}?ver=...
async fn make_join(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path((room_id, user_id)): Path<(String, String)>,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let user_id: OwnedUserId = parse_id(user_id, "user ID")?;
    let template = state
        .services
        .handshakes
        .federation_make_join(&origin, &room_id, &user_id, &query.all("ver"))
        .await?;
    Ok(Json(
        json!({ "room_version": template.room_version, "event": template.event }),
    ))
}

/// GET /_matrix/federation/v1/make_leave/{roomId}/{userId}.
async fn make_leave(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path((room_id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let user_id: OwnedUserId = parse_id(user_id, "user ID")?;
    let template = state
        .services
        .handshakes
        .federation_make_leave(&origin, &room_id, &user_id)
        .await?;
    Ok(Json(
        json!({ "room_version": template.room_version, "event": template.event }),
    ))
}

/// GET /_matrix/federation/v1/make_knock/{roomId}/{userId}?ver=...
async fn make_knock(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path((room_id, user_id)): Path<(String, String)>,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let user_id: OwnedUserId = parse_id(user_id, "user ID")?;
    let template = state
        .services
        .handshakes
        .federation_make_knock(&origin, &room_id, &user_id, &query.all("ver"))
        .await?;
    Ok(Json(
        json!({ "room_version": template.room_version, "event": template.event }),
    ))
}

/// PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}.
async fn send_knock(
    State(state): State<SharedState>,
    Path((room_id, event_id)): Path<(String, String)>,
    FederationJson { origin, body }: FederationJson<Box<RawJsonValue>>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let event_id: OwnedEventId = parse_id(event_id, "event ID")?;
    let stripped = state
        .services
        .handshakes
        .federation_send_knock(&origin, &room_id, &event_id, &body)
        .await?;
    Ok(Json(json!({ "knock_room_state": stripped })))
}

/// PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}: the v2 answer as `[200, body]`.
async fn send_join_v1(
    state: State<SharedState>,
    path: Path<(String, String)>,
    request: FederationJson<Box<RawJsonValue>>,
) -> ApiResult<Json<Value>> {
    let Json(body) = send_join(state, path, request).await?;
    Ok(Json(json!([200, body])))
}

/// PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}: `[200, {}]`.
async fn send_leave_v1(
    state: State<SharedState>,
    path: Path<(String, String)>,
    request: FederationJson<Box<RawJsonValue>>,
) -> ApiResult<Json<Value>> {
    let Json(body) = send_leave(state, path, request).await?;
    Ok(Json(json!([200, body])))
}

/// PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}.
async fn send_join(
    State(state): State<SharedState>,
    Path((room_id, event_id)): Path<(String, String)>,
    FederationJson { origin, body }: FederationJson<Box<RawJsonValue>>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let event_id: OwnedEventId = parse_id(event_id, "event ID")?;
    let answer = state
        .services
        .handshakes
        .federation_send_join(&origin, &room_id, &event_id, &body)
        .await?;
    Ok(Json(json!({
        "origin": state.services.ctx.server_name(),
        "state": answer.state,
        "auth_chain": answer.auth_chain,
        "event": answer.event,
        "members_omitted": false,
    })))
}

/// PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}.
async fn send_leave(
    State(state): State<SharedState>,
    Path((room_id, event_id)): Path<(String, String)>,
    FederationJson { origin, body }: FederationJson<Box<RawJsonValue>>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let event_id: OwnedEventId = parse_id(event_id, "event ID")?;
    state
        .services
        .handshakes
        .federation_send_leave(&origin, &room_id, &event_id, &body)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct InviteBody {
    event: Box<RawJsonValue>,
    room_version: RoomVersionId,
    #[serde(default)]
    invite_room_state: Vec<Value>,
}

/// PUT /_matrix/federation/v2/invite/{roomId}/{eventId}.
async fn invite(
    State(state): State<SharedState>,
    Path((room_id, event_id)): Path<(String, String)>,
    FederationJson { origin, body }: FederationJson<InviteBody>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let event_id: OwnedEventId = parse_id(event_id, "event ID")?;
    let signed = state
        .services
        .handshakes
        .federation_invite(
            &origin,
            &room_id,
            &event_id,
            &body.room_version,
            &body.event,
            body.invite_room_state,
        )
        .await?;
    Ok(Json(json!({ "event": signed })))
}

/// PUT /_matrix/federation/v1/invite/{roomId}/{eventId}: the invite of rooms of versions 1 and
/// 2 (the only ones that use it, and they share an event format), with the stripped state in
/// the event's `unsigned`; answered `[200, {"event": ...}]`.
async fn invite_v1(
    State(state): State<SharedState>,
    Path((room_id, event_id)): Path<(String, String)>,
    FederationJson { origin, body }: FederationJson<Box<RawJsonValue>>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    let event_id: OwnedEventId = parse_id(event_id, "event ID")?;
    #[derive(Deserialize, Default)]
    struct Unsigned {
        #[serde(default)]
        invite_room_state: Vec<Value>,
    }
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        unsigned: Option<Unsigned>,
    }
    let stripped = serde_json::from_str::<Head>(body.get())
        .ok()
        .and_then(|h| h.unsigned)
        .unwrap_or_default()
        .invite_room_state;
    let signed = state
        .services
        .handshakes
        .federation_invite(
            &origin,
            &room_id,
            &event_id,
            &RoomVersionId::V1,
            &body,
            stripped,
        )
        .await?;
    Ok(Json(json!([200, { "event": signed }])))
}
