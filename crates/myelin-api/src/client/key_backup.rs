//! Server-side key backups (spec: Client-Server API, "End-to-End Encryption", "Server-side key
//! backups"): backup versions (`/room_keys/version`) and the keys in them (`/room_keys/keys`),
//! for the whole backup, one room or one session. The decisions are `KeyBackup`'s; the handlers
//! only carry the room- and session-level bodies to and from the shape of the whole backup.

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use myelin_service::backup::{
    BackupVersionBody, BackupVersionInfo, KeyBackupData, KeysUpdate, RoomKeyBackup, RoomKeys,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::{ApiError, ApiResult},
    extract::{Auth, JsonBody, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/client/v3/room_keys/version",
            get(current_version).post(create_version),
        )
        .route(
            "/_matrix/client/v3/room_keys/version/{version}",
            get(get_version).put(update_version).delete(delete_version),
        )
        .route(
            "/_matrix/client/v3/room_keys/keys",
            get(get_keys).put(put_keys).delete(delete_keys),
        )
        .route(
            "/_matrix/client/v3/room_keys/keys/{room_id}",
            get(get_room_keys)
                .put(put_room_keys)
                .delete(delete_room_keys),
        )
        .route(
            "/_matrix/client/v3/room_keys/keys/{room_id}/{session_id}",
            get(get_session_key)
                .put(put_session_key)
                .delete(delete_session_key),
        )
}

/// The `?version=` every `/room_keys/keys` endpoint needs.
#[derive(Deserialize)]
struct VersionQuery {
    version: Option<String>,
}

impl VersionQuery {
    fn version(self) -> ApiResult<String> {
        self.version
            .ok_or_else(|| ApiError::missing_param("The version query parameter is required"))
    }
}

/// POST /_matrix/client/v3/room_keys/version.
async fn create_version(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<BackupVersionBody>,
) -> ApiResult<Json<Value>> {
    let version = state
        .services
        .backup
        .create_version(&authed.user_id, body)
        .await?;
    Ok(Json(json!({ "version": version })))
}

/// GET /_matrix/client/v3/room_keys/version: the current version, 404 `M_NOT_FOUND` if none.
async fn current_version(
    State(state): State<SharedState>,
    Auth(authed): Auth,
) -> ApiResult<Json<BackupVersionInfo>> {
    let info = state.services.backup.version(&authed.user_id, None).await?;
    Ok(Json(info))
}

/// GET /_matrix/client/v3/room_keys/version/{version}.
async fn get_version(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<BackupVersionInfo>> {
    let info = state
        .services
        .backup
        .version(&authed.user_id, Some(&version))
        .await?;
    Ok(Json(info))
}

/// PUT /_matrix/client/v3/room_keys/version/{version}.
async fn update_version(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(version): Path<String>,
    JsonBody(body): JsonBody<BackupVersionBody>,
) -> ApiResult<Json<Value>> {
    state
        .services
        .backup
        .update_version(&authed.user_id, &version, body)
        .await?;
    Ok(Json(json!({})))
}

/// DELETE /_matrix/client/v3/room_keys/version/{version}.
async fn delete_version(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<Value>> {
    state
        .services
        .backup
        .delete_version(&authed.user_id, &version)
        .await?;
    Ok(Json(json!({})))
}

/// PUT /_matrix/client/v3/room_keys/keys.
async fn put_keys(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(query): Query<VersionQuery>,
    JsonBody(body): JsonBody<RoomKeys>,
) -> ApiResult<Json<KeysUpdate>> {
    let version = query.version()?;
    let update = state
        .services
        .backup
        .put_keys(&authed.user_id, &version, body)
        .await?;
    Ok(Json(update))
}

/// PUT /_matrix/client/v3/room_keys/keys/{roomId}.
async fn put_room_keys(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
    JsonBody(body): JsonBody<RoomKeyBackup>,
) -> ApiResult<Json<KeysUpdate>> {
    let version = query.version()?;
    let upload = RoomKeys::of_room(room_id, body);
    let update = state
        .services
        .backup
        .put_keys(&authed.user_id, &version, upload)
        .await?;
    Ok(Json(update))
}

/// PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}.
async fn put_session_key(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
    JsonBody(body): JsonBody<KeyBackupData>,
) -> ApiResult<Json<KeysUpdate>> {
    let version = query.version()?;
    let upload = RoomKeys::of_session(room_id, session_id, body);
    let update = state
        .services
        .backup
        .put_keys(&authed.user_id, &version, upload)
        .await?;
    Ok(Json(update))
}

/// GET /_matrix/client/v3/room_keys/keys: `{"rooms": {}}` when the backup holds no keys.
async fn get_keys(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<RoomKeys>> {
    let version = query.version()?;
    let keys = state
        .services
        .backup
        .keys(&authed.user_id, &version)
        .await?;
    Ok(Json(keys))
}

/// GET /_matrix/client/v3/room_keys/keys/{roomId}: `{"sessions": {}}` when the backup holds no
/// key of the room.
async fn get_room_keys(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<RoomKeyBackup>> {
    let version = query.version()?;
    let keys = state
        .services
        .backup
        .room_keys(&authed.user_id, &version, &room_id)
        .await?;
    Ok(Json(keys))
}

/// GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}: 404 `M_NOT_FOUND` when the
/// backup holds no key for the session.
async fn get_session_key(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<KeyBackupData>> {
    let version = query.version()?;
    let key = state
        .services
        .backup
        .session_key(&authed.user_id, &version, &room_id, &session_id)
        .await?;
    Ok(Json(key))
}

/// DELETE /_matrix/client/v3/room_keys/keys.
async fn delete_keys(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<KeysUpdate>> {
    delete(&state, &authed.user_id, query, None, None).await
}

/// DELETE /_matrix/client/v3/room_keys/keys/{roomId}.
async fn delete_room_keys(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<KeysUpdate>> {
    delete(&state, &authed.user_id, query, Some(&room_id), None).await
}

/// DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}.
async fn delete_session_key(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<KeysUpdate>> {
    delete(
        &state,
        &authed.user_id,
        query,
        Some(&room_id),
        Some(&session_id),
    )
    .await
}

async fn delete(
    state: &SharedState,
    user_id: &ruma::UserId,
    query: VersionQuery,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> ApiResult<Json<KeysUpdate>> {
    let version = query.version()?;
    let update = state
        .services
        .backup
        .delete_keys(user_id, &version, room_id, session_id)
        .await?;
    Ok(Json(update))
}
