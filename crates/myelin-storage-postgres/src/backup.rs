//! `BackupStore`: server-side key backup versions and their keys.

use async_trait::async_trait;
use myelin_storage::rows::{self, BACKED_UP_KEY_COLUMNS, BACKUP_VERSION_COLUMNS};
use myelin_storage::{
    upsert_key_sql, BackedUpKey, BackupCounts, BackupKeysWrite, BackupStore, BackupVersionRecord,
    KeySelection, StorageResult,
};
use ruma::UserId;

use crate::convert::{get, to_i64, to_u64};
use crate::pool::Conn;
use crate::PgStore;

/// The version (any, or the current one for `None`) if it exists and is not deleted.
async fn live_version(
    conn: &mut Conn,
    user_id: &str,
    version: Option<i64>,
) -> StorageResult<Option<BackupVersionRecord>> {
    match version {
        Some(version) => {
            let sql = format!(
                "SELECT {BACKUP_VERSION_COLUMNS} FROM key_backup_versions v
                 WHERE v.user_id = $1 AND v.version = $2 AND NOT v.deleted"
            );
            conn.query_opt_decode(&sql, &[&user_id, &version], rows::backup_version)
                .await
        }
        None => {
            let sql = format!(
                "SELECT {BACKUP_VERSION_COLUMNS} FROM key_backup_versions v
                 WHERE v.user_id = $1 AND NOT v.deleted ORDER BY v.version DESC LIMIT 1"
            );
            conn.query_opt_decode(&sql, &[&user_id], rows::backup_version)
                .await
        }
    }
}

/// The version's etag and key count; `bump` first moves the etag on (its keys changed).
async fn counts(
    conn: &mut Conn,
    user_id: &str,
    version: i64,
    bump: bool,
) -> StorageResult<BackupCounts> {
    if bump {
        conn.execute(
            "UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2",
            &[&user_id, &version],
        )
        .await?;
    }
    let row = conn
        .query_one(
            "SELECT v.etag, (SELECT COUNT(*) FROM key_backup_keys k
                             WHERE k.user_id = v.user_id AND k.version = v.version)
             FROM key_backup_versions v WHERE v.user_id = $1 AND v.version = $2",
            &[&user_id, &version],
        )
        .await?;
    Ok(BackupCounts {
        etag: to_u64(get(&row, 0)?, "backup etag")?,
        count: to_u64(get(&row, 1)?, "backup key count")?,
    })
}

/// Upserts each key; `true` if any was written.
async fn insert_keys(
    conn: &mut Conn,
    user_id: &str,
    version: i64,
    keys: &[BackedUpKey],
) -> StorageResult<bool> {
    let sql = upsert_key_sql(|i| format!("${i}"));
    let mut changed = false;
    for key in keys {
        let written = conn
            .execute(
                &sql,
                &[
                    &user_id,
                    &version,
                    &key.room_id.as_str(),
                    &key.session_id,
                    &to_i64(key.first_message_index, "first_message_index")?,
                    &to_i64(key.forwarded_count, "forwarded_count")?,
                    &key.is_verified,
                    &key.session_data,
                ],
            )
            .await?;
        changed |= written > 0;
    }
    Ok(changed)
}

