//! Third-party identifiers (3PIDs; e-mail addresses here): validation sessions, started by a
//! `requestToken` and completed when the mailed token comes back, and the addresses bound to
//! accounts. Both are kept durably: a validation link mailed before a restart still works after.
//! Also which identity servers a user bound an address on (`/account/3pid/bind`), so that an
//! unbind or delete without `id_server` knows where to go.

use async_trait::async_trait;
use ruma::{OwnedUserId, UserId};

use crate::{NewUser, StorageResult};

/// A validation session: one address, one client secret, the latest token sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreepidSession {
    pub sid: String,
    pub client_secret: String,
    pub medium: String,
    pub address: String,
    /// SHA-256 of the token mailed, hex.
    pub token_hash: String,
    pub send_attempt: u64,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// When the token came back.
    pub validated_ms: Option<u64>,
}

/// An address bound to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserThreepid {
    pub user_id: OwnedUserId,
    pub medium: String,
    pub address: String,
    pub validated_ms: u64,
    pub added_ms: u64,
}

/// What [`ThreepidStore::create_user_with_threepid`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewUserWithThreepid {
    Created,
    /// The user ID is taken.
    UserInUse,
    /// The address is bound to another account.
    ThreepidInUse,
}

#[async_trait]
pub trait ThreepidStore {
    /// Stores a new session or replaces the one with the same `sid`.
    async fn save_threepid_session(&self, session: ThreepidSession) -> StorageResult<()>;
    /// The session `sid` if `client_secret` is its secret.
    async fn threepid_session(
        &self,
        sid: &str,
        client_secret: &str,
    ) -> StorageResult<Option<ThreepidSession>>;
    /// The session a client already started for this secret and address.
    async fn threepid_session_for(
        &self,
        client_secret: &str,
        medium: &str,
        address: &str,
    ) -> StorageResult<Option<ThreepidSession>>;
    /// Marks the session validated if the token matches and it has not expired; `true` if it
    /// is validated now (already, or by this call).
    async fn validate_threepid_session(
        &self,
        sid: &str,
        client_secret: &str,
        token_hash: &str,
        now_ms: u64,
    ) -> StorageResult<bool>;
    /// Binds the address to the account; `false` if it is bound to an account already.
    async fn add_user_threepid(&self, threepid: UserThreepid) -> StorageResult<bool>;
    /// Creates `user` with `threepid` bound to it, in one transaction (a registration that
    /// proved an address): when the user ID or the address is taken, nothing is written.
    async fn create_user_with_threepid(
        &self,
        user: NewUser,
        threepid: UserThreepid,
    ) -> StorageResult<NewUserWithThreepid>;
    /// Unbinds the address from the account; `false` if it was not bound to it.
    async fn remove_user_threepid(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
    ) -> StorageResult<bool>;
    async fn user_threepids(&self, user_id: &UserId) -> StorageResult<Vec<UserThreepid>>;
    /// The account an address is bound to.
    async fn user_for_threepid(
        &self,
        medium: &str,
        address: &str,
    ) -> StorageResult<Option<OwnedUserId>>;
    /// Remembers that `user_id` bound the address on `id_server` (again: no change).
    async fn add_threepid_id_server(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> StorageResult<()>;
    /// Forgets that binding.
    async fn remove_threepid_id_server(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> StorageResult<()>;
    /// The identity servers `user_id` bound the address on, in name order.
    async fn threepid_id_servers(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
    ) -> StorageResult<Vec<String>>;
    /// Every address `user_id` bound on some identity server, as `(medium, address)`, once each.
    async fn bound_threepids(&self, user_id: &UserId) -> StorageResult<Vec<(String, String)>>;
}
