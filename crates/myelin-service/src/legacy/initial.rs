//! `GET /initialSync` (every room of the user, with `archived` for left ones) and
//! `GET /rooms/{roomId}/initialSync` (one room, also for readers peeking into a
//! `world_readable` room): current state and the latest messages, read through [`History`].

use std::collections::HashMap;

use myelin_core::StreamPos;
use myelin_storage::{Direction, MembershipRecord};
use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::{json, Value};

use super::Legacy;
use crate::{
    accounts::Authed,
    filter::RoomEventFilter,
    sync::{pagination_token, presence_event, push_rules_event, SyncToken},
    ServiceError, ServiceResult,
};

/// Messages per room when the request names no `limit` (as Synapse).
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;

/// The user's account data: global events, and per room.
struct AccountData {
    global: Vec<Value>,
    rooms: HashMap<OwnedRoomId, Vec<Value>>,
}

impl Legacy {
    /// `GET /initialSync`.
    pub async fn initial_sync(
        &self,
        authed: &Authed,
        limit: Option<usize>,
        archived: bool,
    ) -> ServiceResult<Value> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        let end = self.current_token().await?;
        let mut account_data = self.account_data(&authed.user_id).await?;
        let memberships = self
            .ctx
            .storage
            .memberships_of_user(&authed.user_id)
            .await?;
        let mut rooms = Vec::new();
        for m in memberships.iter().filter(|m| !m.forgotten) {
            let room_data = account_data.rooms.remove(&m.room_id).unwrap_or_default();
            let info = match m.membership.as_str() {
                "invite" => self.invited_room(m).await?,
                "join" => self.room_info(authed, m, limit, room_data).await?,
                "leave" | "ban" if archived => self.room_info(authed, m, limit, room_data).await?,
                _ => continue,
            };
            rooms.push(info);
        }
        Ok(json!({
            "end": end,
            "rooms": rooms,
            "presence": self.presence(&authed.user_id).await?,
            "account_data": account_data.global,
        }))
    }

    /// `GET /rooms/{roomId}/initialSync`: members, former members and (for `world_readable`
    /// rooms) anyone; 403 for others, whether or not the room exists.
    pub async fn room_initial_sync(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        limit: Option<usize>,
    ) -> ServiceResult<Value> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        let membership = self
            .ctx
            .storage
            .memberships_of_user(&authed.user_id)
            .await?
            .into_iter()
            .find(|m| m.room_id == room_id);
        let room_data = self.account_data(&authed.user_id).await?.rooms;
        let room_data = room_data.get(room_id).cloned().unwrap_or_default();
        let mut info = match &membership {
            Some(m) if m.membership == "invite" => self.invited_room(m).await?,
            Some(m) => self.room_info(authed, m, limit, room_data).await?,
            None => self.peek_info(authed, room_id, limit).await?,
        };
        info["presence"] = json!(self.room_presence(room_id).await?);
        Ok(info)
    }

    /// A joined or left room: its state (current, or at the leave) and latest messages.
    async fn room_info(
        &self,
        authed: &Authed,
        m: &MembershipRecord,
        limit: usize,
        account_data: Vec<Value>,
    ) -> ServiceResult<Value> {
        let mut info = self.peek_info(authed, &m.room_id, limit).await?;
        info["membership"] = json!(m.membership);
        info["account_data"] = json!(account_data);
        Ok(info)
    }

    /// What any reader allowed to see the room gets: state, messages and directory visibility.
    async fn peek_info(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        limit: usize,
    ) -> ServiceResult<Value> {
        let state = self
            .history
            .room_state_events(&authed.user_id, room_id)
            .await?;
        let page = self
            .history
            .messages(
                &authed.user_id,
                &authed.device_id,
                room_id,
                None,
                None,
                Direction::Backward,
                limit.max(1),
                &RoomEventFilter::default(),
            )
            .await?;
        let mut chunk = if limit == 0 { Vec::new() } else { page.chunk };
        chunk.reverse();
        let mut messages = json!({ "chunk": chunk, "end": pagination_token(page.start) });
        if let Some(older) = page.end {
            messages["start"] = json!(pagination_token(older));
        }
        Ok(json!({
            "room_id": room_id,
            "messages": messages,
            "state": state,
            "visibility": self.rooms.room_directory_visibility(room_id).await?,
            "account_data": [],
        }))
    }

    /// An invited room: the invite event alone (the invitee may not read the room yet).
    async fn invited_room(&self, m: &MembershipRecord) -> ServiceResult<Value> {
        let mut info = json!({ "room_id": m.room_id, "membership": "invite" });
        if let Some(invite) = self.ctx.storage.get_event(&m.event_id).await? {
            let events = self.history.format_events(&[invite], None).await?;
            if let Some(event) = events.into_iter().next() {
                info["invite"] = event;
            }
        }
        Ok(info)
    }

    /// The token of "now": `/events` continues from it. Its to-device part acknowledges
    /// nothing, since these endpoints deliver no to-device messages.
    pub(super) async fn current_token(&self) -> ServiceResult<String> {
        let pos = self.ctx.storage.current_stream_pos().await?;
        Ok(SyncToken {
            pos,
            // Typing changes from now on, not the ones before.
            typing: self.ephemeral.typing.serial(self.ctx.now_ms()),
            to_device: StreamPos::ZERO.min(pos),
        }
        .to_string())
    }

    async fn account_data(&self, user_id: &UserId) -> ServiceResult<AccountData> {
        let mut data = AccountData {
            global: Vec::new(),
            rooms: HashMap::new(),
        };
        for d in self
            .ctx
            .storage
            .account_data_since(user_id, StreamPos::ZERO)
            .await?
        {
            let event = json!({ "type": d.data_type, "content": d.content });
            match d.room_id {
                Some(room) => data.rooms.entry(room).or_default().push(event),
                None => data.global.push(event),
            }
        }
        if !data.global.iter().any(|e| e["type"] == "m.push_rules") {
            data.global
                .push(push_rules_event(&self.users, user_id).await?);
        }
        Ok(data)
    }

    /// Presence of the user and of everyone sharing a room with them.
    async fn presence(&self, user_id: &UserId) -> ServiceResult<Vec<Value>> {
        let mut users = self.rooms.users_sharing_rooms(user_id).await?;
        users.insert(user_id.to_owned());
        self.presence_of(users.into_iter().collect()).await
    }

    /// Presence of a room's joined members.
    async fn room_presence(&self, room_id: &RoomId) -> ServiceResult<Vec<Value>> {
        let state = self
            .rooms
            .room_state(room_id)
            .await
            .map_err(|_| ServiceError::Forbidden("You cannot read this room".into()))?;
        self.presence_of(state.joined_members().into_iter().collect())
            .await
    }

    async fn presence_of(&self, users: Vec<ruma::OwnedUserId>) -> ServiceResult<Vec<Value>> {
        let now = self.ctx.now_ms();
        Ok(self
            .ctx
            .storage
            .presence_since(&users, StreamPos::ZERO)
            .await?
            .into_iter()
            .map(|p| presence_event(p, now))
            .collect::<Vec<_>>())
    }
}
