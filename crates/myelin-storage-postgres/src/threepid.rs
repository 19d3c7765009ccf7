//! `ThreepidStore`: e-mail validation sessions and the addresses bound to accounts.

use async_trait::async_trait;
use myelin_storage::rows::Row;
use myelin_storage::{
    NewUser, NewUserWithThreepid, StorageResult, ThreepidSession, ThreepidStore, UserThreepid,
};
use ruma::{OwnedUserId, UserId};

use crate::convert::{opt_to_i64, parse_id, to_i64, to_u64};
use crate::PgStore;

const SESSION_COLUMNS: &str = "sid, client_secret, medium, address, token_hash, send_attempt,
                               created_ms, expires_ms, validated_ms";

fn session(row: &dyn Row) -> StorageResult<ThreepidSession> {
    Ok(ThreepidSession {
        sid: row.text(0)?,
        client_secret: row.text(1)?,
        medium: row.text(2)?,
        address: row.text(3)?,
        token_hash: row.text(4)?,
        send_attempt: to_u64(row.int(5)?, "send_attempt")?,
        created_ms: to_u64(row.int(6)?, "created_ms")?,
        expires_ms: to_u64(row.int(7)?, "expires_ms")?,
        validated_ms: row
            .opt_int(8)?
            .map(|v| to_u64(v, "validated_ms"))
            .transpose()?,
    })
}

fn user_threepid(row: &dyn Row) -> StorageResult<UserThreepid> {
    Ok(UserThreepid {
        user_id: parse_id(row.text(0)?, "threepid user")?,
        medium: row.text(1)?,
        address: row.text(2)?,
        validated_ms: to_u64(row.int(3)?, "validated_ms")?,
        added_ms: to_u64(row.int(4)?, "added_ms")?,
    })
}

#[async_trait]
impl ThreepidStore for PgStore {
    async fn save_threepid_session(&self, s: ThreepidSession) -> StorageResult<()> {
        let attempt = to_i64(s.send_attempt, "send_attempt")?;
        let created = to_i64(s.created_ms, "created_ms")?;
        let expires = to_i64(s.expires_ms, "expires_ms")?;
        let validated = opt_to_i64(s.validated_ms, "validated_ms")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                &format!(
                    "INSERT INTO threepid_sessions ({SESSION_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (sid) DO UPDATE SET
                         client_secret = excluded.client_secret, medium = excluded.medium,
                         address = excluded.address, token_hash = excluded.token_hash,
                         send_attempt = excluded.send_attempt, created_ms = excluded.created_ms,
                         expires_ms = excluded.expires_ms, validated_ms = excluded.validated_ms"
                ),
                &[
                    &s.sid,
                    &s.client_secret,
                    &s.medium,
                    &s.address,
                    &s.token_hash,
                    &attempt,
                    &created,
                    &expires,
                    &validated,
                ],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn threepid_session(
        &self,
        sid: &str,
        client_secret: &str,
    ) -> StorageResult<Option<ThreepidSession>> {
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM threepid_sessions WHERE sid = $1 AND client_secret = $2"
        );
        conn.query_opt_decode(&sql, &[&sid, &client_secret], session)
            .await
    }

