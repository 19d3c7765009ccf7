//! SSO login through OpenID Connect (the spec's `m.login.sso`, as Synapse's `oidc_providers`):
//!
//! 1. `GET /login/sso/redirect[/{idpId}]?redirectUrl=…` ([`Sso::start_login`]) remembers the
//!    dance (`session.rs`) and sends the browser to the provider's authorization endpoint with
//!    `state`, `nonce` and a PKCE `S256` challenge, setting a cookie that ties the dance to that
//!    browser; several providers and none named, a picker page instead (`pages.rs`).
//! 2. The provider sends the browser back to [`CALLBACK_PATH`] ([`Sso::finish_login`]): the
//!    state and cookie are checked, the code exchanged and the claims read (`oidc.rs`), the
//!    subject mapped to an account or a new account made (`mapping.rs`), and a login token
//!    issued (`m.login.token`, the store `/login/get_token` uses).
//! 3. The browser goes to the client's `redirectUrl` with `loginToken`, straight away for a
//!    client on `sso.client_whitelist`, after a confirmation page otherwise.

pub mod config;
mod mapping;
mod oidc;
mod pages;
mod session;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use serde::Serialize;

pub use config::{OidcProviderConfig, SsoConfig};
use session::{random_b64, s256_challenge, PendingLogin, PendingLogins};

use crate::{accounts::Accounts, context::Context, ServiceError, ServiceResult};

/// Where providers send browsers back (under `sso.public_baseurl`); Synapse's is
/// `/_synapse/client/oidc/callback`.
pub const CALLBACK_PATH: &str = "/_myelin/client/oidc/callback";
/// The cookie tying a dance to the browser that started it.
pub const SESSION_COOKIE: &str = "myelin_oidc_session";
/// The longest client `redirectUrl` accepted.
const MAX_REDIRECT_URL_BYTES: usize = 2048;

/// One provider as `GET /login` lists it under `identity_providers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityProvider {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

/// Where `redirect` sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStart {
    /// To the provider, with the session cookie to set.
    Provider { location: String, cookie: String },
    /// A page to pick a provider (several configured, none named).
    Picker { html: String },
}

/// How the callback ends when the login succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginDone {
    /// To the (whitelisted) client, with `loginToken`.
    Redirect(String),
    /// A confirmation page linking to the client with `loginToken`.
    Confirm { html: String },
}

/// Why the callback did not log anyone in (shown as an HTML page, not a Matrix error: a
/// browser is looking at it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoFailure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The browser's request: no or unknown session, wrong cookie, refused at the provider.
    Session,
    /// The provider could not be reached or answered something unusable.
    Provider,
    /// The provider's user cannot be given an account (no valid or free localpart).
    Mapping,
    Internal,
}

impl SsoFailure {
    fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        SsoFailure {
            kind,
            message: message.into(),
        }
    }
    fn session(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Session, message)
    }
    fn provider(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Provider, message)
    }
    fn mapping(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Mapping, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Internal, message)
    }

    /// The page the browser is shown.
    pub fn page(&self) -> String {
        match self.kind {
            FailureKind::Internal => pages::error("Something went wrong on the server."),
            _ => pages::error(&self.message),
        }
    }
}

/// What the provider put on the callback URL.
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// SSO login (see the module comment).
pub struct Sso {
    ctx: Arc<Context>,
    accounts: Arc<Accounts>,
    sessions: PendingLogins,
    /// The HTTP client for providers, built on first use through `ctx.egress`.
    client: OnceLock<reqwest::Client>,
}

impl Sso {
    pub fn new(ctx: Arc<Context>, accounts: Arc<Accounts>) -> Sso {
        Sso {
            ctx,
            accounts,
            sessions: PendingLogins::default(),
            client: OnceLock::new(),
        }
    }

    fn config(&self) -> &SsoConfig {
        &self.ctx.config.sso
    }

    /// Whether SSO login is on (a provider is configured).
    pub fn enabled(&self) -> bool {
        self.config().enabled()
    }

    /// The providers, for `GET /login`.
    pub fn identity_providers(&self) -> Vec<IdentityProvider> {
        self.config()
            .oidc_providers
            .iter()
            .map(|p| IdentityProvider {
                id: p.idp_id.clone(),
                name: p.idp_name.clone(),
                icon: p.idp_icon.clone(),
            })
            .collect()
    }

    /// This server's address for browsers, without a trailing `/`.
    fn public_baseurl(&self) -> String {
        match &self.config().public_baseurl {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://{}", self.ctx.server_name()),
        }
    }

