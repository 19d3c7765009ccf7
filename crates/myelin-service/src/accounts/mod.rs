//! Accounts: registration, login and tokens, passwords, devices, deactivation.

use argon2::{password_hash::SaltString, Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use myelin_storage::{DeviceRecord, NewSession, NewUser, NewUserWithThreepid};
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use serde_json::Value;

mod appservice;
pub(crate) mod guest;
pub mod login_token;
pub mod moderation;
mod openid;
pub(crate) mod token;
mod token_cache;
pub use appservice::APPSERVICE_DEVICE;
pub mod uia;

use std::sync::Arc;

use crate::{
    Context, E2ee, Memberships, RateAction, RegistrationMode, ServiceError, ServiceResult,
};
use token::{hash_token, random_alnum, random_secret};

/// How many password hashes or verifications run at once.
pub const PASSWORD_HASHES_AT_ONCE: usize = 2;

/// Accounts: registration (with UIA), login and tokens, passwords, devices, deactivation,
/// OpenID tokens.
pub struct Accounts {
    pub(crate) ctx: Arc<Context>,
    pub(crate) e2ee: Arc<E2ee>,
    pub(crate) membership: Arc<Memberships>,
    /// Pushers of other devices go when the password changes.
    pub(crate) push: Arc<crate::Push>,
    pub(crate) uia: uia::UiaSessions,
    pub(crate) openid: openid::OpenIdTokens,
    pub(crate) login_tokens: login_token::LoginTokens,
    /// Bounds concurrent argon2 work (see `hash_password`).
    pub(crate) password_permits: tokio::sync::Semaphore,
    /// Resolved access tokens, so that a request does not query storage for its token; every
    /// change to a user's sessions or account flags goes through `forget_tokens`.
    tokens: token_cache::TokenCache,
}

impl Accounts {
    pub fn new(
        ctx: Arc<Context>,
        e2ee: Arc<E2ee>,
        membership: Arc<Memberships>,
        push: Arc<crate::Push>,
    ) -> Accounts {
        Accounts {
            ctx,
            e2ee,
            membership,
            push,
            uia: uia::UiaSessions::default(),
            openid: openid::OpenIdTokens::default(),
            login_tokens: login_token::LoginTokens::default(),
            password_permits: tokio::sync::Semaphore::new(PASSWORD_HASHES_AT_ONCE),
            tokens: token_cache::TokenCache::new(token_cache::DEFAULT_MAX_TOKENS),
        }
    }
}

/// An authenticated request's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authed {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// A guest account: the HTTP edge lets it call only the spec's guest endpoints.
    pub is_guest: bool,
    /// Suspended by an administrator: the HTTP edge refuses the actions suspension forbids.
    pub suspended: bool,
    /// The application service whose `as_token` authenticated the request (the user is its
    /// sender or a user of its namespace it masquerades as).
    pub appservice: Option<String>,
}

/// Tokens handed to a client after login or registration.
#[derive(Debug, Clone)]
pub struct LoginSession {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct RegisterRequest {
    pub username: Option<String>,
    pub password: Option<String>,
    pub device_id: Option<String>,
    pub initial_device_display_name: Option<String>,
    pub inhibit_login: bool,
    pub refresh_token: bool,
    pub auth: Option<Value>,
    /// A guest's access token: the registration upgrades that guest instead of creating a user.
    pub guest_access_token: Option<String>,
}

#[derive(Debug, Clone)]
pub enum RegisterOutcome {
    LoggedIn(LoginSession),
    NoLogin(OwnedUserId),
}

const MAX_PASSWORD_BYTES: usize = 512;

impl Accounts {
    /// `@local:server` for a bare localpart; full IDs are returned as given.
    pub fn qualify_user(&self, name: &str) -> String {
        if name.starts_with('@') {
            name.to_owned()
        } else {
            format!("@{}:{}", name, self.ctx.config.server_name)
        }
    }

