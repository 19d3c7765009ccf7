//! The public room directory (spec: client-server "Room directory" → "Listing rooms").

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use myelin_service::rooms::PublicRoomsQuery;
use ruma::{OwnedRoomId, OwnedServerName};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::{ApiError, ApiResult},
    extract::{parse_id, Auth, JsonBody, MaybeAuth, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v1/rooms/{room}/hierarchy", get(hierarchy))
        .route(
            "/_matrix/client/v3/directory/list/room/{room}",
            get(get_visibility).put(set_visibility),
        )
        .route(
            "/_matrix/client/v3/publicRooms",
            get(public_rooms).post(query_public_rooms),
        )
}

/// GET /_matrix/client/v3/directory/list/room/{roomId} (no authentication).
async fn get_visibility(
    State(state): State<SharedState>,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let visibility = state
        .services
        .rooms
        .room_directory_visibility(&room_id)
        .await?;
    Ok(Json(json!({ "visibility": visibility })))
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Visibility {
    Public,
    Private,
}

#[derive(Deserialize)]
struct VisibilityBody {
    /// Defaults to `public`.
    visibility: Option<Visibility>,
}

/// PUT /_matrix/client/v3/directory/list/room/{roomId}.
async fn set_visibility(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<VisibilityBody>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let public = !matches!(body.visibility, Some(Visibility::Private));
    state
        .services
        .rooms
        .set_room_directory_visibility(&authed.user_id, &room_id, public)
        .await?;
    Ok(Json(json!({})))
}

/// A GET's query string: the spec's `limit`, `since` and `server`, and the directory choice of
/// the POST body (`include_all_networks`, `third_party_instance_id`), taken here too.
#[derive(Deserialize)]
struct PublicRoomsParams {
    limit: Option<u64>,
    since: Option<String>,
    server: Option<String>,
    #[serde(default)]
    include_all_networks: bool,
    third_party_instance_id: Option<String>,
}

fn server_param(server: Option<String>) -> Result<Option<OwnedServerName>, ApiError> {
    server
        .map(|s| {
            OwnedServerName::try_from(s).map_err(|_| ApiError::invalid_param("Invalid server name"))
        })
        .transpose()
}

/// GET /_matrix/client/v3/publicRooms (authentication optional).
async fn public_rooms(
    State(state): State<SharedState>,
    MaybeAuth(_authed): MaybeAuth,
    Query(params): Query<PublicRoomsParams>,
) -> ApiResult<Json<Value>> {
    let server = server_param(params.server)?;
    let query = PublicRoomsQuery::from_get(
        params.limit,
        params.since,
        params.include_all_networks,
        params.third_party_instance_id,
    );
    let answer = state
        .services
        .rooms
        .public_rooms(server.as_deref(), &query)
        .await?;
    Ok(Json(answer))
}

#[derive(Deserialize)]
struct ServerParam {
    server: Option<String>,
}

/// POST /_matrix/client/v3/publicRooms: `limit`, `since`, `filter`, `include_all_networks` and
/// `third_party_instance_id` in the body.
async fn query_public_rooms(
    State(state): State<SharedState>,
    Auth(_authed): Auth,
    Query(params): Query<ServerParam>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let server = server_param(params.server)?;
    let query = PublicRoomsQuery::from_body(&body)?;
    let answer = state
        .services
        .rooms
        .public_rooms(server.as_deref(), &query)
        .await?;
    Ok(Json(answer))
}

#[derive(Deserialize)]
struct HierarchyParams {
    from: Option<String>,
    limit: Option<usize>,
    max_depth: Option<usize>,
    #[serde(default)]
    suggested_only: bool,
}

/// GET /_matrix/client/v1/rooms/{roomId}/hierarchy.
async fn hierarchy(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    Query(params): Query<HierarchyParams>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let query = myelin_service::rooms::HierarchyQuery {
        from: params.from,
        limit: params.limit,
        max_depth: params.max_depth,
        suggested_only: params.suggested_only,
    };
    Ok(Json(
        state
            .services
            .rooms
            .room_hierarchy(&authed.user_id, &room_id, query)
            .await?,
    ))
}
