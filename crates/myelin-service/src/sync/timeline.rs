//! The `timeline` section shared by joined and left rooms: the latest events up to a position,
//! whether older ones were cut off, and the token to paginate back from.

use myelin_core::StreamPos;
use myelin_storage::{Direction, EventRecord, MembershipRecord, Storage};
use ruma::RoomId;
use serde_json::{json, Value};

use super::{pagination_token, Syncer};
use crate::{accounts::Authed, filter::Filter, ServiceError, ServiceResult};

/// Events per room timeline when the filter sets no limit.
const DEFAULT_TIMELINE_LIMIT: usize = 10;

/// How many events a room timeline holds under `filter`.
pub(super) fn timeline_limit(filter: &Filter) -> usize {
    filter
        .room
        .timeline
        .limit
        .map_or(DEFAULT_TIMELINE_LIMIT, |l| l.clamp(1, 100) as usize)
}

/// Where `prev_batch` points: just before the first timeline event, or `end` if there is none.
pub(crate) fn prev_batch(timeline: &[EventRecord], end: StreamPos) -> StreamPos {
    timeline
        .first()
        .map_or(end, |r| StreamPos(r.stream_pos.0 - 1))
}

/// The latest `limit` events of a room in `(after, up_to]`, oldest first, and whether there
/// were more.
pub(crate) async fn latest_events(
    storage: &dyn Storage,
    room_id: &RoomId,
    up_to: StreamPos,
    after: Option<StreamPos>,
    limit: usize,
) -> ServiceResult<(Vec<EventRecord>, bool)> {
    let records = storage
        .room_events(room_id, up_to, after, Direction::Backward, limit + 1)
        .await?;
    Ok(timeline_of(records, limit))
}

/// The timeline of `limit` events made of up to `limit + 1` newest ones (newest first, as a
/// backward read gives them): oldest first, and whether there were more.
pub(crate) fn timeline_of(mut records: Vec<EventRecord>, limit: usize) -> (Vec<EventRecord>, bool) {
    let limited = records.len() > limit;
    records.truncate(limit);
    records.reverse();
    (records, limited)
}

impl Syncer {
    /// The `timeline` object of a room whose membership is `m`, its events formatted for the
    /// syncing device with their bundled aggregations as of `up_to` (a former member's leave).
    pub(super) async fn timeline_section(
        &self,
        authed: &Authed,
        m: &MembershipRecord,
        records: &[EventRecord],
        (limited, prev_batch): (bool, StreamPos),
        up_to: Option<StreamPos>,
    ) -> ServiceResult<Value> {
        let viewer = (&*authed.user_id, &*authed.device_id);
        let events = match self.rooms.room_state(&m.room_id).await {
            Ok(state) => {
                let mut view = self.rooms.history_view(&authed.user_id, state, Some(m));
                self.history
                    .format_timeline(records, viewer, &mut view, up_to)
                    .await?
            }
            // A room on another server we never joined: nothing to aggregate.
            Err(ServiceError::NotFound(_)) => {
                self.history.format_events(records, Some(viewer)).await?
            }
            Err(e) => return Err(e),
        };
        Ok(json!({
            "events": events,
            "limited": limited,
            "prev_batch": pagination_token(prev_batch),
        }))
    }
}
