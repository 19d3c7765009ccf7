//! External identities (SSO): which Matrix account a user of an identity provider logs in as,
//! by `(auth_provider, external_id)` — the provider's `idp_id` and its subject for the user.

use async_trait::async_trait;
use ruma::OwnedUserId;

use crate::{NewUser, StorageResult};

/// What [`ExternalIdStore::create_user_with_external_id`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewUserWithExternalId {
    Created,
    /// The user ID is taken.
    UserInUse,
    /// The external identity already maps to an account (another login made it meanwhile).
    ExternalIdInUse,
}

#[async_trait]
pub trait ExternalIdStore {
    /// The account the provider's subject logs in as.
    async fn user_for_external_id(
        &self,
        auth_provider: &str,
        external_id: &str,
    ) -> StorageResult<Option<OwnedUserId>>;
    /// Creates `user` mapped from the external identity, in one transaction (a first SSO
    /// login): when the user ID or the identity is taken, nothing is written.
    async fn create_user_with_external_id(
        &self,
        user: NewUser,
        auth_provider: &str,
        external_id: &str,
    ) -> StorageResult<NewUserWithExternalId>;
}
