//! `FederationStore`: the outbox per destination, received transactions, and memberships in
//! rooms this server is not in.

use async_trait::async_trait;
use myelin_core::{Pdu, StreamPos};
use myelin_storage::{FederationStore, OutboxContent, OutboxEntry, OutlierStatus, StorageResult};
use ruma::{RoomId, UserId};
use tokio_postgres::Row;

use crate::convert::{corrupt, get, limit, now_ms, parse_id, to_i64, to_u64};
use crate::persist::{insert_outliers, take_position, upsert_membership};
use crate::PgStore;

#[async_trait]
impl FederationStore for PgStore {
    async fn queue_edu(&self, destinations: &[String], edu_json: String) -> StorageResult<()> {
        if destinations.is_empty() {
            return Ok(());
        }
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO federation_outbox (destination, edu, created_ms)
                 SELECT d, $2, $3 FROM UNNEST($1::TEXT[]) AS d",
                &[&destinations, &edu_json, &now_ms()],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn outbox_destinations(&self) -> StorageResult<Vec<String>> {
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                "SELECT destination FROM federation_outbox GROUP BY destination ORDER BY destination COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter().map(|row| get(row, 0)).collect()
    }

    async fn outbox_peek(
        &self,
        destination: &str,
        max_pdus: usize,
        max_edus: usize,
    ) -> StorageResult<Vec<OutboxEntry>> {
        // No answer can hold more rows than both limits together.
        let most = limit(max_pdus.saturating_add(max_edus));
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                "SELECT id, destination, event_id, edu, created_ms FROM federation_outbox
                 WHERE destination = $1 ORDER BY id LIMIT $2",
                &[&destination, &most],
            )
            .await?;
        let (mut pdus, mut edus) = (0, 0);
        let mut out = Vec::new();
        for row in &rows {
            let entry = decode_entry(row)?;
            let (count, max) = match entry.content {
                OutboxContent::Pdu(_) => (&mut pdus, max_pdus),
                OutboxContent::Edu(_) => (&mut edus, max_edus),
            };
            // Stop rather than skip: rows go out in order.
            if *count == max {
                break;
            }
            *count += 1;
            out.push(entry);
        }
        Ok(out)
    }

    async fn outbox_remove(&self, destination: &str, ids: &[i64]) -> StorageResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "DELETE FROM federation_outbox WHERE destination = $1 AND id = ANY($2::BIGINT[])",
                &[&destination, &ids],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn outbox_drop(&self, destination: &str) -> StorageResult<u64> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "DELETE FROM federation_outbox WHERE destination = $1",
                &[&destination],
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

fn decode_entry(row: &Row) -> StorageResult<OutboxEntry> {
    let id: i64 = get(row, 0)?;
    let content = match (
        get::<Option<String>>(row, 2)?,
        get::<Option<String>>(row, 3)?,
    ) {
        (Some(event_id), None) => OutboxContent::Pdu(parse_id(event_id, "outbox event ID")?),
        (None, Some(edu)) => OutboxContent::Edu(edu),
        _ => {
            return Err(corrupt(
                "outbox row",
                format!("row {id} must carry exactly one of a PDU and an EDU"),
            ))
        }
    };
    Ok(OutboxEntry {
        id,
        destination: get(row, 1)?,
        content,
        created_ms: to_u64(get(row, 4)?, "outbox created_ms")?,
    })
}
