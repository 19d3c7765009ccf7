//! Completing a third-party invite. The identity server tells the invitee's server that the
//! address is bound (`PUT /_matrix/federation/v1/3pid/onbind`), with each invite's `signed`
//! proof. When we are in the room and the inviter is ours, we issue the invite ourselves;
//! otherwise we ask the inviter's server (`exchange_third_party_invite`), which checks the
//! proof, issues the invite and sends it to us as any invite. What we sign is always built here:
//! the type, sender, target and membership are ours, the display name comes from the room's
//! `m.room.third_party_invite` event, and only `signed` is taken from the request, after the
//! auth rules checked its signature against that event's public keys.

use myelin_federation::{path, Method};
use myelin_room::EventTemplate;
use myelin_storage::RoomStore;
use ruma::events::StateEventType;
use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, ServerName, UserId};
use serde_json::{json, Value};

use super::invite::is_token;
use super::{ThirdPartyInvites, MAX_ONBIND_INVITES, MAX_SIGNED_BYTES};
use crate::rooms::{Append, Membership};
use crate::{RateAction, ServiceError, ServiceResult};

/// `PUT /3pid/onbind`: a bound address and the invites waiting for it.
#[derive(Debug, Clone)]
pub struct OnBind {
    pub mxid: OwnedUserId,
    pub invites: Vec<OnBindInvite>,
}

/// One invite of an onbind notification.
#[derive(Debug, Clone)]
pub struct OnBindInvite {
    pub room_id: OwnedRoomId,
    /// Who sent the `m.room.third_party_invite` event.
    pub sender: OwnedUserId,
    pub mxid: OwnedUserId,
    /// `{ mxid, token, signatures }` from the identity server.
    pub signed: Value,
}

