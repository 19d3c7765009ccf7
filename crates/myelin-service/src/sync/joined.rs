//! `rooms.join`: the joined rooms of a pass, built a few at a time, and one joined room's
//! timeline, ephemeral events, account data and summary (its state comes from `state`).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use futures_util::StreamExt;
use myelin_core::StreamPos;
use myelin_storage::{EventRecord, MembershipRecord, ReceiptRecord};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{json, Map, Value};

use super::{
    pass::Pass,
    timeline::{latest_events, prev_batch, timeline_limit},
    Syncer,
};
use crate::{
    rooms::{Membership, RoomState},
    ServiceResult,
};

/// How many joined rooms one `/sync` builds concurrently.
const ROOMS_AT_ONCE: usize = 8;

/// What the pass already read for one joined room.
struct RoomNews {
    /// False when the room certainly has no event in `(since, next]`.
    has_new_events: bool,
    receipts: Vec<ReceiptRecord>,
    account_data: Vec<Value>,
}

impl Syncer {
    /// The read receipts of the joined rooms since the token (one query for all of them),
    /// without other users' private ones.
    pub(super) async fn receipts_by_room(
        &self,
        pass: &Pass<'_>,
        memberships: &[MembershipRecord],
    ) -> ServiceResult<HashMap<OwnedRoomId, Vec<ReceiptRecord>>> {
        let joined_ids: Vec<OwnedRoomId> = memberships
            .iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id.clone())
            .collect();
        let mut receipts: HashMap<OwnedRoomId, Vec<ReceiptRecord>> = HashMap::new();
        for r in self
            .ctx
            .storage
            .receipts_since(&joined_ids, pass.since_pos().unwrap_or(StreamPos::ZERO))
            .await?
        {
            if r.receipt_type == "m.read.private" && r.user_id != pass.authed.user_id {
                continue;
            }
            receipts.entry(r.room_id.clone()).or_default().push(r);
        }
        Ok(receipts)
    }

    /// `rooms.join`, and the members of the rooms in it. `rooms_with_events` (if known) bounds
    /// which timelines are read; `receipts` and `account_data` are per room.
    pub(super) async fn joined_rooms(
        &self,
        pass: &Pass<'_>,
        memberships: &[MembershipRecord],
        rooms_with_events: Option<HashSet<OwnedRoomId>>,
        mut receipts: HashMap<OwnedRoomId, Vec<ReceiptRecord>>,
        mut account_data: HashMap<OwnedRoomId, Vec<Value>>,
    ) -> ServiceResult<(Map<String, Value>, HashSet<OwnedUserId>)> {
        // Joined rooms are built a few at a time, so their storage reads overlap on the
        // reader pool instead of queueing behind each other.
        let mut joined_rooms = Vec::new();
        for m in memberships.iter().filter(|m| m.membership == "join") {
            let news = RoomNews {
                has_new_events: rooms_with_events
                    .as_ref()
                    .is_none_or(|r| r.contains(&m.room_id)),
                receipts: receipts.remove(&m.room_id).unwrap_or_default(),
                account_data: account_data.remove(&m.room_id).unwrap_or_default(),
            };
            let room = self.joined_room(pass, m, news);
            joined_rooms.push(async move { (m, room.await) });
        }
        let mut join = Map::new();
        let mut members = HashSet::new();
        let mut built = futures_util::stream::iter(joined_rooms).buffered(ROOMS_AT_ONCE);
        while let Some((m, result)) = built.next().await {
            if let Some((room, room_members)) = result? {
                join.insert(m.room_id.to_string(), room);
                members.extend(room_members);
            }
        }
        Ok((join, members))
    }

    /// The `rooms.join` entry of one room, or `None` if nothing changed; also returns the members.
    async fn joined_room(
        &self,
        pass: &Pass<'_>,
        m: &MembershipRecord,
        news: RoomNews,
    ) -> ServiceResult<Option<(Value, Vec<OwnedUserId>)>> {
        let state = self.rooms.room_state(&m.room_id).await?;
        let newly = pass.full_state || pass.since_pos().is_none_or(|s| m.stream_pos > s);
        let (mut records, limited) = self
            .joined_timeline(pass, m, &state, newly, news.has_new_events)
            .await?;
        let ephemeral = self.room_ephemeral(pass, m, &news.receipts);
        if !newly && records.is_empty() && ephemeral.is_empty() && news.account_data.is_empty() {
            return Ok(None);
        }

        let prev_batch = prev_batch(&records, pass.next.pos);
        let state_records = self.state_events(pass, &state, &records, newly).await?;
        // Filtered only now: `prev_batch`, the state before the timeline and lazy loading all
        // went by the whole visible timeline.
        let timeline_filter = &pass.filter.room.timeline;
        records.retain(|r| timeline_filter.allows(&r.pdu.kind.to_string(), r.pdu.sender.as_str()));
        let records = self
            .history
            .related_by(&m.room_id, records, timeline_filter)
            .await?;
        let (summary, joined) = summary(&state, &pass.authed.user_id);
        let timeline = self
            .timeline_section(pass.authed, m, &records, (limited, prev_batch), None)
            .await?;

        let mut room = json!({
            "timeline": timeline,
            "state": { "events": self.history.format_events(&state_records, None).await? },
            "ephemeral": { "events": ephemeral },
            "account_data": { "events": news.account_data },
            "summary": summary,
        });
        self.add_unread_counts(&mut room, pass, &m.room_id).await?;
        Ok(Some((room, joined)))
    }

    /// `unread_notifications`, and `unread_thread_notifications` when the timeline filter asks
    /// for counts per thread (the room's counts are then the main timeline's).
    async fn add_unread_counts(
        &self,
        room: &mut Value,
        pass: &Pass<'_>,
        room_id: &RoomId,
    ) -> ServiceResult<()> {
        let counts = self
            .push
            .unread_counts(&pass.authed.user_id, room_id)
            .await?;
        let per_thread = pass.filter.room.timeline.unread_thread_notifications;
        let own = if per_thread {
            counts.main
        } else {
            counts.total()
        };
        room["unread_notifications"] = counts_json(own);
        if per_thread {
            let threads: Map<String, Value> = counts
                .threads
                .iter()
                .map(|(thread, c)| (thread.clone(), counts_json(*c)))
                .collect();
            room["unread_thread_notifications"] = Value::Object(threads);
        }
        Ok(())
    }

    /// The timeline events the user may see: those since the token, or the latest if the
    /// room is new to this sync; none read when the room certainly has no new event.
    async fn joined_timeline(
        &self,
        pass: &Pass<'_>,
        m: &MembershipRecord,
        state: &Arc<RoomState>,
        newly: bool,
        has_new_events: bool,
    ) -> ServiceResult<(Vec<EventRecord>, bool)> {
        // The membership record is at hand: no per-room storage read.
        let mut view = self
            .rooms
            .history_view(&pass.authed.user_id, state.clone(), Some(m))
            .ignoring(pass.ignored.clone());
        let after = match (newly, pass.since_pos()) {
            (false, Some(s)) => Some(s),
            _ => None,
        };
        let (records, limited) = if newly || has_new_events {
            let limit = timeline_limit(pass.filter);
            latest_events(
                self.ctx.storage.as_ref(),
                &m.room_id,
                pass.next.pos,
                after,
                limit,
            )
            .await?
        } else {
            (Vec::new(), false)
        };
        Ok((view.filter(records).await?, limited))
    }

    /// The room's `ephemeral` events: typing changes since the token, and the new receipts.
    fn room_ephemeral(
        &self,
        pass: &Pass<'_>,
        m: &MembershipRecord,
        receipts: &[ReceiptRecord],
    ) -> Vec<Value> {
        let typing = self.ephemeral.typing.changed_since(
            &m.room_id,
            pass.since.map(|s| s.typing),
            self.ctx.now_ms(),
        );
        let mut ephemeral = Vec::new();
        if let Some(users) = typing {
            ephemeral.push(json!({ "type": "m.typing", "content": { "user_ids": users } }));
        }
        if !receipts.is_empty() {
            ephemeral.push(receipt_event(receipts));
        }
        ephemeral
    }
}

