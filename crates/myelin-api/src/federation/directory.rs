//! The public room directory over federation (spec: Server-Server API, "Public Room
//! Directory"): the same list local clients see.

use axum::{extract::State, routing::get, Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::{FederationJson, FederationOrigin};
use crate::{
    error::{ApiError, ApiResult},
    extract::Query,
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/federation/v1/publicRooms",
            get(public_rooms).post(query_public_rooms),
        )
        .route("/_matrix/federation/v1/hierarchy/{room}", get(hierarchy))
}

/// `include_all_networks` and `third_party_instance_id` are accepted and ignored (no bridges).
#[derive(Deserialize)]
struct PublicRoomsParams {
    limit: Option<u64>,
    since: Option<String>,
}

/// GET /_matrix/federation/v1/publicRooms.
async fn public_rooms(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Query(params): Query<PublicRoomsParams>,
) -> ApiResult<Json<Value>> {
    tracing::debug!(%origin, "federation public rooms");
    let answer = state
        .services
        .rooms
        .local_public_rooms(params.limit, params.since.as_deref(), None)
        .await?;
    Ok(Json(answer))
}

/// POST /_matrix/federation/v1/publicRooms: `limit`, `since` and `filter` in the body.
async fn query_public_rooms(
    State(state): State<SharedState>,
    request: FederationJson<Value>,
) -> ApiResult<Json<Value>> {
    if !request.body.is_object() {
        return Err(ApiError::bad_json("Body must be a JSON object"));
    }
    tracing::debug!(origin = %request.origin, "federation public rooms query");
    let answer = state
        .services
        .rooms
        .local_public_rooms(None, None, Some(&request.body))
        .await?;
    Ok(Json(answer))
}

#[derive(Deserialize)]
struct HierarchyParams {
    #[serde(default)]
    suggested_only: bool,
}

/// GET /_matrix/federation/v1/hierarchy/{roomId}.
async fn hierarchy(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    axum::extract::Path(room): axum::extract::Path<String>,
    Query(params): Query<HierarchyParams>,
) -> ApiResult<Json<Value>> {
    let room_id: ruma::OwnedRoomId = crate::extract::parse_id(room, "room ID")?;
    Ok(Json(
        state
            .services
            .rooms
            .federation_hierarchy(&origin, &room_id, params.suggested_only)
            .await?,
    ))
}
