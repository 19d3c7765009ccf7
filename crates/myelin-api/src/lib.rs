//! The HTTP edge: axum routers, one module per spec area, the auth extractors and the single
//! place where service errors become Matrix errcodes (`error.rs`).

mod client;
mod client_ip;
mod endpoint_list;
mod error;
mod extract;
pub mod federation;
mod guest;
mod suspension;

use std::sync::Arc;

use axum::{response::IntoResponse, Router};
use myelin_service::Services;
use tower_http::{catch_panic::CatchPanicLayer, cors::CorsLayer};

pub use client_ip::{ClientIp, TrustedProxies};
pub use error::ApiError;

/// Options of the HTTP edge itself.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Request bodies above this are refused with 413 `M_TOO_LARGE` before being read whole.
    pub max_request_bytes: usize,
    /// Served at `/.well-known/matrix/client` when set.
    pub well_known_client: Option<serde_json::Value>,
    /// Served at `/.well-known/matrix/support` when set.
    pub well_known_support: Option<serde_json::Value>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for per-IP rate limits).
    pub trusted_proxies: TrustedProxies,
}

/// What every handler can reach.
pub struct AppState {
    pub services: Arc<Services>,
    pub options: ApiOptions,
}

pub type SharedState = Arc<AppState>;

/// The whole HTTP application.
pub fn router(services: Arc<Services>, options: ApiOptions) -> Router {
    let federation_enabled = services.ctx.federation.config.enabled;
    let state = Arc::new(AppState { services, options });
    client::routes()
        .merge(federation::routes(federation_enabled))
        .fallback(unrecognized)
        .with_state(state)
        .layer(axum::middleware::from_fn(refuse_nul_in_path))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                tracing::error!("request handler panicked");
                ApiError::unknown("Internal server error").into_response()
            },
        ))
        .layer(CorsLayer::permissive())
}

/// NUL can't be stored in PostgreSQL text, and no Matrix identifier, type or key contains one:
/// refuse it at the edge rather than fail deep inside a transaction.
async fn refuse_nul_in_path(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let uri = request.uri();
    let has_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return ApiError::invalid_param("NUL characters are not allowed in the request URI")
            .into_response();
    }
    next.run(request).await
}

async fn unrecognized() -> ApiError {
    ApiError::unrecognized_endpoint()
}
