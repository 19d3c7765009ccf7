//! `FederationStore`: the outbox per destination, received transactions, and memberships in
//! rooms this server is not in.

use async_trait::async_trait;
use myelin_core::{Pdu, StreamPos};
use myelin_storage::rows::{self, OUTBOX_COLUMNS};
use myelin_storage::{FederationStore, OutboxEntry, OutlierStatus, StorageResult};
use ruma::{OwnedServerName, RoomId, ServerName, UserId};

use crate::convert::{get, limit, now_ms, to_i64, PgRow};
use crate::persist::{insert_outliers, take_position, upsert_membership};
use crate::PgStore;

#[async_trait]
impl FederationStore for PgStore {
    async fn queue_edu(
        &self,
        destinations: &[OwnedServerName],
        edu_json: String,
    ) -> StorageResult<()> {
        if destinations.is_empty() {
            return Ok(());
        }
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO federation_outbox (destination, edu, created_ms)
                 SELECT d, $2, $3 FROM UNNEST($1::TEXT[]) AS d",
                &[&as_strs(destinations), &edu_json, &now_ms()],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn outbox_destinations(&self) -> StorageResult<Vec<OwnedServerName>> {
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                "SELECT destination FROM federation_outbox GROUP BY destination ORDER BY destination COLLATE \"C\"",
                &[],
            )
            .await?;
        let stored = rows
            .iter()
            .map(|row| get(row, 0))
            .collect::<StorageResult<_>>()?;
        Ok(rows::server_names(stored))
    }

    async fn outbox_peek(
        &self,
        destination: &ServerName,
        max_pdus: usize,
        max_edus: usize,
    ) -> StorageResult<Vec<OutboxEntry>> {
        // No answer can hold more rows than both limits together.
        let most = limit(max_pdus.saturating_add(max_edus));
        let mut conn = self.db.read().await?;
        let found = conn
            .query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM federation_outbox
                     WHERE destination = $1 ORDER BY id LIMIT $2"
                ),
                &[&destination.as_str(), &most],
            )
            .await?;
        // Decoded one by one: rows past the limits are never looked at.
        let entries = found.iter().map(|row| rows::outbox_entry(&PgRow(row)));
        rows::outbox_batch(entries, max_pdus, max_edus)
    }

    async fn outbox_remove(&self, destination: &ServerName, ids: &[i64]) -> StorageResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "DELETE FROM federation_outbox WHERE destination = $1 AND id = ANY($2::BIGINT[])",
                &[&destination.as_str(), &ids],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn outbox_drop(&self, destination: &ServerName) -> StorageResult<u64> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "DELETE FROM federation_outbox WHERE destination = $1",
                &[&destination.as_str()],
            )
            .await;
        conn.finish(result).await
    }

    async fn received_txn(&self, origin: &str, txn_id: &str) -> StorageResult<Option<String>> {
        let mut conn = self.db.read().await?;
        let row = conn
            .query_opt(
                "SELECT response FROM federation_received_txns WHERE origin = $1 AND txn_id = $2",
                &[&origin, &txn_id],
            )
            .await?;
        row.map(|row| get(&row, 0)).transpose()
    }

    async fn record_received_txn(
        &self,
        origin: &str,
        txn_id: &str,
        response_json: String,
        received_ms: u64,
    ) -> StorageResult<()> {
        let received_ms = to_i64(received_ms, "received_ms")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO federation_received_txns (origin, txn_id, response, received_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (origin, txn_id) DO NOTHING",
                &[&origin, &txn_id, &response_json, &received_ms],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn persist_outside_membership(
        &self,
        event: Pdu,
        user_id: &UserId,
        membership: &str,
        stripped_state: Option<String>,
    ) -> StorageResult<StreamPos> {
        let mut conn = self.db.write().await?;
        let result = async {
            let pos = take_position(&mut conn).await?;
            insert_outliers(&mut conn, [(&event, OutlierStatus::Outlier)]).await?;
            let room_id = event.room_id.as_str();
            let event_id = event.event_id.as_str();
            upsert_membership(&mut conn, room_id, user_id.as_str(), membership, event_id, pos)
                .await?;
            if let Some(stripped_state) = &stripped_state {
                conn.execute(
                    "INSERT INTO remote_invite_state (room_id, user_id, stripped_state) VALUES ($1, $2, $3)
                     ON CONFLICT (room_id, user_id) DO UPDATE SET stripped_state = excluded.stripped_state",
                    &[&room_id, &user_id.as_str(), stripped_state],
                )
                .await?;
            }
            Ok(pos)
        }
        .await;
        conn.finish(result).await
    }

    async fn stripped_state(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> StorageResult<Option<String>> {
        let mut conn = self.db.read().await?;
        let row = conn
            .query_opt(
                "SELECT stripped_state FROM remote_invite_state WHERE room_id = $1 AND user_id = $2",
                &[&room_id.as_str(), &user_id.as_str()],
            )
            .await?;
        row.map(|row| get(&row, 0)).transpose()
    }
}

/// Server names as the text the outbox stores.
pub(crate) fn as_strs(names: &[OwnedServerName]) -> Vec<&str> {
    names.iter().map(|n| n.as_str()).collect()
}
