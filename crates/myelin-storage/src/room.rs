//! Rooms: events (the DAG), per-event state snapshots, current state, memberships, aliases.

use std::collections::BTreeMap;

use async_trait::async_trait;
use myelin_core::{Pdu, StreamPos};
use ruma::{
    EventId, OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId,
    RoomId, RoomVersionId, UserId,
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
    /// Set for an event that is known but has no place in the timeline (see [`OutlierStatus`]);
    /// its `stream_pos` and `state_snapshot` are then 0 and mean nothing.
    pub outlier: Option<OutlierStatus>,
}

impl EventRecord {
    /// A rejected or soft-failed event: kept for the DAG, never shown to clients or servers.
    pub fn is_withheld(&self) -> bool {
        matches!(
            self.outlier,
            Some(OutlierStatus::Rejected | OutlierStatus::SoftFailed)
        )
    }
}

/// Why a stored event is outside the room's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutlierStatus {
    /// Received without its place in the DAG being known (auth chains and state from
    /// `send_join`, `/state`, `/event_auth`, invites): it may be referenced, never shown.
    Outlier,
    /// Failed the auth checks on receipt: kept so that later events may reference it, never
    /// applied.
    Rejected,
    /// Allowed by the state before it but not by the current state: kept, not shown, not an
    /// extremity.
    SoftFailed,
}

impl OutlierStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutlierStatus::Outlier => "outlier",
            OutlierStatus::Rejected => "rejected",
            OutlierStatus::SoftFailed => "soft_failed",
        }
    }

    pub fn parse(s: &str) -> Option<OutlierStatus> {
        match s {
            "outlier" => Some(OutlierStatus::Outlier),
            "rejected" => Some(OutlierStatus::Rejected),
            "soft_failed" => Some(OutlierStatus::SoftFailed),
            _ => None,
        }
    }
}

/// An event stored outside the timeline.
#[derive(Debug, Clone)]
pub struct NewOutlier {
    pub pdu: Pdu,
    pub status: OutlierStatus,
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
    /// When the room's current state is not the state after this event (a fork was resolved),
    /// the whole resolved current state; it replaces `current_state` and the room then has no
    /// current snapshot. Only read when `updates_current_state` is true.
    pub resolved_current_state: Option<StateMap>,
    /// Remote servers this event must be sent to: one outbox row each, in the same transaction.
    pub destinations: Vec<OwnedServerName>,
    /// The local users this event notifies, with their push actions: one notification row each
    /// and one push queue row per HTTP pusher of theirs, in the same transaction. A redaction
    /// removes its target's rows.
    pub push_actions: Vec<crate::NewPushAction>,
}

/// An event of the room's history fetched from another server (`/backfill`), to be placed before
/// every event stored so far.
#[derive(Debug, Clone)]
pub struct BackfilledEvent {
    pub pdu: Pdu,
    /// An existing snapshot of the room to store as the state after the event (the caller's
    /// best knowledge; backfilled history comes without its own state).
    pub state_snapshot: SnapshotId,
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
    /// The snapshot the room's current state equals; `None` after a resolved fork.
    pub current_snapshot: Option<SnapshotId>,
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
    /// Where the user last joined the room, kept after they leave: history visibility `shared`
    /// lets a user read events sent before a join of theirs.
    pub joined_pos: Option<StreamPos>,
}

/// A stretch of one room's timeline, walked back from `from` (included) towards `floor`
/// (excluded, when set): see [`RoomStore::latest_of_types`] and [`RoomStore::latest_events_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineSpan {
    pub room_id: OwnedRoomId,
    pub from: StreamPos,
    pub floor: Option<StreamPos>,
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
    /// Stores events outside the timeline (see [`OutlierStatus`]), in one transaction, and in
    /// the same transaction `events` (which may be empty) as [`RoomStore::persist_events`] does:
    /// a join over federation stores the room's state and auth chain as outliers and the join
    /// event in the timeline at once. An outlier already stored (in either place) is skipped.
    /// A later timeline event with the ID of an outlier moves it into the timeline.
    async fn persist_with_outliers(
        &self,
        outliers: Vec<NewOutlier>,
        events: Vec<NewEvent>,
    ) -> StorageResult<Vec<Persisted>>;

    /// Places history fetched from other servers before every stored event, in one transaction.
    /// `events` come newest first: each new one takes the next NEGATIVE stream position down
    /// from `min(lowest position in use, 0) - 1`, so the last given sorts first. They change
    /// neither current state, forward extremities, memberships nor the stream counter
    /// ([`RoomStore::current_stream_pos`]), so an incremental `/sync` never sees them; only
    /// backward pagination reaches them. An event already in the timeline is skipped (it keeps
    /// its position); an outlier moves into the timeline, as with [`RoomStore::persist_event`].
    /// Returns each event's position in the timeline, in the order given.
    async fn persist_backfilled(
        &self,
        events: Vec<BackfilledEvent>,
    ) -> StorageResult<Vec<StreamPos>>;

    async fn room_info(&self, room_id: &RoomId) -> StorageResult<Option<RoomInfo>>;
    /// A stored event, in the timeline or not (`EventRecord::outlier`).
    async fn get_event(&self, event_id: &EventId) -> StorageResult<Option<EventRecord>>;
    /// The events that exist among `ids`, in no particular order, outliers included.
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
    /// Only the given keys of a snapshot's state (those it has): a few lookups instead of
    /// loading a whole big room's state.
    async fn state_entries_at(
        &self,
        snapshot: SnapshotId,
        keys: &[StateKey],
    ) -> StorageResult<StateMap>;
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

    /// For each span, in the order given: the position of the newest of its `walk` newest
    /// events whose type is one of `types`, if that position is positive (backfilled history
    /// never counts); `None` when there is none. One call for many rooms (the bump stamps of a
    /// sliding sync room list), reading positions and types only.
    async fn latest_of_types(
        &self,
        spans: &[TimelineSpan],
        types: &[&str],
        walk: usize,
    ) -> StorageResult<Vec<Option<StreamPos>>>;

    /// For each span, in the order given: its newest `limit` events, newest first, as
    /// [`RoomStore::room_events`] walking backward from `from` (included) down to `floor`
    /// (excluded) gives them. One call for many rooms (the timelines of a sliding sync window).
    async fn latest_events_of(
        &self,
        spans: &[TimelineSpan],
        limit: usize,
    ) -> StorageResult<Vec<Vec<EventRecord>>>;

    /// The room's timeline event (rejected ones excepted) closest to `ts` by `origin_server_ts`:
    /// the first at or after it (`Forward`) or the last at or before it (`Backward`), with that
    /// timestamp.
    async fn event_near_timestamp(
        &self,
        room_id: &RoomId,
        ts: u64,
        dir: Direction,
    ) -> StorageResult<Option<(OwnedEventId, u64)>>;

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

    /// Publishes the room in (`true`) or removes it from (`false`) the public room directory.
    /// Idempotent; the room need not be known to storage.
    async fn set_room_published(&self, room_id: &RoomId, published: bool) -> StorageResult<()>;
    /// Whether the room is in the public room directory.
    async fn is_room_published(&self, room_id: &RoomId) -> StorageResult<bool>;
    /// Every room in the public room directory, ordered by room ID.
    async fn published_rooms(&self) -> StorageResult<Vec<OwnedRoomId>>;

    /// The newest stream position whose writes (and all before it) are committed.
    async fn current_stream_pos(&self) -> StorageResult<StreamPos>;
}
