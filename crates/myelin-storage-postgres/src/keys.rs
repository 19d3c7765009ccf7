//! `KeyStore`: end-to-end encryption keys, the device-list change stream and to-device
//! messages. Rows of a device go with it (foreign keys with `ON DELETE CASCADE`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::rows::{self, CROSS_SIGNING_COLUMNS, DEVICE_KEYS_COLUMNS, TO_DEVICE_COLUMNS};
use myelin_storage::{
    ClaimedKey, CrossSigningKeyRecord, CrossSigningKind, DeviceKeysRecord, KeyClaim, KeyStore,
    QueuedToDevice, StorageResult, ToDeviceMessage, ToDeviceTxn,
};
use ruma::{OwnedUserId, UserId};

use crate::convert::{get, limit, now_ms, parse_id, text_list};
use crate::persist::take_position;
use crate::pool::{Conn, Params};
use crate::PgStore;

/// Records a device-list change of `user_id` at a new position.
pub(crate) async fn record_device_list_change(
    conn: &mut Conn,
    user_id: &str,
) -> StorageResult<StreamPos> {
    let pos = take_position(conn).await?;
    conn.execute(
        "INSERT INTO device_list_changes (stream_pos, user_id) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
        &[&pos.0, &user_id],
    )
    .await?;
    Ok(pos)
}

async fn device_exists(conn: &mut Conn, user_id: &str, device_id: &str) -> StorageResult<bool> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2",
            &[&user_id, &device_id],
        )
        .await?
        .is_some())
}

