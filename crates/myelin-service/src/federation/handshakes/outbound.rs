//! Handshakes as the joining server: joining and knocking on a room on another server
//! (`make_join` then `send_join` v2, `make_knock` then `send_knock`), through the first of the
//! candidate servers that answers, and storing the room's state from the answer.

use std::sync::Arc;

use myelin_core::Pdu;
use myelin_federation::{path, Method};
use myelin_room::{check_auth, complete_template, rules_for_received};
use myelin_storage::{MembershipChange, NewEvent, NewRoom, NewState, RoomStore, StateMap};
use ruma::{
    events::StateEventType, CanonicalJsonValue, OwnedServerName, RoomId, RoomVersionId, ServerName,
    UserId,
};
use serde::Deserialize;
use serde_json::{json, value::RawValue as RawJsonValue, Value};

use super::stripped::remote_stripped_state;
use super::template::{
    authorising_user, checked_template, same_event_more_signatures, JOINABLE_VERSIONS,
};
use crate::{rooms::RoomState, Handshakes, ServiceError, ServiceResult};

#[derive(Deserialize)]
pub(super) struct MakeJoinAnswer {
    pub(super) event: Box<RawJsonValue>,
    pub(super) room_version: Option<RoomVersionId>,
}

#[derive(Deserialize)]
struct SendJoinAnswer {
    #[serde(default)]
    state: Vec<Box<RawJsonValue>>,
    #[serde(default)]
    auth_chain: Vec<Box<RawJsonValue>>,
    /// The join event co-signed by the resident server (restricted rooms).
    event: Option<Box<RawJsonValue>>,
}

impl Handshakes {
    /// Joins `user_id` to a room this server is not in, through the first of `servers` that
    /// lets us.
    pub(crate) async fn join_remote(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        self.through_first(room_id, servers, "join", |server| async move {
            self.join_through(user_id, room_id, &server, reason).await
        })
        .await
    }

