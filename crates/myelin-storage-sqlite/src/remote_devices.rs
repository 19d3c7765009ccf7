//! `RemoteDeviceStore`: the cache of other servers' users' device lists. A list's devices go
//! with it (foreign key with `ON DELETE CASCADE`, and deleted explicitly too).

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::{
    attach_devices, remote_device_row, remote_list_row, RemoteDevice, RemoteDeviceChange,
    RemoteDeviceList, RemoteDeviceStore, RemoteSigningKey, StorageResult, REMOTE_DEVICE_COLUMNS,
    REMOTE_LIST_COLUMNS,
};
use ruma::{OwnedUserId, ServerName, UserId};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::convert::{json_list, query_all, Db};
use crate::keys::record_device_list_change;
use crate::SqliteStore;

fn upsert_device(tx: &Transaction<'_>, user_id: &str, device: &RemoteDevice) -> StorageResult<()> {
    tx.prepare_cached(
        "INSERT INTO remote_devices (user_id, device_id, keys_json, display_name)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, device_id) DO UPDATE
         SET keys_json = excluded.keys_json, display_name = excluded.display_name",
    )
    .db()?
    .execute(params![
        user_id,
        device.device_id.as_str(),
        device.keys_json,
        device.display_name
    ])
    .db()?;
    Ok(())
}

fn delete_lists(tx: &Transaction<'_>, users: &str) -> StorageResult<()> {
    for table in ["remote_devices", "remote_device_lists"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE user_id IN (SELECT value FROM json_each(?1))"),
            [users],
        )
        .db()?;
    }
    Ok(())
}

#[async_trait]
impl RemoteDeviceStore for SqliteStore {
    async fn remote_device_lists(
        &self,
        user_ids: &[OwnedUserId],
    ) -> StorageResult<Vec<RemoteDeviceList>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = json_list(user_ids)?;
        self.db
            .read(move |conn| {
                let lists = query_all(
                    conn,
                    &format!(
                        "SELECT {REMOTE_LIST_COLUMNS} FROM remote_device_lists
                         WHERE user_id IN (SELECT value FROM json_each(?1)) ORDER BY user_id"
                    ),
                    [&users],
                    remote_list_row,
                )?;
                let devices = query_all(
                    conn,
                    &format!(
                        "SELECT {REMOTE_DEVICE_COLUMNS} FROM remote_devices
                         WHERE user_id IN (SELECT value FROM json_each(?1))
                         ORDER BY user_id, device_id"
                    ),
                    [&users],
                    remote_device_row,
                )?;
                Ok(attach_devices(lists, devices))
            })
            .await
    }

    async fn replace_remote_device_list(
        &self,
        list: &RemoteDeviceList,
    ) -> StorageResult<StreamPos> {
        let list = list.clone();
        self.db
            .write(move |tx, positions| {
                let user = list.user_id.as_str();
                delete_lists(tx, &json_list(&[user])?)?;
                let pos = record_device_list_change(tx, positions, user)?;
                tx.prepare_cached(
                    "INSERT INTO remote_device_lists
                     (user_id, stream_id, master_key, self_signing_key, fetched_pos)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .db()?
                .execute(params![
                    user,
                    list.stream_id,
                    list.master_key,
                    list.self_signing_key,
                    pos.0
                ])
                .db()?;
                for device in &list.devices {
                    upsert_device(tx, user, device)?;
                }
                Ok(pos)
            })
            .await
    }

    async fn apply_remote_device_change(
        &self,
        user_id: &UserId,
        if_stream_id: i64,
        stream_id: i64,
        change: &RemoteDeviceChange,
    ) -> StorageResult<Option<StreamPos>> {
        let (user_id, change) = (user_id.to_owned(), change.clone());
        self.db
            .write(move |tx, positions| {
                let user = user_id.as_str();
                let moved = tx
                    .prepare_cached(
                        "UPDATE remote_device_lists SET stream_id = ?3
                         WHERE user_id = ?1 AND stream_id = ?2",
                    )
                    .db()?
                    .execute(params![user, if_stream_id, stream_id])
                    .db()?;
                if moved == 0 {
                    return Ok(None);
                }
                match &change {
                    RemoteDeviceChange::Upsert(device) => upsert_device(tx, user, device)?,
                    RemoteDeviceChange::Delete(device_id) => {
                        tx.prepare_cached(
                            "DELETE FROM remote_devices WHERE user_id = ?1 AND device_id = ?2",
                        )
                        .db()?
                        .execute(params![user, device_id.as_str()])
                        .db()?;
                    }
                }
                record_device_list_change(tx, positions, user).map(Some)
            })
            .await
    }

    async fn set_remote_signing_key(
        &self,
        user_id: &UserId,
        kind: RemoteSigningKey,
        key_json: &str,
    ) -> StorageResult<Option<StreamPos>> {
        let (user_id, key_json) = (user_id.to_owned(), key_json.to_owned());
        self.db
            .write(move |tx, positions| {
                let user = user_id.as_str();
                let cached = tx
                    .prepare_cached("SELECT 1 FROM remote_device_lists WHERE user_id = ?1")
                    .db()?
                    .query_row([user], |_| Ok(()))
                    .optional()
                    .db()?;
                if cached.is_none() {
                    return Ok(None);
                }
                let column = kind.column();
                tx.execute(
                    &format!("UPDATE remote_device_lists SET {column} = ?2 WHERE user_id = ?1"),
                    params![user, key_json],
                )
                .db()?;
                record_device_list_change(tx, positions, user).map(Some)
            })
            .await
    }

    async fn forget_remote_device_lists(&self, user_ids: &[OwnedUserId]) -> StorageResult<()> {
        if user_ids.is_empty() {
            return Ok(());
        }
        let users = json_list(user_ids)?;
        self.db.write(move |tx, _| delete_lists(tx, &users)).await
    }

    async fn forget_unshared_remote_device_lists(
        &self,
        user_ids: &[OwnedUserId],
        local: &ServerName,
    ) -> StorageResult<Vec<OwnedUserId>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = json_list(user_ids)?;
        let suffix = format!(":{local}");
        self.db
            .write(move |tx, _| {
                // A local user is one whose ID ends in `:` and this server's name.
                let unshared = query_all(
                    tx,
                    "SELECT l.user_id FROM remote_device_lists l
                     WHERE l.user_id IN (SELECT value FROM json_each(?1))
                     AND NOT EXISTS (
                         SELECT 1 FROM room_memberships theirs
                         JOIN room_memberships ours ON ours.room_id = theirs.room_id
                         WHERE theirs.user_id = l.user_id AND theirs.membership = 'join'
                         AND ours.membership = 'join'
                         AND substr(ours.user_id, -length(?2)) = ?2)
                     ORDER BY l.user_id",
                    params![users, suffix],
                    |row| myelin_storage::convert::parse_id(row.text(0)?, "remote user"),
                )?;
                delete_lists(tx, &json_list(&unshared)?)?;
                Ok(unshared)
            })
            .await
    }
}
