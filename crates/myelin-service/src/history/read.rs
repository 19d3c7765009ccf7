//! Reading rooms: single events, state, members, `/messages` and `/context`, with the history
//! visibility the reader is entitled to.

use crate::rooms::Membership;
use ruma::events::StateEventType;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use myelin_core::StreamPos;
use myelin_federation::path;
use myelin_storage::{Direction, EventRecord, MembershipRecord};
use ruma::{DeviceId, EventId, OwnedEventId, OwnedUserId, RoomId, UserId};
use serde_json::Value;

use crate::rooms::{
    visibility::{HistoryView, Visibility},
    RoomState,
};
use crate::{filter::RoomEventFilter, format::client_event, History, ServiceError, ServiceResult};

/// A user's access to a room's history for one request: the room, their membership record in
/// it (if any), and their [`HistoryView`] that every event read passes through.
pub(crate) struct ReadAccess<'a> {
    pub state: Arc<RoomState>,
    pub member: Option<MembershipRecord>,
    pub view: HistoryView<'a>,
}

impl ReadAccess<'_> {
    /// The newest position the user may read up to: a former member's view ends at their leave
    /// (or ban, rejection, withdrawn knock), unless the room is open to anyone now.
    pub(super) fn read_up_to(&self) -> Option<StreamPos> {
        match &self.member {
            Some(m)
                if matches!(m.membership.as_str(), "leave" | "ban") && !self.world_readable() =>
            {
                Some(m.stream_pos)
            }
            _ => None,
        }
    }

    /// Whether the room's current state is the user's to read: they are joined, or anyone may.
    fn reads_current_state(&self) -> bool {
        self.member.as_ref().is_some_and(|m| m.membership == "join") || self.world_readable()
    }

    fn world_readable(&self) -> bool {
        Visibility::of_content(
            self.state
                .content(&StateEventType::RoomHistoryVisibility, "")
                .as_ref(),
        ) == Visibility::WorldReadable
    }
}

pub struct MessagesPage {
    pub chunk: Vec<Value>,
    pub start: StreamPos,
    pub end: Option<StreamPos>,
    pub state: Vec<Value>,
}

pub struct ContextPage {
    pub event: Value,
    pub before: Vec<Value>,
    pub after: Vec<Value>,
    pub start: StreamPos,
    pub end: StreamPos,
    pub state: Vec<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct MembersQuery {
    /// The stream position to report members at; `None` for now.
    pub at: Option<StreamPos>,
    pub membership: Option<String>,
    pub not_membership: Option<String>,
}

impl History {
    /// Opens `room_id`'s history for `user_id`: `Forbidden` for a room they have no membership
    /// in and that is not `world_readable` (and for an unknown room, so that room IDs cannot be
    /// probed). What they may see of it is decided event by event through `view`.
    pub(crate) async fn read_access(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> ServiceResult<ReadAccess<'_>> {
        let state = self
            .rooms
            .room_state(room_id)
            .await
            .map_err(not_found_as_forbidden)?;
        let member = self
            .ctx
            .storage
            .memberships_of_user(user_id)
            .await?
            .into_iter()
            .find(|m| m.room_id == room_id);
        let access = ReadAccess {
            view: self
                .rooms
                .history_view(user_id, state.clone(), member.as_ref())
                .ignoring(self.users.ignored_users(user_id).await?),
            state,
            member,
        };
        if access.member.is_none() && !access.world_readable() {
            return Err(forbidden());
        }
        Ok(access)
    }

    /// Formats events for a client, with `redacted_because` filled in.
    pub async fn format_events(
        &self,
        records: &[EventRecord],
        viewer: Option<(&UserId, &DeviceId)>,
    ) -> ServiceResult<Vec<Value>> {
        let now = self.ctx.now_ms();
        let redactions = self
            .formatted_redactions(records.iter().filter_map(|r| r.redacted_by.clone()), now)
            .await?;
        Ok(records
            .iter()
            .map(|r| {
                let because = r.redacted_by.as_ref().and_then(|id| redactions.get(id));
                client_event(r, viewer, now, because.cloned())
            })
            .collect())
    }

    /// The redaction events of these IDs in the client format, as `redacted_because` carries
    /// them (one storage read; none when there are no IDs).
    pub(crate) async fn formatted_redactions(
        &self,
        ids: impl Iterator<Item = OwnedEventId>,
        now: u64,
    ) -> ServiceResult<HashMap<OwnedEventId, Value>> {
        let ids: Vec<OwnedEventId> = ids.collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(self
            .ctx
            .storage
            .get_events(&ids)
            .await?
            .into_iter()
            .map(|r| (r.pdu.event_id.clone(), client_event(&r, None, now, None)))
            .collect())
    }

