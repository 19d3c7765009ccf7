//! `UserDataStore`: account data, receipts, presence and filters.

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::rows::{
    self, ACCOUNT_DATA_COLUMNS, PRESENCE_COLUMNS, RECEIPT_COLUMNS, REPORT_COLUMNS,
};
use myelin_storage::{
    AccountDataRecord, PresenceRecord, ReceiptRecord, ReportRecord, StorageResult, UserDataStore,
};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use rusqlite::{params, Connection, OptionalExtension, Params};

use crate::convert::{json_list, parse_json, query_all, to_i64, Db};
use crate::push_counts;
use crate::SqliteStore;

#[async_trait]
impl UserDataStore for SqliteStore {
    async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: &serde_json::Value,
    ) -> StorageResult<StreamPos> {
        let user_id = user_id.to_owned();
        let room_id = rows::account_data_room(room_id).to_owned();
        let data_type = data_type.to_owned();
        let content = content.to_string();
        self.db
            .write(move |tx, positions| {
                let pos = positions.take(tx)?;
                tx.prepare_cached(
                    "INSERT INTO account_data (user_id, room_id, type, content, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (user_id, room_id, type) DO UPDATE SET
                         content = excluded.content, stream_pos = excluded.stream_pos",
                )
                .db()?
                .execute(params![user_id.as_str(), room_id, data_type, content, pos.0])
                .db()?;
                Ok(pos)
            })
            .await
    }

    async fn get_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> StorageResult<Option<serde_json::Value>> {
        let user_id = user_id.to_owned();
        let room_id = rows::account_data_room(room_id).to_owned();
        let data_type = data_type.to_owned();
        self.db
            .read(move |conn| {
                let content = conn
                    .prepare_cached(
                        "SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3",
                    )
                    .db()?
                    .query_row(params![user_id.as_str(), room_id, data_type], |row| {
                        row.get::<_, String>(0)
                    })
                    .optional()
                    .db()?;
                content.map(|c| parse_json(&c, "account data")).transpose()
            })
            .await
    }

    async fn account_data_since(
        &self,
        user_id: &UserId,
        since: StreamPos,
    ) -> StorageResult<Vec<AccountDataRecord>> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {ACCOUNT_DATA_COLUMNS} FROM account_data
                     WHERE user_id = ?1 AND stream_pos > ?2 ORDER BY stream_pos"
                );
                query_all(
                    conn,
                    &sql,
                    params![user_id.as_str(), since.0],
                    rows::account_data,
                )
            })
            .await
    }

    async fn set_receipt(&self, receipt: ReceiptRecord) -> StorageResult<StreamPos> {
        let ts = to_i64(receipt.ts, "receipt ts")?;
        self.db
            .write(move |tx, positions| {
                let pos = positions.take(tx)?;
                tx.prepare_cached(
                    "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET
                         event_id = excluded.event_id, ts = excluded.ts, stream_pos = excluded.stream_pos",
                )
                .db()?
                .execute(params![
                    receipt.room_id.as_str(),
                    receipt.receipt_type,
                    receipt.user_id.as_str(),
                    rows::receipt_thread(receipt.thread_id.as_deref()),
                    receipt.event_id.as_str(),
                    ts,
                    pos.0
                ])
                .db()?;
                push_counts::recount_after_receipt(
                    tx,
                    receipt.room_id.as_str(),
                    receipt.user_id.as_str(),
                    &receipt.receipt_type,
                )?;
                Ok(pos)
            })
            .await
    }

    async fn receipts_since(
        &self,
        room_ids: &[OwnedRoomId],
        since: StreamPos,
    ) -> StorageResult<Vec<ReceiptRecord>> {
        if room_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rooms = json_list(room_ids)?;
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {RECEIPT_COLUMNS} FROM receipts
                     WHERE room_id IN (SELECT value FROM json_each(?1)) AND stream_pos > ?2
                     ORDER BY stream_pos"
                );
                query_all(conn, &sql, params![rooms, since.0], rows::receipt)
            })
            .await
    }

    async fn set_presence(
        &self,
        user_id: &UserId,
        state: &str,
        status_msg: Option<&str>,
        now_ms: u64,
    ) -> StorageResult<StreamPos> {
        let (user_id, state, status_msg) = (
            user_id.to_owned(),
            state.to_owned(),
            status_msg.map(str::to_owned),
        );
        let now = to_i64(now_ms, "now_ms")?;
        self.db
            .write(move |tx, positions| {
                let pos = positions.take(tx)?;
                tx.prepare_cached(
                    "INSERT INTO presence (user_id, state, status_msg, last_active_ms, stream_pos)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                         last_active_ms = excluded.last_active_ms, stream_pos = excluded.stream_pos",
                )
                .db()?
                .execute(params![user_id.as_str(), state, status_msg, now, pos.0])
                .db()?;
                Ok(pos)
            })
            .await
    }

    async fn get_presence(&self, user_id: &UserId) -> StorageResult<Option<PresenceRecord>> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| {
                Ok(
                    query_presence(conn, "WHERE user_id = ?1", [user_id.as_str()])?
                        .into_iter()
                        .next(),
                )
            })
            .await
    }

    async fn presence_since(
        &self,
        user_ids: &[OwnedUserId],
        since: StreamPos,
    ) -> StorageResult<Vec<PresenceRecord>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = json_list(user_ids)?;
        self.db
            .read(move |conn| {
                query_presence(
                    conn,
                    "WHERE user_id IN (SELECT value FROM json_each(?1)) AND stream_pos > ?2 ORDER BY stream_pos",
                    params![users, since.0],
                )
            })
            .await
    }

    async fn create_filter(
        &self,
        user_id: &UserId,
        filter: &serde_json::Value,
    ) -> StorageResult<String> {
        let (user_id, filter) = (user_id.to_owned(), filter.to_string());
        self.db
            .write(move |tx, _| {
                let id: i64 = tx
                    .prepare_cached(
                        "SELECT COALESCE(MAX(filter_id) + 1, 0) FROM filters WHERE user_id = ?1",
                    )
                    .db()?
                    .query_row([user_id.as_str()], |row| row.get(0))
                    .db()?;
                tx.prepare_cached(
                    "INSERT INTO filters (user_id, filter_id, filter) VALUES (?1, ?2, ?3)",
                )
                .db()?
                .execute(params![user_id.as_str(), id, filter])
                .db()?;
                Ok(id.to_string())
            })
            .await
    }

    async fn get_filter(
        &self,
        user_id: &UserId,
        filter_id: &str,
    ) -> StorageResult<Option<serde_json::Value>> {
        let Some(id) = rows::filter_id(filter_id) else {
            return Ok(None);
        };
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| {
                let filter = conn
                    .prepare_cached(
                        "SELECT filter FROM filters WHERE user_id = ?1 AND filter_id = ?2",
                    )
                    .db()?
                    .query_row(params![user_id.as_str(), id], |row| row.get::<_, String>(0))
                    .optional()
                    .db()?;
                filter.map(|f| parse_json(&f, "filter")).transpose()
            })
            .await
    }

    async fn add_report(&self, report: ReportRecord) -> StorageResult<()> {
        self.db
            .write(move |tx, _| {
                let (room_id, event_id, target_user) = rows::report_target_columns(&report.target);
                tx.prepare_cached(
                    "INSERT INTO reports
                         (reporter, room_id, event_id, target_user, reason, score, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .db()?
                .execute(params![
                    report.reporter.as_str(),
                    room_id,
                    event_id,
                    target_user,
                    report.reason,
                    report.score,
                    to_i64(report.created_ms, "created_ms")?,
                ])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn reports(&self, limit: usize) -> StorageResult<Vec<ReportRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |conn| {
                let sql = format!("SELECT {REPORT_COLUMNS} FROM reports ORDER BY id DESC LIMIT ?1");
                query_all(conn, &sql, params![limit], rows::report)
            })
            .await
    }
}

fn query_presence<P: Params>(
    conn: &Connection,
    filter: &str,
    params: P,
) -> StorageResult<Vec<PresenceRecord>> {
    let sql = format!("SELECT {PRESENCE_COLUMNS} FROM presence {filter}");
    query_all(conn, &sql, params, rows::presence)
}
