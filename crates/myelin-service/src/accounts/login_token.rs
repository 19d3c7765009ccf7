//! Login tokens (spec: `POST /login/get_token` and the `m.login.token` login type): a logged-in
//! client, after re-authenticating, gets a short-lived single-use token another device of the
//! same user logs in with (QR login, handing a session to another app).
//!
//! The tokens live in memory, by their hash: they are valid for two minutes and used once, so
//! one lost with a restart is simply requested again.

use ruma::{OwnedUserId, UserId};

use super::{token::random_secret, token::ExpiringTokens, Accounts, LoginSession};
use crate::{ServiceError, ServiceResult};

/// How long a login token is valid.
pub const LOGIN_TOKEN_LIFETIME_MS: u64 = 120_000;
/// Outstanding tokens kept at most; the oldest go first.
const MAX_TOKENS: usize = 10_000;

/// Outstanding tokens (see [`ExpiringTokens`]).
pub(crate) struct LoginTokens(ExpiringTokens<OwnedUserId>);

impl Default for LoginTokens {
    fn default() -> Self {
        LoginTokens(ExpiringTokens::new(MAX_TOKENS))
    }
}

impl LoginTokens {
    fn issue(&self, user_id: &UserId, now: u64) -> String {
        let token = random_secret("mylt_");
        self.0.insert(
            &token,
            user_id.to_owned(),
            now + LOGIN_TOKEN_LIFETIME_MS,
            now,
        );
        token
    }

    /// The token's user, consuming it: a token logs in once.
    fn redeem(&self, token: &str, now: u64) -> Option<OwnedUserId> {
        self.0.take(token, now)
    }
}

impl Accounts {
    /// `POST /login/get_token` (after UIA): a token for `m.login.token` and its lifetime.
    pub fn issue_login_token(&self, user_id: &UserId) -> (String, u64) {
        let token = self.login_tokens.issue(user_id, self.ctx.now_ms());
        (token, LOGIN_TOKEN_LIFETIME_MS)
    }

    /// `POST /login` with `m.login.token`: a new session for the token's user.
    pub async fn login_with_token(
        &self,
        token: &str,
        device_id: Option<&str>,
        display_name: Option<&str>,
        refresh: bool,
    ) -> ServiceResult<LoginSession> {
        let invalid = || ServiceError::Forbidden("Invalid or expired login token".into());
        let user_id = self
            .login_tokens
            .redeem(token, self.ctx.now_ms())
            .ok_or_else(invalid)?;
        match self.ctx.storage.get_user(&user_id).await? {
            Some(r) if r.deactivated => return Err(ServiceError::UserDeactivated),
            Some(r) if r.locked => return Err(ServiceError::UserLocked),
            Some(_) => {}
            None => return Err(invalid()),
        }
        self.start_session(&user_id, device_id, display_name, refresh)
            .await
    }
}
