//! Room summaries (`/room_summary`) and the rooms two users share (`/mutual_rooms`).

use crate::rooms::Membership;
use ruma::events::StateEventType;
use ruma::{OwnedRoomId, UserId};
use serde_json::{json, Value};

use crate::{Rooms, ServiceError, ServiceResult};

impl Rooms {
    /// `GET /room_summary/{roomIdOrAlias}`: for members (of any kind), and for anyone when the
    /// room is public, knockable or world-readable. Other rooms are "not found", so that the
    /// endpoint does not reveal that they exist.
    pub async fn room_summary(
        &self,
        viewer: Option<&UserId>,
        room_id_or_alias: &str,
    ) -> ServiceResult<Value> {
        let not_found = || ServiceError::NotFound("Room not found".into());
        let room_id = self.resolve_room(room_id_or_alias).await?;
        let state = self.room_state(&room_id).await.map_err(|_| not_found())?;
        let membership = viewer.and_then(|v| state.membership(v));
        let join_rule = state.join_rule();
        let world_readable = state.history_visibility() == "world_readable";
        let open =
            matches!(join_rule.as_str(), "public" | "knock" | "knock_restricted") || world_readable;
        let member = matches!(
            membership,
            Some(Membership::Join | Membership::Invite | Membership::Knock)
        );
        if !open && !member {
            return Err(not_found());
        }
        let text = |kind: &str, field: &str| {
            state
                .content(&kind.into(), "")
                .and_then(|c| c.get(field).and_then(Value::as_str).map(str::to_owned))
        };
        let create = state
            .content(&StateEventType::RoomCreate, "")
            .unwrap_or_else(|| json!({}));
        let mut summary = json!({
            "room_id": room_id,
            "num_joined_members": state.joined_members().len(),
            "join_rule": join_rule,
            "world_readable": world_readable,
            "guest_can_join": text("m.room.guest_access", "guest_access").as_deref() == Some("can_join"),
            "room_version": create.get("room_version").and_then(Value::as_str).unwrap_or("1"),
        });
        let optional = [
            ("name", text("m.room.name", "name")),
            ("topic", text("m.room.topic", "topic")),
            ("avatar_url", text("m.room.avatar", "url")),
            ("canonical_alias", text("m.room.canonical_alias", "alias")),
            ("encryption", text("m.room.encryption", "algorithm")),
            (
                "room_type",
                create
                    .get("type")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ),
            ("membership", membership.map(|m| m.as_str().to_owned())),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                summary[field] = json!(value);
            }
        }
        Ok(summary)
    }

    /// `GET /mutual_rooms?user_id=`: the rooms both users have joined (all in one batch).
    pub async fn mutual_rooms(
        &self,
        user_id: &UserId,
        other: &UserId,
    ) -> ServiceResult<Vec<OwnedRoomId>> {
        if user_id == other {
            return Err(ServiceError::InvalidParam(
                "Ask about another user, not yourself".into(),
            ));
        }
        let theirs: std::collections::HashSet<_> =
            self.joined_rooms(other).await?.into_iter().collect();
        let mut shared: Vec<_> = self
            .joined_rooms(user_id)
            .await?
            .into_iter()
            .filter(|r| theirs.contains(r))
            .collect();
        shared.sort();
        Ok(shared)
    }
}
