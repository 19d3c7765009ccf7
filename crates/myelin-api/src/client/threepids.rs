//! E-mail addresses as 3PIDs: the `requestToken` endpoints (phone numbers answer
//! `M_THREEPID_MEDIUM_NOT_SUPPORTED`), the validation link, and the account's addresses
//! (`/account/3pid`, `/add`, `/delete`), and binding addresses on identity servers (`/bind`,
//! `/unbind`, and the unbind of `/delete`).

use axum::{
    extract::State,
    http::header,
    response::IntoResponse,
    routing::{get, post},
    Json, Router,
};
use myelin_service::threepids::{
    EmailTokenRequest, ThreepidCreds, TokenPurpose, SUBMIT_TOKEN_PATH,
};
use myelin_service::{RateAction, ServiceError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::account::PASSWORD_FLOWS;
use crate::{
    client_ip::ClientIp,
    error::{ApiError, ApiResult},
    extract::{Auth, JsonBody, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/client/v3/register/email/requestToken",
            post(register_email),
        )
        .route(
            "/_matrix/client/v3/account/password/email/requestToken",
            post(password_email),
        )
        .route(
            "/_matrix/client/v3/account/3pid/email/requestToken",
            post(add_email),
        )
        .route(
            "/_matrix/client/v3/register/msisdn/requestToken",
            post(msisdn),
        )
        .route(
            "/_matrix/client/v3/account/password/msisdn/requestToken",
            post(msisdn),
        )
        .route(
            "/_matrix/client/v3/account/3pid/msisdn/requestToken",
            post(msisdn),
        )
        .route(
            "/_matrix/client/v3/account/3pid",
            get(list).post(add_deprecated),
        )
        .route("/_matrix/client/v3/account/3pid/add", post(add))
        .route("/_matrix/client/v3/account/3pid/delete", post(delete))
        .route("/_matrix/client/v3/account/3pid/bind", post(bind))
        .route("/_matrix/client/v3/account/3pid/unbind", post(unbind))
        .route(SUBMIT_TOKEN_PATH, get(submit_token_link).post(submit_token))
}

#[derive(Deserialize)]
struct EmailTokenBody {
    client_secret: String,
    email: String,
    send_attempt: u64,
}

async fn request_token(
    state: &SharedState,
    client: &ClientIp,
    purpose: TokenPurpose,
    body: EmailTokenBody,
) -> ApiResult<Json<Value>> {
    // Each request may send a mail: limited per client address like registrations.
    state
        .services
        .ctx
        .check_rate(RateAction::Registration, &client.key())?;
    let threepids = &state.services.threepids;
    let sid = threepids
        .request_email_token(
            purpose,
            EmailTokenRequest {
                email: body.email,
                client_secret: body.client_secret,
                send_attempt: body.send_attempt,
            },
        )
        .await?;
    let submit_url = threepids.submit_url().unwrap_or_default();
    Ok(Json(json!({ "sid": sid, "submit_url": submit_url })))
}

/// POST /_matrix/client/v3/register/email/requestToken.
async fn register_email(
    State(state): State<SharedState>,
    client: ClientIp,
    JsonBody(body): JsonBody<EmailTokenBody>,
) -> ApiResult<Json<Value>> {
    request_token(&state, &client, TokenPurpose::Register, body).await
}

/// POST /_matrix/client/v3/account/password/email/requestToken.
async fn password_email(
    State(state): State<SharedState>,
    client: ClientIp,
    JsonBody(body): JsonBody<EmailTokenBody>,
) -> ApiResult<Json<Value>> {
    request_token(&state, &client, TokenPurpose::PasswordReset, body).await
}

/// POST /_matrix/client/v3/account/3pid/email/requestToken.
async fn add_email(
    State(state): State<SharedState>,
    client: ClientIp,
    JsonBody(body): JsonBody<EmailTokenBody>,
) -> ApiResult<Json<Value>> {
    request_token(&state, &client, TokenPurpose::AddToAccount, body).await
}

/// The three msisdn `requestToken`s: this server validates no phone numbers.
async fn msisdn() -> ApiError {
    ServiceError::ThreepidMediumNotSupported("This server does not support phone numbers".into())
        .into()
}

#[derive(Deserialize)]
struct SubmitTokenParams {
    sid: String,
    client_secret: String,
    token: String,
}

/// GET of the link in the mail: a short plain-text page (never HTML: nothing from the query is
/// reflected).
async fn submit_token_link(
    State(state): State<SharedState>,
    Query(q): Query<SubmitTokenParams>,
) -> ApiResult<impl IntoResponse> {
    let validated = state
        .services
        .threepids
        .submit_token(&q.sid, &q.client_secret, &q.token)
        .await?;
    let text = if validated {
        "Your e-mail address is confirmed. You can return to your Matrix client."
    } else {
        "This link is invalid or has expired. Ask your client to send a new one."
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// POST of `submit_url` (the client forwards the code the user typed).
async fn submit_token(
    State(state): State<SharedState>,
    JsonBody(body): JsonBody<SubmitTokenParams>,
) -> ApiResult<Json<Value>> {
    let validated = state
        .services
        .threepids
        .submit_token(&body.sid, &body.client_secret, &body.token)
        .await?;
    Ok(Json(json!({ "success": validated })))
}

/// GET /_matrix/client/v3/account/3pid.
async fn list(State(state): State<SharedState>, Auth(authed): Auth) -> ApiResult<Json<Value>> {
    let threepids: Vec<Value> = state
        .services
        .threepids
        .list(&authed.user_id)
        .await?
        .into_iter()
        .map(|t| {
            json!({ "medium": t.medium, "address": t.address, "validated_at": t.validated_ms, "added_at": t.added_ms })
        })
        .collect();
    Ok(Json(json!({ "threepids": threepids })))
}

#[derive(Deserialize)]
struct AddBody {
    client_secret: String,
    sid: String,
    auth: Option<Value>,
}

/// POST /_matrix/client/v3/account/3pid/add (UIA: m.login.password).
async fn add(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<AddBody>,
) -> ApiResult<Json<Value>> {
    state
        .services
        .accounts
        .check_uia(body.auth.as_ref(), PASSWORD_FLOWS, Some(&authed.user_id))
        .await?;
    let creds = ThreepidCreds {
        sid: body.sid,
        client_secret: body.client_secret,
    };
    state
        .services
        .threepids
        .add_to_account(&authed.user_id, &creds)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct DeprecatedAddBody {
    three_pid_creds: CredsBody,
}

#[derive(Deserialize)]
struct CredsBody {
    client_secret: String,
    sid: String,
}

/// POST /_matrix/client/v3/account/3pid (deprecated): adds an address this server validated
/// (identity-server sessions are not known here).
async fn add_deprecated(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<DeprecatedAddBody>,
) -> ApiResult<Json<Value>> {
    let creds = ThreepidCreds {
        sid: body.three_pid_creds.sid,
        client_secret: body.three_pid_creds.client_secret,
    };
    state
        .services
        .threepids
        .add_to_account(&authed.user_id, &creds)
        .await?;
    Ok(Json(json!({})))
}

/// A required string field of a JSON object body: `M_MISSING_PARAM` when absent.
fn required<'a>(body: &'a Value, field: &str) -> ApiResult<&'a str> {
    match body.get(field) {
        None | Some(Value::Null) => Err(ApiError::missing_param(format!("{field} is required"))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::bad_json(format!("{field} must be a string"))),
    }
}

/// An optional string field of a JSON object body.
fn optional<'a>(body: &'a Value, field: &str) -> ApiResult<Option<&'a str>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => required(body, field).map(Some),
    }
}

