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

use crate::convert::{get, parse_json, text_list, to_i64};
use crate::persist::take_position;
use crate::push_counts;
use crate::PgStore;

#[async_trait]
impl UserDataStore for PgStore {
    async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: &serde_json::Value,
    ) -> StorageResult<StreamPos> {
        let room_id = rows::account_data_room(room_id);
        let content = content.to_string();
        let mut conn = self.db.write().await?;
        let result = async {
            let pos = take_position(&mut conn).await?;
            conn.execute(
                "INSERT INTO account_data (user_id, room_id, type, content, stream_pos) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, room_id, type) DO UPDATE SET
                     content = excluded.content, stream_pos = excluded.stream_pos",
                &[&user_id.as_str(), &room_id, &data_type, &content, &pos.0],
            )
            .await?;
            Ok(pos)
        }
        .await;
        conn.finish(result).await
    }

    async fn get_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> StorageResult<Option<serde_json::Value>> {
        let room_id = rows::account_data_room(room_id);
        let mut conn = self.db.read().await?;
        let row = conn
            .query_opt(
                "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
                &[&user_id.as_str(), &room_id, &data_type],
            )
            .await?;
        row.map(|row| parse_json(&get::<String>(&row, 0)?, "account data"))
            .transpose()
    }

    async fn account_data_since(
        &self,
        user_id: &UserId,
        since: StreamPos,
    ) -> StorageResult<Vec<AccountDataRecord>> {
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {ACCOUNT_DATA_COLUMNS} FROM account_data
             WHERE user_id = $1 AND stream_pos > $2 ORDER BY stream_pos"
        );
        conn.query_decode(&sql, &[&user_id.as_str(), &since.0], rows::account_data)
            .await
    }

    async fn set_receipt(&self, receipt: ReceiptRecord) -> StorageResult<StreamPos> {
        let ts = to_i64(receipt.ts, "receipt ts")?;
        let mut conn = self.db.write().await?;
        let result = async {
            let pos = take_position(&mut conn).await?;
            conn.execute(
                "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET
                     event_id = excluded.event_id, ts = excluded.ts, stream_pos = excluded.stream_pos",
                &[
                    &receipt.room_id.as_str(),
                    &receipt.receipt_type,
                    &receipt.user_id.as_str(),
                    &rows::receipt_thread(receipt.thread_id.as_deref()),
                    &receipt.event_id.as_str(),
                    &ts,
                    &pos.0,
                ],
            )
            .await?;
            push_counts::recount_after_receipt(
                &mut conn,
                receipt.room_id.as_str(),
                receipt.user_id.as_str(),
                &receipt.receipt_type,
            )
            .await?;
            Ok(pos)
        }
        .await;
        conn.finish(result).await
    }

    async fn receipts_since(
        &self,
        room_ids: &[OwnedRoomId],
        since: StreamPos,
    ) -> StorageResult<Vec<ReceiptRecord>> {
        if room_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rooms = text_list(room_ids);
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {RECEIPT_COLUMNS} FROM receipts
             WHERE room_id = ANY($1::TEXT[]) AND stream_pos > $2
             ORDER BY stream_pos"
        );
        conn.query_decode(&sql, &[&rooms, &since.0], rows::receipt)
            .await
    }

    async fn set_presence(
        &self,
        user_id: &UserId,
        state: &str,
        status_msg: Option<&str>,
        now_ms: u64,
    ) -> StorageResult<StreamPos> {
        let now = to_i64(now_ms, "now_ms")?;
        let mut conn = self.db.write().await?;
        let result = async {
            let pos = take_position(&mut conn).await?;
            conn.execute(
                "INSERT INTO presence (user_id, state, status_msg, last_active_ms, stream_pos)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                     last_active_ms = excluded.last_active_ms, stream_pos = excluded.stream_pos",
                &[&user_id.as_str(), &state, &status_msg, &now, &pos.0],
            )
            .await?;
            Ok(pos)
        }
        .await;
        conn.finish(result).await
    }

    async fn get_presence(&self, user_id: &UserId) -> StorageResult<Option<PresenceRecord>> {
        let mut conn = self.db.read().await?;
        let sql = format!("SELECT {PRESENCE_COLUMNS} FROM presence WHERE user_id = $1");
        conn.query_opt_decode(&sql, &[&user_id.as_str()], rows::presence)
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
        let users = text_list(user_ids);
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {PRESENCE_COLUMNS} FROM presence
             WHERE user_id = ANY($1::TEXT[]) AND stream_pos > $2 ORDER BY stream_pos"
        );
        conn.query_decode(&sql, &[&users, &since.0], rows::presence)
            .await
    }

    async fn create_filter(
        &self,
        user_id: &UserId,
        filter: &serde_json::Value,
    ) -> StorageResult<String> {
        let filter = filter.to_string();
        let mut conn = self.db.write().await?;
        // Writes are serialised, so MAX + 1 cannot race.
        let result = async {
            let row = conn
                .query_one(
                    "SELECT COALESCE(MAX(filter_id) + 1, 0)::BIGINT FROM filters WHERE user_id = $1",
                    &[&user_id.as_str()],
                )
                .await?;
            let id: i64 = get(&row, 0)?;
            conn.execute(
                "INSERT INTO filters (user_id, filter_id, filter) VALUES ($1, $2, $3)",
                &[&user_id.as_str(), &id, &filter],
            )
            .await?;
            Ok(id.to_string())
        }
        .await;
        conn.finish(result).await
    }

    async fn get_filter(
        &self,
        user_id: &UserId,
        filter_id: &str,
    ) -> StorageResult<Option<serde_json::Value>> {
        let Some(id) = rows::filter_id(filter_id) else {
            return Ok(None);
        };
        let mut conn = self.db.read().await?;
        let row = conn
            .query_opt(
                "SELECT filter FROM filters WHERE user_id = $1 AND filter_id = $2",
                &[&user_id.as_str(), &id],
            )
            .await?;
        row.map(|row| parse_json(&get::<String>(&row, 0)?, "filter"))
            .transpose()
    }

    async fn add_report(&self, report: ReportRecord) -> StorageResult<()> {
        let (room_id, event_id, target_user) = rows::report_target_columns(&report.target);
        let created = to_i64(report.created_ms, "created_ms")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO reports
                     (reporter, room_id, event_id, target_user, reason, score, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &report.reporter.as_str(),
                    &room_id,
                    &event_id,
                    &target_user,
                    &report.reason,
                    &report.score,
                    &created,
                ],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn reports(&self, limit: usize) -> StorageResult<Vec<ReportRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.db.read().await?;
        let sql = format!("SELECT {REPORT_COLUMNS} FROM reports ORDER BY id DESC LIMIT $1");
        conn.query_decode(&sql, &[&limit], rows::report).await
    }
}
