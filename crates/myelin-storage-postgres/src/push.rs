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

use crate::convert::{get, limit, to_i64};
use crate::pool::Conn;
use crate::PgStore;
use crate::{push_counts, push_fold};

async fn upsert_pusher(conn: &mut Conn, p: &PusherRecord, append: bool) -> StorageResult<i64> {
    if !append {
        conn.execute(
            "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
            &[&p.app_id, &p.pushkey, &p.user_id.as_str()],
        )
        .await?;
    }
    let created = to_i64(p.created_ms, "pusher created_ms")?;
    let row = conn
        .query_one(
            "INSERT INTO pushers (user_id, device_id, kind, app_id, pushkey, app_display_name,
                                  device_display_name, profile_tag, lang, data, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (user_id, app_id, pushkey) DO UPDATE
             SET device_id = excluded.device_id, kind = excluded.kind,
                 app_display_name = excluded.app_display_name,
                 device_display_name = excluded.device_display_name,
                 profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data
             RETURNING id",
            &[
                &p.user_id.as_str(),
                &p.device_id,
                &p.kind,
                &p.app_id,
                &p.pushkey,
                &p.app_display_name,
                &p.device_display_name,
                &p.profile_tag,
                &p.lang,
                &p.data,
                &created,
            ],
        )
        .await?;
    get(&row, 0)
}

#[async_trait]
impl PushStore for PgStore {
    async fn notification_counts(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> StorageResult<RoomNotificationCounts> {
        let mut conn = self.db.read().await?;
        push_counts::room_counts(&mut conn, user_id.as_str(), room_id.as_str()).await
    }

    async fn notification_counts_in(
        &self,
        user_id: &UserId,
        rooms: &[OwnedRoomId],
    ) -> StorageResult<Vec<RoomNotificationCounts>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.db.read().await?;
        push_counts::rooms_counts(&mut conn, user_id.as_str(), rooms).await
    }

    async fn rooms_with_unread_notifications(&self, user_id: &UserId) -> StorageResult<u64> {
        // One snapshot: the counters and the pending rows after their position must agree.
        let mut conn = self.db.read_snapshot().await?;
        let result = push_counts::rooms_with_unread(&mut conn, user_id.as_str()).await;
        conn.finish(result).await
    }

    async fn fold_unread_counts(&self, max: usize) -> StorageResult<usize> {
        let mut conn = self.db.write().await?;
        let result = push_fold::fold(&mut conn, max).await;
        conn.finish(result).await
    }

    async fn notifications(
        &self,
        user_id: &UserId,
        before: Option<StreamPos>,
        max: usize,
        only_highlight: bool,
    ) -> StorageResult<NotificationPage> {
        let before = before.map_or(i64::MAX, |p| p.0);
        let mut conn = self.db.read().await?;
        push_counts::notifications_page(&mut conn, user_id.as_str(), before, max, only_highlight)
            .await
    }

    async fn set_pusher(&self, pusher: PusherRecord, append: bool) -> StorageResult<i64> {
        let mut conn = self.db.write().await?;
        let result = upsert_pusher(&mut conn, &pusher, append).await;
        conn.finish(result).await
    }

    async fn delete_pusher(
        &self,
        user_id: &UserId,
        app_id: &str,
        pushkey: &str,
    ) -> StorageResult<bool> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
                &[&user_id.as_str(), &app_id, &pushkey],
            )
            .await
            .map(|n| n > 0);
        conn.finish(result).await
    }

    async fn delete_pusher_by_id(&self, id: i64) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute("DELETE FROM pushers WHERE id = $1", &[&id])
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn delete_pushers_except(
        &self,
        user_id: &UserId,
        keep_device: &str,
    ) -> StorageResult<Vec<i64>> {
        let mut conn = self.db.write().await?;
        let result = conn
            .query_decode(
                "DELETE FROM pushers WHERE user_id = $1 AND device_id <> $2 RETURNING id",
                &[&user_id.as_str(), &keep_device],
                |row| row.int(0),
            )
            .await;
        conn.finish(result).await
    }

    async fn pushers(&self, user_id: &UserId) -> StorageResult<Vec<PusherRecord>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            &format!("SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = $1 ORDER BY id"),
            &[&user_id.as_str()],
            rows::pusher,
        )
        .await
    }

    async fn pusher(&self, id: i64) -> StorageResult<Option<PusherRecord>> {
        let mut conn = self.db.read().await?;
        conn.query_opt_decode(
            &format!("SELECT {PUSHER_COLUMNS} FROM pushers WHERE id = $1"),
            &[&id],
            rows::pusher,
        )
        .await
    }

    async fn pushers_with_queue(&self) -> StorageResult<Vec<i64>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            "SELECT DISTINCT pusher_id FROM push_queue ORDER BY pusher_id",
            &[],
            |row| row.int(0),
        )
        .await
    }

    async fn queued_pushes(&self, pusher_id: i64, max: usize) -> StorageResult<Vec<QueuedPush>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            &format!(
                "SELECT {} FROM push_queue WHERE pusher_id = $1 ORDER BY stream_pos LIMIT $2",
                rows::QUEUED_PUSH_COLUMNS
            ),
            &[&pusher_id, &limit(max)],
            rows::queued_push,
        )
        .await
    }

    async fn delete_queued_push(&self, pusher_id: i64, stream_pos: StreamPos) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "DELETE FROM push_queue WHERE pusher_id = $1 AND stream_pos = $2",
                &[&pusher_id, &stream_pos.0],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }
}
