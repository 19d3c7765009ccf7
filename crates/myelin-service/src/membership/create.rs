//! `POST /createRoom`: the spec's event sequence, persisted in one transaction.

use myelin_room::EventTemplate;
use myelin_storage::NewRoom;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomVersionId, UserId};
use serde_json::{json, Map, Value};

use crate::rooms::Append;
use crate::{accounts::token::random_alnum, Memberships, ServiceError, ServiceResult};

#[derive(Debug, Clone, Default)]
pub struct InitialStateEvent {
    pub kind: String,
    pub state_key: String,
    pub content: Value,
}

#[derive(Debug, Clone, Default)]
pub struct CreateRoomRequest {
    pub visibility: Option<String>,
    pub room_alias_name: Option<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub room_version: Option<String>,
    pub creation_content: Option<Map<String, Value>>,
    pub initial_state: Vec<InitialStateEvent>,
    pub preset: Option<String>,
    pub is_direct: bool,
    pub power_level_content_override: Option<Map<String, Value>>,
}

impl Memberships {
    pub async fn create_room(
        &self,
        creator: &UserId,
        req: CreateRoomRequest,
    ) -> ServiceResult<OwnedRoomId> {
        let version = match &req.room_version {
            Some(v) => RoomVersionId::try_from(v.as_str()).map_err(|_| {
                ServiceError::UnsupportedRoomVersion(format!("Unsupported room version {v}"))
            })?,
            None => self.ctx.config.default_room_version.clone(),
        };
        let rules = myelin_room::rules_for(&version)?;
        let alias = match &req.room_alias_name {
            Some(local) => Some(self.check_new_alias(local).await?),
            None => None,
        };
        let preset = req.preset.clone().unwrap_or_else(|| {
            if req.visibility.as_deref() == Some("public") {
                "public_chat".into()
            } else {
                "private_chat".into()
            }
        });
        if !matches!(
            preset.as_str(),
            "public_chat" | "private_chat" | "trusted_private_chat"
        ) {
            return Err(ServiceError::BadJson(format!("Unknown preset {preset}")));
        }

        let sender = creator.to_owned();
        let state = |kind: &str, key: &str, content: Value| Append {
            sender: sender.clone(),
            template: EventTemplate {
                kind: kind.into(),
                state_key: Some(key.into()),
                content,
                redacts: None,
            },
            txn: None,
            prebuilt: None,
        };

        let mut create_content = req.creation_content.clone().unwrap_or_default();
        create_content.insert("room_version".into(), json!(version.as_str()));
        if !rules.authorization.use_room_create_sender {
            create_content.insert("creator".into(), json!(creator));
        }
        let mut appends = vec![state("m.room.create", "", Value::Object(create_content))];

        let profile = self.ctx.storage.get_user(creator).await?;
        let mut member = json!({ "membership": "join" });
        if let Some(p) = &profile {
            if let Some(name) = &p.displayname {
                member["displayname"] = json!(name);
            }
            if let Some(url) = &p.avatar_url {
                member["avatar_url"] = json!(url);
            }
        }
        appends.push(state("m.room.member", creator.as_str(), member));

        let mut users = Map::new();
        if !rules.authorization.explicitly_privilege_room_creators {
            users.insert(creator.to_string(), json!(100));
        }
        if preset == "trusted_private_chat" {
            for invitee in &req.invite {
                users.insert(invitee.to_string(), json!(100));
            }
        }
        let mut power = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
                "m.room.server_acl": 100, "m.room.encryption": 100, "m.room.topic": 50,
            },
            "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
            "invite": if preset == "public_chat" { 50 } else { 0 },
            "notifications": { "room": 50 },
        });
        for (k, v) in req.power_level_content_override.clone().unwrap_or_default() {
            power[k] = v;
        }
        appends.push(state("m.room.power_levels", "", power));

        if let Some(alias) = &alias {
            appends.push(state(
                "m.room.canonical_alias",
                "",
                json!({ "alias": alias }),
            ));
        }
        let (join_rule, guest) = if preset == "public_chat" {
            ("public", "forbidden")
        } else {
            ("invite", "can_join")
        };
        appends.push(state(
            "m.room.join_rules",
            "",
            json!({ "join_rule": join_rule }),
        ));
        appends.push(state(
            "m.room.history_visibility",
            "",
            json!({ "history_visibility": "shared" }),
        ));
        appends.push(state(
            "m.room.guest_access",
            "",
            json!({ "guest_access": guest }),
        ));
        for ev in &req.initial_state {
            if ev.kind == "m.room.create" || ev.kind == "m.room.member" {
                return Err(ServiceError::BadJson(format!(
                    "initial_state may not contain {}",
                    ev.kind
                )));
            }
            appends.push(state(&ev.kind, &ev.state_key, ev.content.clone()));
        }
        if let Some(name) = &req.name {
            appends.push(state("m.room.name", "", json!({ "name": name })));
        }
        if let Some(topic) = &req.topic {
            appends.push(state(
                "m.room.topic",
                "",
                json!({ "topic": topic, "m.topic": [{ "body": topic, "mimetype": "text/plain" }] }),
            ));
        }
        let invite_content = || {
            let mut content = json!({ "membership": "invite" });
            if req.is_direct {
                content["is_direct"] = json!(true);
            }
            content
        };
        // Remote invitees are invited once the room exists: their server must co-sign.
        let (local_invites, remote_invites): (Vec<_>, Vec<_>) = req
            .invite
            .iter()
            .partition(|u| u.server_name() == self.ctx.config.server_name);
        for invitee in local_invites {
            let mut content = invite_content();
            if let Some(p) = self.ctx.storage.get_user(invitee).await? {
                if let Some(name) = p.displayname {
                    content["displayname"] = json!(name);
                }
            }
            appends.push(state("m.room.member", invitee.as_str(), content));
        }

        let room_id = OwnedRoomId::try_from(format!(
            "!{}:{}",
            random_alnum(18),
            self.ctx.config.server_name
        ))
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let new_room = NewRoom {
            room_id: room_id.clone(),
            version,
            creator: creator.to_owned(),
            created_ms: self.ctx.now_ms(),
        };
        let room_state = self
            .rooms
            .append_new_room(room_id, new_room, appends)
            .await?;
        let room_id = room_state.room_id.clone();

        if let Some(alias) = alias {
            if !self
                .ctx
                .storage
                .create_alias(&alias, &room_id, creator)
                .await?
            {
                tracing::warn!(%alias, "alias taken while the room was being created");
            }
        }
        if req.visibility.as_deref() == Some("public") {
            self.ctx.storage.set_room_published(&room_id, true).await?;
        }
        for invitee in remote_invites {
            // The room exists either way; an unreachable invitee is told later by hand.
            if let Err(e) = self
                .handshakes
                .invite_remote(creator, &room_id, invitee, invite_content())
                .await
            {
                tracing::warn!(%room_id, %invitee, error = %e, "remote invite at room creation failed");
            }
        }
        Ok(room_id)
    }

    /// Validates a local alias name and checks that it is free.
    async fn check_new_alias(&self, local: &str) -> ServiceResult<OwnedRoomAliasId> {
        if local.contains(':') || local.contains('#') || local.chars().any(char::is_whitespace) {
            return Err(ServiceError::InvalidParam(
                "Invalid characters in room alias".into(),
            ));
        }
        let alias = OwnedRoomAliasId::try_from(format!("#{local}:{}", self.ctx.config.server_name))
            .map_err(|e| ServiceError::InvalidParam(e.to_string()))?;
        if self.ctx.storage.resolve_alias(&alias).await?.is_some() {
            return Err(ServiceError::RoomInUse("Room alias already taken".into()));
        }
        Ok(alias)
    }
}
