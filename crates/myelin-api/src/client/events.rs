//! Room events: sending, state, reading history.

use axum::{
    extract::{Path, State},
    routing::{get, put},
    Json, Router,
};
use myelin_service::{
    filter::RoomEventFilter,
    history::MembersQuery,
    sync::{pagination_token, SyncToken},
};
use myelin_storage::Direction;
use ruma::{OwnedEventId, OwnedRoomId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    error::{ApiError, ApiResult},
    extract::{parse_id, Auth, JsonBody, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}",
            put(send),
        )
        .route("/_matrix/client/v3/rooms/{room}/state", get(all_state))
        .route(
            "/_matrix/client/v1/rooms/{room}/timestamp_to_event",
            get(timestamp_to_event),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/state/{kind}",
            get(get_state_empty_key).put(put_state_empty_key),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/state/{kind}/",
            get(get_state_empty_key).put(put_state_empty_key),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/state/{kind}/{state_key}",
            get(get_state).put(put_state),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/event/{event_id}",
            get(get_event),
        )
        .route("/_matrix/client/v3/rooms/{room}/members", get(members))
        .route(
            "/_matrix/client/v3/rooms/{room}/joined_members",
            get(joined_members),
        )
        .route("/_matrix/client/v3/rooms/{room}/messages", get(messages))
        .route(
            "/_matrix/client/v3/rooms/{room}/context/{event_id}",
            get(context),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/redact/{event_id}/{txn}",
            put(redact),
        )
}

/// `?ts=`: the `origin_server_ts` an application service gives its event (spec: Application
/// Service API, "Timestamp massaging"); ignored for other senders.
#[derive(Deserialize, Default)]
struct MassagedTs {
    ts: Option<i64>,
}

impl MassagedTs {
    fn get(&self) -> ApiResult<Option<u64>> {
        self.ts
            .map(|ts| {
                u64::try_from(ts).map_err(|_| ApiError::invalid_param("ts must not be negative"))
            })
            .transpose()
    }
}

/// PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}.
async fn send(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room, kind, txn)): Path<(String, String, String)>,
    Query(ts): Query<MassagedTs>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let content = Value::Object(content);
    let event_id = state
        .services
        .rooms
        .send_message_at(&authed, &room_id, &kind, &txn, content, ts.get()?)
        .await?;
    Ok(Json(json!({ "event_id": event_id })))
}

/// GET /_matrix/client/v3/rooms/{roomId}/state.
async fn all_state(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    Ok(Json(Value::Array(
        state
            .services
            .history
            .room_state_events(&authed.user_id, &room_id)
            .await?,
    )))
}

async fn get_state_empty_key(
    state: State<SharedState>,
    auth: Auth,
    Path((room, kind)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    get_state(state, auth, Path((room, kind, String::new()))).await
}

/// GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}.
async fn get_state(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room, kind, key)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    Ok(Json(
        state
            .services
            .history
            .room_state_event(&authed.user_id, &room_id, &kind, &key)
            .await?,
    ))
}

async fn put_state_empty_key(
    state: State<SharedState>,
    auth: Auth,
    Path((room, kind)): Path<(String, String)>,
    ts: Query<MassagedTs>,
    body: JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    put_state(state, auth, Path((room, kind, String::new())), ts, body).await
}

/// PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}.
async fn put_state(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room, kind, key)): Path<(String, String, String)>,
    Query(ts): Query<MassagedTs>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let content = Value::Object(content);
    let event_id = state
        .services
        .rooms
        .send_state_at(&authed, &room_id, &kind, &key, content, ts.get()?)
        .await?;
    Ok(Json(json!({ "event_id": event_id })))
}

/// GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}.
async fn get_event(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room, event)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let event_id: OwnedEventId = parse_id(event, "event ID")?;
    Ok(Json(
        state
            .services
            .history
            .get_room_event(&authed.user_id, &authed.device_id, &room_id, &event_id)
            .await?,
    ))
}

#[derive(Deserialize, Default)]
struct MembersParams {
    at: Option<String>,
    membership: Option<String>,
    not_membership: Option<String>,
}

