//! Device-list tracking: who must hear that a user's devices changed, locally (`/sync`
//! `device_lists.changed`, `/keys/changes`) and over federation (`m.device_list_update`).

use std::collections::{BTreeSet, HashSet};

use myelin_core::StreamPos;
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use serde_json::json;

use crate::{ServiceResult, Services};

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

    /// Users sharing a room with `user_id` whose device lists changed in `(since, up_to]`:
    /// `/sync`'s `device_lists.changed` and `GET /keys/changes`.
    pub async fn key_changes(
        &self,
        user_id: &UserId,
        since: StreamPos,
        up_to: StreamPos,
    ) -> ServiceResult<Vec<OwnedUserId>> {
        let changed = self.storage.device_list_changes(since, up_to).await?;
        if changed.is_empty() {
            return Ok(changed);
        }
        let sharing = self.users_sharing_rooms(user_id).await?;
        Ok(changed
            .into_iter()
            .filter(|u| sharing.contains(u))
            .collect())
    }
}
