//! `PushStore`: counts and `/notifications` (read through `push_counts`), pushers and their
//! delivery queues.

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::rows;
use myelin_storage::{
    NotificationPage, PushStore, PusherRecord, QueuedPush, RoomNotificationCounts, StorageResult,
    PUSHER_COLUMNS,
};
use ruma::{OwnedRoomId, RoomId, UserId};
use rusqlite::{params, Connection, Transaction};

use crate::convert::{limit, query_all, query_first, to_i64, Db};
use crate::SqliteStore;
use crate::{push_counts, push_fold};

fn pusher_row(conn: &Connection, id: i64) -> StorageResult<Option<PusherRecord>> {
    query_first(
        conn,
        &format!("SELECT {PUSHER_COLUMNS} FROM pushers WHERE id = ?1"),
        params![id],
        rows::pusher,
    )
}

fn upsert_pusher(tx: &Transaction<'_>, p: &PusherRecord, append: bool) -> StorageResult<i64> {
    if !append {
        tx.prepare_cached(
            "DELETE FROM pushers WHERE app_id = ?1 AND pushkey = ?2 AND user_id <> ?3",
        )
        .db()?
        .execute(params![p.app_id, p.pushkey, p.user_id.as_str()])
        .db()?;
    }
    let created = to_i64(p.created_ms, "pusher created_ms")?;
    tx.prepare_cached(
        "INSERT INTO pushers (user_id, device_id, kind, app_id, pushkey, app_display_name,
                              device_display_name, profile_tag, lang, data, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (user_id, app_id, pushkey) DO UPDATE
         SET device_id = excluded.device_id, kind = excluded.kind,
             app_display_name = excluded.app_display_name,
             device_display_name = excluded.device_display_name,
             profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data
         RETURNING id",
    )
    .db()?
    .query_row(
        params![
            p.user_id.as_str(),
            p.device_id,
            p.kind,
            p.app_id,
            p.pushkey,
            p.app_display_name,
            p.device_display_name,
            p.profile_tag,
            p.lang,
            p.data,
            created
        ],
        |row| row.get(0),
    )
    .db()
}

#[async_trait]
impl PushStore for SqliteStore {
    async fn notification_counts(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> StorageResult<RoomNotificationCounts> {
        let (user_id, room_id) = (user_id.to_string(), room_id.to_string());
        self.db
            .read(move |conn| push_counts::room_counts(conn, &user_id, &room_id))
            .await
    }

    async fn notification_counts_in(
        &self,
        user_id: &UserId,
        rooms: &[OwnedRoomId],
    ) -> StorageResult<Vec<RoomNotificationCounts>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let user_id = user_id.to_string();
        let rooms = rooms.to_vec();
        // One read for every room.
        self.db
            .read(move |conn| {
                rooms
                    .iter()
                    .map(|room| push_counts::room_counts(conn, &user_id, room.as_str()))
                    .collect()
            })
            .await
    }

    async fn rooms_with_unread_notifications(&self, user_id: &UserId) -> StorageResult<u64> {
        let user_id = user_id.to_string();
        self.db
            .read(move |conn| push_counts::rooms_with_unread(conn, &user_id))
            .await
    }

    async fn fold_unread_counts(&self, max: usize) -> StorageResult<usize> {
        self.db.write(move |tx, _| push_fold::fold(tx, max)).await
    }

    async fn notifications(
        &self,
        user_id: &UserId,
        before: Option<StreamPos>,
        max: usize,
        only_highlight: bool,
    ) -> StorageResult<NotificationPage> {
        let user_id = user_id.to_string();
        let before = before.map_or(i64::MAX, |p| p.0);
        self.db
            .read(move |conn| {
                push_counts::notifications_page(conn, &user_id, before, max, only_highlight)
            })
            .await
    }

    async fn set_pusher(&self, pusher: PusherRecord, append: bool) -> StorageResult<i64> {
        self.db
            .write(move |tx, _| upsert_pusher(tx, &pusher, append))
            .await
    }

    async fn delete_pusher(
        &self,
        user_id: &UserId,
        app_id: &str,
        pushkey: &str,
    ) -> StorageResult<bool> {
        let (user_id, app_id, pushkey) =
            (user_id.to_string(), app_id.to_owned(), pushkey.to_owned());
        self.db
            .write(move |tx, _| {
                let n = tx
                    .prepare_cached(
                        "DELETE FROM pushers WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
                    )
                    .db()?
                    .execute(params![user_id, app_id, pushkey])
                    .db()?;
                Ok(n > 0)
            })
            .await
    }

    async fn delete_pusher_by_id(&self, id: i64) -> StorageResult<()> {
        self.db
            .write(move |tx, _| {
                tx.prepare_cached("DELETE FROM pushers WHERE id = ?1")
                    .db()?
                    .execute(params![id])
                    .db()?;
                Ok(())
            })
            .await
    }

    async fn delete_pushers_except(
        &self,
        user_id: &UserId,
        keep_device: &str,
    ) -> StorageResult<Vec<i64>> {
        let (user_id, keep) = (user_id.to_string(), keep_device.to_owned());
        self.db
            .write(move |tx, _| {
                let mut stmt = tx
                    .prepare_cached(
                        "DELETE FROM pushers WHERE user_id = ?1 AND device_id <> ?2 RETURNING id",
                    )
                    .db()?;
                let ids = stmt
                    .query_map(params![user_id, keep], |row| row.get(0))
                    .db()?
                    .collect::<Result<Vec<i64>, _>>()
                    .db()?;
                Ok(ids)
            })
            .await
    }

    async fn pushers(&self, user_id: &UserId) -> StorageResult<Vec<PusherRecord>> {
        let user_id = user_id.to_string();
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    &format!("SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = ?1 ORDER BY id"),
                    params![user_id],
                    rows::pusher,
                )
            })
            .await
    }

    async fn pusher(&self, id: i64) -> StorageResult<Option<PusherRecord>> {
        self.db.read(move |conn| pusher_row(conn, id)).await
    }

    async fn pushers_with_queue(&self) -> StorageResult<Vec<i64>> {
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT DISTINCT pusher_id FROM push_queue ORDER BY pusher_id",
                    [],
                    |row| row.int(0),
                )
            })
            .await
    }

    async fn queued_pushes(&self, pusher_id: i64, max: usize) -> StorageResult<Vec<QueuedPush>> {
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    &format!(
                        "SELECT {} FROM push_queue WHERE pusher_id = ?1
                         ORDER BY stream_pos LIMIT ?2",
                        rows::QUEUED_PUSH_COLUMNS
                    ),
                    params![pusher_id, limit(max)],
                    rows::queued_push,
                )
            })
            .await
    }

    async fn delete_queued_push(&self, pusher_id: i64, stream_pos: StreamPos) -> StorageResult<()> {
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "DELETE FROM push_queue WHERE pusher_id = ?1 AND stream_pos = ?2",
                )
                .db()?
                .execute(params![pusher_id, stream_pos.0])
                .db()?;
                Ok(())
            })
            .await
    }
}
