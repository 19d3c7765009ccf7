//! Event relationships and threads (spec: Client-Server API, "Event relationships" and
//! "Threading"): `GET /relations` and `GET /threads`, and the bundled aggregations
//! (`unsigned["m.relations"]`, `bundle.rs`) of every timeline event served to a client.
//!
//! They live in the history subsystem because they are reads of a room's history: every event
//! they show (parent, children, thread roots, latest replies, edits) passes the reader's
//! `HistoryView` (`rooms/visibility.rs`) through `History::read_access`, and the formatting they
//! extend is History's, which `/sync` uses.

mod bundle;

use std::collections::HashSet;

use myelin_core::StreamPos;
use myelin_storage::{Direction, EventRecord, RelationsQuery, REPLACE};
use ruma::{DeviceId, EventId, OwnedEventId, OwnedUserId, RoomId, UserId};
use serde_json::Value;

use crate::{filter::RoomEventFilter, History, ServiceError, ServiceResult};

/// `/relations` without a `limit`, and the most one page holds (as Synapse).
pub const RELATIONS_DEFAULT_LIMIT: usize = 5;
pub const RELATIONS_MAX_LIMIT: usize = 1000;
/// `/threads` without a `limit`, and the most one page holds.
pub const THREADS_DEFAULT_LIMIT: usize = 5;
pub const THREADS_MAX_LIMIT: usize = 100;
/// How many levels of relations `recurse=true` follows (the spec asks for at least 3).
pub const RECURSION_DEPTH: u32 = 3;

/// The parameters of `GET /relations/{eventId}[/{relType}[/{eventType}]]`.
#[derive(Debug, Clone)]
pub struct RelationsRequest {
    pub rel_type: Option<String>,
    pub event_type: Option<String>,
    pub from: Option<StreamPos>,
    pub to: Option<StreamPos>,
    pub dir: Direction,
    pub limit: Option<usize>,
    pub recurse: bool,
}

pub struct RelationsPage {
    pub chunk: Vec<Value>,
    /// Where the next page starts, if there may be one.
    pub next_batch: Option<StreamPos>,
    /// The `from` of this page, if it had one (as Synapse answers).
    pub prev_batch: Option<StreamPos>,
    /// How deep relations were followed, when `recurse` was asked for.
    pub recursion_depth: Option<u32>,
}

/// Which threads `GET /threads` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadsInclude {
    All,
    /// Threads the user started or replied to.
    Participated,
}

pub struct ThreadsPage {
    pub chunk: Vec<Value>,
    /// Where the next page starts: before the newest reply of this page's last thread.
    pub next_batch: Option<StreamPos>,
}

impl History {
    /// `GET /rooms/{roomId}/relations/{eventId}`: `Forbidden` for a room the user may not read,
    /// `NotFound` for a parent they may not see; then a page of the events relating to it that
    /// they may see, with their own bundled aggregations.
    pub async fn relations(
        &self,
        user_id: &UserId,
        device: &DeviceId,
        room_id: &RoomId,
        parent_id: &EventId,
        req: RelationsRequest,
    ) -> ServiceResult<RelationsPage> {
        let mut access = self.read_access(user_id, room_id).await?;
        let parent = match self.ctx.storage.get_event(parent_id).await? {
            Some(r) if access.view.may_see(&r).await? => r,
            _ => return Err(ServiceError::NotFound("Event not found".into())),
        };
        let up_to = access.read_up_to();
        let limit = req
            .limit
            .unwrap_or(RELATIONS_DEFAULT_LIMIT)
            .clamp(1, RELATIONS_MAX_LIMIT);
        let (from, to) = bounds(&req, up_to);
        let query = RelationsQuery {
            room_id: room_id.to_owned(),
            parent: parent_id.to_owned(),
            rel_type: req.rel_type,
            event_type: req.event_type,
            from,
            to,
            dir: req.dir,
            // One more than asked for tells whether there is a next page.
            limit: limit + 1,
            depth: if req.recurse { RECURSION_DEPTH } else { 1 },
        };
        let mut records = self.ctx.storage.relations(&query).await?;
        let next_batch = next_page(&mut records, limit, req.dir);
        if parent.redacted_by.is_some() {
            // An edit of a redacted event would show what the redaction removed.
            records.retain(|r| r.pdu.relation().is_none_or(|rel| rel.rel_type != REPLACE));
        }
        let visible = access.view.filter(records).await?;
        let chunk = self
            .format_timeline(&visible, (user_id, device), &mut access.view, up_to)
            .await?;
        Ok(RelationsPage {
            chunk,
            next_batch,
            prev_batch: req.from,
            recursion_depth: req.recurse.then_some(RECURSION_DEPTH),
        })
    }

