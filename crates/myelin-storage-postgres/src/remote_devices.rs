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

use crate::convert::{get, text_list};
use crate::keys::record_device_list_change;
use crate::pool::Conn;
use crate::PgStore;

async fn upsert_device(conn: &mut Conn, user_id: &str, device: &RemoteDevice) -> StorageResult<()> {
    conn.execute(
        "INSERT INTO remote_devices (user_id, device_id, keys_json, display_name)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, device_id) DO UPDATE
         SET keys_json = excluded.keys_json, display_name = excluded.display_name",
        &[
            &user_id,
            &device.device_id.as_str(),
            &device.keys_json,
            &device.display_name,
        ],
    )
    .await?;
    Ok(())
}

async fn delete_lists(conn: &mut Conn, users: &[&str]) -> StorageResult<()> {
    for table in ["remote_devices", "remote_device_lists"] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE user_id = ANY($1::TEXT[])"),
            &[&users],
        )
        .await?;
    }
    Ok(())
}

async fn replace_list(conn: &mut Conn, list: &RemoteDeviceList) -> StorageResult<StreamPos> {
    let user = list.user_id.as_str();
    delete_lists(conn, &[user]).await?;
    let pos = record_device_list_change(conn, user).await?;
    conn.execute(
        "INSERT INTO remote_device_lists
         (user_id, stream_id, master_key, self_signing_key, fetched_pos)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &user,
            &list.stream_id,
            &list.master_key,
            &list.self_signing_key,
            &pos.0,
        ],
    )
    .await?;
    for device in &list.devices {
        upsert_device(conn, user, device).await?;
    }
    Ok(pos)
}

async fn apply_change(
    conn: &mut Conn,
    user: &str,
    if_stream_id: i64,
    stream_id: i64,
    change: &RemoteDeviceChange,
) -> StorageResult<Option<StreamPos>> {
    let moved = conn
        .execute(
            "UPDATE remote_device_lists SET stream_id = $3 WHERE user_id = $1 AND stream_id = $2",
            &[&user, &if_stream_id, &stream_id],
        )
        .await?;
    if moved == 0 {
        return Ok(None);
    }
    match change {
        RemoteDeviceChange::Upsert(device) => upsert_device(conn, user, device).await?,
        RemoteDeviceChange::Delete(device_id) => {
            conn.execute(
                "DELETE FROM remote_devices WHERE user_id = $1 AND device_id = $2",
                &[&user, &device_id.as_str()],
            )
            .await?;
        }
    }
    record_device_list_change(conn, user).await.map(Some)
}

#[async_trait]
impl RemoteDeviceStore for PgStore {
    async fn remote_device_lists(
        &self,
        user_ids: &[OwnedUserId],
    ) -> StorageResult<Vec<RemoteDeviceList>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = text_list(user_ids);
        let mut conn = self.db.read().await?;
        let lists = conn
            .query_decode(
                &format!(
                    "SELECT {REMOTE_LIST_COLUMNS} FROM remote_device_lists
                     WHERE user_id = ANY($1::TEXT[]) ORDER BY user_id"
                ),
                &[&users],
                remote_list_row,
            )
            .await?;
        let devices = conn
            .query_decode(
                &format!(
                    "SELECT {REMOTE_DEVICE_COLUMNS} FROM remote_devices
                     WHERE user_id = ANY($1::TEXT[]) ORDER BY user_id, device_id"
                ),
                &[&users],
                remote_device_row,
            )
            .await?;
        Ok(attach_devices(lists, devices))
    }

    async fn replace_remote_device_list(
        &self,
        list: &RemoteDeviceList,
    ) -> StorageResult<StreamPos> {
        let mut conn = self.db.write().await?;
        let result = replace_list(&mut conn, list).await;
        conn.finish(result).await
    }

    async fn apply_remote_device_change(
        &self,
        user_id: &UserId,
        if_stream_id: i64,
        stream_id: i64,
        change: &RemoteDeviceChange,
    ) -> StorageResult<Option<StreamPos>> {
        let mut conn = self.db.write().await?;
        let result =
            apply_change(&mut conn, user_id.as_str(), if_stream_id, stream_id, change).await;
        conn.finish(result).await
    }

    async fn set_remote_signing_key(
        &self,
        user_id: &UserId,
        kind: RemoteSigningKey,
        key_json: &str,
    ) -> StorageResult<Option<StreamPos>> {
        let user = user_id.as_str();
        let mut conn = self.db.write().await?;
        let result = async {
            let column = kind.column();
            let changed = conn
                .execute(
                    &format!("UPDATE remote_device_lists SET {column} = $2 WHERE user_id = $1"),
                    &[&user, &key_json],
                )
                .await?;
            if changed == 0 {
                return Ok(None);
            }
            record_device_list_change(&mut conn, user).await.map(Some)
        }
        .await;
        conn.finish(result).await
    }

    async fn forget_remote_device_lists(&self, user_ids: &[OwnedUserId]) -> StorageResult<()> {
        if user_ids.is_empty() {
            return Ok(());
        }
        let users = text_list(user_ids);
        let mut conn = self.db.write().await?;
        let result = delete_lists(&mut conn, &users).await;
        conn.finish(result).await
    }

    async fn forget_unshared_remote_device_lists(
        &self,
        user_ids: &[OwnedUserId],
        local: &ServerName,
    ) -> StorageResult<Vec<OwnedUserId>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = text_list(user_ids);
        let suffix = format!(":{local}");
        let mut conn = self.db.write().await?;
        let result = async {
            // A local user is one whose ID ends in `:` and this server's name.
            let rows = conn
                .query(
                    "SELECT l.user_id FROM remote_device_lists l
                     WHERE l.user_id = ANY($1::TEXT[])
                     AND NOT EXISTS (
                         SELECT 1 FROM room_memberships theirs
                         JOIN room_memberships ours ON ours.room_id = theirs.room_id
                         WHERE theirs.user_id = l.user_id AND theirs.membership = 'join'
                         AND ours.membership = 'join'
                         AND right(ours.user_id, length($2)) = $2)
                     ORDER BY l.user_id",
                    &[&users, &suffix],
                )
                .await?;
            let unshared = rows
                .iter()
                .map(|row| myelin_storage::convert::parse_id(get::<String>(row, 0)?, "remote user"))
                .collect::<StorageResult<Vec<OwnedUserId>>>()?;
            let ids: Vec<&str> = unshared.iter().map(|u| u.as_str()).collect();
            delete_lists(&mut conn, &ids).await?;
            Ok(unshared)
        }
        .await;
        conn.finish(result).await
    }
}
