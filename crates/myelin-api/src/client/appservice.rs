//! Endpoints for application services (spec: Client-Server API, "Application services" and
//! "Third-party networks"): the ping, per-network room directory visibility, and third-party
//! lookups forwarded to the appservices that declare the protocol.

use axum::{
    extract::{Path, State},
    routing::{get, post, put},
    Json, Router,
};
use ruma::OwnedRoomId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::{ApiError, ApiResult},
    extract::{parse_id, Auth, JsonBody, QueryPairs},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v1/appservice/{id}/ping", post(ping))
        .route(
            "/_matrix/client/v3/directory/list/appservice/{network}/{room}",
            put(set_network_visibility),
        )
        .route("/_matrix/client/v3/thirdparty/protocols", get(protocols))
        .route(
            "/_matrix/client/v3/thirdparty/protocol/{protocol}",
            get(protocol),
        )
        .route(
            "/_matrix/client/v3/thirdparty/location/{protocol}",
            get(location),
        )
        .route("/_matrix/client/v3/thirdparty/user/{protocol}", get(user))
}

#[derive(Deserialize, Default)]
struct PingBody {
    transaction_id: Option<String>,
}

/// POST /_matrix/client/v1/appservice/{appserviceId}/ping.
async fn ping(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PingBody>,
) -> ApiResult<Json<Value>> {
    let duration_ms = state
        .services
        .appservices
        .ping(&authed, &id, body.transaction_id)
        .await?;
    Ok(Json(json!({ "duration_ms": duration_ms })))
}

#[derive(Deserialize)]
struct VisibilityBody {
    visibility: String,
}

/// PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}: an appservice
/// publishes (or withdraws) a room in the public room directory.
async fn set_network_visibility(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((_network, room)): Path<(String, String)>,
    JsonBody(body): JsonBody<VisibilityBody>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let public = match body.visibility.as_str() {
        "public" => true,
        "private" => false,
        _ => {
            return Err(ApiError::invalid_param(
                "visibility must be public or private",
            ))
        }
    };
    if authed.appservice.is_none() {
        return Err(ApiError::forbidden(
            "Only application services may use this endpoint",
        ));
    }
    state
        .services
        .appservices
        .set_room_published(&room_id, public)
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/thirdparty/protocols.
async fn protocols(State(state): State<SharedState>, Auth(_): Auth) -> ApiResult<Json<Value>> {
    Ok(Json(
        state.services.appservices.thirdparty_protocols().await?,
    ))
}

/// GET /_matrix/client/v3/thirdparty/protocol/{protocol}.
async fn protocol(
    State(state): State<SharedState>,
    Auth(_): Auth,
    Path(protocol): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        state
            .services
            .appservices
            .thirdparty_protocol(&protocol)
            .await?,
    ))
}

/// The lookup fields of a third-party query, without the client's own parameters.
fn lookup_fields(query: QueryPairs) -> Vec<(String, String)> {
    query
        .0
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "access_token" | "user_id"))
        .collect()
}

/// GET /_matrix/client/v3/thirdparty/location/{protocol}.
async fn location(
    State(state): State<SharedState>,
    Auth(_): Auth,
    Path(protocol): Path<String>,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let fields = lookup_fields(query);
    Ok(Json(
        state
            .services
            .appservices
            .thirdparty_lookup("location", &protocol, &fields)
            .await?,
    ))
}

/// GET /_matrix/client/v3/thirdparty/user/{protocol}.
async fn user(
    State(state): State<SharedState>,
    Auth(_): Auth,
    Path(protocol): Path<String>,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let fields = lookup_fields(query);
    Ok(Json(
        state
            .services
            .appservices
            .thirdparty_lookup("user", &protocol, &fields)
            .await?,
    ))
}
