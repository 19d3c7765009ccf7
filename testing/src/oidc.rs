//! An OpenID Connect provider stub for the SSO tests: an axum server on loopback with an
//! authorization endpoint that authenticates at once (as whichever user the test set) and
//! redirects straight back with a code, a token endpoint that checks the client's secret, the
//! redirect URI and the PKCE verifier before handing out an access token and an (unsigned) ID
//! token carrying the nonce, and a userinfo endpoint. It records the authorization requests, so
//! a test asserts what the homeserver sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use myelin::config::OidcProviderConfig;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// The client the stub knows.
pub const CLIENT_ID: &str = "myelin-test";
pub const CLIENT_SECRET: &str = "stub-secret";

/// An authorization code handed out and not yet exchanged.
struct Grant {
    claims: Value,
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

#[derive(Default)]
struct Inner {
    /// The claims of whoever "signs in" next.
    user: Value,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, Value>,
    authorize_requests: Vec<HashMap<String, String>>,
    token_exchanges: usize,
    next: u32,
}

struct Shared {
    issuer: String,
    inner: Mutex<Inner>,
}

/// The running stub.
pub struct OidcStub {
    /// `http://127.0.0.1:PORT`, also its issuer.
    pub base: String,
    shared: Arc<Shared>,
}

impl OidcStub {
    pub async fn start() -> OidcStub {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OIDC stub");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            issuer: base.clone(),
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OidcStub { base, shared }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("stub lock")
    }

    /// Who signs in next: the claims the userinfo endpoint (and ID token `sub`) will give.
    pub fn sign_in_as(&self, sub: &str, preferred_username: &str, name: &str) {
        self.inner().user = json!({
            "sub": sub, "preferred_username": preferred_username, "name": name,
        });
    }

    /// The query parameters of every authorization request received.
    pub fn authorize_requests(&self) -> Vec<HashMap<String, String>> {
        self.inner().authorize_requests.clone()
    }

    /// How many codes were exchanged successfully.
    pub fn token_exchanges(&self) -> usize {
        self.inner().token_exchanges
    }

    /// The provider as Myelin's `[[sso.oidc_providers]]` names it.
    pub fn provider(&self, idp_id: &str) -> OidcProviderConfig {
        OidcProviderConfig {
            idp_id: idp_id.into(),
            idp_name: format!("Stub {idp_id}"),
            idp_icon: Some("mxc://example.org/icon".into()),
            issuer: self.base.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: Some(CLIENT_SECRET.into()),
            client_auth_method: "client_secret_basic".into(),
            authorization_endpoint: format!("{}/authorize", self.base),
            token_endpoint: format!("{}/token", self.base),
            userinfo_endpoint: Some(format!("{}/userinfo", self.base)),
            scopes: vec!["openid".into(), "profile".into()],
            subject_claim: "sub".into(),
            localpart_claim: "preferred_username".into(),
            display_name_claim: Some("name".into()),
        }
    }
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

/// `GET /authorize`: signs the set user in at once and sends the browser back with a code.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.inner.lock().expect("stub lock");
    inner.authorize_requests.push(q.clone());
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    if field("response_type") != "code" || field("client_id") != CLIENT_ID {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    inner.next += 1;
    let code = format!("code-{}", inner.next);
    let grant = Grant {
        claims: inner.user.clone(),
        nonce: field("nonce"),
        challenge: field("code_challenge"),
        redirect_uri: field("redirect_uri"),
    };
    inner.codes.insert(code.clone(), grant);
    let mut back = match reqwest::Url::parse(&field("redirect_uri")) {
        Ok(url) => url,
        Err(_) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &field("state"));
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

/// `POST /token`: the code for tokens, after the client secret, redirect URI and PKCE checks.
async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let b64 = base64::engine::general_purpose::STANDARD;
    let expected = format!(
        "Basic {}",
        b64.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(expected.as_str()) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let mut inner = shared.inner.lock().expect("stub lock");
    let Some(grant) = inner.codes.remove(&field("code")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(field("code_verifier").as_bytes()));
    if field("grant_type") != "authorization_code"
        || field("redirect_uri") != grant.redirect_uri
        || challenge != grant.challenge
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    inner.next += 1;
    let access_token = format!("at-{}", inner.next);
    inner
        .tokens
        .insert(access_token.clone(), grant.claims.clone());
    inner.token_exchanges += 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = url.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = url.encode(
        json!({
            "iss": shared.issuer, "aud": CLIENT_ID, "sub": grant.claims["sub"],
            "nonce": grant.nonce, "iat": now, "exp": now + 300,
        })
        .to_string(),
    );
    Json(json!({
        "access_token": access_token, "token_type": "Bearer", "expires_in": 300,
        "id_token": format!("{header}.{payload}."),
    }))
    .into_response()
}

/// `GET /userinfo` with the access token.
async fn userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let inner = shared.inner.lock().expect("stub lock");
    match inner.tokens.get(token) {
        Some(claims) => Json(claims.clone()).into_response(),
        None => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token"),
    }
}
