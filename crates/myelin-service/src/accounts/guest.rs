//! Guest accounts: `register?kind=guest` (no password; numeric user IDs, as Synapse makes them,
//! which ordinary registration therefore refuses) and the guest's later upgrade to a full
//! account through `POST /register` with `guest_access_token`.

use myelin_storage::NewUser;
use rand::Rng;
use ruma::OwnedUserId;

use super::{Accounts, LoginSession};
use crate::{ServiceError, ServiceResult};

/// How many random guest IDs are tried before giving up (a collision needs ~10^5 guests).
const GUEST_ID_ATTEMPTS: usize = 5;

impl Accounts {
    /// `POST /register?kind=guest`: a new guest, logged in on a new device.
    pub async fn register_guest(
        &self,
        initial_device_display_name: Option<&str>,
    ) -> ServiceResult<LoginSession> {
        if !self.ctx.config.allow_guests {
            return Err(ServiceError::GuestAccessForbidden(
                "Guest access is disabled".into(),
            ));
        }
        for _ in 0..GUEST_ID_ATTEMPTS {
            let localpart = rand::thread_rng()
                .gen_range(1_000_000_000u64..10_000_000_000)
                .to_string();
            let user_id = self.user_id_for_localpart(&localpart)?;
            let created = self
                .ctx
                .storage
                .create_user(NewUser {
                    user_id: user_id.clone(),
                    password_hash: None,
                    is_admin: false,
                    created_ms: self.ctx.now_ms(),
                    displayname: None,
                    is_guest: true,
                })
                .await?;
            if created {
                return self
                    .start_session(&user_id, None, initial_device_display_name, false)
                    .await;
            }
        }
        Err(ServiceError::Internal("no free guest user ID".into()))
    }

    /// The guest behind `guest_access_token`, which a registration upgrades in place: the
    /// account keeps its user ID, so a `username` must be the guest's own.
    pub(crate) async fn guest_to_upgrade(
        &self,
        guest_access_token: &str,
        username: Option<&str>,
    ) -> ServiceResult<OwnedUserId> {
        let authed = self.authenticate(guest_access_token).await?;
        if !authed.is_guest {
            return Err(ServiceError::Forbidden(
                "guest_access_token is not a guest's access token".into(),
            ));
        }
        if username.is_some_and(|u| u.to_lowercase() != authed.user_id.localpart()) {
            return Err(ServiceError::InvalidParam(
                "An upgraded guest keeps its user ID; username must be the guest's".into(),
            ));
        }
        Ok(authed.user_id)
    }
}

/// Numeric localparts are guests' (ordinary registration refuses them, as Synapse does).
pub(crate) fn reserved_for_guests(localpart: &str) -> bool {
    !localpart.is_empty() && localpart.bytes().all(|b| b.is_ascii_digit())
}
