//! OpenID tokens (spec: Client-Server API, "OpenID"; Server-Server API, "OpenID"): a client asks
//! for a short-lived token that a third party (an integration manager, a widget) hands to
//! `GET /_matrix/federation/v1/openid/userinfo` to learn which user it belongs to.
//!
//! The tokens live in memory: they prove identity for an hour at most, and one lost with a
//! restart is simply requested again.

use std::{collections::HashMap, sync::Mutex};

use ruma::{OwnedUserId, UserId};

use crate::{
    accounts::token::{hash_token, random_alnum},
    Accounts, ServiceError, ServiceResult,
};

/// How long an OpenID token is valid.
pub const OPENID_LIFETIME_MS: u64 = 3_600_000;
/// Outstanding tokens kept at most; the oldest go first.
const MAX_TOKENS: usize = 10_000;

/// Outstanding tokens by their hash (as access tokens are stored): a lookup never compares the
/// secret itself, so its timing says nothing about how close a guess came.
#[derive(Default)]
pub(crate) struct OpenIdTokens {
    tokens: Mutex<HashMap<String, (OwnedUserId, u64)>>,
}

impl OpenIdTokens {
    fn issue(&self, user_id: &UserId, now: u64) -> String {
        let token = random_alnum(32);
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, expires)| *expires > now);
        if map.len() >= MAX_TOKENS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(t, _)| t.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            hash_token(&token),
            (user_id.to_owned(), now + OPENID_LIFETIME_MS),
        );
        token
    }

    fn owner(&self, token: &str, now: u64) -> Option<OwnedUserId> {
        let map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&hash_token(token))
            .filter(|(_, expires)| *expires > now)
            .map(|(user, _)| user.clone())
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
