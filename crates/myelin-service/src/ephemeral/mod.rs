//! Ephemeral and per-user room signals: typing (in memory, expiring), receipts, read markers,
//! presence; local ones here, those from other servers in `remote.rs`.

mod remote;

use crate::federation::EduKind;
use crate::rooms::Membership;
use std::{collections::HashMap, sync::Mutex};

use myelin_storage::ReceiptRecord;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use std::sync::Arc;

use crate::{
    accounts::Authed, federation::Outbox, Context, Rooms, ServiceError, ServiceResult, Users,
};

pub struct Ephemeral {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) users: Arc<Users>,
    pub(crate) typing: Typing,
}

impl Ephemeral {
    pub fn new(
        ctx: Arc<Context>,
        rooms: Arc<Rooms>,
        outbox: Arc<Outbox>,
        users: Arc<Users>,
    ) -> Ephemeral {
        let typing = Typing::new(ctx.now_ms());
        Ephemeral {
            ctx,
            rooms,
            outbox,
            users,
            typing,
        }
    }
}

/// Who is typing where, with a serial that orders changes for `/sync` tokens.
pub(crate) struct Typing {
    inner: Mutex<TypingInner>,
}

struct TypingInner {
    /// Bumped on every change; starts from the start-up time so tokens stay monotonic across restarts.
    serial: u64,
    rooms: HashMap<OwnedRoomId, RoomTyping>,
}

#[derive(Default)]
struct RoomTyping {
    /// user → expiry (ms).
    users: HashMap<OwnedUserId, u64>,
    changed_at: u64,
}

