//! The public room directory over federation (spec: Server-Server API, "Public Room
//! Directory"): the same list local clients see.

use axum::{extract::State, routing::get, Json, Router};
use myelin_service::rooms::PublicRoomsQuery;
use serde::Deserialize;
use serde_json::Value;

use super::{FederationJson, FederationOrigin};
use crate::{error::ApiResult, extract::Query, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/federation/v1/publicRooms",
            get(public_rooms).post(query_public_rooms),
        )
        .route("/_matrix/federation/v1/hierarchy/{room}", get(hierarchy))
}

#[derive(Deserialize)]
struct PublicRoomsParams {
    limit: Option<u64>,
    since: Option<String>,
    #[serde(default)]
    include_all_networks: bool,
    third_party_instance_id: Option<String>,
}

/// GET /_matrix/federation/v1/publicRooms.
async fn public_rooms(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Query(params): Query<PublicRoomsParams>,
) -> ApiResult<Json<Value>> {
    tracing::debug!(%origin, "federation public rooms");
    let query = PublicRoomsQuery::from_get(
        params.limit,
        params.since,
        params.include_all_networks,
        params.third_party_instance_id,
    );
    let answer = state.services.rooms.local_public_rooms(&query).await?;
    Ok(Json(answer))
}

/// POST /_matrix/federation/v1/publicRooms: `limit`, `since`, `filter`, `include_all_networks`
/// and `third_party_instance_id` in the body.
async fn query_public_rooms(
    State(state): State<SharedState>,
    request: FederationJson<Value>,
) -> ApiResult<Json<Value>> {
    tracing::debug!(origin = %request.origin, "federation public rooms query");
    let query = PublicRoomsQuery::from_body(&request.body)?;
    let answer = state.services.rooms.local_public_rooms(&query).await?;
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
