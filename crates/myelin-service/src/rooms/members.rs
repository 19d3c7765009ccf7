//! Who is in a room, as questions other subsystems ask: a user's joined rooms, the users and
//! servers sharing rooms with someone, whether a server has a member, its ACL, member content;
//! the cached device lists of remote users dropped once they share no room with us.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use myelin_core::{Pdu, StreamPos};
use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, ServerName, UserId};
use serde_json::{json, Value};

use super::RoomState;
use crate::{Rooms, ServiceError, ServiceResult};

impl Rooms {
    /// The room's current state, unless the room is unknown (`NotFound`) or its server ACL
    /// denies `origin` (`Forbidden`).
    pub(crate) async fn check_server_acl(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
    ) -> ServiceResult<std::sync::Arc<crate::rooms::RoomState>> {
        let state = self.known_room_state(room_id).await?;
        acl_allows(&state, origin)?;
        Ok(state)
    }

    /// The room's current state, or `NotFound` for a room this server does not have. For room
    /// IDs from other servers: it never keeps a cache slot for a room that does not exist.
    pub(crate) async fn known_room_state(
        &self,
        room_id: &RoomId,
    ) -> ServiceResult<std::sync::Arc<crate::rooms::RoomState>> {
        if myelin_storage::RoomStore::room_info(self.ctx.storage.as_ref(), room_id)
            .await?
            .is_none()
        {
            return Err(ServiceError::NotFound(format!(
                "This server is not in {room_id}"
            )));
        }
        self.room_state(room_id).await
    }

    /// Whether a user of this server is joined to the room.
    pub(crate) async fn server_has_joined_member(&self, room_id: &RoomId) -> ServiceResult<bool> {
        let state = self.room_state(room_id).await?;
        Ok(state
            .joined_members()
            .iter()
            .any(|u| u.server_name() == self.ctx.server_name()))
    }

    /// The member content for a user joining: membership plus their profile.
    pub(crate) async fn member_content(
        &self,
        user_id: &UserId,
        membership: &str,
    ) -> ServiceResult<Value> {
        let mut content = json!({ "membership": membership });
        if let Some(p) = self.ctx.storage.get_user(user_id).await? {
            if let Some(name) = p.displayname {
                content["displayname"] = json!(name);
            }
            if let Some(url) = p.avatar_url {
                content["avatar_url"] = json!(url);
            }
        }
        Ok(content)
    }

    /// `GET /joined_rooms`.
    pub async fn joined_rooms(&self, user_id: &UserId) -> ServiceResult<Vec<OwnedRoomId>> {
        let memberships = self.ctx.storage.memberships_of_user(user_id).await?;
        Ok(memberships
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id)
            .collect())
    }

    /// Everyone who shares a joined room with `user_id`, the user included.
    pub(crate) async fn users_sharing_rooms(
        &self,
        user_id: &UserId,
    ) -> ServiceResult<HashSet<OwnedUserId>> {
        let mut users = HashSet::from([user_id.to_owned()]);
        for room_id in self.joined_rooms(user_id).await? {
            users.extend(self.room_state(&room_id).await?.joined_members());
        }
        Ok(users)
    }

    /// Wakes the `/sync` of local users who share a room with `user_id`; returns the other
    /// servers in those rooms (none when federation is off).
    pub(crate) async fn notify_sharers(
        &self,
        user_id: &UserId,
    ) -> ServiceResult<BTreeSet<OwnedServerName>> {
        let sharing = self.users_sharing_rooms(user_id).await?;
        let own = self.ctx.server_name();
        self.ctx.notifier.notify(
            sharing
                .iter()
                .filter(|u| u.server_name() == own)
                .map(|u| &**u),
        );
        if !self.ctx.federation.config.enabled {
            return Ok(BTreeSet::new());
        }
        Ok(sharing
            .iter()
            .map(|u| u.server_name().to_owned())
            .filter(|s| s != own && !self.ctx.is_blocked_server(s.as_str()))
            .collect())
    }
}

/// `Forbidden` when the room's server ACL denies `origin`.
pub(crate) fn acl_allows(
    state: &crate::rooms::RoomState,
    origin: &ServerName,
) -> ServiceResult<()> {
    if crate::federation::acl::room_allows(state, origin) {
        return Ok(());
    }
    tracing::info!(%origin, room_id = %state.room_id, "refused by the room's server ACL");
    Err(ServiceError::Forbidden(format!(
        "{origin} is denied by the room's server ACL"
    )))
}

/// The remote users with whom sharing a room may have ended with `events`, now in `state`: a
/// remote member who left or was banned, and every remote member when a local one left.
fn sharing_may_end(
    state: &RoomState,
    events: &[(Arc<Pdu>, StreamPos)],
    own: &ServerName,
) -> Vec<OwnedUserId> {
    let mut users = BTreeSet::new();
    for (pdu, _) in events {
        let Some(target) = pdu.state_key.as_deref() else {
            continue;
        };
        if pdu.kind.to_string() != "m.room.member" {
            continue;
        }
        let membership = pdu.content_value();
        let membership = membership.get("membership").and_then(Value::as_str);
        if !matches!(membership, Some("leave" | "ban")) {
            continue;
        }
        let Ok(target) = OwnedUserId::try_from(target) else {
            continue;
        };
        if target.server_name() != own {
            users.insert(target);
        } else {
            let remote = state.joined_members().into_iter();
            users.extend(remote.filter(|u| u.server_name() != own));
        }
    }
    users.into_iter().collect()
}

impl Rooms {
    /// After membership `events`: drops the cached device lists (`e2ee/remote_cache.rs`) of the
    /// remote users who no longer share a room with any of our users (their server stops
    /// telling us about changes; a later key query fetches the list afresh). In a task of its
    /// own: a leave does not wait for it.
    pub(crate) fn forget_unshared_device_lists(
        &self,
        state: &RoomState,
        events: &[(Arc<Pdu>, StreamPos)],
    ) {
        let users = sharing_may_end(state, events, self.ctx.server_name());
        if users.is_empty() {
            return;
        }
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let storage = &ctx.storage;
            match storage
                .forget_unshared_remote_device_lists(&users, ctx.server_name())
                .await
            {
                Ok(gone) if !gone.is_empty() => {
                    tracing::debug!(users = gone.len(), "device lists no longer shared dropped");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "dropping unshared device lists failed"),
            }
        });
    }
}
