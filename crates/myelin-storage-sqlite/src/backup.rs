//! `BackupStore`: server-side key backup versions and their keys.

use async_trait::async_trait;
use myelin_storage::rows::{self, BACKED_UP_KEY_COLUMNS, BACKUP_VERSION_COLUMNS};
use myelin_storage::{
    upsert_key_sql, BackedUpKey, BackupCounts, BackupKeysWrite, BackupStore, BackupVersionRecord,
    KeySelection, StorageResult,
};
use ruma::UserId;
use rusqlite::{params, Connection, Transaction};

use crate::convert::{query_all, query_first, to_i64, to_u64, Db};
use crate::SqliteStore;

/// The version (any, or the current one for `None`) if it exists and is not deleted.
fn live_version(
    conn: &Connection,
    user_id: &str,
    version: Option<i64>,
) -> StorageResult<Option<BackupVersionRecord>> {
    match version {
        Some(version) => query_first(
            conn,
            &format!(
                "SELECT {BACKUP_VERSION_COLUMNS} FROM key_backup_versions v
                 WHERE v.user_id = ?1 AND v.version = ?2 AND NOT v.deleted"
            ),
            params![user_id, version],
            rows::backup_version,
        ),
        None => query_first(
            conn,
            &format!(
                "SELECT {BACKUP_VERSION_COLUMNS} FROM key_backup_versions v
                 WHERE v.user_id = ?1 AND NOT v.deleted ORDER BY v.version DESC LIMIT 1"
            ),
            params![user_id],
            rows::backup_version,
        ),
    }
}

/// The version's etag and key count; `bump` first moves the etag on (its keys changed).
fn counts(
    tx: &Transaction<'_>,
    user_id: &str,
    version: i64,
    bump: bool,
) -> StorageResult<BackupCounts> {
    if bump {
        tx.prepare_cached(
            "UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
        )
        .db()?
        .execute(params![user_id, version])
        .db()?;
    }
    let (etag, count): (i64, i64) = tx
        .prepare_cached(
            "SELECT v.etag, (SELECT COUNT(*) FROM key_backup_keys k
                             WHERE k.user_id = v.user_id AND k.version = v.version)
             FROM key_backup_versions v WHERE v.user_id = ?1 AND v.version = ?2",
        )
        .db()?
        .query_row(params![user_id, version], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .db()?;
    Ok(BackupCounts {
        etag: to_u64(etag, "backup etag")?,
        count: to_u64(count, "backup key count")?,
    })
}

/// Upserts each key; `true` if any was written.
fn insert_keys(
    tx: &Transaction<'_>,
    user_id: &str,
    version: i64,
    keys: &[BackedUpKey],
) -> StorageResult<bool> {
    let mut stmt = tx
        .prepare_cached(&upsert_key_sql(|i| format!("?{i}")))
        .db()?;
    let mut changed = false;
    for key in keys {
        let written = stmt
            .execute(params![
                user_id,
                version,
                key.room_id.as_str(),
                key.session_id,
                to_i64(key.first_message_index, "first_message_index")?,
                to_i64(key.forwarded_count, "forwarded_count")?,
                key.is_verified,
                key.session_data,
            ])
            .db()?;
        changed |= written > 0;
    }
    Ok(changed)
}