/// The answer of `/delete` and `/unbind`.
fn unbind_result(unbound: bool) -> Json<Value> {
    let result = if unbound { "success" } else { "no-support" };
    Json(json!({ "id_server_unbind_result": result }))
}

/// POST /_matrix/client/v3/account/3pid/delete: unbinds the address from the identity server
/// named, or those it was bound on through us, and removes it from the account.
async fn delete(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let unbound = state
        .services
        .threepids
        .remove(
            &authed.user_id,
            required(&body, "medium")?,
            required(&body, "address")?,
            optional(&body, "id_server")?,
        )
        .await?;
    Ok(unbind_result(unbound))
}

/// POST /_matrix/client/v3/account/3pid/bind (spec: Client-Server API, "Adding Account
/// Administrative Contact Information"): the identity server binds the address its session
/// validated to the caller; we remember where, for a later unbind.
async fn bind(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let (client_secret, id_server, id_access_token, sid) = (
        required(&body, "client_secret")?,
        required(&body, "id_server")?,
        required(&body, "id_access_token")?,
        required(&body, "sid")?,
    );
    state
        .services
        .threepids
        .bind(
            &authed.user_id,
            id_server,
            id_access_token,
            sid,
            client_secret,
        )
        .await?;
    Ok(Json(json!({})))
}

/// POST /_matrix/client/v3/account/3pid/unbind: a request signed by this server to the identity
/// server named, or to those the address was bound on through us (`no-support` when none).
async fn unbind(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let medium = required(&body, "medium")?;
    let address = required(&body, "address")?;
    let address = match medium {
        "email" => myelin_service::threepids::canonical_email(address)?,
        _ => address.to_owned(),
    };
    let unbound = state
        .services
        .threepids
        .unbind(
            &authed.user_id,
            medium,
            &address,
            optional(&body, "id_server")?,
        )
        .await?;
    Ok(unbind_result(unbound))
}
