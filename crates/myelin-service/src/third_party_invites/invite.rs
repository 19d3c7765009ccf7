//! The inviter's side: `POST /rooms/{roomId}/invite` with `id_server`, `id_access_token`,
//! `medium` and `address`. The address is looked up on the identity server; a bound address is
//! invited as its Matrix user, any other gets an invite stored on the identity server (which
//! mails it) and an `m.room.third_party_invite` event naming the token and its public keys.

use myelin_room::EventTemplate;
use ruma::events::StateEventType;
use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{json, Map, Value};

use super::ThirdPartyInvites;
use crate::rooms::{Append, RoomState};
use crate::threepids::{canonical_email, IdServer};
use crate::{RateAction, ServiceError, ServiceResult};

/// The 3PID form of an invite request.
#[derive(Debug, Clone)]
pub struct ThreepidInvite {
    pub id_server: String,
    pub id_access_token: String,
    pub medium: String,
    pub address: String,
}

impl ThirdPartyInvites {
    /// Invites an address: its Matrix user if the identity server knows one, otherwise a
    /// third-party invite the address's owner can claim once bound.
    pub async fn invite(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        invite: ThreepidInvite,
    ) -> ServiceResult<()> {
        if invite.medium != "email" {
            return Err(ServiceError::ThreepidMediumNotSupported(
                "Only e-mail addresses can be invited".into(),
            ));
        }
        let address = canonical_email(&invite.address)?;
        // Each invite may send a mail: counted as a send.
        self.ctx.check_rate(RateAction::Message, sender.as_str())?;
        let state = self.rooms.room_state(room_id).await?;
        check_may_invite(&state, sender)?;
        let server = self.threepids.id_server(&invite.id_server)?;
        let token = &invite.id_access_token;
        if let Some(mxid) = self
            .threepids
            .lookup(&server, token, "email", &address)
            .await?
        {
            let target = OwnedUserId::try_from(mxid).map_err(|_| {
                ServiceError::Remote("the identity server's lookup is not a user ID".into())
            })?;
            return self.membership.invite(sender, room_id, &target, None).await;
        }
        let stored = self
            .store_invite(&server, token, &state, sender, &address)
            .await?;
        let append = Append {
            sender: sender.to_owned(),
            template: EventTemplate {
                kind: "m.room.third_party_invite".into(),
                state_key: Some(stored.token),
                content: stored.content,
                redacts: None,
            },
            txn: None,
            prebuilt: None,
            ts: None,
        };
        self.rooms.append_event(room_id, append).await?;
        Ok(())
    }

    /// `POST /_matrix/identity/v2/store-invite` with what the identity server may show in its
    /// mail; the answer checked and made into the `m.room.third_party_invite` content.
    async fn store_invite(
        &self,
        server: &IdServer,
        id_access_token: &str,
        state: &RoomState,
        sender: &UserId,
        address: &str,
    ) -> ServiceResult<StoredInvite> {
        let mut body = json!({
            "medium": "email",
            "address": address,
            "room_id": state.room_id,
            "sender": sender,
        });
        let fields = body
            .as_object_mut()
            .ok_or_else(|| ServiceError::Internal("store-invite body".into()))?;
        self.describe_room(fields, state, sender).await?;
        let answer = self
            .threepids
            .is_request(
                server,
                reqwest::Method::POST,
                "/store-invite",
                Some(id_access_token),
                false,
                Some(body),
            )
            .await?
            .ok()?;
        stored_invite(&answer)
    }

    /// The optional `store-invite` fields: the room's name, alias, avatar, join rule and type,
    /// and the inviter's profile.
    async fn describe_room(
        &self,
        fields: &mut Map<String, Value>,
        state: &RoomState,
        sender: &UserId,
    ) -> ServiceResult<()> {
        let from_state = |kind: StateEventType, key: &str| {
            state
                .content(&kind, "")
                .and_then(|c| c.get(key).and_then(Value::as_str).map(str::to_owned))
        };
        let wanted = [
            (
                "room_alias",
                from_state(StateEventType::RoomCanonicalAlias, "alias"),
            ),
            (
                "room_avatar_url",
                from_state(StateEventType::RoomAvatar, "url"),
            ),
            (
                "room_join_rules",
                from_state(StateEventType::RoomJoinRules, "join_rule"),
            ),
            ("room_name", from_state(StateEventType::RoomName, "name")),
            ("room_type", from_state(StateEventType::RoomCreate, "type")),
        ];
        for (field, value) in wanted {
            if let Some(value) = value {
                fields.insert(field.into(), json!(value));
            }
        }
        if let Some(profile) = self.ctx.storage.get_user(sender).await? {
            if let Some(name) = profile.displayname {
                fields.insert("sender_display_name".into(), json!(name));
            }
            if let Some(url) = profile.avatar_url {
                fields.insert("sender_avatar_url".into(), json!(url));
            }
        }
        Ok(())
    }
}

/// The token and the `m.room.third_party_invite` content of a stored invite.
struct StoredInvite {
    token: String,
    content: Value,
}

/// Checks the identity server's `store-invite` answer (a token of the spec's alphabet, at least
/// one public key with its validity URL) and builds the event content: `display_name`, the
/// first key as `public_key` / `key_validity_url` (older clients and servers read those) and
/// every key in `public_keys`.
fn stored_invite(answer: &Value) -> ServiceResult<StoredInvite> {
    let bad = |why: &str| ServiceError::Remote(format!("the identity server's invite {why}"));
    let token = answer
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| is_token(t))
        .ok_or_else(|| bad("has no valid token"))?;
    let display_name = answer
        .get("display_name")
        .and_then(Value::as_str)
        .filter(|d| d.len() <= 256)
        .ok_or_else(|| bad("has no display_name"))?;
    let keys: Vec<Value> = answer
        .get("public_keys")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().take(8).filter_map(public_key).collect())
        .unwrap_or_default();
    let first = keys.first().ok_or_else(|| bad("has no public key"))?;
    Ok(StoredInvite {
        token: token.to_owned(),
        content: json!({
            "display_name": display_name,
            "key_validity_url": first["key_validity_url"],
            "public_key": first["public_key"],
            "public_keys": keys,
        }),
    })
}

/// One `{ public_key, key_validity_url }` of the answer, if both are strings of sane length.
fn public_key(key: &Value) -> Option<Value> {
    let field = |name: &str| {
        key.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 512)
    };
    Some(json!({
        "public_key": field("public_key")?,
        "key_validity_url": field("key_validity_url")?,
    }))
}

/// A token as `store-invite` must answer it: `[0-9a-zA-Z.=_-]{1,255}`.
pub(super) fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 255
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'=' | b'_' | b'-'))
}

/// The inviter must be joined with the power to invite before anything is stored or mailed
/// (the auth rules check the event again).
fn check_may_invite(state: &RoomState, sender: &UserId) -> ServiceResult<()> {
    if !state.is_joined(sender) {
        return Err(ServiceError::Forbidden("You are not in this room".into()));
    }
    if state.user_power(sender) < state.action_level("invite") {
        return Err(ServiceError::Forbidden(
            "You do not have permission to invite users to this room".into(),
        ));
    }
    Ok(())
}
