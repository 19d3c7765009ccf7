//! Discovery: `/versions`, `/capabilities`, `/.well-known/matrix/client`.

use axum::{extract::State, routing::get, Json, Router};
use serde_json::{json, Value};

use crate::{
    error::{ApiError, ApiResult},
    extract::Auth,
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/versions", get(versions))
        .route("/_matrix/client/v3/capabilities", get(capabilities))
        .route("/.well-known/matrix/client", get(well_known))
        .route("/.well-known/matrix/support", get(well_known_support))
        .route(
            "/.well-known/matrix/policy_server",
            get(well_known_policy_server),
        )
        .route("/_matrix/client/v3/voip/turnServer", get(turn_server))
}

/// GET /_matrix/client/versions — spec: client-server-api/#get_matrixclientversions.
/// Advertises only versions whose features this server implements, and of the unstable features
/// those clients look for: `recurse` on `/relations` (MSC3981, in the spec from v1.10),
/// simplified sliding sync (MSC4186), without which Element X refuses the server, and
/// authenticated media (MSC3916's stable flag: spec v1.11's `/_matrix/client/v1/media`, announced
/// so until every feature of v1.6 to v1.11 is served), and the appservice ping (MSC2659's stable
/// flag: spec v1.7's `/_matrix/client/v1/appservice/{id}/ping`, which mautrix bridges call at
/// start when they see it).
async fn versions() -> Json<Value> {
    Json(json!({
        "versions": ["r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5"],
        "unstable_features": {
            "org.matrix.msc3981": true,
            "org.matrix.simplified_msc3575": true,
            "org.matrix.msc3916.stable": true,
            "fi.mau.msc2659.stable": true,
        },
    }))
}

/// GET /_matrix/client/v3/capabilities.
async fn capabilities(
    State(state): State<SharedState>,
    Auth(authed): Auth,
) -> ApiResult<Json<Value>> {
    let available: serde_json::Map<String, Value> = myelin_room::SUPPORTED_VERSIONS
        .iter()
        .map(|v| (v.to_string(), json!("stable")))
        .collect();
    let mut capabilities = json!({
        "m.room_versions": { "default": state.services.ctx.config.default_room_version.as_str(), "available": available },
        "m.change_password": { "enabled": true },
        "m.set_displayname": { "enabled": true },
        "m.set_avatar_url": { "enabled": true },
        "m.3pid_changes": { "enabled": state.services.threepids.email_enabled() },
        "m.get_login_token": { "enabled": !authed.is_guest },
        "m.profile_fields": { "enabled": true },
    });
    // Only administrators may lock and suspend; for others the spec omits the capability.
    if state.services.accounts.is_admin(&authed.user_id).await? {
        capabilities["m.account_moderation"] = json!({ "suspend": true, "lock": true });
    }
    Ok(Json(json!({ "capabilities": capabilities })))
}

/// GET /.well-known/matrix/client — configured, else 404.
async fn well_known(State(state): State<SharedState>) -> ApiResult<Json<Value>> {
    state
        .options
        .well_known_client
        .clone()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("No well-known client configuration"))
}

/// GET /.well-known/matrix/policy_server (spec v1.18, "Policy servers"): this server names no
/// policy server, which the spec answers with 404.
async fn well_known_policy_server() -> ApiError {
    ApiError::not_found("This server has no policy server")
}

/// GET /.well-known/matrix/support (spec: client-server "Getting the support information") —
/// configured, else 404.
async fn well_known_support(State(state): State<SharedState>) -> ApiResult<Json<Value>> {
    state
        .options
        .well_known_support
        .clone()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("No support information configured"))
}

/// GET /_matrix/client/v3/voip/turnServer (spec: client-server "Voice over IP").
async fn turn_server(State(state): State<SharedState>, Auth(authed): Auth) -> Json<Value> {
    Json(state.services.users.turn_server(&authed.user_id))
}