#[async_trait]
impl BackupStore for SqliteStore {
    async fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: &str,
        auth_data: &str,
    ) -> StorageResult<u64> {
        let (user_id, algorithm, auth_data) = (
            user_id.to_owned(),
            algorithm.to_owned(),
            auth_data.to_owned(),
        );
        self.db
            .write(move |tx, _| {
                let version: i64 = tx
                    .prepare_cached(
                        "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data)
                         SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, ?3
                         FROM key_backup_versions WHERE user_id = ?1
                         RETURNING version",
                    )
                    .db()?
                    .query_row(params![user_id.as_str(), algorithm, auth_data], |row| {
                        row.get(0)
                    })
                    .db()?;
                to_u64(version, "backup version")
            })
            .await
    }

    async fn backup_version(
        &self,
        user_id: &UserId,
        version: Option<u64>,
    ) -> StorageResult<Option<BackupVersionRecord>> {
        let user_id = user_id.to_owned();
        let version = version.map(|v| to_i64(v, "backup version")).transpose()?;
        self.db
            .read(move |conn| live_version(conn, user_id.as_str(), version))
            .await
    }

    async fn update_backup_auth_data(
        &self,
        user_id: &UserId,
        version: u64,
        auth_data: &str,
    ) -> StorageResult<bool> {
        let (user_id, auth_data) = (user_id.to_owned(), auth_data.to_owned());
        let version = to_i64(version, "backup version")?;
        self.db
            .write(move |tx, _| {
                let updated = tx
                    .prepare_cached(
                        "UPDATE key_backup_versions SET auth_data = ?3
                         WHERE user_id = ?1 AND version = ?2 AND NOT deleted",
                    )
                    .db()?
                    .execute(params![user_id.as_str(), version, auth_data])
                    .db()?;
                Ok(updated == 1)
            })
            .await
    }

    async fn delete_backup_version(&self, user_id: &UserId, version: u64) -> StorageResult<bool> {
        let user_id = user_id.to_owned();
        let version = to_i64(version, "backup version")?;
        self.db
            .write(move |tx, _| {
                let user = user_id.as_str();
                tx.prepare_cached(
                    "DELETE FROM key_backup_keys WHERE user_id = ?1 AND version = ?2",
                )
                .db()?
                .execute(params![user, version])
                .db()?;
                let marked = tx
                    .prepare_cached(
                        "UPDATE key_backup_versions SET deleted = TRUE
                         WHERE user_id = ?1 AND version = ?2",
                    )
                    .db()?
                    .execute(params![user, version])
                    .db()?;
                Ok(marked == 1)
            })
            .await
    }

    async fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        keys: &[BackedUpKey],
    ) -> StorageResult<BackupKeysWrite> {
        let (user_id, keys, wanted) = (user_id.to_owned(), keys.to_vec(), version);
        let version = to_i64(version, "backup version")?;
        self.db
            .write(move |tx, _| {
                let user = user_id.as_str();
                let current = live_version(tx, user, None)?.map(|v| v.version);
                if current != Some(wanted) {
                    return Ok(match live_version(tx, user, Some(version))? {
                        Some(_) => BackupKeysWrite::NotCurrent {
                            current: current.unwrap_or_default(),
                        },
                        None => BackupKeysWrite::UnknownVersion,
                    });
                }
                let changed = insert_keys(tx, user, version, &keys)?;
                Ok(BackupKeysWrite::Stored(counts(tx, user, version, changed)?))
            })
            .await
    }

    async fn backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        selection: &KeySelection,
    ) -> StorageResult<Option<Vec<BackedUpKey>>> {
        let (user_id, selection) = (user_id.to_owned(), selection.clone());
        let version = to_i64(version, "backup version")?;
        self.db
            .read(move |conn| {
                let user = user_id.as_str();
                if live_version(conn, user, Some(version))?.is_none() {
                    return Ok(None);
                }
                let (room, session) = selection.filters();
                let sql = format!(
                    "SELECT {BACKED_UP_KEY_COLUMNS} FROM key_backup_keys
                     WHERE user_id = ?1 AND version = ?2
                         AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)
                     ORDER BY room_id, session_id"
                );
                query_all(
                    conn,
                    &sql,
                    params![user, version, room, session],
                    rows::backed_up_key,
                )
                .map(Some)
            })
            .await
    }

    async fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        selection: &KeySelection,
    ) -> StorageResult<Option<BackupCounts>> {
        let (user_id, selection) = (user_id.to_owned(), selection.clone());
        let version = to_i64(version, "backup version")?;
        self.db
            .write(move |tx, _| {
                let user = user_id.as_str();
                if live_version(tx, user, Some(version))?.is_none() {
                    return Ok(None);
                }
                let (room, session) = selection.filters();
                let deleted = tx
                    .prepare_cached(
                        "DELETE FROM key_backup_keys WHERE user_id = ?1 AND version = ?2
                             AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
                    )
                    .db()?
                    .execute(params![user, version, room, session])
                    .db()?;
                counts(tx, user, version, deleted > 0).map(Some)
            })
            .await
    }
}

/// Removes every backup version and key of a user (deactivation).
pub(crate) fn delete_user_backups(tx: &Transaction<'_>, user_id: &str) -> StorageResult<()> {
    tx.execute("DELETE FROM key_backup_keys WHERE user_id = ?1", [user_id])
        .db()?;
    tx.execute(
        "DELETE FROM key_backup_versions WHERE user_id = ?1",
        [user_id],
    )
    .db()?;
    Ok(())
}
