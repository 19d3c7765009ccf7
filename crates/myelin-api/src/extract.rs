//! Extractors: the authenticated user, JSON bodies with Matrix errors, query strings, path IDs.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header::AUTHORIZATION, request::Parts},
};
use myelin_service::accounts::Authed;
use serde::de::DeserializeOwned;

use crate::{error::ApiError, AppState};

/// A request authenticated with an access token (header or `access_token` query parameter).
pub struct Auth(pub Authed);

impl FromRequestParts<Arc<AppState>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = bearer_token(parts).ok_or_else(ApiError::missing_token)?;
        Ok(Auth(authenticate(parts, state, &token).await?))
    }
}

/// For endpoints that serve anonymous clients too: `None` without a token, but a token that is
/// given must be valid.
pub struct MaybeAuth(pub Option<Authed>);

impl FromRequestParts<Arc<AppState>> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        match bearer_token(parts) {
            None => Ok(MaybeAuth(None)),
            Some(token) => Ok(MaybeAuth(Some(authenticate(parts, state, &token).await?))),
        }
    }
}

/// Guests call only the spec's guest endpoints (`guest.rs`); suspended accounts may not act
/// (`suspension.rs`).
fn refuse_what_the_account_may_not_call(authed: &Authed, parts: &Parts) -> Result<(), ApiError> {
    let (method, path) = (&parts.method, parts.uri.path());
    if authed.is_guest && !crate::guest::guest_may_call(method, path) {
        return Err(ApiError::guest_access_forbidden(
            "Guest accounts cannot use this endpoint",
        ));
    }
    if authed.suspended && crate::suspension::suspended_refused(method, path) {
        return Err(myelin_service::ServiceError::UserSuspended(
            "This account is suspended and cannot do this".into(),
        )
        .into());
    }
    Ok(())
}

/// The application service whose `as_token` the request carries, if any, whatever `user_id` it
/// names: registration and login of appservice users (which mautrix sends masqueraded as the
/// user being registered).
pub struct AppserviceToken(pub Option<String>);

impl FromRequestParts<Arc<AppState>> for AppserviceToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let appservice = bearer_token(parts)
            .and_then(|token| state.services.ctx.appservices.by_as_token(&token))
            .map(|a| a.id.clone());
        Ok(AppserviceToken(appservice))
    }
}

/// An access token, or an appservice's `as_token` with the `user_id` it masquerades as and the
/// device it names (`device_id`, or MSC3202's `org.matrix.msc3202.device_id`).
async fn authenticate(
    parts: &Parts,
    state: &Arc<AppState>,
    token: &str,
) -> Result<Authed, ApiError> {
    let pairs: Vec<(String, String)> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let device = param("org.matrix.msc3202.device_id").or_else(|| param("device_id"));
    let authed = state
        .services
        .accounts
        .authenticate_request(token, param("user_id"), device)
        .await?;
    refuse_what_the_account_may_not_call(&authed, parts)?;
    Ok(authed)
}

fn bearer_token(parts: &Parts) -> Option<String> {
    if let Some(header) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    {
        return header.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    let query = parts.uri.query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v)
}

/// A JSON body: `M_NOT_JSON` if it does not parse, `M_BAD_JSON` if it has the wrong shape,
/// `M_TOO_LARGE` past the configured size (checked while reading, not after).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.options.max_request_bytes;
        let bytes = read_body(req.into_body(), limit).await?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::not_json(format!("Body is not JSON: {e}")))?;
        // NUL can't be stored in PostgreSQL text; no Matrix field needs one.
        if contains_nul(&value) {
            return Err(ApiError::bad_json(
                "NUL characters (\\u0000) are not allowed",
            ));
        }
        let parsed = serde_json::from_value(value)
            .map_err(|e| ApiError::bad_json(format!("Invalid body: {e}")))?;
        Ok(JsonBody(parsed))
    }
}

/// Whether any string or key in `value` holds a NUL character.
fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v))
        }
        _ => false,
    }
}

/// Reads at most `limit` bytes of a request body: `M_TOO_LARGE` past it, 408 when the
/// connection's body deadline passed. Client and federation requests alike.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_big {
            ApiError::too_large(format!("Request body is larger than {limit} bytes"))
        } else if timed_out(&e) {
            ApiError::body_timeout()
        } else {
            ApiError::unsupported(format!("Could not read body: {e}"))
        }
    })
}

/// Whether reading a body failed because the connection's request deadline passed (the server
/// wraps bodies in a deadline that fails with an `io::ErrorKind::TimedOut` error).
pub(crate) fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Query parameters with `M_INVALID_PARAM` on a bad value.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|e| ApiError::invalid_param(format!("Invalid query parameter: {e}")))
    }
}

/// Parses a path segment into a ruma ID type, with `M_INVALID_PARAM` on failure.
pub fn parse_id<T: TryFrom<String>>(value: String, what: &str) -> Result<T, ApiError> {
    T::try_from(value).map_err(|_| ApiError::invalid_param(format!("Invalid {what}")))
}

/// Every query parameter as `(name, value)` pairs, repeated names kept (`?via=a&via=b`).
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    /// All values of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(QueryPairs)
            .map_err(|e| ApiError::invalid_param(format!("Invalid query parameter: {e}")))
    }
}

/// The query of both `timestamp_to_event` endpoints: a time and a direction (`f` or `b`).
#[derive(serde::Deserialize)]
pub struct TimestampQuery {
    #[serde(deserialize_with = "storable_timestamp")]
    pub ts: u64,
    pub dir: String,
}

/// A millisecond timestamp the databases can hold (a signed 64-bit integer): larger ones are a
/// bad parameter, not a storage failure.
fn storable_timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let ts = <u64 as serde::Deserialize>::deserialize(d)?;
    if i64::try_from(ts).is_err() {
        return Err(serde::de::Error::custom(format!(
            "ts {ts} is too large (at most {})",
            i64::MAX
        )));
    }
    Ok(ts)
}

impl TimestampQuery {
    pub fn direction(&self) -> Result<myelin_storage::Direction, ApiError> {
        match self.dir.as_str() {
            "f" => Ok(myelin_storage::Direction::Forward),
            "b" => Ok(myelin_storage::Direction::Backward),
            _ => Err(ApiError::invalid_param("dir must be f or b")),
        }
    }
}