    /// The `redirect_uri` given to providers.
    fn callback_url(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.public_baseurl())
    }

    /// `GET /login/sso/redirect[/{idpId}]`: where the browser goes next. SSO must be on (the
    /// HTTP edge answers otherwise); an unknown `idp_id` is `NotFound`.
    pub fn start_login(
        &self,
        idp_id: Option<&str>,
        redirect_url: &str,
    ) -> ServiceResult<LoginStart> {
        check_client_redirect(redirect_url)?;
        let providers = &self.config().oidc_providers;
        let provider = match (idp_id, providers.as_slice()) {
            (Some(id), _) => providers
                .iter()
                .find(|p| p.idp_id == id)
                .ok_or_else(|| ServiceError::NotFound("Unknown identity provider".into()))?,
            (None, [only]) => only,
            (None, []) => {
                return Err(ServiceError::NotFound(
                    "No identity provider is configured".into(),
                ))
            }
            (None, several) => {
                return Ok(LoginStart::Picker {
                    html: pages::picker(several, redirect_url),
                })
            }
        };
        let state = random_b64(24);
        let login = PendingLogin {
            idp_id: provider.idp_id.clone(),
            // 32 bytes: 43 characters, what the TI-Messenger profile asks of Synapse too.
            nonce: random_b64(32),
            // 48 bytes: 64 characters, inside RFC 7636's 43–128.
            code_verifier: random_b64(48),
            client_redirect_url: redirect_url.to_owned(),
            browser_secret: random_b64(24),
        };
        let mut location = reqwest::Url::parse(&provider.authorization_endpoint)
            .map_err(|e| ServiceError::Internal(format!("authorization_endpoint: {e}")))?;
        location
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", &self.callback_url())
            .append_pair("scope", &provider.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &login.nonce)
            .append_pair("code_challenge", &s256_challenge(&login.code_verifier))
            .append_pair("code_challenge_method", "S256");
        let cookie = self.session_cookie(&login.browser_secret);
        self.sessions.insert(&state, login, self.ctx.now_ms());
        Ok(LoginStart::Provider {
            location: location.into(),
            cookie,
        })
    }

    /// The `Set-Cookie` value of a dance: only sent back to the callback, for as long as the
    /// dance lives, never to scripts; `Lax` still sends it on the provider's top-level redirect.
    fn session_cookie(&self, secret: &str) -> String {
        let secure = if self.public_baseurl().starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{SESSION_COOKIE}={secret}; Path={CALLBACK_PATH}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            session::SESSION_LIFETIME_MS / 1000
        )
    }

    /// The callback: checks the dance, logs the provider's user in, and says where the browser
    /// goes with its login token.
    pub async fn finish_login(
        &self,
        params: CallbackParams,
        cookie: Option<&str>,
    ) -> Result<LoginDone, SsoFailure> {
        if let Some(error) = &params.error {
            let description = params.error_description.as_deref().unwrap_or_default();
            tracing::info!(%error, %description, "the identity provider refused a login");
            return Err(SsoFailure::session(format!(
                "The identity provider did not sign you in ({error}{}{description}).",
                if description.is_empty() { "" } else { ": " }
            )));
        }
        let state = params
            .state
            .ok_or_else(|| SsoFailure::session("The state parameter is missing."))?;
        let cookie = cookie.ok_or_else(|| SsoFailure::session("No session cookie was sent."))?;
        let login = self
            .sessions
            .take(&state, cookie, self.ctx.now_ms())
            .ok_or_else(|| {
                SsoFailure::session("This sign-in session is unknown or has expired.")
            })?;
        let code = params
            .code
            .ok_or_else(|| SsoFailure::session("The code parameter is missing."))?;
        let provider = self
            .config()
            .oidc_providers
            .iter()
            .find(|p| p.idp_id == login.idp_id)
            .ok_or_else(|| SsoFailure::session("Unknown identity provider."))?;
        let claims = self
            .claims_for_code(provider, &code, &login.code_verifier, &login.nonce)
            .await
            .inspect_err(
                |e| tracing::warn!(idp = %provider.idp_id, error = %e.message, "SSO login failed"),
            )?;
        let user_id = self.user_for_claims(provider, &claims).await?;
        let (token, _) = self.accounts.issue_login_token(&user_id);
        let mut target = reqwest::Url::parse(&login.client_redirect_url)
            .map_err(|e| SsoFailure::internal(e.to_string()))?;
        target.query_pairs_mut().append_pair("loginToken", &token);
        let target = String::from(target);
        let trusted = self
            .config()
            .client_whitelist
            .iter()
            .any(|prefix| login.client_redirect_url.starts_with(prefix.as_str()));
        Ok(if trusted {
            LoginDone::Redirect(target)
        } else {
            LoginDone::Confirm {
                html: pages::confirm(&target, user_id.as_str()),
            }
        })
    }
}

/// A client `redirectUrl` is an absolute URL of a scheme that cannot run code in our page
/// (apps use their own schemes, so no allow-list of schemes).
fn check_client_redirect(url: &str) -> ServiceResult<()> {
    if url.len() > MAX_REDIRECT_URL_BYTES {
        return Err(ServiceError::InvalidParam("redirectUrl is too long".into()));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| ServiceError::InvalidParam("redirectUrl must be an absolute URL".into()))?;
    if matches!(
        parsed.scheme(),
        "javascript" | "data" | "vbscript" | "file" | "blob"
    ) {
        return Err(ServiceError::InvalidParam(format!(
            "redirectUrl may not be a {}: URL",
            parsed.scheme()
        )));
    }
    Ok(())
}