    /// Runs `attempt` with each of `servers` (ours and blocked ones skipped) until one succeeds;
    /// the last failure otherwise.
    async fn through_first<F, Fut>(
        &self,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        what: &str,
        attempt: F,
    ) -> ServiceResult<()>
    where
        F: Fn(OwnedServerName) -> Fut,
        Fut: std::future::Future<Output = ServiceResult<()>>,
    {
        let mut last = ServiceError::NotFound(format!(
            "No server to {what} {room_id} through is known; give one in `via`"
        ));
        for server in servers {
            if server == self.ctx.server_name() || self.ctx.is_blocked_server(server.as_str()) {
                continue;
            }
            match attempt(server.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e, "remote {what} failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn join_through(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        let (join, version, rules) = self
            .signed_from_template(user_id, room_id, server, "join", reason)
            .await?;
        let path = path::send_join(room_id, &join.event_id);
        let body: Value = serde_json::from_str(join.json.get())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let answer: SendJoinAnswer = self
            .ctx
            .federation_call(Method::PUT, server, &path, Some(body))
            .await?;
        let join = match &answer.event {
            Some(signed) => {
                // Our join with the resident server's signature added, and nothing else changed.
                let received = self.ctx.verify_remote_pdu(signed, room_id, &rules).await?;
                let ours = myelin_room::parse_received(&join.json)?;
                let returned = myelin_room::parse_received(&received.pdu.json)?;
                if received.pdu.event_id != join.event_id
                    || received.redacted
                    || !same_event_more_signatures(&ours, &returned, self.ctx.server_name())
                {
                    return Err(ServiceError::Remote(format!(
                        "{server} returned a different join event"
                    )));
                }
                received.pdu
            }
            None => join,
        };
        self.persist_remote_join(room_id, &version, join, &answer.state, &answer.auth_chain)
            .await
    }

    /// Knocks on a room this server is not in, through the first of `servers` that answers
    /// (`make_knock`, `send_knock`); the knock is kept with the room's stripped state.
    pub(crate) async fn knock_remote(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        self.through_first(room_id, servers, "knock on", |server| async move {
            self.knock_through(user_id, room_id, &server, reason).await
        })
        .await
    }

    async fn knock_through(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        let (knock, _, _) = self
            .signed_from_template(user_id, room_id, server, "knock", reason)
            .await?;
        let path = path::send_knock(room_id, &knock.event_id);
        let body: Value = serde_json::from_str(knock.json.get())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        #[derive(Deserialize)]
        struct KnockAnswer {
            #[serde(default)]
            knock_room_state: Vec<Value>,
        }
        let answer: KnockAnswer = self
            .ctx
            .federation_call(Method::PUT, server, &path, Some(body))
            .await?;
        let stripped = serde_json::to_string(&remote_stripped_state(
            answer.knock_room_state,
            room_id,
            None,
        ))
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.ctx
            .storage
            .persist_outside_membership(knock, user_id, "knock", Some(stripped))
            .await?;
        self.ctx.notifier.notify([user_id]);
        Ok(())
    }

    /// Asks `server` for a `membership` template (`make_join`, `make_knock`), fills in our
    /// user's content and signs it as ours.
    async fn signed_from_template(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        membership: &str,
        reason: Option<&str>,
    ) -> ServiceResult<(
        Pdu,
        RoomVersionId,
        ruma::room_version_rules::RoomVersionRules,
    )> {
        let path = path::make_membership(membership, room_id, user_id, JOINABLE_VERSIONS);
        let answer: MakeJoinAnswer = self
            .ctx
            .federation_call(Method::GET, server, &path, None)
            .await?;
        let (mut template, version, rules) = checked_template(
            &answer.event,
            answer.room_version.as_ref(),
            server,
            room_id,
            user_id,
            membership,
        )?;
        let mut content = self.rooms.member_content(user_id, membership).await?;
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        if let Some(via) = authorising_user(&template).filter(|_| membership == "join") {
            content["join_authorised_via_users_server"] = json!(via);
        }
        template.insert(
            "content".into(),
            CanonicalJsonValue::try_from(content)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        );
        let pdu = complete_template(template, &rules, self.ctx.now_ms(), &self.ctx.key)?;
        Ok((pdu, version, rules))
    }

    /// Stores the room's state and auth chain from `send_join` and our join on top of them.
    async fn persist_remote_join(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        join: Pdu,
        state: &[Box<RawJsonValue>],
        auth_chain: &[Box<RawJsonValue>],
    ) -> ServiceResult<()> {
        let rules = rules_for_received(version)?;
        let room = self.rooms.lock(room_id).await;
        let state = self
            .ingest
            .store_remote_events(room_id, &rules, state, auth_chain)
            .await?;
        let create_id = state
            .get(&("m.room.create".to_owned(), String::new()))
            .cloned()
            .ok_or_else(|| ServiceError::Remote("the room state has no create event".into()))?;
        let create = self
            .ctx
            .storage
            .get_event(&create_id)
            .await?
            .ok_or_else(|| ServiceError::Remote("the create event was refused".into()))?;
        let create_version = create
            .pdu
            .content_value()
            .get("room_version")
            .and_then(Value::as_str)
            .unwrap_or("1")
            .to_owned();
        if create_version != version.as_str() {
            return Err(ServiceError::Remote(format!(
                "the room is version {create_version}, not {version} as make_join said"
            )));
        }
        // Our join must be allowed by the state the resident server gave us.
        let state_pdus = self.ingest.state_pdus(&state).await?;
        check_auth(
            &rules,
            &join,
            |id| state_pdus.values().find(|p| p.event_id == id).cloned(),
            |kind: &StateEventType, key: &str| {
                state_pdus.get(&(kind.clone(), key.to_owned())).cloned()
            },
        )?;

        let known_room = RoomStore::room_info(self.ctx.storage.as_ref(), room_id)
            .await?
            .is_some();
        let mut after: StateMap = state.clone();
        after.insert(
            ("m.room.member".to_owned(), join.sender.to_string()),
            join.event_id.clone(),
        );
        let event = NewEvent {
            room: (!known_room).then(|| NewRoom {
                room_id: room_id.to_owned(),
                version: version.clone(),
                creator: create.pdu.sender.clone(),
                created_ms: self.ctx.now_ms(),
            }),
            state: NewState::Changed {
                base: None,
                changes: after.into_iter().collect(),
            },
            updates_current_state: true,
            membership: Some(MembershipChange {
                user_id: join.sender.clone(),
                membership: "join".to_owned(),
            }),
            txn: None,
            redaction: None,
            forward_extremities: vec![join.event_id.clone()],
            resolved_current_state: None,
            destinations: Vec::new(),
            push_actions: Vec::new(),
            pdu: join.clone(),
        };
        let persisted = self.ctx.storage.persist_event(event).await?;
        let loaded = Arc::new(RoomState::load(self.ctx.storage.as_ref(), room_id).await?);
        // Remote members' memberships are not in `room_memberships` (only the join's is); the
        // in-memory state has them all, which is what sync and sending read.
        self.rooms
            .publish(&room, loaded, &[(Arc::new(join), persisted.stream_pos)]);
        Ok(())
    }
}
