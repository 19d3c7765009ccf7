//! Federation queries about our users' devices and keys (spec: Server-Server API,
//! "End-to-End Encryption" and "Device Management").

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    routing::{get, post},
    Json, Router,
};
use myelin_service::RateAction;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde::Deserialize;
use serde_json::Value;

use super::{FederationJson, FederationOrigin};
use crate::{error::ApiResult, extract::parse_id, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/federation/v1/user/devices/{user_id}",
            get(user_devices),
        )
        .route("/_matrix/federation/v1/user/keys/query", post(query_keys))
        .route("/_matrix/federation/v1/user/keys/claim", post(claim_keys))
}

/// GET /_matrix/federation/v1/user/devices/{userId}.
async fn user_devices(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user_id: OwnedUserId = parse_id(user_id, "user ID")?;
    tracing::debug!(%origin, %user_id, "federation device list query");
    state
        .services
        .ctx
        .check_rate(RateAction::FederationKeyQuery, origin.as_str())?;
    Ok(Json(
        state
            .services
            .e2ee
            .federation_user_devices(&user_id)
            .await?,
    ))
}

#[derive(Deserialize)]
struct QueryBody {
    device_keys: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
}

/// POST /_matrix/federation/v1/user/keys/query.
async fn query_keys(
    State(state): State<SharedState>,
    request: FederationJson<QueryBody>,
) -> ApiResult<Json<Value>> {
    state
        .services
        .ctx
        .check_rate(RateAction::FederationKeyQuery, request.origin.as_str())?;
    let wanted = request.body.device_keys;
    Ok(Json(
        state.services.e2ee.federation_query_keys(wanted).await?,
    ))
}

#[derive(Deserialize)]
struct ClaimBody {
    one_time_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
}

/// POST /_matrix/federation/v1/user/keys/claim.
async fn claim_keys(
    State(state): State<SharedState>,
    request: FederationJson<ClaimBody>,
) -> ApiResult<Json<Value>> {
    state
        .services
        .ctx
        .check_rate(RateAction::FederationKeyQuery, request.origin.as_str())?;
    let wanted = request.body.one_time_keys;
    Ok(Json(
        state.services.e2ee.federation_claim_keys(wanted).await?,
    ))
}