/// A `notification_count` / `highlight_count` pair.
pub(crate) fn counts_json(c: myelin_storage::NotificationCounts) -> Value {
    json!({
        "notification_count": c.notifications,
        "highlight_count": c.highlights,
    })
}

/// The room `summary` (heroes and member counts), and the joined members.
fn summary(state: &RoomState, user_id: &UserId) -> (Value, Vec<OwnedUserId>) {
    let joined = state.joined_members();
    let invited = state.members_with(&[Membership::Invite]);
    let mut heroes: Vec<_> = joined
        .iter()
        .chain(invited.iter())
        .filter(|u| **u != *user_id)
        .map(|u| u.to_string())
        .collect();
    heroes.sort();
    heroes.truncate(5);
    let summary = json!({
        "m.heroes": heroes,
        "m.joined_member_count": joined.len(),
        "m.invited_member_count": invited.len(),
    });
    (summary, joined)
}

/// One `m.receipt` event for a room: `{event_id: {type: {user: {ts, thread_id?}}}}`.
pub(crate) fn receipt_event(receipts: &[ReceiptRecord]) -> Value {
    let mut content: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
    for r in receipts {
        let mut data = json!({ "ts": r.ts });
        if let Some(thread) = &r.thread_id {
            data["thread_id"] = json!(thread);
        }
        content
            .entry(r.event_id.to_string())
            .or_default()
            .entry(r.receipt_type.clone())
            .or_default()
            .insert(r.user_id.to_string(), data);
    }
    json!({ "type": "m.receipt", "content": content })
}
