//! `AppserviceStore`: each application service's delivered position and pending transaction,
//! and the room directories of its third-party networks.

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::rows::{self, APPSERVICE_STATE_COLUMNS};
use myelin_storage::{AppserviceStore, AppserviceTxnState, PendingAppserviceTxn, StorageResult};
use ruma::{OwnedRoomId, RoomId};
use rusqlite::{params, Connection};

use crate::convert::{now_ms, parse_id, query_first, to_i64, Db};
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

    async fn set_network_room_published(
        &self,
        appservice_id: &str,
        network_id: &str,
        room_id: &RoomId,
        published: bool,
    ) -> StorageResult<()> {
        let key = [appservice_id, network_id, room_id.as_str()].map(str::to_owned);
        self.db
            .write(move |tx, _| {
                let [appservice, network, room] = &key;
                if published {
                    tx.prepare_cached(
                        "INSERT INTO appservice_room_directory
                             (appservice_id, network_id, room_id, published_ms)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (appservice_id, network_id, room_id) DO NOTHING",
                    )
                    .db()?
                    .execute(params![appservice, network, room, now_ms()])
                    .db()?;
                } else {
                    tx.prepare_cached(
                        "DELETE FROM appservice_room_directory
                         WHERE appservice_id = ?1 AND network_id = ?2 AND room_id = ?3",
                    )
                    .db()?
                    .execute(params![appservice, network, room])
                    .db()?;
                }
                Ok(())
            })
            .await
    }

    async fn network_published_rooms(
        &self,
        network: Option<(&str, &str)>,
    ) -> StorageResult<Vec<OwnedRoomId>> {
        let network = network.map(|(a, n)| (a.to_owned(), n.to_owned()));
        self.db
            .read(move |conn| {
                let ids = match &network {
                    Some((appservice, network)) => conn
                        .prepare_cached(
                            "SELECT room_id FROM appservice_room_directory
                             WHERE appservice_id = ?1 AND network_id = ?2 ORDER BY room_id",
                        )
                        .db()?
                        .query_map(params![appservice, network], |row| row.get::<_, String>(0))
                        .db()?
                        .collect::<rusqlite::Result<Vec<_>>>(),
                    None => conn
                        .prepare_cached(
                            "SELECT DISTINCT room_id FROM appservice_room_directory
                             ORDER BY room_id",
                        )
                        .db()?
                        .query_map([], |row| row.get::<_, String>(0))
                        .db()?
                        .collect::<rusqlite::Result<Vec<_>>>(),
                }
                .db()?;
                ids.into_iter()
                    .map(|id| parse_id(id, "published room"))
                    .collect()
            })
            .await
    }
}
