//! The build step's reads, batched: the timelines (with their related-event lookups) and unread
//! counts of every room a pass updates come from two storage calls side by side for all of them
//! (one round trip each on PostgreSQL), not a few per room.

use std::collections::{BTreeMap, HashMap, HashSet};

use myelin_storage::{EventRecord, NotificationCounts, TimelineSpan};
use ruma::{OwnedEventId, OwnedRoomId, RoomId};

use super::{pass::Pass, SlidingSync};
use crate::ServiceResult;

/// One room the window reads for: the stretch of its timeline and how many events of it
/// (`None`: no timeline), and whether its unread counts are wanted.
pub(super) struct WindowRoom {
    pub room_id: OwnedRoomId,
    pub timeline: Option<(TimelineSpan, usize)>,
    pub counts: bool,
}

/// What the window read.
#[derive(Default)]
pub(super) struct Window {
    /// Per room, its newest events, newest first.
    timelines: HashMap<OwnedRoomId, Vec<EventRecord>>,
    counts: HashMap<OwnedRoomId, NotificationCounts>,
    /// Of the events read, those anything in their room relates to (a superset of those that
    /// may have aggregations is fine: only those are looked up).
    pub related: HashSet<OwnedEventId>,
}

impl Window {
    /// The room's newest events, newest first (empty if none were read).
    pub(super) fn timeline(&self, room_id: &RoomId) -> Vec<EventRecord> {
        self.timelines.get(room_id).cloned().unwrap_or_default()
    }

    /// The user's unread counts in the room, over the main timeline and every thread.
    pub(super) fn counts(&self, room_id: &RoomId) -> Option<NotificationCounts> {
        self.counts.get(room_id).copied()
    }
}

impl SlidingSync {
    /// Reads what the rooms' updates need: the timelines with which of their events anything
    /// relates to (one call per distinct length, so usually one) beside the unread counts.
    pub(super) async fn read_window(
        &self,
        pass: &Pass<'_>,
        rooms: Vec<WindowRoom>,
    ) -> ServiceResult<Window> {
        let mut by_limit: BTreeMap<usize, Vec<TimelineSpan>> = BTreeMap::new();
        let mut counted = Vec::new();
        for room in rooms {
            if let Some((span, limit)) = room.timeline {
                by_limit.entry(limit).or_default().push(span);
            }
            if room.counts {
                counted.push(room.room_id);
            }
        }
        let storage = self.ctx.storage.as_ref();
        // Each timeline read also tells which of its events anything relates to.
        let timelines = async {
            let mut out = HashMap::new();
            let mut related = HashSet::new();
            for (limit, spans) in &by_limit {
                let found = storage.latest_events_related(spans, *limit).await?;
                for (span, events) in spans.iter().zip(found.timelines) {
                    out.insert(span.room_id.clone(), events);
                }
                related.extend(found.related);
            }
            ServiceResult::Ok((out, related))
        };
        let counts = async {
            if counted.is_empty() {
                return ServiceResult::Ok(HashMap::new());
            }
            let found = self
                .push
                .unread_counts_in(&pass.authed.user_id, &counted)
                .await?;
            Ok(counted.iter().cloned().zip(found).collect())
        };
        let ((timelines, related), counts) = futures_util::try_join!(timelines, counts)?;
        Ok(Window {
            timelines,
            counts,
            related,
        })
    }
}
