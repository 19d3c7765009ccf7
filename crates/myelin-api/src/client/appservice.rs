//! Endpoints for application services (spec: Client-Server API, "Application services" and
//! "Third-party networks"): the ping, per-network room directory visibility, and third-party
//! lookups forwarded to the appservices that declare the protocol (reverse lookups, by alias or
//! user ID, to every appservice with a protocol).

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
        .route(
            "/_matrix/client/v3/thirdparty/location",
            get(location_by_alias),
        )
        .route("/_matrix/client/v3/thirdparty/user", get(user_by_id))
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

/// Longest network ID taken (it is part of the `instance_id` clients see).
const MAX_NETWORK_ID_BYTES: usize = 255;

/// PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}: an appservice
/// publishes (or withdraws) a room in the room directory of one of its networks.
async fn set_network_visibility(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((network, room)): Path<(String, String)>,
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
    let Some(appservice_id) = authed.appservice.as_deref() else {
        return Err(ApiError::forbidden(
            "Only application services may use this endpoint",
        ));
    };
    // `|` separates the appservice from the network in the `instance_id`.
    if network.is_empty() || network.len() > MAX_NETWORK_ID_BYTES || network.contains('|') {
        return Err(ApiError::invalid_param("Invalid network ID"));
    }
    state
        .services
        .appservices
        .set_room_published(appservice_id, &network, &room_id, public)
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

/// The one value of the reverse lookup's parameter (`alias` or `userid`), required.
fn reverse_param(query: &QueryPairs, name: &str) -> ApiResult<String> {
    query
        .all(name)
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::missing_param(format!("{name} is required")))
}

/// GET /_matrix/client/v3/thirdparty/location?alias=: the locations every appservice with a
/// protocol maps the alias to.
async fn location_by_alias(
    State(state): State<SharedState>,
    Auth(_): Auth,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let alias: ruma::OwnedRoomAliasId = parse_id(reverse_param(&query, "alias")?, "alias")?;
    let params = vec![("alias".to_owned(), alias.to_string())];
    Ok(Json(
        state
            .services
            .appservices
            .thirdparty_reverse("location", &params)
            .await?,
    ))
}

/// GET /_matrix/client/v3/thirdparty/user?userid=: the third-party users every appservice with
/// a protocol maps the user ID to.
async fn user_by_id(
    State(state): State<SharedState>,
    Auth(_): Auth,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let user_id: ruma::OwnedUserId = parse_id(reverse_param(&query, "userid")?, "userid")?;
    let params = vec![("userid".to_owned(), user_id.to_string())];
    Ok(Json(
        state
            .services
            .appservices
            .thirdparty_reverse("user", &params)
            .await?,
    ))
}
