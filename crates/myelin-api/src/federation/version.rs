//! `GET /_matrix/federation/v1/version` (spec: Server-Server API, "Server implementation").

use axum::{routing::get, Json, Router};
use serde_json::{json, Value};

use crate::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new().route("/_matrix/federation/v1/version", get(version))
}

/// GET /_matrix/federation/v1/version (spec: Server-Server API, "Server implementation").
async fn version() -> Json<Value> {
    Json(json!({ "server": { "name": "Myelin", "version": env!("CARGO_PKG_VERSION") } }))
}
