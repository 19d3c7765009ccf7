//! Publishing keys and the notary key server (spec: Server-Server API, "Retrieving server keys").

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    routing::{get, post},
    Json, Router,
};
use myelin_federation::NotaryBudget;
use ruma::{CanonicalJsonObject, OwnedServerName};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::{ApiError, ApiResult},
    extract::{parse_id, JsonBody, Query},
    SharedState,
};

/// The most servers one notary query may ask about (bounded work per request; how many of them
/// may be fetched rather than answered from the cache is bounded by the keyring).
const MAX_QUERIED_SERVERS: usize = 50;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/key/v2/server", get(server_keys))
        .route("/_matrix/key/v2/server/{key_id}", get(server_keys_by_id))
        .route("/_matrix/key/v2/query/{server_name}", get(query_one))
        .route("/_matrix/key/v2/query", post(query_many))
}

/// GET /_matrix/key/v2/server (spec: Server-Server API, "Publishing Keys").
async fn server_keys(State(state): State<SharedState>) -> Json<CanonicalJsonObject> {
    Json(
        state
            .services
            .ctx
            .federation
            .own_server_keys(&state.services.ctx.key.key_pair),
    )
}

/// GET /_matrix/key/v2/server/{keyId} (deprecated; the key ID is ignored, as the spec allows).
async fn server_keys_by_id(
    State(state): State<SharedState>,
    Path(_key_id): Path<String>,
) -> Json<CanonicalJsonObject> {
    Json(
        state
            .services
            .ctx
            .federation
            .own_server_keys(&state.services.ctx.key.key_pair),
    )
}

#[derive(Deserialize)]
struct MinimumValidUntil {
    minimum_valid_until_ts: Option<u64>,
}

/// GET /_matrix/key/v2/query/{serverName} (spec: Server-Server API, "Querying Keys Through Another
/// Server").
async fn query_one(
    State(state): State<SharedState>,
    Path(server): Path<String>,
    Query(query): Query<MinimumValidUntil>,
) -> ApiResult<Json<Value>> {
    let server: OwnedServerName = parse_id(server, "server name")?;
    let federation = &state.services.ctx.federation;
    let minimum = query
        .minimum_valid_until_ts
        .unwrap_or_else(|| federation.now_ms());
    let mut budget = NotaryBudget::default();
    let keys = federation
        .notary_server_keys(
            &state.services.ctx.key.key_pair,
            &server,
            minimum,
            &mut budget,
        )
        .await;
    Ok(Json(json!({ "server_keys": keys })))
}

#[derive(Deserialize)]
struct QueryCriteria {
    minimum_valid_until_ts: Option<u64>,
}

#[derive(Deserialize)]
struct BatchQuery {
    server_keys: BTreeMap<String, BTreeMap<String, QueryCriteria>>,
}

/// POST /_matrix/key/v2/query (spec: Server-Server API, "Querying Keys Through Another Server").
async fn query_many(
    State(state): State<SharedState>,
    JsonBody(query): JsonBody<BatchQuery>,
) -> ApiResult<Json<Value>> {
    if query.server_keys.len() > MAX_QUERIED_SERVERS {
        return Err(ApiError::invalid_param(format!(
            "At most {MAX_QUERIED_SERVERS} servers per query"
        )));
    }
    let federation = &state.services.ctx.federation;
    let now = federation.now_ms();
    let mut all = Vec::new();
    // One budget for the whole request: a few fetches, the other servers from the cache.
    let mut budget = NotaryBudget::default();
    for (server, criteria) in query.server_keys {
        let server: OwnedServerName = parse_id(server, "server name")?;
        // The strictest criterion wins; no criterion means "valid now".
        let minimum = criteria
            .values()
            .filter_map(|c| c.minimum_valid_until_ts)
            .max()
            .unwrap_or(now);
        all.extend(
            federation
                .notary_server_keys(
                    &state.services.ctx.key.key_pair,
                    &server,
                    minimum,
                    &mut budget,
                )
                .await,
        );
    }
    Ok(Json(json!({ "server_keys": all })))
}
