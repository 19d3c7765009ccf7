//! `AppserviceStore`: each application service's delivered position and pending transaction,
//! and the room directories of its third-party networks.

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::convert::to_i64;
use myelin_storage::rows::{self, APPSERVICE_STATE_COLUMNS};
use myelin_storage::{
    AppserviceStore, AppserviceTxnState, PendingAppserviceTxn, StorageError, StorageResult,
};
use ruma::{OwnedRoomId, RoomId};

use crate::convert::{get, now_ms, parse_id};
use crate::PgStore;

#[async_trait]
impl AppserviceStore for PgStore {
    async fn appservice_state(
        &self,
        id: &str,
        start: StreamPos,
    ) -> StorageResult<AppserviceTxnState> {
        let mut conn = self.db.write().await?;
        let result = async {
            conn.execute(
                "INSERT INTO appservice_txns (appservice_id, delivered_pos, next_txn_id)
                 VALUES ($1, $2, 1) ON CONFLICT (appservice_id) DO NOTHING",
                &[&id, &start.0],
            )
            .await?;
            let sql = format!(
                "SELECT {APPSERVICE_STATE_COLUMNS} FROM appservice_txns WHERE appservice_id = $1"
            );
            conn.query_opt_decode(&sql, &[&id], rows::appservice_state)
                .await?
                .ok_or_else(|| StorageError::Backend("appservice row vanished".into()))
        }
        .await;
        conn.finish(result).await
    }

    async fn appservice_queue_txn(
        &self,
        id: &str,
        txn: PendingAppserviceTxn,
    ) -> StorageResult<bool> {
        let txn_id = to_i64(txn.txn_id, "txn_id")?;
        let next = to_i64(txn.txn_id.saturating_add(1), "txn_id")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "UPDATE appservice_txns SET pending_txn_id = $2, pending_up_to = $3,
                     pending_body = $4, next_txn_id = $5
                 WHERE appservice_id = $1 AND pending_txn_id IS NULL",
                &[&id, &txn_id, &txn.up_to.0, &txn.body, &next],
            )
            .await
            .map(|n| n == 1);
        conn.finish(result).await
    }

    async fn appservice_txn_done(&self, id: &str, txn_id: u64) -> StorageResult<bool> {
        let txn_id = to_i64(txn_id, "txn_id")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "UPDATE appservice_txns SET delivered_pos = GREATEST(delivered_pos, pending_up_to),
                     pending_txn_id = NULL, pending_up_to = NULL, pending_body = NULL
                 WHERE appservice_id = $1 AND pending_txn_id = $2",
                &[&id, &txn_id],
            )
            .await
            .map(|n| n == 1);
        conn.finish(result).await
    }

    async fn appservice_skip_to(&self, id: &str, pos: StreamPos) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "UPDATE appservice_txns SET delivered_pos = $2
                 WHERE appservice_id = $1 AND pending_txn_id IS NULL AND delivered_pos < $2",
                &[&id, &pos.0],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn set_network_room_published(
        &self,
        appservice_id: &str,
        network_id: &str,
        room_id: &RoomId,
        published: bool,
    ) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = if published {
            conn.execute(
                "INSERT INTO appservice_room_directory
                     (appservice_id, network_id, room_id, published_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (appservice_id, network_id, room_id) DO NOTHING",
                &[&appservice_id, &network_id, &room_id.as_str(), &now_ms()],
            )
            .await
        } else {
            conn.execute(
                "DELETE FROM appservice_room_directory
                 WHERE appservice_id = $1 AND network_id = $2 AND room_id = $3",
                &[&appservice_id, &network_id, &room_id.as_str()],
            )
            .await
        }
        .map(drop);
        conn.finish(result).await
    }

    async fn network_published_rooms(
        &self,
        network: Option<(&str, &str)>,
    ) -> StorageResult<Vec<OwnedRoomId>> {
        let mut conn = self.db.read().await?;
        let rows = match network {
            Some((appservice, network)) => {
                conn.query(
                    "SELECT room_id FROM appservice_room_directory
                     WHERE appservice_id = $1 AND network_id = $2 ORDER BY room_id COLLATE \"C\"",
                    &[&appservice, &network],
                )
                .await?
            }
            None => {
                conn.query(
                    "SELECT DISTINCT room_id COLLATE \"C\" AS room_id FROM appservice_room_directory
                     ORDER BY 1",
                    &[],
                )
                .await?
            }
        };
        rows.iter()
            .map(|row| parse_id(get::<String>(row, 0)?, "published room"))
            .collect()
    }
}
