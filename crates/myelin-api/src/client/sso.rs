//! SSO login (client-server-api/#sso-client-loginauthentication): the two redirect endpoints a
//! client sends the browser to, and the callback the OpenID Connect provider sends it back to
//! (`/_myelin/client/oidc/callback`, Synapse's `/_synapse/client/oidc/callback`). The decisions
//! are `Sso`'s (myelin-service `sso/`); this module turns them into redirects and pages.
//!
//! With no provider configured the endpoints stay routed and answer as Synapse does: a missing
//! `redirectUrl` is 400 `M_MISSING_PARAM` (checked first), then 400 `M_UNRECOGNIZED`
//! "Homeserver not configured for SSO." for both redirect endpoints (Synapse answers the
//! `{idpId}` form the same way rather than 404, since no provider can be found either way); an
//! unknown `{idpId}` with SSO on is 404 `M_NOT_FOUND`. `GET /login` then lists no `m.login.sso`.

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use myelin_service::sso::{CallbackParams, LoginDone, LoginStart, CALLBACK_PATH, SESSION_COOKIE};
use serde::Deserialize;

use crate::{
    error::{sso_failure_status, ApiError, ApiResult},
    extract::Query,
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v3/login/sso/redirect", get(redirect))
        .route(
            "/_matrix/client/v3/login/sso/redirect/{idp_id}",
            get(redirect_to_idp),
        )
        .route(CALLBACK_PATH, get(callback))
}

#[derive(Deserialize)]
struct RedirectQuery {
    #[serde(rename = "redirectUrl")]
    redirect_url: Option<String>,
}

/// GET /_matrix/client/v3/login/sso/redirect — client-server-api/#get_matrixclientv3loginssoredirect.
async fn redirect(
    State(state): State<SharedState>,
    Query(q): Query<RedirectQuery>,
) -> ApiResult<Response> {
    start(&state, None, q)
}

/// GET /_matrix/client/v3/login/sso/redirect/{idpId} —
/// client-server-api/#get_matrixclientv3loginssoredirectidpid.
async fn redirect_to_idp(
    State(state): State<SharedState>,
    Path(idp_id): Path<String>,
    Query(q): Query<RedirectQuery>,
) -> ApiResult<Response> {
    start(&state, Some(&idp_id), q)
}

fn start(state: &SharedState, idp_id: Option<&str>, q: RedirectQuery) -> ApiResult<Response> {
    let redirect_url = q
        .redirect_url
        .ok_or_else(|| ApiError::missing_param("Missing required query parameter redirectUrl"))?;
    let sso = &state.services.sso;
    if !sso.enabled() {
        return Err(ApiError::unrecognized("Homeserver not configured for SSO."));
    }
    Ok(match sso.start_login(idp_id, &redirect_url)? {
        LoginStart::Provider { location, cookie } => found(&location, &cookie)?,
        LoginStart::Picker { html } => html_page(StatusCode::OK, html),
    })
}

#[derive(Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// GET /_myelin/client/oidc/callback: the provider's answer to an authorization request.
/// Answers a browser, so failures are HTML pages.
async fn callback(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> ApiResult<Response> {
    let sso = &state.services.sso;
    if !sso.enabled() {
        return Err(ApiError::unrecognized("Homeserver not configured for SSO."));
    }
    let params = CallbackParams {
        state: q.state,
        code: q.code,
        error: q.error,
        error_description: q.error_description,
    };
    let cookie = session_cookie(&headers);
    let clear = format!("{SESSION_COOKIE}=; Path={CALLBACK_PATH}; Max-Age=0; HttpOnly");
    let mut response = match sso.finish_login(params, cookie.as_deref()).await {
        Ok(LoginDone::Redirect(target)) => found(&target, &clear)?,
        Ok(LoginDone::Confirm { html }) => html_page(StatusCode::OK, html),
        Err(failure) => html_page(sso_failure_status(failure.kind), failure.page()),
    };
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The value of our session cookie in the request's `Cookie` headers.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// 302 to `location`, setting `cookie`.
fn found(location: &str, cookie: &str) -> ApiResult<Response> {
    let bad = |_| ApiError::unknown("Cannot build the redirect");
    let location = HeaderValue::from_str(location).map_err(bad)?;
    let cookie = HeaderValue::from_str(cookie).map_err(bad)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// An HTML page that may not be framed (the confirmation is one click from handing over a
/// login) nor cached.
fn html_page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            ),
        ],
        html,
    )
        .into_response()
}