    /// `GET /rooms/{roomId}/event/{eventId}`.
    pub async fn get_room_event(
        &self,
        user_id: &UserId,
        device: &DeviceId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> ServiceResult<Value> {
        let mut access = self.read_access(user_id, room_id).await?;
        let record = match self.ctx.storage.get_event(event_id).await? {
            Some(r) => access.view.visible(r).await?,
            None => None,
        };
        let record = record.ok_or_else(|| ServiceError::NotFound("Event not found".into()))?;
        let up_to = access.read_up_to();
        Ok(self
            .format_timeline(&[record], (user_id, device), &mut access.view, up_to)
            .await?
            .remove(0))
    }

    /// The records of one room the user may see, through the same view as `/messages` (history
    /// visibility, then their ignore list); a room they may not read at all yields nothing.
    pub(crate) async fn visible_records(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        records: Vec<EventRecord>,
    ) -> ServiceResult<Vec<EventRecord>> {
        match self.read_access(user_id, room_id).await {
            Ok(mut access) => access.view.filter(records).await,
            Err(ServiceError::Forbidden(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Whether the user may see this event of the room by its history visibility (their ignore
    /// list aside: one may report what one ignores). `false` for an unknown room or event.
    pub(crate) async fn may_read_event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> ServiceResult<bool> {
        let state = self.rooms.known_room_state(room_id).await?;
        let Some(record) = self.ctx.storage.get_event(event_id).await? else {
            return Ok(false);
        };
        let member = self
            .ctx
            .storage
            .memberships_of_user(user_id)
            .await?
            .into_iter()
            .find(|m| m.room_id == room_id);
        self.rooms
            .history_view(user_id, state, member.as_ref())
            .may_see(&record)
            .await
    }

    /// The state events a reader sees: the current state for members (and anyone in a
    /// `world_readable` room), else the state at their latest membership event (a leave, an
    /// invite) if they may see that event; nothing for those who never could (a withdrawn knock,
    /// a ban as a stranger).
    async fn visible_state(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> ServiceResult<Vec<EventRecord>> {
        let mut access = self.read_access(user_id, room_id).await?;
        let ids: Vec<_> = match access.reads_current_state() {
            true => access
                .state
                .entries()
                .map(|e| e.pdu.event_id.clone())
                .collect(),
            false => {
                let Some(member) = access.member.clone() else {
                    return Err(forbidden());
                };
                match self.ctx.storage.get_event(&member.event_id).await? {
                    // A rejected invite to a remote room: no state of it is ours to show.
                    Some(r) if r.outlier.is_none() && access.view.may_see(&r).await? => self
                        .ctx
                        .storage
                        .state_at_snapshot(r.state_snapshot)
                        .await?
                        .into_values()
                        .collect(),
                    _ => return Err(forbidden()),
                }
            }
        };
        let records = self.ctx.storage.get_events(&ids).await?;
        access.view.state_as_seen(records).await
    }

    /// The room state after the last event at or before `at`, if the user may see that event.
    async fn state_at_position(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        at: StreamPos,
    ) -> ServiceResult<Vec<EventRecord>> {
        let mut access = self.read_access(user_id, room_id).await?;
        let at = access.read_up_to().map_or(at, |up_to| at.min(up_to));
        let Some(last) = self
            .ctx
            .storage
            .room_events(room_id, at, None, Direction::Backward, 1)
            .await?
            .into_iter()
            .next()
        else {
            return Ok(Vec::new());
        };
        if !access.view.may_see(&last).await? {
            return Err(forbidden());
        }
        let ids: Vec<_> = self
            .ctx
            .storage
            .state_at_snapshot(last.state_snapshot)
            .await?
            .into_values()
            .collect();
        let records = self.ctx.storage.get_events(&ids).await?;
        access.view.state_as_seen(records).await
    }

    /// `GET /rooms/{roomId}/state`.
    pub async fn room_state_events(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> ServiceResult<Vec<Value>> {
        let records = self.visible_state(user_id, room_id).await?;
        self.format_events(&records, None).await
    }

    /// `GET /rooms/{roomId}/state/{eventType}/{stateKey}`: the content.
    pub async fn room_state_event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> ServiceResult<Value> {
        let records = self.visible_state(user_id, room_id).await?;
        let record = records
            .into_iter()
            .find(|r| {
                r.pdu.kind.to_string() == kind && r.pdu.state_key.as_deref() == Some(state_key)
            })
            .ok_or_else(|| ServiceError::NotFound("Event not found".into()))?;
        Ok(record.pdu.content_value())
    }

    /// `GET /rooms/{roomId}/members`.
    pub async fn room_members(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        query: &MembersQuery,
    ) -> ServiceResult<Vec<Value>> {
        let records = match query.at {
            None => self.visible_state(user_id, room_id).await?,
            Some(at) => self.state_at_position(user_id, room_id, at).await?,
        };
        let members: Vec<_> = records
            .into_iter()
            .filter(|r| r.pdu.kind.to_string() == "m.room.member")
            .filter(|r| {
                let m = r
                    .pdu
                    .content_value()
                    .get("membership")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_default();
                query.membership.as_ref().is_none_or(|want| *want == m)
                    && query.not_membership.as_ref().is_none_or(|not| *not != m)
            })
            .collect();
        self.format_events(&members, None).await
    }

    /// `GET /rooms/{roomId}/joined_members`: joined members' profiles.
    pub async fn joined_members(&self, user_id: &UserId, room_id: &RoomId) -> ServiceResult<Value> {
        let state = self
            .rooms
            .room_state(room_id)
            .await
            .map_err(not_found_as_forbidden)?;
        if state.membership(user_id) != Some(Membership::Join) {
            return Err(ServiceError::Forbidden("You are not in this room".into()));
        }
        let mut joined = serde_json::Map::new();
        for member in state.joined_members() {
            let content = state
                .content(&StateEventType::RoomMember, member.as_str())
                .unwrap_or_default();
            joined.insert(
                member.to_string(),
                serde_json::json!({ "display_name": content.get("displayname"), "avatar_url": content.get("avatar_url") }),
            );
        }
        Ok(serde_json::json!({ "joined": joined }))
    }

    /// `GET /rooms/{roomId}/messages`.
    #[allow(clippy::too_many_arguments)] // the endpoint's parameters, one each
    pub async fn messages(
        &self,
        user_id: &UserId,
        device: &DeviceId,
        room_id: &RoomId,
        from: Option<StreamPos>,
        to: Option<StreamPos>,
        dir: Direction,
        limit: usize,
        filter: &RoomEventFilter,
    ) -> ServiceResult<MessagesPage> {
        let mut access = self.read_access(user_id, room_id).await?;
        let up_to = access.read_up_to();
        let current = self.ctx.storage.current_stream_pos().await?;
        let mut from = from.unwrap_or(match dir {
            Direction::Backward => current,
            // History backfilled from other servers sits at negative positions.
            Direction::Forward => StreamPos(i64::MIN),
        });
        let mut to = to;
        if let Some(up) = up_to {
            match dir {
                Direction::Backward => from = from.min(up),
                Direction::Forward => to = Some(to.map_or(up, |t| t.min(up))),
            }
        }
        let limit = limit.clamp(1, 1000);
        let mut records = self
            .ctx
            .storage
            .room_events(room_id, from, to, dir, limit)
            .await?;
        // Paging back past the oldest event we hold (a room joined over federation holds its
        // history from our join on): ask the room's other servers for older events, stored
        // below everything, so the same query runs on into them. Not with a `to` bound, which
        // would cut them off anyway.
        let mut backfilled = false;
        if dir == Direction::Backward && records.len() < limit && to.is_none() {
            backfilled = self.ingest.backfill_for_reader(room_id, limit).await;
            if backfilled {
                records = self
                    .ctx
                    .storage
                    .room_events(room_id, from, to, dir, limit)
                    .await?;
            }
        }
        // `end` is omitted once there is nothing further to read: a full page may have more
        // behind it, and after a backfill other servers may hold more, until the create event.
        let more = records.len() == limit
            || (backfilled
                && records
                    .last()
                    .is_some_and(|r| r.pdu.kind.to_string() != "m.room.create"));
        let end = records.last().filter(|_| more).map(|last| match dir {
            Direction::Backward => StreamPos(last.stream_pos.0 - 1),
            Direction::Forward => last.stream_pos,
        });
        let visible: Vec<_> = access
            .view
            .filter(records)
            .await?
            .into_iter()
            .filter(|r| filter.allows(&r.pdu.kind.to_string(), r.pdu.sender.as_str()))
            .collect();
        let visible = self.related_by(room_id, visible, filter).await?;
        let chunk = self
            .format_timeline(&visible, (user_id, device), &mut access.view, up_to)
            .await?;
        let state_events = if filter.lazy_load_members {
            let senders: HashSet<OwnedUserId> =
                visible.iter().map(|r| r.pdu.sender.clone()).collect();
            let ids: Vec<_> = senders
                .iter()
                .filter_map(|s| {
                    access
                        .state
                        .get(&StateEventType::RoomMember, s.as_str())
                        .map(|e| e.pdu.event_id.clone())
                })
                .collect();
            let members = self.ctx.storage.get_events(&ids).await?;
            let members = access.view.state_as_seen(members).await?;
            self.format_events(&members, None).await?
        } else {
            Vec::new()
        };
        Ok(MessagesPage {
            chunk,
            start: from,
            end,
            state: state_events,
        })
    }

    /// `GET /rooms/{roomId}/context/{eventId}`.
    pub async fn context(
        &self,
        user_id: &UserId,
        device: &DeviceId,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
    ) -> ServiceResult<ContextPage> {
        let mut access = self.read_access(user_id, room_id).await?;
        let record = match self.ctx.storage.get_event(event_id).await? {
            Some(r) => access.view.visible(r).await?,
            None => None,
        };
        let record = record.ok_or_else(|| ServiceError::NotFound("Event not found".into()))?;
        let limit = limit.min(100);
        let before_n = limit / 2;
        let after_n = limit - before_n;
        let pos = record.stream_pos;
        let before = if before_n == 0 {
            Vec::new()
        } else {
            self.ctx
                .storage
                .room_events(
                    room_id,
                    StreamPos(pos.0 - 1),
                    None,
                    Direction::Backward,
                    before_n,
                )
                .await?
        };
        let before = access.view.filter(before).await?;
        let after = if after_n == 0 {
            Vec::new()
        } else {
            self.ctx
                .storage
                .room_events(
                    room_id,
                    pos,
                    access.read_up_to(),
                    Direction::Forward,
                    after_n,
                )
                .await?
        };
        let after = access.view.filter(after).await?;
        let start = before
            .last()
            .map_or(StreamPos(pos.0 - 1), |r| StreamPos(r.stream_pos.0 - 1));
        let end = after.last().map_or(pos, |r| r.stream_pos);
        let state_records = self
            .ctx
            .storage
            .state_at_snapshot(record.state_snapshot)
            .await?;
        let state_events = self
            .ctx
            .storage
            .get_events(&state_records.into_values().collect::<Vec<_>>())
            .await?;
        let state_events = access.view.state_as_seen(state_events).await?;
        // One formatting of the three parts, so their aggregations take one set of queries.
        let (before_n, after_n) = (before.len(), after.len());
        let all: Vec<EventRecord> = before.into_iter().chain([record]).chain(after).collect();
        let up_to = access.read_up_to();
        let mut all = self
            .format_timeline(&all, (user_id, device), &mut access.view, up_to)
            .await?;
        let after = all.split_off(before_n + 1);
        let event = all.pop().unwrap_or_default();
        debug_assert_eq!(after.len(), after_n);
        Ok(ContextPage {
            event,
            before: all,
            after,
            start,
            end,
            state: self.format_events(&state_events, None).await?,
        })
    }
}

/// An unknown room reads as "not allowed", so room IDs cannot be probed.
fn not_found_as_forbidden(e: ServiceError) -> ServiceError {
    match e {
        ServiceError::NotFound(_) => forbidden(),
        other => other,
    }
}

fn forbidden() -> ServiceError {
    ServiceError::Forbidden("You are not allowed to read this room".into())
}

impl History {
    /// `GET /rooms/{roomId}/timestamp_to_event`: the event nearest `ts` in direction `dir`. When
    /// we have none, up to three other servers in the room are asked in turn.
    pub async fn timestamp_to_event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        ts: u64,
        dir: Direction,
    ) -> ServiceResult<(OwnedEventId, u64)> {
        let mut access = self.read_access(user_id, room_id).await?;
        if let Some((event_id, found_ts)) = self
            .ctx
            .storage
            .event_near_timestamp(room_id, ts, dir)
            .await?
        {
            // The nearest event is the answer only if the user may see it: nothing about the
            // room's history leaks through its timestamps.
            return match self.ctx.storage.get_event(&event_id).await? {
                Some(r) if access.view.may_see(&r).await? => Ok((event_id, found_ts)),
                _ => Err(ServiceError::NotFound(
                    "No event you may see was found near that time".into(),
                )),
            };
        }
        let servers = self.outbox.other_servers_in(&access.state);
        let path = path::timestamp_to_event(room_id, ts, dir == Direction::Forward);
        for server in servers.iter().take(3) {
            #[derive(serde::Deserialize)]
            struct Answer {
                event_id: OwnedEventId,
                origin_server_ts: u64,
            }
            match self
                .ctx
                .federation_call::<Answer>(myelin_federation::Method::GET, server, &path, None)
                .await
            {
                Ok(a) => return Ok((a.event_id, a.origin_server_ts)),
                Err(e) => {
                    tracing::debug!(%room_id, %server, error = %e, "remote timestamp_to_event failed")
                }
            }
        }
        Err(ServiceError::NotFound(format!(
            "No event found {} {ts}",
            if dir == Direction::Forward {
                "at or after"
            } else {
                "at or before"
            }
        )))
    }
}
