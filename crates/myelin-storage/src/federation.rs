//! Federation bookkeeping: the durable outbox of PDUs and EDUs per destination, and the
//! transactions received from each origin (so a retried transaction is answered, not redone).

use async_trait::async_trait;
use myelin_core::{Pdu, StreamPos};
use ruma::{OwnedEventId, OwnedServerName, RoomId, ServerName, UserId};

use crate::StorageResult;

/// What one outbox row carries to its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxContent {
    /// A PDU, by event ID (the JSON is read from the event store when sending).
    Pdu(OwnedEventId),
    /// An EDU, as its JSON object (`{"edu_type": ..., "content": ...}`).
    Edu(String),
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Increasing in insertion order; rows are sent and removed in that order.
    pub id: i64,
    pub destination: String,
    pub content: OutboxContent,
    pub created_ms: u64,
}

#[async_trait]
pub trait FederationStore {
    /// Queues an EDU for each destination, in one transaction.
    async fn queue_edu(
        &self,
        destinations: &[OwnedServerName],
        edu_json: String,
    ) -> StorageResult<()>;
    /// Destinations with at least one queued row (to restart their senders after a restart).
    async fn outbox_destinations(&self) -> StorageResult<Vec<OwnedServerName>>;
    /// The oldest queued rows of a destination: at most `max_pdus` PDUs and `max_edus` EDUs,
    /// in id order, stopping before the first row that would exceed either limit.
    async fn outbox_peek(
        &self,
        destination: &ServerName,
        max_pdus: usize,
        max_edus: usize,
    ) -> StorageResult<Vec<OutboxEntry>>;
    /// Removes delivered rows.
    async fn outbox_remove(&self, destination: &ServerName, ids: &[i64]) -> StorageResult<()>;
    /// Drops every queued row of a destination (a peer gone for good); returns how many.
    async fn outbox_drop(&self, destination: &ServerName) -> StorageResult<u64>;

    /// The response given to a transaction already processed, if any.
    async fn received_txn(&self, origin: &str, txn_id: &str) -> StorageResult<Option<String>>;
    /// Records a processed transaction and its response (overwrites nothing: the first wins).
    async fn record_received_txn(
        &self,
        origin: &str,
        txn_id: &str,
        response_json: String,
        received_ms: u64,
    ) -> StorageResult<()>;

    /// A local user's membership in a room this server does not take part in (a remote invite,
    /// or its rejection): `event` is stored as an outlier, the user's `room_memberships` row
    /// moves to it at a new stream position (so `/sync` sees the change), and `stripped_state`
    /// (the invite's room state as a JSON array; `None` keeps what is stored) is kept for `/sync`.
    /// The room need not be in `rooms`. One transaction.
    async fn persist_outside_membership(
        &self,
        event: Pdu,
        user_id: &UserId,
        membership: &str,
        stripped_state: Option<String>,
    ) -> StorageResult<StreamPos>;
    /// The stripped state stored with a remote invite, if any.
    async fn stripped_state(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> StorageResult<Option<String>>;
}
