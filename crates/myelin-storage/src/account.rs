//! Users, devices and tokens.

use async_trait::async_trait;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};

use crate::StorageResult;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub user_id: OwnedUserId,
    /// argon2id PHC string; `None` for accounts that cannot log in with a password.
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub created_ms: u64,
    pub displayname: Option<String>,
    /// A guest account (`register?kind=guest`): limited to the spec's guest endpoints until
    /// upgraded.
    pub is_guest: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user_id: OwnedUserId,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
    pub created_ms: u64,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub is_guest: bool,
    /// Locked by an administrator: no request of the account is served.
    pub locked: bool,
    /// Suspended by an administrator: the account may read and leave, not act.
    pub suspended: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ms: Option<u64>,
    pub last_seen_ip: Option<String>,
}

/// A login: the device (created or reused) and its first access token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// Display name to set if the device is new.
    pub device_display_name: Option<String>,
    /// SHA-256 of the access token, hex; the token itself is never stored.
    pub access_token_hash: String,
    pub refresh_token_hash: Option<String>,
    pub expires_at_ms: Option<u64>,
    pub created_ms: u64,
}

/// What an access token resolves to.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenOwner {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub expires_at_ms: Option<u64>,
    /// Whether the account is a guest's.
    pub is_guest: bool,
    /// Whether the account is locked or suspended.
    pub locked: bool,
    pub suspended: bool,
}

#[async_trait]
pub trait AccountStore {
    /// Creates a user; returns `false` (and writes nothing) if the ID is taken.
    async fn create_user(&self, user: NewUser) -> StorageResult<bool>;
    async fn get_user(&self, user_id: &UserId) -> StorageResult<Option<UserRecord>>;
    async fn set_password_hash(&self, user_id: &UserId, hash: &str) -> StorageResult<()>;
    /// Turns a guest account into a full one with this password; `false` if the user is not a
    /// guest (any more).
    async fn upgrade_guest(&self, user_id: &UserId, password_hash: &str) -> StorageResult<bool>;
    /// The user's custom profile fields (spec v1.16 extended profiles: `m.tz` and namespaced
    /// keys; `displayname` and `avatar_url` are columns of the user), in key order.
    async fn profile_fields(
        &self,
        user_id: &UserId,
    ) -> StorageResult<Vec<(String, serde_json::Value)>>;
    /// Sets (or with `None` removes) one custom profile field.
    async fn set_profile_field(
        &self,
        user_id: &UserId,
        key: &str,
        value: Option<&serde_json::Value>,
    ) -> StorageResult<()>;
    /// Locks or unlocks the account (spec v1.18 account moderation).
    async fn set_locked(&self, user_id: &UserId, locked: bool) -> StorageResult<()>;
    /// Suspends the account or lifts the suspension.
    async fn set_suspended(&self, user_id: &UserId, suspended: bool) -> StorageResult<()>;
    /// Marks the user deactivated (and erased, when `erase`, which clears the display name and
    /// avatar too) and removes all devices and tokens, the user's keys, custom profile fields
    /// and key backups, in one transaction.
    async fn deactivate_user(&self, user_id: &UserId, erase: bool) -> StorageResult<()>;
    /// Those of these users deactivated with `erase`.
    async fn erased_users(&self, user_ids: &[OwnedUserId]) -> StorageResult<Vec<OwnedUserId>>;
    async fn set_displayname(&self, user_id: &UserId, name: Option<&str>) -> StorageResult<()>;
    async fn set_avatar_url(&self, user_id: &UserId, url: Option<&str>) -> StorageResult<()>;

    /// Upserts the device and inserts the token pair, in one transaction.
    async fn create_session(&self, session: NewSession) -> StorageResult<()>;
    async fn find_access_token(&self, token_hash: &str) -> StorageResult<Option<TokenOwner>>;
    /// Swaps a refresh token for a new token pair on the same device; `None` if unknown.
    async fn refresh_session(
        &self,
        refresh_token_hash: &str,
        new_access_token_hash: &str,
        new_refresh_token_hash: &str,
        expires_at_ms: Option<u64>,
    ) -> StorageResult<Option<TokenOwner>>;

    async fn list_devices(&self, user_id: &UserId) -> StorageResult<Vec<DeviceRecord>>;
    async fn get_device(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> StorageResult<Option<DeviceRecord>>;
    /// Returns `false` if the device does not exist.
    async fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &str,
        name: Option<&str>,
    ) -> StorageResult<bool>;
    /// Creates a device without an access token (MSC4190: an appservice makes its users'
    /// devices), or renames it if it exists and `name` is given. `true` if it was created.
    async fn put_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        name: Option<&str>,
        created_ms: u64,
    ) -> StorageResult<bool>;
    /// Deletes devices with all their tokens, in one transaction.
    async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
    ) -> StorageResult<()>;
    /// Deletes every device except `keep` (if given) with all their tokens.
    async fn delete_all_devices(&self, user_id: &UserId, keep: Option<&str>) -> StorageResult<()>;
    async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        now_ms: u64,
        ip: Option<&str>,
    ) -> StorageResult<()>;
}