impl ThirdPartyInvites {
    /// `PUT /_matrix/federation/v1/3pid/onbind` (unauthenticated: the identity server calls
    /// it; a forged proof fails the auth rules). Every invite is tried; the last failure, if
    /// any, is the answer, so the identity server may retry.
    pub async fn on_bind(&self, onbind: OnBind) -> ServiceResult<()> {
        if onbind.invites.len() > MAX_ONBIND_INVITES {
            return Err(ServiceError::InvalidParam(format!(
                "At most {MAX_ONBIND_INVITES} invites per notification"
            )));
        }
        if onbind.mxid.server_name() != self.ctx.server_name() {
            return Err(ServiceError::InvalidParam(format!(
                "{} is not a user of this server",
                onbind.mxid
            )));
        }
        let mut failure = None;
        for invite in onbind.invites {
            if let Err(e) = self.claim(&invite).await {
                tracing::info!(room_id = %invite.room_id, mxid = %invite.mxid, error = %e,
                    "third-party invite not exchanged");
                failure = Some(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// One invite of an onbind, for one of our users.
    async fn claim(&self, invite: &OnBindInvite) -> ServiceResult<()> {
        if invite.mxid.server_name() != self.ctx.server_name() {
            return Err(ServiceError::InvalidParam(format!(
                "{} is not a user of this server",
                invite.mxid
            )));
        }
        if self
            .ctx
            .storage
            .get_user(&invite.mxid)
            .await?
            .is_none_or(|u| u.deactivated)
        {
            return Err(ServiceError::NotFound(format!(
                "Unknown user {}",
                invite.mxid
            )));
        }
        let token = checked_signed(&invite.signed, &invite.mxid)?;
        let ours = invite.sender.server_name() == self.ctx.server_name();
        if ours && self.in_room(&invite.room_id).await? {
            return self
                .issue(
                    &invite.room_id,
                    &invite.sender,
                    &invite.mxid,
                    &invite.signed,
                    &token,
                )
                .await;
        }
        // Anyone may call onbind: what it makes us send to one server is bounded like a
        // server's own requests to us.
        self.ctx.check_rate(
            RateAction::Federation,
            &format!("onbind:{}", invite.sender.server_name()),
        )?;
        self.exchange_remote(invite).await
    }

    /// `PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}`: the invitee's server
    /// (`origin`, which must be the target's) asks us, the inviter's, to issue the invite.
    pub async fn federation_exchange(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        body: &Value,
    ) -> ServiceResult<()> {
        self.ctx.refuse_blocked(origin)?;
        let request = ExchangeRequest::parse(body, room_id)?;
        if request.target.server_name() != origin {
            return Err(ServiceError::Forbidden(format!(
                "{origin} cannot claim an invite for {}",
                request.target
            )));
        }
        if request.sender.server_name() != self.ctx.server_name() {
            return Err(ServiceError::BadJson(format!(
                "{} is not a user of this server",
                request.sender
            )));
        }
        if !self.in_room(room_id).await? {
            return Err(ServiceError::NotFound(format!(
                "This server is not in {room_id}"
            )));
        }
        self.rooms.check_server_acl(origin, room_id).await?;
        let token = checked_signed(&request.signed, &request.target)?;
        self.issue(
            room_id,
            &request.sender,
            &request.target,
            &request.signed,
            &token,
        )
        .await
    }

    /// Whether this server has a joined member in the room.
    async fn in_room(&self, room_id: &RoomId) -> ServiceResult<bool> {
        Ok(RoomStore::room_info(self.ctx.storage.as_ref(), room_id)
            .await?
            .is_some()
            && self.rooms.server_has_joined_member(room_id).await?)
    }

    /// Issues the invite of `target` by `sender` (our user) with the proof `signed`: locally,
    /// or through the target's server for a remote target. An invite already there (an identity
    /// server retrying) is not sent twice.
    async fn issue(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        signed: &Value,
        token: &str,
    ) -> ServiceResult<()> {
        let state = self.rooms.room_state(room_id).await?;
        let invite_event = state
            .get(&StateEventType::RoomThirdPartyInvite, token)
            .ok_or_else(|| {
                ServiceError::Forbidden("No third-party invite in the room has this token".into())
            })?;
        if invite_event.pdu.sender != sender {
            return Err(ServiceError::Forbidden(format!(
                "The third-party invite was not sent by {sender}"
            )));
        }
        if matches!(
            state.membership(target),
            Some(Membership::Join | Membership::Invite)
        ) {
            return Ok(());
        }
        let display_name = invite_event
            .pdu
            .content_value()
            .get("display_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let content = json!({
            "membership": "invite",
            "third_party_invite": { "display_name": display_name, "signed": signed },
        });
        if target.server_name() != self.ctx.server_name() {
            return self
                .handshakes
                .invite_remote(sender, room_id, target, content)
                .await;
        }
        let append = Append {
            sender: sender.to_owned(),
            template: EventTemplate {
                kind: "m.room.member".into(),
                state_key: Some(target.to_string()),
                content,
                redacts: None,
            },
            txn: None,
            prebuilt: None,
            ts: None,
        };
        self.rooms.append_event(room_id, append).await?;
        Ok(())
    }

    /// Asks the inviter's server (then the room ID's, as Synapse does) to issue the invite.
    async fn exchange_remote(&self, invite: &OnBindInvite) -> ServiceResult<()> {
        let body = json!({
            "type": "m.room.member",
            "room_id": invite.room_id,
            "sender": invite.sender,
            "state_key": invite.mxid,
            "content": {
                "membership": "invite",
                // The inviter's server takes the display name from its own event.
                "third_party_invite": { "display_name": invite.mxid, "signed": invite.signed },
            },
        });
        let mut servers: Vec<OwnedServerName> = vec![invite.sender.server_name().to_owned()];
        if let Some(server) = invite.room_id.server_name() {
            if !servers.iter().any(|s| s == server) {
                servers.push(server.to_owned());
            }
        }
        servers.retain(|s| s != self.ctx.server_name());
        let path = path::exchange_third_party_invite(&invite.room_id);
        let mut last = ServiceError::NotFound(format!(
            "No server to exchange the invite to {} with",
            invite.room_id
        ));
        for server in servers {
            match self
                .ctx
                .federation_call::<Value>(Method::PUT, &server, &path, Some(body.clone()))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// The fields of an `exchange_third_party_invite` body that we use.
struct ExchangeRequest {
    sender: OwnedUserId,
    target: OwnedUserId,
    signed: Value,
}

impl ExchangeRequest {
    fn parse(body: &Value, room_id: &RoomId) -> ServiceResult<ExchangeRequest> {
        let text = |v: &Value, name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ServiceError::BadJson(format!("{name} is missing")))
        };
        if text(body, "type")? != "m.room.member" {
            return Err(ServiceError::BadJson("type must be m.room.member".into()));
        }
        if text(body, "room_id")? != room_id.as_str() {
            return Err(ServiceError::BadJson(
                "room_id does not match the path".into(),
            ));
        }
        let user = |name: &str| {
            OwnedUserId::try_from(text(body, name)?)
                .map_err(|_| ServiceError::BadJson(format!("{name} is not a user ID")))
        };
        let (sender, target) = (user("sender")?, user("state_key")?);
        let content = body
            .get("content")
            .ok_or_else(|| ServiceError::BadJson("content is missing".into()))?;
        if text(content, "membership")? != "invite" {
            return Err(ServiceError::BadJson("membership must be invite".into()));
        }
        let signed = content
            .get("third_party_invite")
            .and_then(|t| t.get("signed"))
            .cloned()
            .ok_or_else(|| ServiceError::BadJson("third_party_invite.signed is missing".into()))?;
        Ok(ExchangeRequest {
            sender,
            target,
            signed,
        })
    }
}

/// Checks the shape of a `signed` proof for `target` (its size, `mxid`, a token of the spec's
/// alphabet, a `signatures` object) and answers its token. The signature itself is the auth
/// rules' to check, against the room's `m.room.third_party_invite` event.
fn checked_signed(signed: &Value, target: &UserId) -> ServiceResult<String> {
    let object = signed
        .as_object()
        .ok_or_else(|| ServiceError::BadJson("signed must be an object".into()))?;
    let size = serde_json::to_vec(signed).map_or(usize::MAX, |v| v.len());
    if size > MAX_SIGNED_BYTES {
        return Err(ServiceError::TooLarge("signed is too large".into()));
    }
    if object.get("mxid").and_then(Value::as_str) != Some(target.as_str()) {
        return Err(ServiceError::Forbidden(format!(
            "The third-party invite is not for {target}"
        )));
    }
    let token = object
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| is_token(t))
        .ok_or_else(|| ServiceError::BadJson("signed.token is missing or invalid".into()))?;
    if !object.get("signatures").is_some_and(Value::is_object) {
        return Err(ServiceError::BadJson("signed.signatures is missing".into()));
    }
    Ok(token.to_owned())
}
