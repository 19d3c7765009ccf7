//! Walking a room's history back for remote servers: `/backfill` and `/get_missing_events`.
//!
//! Both walk `prev_events` from events the remote names, within one room, with bounded work
//! (at most [`MAX_BACKFILL`] or [`MAX_MISSING_EVENTS`] events, one storage query per step or
//! layer). Events the remote may not see are served redacted (see `access.rs`), so the DAG it
//! receives has no holes.

use std::collections::{BinaryHeap, HashMap, HashSet};

use myelin_storage::{Direction, EventRecord};
use ruma::{OwnedEventId, RoomId, ServerName};
use serde_json::value::RawValue as RawJsonValue;

use super::access::ServerView;
use crate::{FederationReads, ServiceError, ServiceResult};

/// The most events one `/backfill` returns.
pub const MAX_BACKFILL: usize = 100;
/// The most events one `/get_missing_events` returns, and its default.
pub const MAX_MISSING_EVENTS: usize = 20;
pub const DEFAULT_MISSING_EVENTS: usize = 10;

/// The body of `POST /get_missing_events/{roomId}`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct MissingEventsRequest {
    #[serde(default)]
    pub earliest_events: Vec<OwnedEventId>,
    pub latest_events: Vec<OwnedEventId>,
    pub limit: Option<usize>,
    #[serde(default)]
    pub min_depth: u64,
}

/// An event waiting in the backfill walk, newest (greatest depth, then stream position) first.
struct Queued(EventRecord);

impl Queued {
    fn key(&self) -> (u64, i64) {
        (self.0.pdu.depth, self.0.stream_pos.0)
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl FederationReads {
    /// `GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=`: the `v` events and those
    /// before them, newest first (by depth, then stream position), at most `limit` (capped at
    /// [`MAX_BACKFILL`]).
    ///
    /// `NotFound` if none of the `v` events is in the room; `Forbidden` if the origin may see
    /// none of them.
    pub async fn federation_backfill(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> ServiceResult<Vec<Box<RawJsonValue>>> {
        let limit = limit.min(MAX_BACKFILL);
        let mut view = self.federation_view(origin, room_id).await?;
        // Bounded work: a remote naming thousands of events gets the first few looked at.
        let from = &from[..from.len().min(MAX_BACKFILL)];
        let starts = self.room_events_among(room_id, from).await?;
        if starts.is_empty() {
            return Err(ServiceError::NotFound(
                "None of the events to backfill from are known".into(),
            ));
        }
        require_any_visible(&mut view, &starts).await?;

        let mut seen: HashSet<OwnedEventId> =
            starts.iter().map(|r| r.pdu.event_id.clone()).collect();
        let mut queue: BinaryHeap<Queued> = starts.into_iter().map(Queued).collect();
        let mut out = Vec::with_capacity(limit);
        while out.len() < limit {
            let Some(Queued(record)) = queue.pop() else {
                break;
            };
            out.push(view.served(&record).await?);
            if out.len() == limit {
                break;
            }
            let prevs: Vec<OwnedEventId> = record
                .pdu
                .prev_events
                .iter()
                .filter(|p| seen.insert((*p).clone()))
                .cloned()
                .collect();
            queue.extend(
                self.room_events_among(room_id, &prevs)
                    .await?
                    .into_iter()
                    .map(Queued),
            );
        }
        Ok(out)
    }

    /// `POST /_matrix/federation/v1/get_missing_events/{roomId}`: a breadth-first walk of
    /// `prev_events` back from `latest_events`, not entering `earliest_events` nor events below
    /// `min_depth`, at most `limit` events (default [`DEFAULT_MISSING_EVENTS`], capped at
    /// [`MAX_MISSING_EVENTS`]). Returned oldest first, the order a receiver processes them in.
    ///
    /// Empty when none of `latest_events` is known; `Forbidden` if the origin may see none of
    /// them.
    pub async fn federation_missing_events(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        request: &MissingEventsRequest,
    ) -> ServiceResult<Vec<Box<RawJsonValue>>> {
        let limit = request
            .limit
            .unwrap_or(DEFAULT_MISSING_EVENTS)
            .min(MAX_MISSING_EVENTS);
        let mut view = self.federation_view(origin, room_id).await?;
        // Bounded work: a remote naming thousands of events gets the first few looked at.
        let latest_ids: Vec<OwnedEventId> = request
            .latest_events
            .iter()
            .take(MAX_MISSING_EVENTS)
            .cloned()
            .collect();
        let latest = self.room_events_among(room_id, &latest_ids).await?;
        if latest.is_empty() {
            return Ok(Vec::new());
        }
        require_any_visible(&mut view, &latest).await?;

        let mut seen: HashSet<OwnedEventId> = request.earliest_events.iter().cloned().collect();
        seen.extend(latest.iter().map(|r| r.pdu.event_id.clone()));
        let mut frontier: Vec<OwnedEventId> = latest
            .iter()
            .flat_map(|r| r.pdu.prev_events.iter())
            .filter(|p| seen.insert((*p).clone()))
            .cloned()
            .collect();
        let mut found: Vec<EventRecord> = Vec::new();
        while found.len() < limit && !frontier.is_empty() {
            let mut layer: HashMap<OwnedEventId, EventRecord> = self
                .room_events_among(room_id, &frontier)
                .await?
                .into_iter()
                .map(|r| (r.pdu.event_id.clone(), r))
                .collect();
            let mut next = Vec::new();
            // In the order the walk reached them, not the order storage answered in.
            for id in &frontier {
                let Some(record) = layer.remove(id) else {
                    continue;
                };
                if found.len() >= limit {
                    break;
                }
                if record.pdu.depth < request.min_depth {
                    continue;
                }
                next.extend(
                    record
                        .pdu
                        .prev_events
                        .iter()
                        .filter(|p| seen.insert((*p).clone()))
                        .cloned(),
                );
                found.push(record);
            }
            frontier = next;
        }
        found.sort_by_key(|r| (r.pdu.depth, r.stream_pos));
        let mut out = Vec::with_capacity(found.len());
        for record in &found {
            out.push(view.served(record).await?);
        }
        Ok(out)
    }

    /// The events among `ids` that are in `room_id`.
    async fn room_events_among(
        &self,
        room_id: &RoomId,
        ids: &[OwnedEventId],
    ) -> ServiceResult<Vec<EventRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .ctx
            .storage
            .get_events(ids)
            .await?
            .into_iter()
            .filter(|r| r.pdu.room_id == room_id)
            .collect())
    }
}

/// `Forbidden` unless the origin may see at least one of `events`.
async fn require_any_visible(
    view: &mut ServerView<'_>,
    events: &[EventRecord],
) -> ServiceResult<()> {
    for record in events {
        if view.may_see(record).await? {
            return Ok(());
        }
    }
    match events.first() {
        Some(first) => view.require_visible(first).await,
        None => Ok(()),
    }
}

impl FederationReads {
    /// `GET /_matrix/federation/v1/timestamp_to_event/{roomId}`: our event nearest `ts` that the
    /// origin may see.
    pub async fn federation_timestamp_to_event(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        ts: u64,
        dir: Direction,
    ) -> ServiceResult<(OwnedEventId, u64)> {
        let mut view = self.federation_view(origin, room_id).await?;
        let (event_id, found_ts) = self
            .ctx
            .storage
            .event_near_timestamp(room_id, ts, dir)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("No event found {dir:?} of {ts}")))?;
        let record = view.event(&event_id).await?;
        view.require_visible(&record).await?;
        Ok((event_id, found_ts))
    }
}
