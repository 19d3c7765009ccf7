//! Reading rooms: single events, state, members, `/messages` and `/context`, with the history
//! visibility the reader is entitled to.

use std::collections::{HashMap, HashSet};

use myelin_core::StreamPos;
use myelin_storage::{Direction, EventRecord, MembershipRecord};
use ruma::{DeviceId, EventId, OwnedEventId, OwnedUserId, RoomId, UserId};
use serde_json::Value;

use super::RoomState;
use crate::{filter::RoomEventFilter, format::client_event, ServiceError, ServiceResult, Services};

/// The stream range a user may read in a room: `(after, up_to)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadWindow {
    pub after: Option<StreamPos>,
    pub up_to: Option<StreamPos>,
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

impl Services {
    /// Which part of the room's history `user_id` may read; `Forbidden` if none.
    pub(crate) async fn read_window(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        state: &RoomState,
    ) -> ServiceResult<ReadWindow> {
        let member = self
            .storage
            .memberships_of_user(user_id)
            .await?
            .into_iter()
            .find(|m| m.room_id == room_id);
        read_window_of(member.as_ref(), state)
    }

    /// Formats events for a client, with `redacted_because` filled in.
    pub async fn format_events(
        &self,
        records: &[EventRecord],
        viewer: Option<(&UserId, &DeviceId)>,
    ) -> ServiceResult<Vec<Value>> {
        let now = self.now_ms();
        let redaction_ids: Vec<_> = records
            .iter()
            .filter_map(|r| r.redacted_by.clone())
            .collect();
        let redactions: HashMap<_, _> = if redaction_ids.is_empty() {
            HashMap::new()
        } else {
            self.storage
                .get_events(&redaction_ids)
                .await?
                .into_iter()
                .map(|r| (r.pdu.event_id.clone(), r))
                .collect()
        };
        Ok(records
            .iter()
            .map(|r| {
                let because = r
                    .redacted_by
                    .as_ref()
                    .and_then(|id| redactions.get(id))
                    .map(|red| client_event(red, None, now, None));
                client_event(r, viewer, now, because)
            })
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
        let state = self
            .room_state(room_id)
            .await
            .map_err(not_found_as_forbidden)?;
        let window = self.read_window(user_id, room_id, &state).await?;
        let record = self
            .storage
            .get_event(event_id)
            .await?
            .filter(|r| r.pdu.room_id == room_id && in_window(window, r.stream_pos))
            .filter(|r| !r.is_withheld());
        let record = record.ok_or_else(|| ServiceError::NotFound("Event not found".into()))?;
        Ok(self
            .format_events(&[record], Some((user_id, device)))
            .await?
            .remove(0))
    }

    /// The state events a reader sees: current state for members, state at leave for former ones.
    async fn visible_state(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> ServiceResult<Vec<EventRecord>> {
        let state = self
            .room_state(room_id)
            .await
            .map_err(not_found_as_forbidden)?;
        let window = self.read_window(user_id, room_id, &state).await?;
        let ids: Vec<_> = match window.up_to {
            None => state.entries().map(|e| e.pdu.event_id.clone()).collect(),
            Some(pos) => {
                let leave = state
                    .get("m.room.member", user_id.as_str())
                    .filter(|e| e.pos == pos);
                match leave {
                    Some(e) => match self.storage.get_event(&e.pdu.event_id).await? {
                        Some(r) => self
                            .storage
                            .state_at_snapshot(r.state_snapshot)
                            .await?
                            .into_values()
                            .collect(),
                        None => Vec::new(),
                    },
                    None => state
                        .entries()
                        .filter(|e| e.pos <= pos)
                        .map(|e| e.pdu.event_id.clone())
                        .collect(),
                }
            }
        };
        Ok(self.storage.get_events(&ids).await?)
    }

    /// The room state after the last event at or before `at`, clamped to what the user may see.
    async fn state_at_position(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        at: StreamPos,
    ) -> ServiceResult<Vec<EventRecord>> {
        let state = self
            .room_state(room_id)
            .await
            .map_err(not_found_as_forbidden)?;
        let window = self.read_window(user_id, room_id, &state).await?;
        let at = window.up_to.map_or(at, |up_to| at.min(up_to));
        let Some(last) = self
            .storage
            .room_events(room_id, at, None, Direction::Backward, 1)
            .await?
            .into_iter()
            .next()
        else {
            return Ok(Vec::new());
        };
        let ids: Vec<_> = self
            .storage
            .state_at_snapshot(last.state_snapshot)
            .await?
            .into_values()
            .collect();
        Ok(self.storage.get_events(&ids).await?)
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
            .room_state(room_id)
            .await
            .map_err(not_found_as_forbidden)?;
        if state.membership(user_id).as_deref() != Some("join") {
            return Err(ServiceError::Forbidden("You are not in this room".into()));
        }
        let mut joined = serde_json::Map::new();
        for member in state.members_with(&["join"]) {
            let content = state
                .content("m.room.member", member.as_str())
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
        let state = self
            .room_state(room_id)
            .await
            .map_err(not_found_as_forbidden)?;
        let window = self.read_window(user_id, room_id, &state).await?;
        let current = self.storage.current_stream_pos().await?;
        let mut from = from.unwrap_or(match dir {
            Direction::Backward => current,
            // History backfilled from other servers sits at negative positions.
            Direction::Forward => StreamPos(i64::MIN),
        });
        let mut to = to;
        match dir {
            Direction::Backward => {
                if let Some(up) = window.up_to {
                    from = from.min(up);
                }
                if let Some(after) = window.after {
                    to = Some(to.map_or(after, |t| t.max(after)));
                }
            }
            Direction::Forward => {
                if let Some(after) = window.after {
                    from = from.max(after);
                }
                if let Some(up) = window.up_to {
                    to = Some(to.map_or(up, |t| t.min(up)));
                }
            }
        }
        let limit = limit.clamp(1, 1000);
        let mut records = self
            .storage
            .room_events(room_id, from, to, dir, limit)
            .await?;
        // Paging back past the oldest event we hold (a room joined over federation holds its
        // history from our join on): ask the room's other servers for older events, stored
        // below everything, so the same query runs on into them. Not with a `to` bound, which
        // would cut them off anyway.
        let mut backfilled = false;
        if dir == Direction::Backward && records.len() < limit && to.is_none() {
            backfilled = self.backfill_for_reader(room_id, limit).await;
            if backfilled {
                records = self
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
        let visible: Vec<_> = records
            .into_iter()
            .filter(|r| filter.allows(&r.pdu.kind.to_string(), r.pdu.sender.as_str()))
            .collect();
        let chunk = self
            .format_events(&visible, Some((user_id, device)))
            .await?;
        let state_events = if filter.lazy_load_members {
            let senders: HashSet<OwnedUserId> =
                visible.iter().map(|r| r.pdu.sender.clone()).collect();
            let ids: Vec<_> = senders
                .iter()
                .filter_map(|s| {
                    state
                        .get("m.room.member", s.as_str())
                        .map(|e| e.pdu.event_id.clone())
                })
                .collect();
            let members = self.storage.get_events(&ids).await?;
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
        let state = self
            .room_state(room_id)
            .await
            .map_err(not_found_as_forbidden)?;
        let window = self.read_window(user_id, room_id, &state).await?;
        let record = self
            .storage
            .get_event(event_id)
            .await?
            .filter(|r| r.pdu.room_id == room_id && in_window(window, r.stream_pos))
            .filter(|r| r.outlier.is_none());
        let record = record.ok_or_else(|| ServiceError::NotFound("Event not found".into()))?;
        let limit = limit.min(100);
        let before_n = limit / 2;
        let after_n = limit - before_n;
        let pos = record.stream_pos;
        let before = if before_n == 0 {
            Vec::new()
        } else {
            self.storage
                .room_events(
                    room_id,
                    StreamPos(pos.0 - 1),
                    window.after,
                    Direction::Backward,
                    before_n,
                )
                .await?
        };
        let after = if after_n == 0 {
            Vec::new()
        } else {
            self.storage
                .room_events(room_id, pos, window.up_to, Direction::Forward, after_n)
                .await?
        };
        let start = before
            .last()
            .map_or(StreamPos(pos.0 - 1), |r| StreamPos(r.stream_pos.0 - 1));
        let end = after.last().map_or(pos, |r| r.stream_pos);
        let state_records = self
            .storage
            .state_at_snapshot(record.state_snapshot)
            .await?;
        let state_events = self
            .storage
            .get_events(&state_records.into_values().collect::<Vec<_>>())
            .await?;
        Ok(ContextPage {
            event: self
                .format_events(std::slice::from_ref(&record), Some((user_id, device)))
                .await?
                .remove(0),
            before: self.format_events(&before, Some((user_id, device))).await?,
            after: self.format_events(&after, Some((user_id, device))).await?,
            start,
            end,
            state: self.format_events(&state_events, None).await?,
        })
    }
}

fn in_window(window: ReadWindow, pos: StreamPos) -> bool {
    window.after.is_none_or(|a| pos > a) && window.up_to.is_none_or(|u| pos <= u)
}

/// An unknown room reads as "not allowed", so room IDs cannot be probed.
fn not_found_as_forbidden(e: ServiceError) -> ServiceError {
    match e {
        ServiceError::NotFound(_) => {
            ServiceError::Forbidden("You are not allowed to read this room".into())
        }
        other => other,
    }
}

/// Which part of a room's history a user with membership `member` (their latest membership
/// record in the room, if any) may read, given the room's current state.
pub(crate) fn read_window_of(
    member: Option<&MembershipRecord>,
    state: &RoomState,
) -> ServiceResult<ReadWindow> {
    let visibility = state.history_visibility();
    let after_join = |pos: StreamPos| {
        if visibility == "shared" || visibility == "world_readable" {
            None
        } else {
            Some(StreamPos(pos.0 - 1))
        }
    };
    match member {
        Some(m) if m.membership == "join" => Ok(ReadWindow {
            after: after_join(m.stream_pos),
            up_to: None,
        }),
        Some(m) if m.membership == "leave" || m.membership == "ban" => {
            if visibility == "world_readable" {
                return Ok(ReadWindow {
                    after: None,
                    up_to: None,
                });
            }
            Ok(ReadWindow {
                after: None,
                up_to: Some(m.stream_pos),
            })
        }
        _ if visibility == "world_readable" => Ok(ReadWindow {
            after: None,
            up_to: None,
        }),
        _ => Err(ServiceError::Forbidden(
            "You are not allowed to read this room".into(),
        )),
    }
}

impl Services {
    /// `GET /rooms/{roomId}/timestamp_to_event`: the event nearest `ts` in direction `dir`. When
    /// we have none, up to three other servers in the room are asked in turn.
    pub async fn timestamp_to_event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        ts: u64,
        dir: Direction,
    ) -> ServiceResult<(OwnedEventId, u64)> {
        let state = self.room_state(room_id).await?;
        self.read_window(user_id, room_id, &state).await?;
        if let Some(found) = self.storage.event_near_timestamp(room_id, ts, dir).await? {
            return Ok(found);
        }
        let servers = self.other_servers_in(&state);
        let dir_param = if dir == Direction::Forward { "f" } else { "b" };
        let path = format!(
            "/_matrix/federation/v1/timestamp_to_event/{}?ts={ts}&dir={dir_param}",
            crate::federation::urlencoding(room_id.as_str())
        );
        for server in servers.iter().take(3) {
            #[derive(serde::Deserialize)]
            struct Answer {
                event_id: OwnedEventId,
                origin_server_ts: u64,
            }
            match self
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
