//! Accounts: registration, login, logout, tokens, passwords, deactivation, devices.

use axum::{
    extract::{Path, State},
    routing::{get, post},
    Json, Router,
};
use myelin_service::accounts::{LoginSession, RegisterOutcome, RegisterRequest, APPSERVICE_DEVICE};
use myelin_service::RateAction;
use ruma::OwnedDeviceId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    client_ip::ClientIp,
    error::{ApiError, ApiResult},
    extract::{AppserviceToken, Auth, JsonBody, MaybeAuth, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v3/register", post(register))
        .route("/_matrix/client/v3/register/available", get(available))
        .route(
            "/_matrix/client/v1/register/m.login.registration_token/validity",
            get(token_validity),
        )
        .route("/_matrix/client/v3/login", get(login_flows).post(login))
        .route("/_matrix/client/v1/login/get_token", post(get_login_token))
        .route("/_matrix/client/v3/refresh", post(refresh))
        .route("/_matrix/client/v3/logout", post(logout))
        .route("/_matrix/client/v3/logout/all", post(logout_all))
        .route("/_matrix/client/v3/account/whoami", get(whoami))
        .route(
            "/_matrix/client/v3/user/{user_id}/openid/request_token",
            post(openid_request_token),
        )
        .route("/_matrix/client/v3/account/password", post(change_password))
        .route("/_matrix/client/v3/account/deactivate", post(deactivate))
        .route("/_matrix/client/v3/devices", get(list_devices))
        .route(
            "/_matrix/client/v3/devices/{device_id}",
            get(get_device).put(put_device).delete(delete_device),
        )
        .route("/_matrix/client/v3/delete_devices", post(delete_devices))
}

fn session_json(s: &LoginSession, server_name: &str) -> Value {
    let mut body = json!({ "user_id": s.user_id, "access_token": s.access_token, "device_id": s.device_id, "home_server": server_name });
    if let Some(r) = &s.refresh_token {
        body["refresh_token"] = json!(r);
    }
    if let Some(ms) = s.expires_in_ms {
        body["expires_in_ms"] = json!(ms);
    }
    body
}

