//! `PushStore`: notification rows and counts, pushers and their delivery queues; and the rows an
//! event's push actions add in its own transaction ([`write_push_actions`]).

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::rows;
use myelin_storage::{
    NewPushAction, NotificationCounts, NotificationRecord, PushStore, PusherRecord, QueuedPush,
    RoomNotificationCounts, StorageResult, PUSHER_COLUMNS,
};
use ruma::{RoomId, UserId};
use rusqlite::{params, Connection, Transaction};

use crate::convert::{limit, query_all, query_first, to_i64, Db};
use crate::SqliteStore;

/// Where a row of `a` (the notification row) stops being unread: the stream position of the
/// user's latest read receipt (`m.read` or `m.read.private`) that covers it, unthreaded or of
/// the row's own timeline; without one, the user's latest join (what came before it, such as
/// their invite, is not unread in the room).
const RECEIPT_POS: &str = "COALESCE((
    SELECT MAX(e.stream_pos) FROM receipts r JOIN events e ON e.event_id = r.event_id
    WHERE r.room_id = a.room_id AND r.user_id = a.user_id
      AND r.receipt_type IN ('m.read', 'm.read.private')
      AND r.thread_id IN ('', COALESCE(a.thread_id, 'main'))),
    (SELECT m.joined_pos FROM room_memberships m
     WHERE m.room_id = a.room_id AND m.user_id = a.user_id),
    -9223372036854775807)";

/// The notification rows of an event for the users it notifies, and one queue row per HTTP
/// pusher of theirs; in the caller's (the event's) transaction.
pub(crate) fn write_push_actions(
    tx: &Transaction<'_>,
    room_id: &str,
    event_id: &str,
    stream_pos: StreamPos,
    actions: &[NewPushAction],
) -> StorageResult<()> {
    for action in actions {
        tx.prepare_cached(
            "INSERT INTO event_push_actions (user_id, room_id, event_id, stream_pos, thread_id,
                                             actions, highlight)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (user_id, stream_pos) DO NOTHING",
        )
        .db()?
        .execute(params![
            action.user_id.as_str(),
            room_id,
            event_id,
            stream_pos.0,
            action.thread_id,
            action.actions,
            action.highlight
        ])
        .db()?;
        if !action.queue {
            continue;
        }
        tx.prepare_cached(
            "INSERT INTO push_queue (pusher_id, stream_pos, room_id, event_id, actions)
             SELECT id, ?2, ?3, ?4, ?5 FROM pushers WHERE user_id = ?1 AND kind = 'http'
             ON CONFLICT (pusher_id, stream_pos) DO NOTHING",
        )
        .db()?
        .execute(params![
            action.user_id.as_str(),
            stream_pos.0,
            room_id,
            event_id,
            action.actions
        ])
        .db()?;
    }
    Ok(())
}

/// A redacted event notifies no more: its rows go, in the redaction's transaction.
pub(crate) fn forget_push_actions(tx: &Transaction<'_>, event_id: &str) -> StorageResult<()> {
    let pos = "(SELECT stream_pos FROM events WHERE event_id = ?1)";
    tx.prepare_cached(&format!(
        "DELETE FROM event_push_actions WHERE stream_pos = {pos}"
    ))
    .db()?
    .execute(params![event_id])
    .db()?;
    tx.prepare_cached(&format!("DELETE FROM push_queue WHERE stream_pos = {pos}"))
        .db()?
        .execute(params![event_id])
        .db()?;
    Ok(())
}

fn room_counts(
    conn: &Connection,
    user_id: &str,
    room_id: &str,
) -> StorageResult<RoomNotificationCounts> {
    // Every row's receipt is at or after the unthreaded one: rows before it are never counted.
    let sql = format!(
        "SELECT a.thread_id, COUNT(*), COALESCE(SUM(a.highlight), 0)
         FROM event_push_actions a
         WHERE a.user_id = ?1 AND a.room_id = ?2
           AND a.stream_pos > COALESCE((
               SELECT MAX(e.stream_pos) FROM receipts r JOIN events e ON e.event_id = r.event_id
               WHERE r.room_id = ?2 AND r.user_id = ?1
                 AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = ''),
               -9223372036854775807)
           AND a.stream_pos > {RECEIPT_POS}
         GROUP BY a.thread_id"
    );
    let rows = query_all(conn, &sql, params![user_id, room_id], |row| {
        Ok((
            row.opt_text(0)?,
            NotificationCounts {
                notifications: u64::try_from(row.int(1)?).unwrap_or(0),
                highlights: u64::try_from(row.int(2)?).unwrap_or(0),
            },
        ))
    })?;
    let mut counts = RoomNotificationCounts::default();
    for (thread, c) in rows {
        match thread {
            None => counts.main = c,
            Some(thread) => counts.threads.push((thread, c)),
        }
    }
    Ok(counts)
}

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
            .read(move |conn| room_counts(conn, &user_id, &room_id))
            .await
    }

    async fn rooms_with_unread_notifications(&self, user_id: &UserId) -> StorageResult<u64> {
        let user_id = user_id.to_string();
        let sql = format!(
            "SELECT COUNT(DISTINCT a.room_id) FROM event_push_actions a
             JOIN room_memberships m
               ON m.room_id = a.room_id AND m.user_id = a.user_id AND m.membership = 'join'
             WHERE a.user_id = ?1 AND a.stream_pos > {RECEIPT_POS}"
        );
        self.db
            .read(move |conn| {
                let n: i64 = conn
                    .prepare_cached(&sql)
                    .db()?
                    .query_row(params![user_id], |row| row.get(0))
                    .db()?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .await
    }

    async fn notifications(
        &self,
        user_id: &UserId,
        before: Option<StreamPos>,
        max: usize,
        only_highlight: bool,
    ) -> StorageResult<Vec<NotificationRecord>> {
        let user_id = user_id.to_string();
        let before = before.map_or(i64::MAX, |p| p.0);
        let sql = format!(
            "SELECT a.room_id, a.event_id, a.stream_pos, a.actions, a.highlight,
                    a.stream_pos <= {RECEIPT_POS}
             FROM event_push_actions a
             WHERE a.user_id = ?1 AND a.stream_pos < ?2 AND (?3 = 0 OR a.highlight = 1)
             ORDER BY a.stream_pos DESC LIMIT ?4"
        );
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    &sql,
                    params![user_id, before, only_highlight, limit(max)],
                    rows::notification,
                )
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
