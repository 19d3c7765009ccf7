//! Handshakes as the resident server: the templates (`make_join`, `make_knock`, `make_leave`) we
//! hand to servers whose users join, knock or leave through us, and the signed events they send
//! back (`send_join`, `send_knock`, `send_leave`), checked against what we offered.

use myelin_core::Pdu;
use myelin_room::EventTemplate;
use ruma::{OwnedUserId, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::{json, value::RawValue as RawJsonValue, Value};

use crate::federation::IngestOutcome;
use crate::{rooms::RoomState, Handshakes, ServiceError, ServiceResult};

/// `make_join` as the resident server: the template and the room version.
#[derive(Debug)]
pub struct JoinTemplate {
    pub room_version: RoomVersionId,
    pub event: Value,
}

/// `send_join` v2 as the resident server.
#[derive(Debug)]
pub struct SendJoinResponse {
    pub state: Vec<Box<RawJsonValue>>,
    pub auth_chain: Vec<Box<RawJsonValue>>,
    pub event: Box<RawJsonValue>,
}

impl Handshakes {
    /// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`.
    pub async fn federation_make_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        versions: &[String],
    ) -> ServiceResult<JoinTemplate> {
        self.membership_template(origin, room_id, user_id, "join", versions)
            .await
    }

    /// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`.
    pub async fn federation_make_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        versions: &[String],
    ) -> ServiceResult<JoinTemplate> {
        self.membership_template(origin, room_id, user_id, "knock", versions)
            .await
    }

    /// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`: stores the knock, sends it
    /// on, and answers with the room's stripped state.
    pub async fn federation_send_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &ruma::EventId,
        raw: &RawJsonValue,
    ) -> ServiceResult<Vec<Value>> {
        self.receive_membership(origin, room_id, event_id, raw, "knock")
            .await?;
        let state = self.rooms.room_state(room_id).await?;
        Ok(self.invite_stripped_state(&state))
    }

    /// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`.
    pub async fn federation_make_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> ServiceResult<JoinTemplate> {
        self.membership_template(origin, room_id, user_id, "leave", &[])
            .await
    }

    async fn membership_template(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        membership: &str,
        versions: &[String],
    ) -> ServiceResult<JoinTemplate> {
        self.ctx.refuse_blocked(origin)?;
        self.rooms.check_server_acl(origin, room_id).await?;
        if user_id.server_name() != origin {
            return Err(ServiceError::Forbidden(format!(
                "{origin} cannot act for {user_id}"
            )));
        }
        let state = self.rooms.room_state(room_id).await?;
        if membership != "leave" {
            let supported = if versions.is_empty() {
                state.version == RoomVersionId::V1
            } else {
                versions.iter().any(|v| v == state.version.as_str())
            };
            if !supported {
                return Err(ServiceError::IncompatibleRoomVersion(
                    state.version.to_string(),
                ));
            }
        }
        let sender = user_id.to_owned();
        let template = EventTemplate {
            kind: "m.room.member".into(),
            state_key: Some(user_id.to_string()),
            content: json!({ "membership": membership }),
            redacts: None,
        };
        // Built and checked with our key; the joining server re-signs it as its own.
        let pdu = self.build_on_current(&state, &sender, template)?;
        let mut event: Value = serde_json::from_str(pdu.json.get())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        if let Some(object) = event.as_object_mut() {
            object.remove("signatures");
            object.remove("hashes");
            object.remove("event_id");
            object.insert("origin".into(), json!(origin));
        }
        Ok(JoinTemplate {
            room_version: state.version.clone(),
            event,
        })
    }

    /// Builds an event on the room's current state and checks it against the auth rules.
    pub(super) fn build_on_current(
        &self,
        state: &RoomState,
        sender: &OwnedUserId,
        template: EventTemplate,
    ) -> ServiceResult<Pdu> {
        let append = crate::rooms::Append {
            sender: sender.clone(),
            template,
            txn: None,
            prebuilt: None,
            ts: None,
        };
        self.rooms.build_checked(state, &append, self.ctx.now_ms())
    }

    /// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`: checks and stores the join,
    /// sends it to the other servers in the room, and answers with the state before it and
    /// that state's auth chain.
    pub async fn federation_send_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &ruma::EventId,
        raw: &RawJsonValue,
    ) -> ServiceResult<SendJoinResponse> {
        self.receive_membership(origin, room_id, event_id, raw, "join")
            .await?;
        let state = self
            .federation_reads
            .federation_state(origin, room_id, event_id)
            .await?;
        let event = self
            .federation_reads
            .federation_event(origin, event_id)
            .await?;
        Ok(SendJoinResponse {
            state: state.pdus,
            auth_chain: state.auth_chain,
            event,
        })
    }

    /// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`.
    pub async fn federation_send_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &ruma::EventId,
        raw: &RawJsonValue,
    ) -> ServiceResult<()> {
        self.receive_membership(origin, room_id, event_id, raw, "leave")
            .await
    }

    /// The common checks of `send_join` / `send_leave`, then the event is ingested and
    /// distributed.
    async fn receive_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &ruma::EventId,
        raw: &RawJsonValue,
        membership: &str,
    ) -> ServiceResult<()> {
        self.ctx.refuse_blocked(origin)?;
        self.rooms.check_server_acl(origin, room_id).await?;
        let head: Value = serde_json::from_str(raw.get())
            .map_err(|e| ServiceError::BadJson(format!("the event is not JSON: {e}")))?;
        let state_key = head.get("state_key").and_then(Value::as_str);
        let sender = head.get("sender").and_then(Value::as_str);
        let given = head
            .get("content")
            .and_then(|c| c.get("membership"))
            .and_then(Value::as_str);
        if head.get("type").and_then(Value::as_str) != Some("m.room.member")
            || state_key.is_none()
            || state_key != sender
            || given != Some(membership)
        {
            return Err(ServiceError::BadJson(format!(
                "not an m.room.member {membership} event of its sender"
            )));
        }
        // The sender is the origin's own user, so never one of ours (no other server signs
        // requests as us): an event of our users reaches us here only if we made it.
        let sender_server = sender
            .and_then(|s| <&UserId>::try_from(s).ok())
            .map(|u| u.server_name().to_owned());
        if sender_server.as_deref() != Some(origin) {
            return Err(ServiceError::Forbidden(format!(
                "{origin} cannot send a {membership} for {}",
                sender.unwrap_or("?")
            )));
        }
        match self.ingest.ingest_distributed(origin, room_id, raw).await? {
            (IngestOutcome::Accepted | IngestOutcome::AlreadyKnown, id) if id == event_id => Ok(()),
            (IngestOutcome::Accepted | IngestOutcome::AlreadyKnown, id) => Err(
                ServiceError::BadJson(format!("the event ID is {id}, not {event_id}")),
            ),
            (IngestOutcome::Rejected(why) | IngestOutcome::SoftFailed(why), _) => {
                Err(ServiceError::Forbidden(why))
            }
        }
    }
}
