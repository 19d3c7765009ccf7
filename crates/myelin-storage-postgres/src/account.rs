//! `AccountStore`: users, devices and access/refresh tokens (stored as hashes only).

use async_trait::async_trait;
use myelin_storage::rows::{self, DEVICE_COLUMNS, USER_COLUMNS};
use myelin_storage::{
    AccountStore, DeviceRecord, NewSession, NewUser, StorageResult, TokenOwner, UserRecord,
};
use ruma::{OwnedDeviceId, OwnedUserId, UserId};

use crate::backup::delete_user_backups;
use crate::convert::{get, opt_to_i64, parse_json, to_i64};
use crate::keys::record_device_list_change;
use crate::pool::Conn;
use crate::PgStore;

#[async_trait]
impl AccountStore for PgStore {
    async fn create_user(&self, user: NewUser) -> StorageResult<bool> {
        let mut conn = self.db.write().await?;
        let result = insert_user(&mut conn, &user).await;
        conn.finish(result).await
    }

    async fn get_user(&self, user_id: &UserId) -> StorageResult<Option<UserRecord>> {
        let mut conn = self.db.read().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = $1");
        conn.query_opt_decode(&sql, &[&user_id.as_str()], |row| {
            rows::user(user_id.to_owned(), row)
        })
        .await
    }

    async fn set_password_hash(&self, user_id: &UserId, hash: &str) -> StorageResult<()> {
        self.update_user(user_id, "password_hash", Some(hash)).await
    }

