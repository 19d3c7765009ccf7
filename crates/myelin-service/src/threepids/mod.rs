//! E-mail addresses as third-party identifiers (3PIDs): validation by a token mailed through
//! `[smtp]` (`requestToken`, then the link or `submit_token`), binding validated addresses to
//! accounts, and finding the account an address belongs to (password resets). Phone numbers
//! are not supported (`M_THREEPID_MEDIUM_NOT_SUPPORTED`). Binding addresses on identity servers,
//! lookups and the requests of stored invites are in `identity.rs`.

mod identity;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

pub use identity::{lookup_hash, IdServer};

use myelin_storage::{ThreepidSession, UserThreepid};
use ruma::{OwnedUserId, UserId};
use serde_json::Value;

use crate::accounts::token::{hash_token, random_alnum};
use crate::{context::Context, ServiceError, ServiceResult};

/// How long a mailed token stays valid (as Synapse).
const SESSION_LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest e-mail address (RFC 5321's path limit).
const MAX_ADDRESS_BYTES: usize = 254;
/// The path the validation link points at (not part of the spec: the link is the server's own).
pub const SUBMIT_TOKEN_PATH: &str = "/_myelin/client/email/submit_token";

/// What a validation is for, which decides whether the address must be free or taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// `POST /register/email/requestToken`: the address must be free.
    Register,
    /// `POST /account/3pid/email/requestToken`: the address must be free.
    AddToAccount,
    /// `POST /account/password/email/requestToken`: the address must belong to an account.
    PasswordReset,
}

/// The body of an e-mail `requestToken`.
#[derive(Debug, Clone)]
pub struct EmailTokenRequest {
    pub email: String,
    pub client_secret: String,
    pub send_attempt: u64,
}

/// `threepid_creds` / `threePidCreds` of UIA and `/account/3pid/add`.
#[derive(Debug, Clone)]
pub struct ThreepidCreds {
    pub sid: String,
    pub client_secret: String,
}

impl ThreepidCreds {
    /// The credentials in a UIA `auth` object, under either spelling the spec has used.
    pub fn from_auth(auth: &Value) -> Option<ThreepidCreds> {
        let creds = auth
            .get("threepid_creds")
            .or_else(|| auth.get("threepidCreds"))?;
        Some(ThreepidCreds {
            sid: creds.get("sid")?.as_str()?.to_owned(),
            client_secret: creds.get("client_secret")?.as_str()?.to_owned(),
        })
    }
}

pub struct Threepids {
    ctx: Arc<Context>,
    /// The HTTP client for identity servers, built on first use.
    client: OnceLock<reqwest::Client>,
}

impl Threepids {
    pub fn new(ctx: Arc<Context>) -> Threepids {
        Threepids {
            ctx,
            client: OnceLock::new(),
        }
    }

    /// Whether e-mail can be sent at all (`[smtp]` names a host).
    pub fn email_enabled(&self) -> bool {
        self.ctx.mailer.is_some()
    }

    /// Where a client may POST the code from the mail (`submit_url`).
    pub fn submit_url(&self) -> Option<String> {
        let mailer = self.ctx.mailer.as_ref()?;
        Some(format!("{}{SUBMIT_TOKEN_PATH}", mailer.public_base_url))
    }

    /// An e-mail `requestToken`: checks the address for the purpose, mails a token (again only
    /// for a higher `send_attempt`) and answers the session ID.
    pub async fn request_email_token(
        &self,
        purpose: TokenPurpose,
        req: EmailTokenRequest,
    ) -> ServiceResult<String> {
        let mailer = self.ctx.mailer.as_ref().ok_or_else(|| {
            ServiceError::ThreepidMediumNotSupported("This server sends no e-mail".into())
        })?;
        check_client_secret(&req.client_secret)?;
        let address = canonical_email(&req.email)?;
        let owner = self
            .ctx
            .storage
            .user_for_threepid("email", &address)
            .await?;
        match (purpose, owner) {
            (TokenPurpose::Register | TokenPurpose::AddToAccount, Some(_)) => {
                return Err(ServiceError::ThreepidInUse(
                    "This e-mail address is already in use".into(),
                ))
            }
            (TokenPurpose::PasswordReset, None) => {
                return Err(ServiceError::ThreepidNotFound(
                    "No account has this e-mail address".into(),
                ))
            }
            _ => {}
        }
        let storage = &self.ctx.storage;
        let existing = storage
            .threepid_session_for(&req.client_secret, "email", &address)
            .await?;
        if let Some(s) = existing
            .as_ref()
            .filter(|s| req.send_attempt <= s.send_attempt)
        {
            return Ok(s.sid.clone());
        }
        let now = self.ctx.now_ms();
        let token = random_alnum(32);
        let sid = existing.map_or_else(|| random_alnum(24), |s| s.sid);
        storage
            .save_threepid_session(ThreepidSession {
                sid: sid.clone(),
                client_secret: req.client_secret.clone(),
                medium: "email".into(),
                address: address.clone(),
                token_hash: hash_token(&token),
                send_attempt: req.send_attempt,
                created_ms: now,
                expires_ms: now + SESSION_LIFETIME_MS,
                validated_ms: None,
            })
            .await?;
        let link = format!(
            "{}{SUBMIT_TOKEN_PATH}?sid={sid}&client_secret={}&token={token}",
            mailer.public_base_url,
            urlencode(&req.client_secret)
        );
        let body = format!(
            "To confirm your e-mail address on {server}, open this link:\n\n{link}\n\n\
             Or enter this code in your client: {token}\n\n\
             If you did not ask for this, ignore this mail.\n",
            server = self.ctx.server_name()
        );
        mailer
            .send(
                &address,
                &format!("Confirm your e-mail address on {}", self.ctx.server_name()),
                body,
            )
            .await?;
        Ok(sid)
    }

