//! OpenID tokens (spec: Client-Server API, "OpenID"; Server-Server API, "OpenID"): a client asks
//! for a short-lived token that a third party (an integration manager, a widget) hands to
//! `GET /_matrix/federation/v1/openid/userinfo` to learn which user it belongs to.
//!
//! The tokens live in memory: they prove identity for an hour at most, and one lost with a
//! restart is simply requested again.

use ruma::{OwnedUserId, UserId};

use crate::{
    accounts::token::{random_alnum, ExpiringTokens},
    Accounts, ServiceError, ServiceResult,
};

/// How long an OpenID token is valid.
pub const OPENID_LIFETIME_MS: u64 = 3_600_000;
/// Outstanding tokens kept at most; the oldest go first.
const MAX_TOKENS: usize = 10_000;

/// Outstanding tokens (see [`ExpiringTokens`]).
pub(crate) struct OpenIdTokens(ExpiringTokens<OwnedUserId>);

impl Default for OpenIdTokens {
    fn default() -> Self {
        OpenIdTokens(ExpiringTokens::new(MAX_TOKENS))
    }
}

impl OpenIdTokens {
    fn issue(&self, user_id: &UserId, now: u64) -> String {
        let token = random_alnum(32);
        self.0
            .insert(&token, user_id.to_owned(), now + OPENID_LIFETIME_MS, now);
        token
    }

    fn owner(&self, token: &str, now: u64) -> Option<OwnedUserId> {
        self.0.get(token, now)
    }
}

/// What `POST /user/{userId}/openid/request_token` answers.
pub struct OpenIdToken {
    pub access_token: String,
    pub expires_in_ms: u64,
}

impl Accounts {
    /// `POST /user/{userId}/openid/request_token`: only for oneself.
    pub fn request_openid_token(
        &self,
        requester: &UserId,
        user_id: &UserId,
    ) -> ServiceResult<OpenIdToken> {
        if requester != user_id {
            return Err(ServiceError::Forbidden(
                "You may only request OpenID tokens for yourself".into(),
            ));
        }
        Ok(OpenIdToken {
            access_token: self.openid.issue(user_id, self.ctx.now_ms()),
            expires_in_ms: OPENID_LIFETIME_MS,
        })
    }

    /// `GET /_matrix/federation/v1/openid/userinfo`: the user a valid token was issued to.
    pub fn openid_userinfo(&self, token: &str) -> ServiceResult<OwnedUserId> {
        self.openid
            .owner(token, self.ctx.now_ms())
            .ok_or(ServiceError::UnknownToken { soft_logout: false })
    }
}
