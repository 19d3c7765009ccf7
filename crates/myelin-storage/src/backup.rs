//! Server-side key backups (spec: Client-Server API, "Server-side key backups"): each user's
//! numbered backup versions and the encrypted room keys stored in them.
//!
//! The server never reads a key: `auth_data` and `session_data` are opaque JSON text, kept as
//! given. Versions are numbered per user from 1 and never reused: a deleted version stays as a
//! tombstone (its keys are gone), so deleting it again succeeds and a new version gets a higher
//! number. The user's current version is the highest one not deleted.
//!
//! Deactivating a user (`AccountStore::deactivate_user`) removes all their versions and keys in
//! the same transaction.

use async_trait::async_trait;
use ruma::{OwnedRoomId, UserId};

use crate::StorageResult;

/// A backup version as stored, with what its keys look like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupVersionRecord {
    pub version: u64,
    pub algorithm: String,
    /// The `auth_data` JSON object, as given.
    pub auth_data: String,
    /// Bumped by every write that changes the version's keys.
    pub etag: u64,
    /// How many keys the version holds.
    pub count: u64,
}

/// One room key in a backup (`KeyBackupData` in the spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUpKey {
    pub room_id: OwnedRoomId,
    pub session_id: String,
    pub first_message_index: u64,
    pub forwarded_count: u64,
    pub is_verified: bool,
    /// The encrypted `session_data` JSON object, as given.
    pub session_data: String,
}

/// A version's keys after a write: what `PUT` and `DELETE /room_keys/keys` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupCounts {
    pub etag: u64,
    pub count: u64,
}

/// The outcome of storing keys in a backup version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKeysWrite {
    Stored(BackupCounts),
    /// The version does not exist or was deleted.
    UnknownVersion,
    /// The version exists but a later one is the user's current version: only the current
    /// version takes new keys.
    NotCurrent {
        current: u64,
    },
}

/// Which keys of a version a read or delete covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelection {
    All,
    Room(OwnedRoomId),
    Session(OwnedRoomId, String),
}

impl KeySelection {
    /// The room and session to filter on; `None` matches any.
    pub fn filters(&self) -> (Option<&str>, Option<&str>) {
        match self {
            KeySelection::All => (None, None),
            KeySelection::Room(room) => (Some(room.as_str()), None),
            KeySelection::Session(room, session) => (Some(room.as_str()), Some(session.as_str())),
        }
    }
}

#[async_trait]
pub trait BackupStore {
    /// Creates the user's next backup version (one above any version the user ever had), which
    /// becomes the current one; returns its number.
    async fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: &str,
        auth_data: &str,
    ) -> StorageResult<u64>;
    /// The version, or the current one when `version` is `None`; `None` if it does not exist
    /// or was deleted.
    async fn backup_version(
        &self,
        user_id: &UserId,
        version: Option<u64>,
    ) -> StorageResult<Option<BackupVersionRecord>>;
    /// Replaces a version's `auth_data`; `false` (nothing written) if the version does not
    /// exist or was deleted.
    async fn update_backup_auth_data(
        &self,
        user_id: &UserId,
        version: u64,
        auth_data: &str,
    ) -> StorageResult<bool>;
    /// Deletes a version and all its keys, in one transaction; `true` if the version exists
    /// (deleted now or before), `false` if the user never had it.
    async fn delete_backup_version(&self, user_id: &UserId, version: u64) -> StorageResult<bool>;
    /// Stores keys in the user's current version, in one transaction. A key for a session the
    /// version already holds replaces the stored one only if it is better by the spec's rule
    /// ([`UPSERT_KEEPS_BETTER_KEY`]); the etag moves when any key was written.
    async fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        keys: &[BackedUpKey],
    ) -> StorageResult<BackupKeysWrite>;
    /// The selected keys of a version, ordered by room then session; `None` if the version
    /// does not exist or was deleted.
    async fn backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        selection: &KeySelection,
    ) -> StorageResult<Option<Vec<BackedUpKey>>>;
    /// Deletes the selected keys of a version (the etag moves if any was deleted); `None` if
    /// the version does not exist or was deleted.
    async fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        selection: &KeySelection,
    ) -> StorageResult<Option<BackupCounts>>;
}

/// The condition, in an upsert into `key_backup_keys`, under which an uploaded key (`excluded`)
/// replaces the stored one. The spec's order: a verified key beats an unverified one; between
/// keys equally verified, the lower `first_message_index` (it decrypts more of the session);
/// then the lower `forwarded_count`. An equal key is kept, so a retried upload changes nothing.
/// (Synapse lets a lower index win over `is_verified`; the spec puts verification first.)
pub const UPSERT_KEEPS_BETTER_KEY: &str = "excluded.is_verified > key_backup_keys.is_verified
     OR (excluded.is_verified = key_backup_keys.is_verified
         AND (excluded.first_message_index < key_backup_keys.first_message_index
              OR (excluded.first_message_index = key_backup_keys.first_message_index
                  AND excluded.forwarded_count < key_backup_keys.forwarded_count)))";

/// The upsert of one key (parameters: user, version, room, session, first message index,
/// forwarded count, verified, session data), `placeholder(i)` naming the dialect's parameter
/// `i` (from 1). It changes one row when the key is new or better, none otherwise.
pub fn upsert_key_sql(placeholder: impl Fn(usize) -> String) -> String {
    let p: Vec<String> = (1..=8).map(placeholder).collect();
    format!(
        "INSERT INTO key_backup_keys (user_id, version, room_id, session_id, first_message_index,
                                      forwarded_count, is_verified, session_data)
         VALUES ({})
         ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
             first_message_index = excluded.first_message_index,
             forwarded_count = excluded.forwarded_count,
             is_verified = excluded.is_verified,
             session_data = excluded.session_data
         WHERE {UPSERT_KEEPS_BETTER_KEY}",
        p.join(", ")
    )
}
