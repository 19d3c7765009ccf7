//! `AppserviceStore`: each application service's delivered position and pending transaction.

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::rows::{self, APPSERVICE_STATE_COLUMNS};
use myelin_storage::{AppserviceStore, AppserviceTxnState, PendingAppserviceTxn, StorageResult};
use rusqlite::{params, Connection};

use crate::convert::{query_first, to_i64, Db};
use crate::SqliteStore;

fn read_state(conn: &Connection, id: &str) -> StorageResult<Option<AppserviceTxnState>> {
    query_first(
        conn,
        &format!("SELECT {APPSERVICE_STATE_COLUMNS} FROM appservice_txns WHERE appservice_id = ?1"),
        params![id],
        rows::appservice_state,
    )
}

#[async_trait]
impl AppserviceStore for SqliteStore {
    async fn appservice_state(
        &self,
        id: &str,
        start: StreamPos,
    ) -> StorageResult<AppserviceTxnState> {
        let id = id.to_owned();
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "INSERT INTO appservice_txns (appservice_id, delivered_pos, next_txn_id)
                     VALUES (?1, ?2, 1) ON CONFLICT (appservice_id) DO NOTHING",
                )
                .db()?
                .execute(params![id, start.0])
                .db()?;
                read_state(tx, &id)?.ok_or_else(|| {
                    myelin_storage::StorageError::Backend("appservice row vanished".into())
                })
            })
            .await
    }

    async fn appservice_queue_txn(
        &self,
        id: &str,
        txn: PendingAppserviceTxn,
    ) -> StorageResult<bool> {
        let id = id.to_owned();
        self.db
            .write(move |tx, _| {
                let txn_id = to_i64(txn.txn_id, "txn_id")?;
                let next = to_i64(txn.txn_id.saturating_add(1), "txn_id")?;
                let changed = tx
                    .prepare_cached(
                        "UPDATE appservice_txns SET pending_txn_id = ?2, pending_up_to = ?3,
                             pending_body = ?4, next_txn_id = ?5
                         WHERE appservice_id = ?1 AND pending_txn_id IS NULL",
                    )
                    .db()?
                    .execute(params![id, txn_id, txn.up_to.0, txn.body, next])
                    .db()?;
                Ok(changed == 1)
            })
            .await
    }

    async fn appservice_txn_done(&self, id: &str, txn_id: u64) -> StorageResult<bool> {
        let id = id.to_owned();
        self.db
            .write(move |tx, _| {
                let changed = tx
                    .prepare_cached(
                        "UPDATE appservice_txns SET delivered_pos = MAX(delivered_pos, pending_up_to),
                             pending_txn_id = NULL, pending_up_to = NULL, pending_body = NULL
                         WHERE appservice_id = ?1 AND pending_txn_id = ?2",
                    )
                    .db()?
                    .execute(params![id, to_i64(txn_id, "txn_id")?])
                    .db()?;
                Ok(changed == 1)
            })
            .await
    }

    async fn appservice_skip_to(&self, id: &str, pos: StreamPos) -> StorageResult<()> {
        let id = id.to_owned();
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "UPDATE appservice_txns SET delivered_pos = ?2
                     WHERE appservice_id = ?1 AND pending_txn_id IS NULL AND delivered_pos < ?2",
                )
                .db()?
                .execute(params![id, pos.0])
                .db()?;
                Ok(())
            })
            .await
    }
}