    async fn upgrade_guest(&self, user_id: &UserId, password_hash: &str) -> StorageResult<bool> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "UPDATE users SET is_guest = FALSE, password_hash = $2
                 WHERE user_id = $1 AND is_guest",
                &[&user_id.as_str(), &password_hash],
            )
            .await
            .map(|updated| updated == 1);
        conn.finish(result).await
    }

    async fn profile_fields(
        &self,
        user_id: &UserId,
    ) -> StorageResult<Vec<(String, serde_json::Value)>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            "SELECT field, value FROM profile_fields WHERE user_id = $1 ORDER BY field COLLATE \"C\"",
            &[&user_id.as_str()],
            |row| Ok((row.text(0)?, parse_json(&row.text(1)?, "profile field")?)),
        )
        .await
    }

    async fn set_profile_field(
        &self,
        user_id: &UserId,
        key: &str,
        value: Option<&serde_json::Value>,
    ) -> StorageResult<()> {
        let value = value.map(serde_json::Value::to_string);
        let mut conn = self.db.write().await?;
        let result = match value {
            Some(value) => {
                conn.execute(
                    "INSERT INTO profile_fields (user_id, field, value) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value",
                    &[&user_id.as_str(), &key, &value],
                )
                .await
            }
            None => {
                conn.execute(
                    "DELETE FROM profile_fields WHERE user_id = $1 AND field = $2",
                    &[&user_id.as_str(), &key],
                )
                .await
            }
        }
        .map(drop);
        conn.finish(result).await
    }

    async fn set_locked(&self, user_id: &UserId, locked: bool) -> StorageResult<()> {
        self.set_flag(user_id, "locked", locked).await
    }

    async fn set_suspended(&self, user_id: &UserId, suspended: bool) -> StorageResult<()> {
        self.set_flag(user_id, "suspended", suspended).await
    }

    async fn deactivate_user(&self, user_id: &UserId, erase: bool) -> StorageResult<()> {
        let user = user_id.as_str();
        let mut conn = self.db.write().await?;
        let result = async {
            conn.execute(
                "UPDATE users SET deactivated = TRUE WHERE user_id = $1",
                &[&user],
            )
            .await?;
            if erase {
                let now = crate::convert::now_ms();
                conn.execute(
                    "INSERT INTO erased_users (user_id, erased_ms) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO NOTHING",
                    &[&user, &now],
                )
                .await?;
                conn.execute(
                    "UPDATE users SET displayname = NULL, avatar_url = NULL WHERE user_id = $1",
                    &[&user],
                )
                .await?;
            }
            if delete_device_rows(&mut conn, user, None, None).await? > 0 {
                record_device_list_change(&mut conn, user).await?;
            }
            conn.execute(
                "DELETE FROM cross_signing_keys WHERE user_id = $1",
                &[&user],
            )
            .await?;
            conn.execute("DELETE FROM profile_fields WHERE user_id = $1", &[&user])
                .await?;
            conn.execute("DELETE FROM user_threepids WHERE user_id = $1", &[&user])
                .await?;
            delete_user_backups(&mut conn, user).await
        }
        .await;
        conn.finish(result).await
    }

    async fn erased_users(&self, user_ids: &[OwnedUserId]) -> StorageResult<Vec<OwnedUserId>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = crate::convert::text_list(user_ids);
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                "SELECT user_id FROM erased_users WHERE user_id = ANY($1::TEXT[]) ORDER BY user_id",
                &[&users],
            )
            .await?;
        rows.iter()
            .map(|row| myelin_storage::convert::parse_id(get::<String>(row, 0)?, "erased user"))
            .collect()
    }

    async fn set_displayname(&self, user_id: &UserId, name: Option<&str>) -> StorageResult<()> {
        self.update_user(user_id, "displayname", name).await
    }

    async fn set_avatar_url(&self, user_id: &UserId, url: Option<&str>) -> StorageResult<()> {
        self.update_user(user_id, "avatar_url", url).await
    }

    async fn create_session(&self, session: NewSession) -> StorageResult<()> {
        let created_ms = to_i64(session.created_ms, "created_ms")?;
        let expires = opt_to_i64(session.expires_at_ms, "expires_at_ms")?;
        let mut conn = self.db.write().await?;
        let result = async {
            conn.execute(
                "INSERT INTO devices (user_id, device_id, display_name, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, device_id) DO NOTHING",
                &[
                    &session.user_id.as_str(),
                    &session.device_id.as_str(),
                    &session.device_display_name,
                    &created_ms,
                ],
            )
            .await?;
            insert_token(
                &mut conn,
                &session.access_token_hash,
                session.refresh_token_hash.as_deref(),
                session.user_id.as_str(),
                session.device_id.as_str(),
                expires,
                created_ms,
            )
            .await
        }
        .await;
        conn.finish(result).await
    }

    async fn find_access_token(&self, token_hash: &str) -> StorageResult<Option<TokenOwner>> {
        let mut conn = self.db.read().await?;
        conn.query_opt_decode(
            "SELECT t.user_id, t.device_id, t.expires_at_ms, u.is_guest, u.locked, u.suspended
             FROM access_tokens t JOIN users u ON u.user_id = t.user_id
             WHERE t.token_hash = $1",
            &[&token_hash],
            |row| {
                let flags = rows::AccountFlags::read(row, 3)?;
                rows::token_owner(row.text(0)?, row.text(1)?, row.opt_int(2)?, flags)
            },
        )
        .await
    }

    async fn refresh_session(
        &self,
        refresh_token_hash: &str,
        new_access_token_hash: &str,
        new_refresh_token_hash: &str,
        expires_at_ms: Option<u64>,
    ) -> StorageResult<Option<TokenOwner>> {
        let expires = opt_to_i64(expires_at_ms, "expires_at_ms")?;
        let mut conn = self.db.write().await?;
        let result = async {
            let row = conn
                .query_opt(
                    "SELECT token_hash, user_id, device_id, created_ms FROM access_tokens
                     WHERE refresh_token_hash = $1",
                    &[&refresh_token_hash],
                )
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let (old_access, user_id, device_id, created_ms): (String, String, String, i64) =
                (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?, get(&row, 3)?);
            conn.execute(
                "DELETE FROM access_tokens WHERE token_hash = $1",
                &[&old_access],
            )
            .await?;
            insert_token(
                &mut conn,
                new_access_token_hash,
                Some(new_refresh_token_hash),
                &user_id,
                &device_id,
                expires,
                created_ms,
            )
            .await?;
            // The caller reads only the user and device of a refreshed session.
            rows::token_owner(user_id, device_id, expires, Default::default()).map(Some)
        }
        .await;
        conn.finish(result).await
    }

    async fn list_devices(&self, user_id: &UserId) -> StorageResult<Vec<DeviceRecord>> {
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY device_id COLLATE \"C\""
        );
        conn.query_decode(&sql, &[&user_id.as_str()], rows::device)
            .await
    }

    async fn get_device(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> StorageResult<Option<DeviceRecord>> {
        let mut conn = self.db.read().await?;
        let sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 AND device_id = $2");
        conn.query_opt_decode(&sql, &[&user_id.as_str(), &device_id], rows::device)
            .await
    }

    async fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &str,
        name: Option<&str>,
    ) -> StorageResult<bool> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
                &[&user_id.as_str(), &device_id, &name],
            )
            .await
            .map(|updated| updated == 1);
        conn.finish(result).await
    }

    async fn put_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        name: Option<&str>,
        created_ms: u64,
    ) -> StorageResult<bool> {
        let created_ms = to_i64(created_ms, "created_ms")?;
        let mut conn = self.db.write().await?;
        let result = async {
            let created = conn
                .execute(
                    "INSERT INTO devices (user_id, device_id, display_name, created_ms)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO NOTHING",
                    &[&user_id.as_str(), &device_id, &name, &created_ms],
                )
                .await?
                == 1;
            if !created && name.is_some() {
                conn.execute(
                    "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
                    &[&user_id.as_str(), &device_id, &name],
                )
                .await?;
            }
            Ok(created)
        }
        .await;
        conn.finish(result).await
    }

    async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
    ) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = async {
            let mut deleted = 0;
            for device_id in device_ids {
                deleted +=
                    delete_device_rows(&mut conn, user_id.as_str(), Some(device_id.as_str()), None)
                        .await?;
            }
            if deleted > 0 {
                record_device_list_change(&mut conn, user_id.as_str()).await?;
            }
            Ok(())
        }
        .await;
        conn.finish(result).await
    }

    async fn delete_all_devices(&self, user_id: &UserId, keep: Option<&str>) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = async {
            if delete_device_rows(&mut conn, user_id.as_str(), None, keep).await? > 0 {
                record_device_list_change(&mut conn, user_id.as_str()).await?;
            }
            Ok(())
        }
        .await;
        conn.finish(result).await
    }

    async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        now_ms: u64,
        ip: Option<&str>,
    ) -> StorageResult<()> {
        let now = to_i64(now_ms, "now_ms")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "UPDATE devices SET last_seen_ms = $3, last_seen_ip = COALESCE($4, last_seen_ip)
                 WHERE user_id = $1 AND device_id = $2",
                &[&user_id.as_str(), &device_id, &now, &ip],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }
}