    /// Checks a requested localpart against the spec's rules and returns the user ID.
    pub fn user_id_for_localpart(&self, localpart: &str) -> ServiceResult<OwnedUserId> {
        let valid_chars = localpart.bytes().all(
            |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'),
        );
        if localpart.is_empty() || !valid_chars {
            return Err(ServiceError::InvalidUsername(
                "User ID may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'".into(),
            ));
        }
        if localpart.starts_with('_') {
            return Err(ServiceError::InvalidUsername(
                "User IDs starting with '_' are reserved".into(),
            ));
        }
        let full = format!("@{}:{}", localpart, self.ctx.config.server_name);
        if full.len() > 255 {
            return Err(ServiceError::InvalidUsername(
                "User ID is longer than 255 characters".into(),
            ));
        }
        OwnedUserId::try_from(full).map_err(|e| ServiceError::InvalidUsername(e.to_string()))
    }

    /// `GET /register/available`: valid and not taken.
    pub async fn check_username_available(&self, localpart: &str) -> ServiceResult<OwnedUserId> {
        let user_id = self.user_id_for_localpart(localpart)?;
        self.check_exclusive_user(&user_id, None)?;
        if self.ctx.storage.get_user(&user_id).await?.is_some() {
            return Err(ServiceError::UserInUse);
        }
        Ok(user_id)
    }

