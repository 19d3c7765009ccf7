//! Application services in accounts: `as_token` authentication with user and device masquerading, registration and login of appservice users, and the exclusive user namespaces.

use myelin_storage::NewUser;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};

use super::{Accounts, Authed, LoginSession, RegisterOutcome, RegisterRequest};
use crate::{ServiceError, ServiceResult};

/// The device an appservice request acts as when it names none (appservice users need no
/// device; transaction IDs are kept per user and device).
pub const APPSERVICE_DEVICE: &str = "APPSERVICE";

impl Accounts {
    /// Resolves a token that may be an appservice's `as_token`: the appservice's sender, or the
    /// `user_id` it masquerades as (in its namespace, else `M_FORBIDDEN`), on the device it names
    /// (MSC3202, which must exist) or [`APPSERVICE_DEVICE`]. Other tokens are access tokens.
    pub async fn authenticate_request(
        &self,
        token: &str,
        user_id: Option<&str>,
        device_id: Option<&str>,
    ) -> ServiceResult<Authed> {
        let Some(appservice) = self.ctx.appservices.by_as_token(token) else {
            return self.authenticate(token).await;
        };
        let mut suspended = false;
        let user_id = match user_id {
            None => appservice.sender.clone(),
            Some(raw) => {
                let user = OwnedUserId::try_from(raw)
                    .map_err(|_| ServiceError::InvalidParam("Invalid user_id".into()))?;
                if user.server_name() != self.ctx.server_name()
                    || !appservice.is_user_in_namespace(&user)
                {
                    return Err(ServiceError::Forbidden(
                        "Application service cannot masquerade as this user".into(),
                    ));
                }
                // Its own sender needs no account; other users must have been registered. A
                // suspended puppet stays suspended when its appservice acts for it.
                let record = self.ctx.storage.get_user(&user).await?;
                if user != appservice.sender && record.is_none() {
                    return Err(ServiceError::Forbidden(
                        "Application service has not registered this user".into(),
                    ));
                }
                suspended = record.is_some_and(|r| r.suspended);
                user
            }
        };
        let device_id: OwnedDeviceId = match device_id {
            None => APPSERVICE_DEVICE.into(),
            Some(device) => {
                let known = self.ctx.storage.get_device(&user_id, device).await?;
                if known.is_none() {
                    return Err(ServiceError::Forbidden(
                        "Application service has no device with this ID for the user".into(),
                    ));
                }
                device.into()
            }
        };
        Ok(Authed {
            user_id,
            device_id,
            is_guest: false,
            suspended,
            appservice: Some(appservice.id.clone()),
        })
    }

    /// Refuses an ID in an appservice's exclusive namespace to anyone but that appservice.
    pub(crate) fn check_exclusive_user(
        &self,
        user_id: &UserId,
        appservice: Option<&str>,
    ) -> ServiceResult<()> {
        match self.ctx.appservices.exclusive_user_owner(user_id) {
            Some(owner) if appservice != Some(owner.id.as_str()) => Err(ServiceError::Exclusive(
                "This user ID is reserved by an application service".into(),
            )),
            _ => Ok(()),
        }
    }

    /// `POST /register` with `type: m.login.application_service`: no UIA, the user must be in
    /// the appservice's namespace, and `inhibit_login` is honoured.
    pub async fn register_appservice_user(
        &self,
        appservice_id: &str,
        req: RegisterRequest,
    ) -> ServiceResult<RegisterOutcome> {
        let appservice = self
            .ctx
            .appservices
            .by_id(appservice_id)
            .ok_or(ServiceError::UnknownToken { soft_logout: false })?;
        let name = req
            .username
            .clone()
            .ok_or_else(|| ServiceError::InvalidParam("username is required".into()))?;
        let user_id = self.appservice_user_id(&name)?;
        if !appservice.is_user_in_namespace(&user_id) {
            return Err(ServiceError::Exclusive(
                "User ID is not in the application service's namespace".into(),
            ));
        }
        let created = self
            .ctx
            .storage
            .create_user(NewUser {
                user_id: user_id.clone(),
                password_hash: None,
                is_admin: false,
                is_guest: false,
                created_ms: self.ctx.now_ms(),
                displayname: Some(user_id.localpart().to_owned()),
            })
            .await?;
        if !created {
            return Err(ServiceError::UserInUse);
        }
        if req.inhibit_login {
            return Ok(RegisterOutcome::NoLogin(user_id));
        }
        let session = self
            .start_session(
                &user_id,
                req.device_id.as_deref(),
                req.initial_device_display_name.as_deref(),
                req.refresh_token,
            )
            .await?;
        Ok(RegisterOutcome::LoggedIn(session))
    }

