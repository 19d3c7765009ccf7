//! Server administration for clients (spec: Client-Server API, "Server administration"):
//! `GET /admin/whois/{userId}` and account moderation (`/admin/lock`, `/admin/suspend`),
//! answered by `Accounts`.

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use myelin_service::accounts::moderation::Moderation;
use ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    error::ApiResult,
    extract::{parse_id, Auth, JsonBody},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v3/admin/whois/{user}", get(whois))
        .route(
            "/_matrix/client/v1/admin/lock/{user}",
            get(get_lock).put(put_lock),
        )
        .route(
            "/_matrix/client/v1/admin/suspend/{user}",
            get(get_suspend).put(put_suspend),
        )
}

/// GET /_matrix/client/v1/admin/lock/{userId}.
async fn get_lock(
    state: State<SharedState>,
    auth: Auth,
    user: Path<String>,
) -> ApiResult<Json<Value>> {
    moderation_status(state, auth, user, Moderation::Lock).await
}

/// GET /_matrix/client/v1/admin/suspend/{userId}.
async fn get_suspend(
    state: State<SharedState>,
    auth: Auth,
    user: Path<String>,
) -> ApiResult<Json<Value>> {
    moderation_status(state, auth, user, Moderation::Suspend).await
}

#[derive(Deserialize)]
struct LockBody {
    locked: bool,
}

#[derive(Deserialize)]
struct SuspendBody {
    suspended: bool,
}

/// PUT /_matrix/client/v1/admin/lock/{userId}.
async fn put_lock(
    state: State<SharedState>,
    auth: Auth,
    user: Path<String>,
    JsonBody(body): JsonBody<LockBody>,
) -> ApiResult<Json<Value>> {
    set_moderation(state, auth, user, Moderation::Lock, body.locked).await
}

/// PUT /_matrix/client/v1/admin/suspend/{userId}.
async fn put_suspend(
    state: State<SharedState>,
    auth: Auth,
    user: Path<String>,
    JsonBody(body): JsonBody<SuspendBody>,
) -> ApiResult<Json<Value>> {
    set_moderation(state, auth, user, Moderation::Suspend, body.suspended).await
}

fn moderation_body(which: Moderation, value: bool) -> Json<Value> {
    Json(match which {
        Moderation::Lock => json!({ "locked": value }),
        Moderation::Suspend => json!({ "suspended": value }),
    })
}

async fn moderation_status(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(user): Path<String>,
    which: Moderation,
) -> ApiResult<Json<Value>> {
    let target: OwnedUserId = parse_id(user, "user ID")?;
    let value = state
        .services
        .accounts
        .moderation_status(&authed.user_id, &target, which)
        .await?;
    Ok(moderation_body(which, value))
}

async fn set_moderation(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(user): Path<String>,
    which: Moderation,
    value: bool,
) -> ApiResult<Json<Value>> {
    let target: OwnedUserId = parse_id(user, "user ID")?;
    let value = state
        .services
        .accounts
        .set_moderation(&authed.user_id, &target, which, value)
        .await?;
    Ok(moderation_body(which, value))
}

/// GET /_matrix/client/v3/admin/whois/{userId}: each device of the user with its last seen
/// address and time (one session and connection per device: that is what the server keeps).
async fn whois(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    let user: OwnedUserId = parse_id(user, "user ID")?;
    let devices = state
        .services
        .accounts
        .whois(&authed.user_id, &user)
        .await?;
    let devices: Map<String, Value> = devices
        .into_iter()
        .map(|d| {
            let mut connection = Map::new();
            if let Some(ip) = d.last_seen_ip {
                connection.insert("ip".into(), json!(ip));
            }
            if let Some(ts) = d.last_seen_ms {
                connection.insert("last_seen".into(), json!(ts));
            }
            let session = json!({ "connections": [connection] });
            (d.device_id.to_string(), json!({ "sessions": [session] }))
        })
        .collect();
    Ok(Json(json!({ "user_id": user, "devices": devices })))
}
