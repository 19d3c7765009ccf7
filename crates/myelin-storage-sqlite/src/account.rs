//! `AccountStore`: users, devices and access/refresh tokens (stored as hashes only).

use async_trait::async_trait;
use myelin_storage::rows::{self, DEVICE_COLUMNS, USER_COLUMNS};
use myelin_storage::{
    AccountStore, DeviceRecord, NewSession, NewUser, StorageResult, TokenOwner, UserRecord,
};
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::backup::delete_user_backups;
use crate::convert::{opt_to_i64, parse_json, query_all, query_first, to_i64, Db};
use crate::keys::record_device_list_change;
use crate::SqliteStore;

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(&self, user: NewUser) -> StorageResult<bool> {
        self.db.write(move |tx, _| insert_user(tx, &user)).await
    }

    async fn get_user(&self, user_id: &UserId) -> StorageResult<Option<UserRecord>> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = ?1");
                query_first(conn, &sql, [user_id.as_str()], |row| {
                    rows::user(user_id.clone(), row)
                })
            })
            .await
    }

    async fn set_password_hash(&self, user_id: &UserId, hash: &str) -> StorageResult<()> {
        self.update_user(user_id, "password_hash", Some(hash)).await
    }

    async fn upgrade_guest(&self, user_id: &UserId, password_hash: &str) -> StorageResult<bool> {
        let (user_id, hash) = (user_id.to_owned(), password_hash.to_owned());
        self.db
            .write(move |tx, _| {
                let updated = tx
                    .execute(
                        "UPDATE users SET is_guest = 0, password_hash = ?2
                         WHERE user_id = ?1 AND is_guest = 1",
                        params![user_id.as_str(), hash],
                    )
                    .db()?;
                Ok(updated == 1)
            })
            .await
    }

    async fn profile_fields(
        &self,
        user_id: &UserId,
    ) -> StorageResult<Vec<(String, serde_json::Value)>> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT field, value FROM profile_fields WHERE user_id = ?1 ORDER BY field",
                    [user_id.as_str()],
                    |row| Ok((row.text(0)?, parse_json(&row.text(1)?, "profile field")?)),
                )
            })
            .await
    }

    async fn set_profile_field(
        &self,
        user_id: &UserId,
        key: &str,
        value: Option<&serde_json::Value>,
    ) -> StorageResult<()> {
        let (user_id, key) = (user_id.to_owned(), key.to_owned());
        let value = value.map(serde_json::Value::to_string);
        self.db
            .write(move |tx, _| {
                match value {
                    Some(value) => tx
                        .prepare_cached(
                            "INSERT INTO profile_fields (user_id, field, value) VALUES (?1, ?2, ?3)
                             ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value",
                        )
                        .db()?
                        .execute(params![user_id.as_str(), key, value]),
                    None => tx
                        .prepare_cached(
                            "DELETE FROM profile_fields WHERE user_id = ?1 AND field = ?2",
                        )
                        .db()?
                        .execute(params![user_id.as_str(), key]),
                }
                .db()?;
                Ok(())
            })
            .await
    }

    async fn set_locked(&self, user_id: &UserId, locked: bool) -> StorageResult<()> {
        self.set_flag(user_id, "locked", locked).await
    }

    async fn set_suspended(&self, user_id: &UserId, suspended: bool) -> StorageResult<()> {
        self.set_flag(user_id, "suspended", suspended).await
    }

    async fn deactivate_user(&self, user_id: &UserId, erase: bool) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.db
            .write(move |tx, positions| {
                let user = user_id.as_str();
                tx.execute(
                    "UPDATE users SET deactivated = 1 WHERE user_id = ?1",
                    [user],
                )
                .db()?;
                if erase {
                    tx.execute(
                        "INSERT INTO erased_users (user_id, erased_ms) VALUES (?1, ?2)
                         ON CONFLICT (user_id) DO NOTHING",
                        params![user, crate::convert::now_ms()],
                    )
                    .db()?;
                    tx.execute(
                        "UPDATE users SET displayname = NULL, avatar_url = NULL WHERE user_id = ?1",
                        [user],
                    )
                    .db()?;
                }
                if delete_device_rows(tx, user, None, None)? > 0 {
                    record_device_list_change(tx, positions, user)?;
                }
                tx.execute("DELETE FROM cross_signing_keys WHERE user_id = ?1", [user])
                    .db()?;
                tx.execute("DELETE FROM profile_fields WHERE user_id = ?1", [user])
                    .db()?;
                tx.execute("DELETE FROM user_threepids WHERE user_id = ?1", [user])
                    .db()?;
                delete_user_backups(tx, user)
            })
            .await
    }

    async fn erased_users(&self, user_ids: &[OwnedUserId]) -> StorageResult<Vec<OwnedUserId>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = crate::convert::json_list(user_ids)?;
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT user_id FROM erased_users
                     WHERE user_id IN (SELECT value FROM json_each(?1)) ORDER BY user_id",
                    [users],
                    |row| myelin_storage::convert::parse_id(row.text(0)?, "erased user"),
                )
            })
            .await
    }

    async fn set_displayname(&self, user_id: &UserId, name: Option<&str>) -> StorageResult<()> {
        self.update_user(user_id, "displayname", name).await
    }

    async fn set_avatar_url(&self, user_id: &UserId, url: Option<&str>) -> StorageResult<()> {
        self.update_user(user_id, "avatar_url", url).await
    }

    async fn create_session(&self, session: NewSession) -> StorageResult<()> {
        self.db
            .write(move |tx, _| {
                let created_ms = to_i64(session.created_ms, "created_ms")?;
                tx.prepare_cached(
                    "INSERT INTO devices (user_id, device_id, display_name, created_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id, device_id) DO NOTHING",
                )
                .db()?
                .execute(params![
                    session.user_id.as_str(),
                    session.device_id.as_str(),
                    session.device_display_name,
                    created_ms
                ])
                .db()?;
                insert_token(
                    tx,
                    &session.access_token_hash,
                    session.refresh_token_hash.as_deref(),
                    session.user_id.as_str(),
                    session.device_id.as_str(),
                    opt_to_i64(session.expires_at_ms, "expires_at_ms")?,
                    created_ms,
                )
            })
            .await
    }

    async fn find_access_token(&self, token_hash: &str) -> StorageResult<Option<TokenOwner>> {
        let token_hash = token_hash.to_owned();
        self.db
            .read(move |conn| {
                query_first(
                    conn,
                    "SELECT t.user_id, t.device_id, t.expires_at_ms, u.is_guest, u.locked, u.suspended
                     FROM access_tokens t JOIN users u ON u.user_id = t.user_id
                     WHERE t.token_hash = ?1",
                    [token_hash],
                    |row| {
                        let flags = rows::AccountFlags::read(row, 3)?;
                        rows::token_owner(row.text(0)?, row.text(1)?, row.opt_int(2)?, flags)
                    },
                )
            })
            .await
    }

    async fn refresh_session(
        &self,
        refresh_token_hash: &str,
        new_access_token_hash: &str,
        new_refresh_token_hash: &str,
        expires_at_ms: Option<u64>,
    ) -> StorageResult<Option<TokenOwner>> {
        let old = refresh_token_hash.to_owned();
        let (access, refresh) = (
            new_access_token_hash.to_owned(),
            new_refresh_token_hash.to_owned(),
        );
        let expires = opt_to_i64(expires_at_ms, "expires_at_ms")?;
        self.db
            .write(move |tx, _| {
                let row = tx
                    .prepare_cached(
                        "SELECT token_hash, user_id, device_id, created_ms FROM access_tokens
                         WHERE refresh_token_hash = ?1",
                    )
                    .db()?
                    .query_row([&old], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, i64>(3)?,
                        ))
                    })
                    .optional()
                    .db()?;
                let Some((old_access, user_id, device_id, created_ms)) = row else {
                    return Ok(None);
                };
                tx.prepare_cached("DELETE FROM access_tokens WHERE token_hash = ?1")
                    .db()?
                    .execute([old_access])
                    .db()?;
                insert_token(
                    tx,
                    &access,
                    Some(&refresh),
                    &user_id,
                    &device_id,
                    expires,
                    created_ms,
                )?;
                // The caller reads only the user and device of a refreshed session.
                rows::token_owner(user_id, device_id, expires, Default::default()).map(Some)
            })
            .await
    }

    async fn list_devices(&self, user_id: &UserId) -> StorageResult<Vec<DeviceRecord>> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ?1 ORDER BY device_id"
                );
                query_all(conn, &sql, [user_id.as_str()], rows::device)
            })
            .await
    }

    async fn get_device(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> StorageResult<Option<DeviceRecord>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ?1 AND device_id = ?2"
                );
                query_first(conn, &sql, [user_id.as_str(), &device_id], rows::device)
            })
            .await
    }

    async fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &str,
        name: Option<&str>,
    ) -> StorageResult<bool> {
        let (user_id, device_id, name) = (
            user_id.to_owned(),
            device_id.to_owned(),
            name.map(str::to_owned),
        );
        self.db
            .write(move |tx, _| {
                let updated = tx
                    .prepare_cached("UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2")
                    .db()?
                    .execute(params![user_id.as_str(), device_id, name])
                    .db()?;
                Ok(updated == 1)
            })
            .await
    }

    async fn put_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        name: Option<&str>,
        created_ms: u64,
    ) -> StorageResult<bool> {
        let (user_id, device_id, name) = (
            user_id.to_owned(),
            device_id.to_owned(),
            name.map(str::to_owned),
        );
        let created_ms = to_i64(created_ms, "created_ms")?;
        self.db
            .write(move |tx, _| {
                let created = tx
                    .prepare_cached(
                        "INSERT INTO devices (user_id, device_id, display_name, created_ms)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user_id, device_id) DO NOTHING",
                    )
                    .db()?
                    .execute(params![user_id.as_str(), device_id, name, created_ms])
                    .db()?
                    == 1;
                if !created && name.is_some() {
                    tx.prepare_cached(
                        "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
                    )
                    .db()?
                    .execute(params![user_id.as_str(), device_id, name])
                    .db()?;
                }
                Ok(created)
            })
            .await
    }

    async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
    ) -> StorageResult<()> {
        let (user_id, device_ids) = (user_id.to_owned(), device_ids.to_vec());
        self.db
            .write(move |tx, positions| {
                let mut deleted = 0;
                for device_id in &device_ids {
                    deleted +=
                        delete_device_rows(tx, user_id.as_str(), Some(device_id.as_str()), None)?;
                }
                if deleted > 0 {
                    record_device_list_change(tx, positions, user_id.as_str())?;
                }
                Ok(())
            })
            .await
    }

    async fn delete_all_devices(&self, user_id: &UserId, keep: Option<&str>) -> StorageResult<()> {
        let (user_id, keep) = (user_id.to_owned(), keep.map(str::to_owned));
        self.db
            .write(move |tx, positions| {
                if delete_device_rows(tx, user_id.as_str(), None, keep.as_deref())? > 0 {
                    record_device_list_change(tx, positions, user_id.as_str())?;
                }
                Ok(())
            })
            .await
    }

    async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        now_ms: u64,
        ip: Option<&str>,
    ) -> StorageResult<()> {
        let (user_id, device_id, ip) = (
            user_id.to_owned(),
            device_id.to_owned(),
            ip.map(str::to_owned),
        );
        let now = to_i64(now_ms, "now_ms")?;
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "UPDATE devices SET last_seen_ms = ?3, last_seen_ip = COALESCE(?4, last_seen_ip)
                     WHERE user_id = ?1 AND device_id = ?2",
                )
                .db()?
                .execute(params![user_id.as_str(), device_id, now, ip])
                .db()?;
                Ok(())
            })
            .await
    }
}

