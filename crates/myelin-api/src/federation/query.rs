//! Federation queries (spec: Server-Server API, "Querying for information").

use axum::{extract::State, routing::get, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::FederationOrigin;
use crate::{
    error::{ApiError, ApiResult},
    extract::{parse_id, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/federation/v1/query/profile", get(profile))
        .route("/_matrix/federation/v1/query/directory", get(directory))
        .route(
            "/_matrix/federation/v1/openid/userinfo",
            get(openid_userinfo),
        )
}

#[derive(Deserialize)]
struct ProfileQuery {
    user_id: String,
    field: Option<String>,
}

/// GET /_matrix/federation/v1/query/profile (spec: Server-Server API, "Query information").
async fn profile(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Query(query): Query<ProfileQuery>,
) -> ApiResult<Json<Value>> {
    let user_id: ruma::OwnedUserId = parse_id(query.user_id, "user_id")?;
    if user_id.server_name() != state.services.ctx.server_name() {
        return Err(ApiError::invalid_param(
            "user_id is not a user of this server",
        ));
    }
    tracing::debug!(%origin, %user_id, "federation profile query");
    // An appservice may create the puppet of a user of its namespace first, as for a local
    // client's lookup.
    state.services.appservices.ensure_user(&user_id).await?;
    let mut profile = state.services.users.profile(&user_id).await?;
    if let Some(field) = query.field {
        let value = profile.get(&field).cloned();
        profile = serde_json::json!({});
        if let Some(value) = value {
            profile[field] = value;
        }
    }
    Ok(Json(profile))
}

#[derive(Deserialize)]
struct DirectoryQuery {
    room_alias: String,
}

/// GET /_matrix/federation/v1/query/directory (spec: Server-Server API, "Querying for
/// information" → "GET /_matrix/federation/v1/query/directory"): `{room_id, servers}` for one of
/// our aliases, 404 `M_NOT_FOUND` otherwise.
async fn directory(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Query(query): Query<DirectoryQuery>,
) -> ApiResult<Json<Value>> {
    let alias: ruma::OwnedRoomAliasId = parse_id(query.room_alias, "room_alias")?;
    // An appservice may create the portal room of an alias of its namespace first.
    state.services.appservices.ensure_alias(&alias).await?;
    let answer = state
        .services
        .federation_reads
        .federation_query_directory(&origin, &alias)
        .await?;
    Ok(Json(
        json!({ "room_id": answer.room_id, "servers": answer.servers }),
    ))
}

#[derive(Deserialize)]
struct UserInfoQuery {
    access_token: String,
}

/// GET /_matrix/federation/v1/openid/userinfo: asked by third parties holding an OpenID token,
/// not by servers, so it carries no X-Matrix signature.
async fn openid_userinfo(
    State(state): State<SharedState>,
    Query(query): Query<UserInfoQuery>,
) -> ApiResult<Json<Value>> {
    let user_id = state
        .services
        .accounts
        .openid_userinfo(&query.access_token)?;
    Ok(Json(json!({ "sub": user_id })))
}