#[async_trait]
impl BackupStore for PgStore {
    async fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: &str,
        auth_data: &str,
    ) -> StorageResult<u64> {
        let mut conn = self.db.write().await?;
        let result = async {
            let row = conn
                .query_one(
                    "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data)
                     SELECT $1::TEXT, COALESCE(MAX(version), 0) + 1, $2::TEXT, $3::TEXT
                     FROM key_backup_versions WHERE user_id = $1::TEXT
                     RETURNING version",
                    &[&user_id.as_str(), &algorithm, &auth_data],
                )
                .await?;
            to_u64(get(&row, 0)?, "backup version")
        }
        .await;
        conn.finish(result).await
    }

    async fn backup_version(
        &self,
        user_id: &UserId,
        version: Option<u64>,
    ) -> StorageResult<Option<BackupVersionRecord>> {
        let version = version.map(|v| to_i64(v, "backup version")).transpose()?;
        let mut conn = self.db.read().await?;
        live_version(&mut conn, user_id.as_str(), version).await
    }

    async fn update_backup_auth_data(
        &self,
        user_id: &UserId,
        version: u64,
        auth_data: &str,
    ) -> StorageResult<bool> {
        let version = to_i64(version, "backup version")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "UPDATE key_backup_versions SET auth_data = $3
                 WHERE user_id = $1 AND version = $2 AND NOT deleted",
                &[&user_id.as_str(), &version, &auth_data],
            )
            .await
            .map(|updated| updated == 1);
        conn.finish(result).await
    }

    async fn delete_backup_version(&self, user_id: &UserId, version: u64) -> StorageResult<bool> {
        let (user, version) = (user_id.as_str(), to_i64(version, "backup version")?);
        let mut conn = self.db.write().await?;
        let result = async {
            conn.execute(
                "DELETE FROM key_backup_keys WHERE user_id = $1 AND version = $2",
                &[&user, &version],
            )
            .await?;
            let marked = conn
                .execute(
                    "UPDATE key_backup_versions SET deleted = TRUE
                     WHERE user_id = $1 AND version = $2",
                    &[&user, &version],
                )
                .await?;
            Ok(marked == 1)
        }
        .await;
        conn.finish(result).await
    }

    async fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        keys: &[BackedUpKey],
    ) -> StorageResult<BackupKeysWrite> {
        let (user, wanted) = (user_id.as_str(), version);
        let version = to_i64(version, "backup version")?;
        let mut conn = self.db.write().await?;
        let result = async {
            let current = live_version(&mut conn, user, None)
                .await?
                .map(|v| v.version);
            if current != Some(wanted) {
                return Ok(match live_version(&mut conn, user, Some(version)).await? {
                    Some(_) => BackupKeysWrite::NotCurrent {
                        current: current.unwrap_or_default(),
                    },
                    None => BackupKeysWrite::UnknownVersion,
                });
            }
            let changed = insert_keys(&mut conn, user, version, keys).await?;
            Ok(BackupKeysWrite::Stored(
                counts(&mut conn, user, version, changed).await?,
            ))
        }
        .await;
        conn.finish(result).await
    }

    async fn backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        selection: &KeySelection,
    ) -> StorageResult<Option<Vec<BackedUpKey>>> {
        let (user, version) = (user_id.as_str(), to_i64(version, "backup version")?);
        let mut conn = self.db.read().await?;
        if live_version(&mut conn, user, Some(version))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let (room, session) = selection.filters();
        let sql = format!(
            "SELECT {BACKED_UP_KEY_COLUMNS} FROM key_backup_keys
             WHERE user_id = $1 AND version = $2
                 AND ($3::TEXT IS NULL OR room_id = $3::TEXT)
                 AND ($4::TEXT IS NULL OR session_id = $4::TEXT)
             ORDER BY room_id, session_id"
        );
        conn.query_decode(
            &sql,
            &[&user, &version, &room, &session],
            rows::backed_up_key,
        )
        .await
        .map(Some)
    }

    async fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        selection: &KeySelection,
    ) -> StorageResult<Option<BackupCounts>> {
        let (user, version) = (user_id.as_str(), to_i64(version, "backup version")?);
        let (room, session) = selection.filters();
        let mut conn = self.db.write().await?;
        let result = async {
            if live_version(&mut conn, user, Some(version))
                .await?
                .is_none()
            {
                return Ok(None);
            }
            let deleted = conn
                .execute(
                    "DELETE FROM key_backup_keys WHERE user_id = $1 AND version = $2
                         AND ($3::TEXT IS NULL OR room_id = $3::TEXT)
                         AND ($4::TEXT IS NULL OR session_id = $4::TEXT)",
                    &[&user, &version, &room, &session],
                )
                .await?;
            counts(&mut conn, user, version, deleted > 0)
                .await
                .map(Some)
        }
        .await;
        conn.finish(result).await
    }
}

/// Removes every backup version and key of a user (deactivation), inside the caller's
/// transaction.
pub(crate) async fn delete_user_backups(conn: &mut Conn, user_id: &str) -> StorageResult<()> {
    conn.execute(
        "DELETE FROM key_backup_keys WHERE user_id = $1",
        &[&user_id],
    )
    .await?;
    conn.execute(
        "DELETE FROM key_backup_versions WHERE user_id = $1",
        &[&user_id],
    )
    .await?;
    Ok(())
}