impl SqliteStore {
    /// Sets one nullable text column of a user row.
    async fn update_user(
        &self,
        user_id: &UserId,
        column: &'static str,
        value: Option<&str>,
    ) -> StorageResult<()> {
        let (user_id, value) = (user_id.to_owned(), value.map(str::to_owned));
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(&format!(
                    "UPDATE users SET {column} = ?2 WHERE user_id = ?1"
                ))
                .db()?
                .execute(params![user_id.as_str(), value])
                .db()?;
                Ok(())
            })
            .await
    }

    /// Sets one of the flag columns (`locked`, `suspended`).
    async fn set_flag(
        &self,
        user_id: &UserId,
        column: &'static str,
        value: bool,
    ) -> StorageResult<()> {
        let user_id = user_id.to_owned();
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(&format!(
                    "UPDATE users SET {column} = ?2 WHERE user_id = ?1"
                ))
                .db()?
                .execute(params![user_id.as_str(), value])
                .db()?;
                Ok(())
            })
            .await
    }
}

fn insert_token(
    conn: &Connection,
    token_hash: &str,
    refresh_token_hash: Option<&str>,
    user_id: &str,
    device_id: &str,
    expires_at_ms: Option<i64>,
    created_ms: i64,
) -> StorageResult<()> {
    conn.prepare_cached(
        "INSERT INTO access_tokens (token_hash, refresh_token_hash, user_id, device_id, expires_at_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .db()?
    .execute(params![
        token_hash,
        refresh_token_hash,
        user_id,
        device_id,
        expires_at_ms,
        created_ms
    ])
    .db()?;
    Ok(())
}

/// Deletes devices with their tokens (their keys and queued to-device messages go by cascade);
/// returns how many devices were deleted.
fn delete_device_rows(
    conn: &Connection,
    user_id: &str,
    only: Option<&str>,
    keep: Option<&str>,
) -> StorageResult<usize> {
    let filter =
        "user_id = ?1 AND (?2 IS NULL OR device_id = ?2) AND (?3 IS NULL OR device_id <> ?3)";
    conn.prepare_cached(&format!("DELETE FROM access_tokens WHERE {filter}"))
        .db()?
        .execute(params![user_id, only, keep])
        .db()?;
    conn.prepare_cached(&format!("DELETE FROM devices WHERE {filter}"))
        .db()?
        .execute(params![user_id, only, keep])
        .db()
}

/// Inserts the account unless its user ID is taken; `false` when it is. Every way of creating
/// an account (plain, with a validated address, with an SSO identity) starts here.
pub(crate) fn insert_user(tx: &rusqlite::Transaction<'_>, user: &NewUser) -> StorageResult<bool> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO users (user_id, password_hash, is_admin, created_ms, displayname, is_guest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (user_id) DO NOTHING",
        )
        .db()?
        .execute(params![
            user.user_id.as_str(),
            user.password_hash,
            user.is_admin,
            to_i64(user.created_ms, "created_ms")?,
            user.displayname,
            user.is_guest
        ])
        .db()?;
    Ok(inserted == 1)
}
