//! `POST /rooms/{roomId}/upgrade`: replace a room with a new one of another room version.
//!
//! The new room gets the old one's transferable state and power levels; the old room gets an
//! `m.room.tombstone` pointing at it and is restricted so that only moderators can talk there;
//! local aliases move to the new room.

use crate::rooms::Membership;
use myelin_room::EventTemplate;
use ruma::events::StateEventType;
use ruma::{OwnedRoomId, RoomId, RoomVersionId, UserId};
use serde_json::{json, Map, Value};

use super::create::{CreateRoomRequest, InitialStateEvent};
use crate::rooms::Append;
use crate::{Memberships, ServiceError, ServiceResult};

/// State copied as-is to the replacement room.
const TRANSFERABLE_STATE: &[&str] = &[
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
];

impl Memberships {
    /// Upgrades `room_id` to `new_version`; returns the replacement room's ID.
    pub async fn upgrade_room(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        new_version: &str,
    ) -> ServiceResult<OwnedRoomId> {
        let version = RoomVersionId::try_from(new_version).map_err(|_| {
            ServiceError::UnsupportedRoomVersion(format!("Unsupported room version {new_version}"))
        })?;
        let rules = myelin_room::rules_for(&version)?;
        let old = self.rooms.room_state(room_id).await?;
        if old.membership(user_id) != Some(Membership::Join) {
            return Err(ServiceError::Forbidden("You are not in this room".into()));
        }
        if old.user_power(user_id) < old.state_event_level("m.room.tombstone") {
            return Err(ServiceError::Forbidden(
                "You may not upgrade this room".into(),
            ));
        }

        let old_create = old
            .content(&StateEventType::RoomCreate, "")
            .unwrap_or_else(|| json!({}));
        let mut creation_content = Map::new();
        for field in ["m.federate", "type"] {
            if let Some(v) = old_create.get(field) {
                creation_content.insert(field.into(), v.clone());
            }
        }
        creation_content.insert("predecessor".into(), json!({ "room_id": room_id }));

        let mut power = old
            .content(&StateEventType::RoomPowerLevels, "")
            .unwrap_or_else(|| json!({}));
        let users = power.get_mut("users").and_then(Value::as_object_mut);
        let mut users = users.map(std::mem::take).unwrap_or_default();
        if rules.authorization.explicitly_privilege_room_creators {
            // The upgrader creates the new room and so outranks everyone; creators may not be listed.
            users.remove(user_id.as_str());
        } else {
            let old_level = users
                .get(user_id.as_str())
                .and_then(Value::as_i64)
                .unwrap_or(0);
            users.insert(user_id.to_string(), json!(old_level.max(100)));
        }
        power["users"] = Value::Object(users);

        let initial_state = TRANSFERABLE_STATE
            .iter()
            .filter_map(|kind| {
                old.content(&(*kind).into(), "")
                    .map(|content| InitialStateEvent {
                        kind: (*kind).into(),
                        state_key: String::new(),
                        content,
                    })
            })
            .collect();
        let preset = if old.join_rule() == "public" {
            "public_chat"
        } else {
            "private_chat"
        };
        let request = CreateRoomRequest {
            room_version: Some(version.to_string()),
            creation_content: Some(creation_content),
            initial_state,
            preset: Some(preset.into()),
            power_level_content_override: power.as_object().cloned(),
            ..CreateRoomRequest::default()
        };
        let new_room = self.create_room(user_id, request).await?;

        let tombstone =
            json!({ "body": "This room has been replaced", "replacement_room": new_room });
        self.append_state(user_id, room_id, "m.room.tombstone", tombstone)
            .await?;
        self.restrict_old_room(user_id, room_id).await;
        self.move_aliases(user_id, room_id, &new_room).await?;
        Ok(new_room)
    }

    async fn append_state(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        kind: &str,
        content: Value,
    ) -> ServiceResult<()> {
        let template = EventTemplate {
            kind: kind.into(),
            state_key: Some(String::new()),
            content,
            redacts: None,
        };
        self.rooms
            .append_event(
                room_id,
                Append {
                    sender: sender.to_owned(),
                    template,
                    txn: None,
                    prebuilt: None,
                    ts: None,
                },
            )
            .await?;
        Ok(())
    }

    /// Only moderators may talk or invite in the old room. Best effort: the upgrade has happened.
    async fn restrict_old_room(&self, sender: &UserId, room_id: &RoomId) {
        let Ok(state) = self.rooms.room_state(room_id).await else {
            return;
        };
        let mut power = state
            .content(&StateEventType::RoomPowerLevels, "")
            .unwrap_or_else(|| json!({}));
        let users_default = power
            .get("users_default")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let restricted = json!(50.max(users_default + 1));
        power["events_default"] = restricted.clone();
        power["invite"] = restricted;
        if let Err(e) = self
            .append_state(sender, room_id, "m.room.power_levels", power)
            .await
        {
            tracing::warn!(%room_id, error = %e, "could not restrict the upgraded room");
        }
    }

    /// Local aliases, and the canonical alias, now point at the new room.
    async fn move_aliases(&self, sender: &UserId, old: &RoomId, new: &RoomId) -> ServiceResult<()> {
        for alias in self.ctx.storage.aliases_of_room(old).await? {
            let Ok(alias) = ruma::OwnedRoomAliasId::try_from(alias) else {
                continue;
            };
            self.ctx.storage.delete_alias(&alias).await?;
            self.ctx.storage.create_alias(&alias, new, sender).await?;
        }
        let canonical = self
            .rooms
            .room_state(old)
            .await?
            .content(&StateEventType::RoomCanonicalAlias, "");
        if let Some(canonical) = canonical.filter(|c| c.as_object().is_some_and(|o| !o.is_empty()))
        {
            if let Err(e) = self
                .append_state(sender, new, "m.room.canonical_alias", canonical)
                .await
            {
                tracing::warn!(room_id = %new, error = %e, "could not move the canonical alias");
            }
            if let Err(e) = self
                .append_state(sender, old, "m.room.canonical_alias", json!({}))
                .await
            {
                tracing::warn!(room_id = %old, error = %e, "could not clear the old canonical alias");
            }
        }
        Ok(())
    }
}
