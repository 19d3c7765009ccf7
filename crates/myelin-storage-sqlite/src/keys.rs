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
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::convert::{json_list, limit, now_ms, parse_id, query_all, Db};
use crate::pool::Positions;
use crate::SqliteStore;

/// Records a device-list change of `user_id` at this write's position.
pub(crate) fn record_device_list_change(
    tx: &Transaction<'_>,
    positions: &mut Positions,
    user_id: &str,
) -> StorageResult<StreamPos> {
    let pos = positions.take(tx)?;
    tx.prepare_cached(
        "INSERT INTO device_list_changes (stream_pos, user_id) VALUES (?1, ?2)
         ON CONFLICT DO NOTHING",
    )
    .db()?
    .execute(params![pos.0, user_id])
    .db()?;
    Ok(pos)
}

fn device_exists(conn: &Connection, user_id: &str, device_id: &str) -> StorageResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2")
        .db()?
        .query_row(params![user_id, device_id], |_| Ok(()))
        .optional()
        .db()?
        .is_some())
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn set_device_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys_json: &str,
    ) -> StorageResult<Option<StreamPos>> {
        let (user_id, device_id, keys_json) = (
            user_id.to_owned(),
            device_id.to_owned(),
            keys_json.to_owned(),
        );
        self.db
            .write(move |tx, positions| {
                if !device_exists(tx, user_id.as_str(), &device_id)? {
                    return Ok(None);
                }
                tx.prepare_cached(
                    "INSERT INTO device_keys (user_id, device_id, keys_json) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, device_id) DO UPDATE SET keys_json = excluded.keys_json",
                )
                .db()?
                .execute(params![user_id.as_str(), device_id, keys_json])
                .db()?;
                record_device_list_change(tx, positions, user_id.as_str()).map(Some)
            })
            .await
    }

    async fn device_keys(&self, user_ids: &[OwnedUserId]) -> StorageResult<Vec<DeviceKeysRecord>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = json_list(user_ids)?;
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {DEVICE_KEYS_COLUMNS}
                     FROM device_keys k JOIN devices d
                         ON d.user_id = k.user_id AND d.device_id = k.device_id
                     WHERE k.user_id IN (SELECT value FROM json_each(?1))
                     ORDER BY k.user_id, k.device_id"
                );
                query_all(conn, &sql, [users], rows::device_keys)
            })
            .await
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
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )
        .await
    }

    async fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> StorageResult<BTreeMap<String, u64>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.db
            .read(move |conn| {
                let counts = query_all(
                    conn,
                    "SELECT algorithm, COUNT(*) FROM one_time_keys
                     WHERE user_id = ?1 AND device_id = ?2 GROUP BY algorithm",
                    params![user_id.as_str(), device_id],
                    rows::key_count,
                )?;
                Ok(counts.into_iter().collect())
            })
            .await
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
             VALUES (?1, ?2, ?3, ?4, ?5, 0)
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
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT algorithm FROM fallback_keys
                     WHERE user_id = ?1 AND device_id = ?2 AND used = 0 ORDER BY algorithm",
                )
                .db()?
                .query_map(params![user_id.as_str(), device_id], |row| row.get(0))
                .db()?
                .collect::<rusqlite::Result<Vec<String>>>()
                .db()
            })
            .await
    }

    async fn claim_keys(&self, claims: &[KeyClaim]) -> StorageResult<Vec<ClaimedKey>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let claims = claims.to_vec();
        self.db
            .write(move |tx, _| {
                let mut claimed = Vec::new();
                for claim in &claims {
                    let (user, device) = (claim.user_id.as_str(), claim.device_id.as_str());
                    let one_time = tx
                        .prepare_cached(
                            "SELECT seq, key_id, key_json FROM one_time_keys
                             WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3
                             ORDER BY seq LIMIT 1",
                        )
                        .db()?
                        .query_row(params![user, device, claim.algorithm], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get(2)?))
                        })
                        .optional()
                        .db()?;
                    let found = match one_time {
                        Some((seq, key_id, key_json)) => {
                            tx.prepare_cached("DELETE FROM one_time_keys WHERE seq = ?1")
                                .db()?
                                .execute([seq])
                                .db()?;
                            Some((key_id, key_json))
                        }
                        None => {
                            let fallback = tx
                                .prepare_cached(
                                    "UPDATE fallback_keys SET used = 1
                                     WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3
                                     RETURNING key_id, key_json",
                                )
                                .db()?
                                .query_row(params![user, device, claim.algorithm], |row| {
                                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                                })
                                .optional()
                                .db()?;
                            fallback
                        }
                    };
                    if let Some((key_id, key_json)) = found {
                        claimed.push(ClaimedKey {
                            user_id: claim.user_id.clone(),
                            device_id: claim.device_id.clone(),
                            key_id,
                            key_json,
                        });
                    }
                }
                Ok(claimed)
            })
            .await
    }

    async fn set_cross_signing_keys(
        &self,
        user_id: &UserId,
        keys: &[(CrossSigningKind, String)],
    ) -> StorageResult<StreamPos> {
        let (user_id, keys) = (user_id.to_owned(), keys.to_vec());
        self.db
            .write(move |tx, positions| {
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO cross_signing_keys (user_id, kind, key_json) VALUES (?1, ?2, ?3)
                         ON CONFLICT (user_id, kind) DO UPDATE SET key_json = excluded.key_json",
                    )
                    .db()?;
                for (kind, key_json) in &keys {
                    upsert
                        .execute(params![user_id.as_str(), kind.as_str(), key_json])
                        .db()?;
                }
                record_device_list_change(tx, positions, user_id.as_str())
            })
            .await
    }

    async fn cross_signing_keys(
        &self,
        user_ids: &[OwnedUserId],
    ) -> StorageResult<Vec<CrossSigningKeyRecord>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = json_list(user_ids)?;
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {CROSS_SIGNING_COLUMNS} FROM cross_signing_keys
                     WHERE user_id IN (SELECT value FROM json_each(?1)) ORDER BY user_id, kind"
                );
                query_all(conn, &sql, [users], rows::cross_signing_key)
            })
            .await
    }

    async fn mark_device_list_changed(&self, user_id: &UserId) -> StorageResult<StreamPos> {
        let user_id = user_id.to_owned();
        self.db
            .write(move |tx, positions| record_device_list_change(tx, positions, user_id.as_str()))
            .await
    }

    async fn next_device_list_stream_id(
        &self,
        user_id: &UserId,
        at_least: i64,
    ) -> StorageResult<(Option<i64>, i64)> {
        let user_id = user_id.to_owned();
        self.db
            .write(move |tx, _| {
                let previous: Option<i64> = tx
                    .prepare_cached("SELECT stream_id FROM device_list_streams WHERE user_id = ?1")
                    .db()?
                    .query_row([user_id.as_str()], |row| row.get(0))
                    .optional()
                    .db()?;
                let next = previous.map_or(at_least, |p| at_least.max(p + 1));
                tx.prepare_cached(
                    "INSERT INTO device_list_streams (user_id, stream_id) VALUES (?1, ?2)
                     ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
                )
                .db()?
                .execute(params![user_id.as_str(), next])
                .db()?;
                Ok((previous, next))
            })
            .await
    }

    async fn device_list_stream_id(&self, user_id: &UserId) -> StorageResult<Option<i64>> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| {
                conn.prepare_cached("SELECT stream_id FROM device_list_streams WHERE user_id = ?1")
                    .db()?
                    .query_row([user_id.as_str()], |row| row.get(0))
                    .optional()
                    .db()
            })
            .await
    }

    async fn device_list_changes(
        &self,
        since: StreamPos,
        up_to: StreamPos,
    ) -> StorageResult<Vec<OwnedUserId>> {
        if up_to <= since {
            return Ok(Vec::new());
        }
        self.db
            .read(move |conn| {
                let users = conn
                    .prepare_cached(
                        "SELECT DISTINCT user_id FROM device_list_changes
                         WHERE stream_pos > ?1 AND stream_pos <= ?2 ORDER BY user_id",
                    )
                    .db()?
                    .query_map(params![since.0, up_to.0], |row| row.get::<_, String>(0))
                    .db()?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .db()?;
                users
                    .into_iter()
                    .map(|u| parse_id(u, "device list change user"))
                    .collect()
            })
            .await
    }

    async fn queue_to_device(&self, messages: &[ToDeviceMessage]) -> StorageResult<StreamPos> {
        let messages = messages.to_vec();
        self.db
            .write(move |tx, positions| {
                let pos = positions.take(tx)?;
                insert_to_device(tx, pos, &messages)?;
                Ok(pos)
            })
            .await
    }

    async fn queue_to_device_once(
        &self,
        txn: &ToDeviceTxn,
        local: &[ToDeviceMessage],
        remote: &[(ruma::OwnedServerName, String)],
    ) -> StorageResult<bool> {
        let (txn, local, remote) = (txn.clone(), local.to_vec(), remote.to_vec());
        self.db
            .write(move |tx, positions| {
                let recorded = tx
                    .prepare_cached(
                        "INSERT INTO to_device_txns (user_id, device_id, event_type, txn_id)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    )
                    .db()?
                    .execute(params![
                        txn.user_id.as_str(),
                        txn.device_id.as_str(),
                        txn.event_type,
                        txn.txn_id
                    ])
                    .db()?;
                if recorded == 0 {
                    return Ok(false);
                }
                if !local.is_empty() {
                    insert_to_device(tx, positions.take(tx)?, &local)?;
                }
                let mut outbox = tx
                    .prepare_cached(
                        "INSERT INTO federation_outbox (destination, edu, created_ms) VALUES (?1, ?2, ?3)",
                    )
                    .db()?;
                let now = now_ms();
                for (destination, edu) in &remote {
                    outbox
                        .execute(params![destination.as_str(), edu, now])
                        .db()?;
                }
                Ok(true)
            })
            .await
    }

    async fn to_device_messages(
        &self,
        user_id: &UserId,
        device_id: &str,
        after: StreamPos,
        up_to: StreamPos,
        max: usize,
    ) -> StorageResult<Vec<QueuedToDevice>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        let max = limit(max);
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {TO_DEVICE_COLUMNS} FROM to_device_messages
                     WHERE recipient = ?1 AND device_id = ?2 AND stream_pos > ?3 AND stream_pos <= ?4
                     ORDER BY stream_pos, seq LIMIT ?5"
                );
                let params = params![user_id.as_str(), device_id, after.0, up_to.0, max];
                query_all(conn, &sql, params, |row| {
                    rows::to_device(&user_id, &device_id, row)
                })
            })
            .await
    }

    async fn delete_to_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        up_to: StreamPos,
    ) -> StorageResult<()> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "DELETE FROM to_device_messages
                     WHERE recipient = ?1 AND device_id = ?2 AND stream_pos <= ?3",
                )
                .db()?
                .execute(params![user_id.as_str(), device_id, up_to.0])
                .db()?;
                Ok(())
            })
            .await
    }
}