#[derive(Deserialize)]
struct RegisterBody {
    /// `m.login.application_service` for an appservice registering a user of its namespace.
    #[serde(rename = "type")]
    kind: Option<String>,
    username: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
    #[serde(default)]
    refresh_token: bool,
    auth: Option<Value>,
    /// Upgrades this guest to a full account.
    guest_access_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct KindQuery {
    kind: Option<String>,
}

/// POST /_matrix/client/v3/register — client-server-api/#post_matrixclientv3register.
async fn register(
    State(state): State<SharedState>,
    client: ClientIp,
    AppserviceToken(appservice): AppserviceToken,
    Query(q): Query<KindQuery>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<Json<Value>> {
    if body.kind.as_deref() == Some(APPSERVICE_LOGIN) {
        return register_appservice_user(&state, appservice, body).await;
    }
    // Only requests that would create an account spend the budget; UIA round trips are free.
    if body.auth.is_some() {
        state
            .services
            .ctx
            .check_rate(RateAction::Registration, &client.key())?;
    }
    let server_name = state.services.ctx.server_name().to_string();
    match q.kind.as_deref() {
        None | Some("user") => {}
        Some("guest") => {
            state
                .services
                .ctx
                .check_rate(RateAction::Registration, &client.key())?;
            let session = state
                .services
                .accounts
                .register_guest(body.initial_device_display_name.as_deref())
                .await?;
            return Ok(Json(session_json(&session, &server_name)));
        }
        Some(_) => return Err(ApiError::invalid_param("kind must be user or guest")),
    }
    let req = RegisterRequest {
        username: body.username,
        password: body.password,
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        inhibit_login: body.inhibit_login,
        refresh_token: body.refresh_token,
        auth: body.auth,
        guest_access_token: body.guest_access_token,
    };
    Ok(Json(match state.services.accounts.register(req).await? {
        RegisterOutcome::LoggedIn(s) => session_json(&s, &server_name),
        RegisterOutcome::NoLogin(user_id) => {
            json!({ "user_id": user_id, "home_server": server_name })
        }
    }))
}

/// The login and registration type of application services.
const APPSERVICE_LOGIN: &str = "m.login.application_service";

/// `POST /register` with `type: m.login.application_service` and the appservice's `as_token`
/// (spec: Application Service API, "Server admin style permissions").
async fn register_appservice_user(
    state: &SharedState,
    appservice: Option<String>,
    body: RegisterBody,
) -> ApiResult<Json<Value>> {
    let appservice = appservice.ok_or_else(ApiError::missing_token)?;
    let req = RegisterRequest {
        username: body.username,
        password: None,
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        inhibit_login: body.inhibit_login,
        refresh_token: body.refresh_token,
        auth: None,
        guest_access_token: None,
    };
    let server_name = state.services.ctx.server_name().to_string();
    let outcome = state
        .services
        .accounts
        .register_appservice_user(&appservice, req)
        .await?;
    Ok(Json(match outcome {
        RegisterOutcome::LoggedIn(s) => session_json(&s, &server_name),
        RegisterOutcome::NoLogin(user_id) => {
            json!({ "user_id": user_id, "home_server": server_name })
        }
    }))
}

#[derive(Deserialize)]
struct UsernameQuery {
    username: String,
}

/// GET /_matrix/client/v3/register/available.
async fn available(
    State(state): State<SharedState>,
    Query(q): Query<UsernameQuery>,
) -> ApiResult<Json<Value>> {
    state
        .services
        .accounts
        .check_username_available(&q.username)
        .await?;
    Ok(Json(json!({ "available": true })))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: String,
}

/// GET /_matrix/client/v1/register/m.login.registration_token/validity.
async fn token_validity(
    State(state): State<SharedState>,
    client: ClientIp,
    Query(q): Query<TokenQuery>,
) -> ApiResult<Json<Value>> {
    let valid = state
        .services
        .accounts
        .registration_token_validity(&client.key(), &q.token)?;
    Ok(Json(json!({ "valid": valid })))
}

/// GET /_matrix/client/v3/login — client-server-api/#get_matrixclientv3login. `m.login.sso`
/// with its identity providers only when SSO is configured (its login tokens are redeemed by
/// `m.login.token`, listed always for `/login/get_token`).
async fn login_flows(State(state): State<SharedState>) -> Json<Value> {
    let mut flows = vec![
        json!({ "type": "m.login.password" }),
        json!({ "type": "m.login.token", "get_login_token": true }),
    ];
    let sso = &state.services.sso;
    if sso.enabled() {
        flows
            .push(json!({ "type": "m.login.sso", "identity_providers": sso.identity_providers() }));
    }
    flows.push(json!({ "type": APPSERVICE_LOGIN }));
    Json(json!({ "flows": flows }))
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Value>,
    user: Option<String>,
    password: Option<String>,
    /// `m.login.token`.
    token: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    refresh_token: bool,
}

/// POST /_matrix/client/v3/login — client-server-api/#post_matrixclientv3login.
async fn login(
    State(state): State<SharedState>,
    client: ClientIp,
    AppserviceToken(appservice): AppserviceToken,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Json<Value>> {
    if body.kind == APPSERVICE_LOGIN {
        return login_appservice(&state, appservice, body).await;
    }
    state
        .services
        .ctx
        .check_rate(RateAction::Login, &client.key())?;
    let server_name = state.services.ctx.server_name().to_string();
    match body.kind.as_str() {
        "m.login.password" => {}
        "m.login.token" => {
            let token = body
                .token
                .ok_or_else(|| ApiError::bad_json("Missing token"))?;
            let session = state
                .services
                .accounts
                .login_with_token(
                    &token,
                    body.device_id.as_deref(),
                    body.initial_device_display_name.as_deref(),
                    body.refresh_token,
                )
                .await?;
            return Ok(Json(session_json(&session, &server_name)));
        }
        other => {
            return Err(ApiError::unsupported(format!(
                "Unsupported login type {other}"
            )))
        }
    }
    let user = login_user(&body)?;
    let password = body
        .password
        .ok_or_else(|| ApiError::bad_json("Missing password"))?;
    let session = state
        .services
        .accounts
        .login_password(
            &user,
            &password,
            body.device_id.as_deref(),
            body.initial_device_display_name.as_deref(),
            body.refresh_token,
        )
        .await?;
    Ok(Json(session_json(
        &session,
        state.services.ctx.server_name().as_str(),
    )))
}

/// The user a login names (`identifier` of type `m.id.user`, or the legacy `user`).
fn login_user(body: &LoginBody) -> ApiResult<String> {
    let user = match &body.identifier {
        Some(id) => {
            if id.get("type").and_then(Value::as_str) != Some("m.id.user") {
                return Err(ApiError::unsupported(
                    "Only m.id.user identifiers are supported",
                ));
            }
            id.get("user").and_then(Value::as_str).map(str::to_owned)
        }
        None => body.user.clone(),
    };
    user.ok_or_else(|| ApiError::bad_json("Missing user identifier"))
}

/// `POST /login` with `type: m.login.application_service` and the appservice's `as_token`.
async fn login_appservice(
    state: &SharedState,
    appservice: Option<String>,
    body: LoginBody,
) -> ApiResult<Json<Value>> {
    let appservice = appservice.ok_or_else(ApiError::missing_token)?;
    let user = login_user(&body)?;
    let session = state
        .services
        .accounts
        .login_appservice(
            Some(&appservice),
            &user,
            body.device_id.as_deref(),
            body.initial_device_display_name.as_deref(),
            body.refresh_token,
        )
        .await?;
    let server_name = state.services.ctx.server_name().to_string();
    Ok(Json(session_json(&session, &server_name)))
}

#[derive(Deserialize)]
struct UiaBody {
    auth: Option<Value>,
}

/// POST /_matrix/client/v1/login/get_token (UIA: m.login.password): a single-use token for
/// `m.login.token`, valid for two minutes.
async fn get_login_token(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<UiaBody>,
) -> ApiResult<Json<Value>> {
    if authed.is_guest {
        return Err(ApiError::guest_access_forbidden(
            "Guests cannot get login tokens",
        ));
    }
    let accounts = &state.services.accounts;
    accounts
        .check_uia(body.auth.as_ref(), PASSWORD_FLOWS, Some(&authed.user_id))
        .await?;
    let (login_token, expires_in_ms) = accounts.issue_login_token(&authed.user_id);
    Ok(Json(
        json!({ "login_token": login_token, "expires_in_ms": expires_in_ms }),
    ))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// POST /_matrix/client/v3/refresh.
async fn refresh(
    State(state): State<SharedState>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Json<Value>> {
    let s = state.services.accounts.refresh(&body.refresh_token).await?;
    Ok(Json(
        json!({ "access_token": s.access_token, "refresh_token": s.refresh_token, "expires_in_ms": s.expires_in_ms }),
    ))
}

/// POST /_matrix/client/v3/logout.
async fn logout(State(state): State<SharedState>, Auth(authed): Auth) -> ApiResult<Json<Value>> {
    state.services.accounts.logout(&authed).await?;
    Ok(Json(json!({})))
}

/// POST /_matrix/client/v3/logout/all.
async fn logout_all(
    State(state): State<SharedState>,
    Auth(authed): Auth,
) -> ApiResult<Json<Value>> {
    state.services.accounts.logout_all(&authed.user_id).await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/account/whoami.
async fn whoami(Auth(authed): Auth) -> Json<Value> {
    let mut body = json!({ "user_id": authed.user_id, "is_guest": authed.is_guest });
    // An appservice acting without a device has none to name.
    if authed.appservice.is_none() || authed.device_id != APPSERVICE_DEVICE {
        body["device_id"] = json!(authed.device_id);
    }
    Json(body)
}

#[derive(Deserialize)]
struct PasswordBody {
    new_password: String,
    #[serde(default = "yes")]
    logout_devices: bool,
    auth: Option<Value>,
}

fn yes() -> bool {
    true
}

pub(super) const PASSWORD_FLOWS: &[&[&str]] = &[&[myelin_service::accounts::uia::PASSWORD]];

/// The UIA flow of a password reset: a validated e-mail address of the account.
const EMAIL_FLOWS: &[&[&str]] = &[&[myelin_service::accounts::uia::EMAIL_IDENTITY]];

/// POST /_matrix/client/v3/account/password: with an access token (UIA: m.login.password), or
/// without one as a reset (UIA: m.login.email.identity, for the account the address belongs to).
async fn change_password(
    State(state): State<SharedState>,
    MaybeAuth(authed): MaybeAuth,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Json<Value>> {
    let Some(authed) = authed else {
        return reset_password(&state, body).await;
    };
    state
        .services
        .accounts
        .check_uia(body.auth.as_ref(), PASSWORD_FLOWS, Some(&authed.user_id))
        .await?;
    state
        .services
        .accounts
        .change_password(&authed, &body.new_password, body.logout_devices)
        .await?;
    Ok(Json(json!({})))
}

async fn reset_password(state: &SharedState, body: PasswordBody) -> ApiResult<Json<Value>> {
    let accounts = &state.services.accounts;
    accounts
        .check_uia(body.auth.as_ref(), EMAIL_FLOWS, None)
        .await?;
    let creds = body
        .auth
        .as_ref()
        .and_then(myelin_service::threepids::ThreepidCreds::from_auth)
        .ok_or_else(|| ApiError::bad_json("auth.threepid_creds is required"))?;
    let user_id = state.services.threepids.account_of(&creds).await?;
    accounts
        .reset_password(&user_id, &body.new_password, body.logout_devices)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct AuthOnlyBody {
    auth: Option<Value>,
}

#[derive(Deserialize)]
struct DeactivateBody {
    auth: Option<Value>,
    id_server: Option<String>,
    /// Whether the user's messages are to be forgotten: served redacted from now on to other
    /// servers and to users who were not in the room when they were sent.
    #[serde(default)]
    erase: bool,
}

/// POST /_matrix/client/v3/account/deactivate (UIA: m.login.password): the addresses bound on
/// identity servers through us are unbound first (from `id_server`, or where each was bound).
async fn deactivate(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<DeactivateBody>,
) -> ApiResult<Json<Value>> {
    state
        .services
        .accounts
        .check_uia(body.auth.as_ref(), PASSWORD_FLOWS, Some(&authed.user_id))
        .await?;
    let unbound = state
        .services
        .threepids
        .unbind_all(&authed.user_id, body.id_server.as_deref())
        .await?;
    state
        .services
        .accounts
        .deactivate(&authed.user_id, body.erase)
        .await?;
    let result = if unbound { "success" } else { "no-support" };
    Ok(Json(json!({ "id_server_unbind_result": result })))
}

fn device_json(d: &myelin_storage::DeviceRecord) -> Value {
    json!({ "device_id": d.device_id, "display_name": d.display_name, "last_seen_ts": d.last_seen_ms, "last_seen_ip": d.last_seen_ip })
}

/// GET /_matrix/client/v3/devices.
async fn list_devices(
    State(state): State<SharedState>,
    Auth(authed): Auth,
) -> ApiResult<Json<Value>> {
    let devices = state
        .services
        .accounts
        .list_devices(&authed.user_id)
        .await?;
    Ok(Json(
        json!({ "devices": devices.iter().map(device_json).collect::<Vec<_>>() }),
    ))
}

/// GET /_matrix/client/v3/devices/{deviceId}.
async fn get_device(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(device_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(device_json(
        &state
            .services
            .accounts
            .get_device(&authed.user_id, &device_id)
            .await?,
    )))
}

#[derive(Deserialize)]
struct DeviceBody {
    display_name: Option<String>,
}

/// PUT /_matrix/client/v3/devices/{deviceId}.
async fn put_device(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(device_id): Path<String>,
    JsonBody(body): JsonBody<DeviceBody>,
) -> ApiResult<Json<Value>> {
    let accounts = &state.services.accounts;
    let name = body.display_name.as_deref();
    if accounts.manages_devices(&authed) {
        // MSC4190: an appservice creates its users' devices here.
        accounts
            .appservice_put_device(&authed, &device_id, name)
            .await?;
    } else {
        accounts
            .rename_device(&authed.user_id, &device_id, name)
            .await?;
    }
    Ok(Json(json!({})))
}

/// DELETE /_matrix/client/v3/devices/{deviceId} (UIA: m.login.password).
async fn delete_device(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(device_id): Path<String>,
    JsonBody(body): JsonBody<AuthOnlyBody>,
) -> ApiResult<Json<Value>> {
    state
        .services
        .accounts
        .get_device(&authed.user_id, &device_id)
        .await?;
    // MSC4190: appservices delete their users' devices without user-interactive auth.
    if !state.services.accounts.manages_devices(&authed) {
        state
            .services
            .accounts
            .check_uia(body.auth.as_ref(), PASSWORD_FLOWS, Some(&authed.user_id))
            .await?;
    }
    state
        .services
        .accounts
        .delete_devices(&authed.user_id, &[OwnedDeviceId::from(device_id)])
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct DeleteDevicesBody {
    devices: Vec<String>,
    auth: Option<Value>,
}

/// POST /_matrix/client/v3/delete_devices (UIA: m.login.password).
async fn delete_devices(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<DeleteDevicesBody>,
) -> ApiResult<Json<Value>> {
    if !state.services.accounts.manages_devices(&authed) {
        state
            .services
            .accounts
            .check_uia(body.auth.as_ref(), PASSWORD_FLOWS, Some(&authed.user_id))
            .await?;
    }
    let ids: Vec<OwnedDeviceId> = body.devices.into_iter().map(OwnedDeviceId::from).collect();
    state
        .services
        .accounts
        .delete_devices(&authed.user_id, &ids)
        .await?;
    Ok(Json(json!({})))
}

/// POST /_matrix/client/v3/user/{userId}/openid/request_token.
async fn openid_request_token(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user_id: ruma::OwnedUserId = crate::extract::parse_id(user_id, "user ID")?;
    let token = state
        .services
        .accounts
        .request_openid_token(&authed.user_id, &user_id)?;
    Ok(Json(json!({
        "access_token": token.access_token,
        "token_type": "Bearer",
        "matrix_server_name": state.services.ctx.server_name(),
        "expires_in": token.expires_in_ms / 1000,
    })))
}