/// GET /_matrix/client/v3/rooms/{roomId}/members (spec: client-server "Room membership"): the
/// members at `at` (a sync or pagination token), at most up to what the user may see.
async fn members(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    Query(q): Query<MembersParams>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let at = match &q.at {
        Some(at) => Some(
            SyncToken::parse(at)
                .ok_or_else(|| ApiError::invalid_param("Invalid `at` token"))?
                .pos,
        ),
        None => None,
    };
    let query = MembersQuery {
        at,
        membership: q.membership,
        not_membership: q.not_membership,
    };
    Ok(Json(
        json!({ "chunk": state.services.history.room_members(&authed.user_id, &room_id, &query).await? }),
    ))
}

/// GET /_matrix/client/v3/rooms/{roomId}/joined_members.
async fn joined_members(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    Ok(Json(
        state
            .services
            .history
            .joined_members(&authed.user_id, &room_id)
            .await?,
    ))
}

#[derive(Deserialize, Default)]
struct MessagesParams {
    from: Option<String>,
    to: Option<String>,
    dir: Option<String>,
    limit: Option<String>,
    filter: Option<String>,
}

pub(super) fn parse_token(token: &Option<String>) -> ApiResult<Option<myelin_core::StreamPos>> {
    token
        .as_deref()
        .map(|t| {
            SyncToken::parse(t)
                .map(|t| t.pos)
                .ok_or_else(|| ApiError::invalid_param("Invalid pagination token"))
        })
        .transpose()
}

pub(super) fn parse_limit(limit: &Option<String>, default: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_param("limit must be a non-negative integer")),
    }
}

/// GET /_matrix/client/v3/rooms/{roomId}/messages.
async fn messages(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    Query(q): Query<MessagesParams>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let dir = match q.dir.as_deref() {
        Some("b") => Direction::Backward,
        Some("f") => Direction::Forward,
        _ => return Err(ApiError::invalid_param("dir must be 'b' or 'f'")),
    };
    let from = parse_token(&q.from)?;
    let to = parse_token(&q.to)?;
    let limit = parse_limit(&q.limit, 10)?;
    let filter: RoomEventFilter = match &q.filter {
        Some(f) => serde_json::from_str(f)
            .map_err(|e| ApiError::bad_json(format!("Invalid filter: {e}")))?,
        None => RoomEventFilter::default(),
    };
    let limit = filter.limit.map_or(limit, |l| l as usize).min(limit.max(1));
    let page = state
        .services
        .history
        .messages(
            &authed.user_id,
            &authed.device_id,
            &room_id,
            from,
            to,
            dir,
            limit,
            &filter,
        )
        .await?;
    let mut body = json!({ "chunk": page.chunk, "start": pagination_token(page.start) });
    if let Some(end) = page.end {
        body["end"] = json!(pagination_token(end));
    }
    if !page.state.is_empty() {
        body["state"] = json!(page.state);
    }
    Ok(Json(body))
}

#[derive(Deserialize, Default)]
struct ContextParams {
    limit: Option<String>,
}

/// GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}.
async fn context(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room, event)): Path<(String, String)>,
    Query(q): Query<ContextParams>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let event_id: OwnedEventId = parse_id(event, "event ID")?;
    let limit = parse_limit(&q.limit, 10)?;
    let page = state
        .services
        .history
        .context(
            &authed.user_id,
            &authed.device_id,
            &room_id,
            &event_id,
            limit,
        )
        .await?;
    Ok(Json(json!({
        "event": page.event,
        "events_before": page.before,
        "events_after": page.after,
        "start": pagination_token(page.start),
        "end": pagination_token(page.end),
        "state": page.state,
    })))
}

#[derive(Deserialize, Default)]
struct RedactBody {
    reason: Option<String>,
}

/// PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}.
async fn redact(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room, event, txn)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<RedactBody>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let event_id: OwnedEventId = parse_id(event, "event ID")?;
    let id = state
        .services
        .rooms
        .redact(&authed, &room_id, &event_id, &txn, body.reason.as_deref())
        .await?;
    Ok(Json(json!({ "event_id": id })))
}

/// GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event?ts=&dir=.
async fn timestamp_to_event(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    Query(query): Query<crate::extract::TimestampQuery>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let (event_id, ts) = state
        .services
        .history
        .timestamp_to_event(&authed.user_id, &room_id, query.ts, query.direction()?)
        .await?;
    Ok(Json(
        json!({ "event_id": event_id, "origin_server_ts": ts }),
    ))
}