impl Typing {
    pub(crate) fn new(now_ms: u64) -> Self {
        Typing {
            inner: Mutex::new(TypingInner {
                serial: now_ms,
                rooms: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TypingInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets or clears a user's typing flag; returns whether anything changed.
    pub(crate) fn set(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        until: Option<u64>,
        now: u64,
    ) -> bool {
        let mut inner = self.lock();
        inner.expire(now);
        let serial = inner.serial + 1;
        let room = inner.rooms.entry(room_id.to_owned()).or_default();
        let changed = match until {
            Some(t) => room.users.insert(user_id.to_owned(), t).is_none(),
            None => room.users.remove(user_id).is_some(),
        };
        if changed {
            room.changed_at = serial;
            inner.serial = serial;
        }
        changed
    }

    /// The current serial (after expiring stale entries).
    pub(crate) fn serial(&self, now: u64) -> u64 {
        let mut inner = self.lock();
        inner.expire(now);
        inner.serial
    }

    /// Typing users in a room if it changed after `since` (or always, when `since` is `None`).
    pub(crate) fn changed_since(
        &self,
        room_id: &RoomId,
        since: Option<u64>,
        now: u64,
    ) -> Option<Vec<OwnedUserId>> {
        let mut inner = self.lock();
        inner.expire(now);
        let room = inner.rooms.get(room_id)?;
        if since.is_some_and(|s| room.changed_at <= s) {
            return None;
        }
        Some(room.users.keys().cloned().collect())
    }
}

impl TypingInner {
    fn expire(&mut self, now: u64) {
        let mut serial = self.serial;
        for room in self.rooms.values_mut() {
            let before = room.users.len();
            room.users.retain(|_, until| *until > now);
            if room.users.len() != before {
                serial += 1;
                room.changed_at = serial;
            }
        }
        self.serial = serial;
        self.rooms
            .retain(|_, r| !r.users.is_empty() || r.changed_at + 1_000_000 > serial);
    }
}

impl Ephemeral {
    /// A typing or receipt event for the appservices that receive ephemeral events (MSC2409)
    /// and have a user in the room; called before the room's members are woken.
    async fn to_appservices(
        &self,
        room_id: &RoomId,
        kind: &str,
        content: serde_json::Value,
    ) -> ServiceResult<()> {
        if self.ctx.appservices.is_empty() {
            return Ok(());
        }
        let state = self.rooms.room_state(room_id).await?;
        let event = serde_json::json!({ "type": kind, "room_id": room_id, "content": content });
        self.ctx
            .appservices
            .push_room_ephemeral(room_id, &state.joined_members(), &event);
        Ok(())
    }

    /// Who types in the room now, as an `m.typing` event for appservices.
    pub(crate) async fn typing_to_appservices(&self, room_id: &RoomId) -> ServiceResult<()> {
        let users = self
            .typing
            .changed_since(room_id, None, self.ctx.now_ms())
            .unwrap_or_default();
        self.to_appservices(
            room_id,
            "m.typing",
            serde_json::json!({ "user_ids": users }),
        )
        .await
    }

    /// A public read receipt, as an `m.receipt` event for appservices.
    pub(crate) async fn receipt_to_appservices(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &ruma::EventId,
        ts: u64,
    ) -> ServiceResult<()> {
        let content = serde_json::json!({ event_id.as_str(): { "m.read": {
            user_id.as_str(): { "ts": ts },
        } } });
        self.to_appservices(room_id, "m.receipt", content).await
    }

    /// The user's stored presence, as an `m.presence` event for the appservices interested in
    /// them (MSC2409); called after every stored change, local or remote.
    pub(crate) async fn presence_to_appservices(&self, user_id: &UserId) -> ServiceResult<()> {
        if self.ctx.appservices.is_empty() {
            return Ok(());
        }
        let Some(record) = self.ctx.storage.get_presence(user_id).await? else {
            return Ok(());
        };
        let sharers: Vec<OwnedUserId> = self
            .rooms
            .users_sharing_rooms(user_id)
            .await?
            .into_iter()
            .collect();
        let event = crate::sync::presence_event(record, self.ctx.now_ms());
        self.ctx
            .appservices
            .push_presence(user_id, &sharers, &event);
        Ok(())
    }

    /// `PUT /rooms/{roomId}/typing/{userId}`.
    pub async fn set_typing(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        typing: bool,
        timeout_ms: Option<u64>,
    ) -> ServiceResult<()> {
        let state = self.rooms.room_state(room_id).await?;
        if state.membership(user_id) != Some(Membership::Join) {
            return Err(ServiceError::Forbidden("You are not in this room".into()));
        }
        let now = self.ctx.now_ms();
        let until = typing.then(|| {
            now + timeout_ms
                .unwrap_or(30_000)
                .min(self.ctx.config.max_typing_timeout_ms)
        });
        if self.typing.set(room_id, user_id, until, now) {
            self.typing_to_appservices(room_id).await?;
            self.rooms.notify_room(room_id).await?;
            let content = serde_json::json!({
                "room_id": room_id, "user_id": user_id, "typing": typing,
            });
            self.outbox
                .send_edu_to_room(&state, EduKind::Typing, content)
                .await?;
        }
        Ok(())
    }

    /// `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`.
    pub async fn set_receipt(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &OwnedEventId,
        thread_id: Option<String>,
    ) -> ServiceResult<()> {
        if !matches!(receipt_type, "m.read" | "m.read.private" | "m.fully_read") {
            return Err(ServiceError::InvalidParam(format!(
                "Unknown receipt type {receipt_type}"
            )));
        }
        let state = self.rooms.room_state(room_id).await?;
        if state.membership(&authed.user_id) != Some(Membership::Join) {
            return Err(ServiceError::Forbidden("You are not in this room".into()));
        }
        let exists = self
            .ctx
            .storage
            .get_event(event_id)
            .await?
            .is_some_and(|r| r.pdu.room_id == room_id);
        if !exists {
            return Err(ServiceError::NotFound("Event not found".into()));
        }
        if receipt_type == "m.fully_read" {
            let content = serde_json::json!({ "event_id": event_id });
            self.users
                .store_account_data(&authed.user_id, Some(room_id), "m.fully_read", content)
                .await?;
            return Ok(());
        }
        let ts = self.ctx.now_ms();
        self.ctx
            .storage
            .set_receipt(ReceiptRecord {
                room_id: room_id.to_owned(),
                receipt_type: receipt_type.to_owned(),
                user_id: authed.user_id.clone(),
                thread_id: thread_id.clone(),
                event_id: event_id.clone(),
                ts,
                stream_pos: Default::default(),
            })
            .await?;
        if receipt_type == "m.read" {
            let mut data = serde_json::json!({ "ts": ts });
            if let Some(thread) = &thread_id {
                data["thread_id"] = serde_json::json!(thread);
            }
            let content = serde_json::json!({ room_id.as_str(): { "m.read": {
                authed.user_id.as_str(): { "event_ids": [event_id], "data": data },
            } } });
            self.outbox
                .send_edu_to_room(&state, EduKind::Receipt, content)
                .await?;
        }
        if receipt_type == "m.read" {
            self.receipt_to_appservices(room_id, &authed.user_id, event_id, ts)
                .await?;
        }
        if receipt_type == "m.read.private" {
            self.ctx.notifier.notify([&*authed.user_id]);
        } else {
            self.rooms.notify_room(room_id).await?;
        }
        Ok(())
    }

    /// `POST /rooms/{roomId}/read_markers`.
    pub async fn set_read_markers(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        fully_read: Option<OwnedEventId>,
        read: Option<OwnedEventId>,
        read_private: Option<OwnedEventId>,
    ) -> ServiceResult<()> {
        if let Some(id) = fully_read {
            self.set_receipt(authed, room_id, "m.fully_read", &id, None)
                .await?;
        }
        if let Some(id) = read {
            self.set_receipt(authed, room_id, "m.read", &id, None)
                .await?;
        }
        if let Some(id) = read_private {
            self.set_receipt(authed, room_id, "m.read.private", &id, None)
                .await?;
        }
        Ok(())
    }

    /// `PUT /presence/{userId}/status`.
    pub async fn set_presence(
        &self,
        user_id: &UserId,
        presence: &str,
        status_msg: Option<&str>,
    ) -> ServiceResult<()> {
        if !matches!(presence, "online" | "offline" | "unavailable") {
            return Err(ServiceError::InvalidParam(format!(
                "Unknown presence state {presence}"
            )));
        }
        self.ctx
            .storage
            .set_presence(user_id, presence, status_msg, self.ctx.now_ms())
            .await?;
        self.presence_to_appservices(user_id).await?;
        let mut users = vec![user_id.to_owned()];
        for room_id in self.rooms.joined_rooms(user_id).await? {
            users.extend(self.rooms.room_state(&room_id).await?.joined_members());
        }
        self.ctx.notifier.notify(users.iter().map(|u| &**u));
        Ok(())
    }

    /// `GET /presence/{userId}/status`: `(presence, status_msg, last_active_ago)`. Only the user
    /// and those who share a joined room with them may see it (as Synapse), so presence does not
    /// tell strangers when someone is at their keyboard.
    pub async fn get_presence(
        &self,
        requester: &UserId,
        user_id: &UserId,
    ) -> ServiceResult<(String, Option<String>, Option<u64>)> {
        if requester != user_id && !self.share_a_room(requester, user_id).await? {
            return Err(ServiceError::Forbidden(
                "You are not allowed to see their presence".into(),
            ));
        }
        if self.ctx.storage.get_user(user_id).await?.is_none() {
            return Err(ServiceError::NotFound("Unknown user".into()));
        }
        Ok(match self.ctx.storage.get_presence(user_id).await? {
            Some(p) => (
                p.state,
                p.status_msg,
                Some(self.ctx.now_ms().saturating_sub(p.last_active_ms)),
            ),
            None => ("offline".into(), None, None),
        })
    }

    /// Whether `a` and `b` are both joined to some room.
    async fn share_a_room(&self, a: &UserId, b: &UserId) -> ServiceResult<bool> {
        for room_id in self.rooms.joined_rooms(a).await? {
            if self.rooms.room_state(&room_id).await?.is_joined(b) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Ephemeral {}

#[cfg(test)]
mod tests;
