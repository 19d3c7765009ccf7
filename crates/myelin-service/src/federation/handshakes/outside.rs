//! Leaving a room this server is not in: rejecting a remote invite and withdrawing a remote knock,
//! through a server of the room (`make_leave`, `send_leave`) or, when none answers, with a leave
//! of our own that only we know of.

use myelin_core::Pdu;
use myelin_federation::{path, Method};
use myelin_room::{complete_template, rules_for_received};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, OwnedUserId, RoomId, RoomVersionId,
    ServerName, UserId,
};
use serde_json::{json, Value};

use super::outbound::MakeJoinAnswer;
use super::template::checked_template;
use crate::{Handshakes, ServiceError, ServiceResult};

impl Handshakes {
    /// The sender of the user's pending invite to the room, if there is one.
    pub(crate) async fn pending_invite_sender(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> ServiceResult<Option<OwnedUserId>> {
        let membership = self
            .ctx
            .storage
            .memberships_of_user(user_id)
            .await?
            .into_iter()
            .find(|m| m.room_id == room_id && m.membership == "invite");
        let Some(membership) = membership else {
            return Ok(None);
        };
        Ok(self
            .ctx
            .storage
            .get_event(&membership.event_id)
            .await?
            .map(|r| r.pdu.sender))
    }

    /// Rejects an invite to a room we are not in: through the inviting server (`make_leave`,
    /// `send_leave`) when it answers, else with a leave of our own that only we know of, so
    /// the user is never stuck with an invite they cannot get rid of.
    pub(crate) async fn reject_remote_invite(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        inviter: &UserId,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        let leave = match self
            .leave_through(user_id, room_id, inviter.server_name(), reason)
            .await
        {
            Ok(leave) => leave,
            Err(e) => {
                tracing::info!(%room_id, server = %inviter.server_name(), error = %e, "remote invite rejection failed; rejecting locally");
                self.local_leave_after_invite(user_id, room_id, reason)
                    .await?
            }
        };
        self.ctx
            .storage
            .persist_outside_membership(leave, user_id, "leave", None)
            .await?;
        self.ctx.notifier.notify([user_id]);
        Ok(())
    }

    /// Withdraws a knock on a room we are not in: through a server of the room (`make_leave`,
    /// `send_leave`; candidates are the servers of the stripped state the knock returned, then
    /// the room ID's), else with a leave of our own, as for a rejected invite.
    pub(crate) async fn withdraw_remote_knock(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        let mut servers: Vec<OwnedServerName> = Vec::new();
        if let Some(stripped) = self.ctx.storage.stripped_state(room_id, user_id).await? {
            let events: Vec<Value> = serde_json::from_str(&stripped).unwrap_or_default();
            servers.extend(events.iter().filter_map(|e| {
                let sender = UserId::parse(e.get("sender")?.as_str()?).ok()?;
                Some(sender.server_name().to_owned())
            }));
        }
        servers.extend(room_id.server_name().map(ToOwned::to_owned));
        let mut seen = std::collections::HashSet::new();
        servers.retain(|s| s != self.ctx.server_name() && seen.insert(s.clone()));
        let mut leave = None;
        for server in &servers {
            match self.leave_through(user_id, room_id, server, reason).await {
                Ok(pdu) => {
                    leave = Some(pdu);
                    break;
                }
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e, "remote knock withdrawal failed")
                }
            }
        }
        let leave = match leave {
            Some(leave) => leave,
            None => {
                self.local_leave_after_invite(user_id, room_id, reason)
                    .await?
            }
        };
        self.ctx
            .storage
            .persist_outside_membership(leave, user_id, "leave", None)
            .await?;
        self.ctx.notifier.notify([user_id]);
        Ok(())
    }

    /// Whether the user's membership in a room we are not in is a pending knock.
    pub(crate) async fn has_pending_knock(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> ServiceResult<bool> {
        Ok(self
            .ctx
            .storage
            .memberships_of_user(user_id)
            .await?
            .iter()
            .any(|m| m.room_id == room_id && m.membership == "knock"))
    }

    async fn leave_through(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
    ) -> ServiceResult<Pdu> {
        let path = path::make_membership("leave", room_id, user_id, &[]);
        let answer: MakeJoinAnswer = self
            .ctx
            .federation_call(Method::GET, server, &path, None)
            .await?;
        let (mut template, _, rules) = checked_template(
            &answer.event,
            answer.room_version.as_ref(),
            server,
            room_id,
            user_id,
            "leave",
        )?;
        let mut content = json!({ "membership": "leave" });
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        template.insert(
            "content".into(),
            CanonicalJsonValue::try_from(content)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        );
        let leave = complete_template(template, &rules, self.ctx.now_ms(), &self.ctx.key)?;
        let path = path::send_leave(room_id, &leave.event_id);
        let body: Value = serde_json::from_str(leave.json.get())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.ctx
            .federation_request(Method::PUT, server, &path, Some(body))
            .await?;
        Ok(leave)
    }

    /// A leave built on the invite alone, for when the inviting server cannot be reached.
    async fn local_leave_after_invite(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> ServiceResult<Pdu> {
        let membership = self
            .ctx
            .storage
            .memberships_of_user(user_id)
            .await?
            .into_iter()
            .find(|m| m.room_id == room_id)
            .ok_or_else(|| ServiceError::Forbidden("You are not invited to this room".into()))?;
        let invite = self
            .ctx
            .storage
            .get_event(&membership.event_id)
            .await?
            .ok_or_else(|| ServiceError::Internal("the invite event is missing".into()))?;
        let version = self
            .ctx
            .storage
            .room_info(room_id)
            .await?
            .map(|i| i.version)
            .unwrap_or(RoomVersionId::V10);
        let rules = rules_for_received(&version)?;
        let mut content = json!({ "membership": "leave" });
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        let object = json!({
            "type": "m.room.member",
            "room_id": room_id,
            "sender": user_id,
            "state_key": user_id,
            "content": content,
            "prev_events": [invite.pdu.event_id],
            "auth_events": [invite.pdu.event_id],
            "depth": invite.pdu.depth.saturating_add(1),
        });
        let object: CanonicalJsonObject =
            serde_json::from_value(object).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(complete_template(
            object,
            &rules,
            self.ctx.now_ms(),
            &self.ctx.key,
        )?)
    }
}
