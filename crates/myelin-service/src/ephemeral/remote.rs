//! Typing, receipts and presence from other servers (`m.typing`, `m.receipt`, `m.presence`
//! EDUs), each accepted only for users of the origin who are in the room.

use crate::rooms::Membership;
use myelin_storage::ReceiptRecord;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, ServerName, UserId};
use serde::Deserialize;
use serde_json::Value;

use crate::{Ephemeral, ServiceError, ServiceResult};

/// Presence updates applied per EDU, whatever the origin sends.
const MAX_PRESENCE_PUSHES: usize = 100;

impl Ephemeral {
    pub(crate) async fn receive_typing(
        &self,
        origin: &ServerName,
        content: &Value,
    ) -> ServiceResult<()> {
        #[derive(Deserialize)]
        struct Typing {
            room_id: OwnedRoomId,
            user_id: OwnedUserId,
            typing: bool,
        }
        let t: Typing = serde_json::from_value(content.clone())
            .map_err(|e| ServiceError::BadJson(format!("m.typing: {e}")))?;
        self.remote_user_in_room(origin, &t.user_id, &t.room_id)
            .await?;
        let now = self.ctx.now_ms();
        // Remote typing lasts as long as a local default; the origin sends a stop or a renewal.
        let until = t.typing.then_some(now + 30_000);
        if self.typing.set(&t.room_id, &t.user_id, until, now) {
            self.typing_to_appservices(&t.room_id).await?;
            self.rooms.notify_room(&t.room_id).await?;
        }
        Ok(())
    }

    pub(crate) async fn receive_receipts(
        &self,
        origin: &ServerName,
        content: &Value,
    ) -> ServiceResult<()> {
        let Some(rooms) = content.as_object() else {
            return Err(ServiceError::BadJson(
                "m.receipt content is not an object".into(),
            ));
        };
        for (room_id, by_type) in rooms {
            let Ok(room_id) = OwnedRoomId::try_from(room_id.as_str()) else {
                continue;
            };
            let Some(reads) = by_type.get("m.read").and_then(Value::as_object) else {
                continue;
            };
            let mut changed = false;
            for (user_id, receipt) in reads {
                let Ok(user_id) = OwnedUserId::try_from(user_id.as_str()) else {
                    continue;
                };
                if self
                    .remote_user_in_room(origin, &user_id, &room_id)
                    .await
                    .is_err()
                {
                    continue;
                }
                let event_ids = receipt.get("event_ids").and_then(Value::as_array);
                let Some(event_id) = event_ids
                    .and_then(|ids| ids.first())
                    .and_then(Value::as_str)
                    .and_then(|id| OwnedEventId::try_from(id).ok())
                else {
                    continue;
                };
                let known = self
                    .ctx
                    .storage
                    .get_event(&event_id)
                    .await?
                    .is_some_and(|r| r.pdu.room_id == room_id && r.outlier.is_none());
                if !known {
                    continue;
                }
                let data = receipt.get("data");
                let thread_id = data
                    .and_then(|d| d.get("thread_id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let ts = data
                    .and_then(|d| d.get("ts"))
                    .and_then(Value::as_u64)
                    .unwrap_or_else(|| self.ctx.now_ms());
                self.ctx
                    .storage
                    .set_receipt(ReceiptRecord {
                        room_id: room_id.clone(),
                        receipt_type: "m.read".to_owned(),
                        user_id: user_id.clone(),
                        thread_id,
                        event_id: event_id.clone(),
                        ts,
                        stream_pos: Default::default(),
                    })
                    .await?;
                self.receipt_to_appservices(&room_id, &user_id, &event_id, ts)
                    .await?;
                changed = true;
            }
            if changed {
                self.rooms.notify_room(&room_id).await?;
            }
        }
        Ok(())
    }

    /// The user belongs to `origin` and is joined to the room.
    async fn remote_user_in_room(
        &self,
        origin: &ServerName,
        user_id: &ruma::UserId,
        room_id: &RoomId,
    ) -> ServiceResult<()> {
        if user_id.server_name() != origin {
            return Err(ServiceError::Forbidden(format!(
                "{origin} cannot speak for {user_id}"
            )));
        }
        self.rooms.check_server_acl(origin, room_id).await?;
        let state = self.rooms.room_state(room_id).await?;
        if state.membership(user_id) != Some(Membership::Join) {
            return Err(ServiceError::Forbidden(format!(
                "{user_id} is not in {room_id}"
            )));
        }
        Ok(())
    }

    /// `m.presence`: the origin's users' presence, stored like local presence so that `/sync`
    /// shows it to users who share a room with them.
    pub(crate) async fn receive_presence(
        &self,
        origin: &ServerName,
        content: &Value,
    ) -> ServiceResult<()> {
        let pushes = content
            .get("push")
            .and_then(Value::as_array)
            .ok_or_else(|| ServiceError::BadJson("m.presence has no push list".into()))?;
        // Bounded work per EDU, whatever the origin sends.
        for push in pushes.iter().take(MAX_PRESENCE_PUSHES) {
            let Some(user_id) = push
                .get("user_id")
                .and_then(Value::as_str)
                .and_then(|u| UserId::parse(u).ok())
            else {
                continue;
            };
            let state = push.get("presence").and_then(Value::as_str).unwrap_or("");
            if user_id.server_name() != origin
                || !matches!(state, "online" | "offline" | "unavailable")
            {
                continue;
            }
            let status = push.get("status_msg").and_then(Value::as_str);
            let ago = push
                .get("last_active_ago")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let last_active = self.ctx.now_ms().saturating_sub(ago);
            self.ctx
                .storage
                .set_presence(&user_id, state, status, last_active)
                .await?;
            self.presence_to_appservices(&user_id).await?;
            self.rooms.notify_sharers(&user_id).await?;
        }
        Ok(())
    }
}
