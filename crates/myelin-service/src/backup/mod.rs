//! Server-side key backups (spec: Client-Server API, "Server-side key backups",
//! `/room_keys/version` and `/room_keys/keys`): each user's backup versions, and the room keys
//! their clients store in them, encrypted for the backup's key.
//!
//! The server never sees a key: `auth_data` and `session_data` are kept as given. It only
//! decides which of two uploads for one session to keep (the spec's rule, applied in the same
//! transaction as the write, see `myelin_storage::UPSERT_KEEPS_BETTER_KEY`), that only the
//! current (latest) version takes new keys, and how much one request may carry.
//!
//! Versions are numbered per user and never reused; the current version is the highest one not
//! deleted. A version named in a path or query that is not a number we gave out is unknown
//! (404), as is a deleted one, except that deleting a deleted version again succeeds.

mod keys;

use std::sync::Arc;

use myelin_storage::BackupVersionRecord;
use ruma::UserId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Context, ServiceError, ServiceResult};

pub use keys::{KeyBackupData, RoomKeyBackup, RoomKeys, MAX_SESSIONS_PER_REQUEST};

/// The longest `algorithm` name, session ID or room ID accepted, in bytes (as for Matrix IDs).
pub const MAX_NAME_BYTES: usize = 255;

pub struct KeyBackup {
    pub(crate) ctx: Arc<Context>,
}

/// The body of `POST /room_keys/version` and `PUT /room_keys/version/{version}`.
#[derive(Debug, Clone, Deserialize)]
pub struct BackupVersionBody {
    pub algorithm: String,
    pub auth_data: Map<String, Value>,
    /// Only in `PUT`: if present, must name the version of the path.
    #[serde(default)]
    pub version: Option<String>,
}

/// What `GET /room_keys/version[/{version}]` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupVersionInfo {
    pub algorithm: String,
    pub auth_data: Value,
    pub count: u64,
    pub etag: String,
    pub version: String,
}

/// A backup's keys after a write: what `PUT` and `DELETE /room_keys/keys...` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeysUpdate {
    pub etag: String,
    pub count: u64,
}

impl From<myelin_storage::BackupCounts> for KeysUpdate {
    fn from(counts: myelin_storage::BackupCounts) -> Self {
        KeysUpdate {
            etag: counts.etag.to_string(),
            count: counts.count,
        }
    }
}

/// A version string as we give them out (a decimal number without leading zeros); anything
/// else names no version.
pub(crate) fn parse_version(version: &str) -> Option<u64> {
    version
        .parse::<u64>()
        .ok()
        .filter(|v| v.to_string() == version && i64::try_from(*v).is_ok())
}

fn unknown_version() -> ServiceError {
    ServiceError::NotFound("Unknown backup version".into())
}

fn check_algorithm(algorithm: &str) -> ServiceResult<()> {
    if algorithm.is_empty() || algorithm.len() > MAX_NAME_BYTES {
        return Err(ServiceError::InvalidParam(format!(
            "algorithm must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

fn version_info(record: BackupVersionRecord) -> ServiceResult<BackupVersionInfo> {
    let auth_data = serde_json::from_str(&record.auth_data)
        .map_err(|e| ServiceError::Internal(format!("stored auth_data is not JSON: {e}")))?;
    Ok(BackupVersionInfo {
        algorithm: record.algorithm,
        auth_data,
        count: record.count,
        etag: record.etag.to_string(),
        version: record.version.to_string(),
    })
}

impl KeyBackup {
    pub fn new(ctx: Arc<Context>) -> KeyBackup {
        KeyBackup { ctx }
    }

    /// `POST /room_keys/version`: a new version, which becomes the current one.
    pub async fn create_version(
        &self,
        user_id: &UserId,
        body: BackupVersionBody,
    ) -> ServiceResult<String> {
        check_algorithm(&body.algorithm)?;
        let auth_data = Value::Object(body.auth_data).to_string();
        let version = self
            .ctx
            .storage
            .create_backup_version(user_id, &body.algorithm, &auth_data)
            .await?;
        Ok(version.to_string())
    }

    /// `GET /room_keys/version[/{version}]`: the version, or the current one for `None`.
    pub async fn version(
        &self,
        user_id: &UserId,
        version: Option<&str>,
    ) -> ServiceResult<BackupVersionInfo> {
        let wanted = match version {
            Some(v) => Some(parse_version(v).ok_or_else(unknown_version)?),
            None => None,
        };
        let record = self.ctx.storage.backup_version(user_id, wanted).await?;
        match (record, wanted) {
            (Some(record), _) => version_info(record),
            (None, None) => Err(ServiceError::NotFound("No current backup version".into())),
            (None, Some(_)) => Err(unknown_version()),
        }
    }

    /// `PUT /room_keys/version/{version}`: replaces `auth_data`. The algorithm cannot change,
    /// and a `version` in the body must be the one of the path.
    pub async fn update_version(
        &self,
        user_id: &UserId,
        version: &str,
        body: BackupVersionBody,
    ) -> ServiceResult<()> {
        if body.version.as_deref().is_some_and(|v| v != version) {
            return Err(ServiceError::InvalidParam(
                "The version in the body does not match the path".into(),
            ));
        }
        let number = parse_version(version).ok_or_else(unknown_version)?;
        let storage = &self.ctx.storage;
        let current = storage
            .backup_version(user_id, Some(number))
            .await?
            .ok_or_else(unknown_version)?;
        if current.algorithm != body.algorithm {
            return Err(ServiceError::InvalidParam(
                "The algorithm does not match the backup's".into(),
            ));
        }
        let auth_data = Value::Object(body.auth_data).to_string();
        if !storage
            .update_backup_auth_data(user_id, number, &auth_data)
            .await?
        {
            // Deleted between the two calls.
            return Err(unknown_version());
        }
        Ok(())
    }

    /// `DELETE /room_keys/version/{version}`: the version and all its keys. Deleting a version
    /// that was already deleted succeeds (spec); one that never existed is unknown.
    pub async fn delete_version(&self, user_id: &UserId, version: &str) -> ServiceResult<()> {
        let number = parse_version(version).ok_or_else(unknown_version)?;
        if self
            .ctx
            .storage
            .delete_backup_version(user_id, number)
            .await?
        {
            Ok(())
        } else {
            Err(unknown_version())
        }
    }
}

#[cfg(test)]
mod tests;
