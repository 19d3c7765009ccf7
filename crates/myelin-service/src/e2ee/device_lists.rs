//! Device-list tracking: who must hear that a user's devices changed, locally (`/sync`
//! `device_lists.changed`, `/keys/changes`) and over federation (`m.device_list_update`).

use crate::federation::EduKind;
use crate::rooms::Membership;
use std::collections::{BTreeSet, HashSet};

use myelin_core::StreamPos;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use serde_json::json;

use crate::{E2ee, ServiceError, ServiceResult};

/// The `device_lists` of a `/sync` or `/keys/changes` answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeviceListChanges {
    pub changed: Vec<OwnedUserId>,
    pub left: Vec<OwnedUserId>,
}

impl E2ee {
    /// After a committed change to a local user's devices or keys: wakes the `/sync` of local
    /// users who share a room with them and tells the other servers in those rooms. Each
    /// `m.device_list_update` of a user names the one before it in `prev_id` (the user's chain,
    /// moved on here even when no other server is told, so a server that was not told sees the
    /// gap), and `/user/devices` answers the latest one's ID: a server that missed an update
    /// fetches the list again instead of patching a stale one.
    pub(crate) async fn announce_device_change(
        &self,
        user_id: &UserId,
        device_id: &OwnedDeviceId,
        deleted: bool,
        pos: StreamPos,
    ) -> ServiceResult<()> {
        if !self.ctx.appservices.is_empty() {
            let sharers: Vec<_> = self
                .rooms
                .users_sharing_rooms(user_id)
                .await?
                .into_iter()
                .collect();
            self.ctx.appservices.note_device_change(user_id, &sharers);
        }
        let (previous, stream_id) = self
            .ctx
            .storage
            .next_device_list_stream_id(user_id, pos.0)
            .await?;
        let servers = self.rooms.notify_sharers(user_id).await?;
        if servers.is_empty() {
            return Ok(());
        }
        let mut content = json!({
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": stream_id,
            "prev_id": previous.into_iter().collect::<Vec<i64>>(),
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
        self.outbox
            .queue_edu_for(servers, EduKind::DeviceListUpdate, content)
            .await
    }

    /// `device_lists` of `/sync` and `GET /keys/changes` for `(since, up_to]`: users sharing a
    /// room whose devices changed or who came to share one (the user too, when their own devices
    /// or keys changed, as Synapse reports), and users who shared a room then but share none now
    /// (the client stops tracking their devices).
    pub async fn device_list_changes(
        &self,
        user_id: &UserId,
        since: StreamPos,
        up_to: StreamPos,
    ) -> ServiceResult<DeviceListChanges> {
        let keys_changed = self.ctx.storage.device_list_changes(since, up_to).await?;
        let (came, went) = self.membership_moves(user_id, since, up_to).await?;
        // Most syncs see none of either: the users sharing a room (every member of every room
        // of the user) are gathered only when there is something to check against them.
        if keys_changed.is_empty() && came.is_empty() && went.is_empty() {
            return Ok(DeviceListChanges::default());
        }
        let sharing = self.rooms.users_sharing_rooms(user_id).await?;
        let mut changed: BTreeSet<OwnedUserId> = keys_changed
            .into_iter()
            .filter(|u| sharing.contains(u))
            .collect();
        // The user's own devices or keys changing is news to their other devices (a new session
        // to verify); their own joins and leaves are not.
        let own_keys_changed = changed.contains(user_id);
        changed.extend(came.into_iter().filter(|u| sharing.contains(u)));
        let left: BTreeSet<OwnedUserId> =
            went.into_iter().filter(|u| !sharing.contains(u)).collect();
        if !own_keys_changed {
            changed.remove(user_id);
        }
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
        for m in self.ctx.storage.memberships_of_user(user_id).await? {
            let joined = m.membership == "join";
            let own_move = in_range(m.stream_pos);
            let left_now = own_move && matches!(m.membership.as_str(), "leave" | "ban");
            // A room left before `since` (or only invited to, knocked on) changes nothing here.
            if !joined && !left_now {
                continue;
            }
            // Rooms only seen from outside (a rejected invite, a withdrawn knock) have no state
            // here, and no members shared.
            let state = match self.rooms.room_state(&m.room_id).await {
                Ok(state) => state,
                Err(ServiceError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            // No event since `since`: no member entry of the room can be in range.
            if !own_move && state.last_pos <= since {
                continue;
            }
            if own_move {
                let members = state.joined_members();
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
                match entry.membership() {
                    Some(Membership::Join) => came.insert(member.to_owned()),
                    Some(Membership::Leave | Membership::Ban) => went.insert(member.to_owned()),
                    _ => false,
                };
            }
        }
        came.remove(user_id);
        went.remove(user_id);
        Ok((came, went))
    }
}