    async fn threepid_session_for(
        &self,
        client_secret: &str,
        medium: &str,
        address: &str,
    ) -> StorageResult<Option<ThreepidSession>> {
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM threepid_sessions
             WHERE client_secret = $1 AND medium = $2 AND address = $3
             ORDER BY created_ms DESC LIMIT 1"
        );
        conn.query_opt_decode(&sql, &[&client_secret, &medium, &address], session)
            .await
    }

    async fn validate_threepid_session(
        &self,
        sid: &str,
        client_secret: &str,
        token_hash: &str,
        now_ms: u64,
    ) -> StorageResult<bool> {
        let now = to_i64(now_ms, "now")?;
        let mut conn = self.db.write().await?;
        let result = async {
            conn.execute(
                "UPDATE threepid_sessions SET validated_ms = $4
                 WHERE sid = $1 AND client_secret = $2 AND token_hash = $3
                   AND validated_ms IS NULL AND expires_ms > $4",
                &[&sid, &client_secret, &token_hash, &now],
            )
            .await?;
            conn.query_opt_decode(
                "SELECT validated_ms FROM threepid_sessions
                 WHERE sid = $1 AND client_secret = $2 AND token_hash = $3",
                &[&sid, &client_secret, &token_hash],
                |row| row.opt_int(0),
            )
            .await
            .map(|v| v.flatten().is_some())
        }
        .await;
        conn.finish(result).await
    }

    async fn add_user_threepid(&self, t: UserThreepid) -> StorageResult<bool> {
        let validated = to_i64(t.validated_ms, "validated_ms")?;
        let added = to_i64(t.added_ms, "added_ms")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO user_threepids (medium, address, user_id, validated_ms, added_ms)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (medium, address) DO NOTHING",
                &[
                    &t.medium,
                    &t.address,
                    &t.user_id.as_str(),
                    &validated,
                    &added,
                ],
            )
            .await
            .map(|n| n == 1);
        conn.finish(result).await
    }

    async fn create_user_with_threepid(
        &self,
        user: NewUser,
        t: UserThreepid,
    ) -> StorageResult<NewUserWithThreepid> {
        let validated = to_i64(t.validated_ms, "validated_ms")?;
        let added = to_i64(t.added_ms, "added_ms")?;
        let user_id = user.user_id.as_str();
        let mut conn = self.db.write().await?;
        let result = async {
            if !crate::account::insert_user(&mut conn, &user).await? {
                return Ok(NewUserWithThreepid::UserInUse);
            }
            let bound = conn
                .execute(
                    "INSERT INTO user_threepids (medium, address, user_id, validated_ms, added_ms)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (medium, address) DO NOTHING",
                    &[&t.medium, &t.address, &user_id, &validated, &added],
                )
                .await?;
            if bound == 0 {
                // Taken by another registration: the account goes with it, in this
                // transaction, so it never existed.
                conn.execute("DELETE FROM users WHERE user_id = $1", &[&user_id])
                    .await?;
                return Ok(NewUserWithThreepid::ThreepidInUse);
            }
            Ok(NewUserWithThreepid::Created)
        }
        .await;
        conn.finish(result).await
    }

    async fn remove_user_threepid(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
    ) -> StorageResult<bool> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "DELETE FROM user_threepids WHERE user_id = $1 AND medium = $2 AND address = $3",
                &[&user_id.as_str(), &medium, &address],
            )
            .await
            .map(|n| n == 1);
        conn.finish(result).await
    }

    async fn user_threepids(&self, user_id: &UserId) -> StorageResult<Vec<UserThreepid>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            "SELECT user_id, medium, address, validated_ms, added_ms FROM user_threepids
             WHERE user_id = $1 ORDER BY medium COLLATE \"C\", address COLLATE \"C\"",
            &[&user_id.as_str()],
            user_threepid,
        )
        .await
    }

    async fn user_for_threepid(
        &self,
        medium: &str,
        address: &str,
    ) -> StorageResult<Option<OwnedUserId>> {
        let mut conn = self.db.read().await?;
        conn.query_opt_decode(
            "SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2",
            &[&medium, &address],
            |row| parse_id(row.text(0)?, "threepid user"),
        )
        .await
    }

    async fn add_threepid_id_server(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO user_threepid_id_servers (user_id, medium, address, id_server)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&user_id.as_str(), &medium, &address, &id_server],
            )
            .await
            .map(|_| ());
        conn.finish(result).await
    }

    async fn remove_threepid_id_server(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "DELETE FROM user_threepid_id_servers
                 WHERE user_id = $1 AND medium = $2 AND address = $3 AND id_server = $4",
                &[&user_id.as_str(), &medium, &address, &id_server],
            )
            .await
            .map(|_| ());
        conn.finish(result).await
    }

    async fn threepid_id_servers(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
    ) -> StorageResult<Vec<String>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            "SELECT id_server FROM user_threepid_id_servers
             WHERE user_id = $1 AND medium = $2 AND address = $3
             ORDER BY id_server COLLATE \"C\"",
            &[&user_id.as_str(), &medium, &address],
            |row| row.text(0),
        )
        .await
    }

    async fn bound_threepids(&self, user_id: &UserId) -> StorageResult<Vec<(String, String)>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            "SELECT medium, address FROM user_threepid_id_servers WHERE user_id = $1
             GROUP BY medium, address ORDER BY medium COLLATE \"C\", address COLLATE \"C\"",
            &[&user_id.as_str()],
            |row| Ok((row.text(0)?, row.text(1)?)),
        )
        .await
    }
}
