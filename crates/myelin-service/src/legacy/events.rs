//! `GET /events`: the room events of the user's rooms (or of one room, which a reader may peek
//! into when it is `world_readable`) after a token, with typing, read receipts and presence as
//! Synapse's stream carries them, long-polling until there is something; and
//! `GET /events/{eventId}`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use myelin_core::StreamPos;
use myelin_storage::{Direction, ReceiptRecord};
use ruma::{EventId, OwnedRoomId, OwnedUserId, RoomId};
use serde_json::{json, Value};

use super::Legacy;
use crate::{
    accounts::Authed,
    filter::RoomEventFilter,
    sync::{presence_event, receipt_event, SyncToken},
    ServiceError, ServiceResult,
};

/// Events read per room and call; a room with more ends the batch early (the rest follow).
const ROOM_PAGE: usize = 100;

#[derive(Debug, Clone, Default)]
pub struct EventsRequest {
    pub from: Option<String>,
    pub timeout_ms: u64,
    /// Only this room; the reader need not be a member of a `world_readable` room.
    pub room_id: Option<OwnedRoomId>,
}

impl Legacy {
    /// `GET /events`: `start` is the token given, `end` the one to continue from.
    pub async fn events(&self, authed: &Authed, req: EventsRequest) -> ServiceResult<Value> {
        let from = match &req.from {
            Some(t) => SyncToken::parse(t)
                .ok_or_else(|| ServiceError::InvalidParam("Invalid from token".into()))?,
            None => SyncToken::parse(&self.current_token().await?)
                .ok_or_else(|| ServiceError::Internal("unparsable own token".into()))?,
        };
        if let Some(room) = &req.room_id {
            // Refused at once, not only when something new turns up to be filtered.
            self.history.read_access(&authed.user_id, room).await?;
        }
        // Subscribed before the first read, so nothing committed in between is missed.
        let mut waiter = match &req.room_id {
            Some(room) => self.ctx.notifier.subscribe_room(room),
            None => self.ctx.notifier.subscribe(&authed.user_id),
        };
        let timeout =
            Duration::from_millis(req.timeout_ms.min(self.ctx.config.max_sync_timeout_ms));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let room = req.room_id.as_deref();
            let (mut chunk, end) = self.events_after(authed, from.pos, room).await?;
            let (ephemeral, typing) = self.ephemeral_after(authed, from, end, room).await?;
            chunk.extend(ephemeral);
            if !chunk.is_empty() || waiter.is_closing() || tokio::time::Instant::now() >= deadline {
                // The to-device part passes through: nothing here delivers to-device messages.
                let end = SyncToken {
                    pos: end,
                    typing,
                    ..from
                };
                return Ok(
                    json!({ "start": from.to_string(), "end": end.to_string(), "chunk": chunk }),
                );
            }
            tokio::select! {
                _ = waiter.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// `GET /events/{eventId}`: the event, if the reader may see it in its room.
    pub async fn event(&self, authed: &Authed, event_id: &EventId) -> ServiceResult<Value> {
        let not_found = || ServiceError::NotFound("Event not found".into());
        let record = self
            .ctx
            .storage
            .get_event(event_id)
            .await?
            .ok_or_else(not_found)?;
        self.history
            .get_room_event(
                &authed.user_id,
                &authed.device_id,
                &record.pdu.room_id,
                event_id,
            )
            .await
            .map_err(|e| match e {
                ServiceError::Forbidden(_) => not_found(),
                e => e,
            })
    }

    /// The visible events after `since` in the rooms concerned, oldest first per room, and the
    /// position they reach.
    async fn events_after(
        &self,
        authed: &Authed,
        since: StreamPos,
        room: Option<&RoomId>,
    ) -> ServiceResult<(Vec<Value>, StreamPos)> {
        let now = self.ctx.storage.current_stream_pos().await?;
        if now <= since {
            return Ok((Vec::new(), since));
        }
        let rooms = match room {
            // History checks that the reader may read it (a member, or `world_readable`).
            Some(room) => vec![room.to_owned()],
            None => self.rooms_to_read(authed, since, now).await?,
        };
        let mut chunk = self.read_rooms(authed, &rooms, since, now).await?;
        // A room with more than a page ends the batch at its page's last event, and the other
        // rooms are read again up to there, so that `end` skips nothing.
        if let Some(cut) = chunk.1 {
            chunk = self.read_rooms(authed, &rooms, since, cut).await?;
            return Ok((chunk.0, cut));
        }
        Ok((chunk.0, now))
    }

    /// Rooms with events in `(since, now]` the user is joined to, or whose membership changed
    /// after `since` (the leave, ban or invite itself is news).
    async fn rooms_to_read(
        &self,
        authed: &Authed,
        since: StreamPos,
        now: StreamPos,
    ) -> ServiceResult<Vec<OwnedRoomId>> {
        let changed: HashSet<OwnedRoomId> = self
            .ctx
            .storage
            .rooms_with_events_between(since, now)
            .await?
            .into_iter()
            .collect();
        Ok(self
            .ctx
            .storage
            .memberships_of_user(&authed.user_id)
            .await?
            .into_iter()
            .filter(|m| changed.contains(&m.room_id))
            .filter(|m| m.membership == "join" || m.stream_pos > since)
            .map(|m| m.room_id)
            .collect())
    }

    /// The events of `rooms` in `(since, to]`, and the earliest position where a room's page
    /// was full (`None` when every room was read to `to`).
    async fn read_rooms(
        &self,
        authed: &Authed,
        rooms: &[OwnedRoomId],
        since: StreamPos,
        to: StreamPos,
    ) -> ServiceResult<(Vec<Value>, Option<StreamPos>)> {
        let mut chunk = Vec::new();
        let mut cut: Option<StreamPos> = None;
        for room in rooms {
            let page = self
                .history
                .messages(
                    &authed.user_id,
                    &authed.device_id,
                    room,
                    Some(since),
                    Some(to),
                    Direction::Forward,
                    ROOM_PAGE,
                    &RoomEventFilter::default(),
                )
                .await?;
            if let Some(end) = page.end {
                cut = Some(cut.map_or(end, |c| c.min(end)));
            }
            chunk.extend(page.chunk);
        }
        Ok((chunk, cut))
    }

    /// What the stream carries besides room events, as Synapse's does: typing changes after the
    /// token's typing serial and read receipts in `(from, to]` in the rooms concerned, and the
    /// presence changes in `(from, to]` of the users sharing them; with the typing serial
    /// reached. Each room's events name their `room_id`.
    async fn ephemeral_after(
        &self,
        authed: &Authed,
        from: SyncToken,
        to: StreamPos,
        room: Option<&RoomId>,
    ) -> ServiceResult<(Vec<Value>, u64)> {
        let now = self.ctx.now_ms();
        let typing_serial = self.ephemeral.typing.serial(now);
        let (rooms, users) = match room {
            Some(room) => {
                let members = self.rooms.room_state(room).await?.joined_members();
                (vec![room.to_owned()], members.into_iter().collect())
            }
            None => (
                self.rooms.joined_rooms(&authed.user_id).await?,
                self.rooms.users_sharing_rooms(&authed.user_id).await?,
            ),
        };
        let mut out = Vec::new();
        for room_id in &rooms {
            let typing = self
                .ephemeral
                .typing
                .changed_since(room_id, Some(from.typing), now);
            if let Some(users) = typing {
                out.push(json!({
                    "type": "m.typing",
                    "room_id": room_id,
                    "content": { "user_ids": users },
                }));
            }
        }
        out.extend(self.receipts_between(authed, &rooms, from.pos, to).await?);
        let users: Vec<OwnedUserId> = users.into_iter().collect();
        let presence = self.ctx.storage.presence_since(&users, from.pos).await?;
        out.extend(
            presence
                .into_iter()
                .filter(|p| p.stream_pos <= to)
                .map(|p| presence_event(p, now)),
        );
        Ok((out, typing_serial))
    }

    /// One `m.receipt` event per room with receipts in `(from, to]`; private receipts only the
    /// reader's own.
    async fn receipts_between(
        &self,
        authed: &Authed,
        rooms: &[OwnedRoomId],
        from: StreamPos,
        to: StreamPos,
    ) -> ServiceResult<Vec<Value>> {
        let mut by_room: BTreeMap<OwnedRoomId, Vec<ReceiptRecord>> = BTreeMap::new();
        for r in self.ctx.storage.receipts_since(rooms, from).await? {
            let private = r.receipt_type == "m.read.private" && r.user_id != authed.user_id;
            if r.stream_pos <= to && !private {
                by_room.entry(r.room_id.clone()).or_default().push(r);
            }
        }
        Ok(by_room
            .into_iter()
            .map(|(room_id, receipts)| {
                let mut event = receipt_event(&receipts);
                event["room_id"] = json!(room_id);
                event
            })
            .collect())
    }
}
