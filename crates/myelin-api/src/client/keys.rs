//! End-to-end encryption: device and cross-signing keys, key claims, device-list changes and
//! to-device messages (spec: Client-Server API, "End-to-End Encryption", "Send-to-Device
//! messaging").

use axum::{
    extract::{Path, State},
    routing::{get, post, put},
    Json, Router,
};
use myelin_service::{
    e2ee::{to_device::ToDeviceMessages, ClaimRequest, KeysQuery, KeysUpload, SigningKeysUpload},
    sync::SyncToken,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::account::PASSWORD_FLOWS;
use crate::{
    error::{signature_failures, ApiError, ApiResult},
    extract::{Auth, JsonBody, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v3/keys/upload", post(upload))
        .route("/_matrix/client/v3/keys/query", post(query))
        .route("/_matrix/client/v3/keys/claim", post(claim))
        .route("/_matrix/client/v3/keys/changes", get(changes))
        .route(
            "/_matrix/client/v3/keys/device_signing/upload",
            post(upload_signing_keys),
        )
        .route(
            "/_matrix/client/v3/keys/signatures/upload",
            post(upload_signatures),
        )
        .route(
            "/_matrix/client/v3/sendToDevice/{event_type}/{txn_id}",
            put(send_to_device),
        )
}

/// POST /_matrix/client/v3/keys/upload.
async fn upload(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<KeysUpload>,
) -> ApiResult<Json<Value>> {
    let counts = state.services.e2ee.upload_keys(&authed, body).await?;
    Ok(Json(json!({ "one_time_key_counts": counts })))
}

/// POST /_matrix/client/v3/keys/query.
async fn query(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<KeysQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.services.e2ee.query_keys(&authed, body).await?))
}

/// POST /_matrix/client/v3/keys/claim.
async fn claim(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<ClaimRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.services.e2ee.claim_keys(&authed, body).await?))
}

#[derive(Deserialize)]
struct ChangesParams {
    from: String,
    to: String,
}

/// GET /_matrix/client/v3/keys/changes.
async fn changes(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(params): Query<ChangesParams>,
) -> ApiResult<Json<Value>> {
    let token = |t: &str, name: &str| {
        SyncToken::parse(t)
            .map(|t| t.pos)
            .ok_or_else(|| ApiError::invalid_param(format!("Invalid {name} token")))
    };
    let (from, to) = (token(&params.from, "from")?, token(&params.to, "to")?);
    let changes = state
        .services
        .e2ee
        .device_list_changes(&authed.user_id, from, to)
        .await?;
    Ok(Json(
        json!({ "changed": changes.changed, "left": changes.left }),
    ))
}

#[derive(Deserialize)]
struct SigningKeysBody {
    #[serde(flatten)]
    keys: SigningKeysUpload,
    auth: Option<Value>,
}

/// POST /_matrix/client/v3/keys/device_signing/upload. Setting up cross-signing for the first
/// time needs no extra authentication; replacing an existing master key does (as in Synapse).
async fn upload_signing_keys(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<SigningKeysBody>,
) -> ApiResult<Json<Value>> {
    let services = &state.services;
    if services.e2ee.has_master_key(&authed.user_id).await? {
        services
            .accounts
            .check_uia(body.auth.as_ref(), PASSWORD_FLOWS, Some(&authed.user_id))
            .await?;
    }
    services
        .e2ee
        .upload_signing_keys(&authed, body.keys)
        .await?;
    Ok(Json(json!({})))
}

/// POST /_matrix/client/v3/keys/signatures/upload.
async fn upload_signatures(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let failures = state.services.e2ee.upload_signatures(&authed, body).await?;
    Ok(Json(json!({ "failures": signature_failures(failures) })))
}

#[derive(Deserialize)]
struct ToDeviceBody {
    messages: ToDeviceMessages,
}

/// PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}.
async fn send_to_device(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((event_type, txn_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ToDeviceBody>,
) -> ApiResult<Json<Value>> {
    state
        .services
        .e2ee
        .send_to_device(&authed, &event_type, &txn_id, body.messages)
        .await?;
    Ok(Json(json!({})))
}