    /// `GET /rooms/{roomId}/threads`: the room's thread roots the user may see, by their newest
    /// reply, newest first, each with its bundled aggregations (the thread summary among them).
    /// `from` is a previous page's `next_batch`.
    pub async fn threads(
        &self,
        user_id: &UserId,
        device: &DeviceId,
        room_id: &RoomId,
        include: ThreadsInclude,
        from: Option<StreamPos>,
        limit: Option<usize>,
    ) -> ServiceResult<ThreadsPage> {
        let mut access = self.read_access(user_id, room_id).await?;
        let up_to = access.read_up_to();
        let limit = limit
            .unwrap_or(THREADS_DEFAULT_LIMIT)
            .clamp(1, THREADS_MAX_LIMIT);
        let participant = (include == ThreadsInclude::Participated).then_some(user_id);
        let mut entries = self
            .ctx
            .storage
            .threads(room_id, participant, from, up_to, limit + 1)
            .await?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next_batch = entries.last().filter(|_| more).map(|e| e.latest_pos);
        let ids: Vec<_> = entries.iter().map(|e| e.root.clone()).collect();
        let mut roots = self.ctx.storage.get_events(&ids).await?;
        roots.sort_by_key(|r| ids.iter().position(|id| *id == r.pdu.event_id));
        let visible = access.view.filter(roots).await?;
        let chunk = self
            .format_timeline(&visible, (user_id, device), &mut access.view, up_to)
            .await?;
        Ok(ThreadsPage { chunk, next_batch })
    }
}

impl History {
    /// The events of `records` (of `room_id`) that the filter's `related_by_senders` and
    /// `related_by_rel_types` keep: those with a relating event from one of the senders, of one
    /// of the types. All of them when the filter has neither.
    pub(crate) async fn related_by(
        &self,
        room_id: &RoomId,
        mut records: Vec<EventRecord>,
        filter: &RoomEventFilter,
    ) -> ServiceResult<Vec<EventRecord>> {
        if !filter.filters_relations() || records.is_empty() {
            return Ok(records);
        }
        // A sender that is no user ID relates nothing.
        let senders: Option<Vec<OwnedUserId>> = filter.related_by_senders.as_ref().map(|s| {
            s.iter()
                .filter_map(|s| OwnedUserId::try_from(s.as_str()).ok())
                .collect()
        });
        let ids: Vec<_> = records.iter().map(|r| r.pdu.event_id.clone()).collect();
        let related: HashSet<OwnedEventId> = self
            .ctx
            .storage
            .parents_related_by(
                room_id,
                &ids,
                senders.as_deref(),
                filter.related_by_rel_types.as_deref(),
            )
            .await?
            .into_iter()
            .collect();
        records.retain(|r| related.contains(&r.pdu.event_id));
        Ok(records)
    }
}

/// Where a `/relations` page starts and stops: the request's `from` and `to`, kept within what
/// the reader may read (`up_to`); without a `from`, the newest (backward) or oldest event.
fn bounds(req: &RelationsRequest, up_to: Option<StreamPos>) -> (StreamPos, Option<StreamPos>) {
    let (mut from, mut to) = (req.from, req.to);
    if let Some(up) = up_to {
        match req.dir {
            Direction::Backward => from = Some(from.map_or(up, |f| f.min(up))),
            Direction::Forward => to = Some(to.map_or(up, |t| t.min(up))),
        }
    }
    let from = from.unwrap_or(match req.dir {
        Direction::Backward => StreamPos(i64::MAX),
        Direction::Forward => StreamPos(i64::MIN),
    });
    (from, to)
}

/// Cuts a page fetched with one extra event down to `limit`; the next page's `from` if the
/// extra one was there (the positions are read as `room_events` reads them).
fn next_page(records: &mut Vec<EventRecord>, limit: usize, dir: Direction) -> Option<StreamPos> {
    if records.len() <= limit {
        return None;
    }
    records.truncate(limit);
    records.last().map(|last| match dir {
        Direction::Backward => StreamPos(last.stream_pos.0 - 1),
        Direction::Forward => last.stream_pos,
    })
}

#[cfg(test)]
mod tests;
