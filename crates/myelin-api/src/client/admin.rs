//! Server administration for clients (spec: Client-Server API, "Server administration"):
//! `GET /admin/whois/{userId}`, answered by `Accounts`.

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use ruma::OwnedUserId;
use serde_json::{json, Map, Value};

use crate::{
    error::ApiResult,
    extract::{parse_id, Auth},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new().route("/_matrix/client/v3/admin/whois/{user}", get(whois))
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
