//! `ThreepidStore`: e-mail validation sessions and the addresses bound to accounts.

use async_trait::async_trait;
use myelin_storage::rows::Row;
use myelin_storage::{
    NewUser, NewUserWithThreepid, StorageResult, ThreepidSession, ThreepidStore, UserThreepid,
};
use ruma::{OwnedUserId, UserId};
use rusqlite::params;

use crate::convert::{opt_to_i64, parse_id, query_all, query_first, to_i64, to_u64, Db};
use crate::SqliteStore;

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
impl ThreepidStore for SqliteStore {
    async fn save_threepid_session(&self, s: ThreepidSession) -> StorageResult<()> {
        let values = (
            to_i64(s.send_attempt, "send_attempt")?,
            to_i64(s.created_ms, "created_ms")?,
            to_i64(s.expires_ms, "expires_ms")?,
            opt_to_i64(s.validated_ms, "validated_ms")?,
        );
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO threepid_sessions ({SESSION_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ))
                .db()?
                .execute(params![
                    s.sid,
                    s.client_secret,
                    s.medium,
                    s.address,
                    s.token_hash,
                    values.0,
                    values.1,
                    values.2,
                    values.3
                ])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn threepid_session(
        &self,
        sid: &str,
        client_secret: &str,
    ) -> StorageResult<Option<ThreepidSession>> {
        let (sid, secret) = (sid.to_owned(), client_secret.to_owned());
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {SESSION_COLUMNS} FROM threepid_sessions
                     WHERE sid = ?1 AND client_secret = ?2"
                );
                query_first(conn, &sql, params![sid, secret], session)
            })
            .await
    }

    async fn threepid_session_for(
        &self,
        client_secret: &str,
        medium: &str,
        address: &str,
    ) -> StorageResult<Option<ThreepidSession>> {
        let (secret, medium, address) = (
            client_secret.to_owned(),
            medium.to_owned(),
            address.to_owned(),
        );
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {SESSION_COLUMNS} FROM threepid_sessions
                     WHERE client_secret = ?1 AND medium = ?2 AND address = ?3
                     ORDER BY created_ms DESC LIMIT 1"
                );
                query_first(conn, &sql, params![secret, medium, address], session)
            })
            .await
    }

    async fn validate_threepid_session(
        &self,
        sid: &str,
        client_secret: &str,
        token_hash: &str,
        now_ms: u64,
    ) -> StorageResult<bool> {
        let (sid, secret, hash) = (
            sid.to_owned(),
            client_secret.to_owned(),
            token_hash.to_owned(),
        );
        let now = to_i64(now_ms, "now")?;
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "UPDATE threepid_sessions SET validated_ms = ?4
                     WHERE sid = ?1 AND client_secret = ?2 AND token_hash = ?3
                       AND validated_ms IS NULL AND expires_ms > ?4",
                )
                .db()?
                .execute(params![sid, secret, hash, now])
                .db()?;
                let validated: Option<i64> = tx
                    .prepare_cached(
                        "SELECT validated_ms FROM threepid_sessions
                         WHERE sid = ?1 AND client_secret = ?2 AND token_hash = ?3",
                    )
                    .db()?
                    .query_row(params![sid, secret, hash], |r| r.get(0))
                    .unwrap_or(None);
                Ok(validated.is_some())
            })
            .await
    }

    async fn add_user_threepid(&self, t: UserThreepid) -> StorageResult<bool> {
        let (validated, added) = (
            to_i64(t.validated_ms, "validated_ms")?,
            to_i64(t.added_ms, "added_ms")?,
        );
        self.db
            .write(move |tx, _| {
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO user_threepids (medium, address, user_id, validated_ms, added_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (medium, address) DO NOTHING",
                    )
                    .db()?
                    .execute(params![t.medium, t.address, t.user_id.as_str(), validated, added])
                    .db()?;
                Ok(inserted == 1)
            })
            .await
    }

    async fn create_user_with_threepid(
        &self,
        user: NewUser,
        t: UserThreepid,
    ) -> StorageResult<NewUserWithThreepid> {
        let (validated, added) = (
            to_i64(t.validated_ms, "validated_ms")?,
            to_i64(t.added_ms, "added_ms")?,
        );
        self.db
            .write(move |tx, _| {
                let user_id = user.user_id.as_str();
                if !crate::account::insert_user(tx, &user)? {
                    return Ok(NewUserWithThreepid::UserInUse);
                }
                let bound = tx
                    .prepare_cached(
                        "INSERT INTO user_threepids (medium, address, user_id, validated_ms, added_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (medium, address) DO NOTHING",
                    )
                    .db()?
                    .execute(params![t.medium, t.address, user_id, validated, added])
                    .db()?;
                if bound == 0 {
                    // Taken by another registration: the account goes with it, in this
                    // transaction, so it never existed.
                    tx.execute("DELETE FROM users WHERE user_id = ?1", [user_id])
                        .db()?;
                    return Ok(NewUserWithThreepid::ThreepidInUse);
                }
                Ok(NewUserWithThreepid::Created)
            })
            .await
    }

    async fn remove_user_threepid(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
    ) -> StorageResult<bool> {
        let (user, medium, address) = (user_id.to_owned(), medium.to_owned(), address.to_owned());
        self.db
            .write(move |tx, _| {
                let removed = tx
                    .prepare_cached(
                        "DELETE FROM user_threepids
                         WHERE user_id = ?1 AND medium = ?2 AND address = ?3",
                    )
                    .db()?
                    .execute(params![user.as_str(), medium, address])
                    .db()?;
                Ok(removed == 1)
            })
            .await
    }

    async fn user_threepids(&self, user_id: &UserId) -> StorageResult<Vec<UserThreepid>> {
        let user = user_id.to_owned();
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT user_id, medium, address, validated_ms, added_ms FROM user_threepids
                     WHERE user_id = ?1 ORDER BY medium, address",
                    [user.as_str()],
                    user_threepid,
                )
            })
            .await
    }

    async fn user_for_threepid(
        &self,
        medium: &str,
        address: &str,
    ) -> StorageResult<Option<OwnedUserId>> {
        let (medium, address) = (medium.to_owned(), address.to_owned());
        self.db
            .read(move |conn| {
                query_first(
                    conn,
                    "SELECT user_id FROM user_threepids WHERE medium = ?1 AND address = ?2",
                    params![medium, address],
                    |row: &dyn Row| parse_id(row.text(0)?, "threepid user"),
                )
            })
            .await
    }

    async fn add_threepid_id_server(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> StorageResult<()> {
        let row = binding_row(user_id, medium, address, id_server);
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "INSERT INTO user_threepid_id_servers (user_id, medium, address, id_server)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )
                .db()?
                .execute(params![row.0, row.1, row.2, row.3])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn remove_threepid_id_server(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> StorageResult<()> {
        let row = binding_row(user_id, medium, address, id_server);
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "DELETE FROM user_threepid_id_servers
                     WHERE user_id = ?1 AND medium = ?2 AND address = ?3 AND id_server = ?4",
                )
                .db()?
                .execute(params![row.0, row.1, row.2, row.3])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn threepid_id_servers(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
    ) -> StorageResult<Vec<String>> {
        let row = binding_row(user_id, medium, address, "");
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT id_server FROM user_threepid_id_servers
                     WHERE user_id = ?1 AND medium = ?2 AND address = ?3 ORDER BY id_server",
                    params![row.0, row.1, row.2],
                    |r: &dyn Row| r.text(0),
                )
            })
            .await
    }

    async fn bound_threepids(&self, user_id: &UserId) -> StorageResult<Vec<(String, String)>> {
        let user = user_id.to_string();
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT DISTINCT medium, address FROM user_threepid_id_servers
                     WHERE user_id = ?1 ORDER BY medium, address",
                    [user.as_str()],
                    |r: &dyn Row| Ok((r.text(0)?, r.text(1)?)),
                )
            })
            .await
    }
}

/// The owned key of a `user_threepid_id_servers` row, for the closures that run on the
/// database threads.
fn binding_row(
    user_id: &UserId,
    medium: &str,
    address: &str,
    id_server: &str,
) -> (String, String, String, String) {
    (
        user_id.to_string(),
        medium.to_owned(),
        address.to_owned(),
        id_server.to_owned(),
    )
}
