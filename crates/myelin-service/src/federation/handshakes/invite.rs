//! Invites across servers, both ways: a remote server inviting one of our users (`invite` v2,
//! co-signed and kept with its trimmed stripped state when we are not in the room), and our users
//! inviting remote ones; plus which servers a join may go through.

use myelin_core::Pdu;
use myelin_federation::{path, Method};
use myelin_room::{rules_for_received, EventTemplate};
use myelin_storage::RoomStore;
use ruma::{OwnedRoomId, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId};
use serde::Deserialize;
use serde_json::{json, value::RawValue as RawJsonValue, Value};

use super::stripped::remote_stripped_state;
use crate::{rooms::RoomState, Handshakes, ServiceError, ServiceResult};

impl Handshakes {
    // ---- invites ---------------------------------------------------------------------------

    /// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`: a remote server invites one of
    /// our users. The event is checked, co-signed and, when we are not in the room, kept with
    /// the stripped state the inviter sent so that `/sync` shows the invite.
    pub async fn federation_invite(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &ruma::EventId,
        room_version: &RoomVersionId,
        raw: &RawJsonValue,
        invite_room_state: Vec<Value>,
    ) -> ServiceResult<Box<RawJsonValue>> {
        self.ctx.refuse_blocked(origin)?;
        // A room we know has its server ACL applied; of one we do not, we have no state.
        if RoomStore::room_info(self.ctx.storage.as_ref(), room_id)
            .await?
            .is_some()
        {
            self.rooms.check_server_acl(origin, room_id).await?;
        }
        let rules = rules_for_received(room_version)?;
        let received = self.ctx.verify_remote_pdu(raw, room_id, &rules).await?;
        let pdu = received.pdu;
        if pdu.event_id != event_id {
            return Err(ServiceError::BadJson(format!(
                "the event ID is {}, not {event_id}",
                pdu.event_id
            )));
        }
        let invitee = pdu
            .state_key
            .as_deref()
            .and_then(|k| <&UserId>::try_from(k).ok())
            .map(ToOwned::to_owned);
        let membership = pdu
            .content_value()
            .get("membership")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(invitee) = invitee.filter(|_| {
            pdu.kind.to_string() == "m.room.member" && membership.as_deref() == Some("invite")
        }) else {
            return Err(ServiceError::BadJson("not an invite event".into()));
        };
        if invitee.server_name() != self.ctx.server_name() {
            return Err(ServiceError::BadJson(format!(
                "{invitee} is not a user of this server"
            )));
        }
        if pdu.sender.server_name() != origin {
            return Err(ServiceError::Forbidden(format!(
                "{origin} cannot invite on behalf of {}",
                pdu.sender
            )));
        }
        if self
            .ctx
            .storage
            .get_user(&invitee)
            .await?
            .is_none_or(|u| u.deactivated)
        {
            return Err(ServiceError::NotFound(format!("Unknown user {invitee}")));
        }
        let mut object = myelin_room::parse_received(&pdu.json)?;
        myelin_room::co_sign(&mut object, &rules, &self.ctx.key)?;
        let signed = Pdu::from_canonical(pdu.event_id.clone(), &object)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let in_room = RoomStore::room_info(self.ctx.storage.as_ref(), room_id)
            .await?
            .is_some()
            && self.rooms.server_has_joined_member(room_id).await?;
        if !in_room {
            let kept = remote_stripped_state(invite_room_state, room_id, Some(&pdu.sender));
            let stripped =
                serde_json::to_string(&kept).map_err(|e| ServiceError::Internal(e.to_string()))?;
            self.ctx
                .storage
                .persist_outside_membership(signed.clone(), &invitee, "invite", Some(stripped))
                .await?;
            self.ctx.notifier.notify([&*invitee]);
        }
        Ok(signed.json)
    }

    /// Invites a user of another server: their server co-signs the invite before we store it.
    pub(crate) async fn invite_remote(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        content: Value,
    ) -> ServiceResult<()> {
        let state = self.rooms.room_state(room_id).await?;
        let template = EventTemplate {
            kind: "m.room.member".into(),
            state_key: Some(target.to_string()),
            content,
            redacts: None,
        };
        let pdu = self.build_on_current(&state, &sender.to_owned(), template)?;
        let stripped = self.invite_stripped_state(&state);
        let path = path::invite(room_id, &pdu.event_id);
        let event: Value = serde_json::from_str(pdu.json.get())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let body = json!({
            "event": event,
            "room_version": state.version,
            "invite_room_state": stripped,
        });
        #[derive(Deserialize)]
        struct InviteAnswer {
            event: Box<RawJsonValue>,
        }
        let answer: InviteAnswer = self
            .ctx
            .federation_call(Method::PUT, target.server_name(), &path, Some(body))
            .await?;
        let signed = self
            .ctx
            .verify_remote_pdu(&answer.event, room_id, &state.rules)
            .await?
            .pdu;
        if signed.event_id != pdu.event_id {
            return Err(ServiceError::Remote(format!(
                "{} changed the invite event",
                target.server_name()
            )));
        }
        self.rooms
            .append_event(
                room_id,
                crate::rooms::Append {
                    sender: sender.to_owned(),
                    template: EventTemplate {
                        kind: String::new(),
                        state_key: None,
                        content: Value::Null,
                        redacts: None,
                    },
                    txn: None,
                    prebuilt: Some(signed),
                    ts: None,
                },
            )
            .await?;
        Ok(())
    }

    /// The stripped state sent with an invite.
    pub(super) fn invite_stripped_state(&self, state: &RoomState) -> Vec<Value> {
        crate::format::STRIPPED_STATE_TYPES
            .iter()
            .filter_map(|k| state.get(&(*k).into(), ""))
            .map(|e| {
                let pdu = &e.pdu;
                json!({
                    "type": pdu.kind.to_string(),
                    "state_key": pdu.state_key,
                    "sender": pdu.sender,
                    "content": pdu.content_value(),
                })
            })
            .collect()
    }

    /// The servers to try for joining `room_id`: those given, then the room ID's and alias's.
    pub(crate) fn join_candidates(
        &self,
        room_id: &OwnedRoomId,
        given: &[OwnedServerName],
        invite_sender: Option<&UserId>,
    ) -> Vec<OwnedServerName> {
        let mut servers: Vec<OwnedServerName> = given.to_vec();
        if let Some(inviter) = invite_sender {
            servers.push(inviter.server_name().to_owned());
        }
        if let Some(server) = room_id.server_name() {
            servers.push(server.to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        servers.retain(|s| seen.insert(s.clone()));
        servers
    }
}