    /// The token from the mail came back: the session is validated (`false` for a wrong or
    /// expired token).
    pub async fn submit_token(
        &self,
        sid: &str,
        client_secret: &str,
        token: &str,
    ) -> ServiceResult<bool> {
        Ok(self
            .ctx
            .storage
            .validate_threepid_session(sid, client_secret, &hash_token(token), self.ctx.now_ms())
            .await?)
    }

    /// The address of a validated session.
    pub async fn validated_address(&self, creds: &ThreepidCreds) -> ServiceResult<String> {
        let session = self
            .ctx
            .storage
            .threepid_session(&creds.sid, &creds.client_secret)
            .await?
            .filter(|s| s.validated_ms.is_some())
            .ok_or_else(|| {
                ServiceError::ThreepidAuthFailed("The e-mail address has not been validated".into())
            })?;
        Ok(session.address)
    }

    /// `POST /account/3pid/add` (after UIA): binds the session's address to the account.
    pub async fn add_to_account(
        &self,
        user_id: &UserId,
        creds: &ThreepidCreds,
    ) -> ServiceResult<()> {
        let address = self.validated_address(creds).await?;
        let now = self.ctx.now_ms();
        let bound = self
            .ctx
            .storage
            .add_user_threepid(UserThreepid {
                user_id: user_id.to_owned(),
                medium: "email".into(),
                address,
                validated_ms: now,
                added_ms: now,
            })
            .await?;
        if !bound {
            return Err(ServiceError::ThreepidInUse(
                "This e-mail address is already in use".into(),
            ));
        }
        Ok(())
    }

    /// `POST /account/3pid/delete`: unbinds the address from `id_server` or the identity
    /// servers it was bound on through us, then removes it from the account. `true` when it was
    /// unbound everywhere (`success`), `false` otherwise (`no-support`).
    pub async fn remove(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: Option<&str>,
    ) -> ServiceResult<bool> {
        let address = match medium {
            "email" => canonical_email(address)?,
            _ => address.to_owned(),
        };
        let had_bindings = id_server.is_some()
            || !self
                .ctx
                .storage
                .threepid_id_servers(user_id, medium, &address)
                .await?
                .is_empty();
        let unbound = self.unbind(user_id, medium, &address, id_server).await?;
        let removed = self
            .ctx
            .storage
            .remove_user_threepid(user_id, medium, &address)
            .await?;
        if !removed && !had_bindings {
            return Err(ServiceError::NotFound(
                "No such third-party identifier".into(),
            ));
        }
        Ok(unbound)
    }

    /// `GET /account/3pid`.
    pub async fn list(&self, user_id: &UserId) -> ServiceResult<Vec<UserThreepid>> {
        Ok(self.ctx.storage.user_threepids(user_id).await?)
    }

    /// The account whose address a validated session proves (password reset).
    pub async fn account_of(&self, creds: &ThreepidCreds) -> ServiceResult<OwnedUserId> {
        let address = self.validated_address(creds).await?;
        self.ctx
            .storage
            .user_for_threepid("email", &address)
            .await?
            .ok_or_else(|| {
                ServiceError::ThreepidNotFound("No account has this e-mail address".into())
            })
    }
}

/// `client_secret`: `[0-9a-zA-Z.=_-]{1,255}` (spec: "client_secret").
fn check_client_secret(secret: &str) -> ServiceResult<()> {
    let ok = !secret.is_empty()
        && secret.len() <= 255
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'=' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::InvalidParam("Invalid client_secret".into()))
    }
}

/// The address as stored: lower-cased, checked for one `@` between non-empty parts and no
/// whitespace or control characters.
pub fn canonical_email(email: &str) -> ServiceResult<String> {
    let email = email.trim();
    let valid = email.len() <= MAX_ADDRESS_BYTES
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(ServiceError::InvalidParam(
            "Not a valid e-mail address".into(),
        ));
    }
    Ok(email.to_lowercase())
}

/// Percent-encodes a query value (client secrets are URL-safe already; this is for safety).
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
