//! Extractors that authenticate the requesting server with the `X-Matrix` Authorization header
//! (spec: Server-Server API, "Request Authentication").

use std::sync::Arc;

use axum::{
    extract::{FromRequest, FromRequestParts, OriginalUri, Request},
    http::{header::AUTHORIZATION, request::Parts},
};
use myelin_federation::AuthError;
use ruma::{CanonicalJsonValue, OwnedServerName};
use serde::de::DeserializeOwned;

use crate::{error::ApiError, extract::read_body, AppState};

/// The verified origin server of a request without a body (`GET`, `DELETE`).
///
/// A request with a body must use [`FederationJson`]: the body is part of what is signed.
pub struct FederationOrigin(pub OwnedServerName);

impl FromRequestParts<Arc<AppState>> for FederationOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        authenticate(parts, state, None).await.map(FederationOrigin)
    }
}

/// A JSON body from an authenticated server: the signature covers the body as `content`.
pub struct FederationJson<T> {
    pub origin: OwnedServerName,
    pub body: T,
}

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for FederationJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let bytes = read_body(body, state.options.max_request_bytes).await?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::not_json(format!("Body is not JSON: {e}")))?;
        let content = CanonicalJsonValue::try_from(value)
            .map_err(|e| ApiError::from(AuthError::BadContent(e.to_string())))?;
        let origin = authenticate(&mut parts, state, Some(&content)).await?;
        // From the bytes, not the parsed value: bodies may hold raw PDUs (`RawValue`).
        let body = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_json(format!("Invalid body: {e}")))?;
        Ok(FederationJson { origin, body })
    }
}

async fn authenticate(
    parts: &mut Parts,
    state: &Arc<AppState>,
    content: Option<&CanonicalJsonValue>,
) -> Result<OwnedServerName, ApiError> {
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map(|o| o.0.clone())
        .unwrap_or_else(|| parts.uri.clone());
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    // The first X-Matrix header counts; other schemes (or realms) are skipped.
    let header = parts
        .headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .find(|h| {
            h.trim_start()
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("X-Matrix"))
        });
    let result = state
        .services
        .ctx
        .federation
        .authenticate(header, parts.method.as_str(), path_and_query, content)
        .await;
    match result {
        Ok(origin) => {
            // Every authenticated request spends from its origin's budget; a flooding server
            // is told to back off (429) before any work is done for it.
            state
                .services.ctx
                .check_rate(myelin_service::RateAction::Federation, origin.as_str())
                .inspect_err(|_| tracing::info!(%origin, uri = path_and_query, "federation request rate-limited"))?;
            Ok(origin)
        }
        Err(e) => {
            tracing::info!(error = %e, uri = path_and_query, "federation request not authenticated");
            Err(e.into())
        }
    }
}