    /// `POST /register`, with UIA according to the registration mode.
    pub async fn register(&self, req: RegisterRequest) -> ServiceResult<RegisterOutcome> {
        let flows: &[&[&str]] = match self.ctx.config.registration {
            RegistrationMode::Closed => {
                return Err(ServiceError::Forbidden("Registration is disabled".into()))
            }
            RegistrationMode::Open if self.ctx.config.require_email => &[&[uia::EMAIL_IDENTITY]],
            RegistrationMode::Open => &[&[uia::DUMMY]],
            RegistrationMode::Token if self.ctx.config.require_email => {
                &[&[uia::REGISTRATION_TOKEN, uia::EMAIL_IDENTITY]]
            }
            RegistrationMode::Token => &[&[uia::REGISTRATION_TOKEN]],
        };
        let upgrading = match &req.guest_access_token {
            Some(token) => Some(
                self.guest_to_upgrade(token, req.username.as_deref())
                    .await?,
            ),
            None => None,
        };
        let user_id = match (&upgrading, &req.username) {
            (Some(guest), _) => guest.clone(),
            (None, Some(name)) => {
                let name = name.to_lowercase();
                if guest::reserved_for_guests(&name) {
                    return Err(ServiceError::InvalidUsername(
                        "Numeric user IDs are reserved for guest users".into(),
                    ));
                }
                self.check_username_available(&name).await?
            }
            (None, None) => {
                self.check_username_available(&random_alnum(12).to_lowercase())
                    .await?
            }
        };
        if upgrading.is_some() && req.password.is_none() {
            return Err(ServiceError::InvalidParam(
                "Upgrading a guest account needs a password".into(),
            ));
        }
        if req
            .password
            .as_ref()
            .is_some_and(|p| p.len() > MAX_PASSWORD_BYTES)
        {
            return Err(ServiceError::InvalidParam("Password is too long".into()));
        }
        self.check_uia(req.auth.as_ref(), flows, None).await?;

        let password_hash = match req.password.as_deref() {
            Some(p) => Some(self.hash_password(p).await?),
            None => None,
        };
        let created = match (&upgrading, password_hash.as_deref()) {
            (Some(guest), Some(hash)) => {
                let upgraded = self.ctx.storage.upgrade_guest(guest, hash).await?;
                // The guest's tokens now belong to a full account.
                self.forget_tokens(guest);
                upgraded
            }
            // The account and its proved address are written together, so two registrations
            // with one address cannot both get it, nor leave an account without one.
            _ if self.ctx.config.require_email => {
                self.create_user_with_email(&user_id, password_hash, req.auth.as_ref())
                    .await?
            }
            _ => self.create_registered_user(&user_id, password_hash).await?,
        };
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

    /// Stores a newly registered user with the address the registration's
    /// `m.login.email.identity` stage proved, in one write; `false` if the ID was taken
    /// meanwhile, `ThreepidInUse` if the address was (and then no account is made).
    async fn create_user_with_email(
        &self,
        user_id: &UserId,
        password_hash: Option<String>,
        auth: Option<&Value>,
    ) -> ServiceResult<bool> {
        let creds = auth
            .and_then(crate::threepids::ThreepidCreds::from_auth)
            .ok_or_else(|| ServiceError::BadJson("auth.threepid_creds is required".into()))?;
        let session = self
            .ctx
            .storage
            .threepid_session(&creds.sid, &creds.client_secret)
            .await?
            .filter(|s| s.validated_ms.is_some())
            .ok_or_else(|| ServiceError::ThreepidAuthFailed("E-mail not validated".into()))?;
        let now = self.ctx.now_ms();
        let threepid = myelin_storage::UserThreepid {
            user_id: user_id.to_owned(),
            medium: "email".into(),
            address: session.address,
            validated_ms: session.validated_ms.unwrap_or(now),
            added_ms: now,
        };
        let user = self.new_registered_user(user_id, password_hash);
        match self
            .ctx
            .storage
            .create_user_with_threepid(user, threepid)
            .await?
        {
            NewUserWithThreepid::Created => Ok(true),
            NewUserWithThreepid::UserInUse => Ok(false),
            NewUserWithThreepid::ThreepidInUse => Err(ServiceError::ThreepidInUse(
                "This e-mail address is already in use".into(),
            )),
        }
    }

    /// Stores a newly registered user; `false` if the ID was taken meanwhile.
    async fn create_registered_user(
        &self,
        user_id: &UserId,
        password_hash: Option<String>,
    ) -> ServiceResult<bool> {
        let user = self.new_registered_user(user_id, password_hash);
        Ok(self.ctx.storage.create_user(user).await?)
    }

    /// The account a registration makes: not an administrator, named after its localpart.
    fn new_registered_user(&self, user_id: &UserId, password_hash: Option<String>) -> NewUser {
        NewUser {
            user_id: user_id.to_owned(),
            password_hash,
            is_admin: false,
            created_ms: self.ctx.now_ms(),
            displayname: Some(user_id.localpart().to_owned()),
            is_guest: false,
        }
    }

    /// Creates an account without UIA (the admin CLI).
    pub async fn create_user(
        &self,
        localpart: &str,
        password: Option<&str>,
        is_admin: bool,
    ) -> ServiceResult<OwnedUserId> {
        let user_id = self.check_username_available(localpart).await?;
        let password_hash = match password {
            Some(p) => Some(self.hash_password(p).await?),
            None => None,
        };
        let user = NewUser {
            user_id: user_id.clone(),
            password_hash,
            is_admin,
            created_ms: self.ctx.now_ms(),
            displayname: Some(localpart.to_owned()),
            is_guest: false,
        };
        if !self.ctx.storage.create_user(user).await? {
            return Err(ServiceError::UserInUse);
        }
        Ok(user_id)
    }

    /// `POST /login` with `m.login.password`.
    pub async fn login_password(
        &self,
        user: &str,
        password: &str,
        device_id: Option<&str>,
        display_name: Option<&str>,
        refresh: bool,
    ) -> ServiceResult<LoginSession> {
        let user_id = OwnedUserId::try_from(self.qualify_user(&user.to_lowercase()))
            .map_err(|_| ServiceError::Forbidden("Invalid username or password".into()))?;
        if user_id.server_name() != self.ctx.config.server_name {
            return Err(ServiceError::Forbidden(
                "Invalid username or password".into(),
            ));
        }
        let record = self.ctx.storage.get_user(&user_id).await?;
        if record.as_ref().is_some_and(|r| r.deactivated) {
            return Err(ServiceError::UserDeactivated);
        }
        if record.as_ref().is_some_and(|r| r.locked) {
            return Err(ServiceError::UserLocked);
        }
        // Guesses at one account are throttled wherever they come from (the per-IP login limit
        // is checked by the caller); refused while the budget is used up, even when right.
        self.check_password_budget(user_id.as_str())?;
        if !self.verify_password(&user_id, password).await? {
            self.spend_password_budget(user_id.as_str());
            return Err(ServiceError::Forbidden(
                "Invalid username or password".into(),
            ));
        }
        self.start_session(&user_id, device_id, display_name, refresh)
            .await
    }

    /// Whether `password` is the user's password (false for unknown or password-less users).
    pub async fn verify_password(&self, user_id: &UserId, password: &str) -> ServiceResult<bool> {
        let Some(user) = self.ctx.storage.get_user(user_id).await? else {
            return Ok(false);
        };
        let Some(hash) = user.password_hash.filter(|_| !user.deactivated) else {
            return Ok(false);
        };
        let password = password.to_owned();
        let _permit = self
            .password_permits
            .acquire()
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// An argon2id hash of `password`. Each hash takes ~19 MiB and real CPU time, so at most
    /// [`crate::PASSWORD_HASHES_AT_ONCE`] run at a time (verifications included): a burst of
    /// registrations or logins queues instead of taking all memory and cores.
    async fn hash_password(&self, password: &str) -> ServiceResult<String> {
        let password = password.to_owned();
        let _permit = self
            .password_permits
            .acquire()
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    pub(crate) async fn start_session(
        &self,
        user_id: &UserId,
        device_id: Option<&str>,
        display_name: Option<&str>,
        refresh: bool,
    ) -> ServiceResult<LoginSession> {
        let device_id: OwnedDeviceId = device_id
            .map(Into::into)
            .unwrap_or_else(|| random_alnum(10).into());
        let access_token = random_secret("myl_");
        let refresh_token = refresh.then(|| random_secret("mylr_"));
        let now = self.ctx.now_ms();
        let expires_in_ms = refresh.then_some(self.ctx.config.refreshable_token_lifetime_ms);
        self.ctx
            .storage
            .create_session(NewSession {
                user_id: user_id.to_owned(),
                device_id: device_id.clone(),
                device_display_name: display_name.map(str::to_owned),
                access_token_hash: hash_token(&access_token),
                refresh_token_hash: refresh_token.as_deref().map(hash_token),
                expires_at_ms: expires_in_ms.map(|l| now + l),
                created_ms: now,
            })
            .await?;
        Ok(LoginSession {
            user_id: user_id.to_owned(),
            device_id,
            access_token,
            refresh_token,
            expires_in_ms,
        })
    }

    /// Resolves an access token: from the token cache, else from storage (then cached).
    pub async fn authenticate(&self, access_token: &str) -> ServiceResult<Authed> {
        let hash = hash_token(access_token);
        let owner = match self.tokens.get(&hash) {
            Some(owner) => owner,
            None => {
                let epoch = self.tokens.epoch();
                let owner = self
                    .ctx
                    .storage
                    .find_access_token(&hash)
                    .await?
                    .ok_or(ServiceError::UnknownToken { soft_logout: false })?;
                self.tokens.insert(hash, owner.clone(), epoch);
                owner
            }
        };
        // Checked at every use, cached or not: the entry keeps the expiry.
        if owner.expires_at_ms.is_some_and(|t| t <= self.ctx.now_ms()) {
            return Err(ServiceError::UnknownToken { soft_logout: true });
        }
        if owner.locked {
            return Err(ServiceError::UserLocked);
        }
        Ok(Authed {
            user_id: owner.user_id,
            device_id: owner.device_id,
            is_guest: owner.is_guest,
            suspended: owner.suspended,
            appservice: None,
        })
    }

    /// Forgets the cached tokens of `user_id`: after any stored change to its sessions or to
    /// the account flags a token resolves to (guest, locked, suspended).
    pub(crate) fn forget_tokens(&self, user_id: &UserId) {
        self.tokens.forget_user(user_id);
    }

    /// `POST /refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> ServiceResult<LoginSession> {
        let access_token = random_secret("myl_");
        let new_refresh = random_secret("mylr_");
        let lifetime = self.ctx.config.refreshable_token_lifetime_ms;
        let owner = self
            .ctx
            .storage
            .refresh_session(
                &hash_token(refresh_token),
                &hash_token(&access_token),
                &hash_token(&new_refresh),
                Some(self.ctx.now_ms() + lifetime),
            )
            .await?
            .ok_or(ServiceError::UnknownToken { soft_logout: false })?;
        // The old access token is gone from storage.
        self.forget_tokens(&owner.user_id);
        Ok(LoginSession {
            user_id: owner.user_id,
            device_id: owner.device_id,
            access_token,
            refresh_token: Some(new_refresh),
            expires_in_ms: Some(lifetime),
        })
    }

    /// `POST /logout`: the device and its tokens go.
    pub async fn logout(&self, authed: &Authed) -> ServiceResult<()> {
        self.delete_devices(&authed.user_id, std::slice::from_ref(&authed.device_id))
            .await
    }

    /// `POST /logout/all`.
    pub async fn logout_all(&self, user_id: &UserId) -> ServiceResult<()> {
        let before = self.ctx.storage.list_devices(user_id).await?;
        self.ctx.storage.delete_all_devices(user_id, None).await?;
        self.forget_tokens(user_id);
        self.announce_removed_devices(user_id, before).await
    }

    /// `POST /account/password` (after UIA). Other devices are logged out unless asked not to.
    pub async fn change_password(
        &self,
        authed: &Authed,
        new_password: &str,
        logout_devices: bool,
    ) -> ServiceResult<()> {
        self.set_password(&authed.user_id, new_password).await?;
        // Notifications for the other sessions stop with the old password, logged out or not.
        self.push
            .remove_other_pushers(&authed.user_id, &authed.device_id)
            .await?;
        if logout_devices {
            let before = self.ctx.storage.list_devices(&authed.user_id).await?;
            self.ctx
                .storage
                .delete_all_devices(&authed.user_id, Some(authed.device_id.as_str()))
                .await?;
            self.forget_tokens(&authed.user_id);
            self.announce_removed_devices(&authed.user_id, before)
                .await?;
        }
        Ok(())
    }

    /// A password reset proved by e-mail: the new password, and (by default) every device
    /// logged out, since whoever forgot the password may not hold them any more.
    pub async fn reset_password(
        &self,
        user_id: &UserId,
        new_password: &str,
        logout_devices: bool,
    ) -> ServiceResult<()> {
        self.set_password(user_id, new_password).await?;
        if logout_devices {
            let before = self.ctx.storage.list_devices(user_id).await?;
            self.ctx.storage.delete_all_devices(user_id, None).await?;
            self.forget_tokens(user_id);
            self.announce_removed_devices(user_id, before).await?;
        }
        Ok(())
    }

    /// Sets a password without any check (the admin CLI and `change_password`).
    pub async fn set_password(&self, user_id: &UserId, new_password: &str) -> ServiceResult<()> {
        if new_password.len() > MAX_PASSWORD_BYTES {
            return Err(ServiceError::InvalidParam("Password is too long".into()));
        }
        if self.ctx.storage.get_user(user_id).await?.is_none() {
            return Err(ServiceError::NotFound(format!("Unknown user {user_id}")));
        }
        let hash = self.hash_password(new_password).await?;
        Ok(self.ctx.storage.set_password_hash(user_id, &hash).await?)
    }

    /// `POST /account/deactivate` (after UIA): leaves every room, then locks the account (and
    /// marks it erased, when `erase`: its profile is cleared first, in the rooms too, and its
    /// events are then served redacted, see `rooms/visibility.rs` and
    /// `federation/read/access.rs`).
    pub async fn deactivate(&self, user_id: &UserId, erase: bool) -> ServiceResult<()> {
        if erase {
            self.membership.erase_profile(user_id).await?;
        }
        for m in self.ctx.storage.memberships_of_user(user_id).await? {
            if m.membership == "join" || m.membership == "invite" || m.membership == "knock" {
                // A failure to leave one room must not keep the account alive.
                if let Err(e) = self.membership.leave_room(user_id, &m.room_id, None).await {
                    tracing::warn!(%user_id, room_id = %m.room_id, error = %e, "leave during deactivation failed");
                }
            }
        }
        self.ctx.storage.deactivate_user(user_id, erase).await?;
        self.forget_tokens(user_id);
        Ok(())
    }

    /// `GET /admin/whois/{userId}`: a user's devices and where they were last seen, for the
    /// server's administrators and the user themself.
    pub async fn whois(
        &self,
        requester: &UserId,
        user_id: &UserId,
    ) -> ServiceResult<Vec<DeviceRecord>> {
        let is_admin = self
            .ctx
            .storage
            .get_user(requester)
            .await?
            .is_some_and(|u| u.is_admin);
        if requester != user_id && !is_admin {
            return Err(ServiceError::Forbidden(
                "Only administrators may look up other users".into(),
            ));
        }
        if user_id.server_name() != self.ctx.server_name()
            || self.ctx.storage.get_user(user_id).await?.is_none()
        {
            return Err(ServiceError::NotFound("User not found".into()));
        }
        Ok(self.ctx.storage.list_devices(user_id).await?)
    }

    pub async fn list_devices(&self, user_id: &UserId) -> ServiceResult<Vec<DeviceRecord>> {
        Ok(self.ctx.storage.list_devices(user_id).await?)
    }

    pub async fn get_device(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> ServiceResult<DeviceRecord> {
        self.ctx
            .storage
            .get_device(user_id, device_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("Unknown device".into()))
    }

    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        name: Option<&str>,
    ) -> ServiceResult<()> {
        if self
            .ctx
            .storage
            .set_device_display_name(user_id, device_id, name)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound("Unknown device".into()))
        }
    }

