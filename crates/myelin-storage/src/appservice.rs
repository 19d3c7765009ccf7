//! Application-service transactions (spec: Application Service API, "Pushing events"): for each
//! appservice, how far along the event stream it has been sent everything, and the one
//! transaction being sent now.
//!
//! The queue is the event stream itself: an appservice's worker reads the events after
//! `delivered_pos`, stores the transaction it built from them (its body and the position it
//! reaches) *before* sending it, and moves `delivered_pos` only once the appservice accepted
//! it. After a crash the same transaction, with the same txnId and body, is sent again, so
//! nothing is lost and nothing is sent under two txnIds.
//!
//! Also the room directories of appservices' third-party networks (spec: Client-Server API,
//! "Application services" → "Room directories"): rooms an appservice published under one of its
//! networks, apart from the main directory (`RoomStore::published_rooms`).

use async_trait::async_trait;
use myelin_core::StreamPos;
use ruma::{OwnedRoomId, RoomId};

use crate::StorageResult;

/// A transaction stored before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAppserviceTxn {
    pub txn_id: u64,
    /// The stream position `delivered_pos` moves to once it is accepted.
    pub up_to: StreamPos,
    /// The JSON body, sent as stored on every retry.
    pub body: String,
}

/// Where an appservice's transactions stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppserviceTxnState {
    /// Every event up to here was sent (or was of no interest).
    pub delivered_pos: StreamPos,
    /// The txnId the next new transaction gets.
    pub next_txn_id: u64,
    pub pending: Option<PendingAppserviceTxn>,
}

#[async_trait]
pub trait AppserviceStore {
    /// The appservice's state, created at `start` (its txnIds from 1) if it has none yet: a new
    /// appservice gets what happens from now on, not the whole history.
    async fn appservice_state(
        &self,
        id: &str,
        start: StreamPos,
    ) -> StorageResult<AppserviceTxnState>;
    /// Stores the transaction about to be sent; the next new one gets `txn.txn_id + 1`.
    /// Refused (`false`) while another is pending.
    async fn appservice_queue_txn(
        &self,
        id: &str,
        txn: PendingAppserviceTxn,
    ) -> StorageResult<bool>;
    /// The pending transaction `txn_id` was accepted: `delivered_pos` moves to its `up_to` and
    /// it is gone. `false` if it was not the pending one.
    async fn appservice_txn_done(&self, id: &str, txn_id: u64) -> StorageResult<bool>;
    /// Nothing of interest up to `pos`: `delivered_pos` moves there, if nothing is pending and
    /// it is ahead.
    async fn appservice_skip_to(&self, id: &str, pos: StreamPos) -> StorageResult<()>;

    /// Publishes the room in (`true`) or removes it from (`false`) the directory of the
    /// appservice's network `network_id`. Idempotent; the room need not be known to storage.
    async fn set_network_room_published(
        &self,
        appservice_id: &str,
        network_id: &str,
        room_id: &RoomId,
        published: bool,
    ) -> StorageResult<()>;
    /// The rooms in the directory of one network (`Some((appservice_id, network_id))`) or of
    /// every network (`None`), each once, ordered by room ID.
    async fn network_published_rooms(
        &self,
        network: Option<(&str, &str)>,
    ) -> StorageResult<Vec<OwnedRoomId>>;
}
