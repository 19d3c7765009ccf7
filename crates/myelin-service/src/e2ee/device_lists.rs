//! Device-list tracking: who must hear that a user's devices changed, locally (`/sync`
//! `device_lists.changed`, `/keys/changes`) and over federation (`m.device_list_update`).

use std::collections::{BTreeSet, HashSet};

use myelin_core::StreamPos;
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use serde_json::json;

use crate::{ServiceError, ServiceResult, Services};

/// The `device_lists` of a `/sync` or `/keys/changes` answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeviceListChanges {
    pub changed: Vec<OwnedUserId>,
    pub left: Vec<OwnedUserId>,
}

impl Services {
    /// Everyone who shares a joined room with `user_id`, the user included.
    pub(crate) async fn users_sharing_rooms(
        &self,
        user_id: &UserId,
    ) -> ServiceResult<HashSet<OwnedUserId>> {
        let mut users = HashSet::from([user_id.to_owned()]);
        for room_id in self.joined_rooms(user_id).await? {
            users.extend(self.room_state(&room_id).await?.members_with(&["join"]));
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
        let own = self.server_name();
        self.notifier.notify(
            sharing
                .iter()
                .filter(|u| u.server_name() == own)
                .map(|u| &**u),
        );
        if !self.federation.config.enabled {
            return Ok(BTreeSet::new());
        }
        Ok(sharing
            .iter()
            .map(|u| u.server_name().to_owned())
            .filter(|s| s != own && !self.is_blocked_server(s.as_str()))
            .collect())
    }

    /// After a committed change to a local user's devices or keys: wakes the `/sync` of local
    /// users who share a room with them and tells the other servers in those rooms.
    pub(crate) async fn announce_device_change(
        &self,
        user_id: &UserId,
        device_id: &OwnedDeviceId,
        deleted: bool,
        pos: StreamPos,
    ) -> ServiceResult<()> {
        let servers = self.notify_sharers(user_id).await?;
        if servers.is_empty() {
            return Ok(());
        }
        let mut content = json!({
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": pos.0,
            // No previous IDs: the receiver refetches the whole list (`/user/devices`) instead of
            // patching a cache it may not have.
            "prev_id": [],
            "deleted": deleted,
        });
        if !deleted {
            let keys = self.local_device_keys(&[user_id.to_owned()]).await?;
            if let Some(device) = keys.get(user_id).and_then(|d| d.get(device_id)) {
                content["keys"] = device.clone();
                if let Some(name) = device["unsigned"]["device_display_name"].as_str() {
                    content["device_display_name"] = json!(name);
                }
            }
        }
        self.queue_edu_for(servers, "m.device_list_update", content)
            .await
    }

    /// Queues one EDU for each server and wakes their senders.
    pub(crate) async fn queue_edu_for(
        &self,
        servers: impl IntoIterator<Item = OwnedServerName>,
        edu_type: &str,
        content: serde_json::Value,
    ) -> ServiceResult<()> {
        let servers: Vec<String> = servers.into_iter().map(|s| s.to_string()).collect();
        if servers.is_empty() {
            return Ok(());
        }
        let edu = json!({ "edu_type": edu_type, "content": content }).to_string();
        self.storage.queue_edu(&servers, edu).await?;
        self.wake_senders(&servers);
        Ok(())
    }

    /// `device_lists` of `/sync` and `GET /keys/changes` for `(since, up_to]`: users sharing a
    /// room whose devices changed or who came to share one, and users who shared a room then but
    /// share none now (the client stops tracking their devices).
    pub async fn device_list_changes(
        &self,
        user_id: &UserId,
        since: StreamPos,
        up_to: StreamPos,
    ) -> ServiceResult<DeviceListChanges> {
        let sharing = self.users_sharing_rooms(user_id).await?;
        let mut changed: BTreeSet<OwnedUserId> = self
            .storage
            .device_list_changes(since, up_to)
            .await?
            .into_iter()
            .filter(|u| sharing.contains(u))
            .collect();
        let (came, went) = self.membership_moves(user_id, since, up_to).await?;
        changed.extend(came.into_iter().filter(|u| sharing.contains(u)));
        let left: BTreeSet<OwnedUserId> =
            went.into_iter().filter(|u| !sharing.contains(u)).collect();
        changed.remove(user_id);
        Ok(DeviceListChanges {
            changed: changed.into_iter().collect(),
            left: left.into_iter().collect(),
        })
    }

    /// Users whose sharing of a room with `user_id` may have begun (`came`) or ended (`went`) in
    /// `(since, up_to]`: members who joined or left one of the user's rooms then, and every member
    /// of a room the user joined or left then. Read from the rooms' current state, whose entries
    /// carry their stream positions.
    async fn membership_moves(
        &self,
        user_id: &UserId,
        since: StreamPos,
        up_to: StreamPos,
    ) -> ServiceResult<(HashSet<OwnedUserId>, HashSet<OwnedUserId>)> {
        let in_range = |pos: StreamPos| pos > since && pos <= up_to;
        let (mut came, mut went) = (HashSet::new(), HashSet::new());
        for m in self.storage.memberships_of_user(user_id).await? {
            let joined = m.membership == "join";
            let own_move = in_range(m.stream_pos);
            let left_now = own_move && matches!(m.membership.as_str(), "leave" | "ban");
            // A room left before `since` (or only invited to, knocked on) changes nothing here.
            if !joined && !left_now {
                continue;
            }
            // Rooms only seen from outside (a rejected invite, a withdrawn knock) have no state
            // here, and no members shared.
            let state = match self.room_state(&m.room_id).await {
                Ok(state) => state,
                Err(ServiceError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if own_move {
                let members = state.members_with(&["join"]);
                if joined {
                    came.extend(members)
                } else {
                    went.extend(members)
                }
            }
            for (member, entry) in state.member_entries() {
                if !in_range(entry.pos) {
                    continue;
                }
                match entry.pdu.content_value()["membership"].as_str() {
                    Some("join") => came.insert(member),
                    Some("leave" | "ban") => went.insert(member),
                    _ => false,
                };
            }
        }
        came.remove(user_id);
        went.remove(user_id);
        Ok((came, went))
    }
}
