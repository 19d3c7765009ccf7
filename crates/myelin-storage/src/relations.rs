//! Event relationships: the index of which timeline event relates to which
//! (`content["m.relates_to"]`, see [`myelin_core::Pdu::relation`]) and the questions `/relations`,
//! `/threads` and the bundled aggregations ask of it.
//!
//! The index has one row per timeline event that declares a relation, written by the same
//! transaction that stores the event (local sends, federated events, backfill alike), never for
//! a rejected event, and removed by the transaction that redacts the event. A row keeps the
//! relating event's room, type, sender and stream position, so the questions below are answered
//! from the index and the events table alone.

use async_trait::async_trait;
use myelin_core::{Relation, StreamPos};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::{Direction, EventRecord, StorageResult, TimelineSpan};

/// The relationship type of thread replies.
pub const THREAD: &str = "m.thread";
/// The relationship type of edits.
pub const REPLACE: &str = "m.replace";
/// The relationship type of references.
pub const REFERENCE: &str = "m.reference";

/// One page of the events relating to a parent (`GET /relations`).
#[derive(Debug, Clone)]
pub struct RelationsQuery {
    pub room_id: OwnedRoomId,
    pub parent: OwnedEventId,
    /// Only relations of this type.
    pub rel_type: Option<String>,
    /// Only relating events of this type.
    pub event_type: Option<String>,
    /// As for [`crate::RoomStore::room_events`]: backward returns positions `<= from` (and
    /// `> to`), newest first; forward returns positions `> from` (and `<= to`), oldest first.
    pub from: StreamPos,
    pub to: Option<StreamPos>,
    pub dir: Direction,
    pub limit: usize,
    /// How many levels of relations to follow: 1 for the parent's direct children, 2 for their
    /// children too, and so on. The type filters apply to the events found at every level.
    pub depth: u32,
}

/// A thread root's replies, as far as a reader may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSummary {
    pub root: OwnedEventId,
    pub count: u64,
    /// The newest reply.
    pub latest: OwnedEventId,
    /// Whether the asking user sent one of the replies.
    pub participated: bool,
}

/// A thread in a room's list of threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadEntry {
    pub root: OwnedEventId,
    /// The position of its newest reply, which orders the list.
    pub latest_pos: StreamPos,
}

#[async_trait]
pub trait RelationStore {
    /// The relation `event_id` declares, if it is a timeline event with one (not redacted).
    async fn relation_of(&self, event_id: &ruma::EventId) -> StorageResult<Option<Relation>>;

    /// A page of the timeline events relating to `query.parent` in its room, directly or (with
    /// `depth` > 1) through other relating events, in stream order in the query's direction.
    async fn relations(&self, query: &RelationsQuery) -> StorageResult<Vec<EventRecord>>;

    /// For each of `roots` (events of `room_id`) that has thread replies at positions up to
    /// `up_to` (all if `None`): how many, the newest, and whether `user` sent one. Roots without
    /// replies are left out.
    async fn thread_summaries(
        &self,
        room_id: &RoomId,
        roots: &[OwnedEventId],
        user: &UserId,
        up_to: Option<StreamPos>,
    ) -> StorageResult<Vec<ThreadSummary>>;

    /// The threads of a room whose root is one of its timeline events, by their newest reply
    /// (counting replies up to `up_to`), newest first: those whose newest reply is before
    /// `before`, and with `participant` only those they started or replied to; at most `limit`.
    async fn threads(
        &self,
        room_id: &RoomId,
        participant: Option<&UserId>,
        before: Option<StreamPos>,
        up_to: Option<StreamPos>,
        limit: usize,
    ) -> StorageResult<Vec<ThreadEntry>>;

    /// Edits of each of `parents` (events of `room_id`): the `m.replace` events at positions up
    /// to `up_to` that have the parent's sender and type, neither being a state event; for each
    /// parent the newest `per_parent` by `origin_server_ts` (then event ID), newest first.
    /// Returned as `(parent, edit)`.
    async fn edits(
        &self,
        room_id: &RoomId,
        parents: &[OwnedEventId],
        up_to: Option<StreamPos>,
        per_parent: usize,
    ) -> StorageResult<Vec<(OwnedEventId, EventRecord)>>;

    /// `(parent, reference)`: for each of `parents`, the first `per_parent` events at positions
    /// up to `up_to` that relate to it with `m.reference`, oldest first.
    async fn references(
        &self,
        room_id: &RoomId,
        parents: &[OwnedEventId],
        up_to: Option<StreamPos>,
        per_parent: usize,
    ) -> StorageResult<Vec<(OwnedEventId, OwnedEventId)>>;

    /// Those of `parents` that have a relating event sent by one of `senders` (any sender if
    /// `None`) with one of `rel_types` (any type if `None`).
    async fn parents_related_by(
        &self,
        room_id: &RoomId,
        parents: &[OwnedEventId],
        senders: Option<&[OwnedUserId]>,
        rel_types: Option<&[String]>,
    ) -> StorageResult<Vec<OwnedEventId>>;

    /// Those of `parents` (each given with its room) that any event of that room relates to,
    /// each once. One call for the pages of many rooms (a sliding sync window's timelines).
    async fn related_parents(
        &self,
        parents: &[(OwnedRoomId, OwnedEventId)],
    ) -> StorageResult<Vec<OwnedEventId>>;

    /// The timelines [`crate::RoomStore::latest_events_of`] reads and, of the events read, those
    /// any event of their room relates to (as [`RelationStore::related_parents`] finds them):
    /// what a sliding sync window needs before it formats timelines, in one call (on PostgreSQL
    /// one statement, so one round trip instead of two in a row).
    async fn latest_events_related(
        &self,
        spans: &[TimelineSpan],
        limit: usize,
    ) -> StorageResult<LatestEvents>;
}

/// What [`RelationStore::latest_events_related`] reads.
#[derive(Debug, Clone, Default)]
pub struct LatestEvents {
    /// Per span, in the order given, its newest events, newest first.
    pub timelines: Vec<Vec<EventRecord>>,
    /// Of those events, the ones anything in their room relates to, each once.
    pub related: Vec<OwnedEventId>,
}
