//! `rooms.leave`: rooms the user left or was banned from, with the timeline up to the leave.

use myelin_storage::{EventRecord, MembershipRecord, OutlierStatus};
use serde_json::{json, Map, Value};

use super::{
    pass::Pass,
    timeline::{latest_events, prev_batch, timeline_limit},
    Syncer,
};
use crate::{ServiceError, ServiceResult};

impl Syncer {
    /// `rooms.leave`: rooms left since the token, or on an initial sync every left room if
    /// the filter includes them; forgotten rooms never.
    pub(super) async fn left_rooms(
        &self,
        pass: &Pass<'_>,
        memberships: &[MembershipRecord],
    ) -> ServiceResult<Map<String, Value>> {
        let mut leave = Map::new();
        for m in memberships {
            if !matches!(m.membership.as_str(), "leave" | "ban") || m.forgotten {
                continue;
            }
            let shown = match pass.since_pos() {
                Some(since) => m.stream_pos > since,
                None => pass.filter.room.include_leave,
            };
            if shown {
                leave.insert(m.room_id.to_string(), self.left_room(pass, m).await?);
            }
        }
        Ok(leave)
    }

    /// One `rooms.leave` entry: the timeline up to the leave, and the state at it.
    async fn left_room(&self, pass: &Pass<'_>, m: &MembershipRecord) -> ServiceResult<Value> {
        let limit = timeline_limit(pass.filter);
        let storage = self.ctx.storage.as_ref();
        let (records, limited) =
            latest_events(storage, &m.room_id, m.stream_pos, pass.since_pos(), limit).await?;
        let own_leave = records
            .iter()
            .find(|r| r.pdu.event_id == m.event_id)
            .cloned();
        let mut records = self.visible_to_leaver(pass, m, records).await?;
        // The user always sees their own leave (or ban), which is what tells a client the room
        // was left; a rejected invite to a remote room has no more than that.
        if !records.iter().any(|r| r.pdu.event_id == m.event_id) {
            let leave = match own_leave {
                Some(leave) => Some(leave),
                None => self
                    .ctx
                    .storage
                    .get_event(&m.event_id)
                    .await?
                    .filter(|leave| leave.outlier == Some(OutlierStatus::Outlier)),
            };
            records.extend(leave);
        }
        let prev_batch = prev_batch(&records, m.stream_pos);
        // Aggregations as they were when the user left.
        let timeline = self
            .timeline_section(
                pass.authed,
                m,
                &records,
                (limited, prev_batch),
                Some(m.stream_pos),
            )
            .await?;
        Ok(json!({
            "timeline": timeline,
            "state": { "events": [] },
            "account_data": { "events": [] },
        }))
    }

    /// The events of `records` the user may see as a former member.
    async fn visible_to_leaver(
        &self,
        pass: &Pass<'_>,
        m: &MembershipRecord,
        records: Vec<EventRecord>,
    ) -> ServiceResult<Vec<EventRecord>> {
        match self.rooms.room_state(&m.room_id).await {
            Ok(state) => {
                self.rooms
                    .history_view(&pass.authed.user_id, state, Some(m))
                    .ignoring(pass.ignored.clone())
                    .filter(records)
                    .await
            }
            // A room on another server we never joined: nothing of it is ours to show.
            Err(ServiceError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}