    pub async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
    ) -> ServiceResult<()> {
        let before = self.ctx.storage.list_devices(user_id).await?;
        self.ctx.storage.delete_devices(user_id, device_ids).await?;
        self.forget_tokens(user_id);
        self.announce_removed_devices(user_id, before).await
    }

    /// Tells who needs to know about the devices of `before` that are gone now (their keys
    /// went with them, in the deleting transaction).
    async fn announce_removed_devices(
        &self,
        user_id: &UserId,
        before: Vec<DeviceRecord>,
    ) -> ServiceResult<()> {
        let remaining = self.ctx.storage.list_devices(user_id).await?;
        let pos = self.ctx.storage.current_stream_pos().await?;
        for gone in before
            .iter()
            .filter(|d| !remaining.iter().any(|r| r.device_id == d.device_id))
        {
            self.e2ee
                .announce_device_change(user_id, &gone.device_id, true, pos)
                .await?;
        }
        Ok(())
    }
}

impl Accounts {
    /// Refuses with `M_LIMIT_EXCEEDED` while too many wrong passwords were tried for `user_id`
    /// recently; a right password is refused too, or the limit would be an oracle.
    pub(crate) fn check_password_budget(&self, user_id: &str) -> ServiceResult<()> {
        self.ctx
            .rate_limiter
            .peek(RateAction::FailedPassword, user_id, self.ctx.now_ms())
            .map_err(|retry_after_ms| ServiceError::LimitExceeded { retry_after_ms })
    }
}

impl Accounts {
    /// Counts one wrong password tried for `user_id` against [`RateAction::FailedPassword`].
    pub(crate) fn spend_password_budget(&self, user_id: &str) {
        // An empty bucket stays empty; the next attempt is refused by the peek.
        let _ = self
            .ctx
            .rate_limiter
            .check(RateAction::FailedPassword, user_id, self.ctx.now_ms());
    }
}

#[cfg(test)]
mod tests;