#[async_trait]
impl KeyStore for PgStore {
    async fn set_device_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys_json: &str,
    ) -> StorageResult<Option<StreamPos>> {
        let user = user_id.as_str();
        let mut conn = self.db.write().await?;
        let result = async {
            if !device_exists(&mut conn, user, device_id).await? {
                return Ok(None);
            }
            conn.execute(
                "INSERT INTO device_keys (user_id, device_id, keys_json) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET keys_json = excluded.keys_json",
                &[&user, &device_id, &keys_json],
            )
            .await?;
            record_device_list_change(&mut conn, user).await.map(Some)
        }
        .await;
        conn.finish(result).await
    }

    async fn device_keys(&self, user_ids: &[OwnedUserId]) -> StorageResult<Vec<DeviceKeysRecord>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = text_list(user_ids);
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {DEVICE_KEYS_COLUMNS}
             FROM device_keys k JOIN devices d
                 ON d.user_id = k.user_id AND d.device_id = k.device_id
             WHERE k.user_id = ANY($1::TEXT[])
             ORDER BY k.user_id, k.device_id"
        );
        conn.query_decode(&sql, &[&users], rows::device_keys).await
    }

    async fn add_one_time_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: &[(String, String)],
    ) -> StorageResult<()> {
        self.write_device_keys(
            user_id,
            device_id,
            keys,
            "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .await
    }

    async fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> StorageResult<BTreeMap<String, u64>> {
        let mut conn = self.db.read().await?;
        let counts = conn
            .query_decode(
                "SELECT algorithm, COUNT(*) FROM one_time_keys
                 WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
                &[&user_id.as_str(), &device_id],
                rows::key_count,
            )
            .await?;
        Ok(counts.into_iter().collect())
    }

    async fn set_fallback_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: &[(String, String)],
    ) -> StorageResult<()> {
        self.write_device_keys(
            user_id,
            device_id,
            keys,
            "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
             VALUES ($1, $2, $3, $4, $5, 0)
             ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET
                 key_id = excluded.key_id, key_json = excluded.key_json, used = 0",
        )
        .await
    }

    async fn unused_fallback_key_types(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> StorageResult<Vec<String>> {
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                "SELECT algorithm FROM fallback_keys
                 WHERE user_id = $1 AND device_id = $2 AND used = 0 ORDER BY algorithm",
                &[&user_id.as_str(), &device_id],
            )
            .await?;
        rows.iter().map(|row| get(row, 0)).collect()
    }

    async fn claim_keys(&self, claims: &[KeyClaim]) -> StorageResult<Vec<ClaimedKey>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.db.write().await?;
        let result = async {
            let mut claimed = Vec::new();
            for claim in claims {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [
                    &claim.user_id.as_str(),
                    &claim.device_id.as_str(),
                    &claim.algorithm,
                ];
                // The oldest one-time key, removed as it is read; else the fallback key.
                let mut found = conn
                    .query_opt(
                        "DELETE FROM one_time_keys WHERE seq = (
                             SELECT seq FROM one_time_keys
                             WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                             ORDER BY seq LIMIT 1 FOR UPDATE)
                         RETURNING key_id, key_json",
                        &params,
                    )
                    .await?;
                if found.is_none() {
                    found = conn
                        .query_opt(
                            "UPDATE fallback_keys SET used = 1
                             WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                             RETURNING key_id, key_json",
                            &params,
                        )
                        .await?;
                }
                if let Some(row) = found {
                    claimed.push(ClaimedKey {
                        user_id: claim.user_id.clone(),
                        device_id: claim.device_id.clone(),
                        key_id: get(&row, 0)?,
                        key_json: get(&row, 1)?,
                    });
                }
            }
            Ok(claimed)
        }
        .await;
        conn.finish(result).await
    }

    async fn set_cross_signing_keys(
        &self,
        user_id: &UserId,
        keys: &[(CrossSigningKind, String)],
    ) -> StorageResult<StreamPos> {
        let user = user_id.as_str();
        let mut conn = self.db.write().await?;
        let result = async {
            for (kind, key_json) in keys {
                conn.execute(
                    "INSERT INTO cross_signing_keys (user_id, kind, key_json) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, kind) DO UPDATE SET key_json = excluded.key_json",
                    &[&user, &kind.as_str(), key_json],
                )
                .await?;
            }
            record_device_list_change(&mut conn, user).await
        }
        .await;
        conn.finish(result).await
    }

    async fn cross_signing_keys(
        &self,
        user_ids: &[OwnedUserId],
    ) -> StorageResult<Vec<CrossSigningKeyRecord>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = text_list(user_ids);
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {CROSS_SIGNING_COLUMNS} FROM cross_signing_keys
             WHERE user_id = ANY($1::TEXT[]) ORDER BY user_id, kind"
        );
        conn.query_decode(&sql, &[&users], rows::cross_signing_key)
            .await
    }

    async fn mark_device_list_changed(&self, user_id: &UserId) -> StorageResult<StreamPos> {
        let mut conn = self.db.write().await?;
        let result = record_device_list_change(&mut conn, user_id.as_str()).await;
        conn.finish(result).await
    }

    async fn next_device_list_stream_id(
        &self,
        user_id: &UserId,
        at_least: i64,
    ) -> StorageResult<(Option<i64>, i64)> {
        let user = user_id.as_str();
        let mut conn = self.db.write().await?;
        let result = async {
            let previous: Option<i64> = conn
                .query_opt(
                    "SELECT stream_id FROM device_list_streams WHERE user_id = $1",
                    &[&user],
                )
                .await?
                .map(|row| get(&row, 0))
                .transpose()?;
            let next = previous.map_or(at_least, |p| at_least.max(p + 1));
            conn.execute(
                "INSERT INTO device_list_streams (user_id, stream_id) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
                &[&user, &next],
            )
            .await?;
            Ok((previous, next))
        }
        .await;
        conn.finish(result).await
    }

    async fn device_list_stream_id(&self, user_id: &UserId) -> StorageResult<Option<i64>> {
        let mut conn = self.db.read().await?;
        let row = conn
            .query_opt(
                "SELECT stream_id FROM device_list_streams WHERE user_id = $1",
                &[&user_id.as_str()],
            )
            .await?;
        row.map(|row| get(&row, 0)).transpose()
    }

    async fn device_list_changes(
        &self,
        since: StreamPos,
        up_to: StreamPos,
    ) -> StorageResult<Vec<OwnedUserId>> {
        if up_to <= since {
            return Ok(Vec::new());
        }
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                "SELECT DISTINCT user_id FROM device_list_changes
                 WHERE stream_pos > $1 AND stream_pos <= $2 ORDER BY user_id",
                &[&since.0, &up_to.0],
            )
            .await?;
        rows.iter()
            .map(|row| parse_id(get::<String>(row, 0)?, "device list change user"))
            .collect()
    }

    async fn queue_to_device(&self, messages: &[ToDeviceMessage]) -> StorageResult<StreamPos> {
        let mut conn = self.db.write().await?;
        let result = async {
            let pos = take_position(&mut conn).await?;
            insert_to_device(&mut conn, pos, messages).await?;
            Ok(pos)
        }
        .await;
        conn.finish(result).await
    }

    async fn queue_to_device_once(
        &self,
        txn: &ToDeviceTxn,
        local: &[ToDeviceMessage],
        remote: &[(ruma::OwnedServerName, String)],
    ) -> StorageResult<bool> {
        let mut conn = self.db.write().await?;
        let result = async {
            let recorded = conn
                .execute(
                    "INSERT INTO to_device_txns (user_id, device_id, event_type, txn_id)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[
                        &txn.user_id.as_str(),
                        &txn.device_id.as_str(),
                        &txn.event_type,
                        &txn.txn_id,
                    ],
                )
                .await?;
            if recorded == 0 {
                return Ok(false);
            }
            if !local.is_empty() {
                let pos = take_position(&mut conn).await?;
                insert_to_device(&mut conn, pos, local).await?;
            }
            let now = now_ms();
            for (destination, edu) in remote {
                conn.execute(
                    "INSERT INTO federation_outbox (destination, edu, created_ms) VALUES ($1, $2, $3)",
                    &[&destination.as_str(), edu, &now],
                )
                .await?;
            }
            Ok(true)
        }
        .await;
        conn.finish(result).await
    }

    async fn to_device_messages(
        &self,
        user_id: &UserId,
        device_id: &str,
        after: StreamPos,
        up_to: StreamPos,
        max: usize,
    ) -> StorageResult<Vec<QueuedToDevice>> {
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {TO_DEVICE_COLUMNS} FROM to_device_messages
             WHERE recipient = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4
             ORDER BY stream_pos, seq LIMIT $5"
        );
        let params: Params<'_> = &[
            &user_id.as_str(),
            &device_id,
            &after.0,
            &up_to.0,
            &limit(max),
        ];
        conn.query_decode(&sql, params, |row| rows::to_device(user_id, device_id, row))
            .await
    }

    async fn delete_to_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        up_to: StreamPos,
    ) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "DELETE FROM to_device_messages
                 WHERE recipient = $1 AND device_id = $2 AND stream_pos <= $3",
                &[&user_id.as_str(), &device_id, &up_to.0],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }
}

