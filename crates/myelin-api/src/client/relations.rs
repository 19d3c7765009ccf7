//! Event relationships and threads (spec: Client-Server API, "Event relationships",
//! "Threading"): `/relations` and `/threads`. The bundled aggregations of the events every read
//! endpoint serves are the history subsystem's.

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use myelin_service::{
    history::relations::{RelationsPage, RelationsRequest, ThreadsInclude},
    sync::pagination_token,
};
use myelin_storage::Direction;
use ruma::{OwnedEventId, OwnedRoomId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::events::{parse_limit, parse_token};
use crate::{
    error::{ApiError, ApiResult},
    extract::{parse_id, Auth, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/client/v1/rooms/{room}/relations/{event_id}",
            get(relations),
        )
        .route(
            "/_matrix/client/v1/rooms/{room}/relations/{event_id}/{rel_type}",
            get(relations_of_type),
        )
        .route(
            "/_matrix/client/v1/rooms/{room}/relations/{event_id}/{rel_type}/{event_type}",
            get(relations_of_types),
        )
        .route("/_matrix/client/v1/rooms/{room}/threads", get(threads))
}

#[derive(Deserialize, Default)]
struct RelationsParams {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    dir: Option<String>,
    recurse: Option<String>,
    /// The name of `recurse` before it was in the spec (MSC3981), which clients still send.
    #[serde(rename = "org.matrix.msc3981.recurse")]
    unstable_recurse: Option<String>,
}

/// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId} (spec: "Event relationships").
async fn relations(
    state: State<SharedState>,
    auth: Auth,
    Path((room, event)): Path<(String, String)>,
    query: Query<RelationsParams>,
) -> ApiResult<Json<Value>> {
    list_relations(state, auth, (room, event, None, None), query).await
}

/// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}.
async fn relations_of_type(
    state: State<SharedState>,
    auth: Auth,
    Path((room, event, rel_type)): Path<(String, String, String)>,
    query: Query<RelationsParams>,
) -> ApiResult<Json<Value>> {
    list_relations(state, auth, (room, event, Some(rel_type), None), query).await
}

/// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}.
async fn relations_of_types(
    state: State<SharedState>,
    auth: Auth,
    Path((room, event, rel_type, event_type)): Path<(String, String, String, String)>,
    query: Query<RelationsParams>,
) -> ApiResult<Json<Value>> {
    let path = (room, event, Some(rel_type), Some(event_type));
    list_relations(state, auth, path, query).await
}

/// The three `/relations` routes: room, parent, and the optional relation and event types.
async fn list_relations(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    (room, event, rel_type, event_type): (String, String, Option<String>, Option<String>),
    Query(q): Query<RelationsParams>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let event_id: OwnedEventId = parse_id(event, "event ID")?;
    let dir = match q.dir.as_deref() {
        None | Some("b") => Direction::Backward,
        Some("f") => Direction::Forward,
        Some(_) => return Err(ApiError::invalid_param("dir must be 'b' or 'f'")),
    };
    let recurse = parse_bool(q.recurse.as_deref(), "recurse")?
        || parse_bool(q.unstable_recurse.as_deref(), "org.matrix.msc3981.recurse")?;
    let req = RelationsRequest {
        rel_type,
        event_type,
        from: parse_token(&q.from)?,
        to: parse_token(&q.to)?,
        dir,
        limit: limit_param(&q.limit)?,
        recurse,
    };
    let page = state
        .services
        .history
        .relations(&authed.user_id, &authed.device_id, &room_id, &event_id, req)
        .await?;
    Ok(Json(relations_body(page)))
}

fn relations_body(page: RelationsPage) -> Value {
    let mut body = json!({ "chunk": page.chunk });
    if let Some(next) = page.next_batch {
        body["next_batch"] = json!(pagination_token(next));
    }
    if let Some(prev) = page.prev_batch {
        body["prev_batch"] = json!(pagination_token(prev));
    }
    if let Some(depth) = page.recursion_depth {
        body["recursion_depth"] = json!(depth);
    }
    body
}

/// A `limit` query parameter, if given.
fn limit_param(limit: &Option<String>) -> ApiResult<Option<usize>> {
    limit.as_ref().map(|_| parse_limit(limit, 0)).transpose()
}

/// A boolean query parameter: `true` or `false`, absent meaning `false`.
fn parse_bool(value: Option<&str>, name: &str) -> ApiResult<bool> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::invalid_param(format!(
            "{name} must be 'true' or 'false'"
        ))),
    }
}

#[derive(Deserialize, Default)]
struct ThreadsParams {
    include: Option<String>,
    from: Option<String>,
    limit: Option<String>,
}

/// GET /_matrix/client/v1/rooms/{roomId}/threads (spec: "Threading").
async fn threads(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    Query(q): Query<ThreadsParams>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let include = match q.include.as_deref() {
        None | Some("all") => ThreadsInclude::All,
        Some("participated") => ThreadsInclude::Participated,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "include must be 'all' or 'participated'",
            ))
        }
    };
    let limit = match limit_param(&q.limit)? {
        Some(0) => return Err(ApiError::invalid_param("limit must be greater than zero")),
        limit => limit,
    };
    let from = parse_token(&q.from)?;
    let page = state
        .services
        .history
        .threads(
            &authed.user_id,
            &authed.device_id,
            &room_id,
            include,
            from,
            limit,
        )
        .await?;
    let mut body = json!({ "chunk": page.chunk });
    if let Some(next) = page.next_batch {
        body["next_batch"] = json!(pagination_token(next));
    }
    Ok(Json(body))
}
