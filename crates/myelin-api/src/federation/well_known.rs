//! `GET /.well-known/matrix/server` (spec: Server-Server API, "Server discovery" → "GET
//! /.well-known/matrix/server"): delegation to the configured `federation.well_known_server`.

use axum::{extract::State, routing::get, Json, Router};
use serde_json::{json, Value};

use crate::{
    error::{ApiError, ApiResult},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new().route("/.well-known/matrix/server", get(server))
}

/// GET /.well-known/matrix/server: `{"m.server": ...}`, or 404 `M_NOT_FOUND` when not configured.
async fn server(State(state): State<SharedState>) -> ApiResult<Json<Value>> {
    match &state.services.ctx.federation.config.well_known_server {
        Some(server) => Ok(Json(json!({ "m.server": server }))),
        None => Err(ApiError::not_found("No server delegation is configured")),
    }
}
