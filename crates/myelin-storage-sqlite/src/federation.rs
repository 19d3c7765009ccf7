//! `FederationStore`: the outbox per destination, received transactions, and memberships in
//! rooms this server is not in.

use async_trait::async_trait;
use myelin_core::{Pdu, StreamPos};
use myelin_storage::rows::{self, OUTBOX_COLUMNS};
use myelin_storage::{FederationStore, OutboxEntry, OutlierStatus, StorageResult};
use ruma::{OwnedServerName, RoomId, ServerName, UserId};
use rusqlite::{params, OptionalExtension};

use crate::convert::{limit, now_ms, to_i64, Db, SqlRow};
use crate::{persist, SqliteStore};

#[async_trait]
impl FederationStore for SqliteStore {
    async fn queue_edu(
        &self,
        destinations: &[OwnedServerName],
        edu_json: String,
    ) -> StorageResult<()> {
        if destinations.is_empty() {
            return Ok(());
        }
        let destinations = destinations.to_vec();
        self.db
            .write(move |tx, _| {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO federation_outbox (destination, edu, created_ms) VALUES (?1, ?2, ?3)",
                    )
                    .db()?;
                let now = now_ms();
                for destination in &destinations {
                    insert
                        .execute(params![destination.as_str(), edu_json, now])
                        .db()?;
                }
                Ok(())
            })
            .await
    }

    async fn outbox_destinations(&self) -> StorageResult<Vec<OwnedServerName>> {
        self.db
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT DISTINCT destination FROM federation_outbox ORDER BY destination",
                )
                .db()?
                .query_map([], |row| row.get(0))
                .db()?
                .collect::<rusqlite::Result<Vec<String>>>()
                .db()
            })
            .await
            .map(rows::server_names)
    }

    async fn outbox_peek(
        &self,
        destination: &ServerName,
        max_pdus: usize,
        max_edus: usize,
    ) -> StorageResult<Vec<OutboxEntry>> {
        let destination = destination.to_string();
        // No answer can hold more rows than both limits together.
        let most = limit(max_pdus.saturating_add(max_edus));
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {OUTBOX_COLUMNS} FROM federation_outbox
                         WHERE destination = ?1 ORDER BY id LIMIT ?2"
                    ))
                    .db()?;
                let mut found = stmt.query(params![destination, most]).db()?;
                // Decoded one by one: rows past the limits are never looked at.
                let entries = std::iter::from_fn(|| match found.next().db() {
                    Ok(row) => row.map(|row| rows::outbox_entry(&SqlRow(row))),
                    Err(e) => Some(Err(e)),
                });
                rows::outbox_batch(entries, max_pdus, max_edus)
            })
            .await
    }

    async fn outbox_remove(&self, destination: &ServerName, ids: &[i64]) -> StorageResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (destination, ids) = (destination.to_string(), ids.to_vec());
        self.db
            .write(move |tx, _| {
                let mut delete = tx
                    .prepare_cached(
                        "DELETE FROM federation_outbox WHERE destination = ?1 AND id = ?2",
                    )
                    .db()?;
                for id in ids {
                    delete.execute(params![destination, id]).db()?;
                }
                Ok(())
            })
            .await
    }

    async fn outbox_drop(&self, destination: &ServerName) -> StorageResult<u64> {
        let destination = destination.to_string();
        self.db
            .write(move |tx, _| {
                let dropped = tx
                    .prepare_cached("DELETE FROM federation_outbox WHERE destination = ?1")
                    .db()?
                    .execute([destination])
                    .db()?;
                Ok(dropped as u64)
            })
            .await
    }

    async fn received_txn(&self, origin: &str, txn_id: &str) -> StorageResult<Option<String>> {
        let (origin, txn_id) = (origin.to_owned(), txn_id.to_owned());
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT response FROM federation_received_txns WHERE origin = ?1 AND txn_id = ?2",
                )
                .db()?
                .query_row(params![origin, txn_id], |row| row.get(0))
                .optional()
                .db()
            })
            .await
    }

    async fn record_received_txn(
        &self,
        origin: &str,
        txn_id: &str,
        response_json: String,
        received_ms: u64,
    ) -> StorageResult<()> {
        let (origin, txn_id) = (origin.to_owned(), txn_id.to_owned());
        let received_ms = to_i64(received_ms, "received_ms")?;
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "INSERT INTO federation_received_txns (origin, txn_id, response, received_ms)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (origin, txn_id) DO NOTHING",
                )
                .db()?
                .execute(params![origin, txn_id, response_json, received_ms])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn persist_outside_membership(
        &self,
        event: Pdu,
        user_id: &UserId,
        membership: &str,
        stripped_state: Option<String>,
    ) -> StorageResult<StreamPos> {
        let (user_id, membership) = (user_id.to_owned(), membership.to_owned());
        self.db
            .write(move |tx, positions| {
                let pos = positions.take(tx)?;
                persist::insert_outlier(tx, &event, OutlierStatus::Outlier)?;
                let room_id = event.room_id.as_str();
                persist::upsert_membership(
                    tx,
                    room_id,
                    user_id.as_str(),
                    &membership,
                    event.event_id.as_str(),
                    pos,
                )?;
                if let Some(stripped_state) = &stripped_state {
                    tx.prepare_cached(
                        "INSERT INTO remote_invite_state (room_id, user_id, stripped_state) VALUES (?1, ?2, ?3)
                         ON CONFLICT (room_id, user_id) DO UPDATE SET stripped_state = excluded.stripped_state",
                    )
                    .db()?
                    .execute(params![room_id, user_id.as_str(), stripped_state])
                    .db()?;
                }
                Ok(pos)
            })
            .await
    }

    async fn stripped_state(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> StorageResult<Option<String>> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT stripped_state FROM remote_invite_state WHERE room_id = ?1 AND user_id = ?2",
                )
                .db()?
                .query_row(params![room_id.as_str(), user_id.as_str()], |row| row.get(0))
                .optional()
                .db()
            })
            .await
    }
}
