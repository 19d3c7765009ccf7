//! Per-user data: profiles, typing, receipts, read markers, account data, tags, presence.

use axum::{
    extract::{Path, State},
    routing::{get, post, put},
    Json, Router,
};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::sync::own_user as require_own_user;
use crate::{
    error::{ApiError, ApiResult},
    extract::{parse_id, Auth, JsonBody},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v3/profile/{user_id}", get(get_profile))
        .route(
            "/_matrix/client/v3/profile/{user_id}/{field}",
            get(get_profile_field)
                .put(put_profile_field)
                .delete(delete_profile_field),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/typing/{user_id}",
            put(typing),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/receipt/{receipt_type}/{event_id}",
            post(receipt),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/read_markers",
            post(read_markers),
        )
        .route(
            "/_matrix/client/v3/user/{user_id}/account_data/{kind}",
            get(get_account_data).put(put_account_data),
        )
        .route(
            "/_matrix/client/v3/user/{user_id}/rooms/{room}/account_data/{kind}",
            get(get_room_account_data).put(put_room_account_data),
        )
        .route(
            "/_matrix/client/v3/user/{user_id}/rooms/{room}/tags",
            get(get_tags),
        )
        .route(
            "/_matrix/client/v3/user/{user_id}/rooms/{room}/tags/{tag}",
            put(put_tag).delete(delete_tag),
        )
        .route(
            "/_matrix/client/v3/presence/{user_id}/status",
            get(get_presence).put(put_presence),
        )
        .route(
            "/_matrix/client/v3/user_directory/search",
            post(search_user_directory),
        )
}

#[derive(Deserialize)]
struct DirectorySearch {
    search_term: String,
    #[serde(default = "default_directory_limit")]
    limit: usize,
}

fn default_directory_limit() -> usize {
    10
}

/// POST /_matrix/client/v3/user_directory/search (spec: client-server "User directory").
async fn search_user_directory(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<DirectorySearch>,
) -> ApiResult<Json<Value>> {
    let (users, limited) = state
        .services
        .users
        .search_users(&authed.user_id, &body.search_term, body.limit)
        .await?;
    let results: Vec<Value> = users.iter().map(|u| u.to_json()).collect();
    Ok(Json(json!({ "results": results, "limited": limited })))
}

/// GET /_matrix/client/v3/profile/{userId}.
async fn get_profile(
    State(state): State<SharedState>,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    let user_id: OwnedUserId = parse_id(user, "user ID")?;
    // An appservice may create the puppet of a user of its namespace first.
    state.services.appservices.ensure_user(&user_id).await?;
    Ok(Json(state.services.users.profile(&user_id).await?))
}

