//! Rooms: events (the DAG), per-event state snapshots, current state, memberships, aliases.

use std::collections::BTreeMap;

use async_trait::async_trait;
use myelin_core::{Pdu, StreamPos};
use ruma::{
    EventId, OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId,
    RoomVersionId, UserId,
};
use serde_json::value::RawValue as RawJsonValue;

use crate::StorageResult;

/// `(event type, state key)`.
pub type StateKey = (String, String);
/// A full room state: which event holds each state key.
pub type StateMap = BTreeMap<StateKey, OwnedEventId>;

/// Identifies a stored state snapshot (the state after some event).
pub type SnapshotId = i64;

/// A stored event with its place in the local stream.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub pdu: Pdu,
    pub stream_pos: StreamPos,
    /// The state after this event.
    pub state_snapshot: SnapshotId,
    /// `(device, txn_id)` of the local client request that sent it.
    pub txn: Option<(OwnedDeviceId, String)>,
    /// The redaction event that redacted this one (its `json` is then the redacted form).
    pub redacted_by: Option<OwnedEventId>,
}

#[derive(Debug, Clone)]
pub struct NewRoom {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub creator: OwnedUserId,
    pub created_ms: u64,
}

/// The state after a new event, as a change to an existing snapshot.
#[derive(Debug, Clone)]
pub enum NewState {
    /// A non-state event: the state after it is the given snapshot.
    Same(SnapshotId),
    /// `base` (or empty) with the given keys replaced.
    Changed {
        base: Option<SnapshotId>,
        changes: Vec<(StateKey, OwnedEventId)>,
    },
}

/// A membership change carried by an `m.room.member` event.
#[derive(Debug, Clone)]
pub struct MembershipChange {
    pub user_id: OwnedUserId,
    /// `join`, `invite`, `leave`, `ban` or `knock`.
    pub membership: String,
}

/// Everything that persisting one event changes, written in one transaction.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub pdu: Pdu,
    /// Set when the event creates the room.
    pub room: Option<NewRoom>,
    pub state: NewState,
    /// Whether the event moves the room's current state to its state snapshot.
    pub updates_current_state: bool,
    pub membership: Option<MembershipChange>,
    pub txn: Option<(OwnedDeviceId, String)>,
    /// The event this one redacts, with its redacted JSON.
    pub redaction: Option<(OwnedEventId, Box<RawJsonValue>)>,
    /// The room's forward extremities after this event.
    pub forward_extremities: Vec<OwnedEventId>,
}

/// What persisting an event assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persisted {
    pub stream_pos: StreamPos,
    pub state_snapshot: SnapshotId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub creator: OwnedUserId,
}

/// One user's membership in one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRecord {
    pub room_id: OwnedRoomId,
    pub user_id: OwnedUserId,
    pub membership: String,
    pub event_id: OwnedEventId,
    pub stream_pos: StreamPos,
    pub forgotten: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards older events.
    Backward,
    /// Towards newer events.
    Forward,
}

#[async_trait]
pub trait RoomStore {
    /// Persists an event and everything it changes in one transaction; assigns its stream position.
    async fn persist_event(&self, event: NewEvent) -> StorageResult<Persisted>;
    /// Persists several events in order, all in one transaction (e.g. the events of
    /// `createRoom`). Within a batch, `NewState::Changed` is relative to the snapshot before
    /// the batch, so each event's `changes` list is cumulative.
    async fn persist_events(&self, events: Vec<NewEvent>) -> StorageResult<Vec<Persisted>>;

    async fn room_info(&self, room_id: &RoomId) -> StorageResult<Option<RoomInfo>>;
    async fn get_event(&self, event_id: &EventId) -> StorageResult<Option<EventRecord>>;
    /// The events that exist among `ids`, in no particular order.
    async fn get_events(&self, ids: &[OwnedEventId]) -> StorageResult<Vec<EventRecord>>;
    /// The event a client request `(user, device, txn_id)` created, if any.
    async fn event_for_txn(
        &self,
        user_id: &UserId,
        device_id: &str,
        txn_id: &str,
    ) -> StorageResult<Option<OwnedEventId>>;

    /// The room's current state.
    async fn current_state(&self, room_id: &RoomId) -> StorageResult<StateMap>;
    async fn state_at_snapshot(&self, snapshot: SnapshotId) -> StorageResult<StateMap>;
    async fn forward_extremities(&self, room_id: &RoomId) -> StorageResult<Vec<OwnedEventId>>;

    /// Up to `limit` events of the room from position `from` in direction `dir`, stopping at `to`.
    /// Backward returns positions `<= from` (and `> to`), newest first; forward returns positions
    /// `> from` (and `<= to`), oldest first.
    async fn room_events(
        &self,
        room_id: &RoomId,
        from: StreamPos,
        to: Option<StreamPos>,
        dir: Direction,
        limit: usize,
    ) -> StorageResult<Vec<EventRecord>>;

    /// The rooms with at least one event at a stream position in `(after, up_to]`: an incremental
    /// `/sync` asks once instead of once per joined room.
    async fn rooms_with_events_between(
        &self,
        after: StreamPos,
        up_to: StreamPos,
    ) -> StorageResult<Vec<OwnedRoomId>>;

    /// All memberships of a user (every room they have ever had a membership event in).
    async fn memberships_of_user(&self, user_id: &UserId) -> StorageResult<Vec<MembershipRecord>>;
    /// Current memberships of everyone in a room.
    async fn room_members(&self, room_id: &RoomId) -> StorageResult<Vec<MembershipRecord>>;
    async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> StorageResult<()>;

    /// Creates an alias; `false` if it already exists.
    async fn create_alias(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) -> StorageResult<bool>;
    async fn resolve_alias(
        &self,
        alias: &RoomAliasId,
    ) -> StorageResult<Option<(OwnedRoomId, OwnedUserId)>>;
    /// Returns `false` if the alias did not exist.
    async fn delete_alias(&self, alias: &RoomAliasId) -> StorageResult<bool>;
    async fn aliases_of_room(&self, room_id: &RoomId) -> StorageResult<Vec<String>>;

    /// The newest stream position whose writes (and all before it) are committed.
    async fn current_stream_pos(&self) -> StorageResult<StreamPos>;
}
