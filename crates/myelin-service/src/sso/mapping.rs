//! From a provider's claims to a Matrix account: the subject looked up in `user_external_ids`,
//! or, on a first login, a new account whose localpart comes from the configured claim and
//! which is mapped to the subject in the same transaction.

use myelin_storage::{NewUser, NewUserWithExternalId};
use ruma::OwnedUserId;
use serde_json::Value;

use super::{config::OidcProviderConfig, oidc::Claims, Sso, SsoFailure};
use crate::accounts::guest::reserved_for_guests;
use crate::ServiceError;

/// Localparts tried for a new account: the claim's, then with 1, 2, … appended (as Synapse's
/// default mapping does when a localpart is taken).
const MAX_ATTEMPTS: u32 = 1000;

/// A claim as a string: strings as they are, numbers written out (some providers number
/// their subjects).
fn claim_string(claims: &Claims, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The localpart a claim makes: lower case, every character outside the spec's set escaped as
/// `=XX` (its UTF-8 bytes in hex), a leading `_` (reserved) escaped too — as Synapse maps
/// usernames, so an account moved between the two keeps its ID.
pub(crate) fn localpart_from(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("={b:02x}"));
            }
        }
    }
    match out.strip_prefix('_') {
        Some(rest) => format!("=5f{rest}"),
        None => out,
    }
}

impl Sso {
    /// The account the provider's user logs in as, made on the first login.
    pub(crate) async fn user_for_claims(
        &self,
        provider: &OidcProviderConfig,
        claims: &Claims,
    ) -> Result<OwnedUserId, SsoFailure> {
        let subject = claim_string(claims, &provider.subject_claim).ok_or_else(|| {
            SsoFailure::provider(format!(
                "the provider did not name the user (claim {:?})",
                provider.subject_claim
            ))
        })?;
        let storage = &self.ctx.storage;
        if let Some(user) = storage
            .user_for_external_id(&provider.idp_id, &subject)
            .await?
        {
            return Ok(user);
        }
        let name = claim_string(claims, &provider.localpart_claim).ok_or_else(|| {
            SsoFailure::provider(format!(
                "the provider gave no {:?} to make a user ID from",
                provider.localpart_claim
            ))
        })?;
        let base = localpart_from(&name);
        if reserved_for_guests(&base) {
            return Err(SsoFailure::mapping(
                "Numeric user IDs are reserved for guest users",
            ));
        }
        let display_name = provider
            .display_name_claim
            .as_deref()
            .and_then(|claim| claim_string(claims, claim));
        for attempt in 0..MAX_ATTEMPTS {
            let localpart = match attempt {
                0 => base.clone(),
                n => format!("{base}{n}"),
            };
            let user_id = self
                .accounts
                .user_id_for_localpart(&localpart)
                .map_err(|e| SsoFailure::mapping(format!("cannot make a user ID: {e}")))?;
            // A name an application service holds exclusively counts as taken.
            if self.accounts.check_exclusive_user(&user_id, None).is_err() {
                continue;
            }
            let user = NewUser {
                user_id: user_id.clone(),
                password_hash: None,
                is_admin: false,
                created_ms: self.ctx.now_ms(),
                displayname: Some(display_name.clone().unwrap_or(localpart)),
                is_guest: false,
            };
            match storage
                .create_user_with_external_id(user, &provider.idp_id, &subject)
                .await?
            {
                NewUserWithExternalId::Created => {
                    tracing::info!(%user_id, idp = %provider.idp_id, "account made by SSO login");
                    return Ok(user_id);
                }
                NewUserWithExternalId::UserInUse => continue,
                // A login of the same user finished first: use its account.
                NewUserWithExternalId::ExternalIdInUse => {
                    return storage
                        .user_for_external_id(&provider.idp_id, &subject)
                        .await?
                        .ok_or_else(|| SsoFailure::internal("the external ID vanished"));
                }
            }
        }
        Err(SsoFailure::mapping(format!(
            "every user ID made from {name:?} is taken"
        )))
    }
}

impl From<myelin_storage::StorageError> for SsoFailure {
    fn from(e: myelin_storage::StorageError) -> Self {
        SsoFailure::internal(e.to_string())
    }
}

impl From<ServiceError> for SsoFailure {
    fn from(e: ServiceError) -> Self {
        SsoFailure::internal(e.to_string())
    }
}