impl PgStore {
    /// Runs `sql` (parameters: user, device, algorithm, key ID, key JSON) for each key of an
    /// existing device, in one transaction; nothing for a device that does not exist.
    async fn write_device_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: &[(String, String)],
        sql: &str,
    ) -> StorageResult<()> {
        let user = user_id.as_str();
        let mut conn = self.db.write().await?;
        let result = async {
            if !device_exists(&mut conn, user, device_id).await? {
                return Ok(());
            }
            for (key_id, key_json) in keys {
                conn.execute(
                    sql,
                    &[
                        &user,
                        &device_id,
                        &rows::key_algorithm(key_id),
                        key_id,
                        key_json,
                    ],
                )
                .await?;
            }
            Ok(())
        }
        .await;
        conn.finish(result).await
    }
}

/// Queues to-device messages at `pos`; those for devices that do not exist are dropped.
async fn insert_to_device(
    conn: &mut Conn,
    pos: StreamPos,
    messages: &[ToDeviceMessage],
) -> StorageResult<()> {
    for m in messages {
        conn.execute(
            "INSERT INTO to_device_messages
                 (stream_pos, recipient, device_id, sender, event_type, content_json)
             SELECT $1, $2, $3, $4, $5, $6
             WHERE EXISTS (SELECT 1 FROM devices WHERE user_id = $2 AND device_id = $3)",
            &[
                &pos.0,
                &m.recipient.as_str(),
                &m.device_id.as_str(),
                &m.sender.as_str(),
                &m.event_type,
                &m.content_json,
            ],
        )
        .await?;
    }
    Ok(())
}