    /// `POST /login` with `m.login.application_service`: a session for a user of the
    /// appservice's namespace (MSC4190-less bridges log their puppets in this way).
    pub async fn login_appservice(
        &self,
        appservice_id: Option<&str>,
        user: &str,
        device_id: Option<&str>,
        display_name: Option<&str>,
        refresh: bool,
    ) -> ServiceResult<LoginSession> {
        let appservice = appservice_id
            .and_then(|id| self.ctx.appservices.by_id(id))
            .ok_or(ServiceError::UnknownToken { soft_logout: false })?;
        let user_id = OwnedUserId::try_from(self.qualify_user(&user.to_lowercase()))
            .map_err(|_| ServiceError::InvalidParam("Invalid user".into()))?;
        if !appservice.is_user_in_namespace(&user_id) {
            return Err(ServiceError::Exclusive(
                "User is not in the application service's namespace".into(),
            ));
        }
        let record = self.ctx.storage.get_user(&user_id).await?;
        match record {
            None => return Err(ServiceError::Forbidden("Unknown user".into())),
            Some(r) if r.deactivated => return Err(ServiceError::UserDeactivated),
            Some(_) => {}
        }
        self.start_session(&user_id, device_id, display_name, refresh)
            .await
    }

    /// A localpart or full user ID of this server, as appservices name their users (they may
    /// use the `_` prefix and upper-case-free IDs the spec allows; historical characters are
    /// refused).
    fn appservice_user_id(&self, name: &str) -> ServiceResult<OwnedUserId> {
        let full = self.qualify_user(&name.to_lowercase());
        let user_id = OwnedUserId::try_from(full)
            .map_err(|e| ServiceError::InvalidUsername(e.to_string()))?;
        let valid = user_id.localpart().bytes().all(
            |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'),
        );
        if !valid || user_id.server_name() != self.ctx.server_name() {
            return Err(ServiceError::InvalidUsername(
                "User ID may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'".into(),
            ));
        }
        Ok(user_id)
    }
}

impl Accounts {
    /// Whether the request is an appservice's with MSC4190 (device management through
    /// `/devices`, no user-interactive auth to delete them).
    pub fn manages_devices(&self, authed: &Authed) -> bool {
        authed
            .appservice
            .as_deref()
            .and_then(|id| self.ctx.appservices.by_id(id))
            .is_some_and(|a| a.msc4190)
    }

    /// `PUT /devices/{deviceId}` by an MSC4190 appservice: creates the device of its user if
    /// it does not exist (no access token: the appservice acts for it with `device_id`), else
    /// renames it.
    pub async fn appservice_put_device(
        &self,
        authed: &Authed,
        device_id: &str,
        name: Option<&str>,
    ) -> ServiceResult<()> {
        if !self.manages_devices(authed) {
            return Err(ServiceError::Forbidden(
                "Only appservices with MSC4190 create devices this way".into(),
            ));
        }
        if device_id.is_empty() || device_id.len() > 255 {
            return Err(ServiceError::InvalidParam("Invalid device ID".into()));
        }
        let now = self.ctx.now_ms();
        self.ctx
            .storage
            .put_device(&authed.user_id, device_id, name, now)
            .await?;
        Ok(())
    }
}
