//! The HTTP edge: axum routers, one module per spec area, the auth extractors and the single
//! place where service errors become Matrix errcodes (`error.rs`).

mod client;
mod error;
mod extract;

use std::sync::Arc;

use axum::{http::StatusCode, response::IntoResponse, Router};
use myelin_service::Services;
use tower_http::{catch_panic::CatchPanicLayer, cors::CorsLayer};

pub use error::ApiError;

/// Options of the HTTP edge itself.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Request bodies above this are refused with 413 `M_TOO_LARGE` before being read whole.
    pub max_request_bytes: usize,
    /// Served at `/.well-known/matrix/client` when set.
    pub well_known_client: Option<serde_json::Value>,
}

/// What every handler can reach.
pub struct AppState {
    pub services: Arc<Services>,
    pub options: ApiOptions,
}

pub type SharedState = Arc<AppState>;

/// The whole HTTP application.
pub fn router(services: Arc<Services>, options: ApiOptions) -> Router {
    let state = Arc::new(AppState { services, options });
    client::routes()
        .fallback(unrecognized)
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            tracing::error!("request handler panicked");
            ApiError::unknown("Internal server error").into_response()
        }))
        .layer(CorsLayer::permissive())
}

async fn unrecognized() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "Unrecognized request")
}