/// GET /_matrix/client/v3/profile/{userId}/{keyName}.
async fn get_profile_field(
    State(state): State<SharedState>,
    Path((user, field)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id: OwnedUserId = parse_id(user, "user ID")?;
    let profile = state.services.users.profile(&user_id).await?;
    let value = profile
        .get(&field)
        .cloned()
        .ok_or_else(|| ApiError::not_found("Profile field not set"))?;
    Ok(Json(json!({ field: value })))
}

/// DELETE /_matrix/client/v3/profile/{userId}/{keyName}: unsets the field.
async fn delete_profile_field(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((user, field)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = require_own_user(&authed, user)?;
    if field != "displayname" && field != "avatar_url" {
        state
            .services
            .users
            .set_custom_profile_field(&user_id, &field, None)
            .await?;
        return Ok(Json(json!({})));
    }
    state
        .services
        .membership
        .set_profile_field(&user_id, &field, None)
        .await?;
    Ok(Json(json!({})))
}

/// PUT /_matrix/client/v3/profile/{userId}/{keyName}.
async fn put_profile_field(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((user, field)): Path<(String, String)>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let user_id = require_own_user(&authed, user)?;
    if field != "displayname" && field != "avatar_url" {
        let value = body.get(&field).cloned().ok_or_else(|| {
            ApiError::missing_param(format!("The body must hold the {field} property"))
        })?;
        state
            .services
            .users
            .set_custom_profile_field(&user_id, &field, Some(value))
            .await?;
        return Ok(Json(json!({})));
    }
    let value = match body.get(&field) {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Null) | None => None,
        Some(_) => return Err(ApiError::bad_json(format!("{field} must be a string"))),
    };
    state
        .services
        .membership
        .set_profile_field(&user_id, &field, value)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct TypingBody {
    typing: bool,
    timeout: Option<u64>,
}

/// PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}.
async fn typing(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room, user)): Path<(String, String)>,
    JsonBody(body): JsonBody<TypingBody>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let user_id = require_own_user(&authed, user)?;
    state
        .services
        .ephemeral
        .set_typing(&user_id, &room_id, body.typing, body.timeout)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
struct ReceiptBody {
    thread_id: Option<String>,
}

/// POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}.
async fn receipt(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room, receipt_type, event)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<ReceiptBody>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let event_id: OwnedEventId = parse_id(event, "event ID")?;
    state
        .services
        .ephemeral
        .set_receipt(&authed, &room_id, &receipt_type, &event_id, body.thread_id)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct MarkersBody {
    #[serde(rename = "m.fully_read")]
    fully_read: Option<OwnedEventId>,
    #[serde(rename = "m.read")]
    read: Option<OwnedEventId>,
    #[serde(rename = "m.read.private")]
    read_private: Option<OwnedEventId>,
}

/// POST /_matrix/client/v3/rooms/{roomId}/read_markers.
async fn read_markers(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<MarkersBody>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    state
        .services
        .ephemeral
        .set_read_markers(
            &authed,
            &room_id,
            body.fully_read,
            body.read,
            body.read_private,
        )
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/user/{userId}/account_data/{type}.
async fn get_account_data(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((user, kind)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = require_own_user(&authed, user)?;
    Ok(Json(
        state
            .services
            .users
            .get_account_data(&user_id, None, &kind)
            .await?,
    ))
}

/// PUT /_matrix/client/v3/user/{userId}/account_data/{type}.
async fn put_account_data(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((user, kind)): Path<(String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let user_id = require_own_user(&authed, user)?;
    state
        .services
        .users
        .set_account_data(&user_id, None, &kind, Value::Object(content))
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}.
async fn get_room_account_data(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((user, room, kind)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = require_own_user(&authed, user)?;
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    Ok(Json(
        state
            .services
            .users
            .get_account_data(&user_id, Some(&room_id), &kind)
            .await?,
    ))
}

/// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}.
async fn put_room_account_data(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((user, room, kind)): Path<(String, String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let user_id = require_own_user(&authed, user)?;
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    state
        .services
        .users
        .set_account_data(&user_id, Some(&room_id), &kind, Value::Object(content))
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags.
async fn get_tags(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((user, room)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = require_own_user(&authed, user)?;
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    Ok(Json(
        json!({ "tags": state.services.users.tags(&user_id, &room_id).await? }),
    ))
}

/// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}.
async fn put_tag(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((user, room, tag)): Path<(String, String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let user_id = require_own_user(&authed, user)?;
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    state
        .services
        .users
        .set_tag(&user_id, &room_id, &tag, Some(Value::Object(content)))
        .await?;
    Ok(Json(json!({})))
}

/// DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}.
async fn delete_tag(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((user, room, tag)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = require_own_user(&authed, user)?;
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    state
        .services
        .users
        .set_tag(&user_id, &room_id, &tag, None)
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/presence/{userId}/status.
async fn get_presence(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    let user_id: OwnedUserId = parse_id(user, "user ID")?;
    let (presence, status_msg, ago) = state
        .services
        .ephemeral
        .get_presence(&authed.user_id, &user_id)
        .await?;
    let mut body = json!({ "presence": presence, "currently_active": presence == "online" });
    if let Some(msg) = status_msg {
        body["status_msg"] = json!(msg);
    }
    if let Some(ago) = ago {
        body["last_active_ago"] = json!(ago);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
struct PresenceBody {
    presence: String,
    status_msg: Option<String>,
}

/// PUT /_matrix/client/v3/presence/{userId}/status.
async fn put_presence(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<PresenceBody>,
) -> ApiResult<Json<Value>> {
    let user_id = require_own_user(&authed, user)?;
    state
        .services
        .ephemeral
        .set_presence(&user_id, &body.presence, body.status_msg.as_deref())
        .await?;
    Ok(Json(json!({})))
}