impl SqliteStore {
    /// Runs `sql` (parameters: user, device, algorithm, key ID, key JSON) for each key of an
    /// existing device, in one transaction; nothing for a device that does not exist.
    async fn write_device_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: &[(String, String)],
        sql: &'static str,
    ) -> StorageResult<()> {
        let (user_id, device_id, keys) = (user_id.to_owned(), device_id.to_owned(), keys.to_vec());
        self.db
            .write(move |tx, _| {
                if !device_exists(tx, user_id.as_str(), &device_id)? {
                    return Ok(());
                }
                let mut statement = tx.prepare_cached(sql).db()?;
                for (key_id, key_json) in &keys {
                    statement
                        .execute(params![
                            user_id.as_str(),
                            device_id,
                            rows::key_algorithm(key_id),
                            key_id,
                            key_json
                        ])
                        .db()?;
                }
                Ok(())
            })
            .await
    }
}

/// Queues to-device messages at `pos`; those for devices that do not exist are dropped.
fn insert_to_device(
    tx: &Transaction<'_>,
    pos: StreamPos,
    messages: &[ToDeviceMessage],
) -> StorageResult<()> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO to_device_messages
                 (stream_pos, recipient, device_id, sender, event_type, content_json)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6
             WHERE EXISTS (SELECT 1 FROM devices WHERE user_id = ?2 AND device_id = ?3)",
        )
        .db()?;
    for m in messages {
        insert
            .execute(params![
                pos.0,
                m.recipient.as_str(),
                m.device_id.as_str(),
                m.sender.as_str(),
                m.event_type,
                m.content_json
            ])
            .db()?;
    }
    Ok(())
}
