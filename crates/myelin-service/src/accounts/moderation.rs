//! Account moderation by server administrators (spec v1.18, "Server administration"): locking
//! (no request of the account is served; `M_USER_LOCKED`) and suspending (the account may read
//! and leave, not act; `M_USER_SUSPENDED`, enforced where requests are authenticated).

use ruma::UserId;

use super::Accounts;
use crate::{ServiceError, ServiceResult};

/// Which moderation flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderation {
    Lock,
    Suspend,
}

impl Accounts {
    /// Whether the user is a server administrator.
    pub async fn is_admin(&self, user_id: &UserId) -> ServiceResult<bool> {
        Ok(self
            .ctx
            .storage
            .get_user(user_id)
            .await?
            .is_some_and(|u| u.is_admin && !u.deactivated))
    }

    /// `GET /admin/lock|suspend/{userId}`: whether the flag is set.
    pub async fn moderation_status(
        &self,
        admin: &UserId,
        target: &UserId,
        which: Moderation,
    ) -> ServiceResult<bool> {
        let record = self.moderation_target(admin, target).await?;
        Ok(match which {
            Moderation::Lock => record.locked,
            Moderation::Suspend => record.suspended,
        })
    }

    /// `PUT /admin/lock|suspend/{userId}`: sets the flag; never on oneself or another
    /// administrator.
    pub async fn set_moderation(
        &self,
        admin: &UserId,
        target: &UserId,
        which: Moderation,
        value: bool,
    ) -> ServiceResult<bool> {
        let record = self.moderation_target(admin, target).await?;
        if admin == target || record.is_admin {
            return Err(ServiceError::Forbidden(
                "Administrators cannot be locked or suspended".into(),
            ));
        }
        let storage = &self.ctx.storage;
        match which {
            Moderation::Lock => storage.set_locked(target, value).await?,
            Moderation::Suspend => storage.set_suspended(target, value).await?,
        }
        // Tokens resolve to these flags.
        self.forget_tokens(target);
        tracing::info!(%admin, %target, ?which, value, "account moderation");
        Ok(value)
    }

    /// The target's record, after checking (in this order, so that non-administrators learn
    /// nothing about accounts) that the requester is an administrator and the target a live
    /// local account.
    async fn moderation_target(
        &self,
        admin: &UserId,
        target: &UserId,
    ) -> ServiceResult<myelin_storage::UserRecord> {
        if !self.is_admin(admin).await? {
            return Err(ServiceError::Forbidden(
                "Requesting user is not a server administrator".into(),
            ));
        }
        if target.server_name() != self.ctx.server_name() {
            return Err(ServiceError::InvalidParam(
                "User does not belong to the local server".into(),
            ));
        }
        match self.ctx.storage.get_user(target).await? {
            Some(record) if !record.deactivated => Ok(record),
            _ => Err(ServiceError::NotFound("User not found".into())),
        }
    }
}