impl PgStore {
    /// Sets one nullable text column of a user row.
    async fn update_user(
        &self,
        user_id: &UserId,
        column: &'static str,
        value: Option<&str>,
    ) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                &format!("UPDATE users SET {column} = $2 WHERE user_id = $1"),
                &[&user_id.as_str(), &value],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    /// Sets one of the flag columns (`locked`, `suspended`).
    async fn set_flag(
        &self,
        user_id: &UserId,
        column: &'static str,
        value: bool,
    ) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                &format!("UPDATE users SET {column} = $2 WHERE user_id = $1"),
                &[&user_id.as_str(), &value],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }
}

async fn insert_token(
    conn: &mut Conn,
    token_hash: &str,
    refresh_token_hash: Option<&str>,
    user_id: &str,
    device_id: &str,
    expires_at_ms: Option<i64>,
    created_ms: i64,
) -> StorageResult<()> {
    conn.execute(
        "INSERT INTO access_tokens (token_hash, refresh_token_hash, user_id, device_id, expires_at_ms, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &token_hash,
            &refresh_token_hash,
            &user_id,
            &device_id,
            &expires_at_ms,
            &created_ms,
        ],
    )
    .await?;
    Ok(())
}

/// Deletes devices with their tokens (their keys and queued to-device messages go by cascade);
/// returns how many devices were deleted.
async fn delete_device_rows(
    conn: &mut Conn,
    user_id: &str,
    only: Option<&str>,
    keep: Option<&str>,
) -> StorageResult<u64> {
    let filter = "user_id = $1 AND ($2::TEXT IS NULL OR device_id = $2) AND ($3::TEXT IS NULL OR device_id <> $3)";
    conn.execute(
        &format!("DELETE FROM access_tokens WHERE {filter}"),
        &[&user_id, &only, &keep],
    )
    .await?;
    conn.execute(
        &format!("DELETE FROM devices WHERE {filter}"),
        &[&user_id, &only, &keep],
    )
    .await
}

/// Inserts the account unless its user ID is taken; `false` when it is. Every way of creating
/// an account (plain, with a validated address, with an SSO identity) starts here.
pub(crate) async fn insert_user(conn: &mut Conn, user: &NewUser) -> StorageResult<bool> {
    let inserted = conn
        .execute(
            "INSERT INTO users (user_id, password_hash, is_admin, created_ms, displayname, is_guest)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO NOTHING",
            &[
                &user.user_id.as_str(),
                &user.password_hash,
                &user.is_admin,
                &to_i64(user.created_ms, "created_ms")?,
                &user.displayname,
                &user.is_guest,
            ],
        )
        .await?;
    Ok(inserted == 1)
}
