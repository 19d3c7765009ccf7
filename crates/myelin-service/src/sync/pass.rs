//! One pass of `/sync`: reads everything that changed between the token and now, section by
//! section, and assembles the response body.

use std::{collections::HashSet, sync::Arc};

use myelin_core::StreamPos;
use myelin_storage::MembershipRecord;
use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::{json, Map, Value};

use super::{account::AccountData, SyncToken, Syncer};
use crate::{accounts::Authed, e2ee::DeviceListChanges, filter::Filter, ServiceResult};

/// What every step of one pass reads: who syncs, from which token to which, and how filtered.
pub(super) struct Pass<'a> {
    pub authed: &'a Authed,
    pub since: Option<SyncToken>,
    pub next: SyncToken,
    pub filter: &'a Filter,
    pub full_state: bool,
    /// The users whose messages and invites this user ignores.
    pub ignored: Arc<HashSet<OwnedUserId>>,
}

impl Pass<'_> {
    pub fn since_pos(&self) -> Option<StreamPos> {
        self.since.map(|s| s.pos)
    }
}

/// The sections one pass found, before they become the response body.
struct Sections {
    next: SyncToken,
    join: Map<String, Value>,
    invite: Map<String, Value>,
    knock: Map<String, Value>,
    leave: Map<String, Value>,
    presence: Vec<Value>,
    account_data: Vec<Value>,
    to_device: Vec<Value>,
    device_lists: DeviceListChanges,
}

impl Sections {
    /// Nothing changed: a long-polling sync keeps waiting.
    fn is_empty(&self) -> bool {
        self.join.is_empty()
            && self.invite.is_empty()
            && self.knock.is_empty()
            && self.leave.is_empty()
            && self.presence.is_empty()
            && self.account_data.is_empty()
            && self.to_device.is_empty()
            && self.device_lists.changed.is_empty()
            && self.device_lists.left.is_empty()
    }
}

impl Syncer {
    /// One pass over everything that changed since `since`; `true` if nothing did.
    pub(super) async fn build_sync(
        &self,
        authed: &Authed,
        since: Option<SyncToken>,
        filter: &Filter,
        full_state: bool,
    ) -> ServiceResult<(Value, bool)> {
        let user_id = &authed.user_id;
        let now = self.ctx.now_ms();
        let pos = self.ctx.storage.current_stream_pos().await?;
        let (to_device, to_device_pos) = self
            .e2ee
            .to_device_for_sync(
                authed,
                since.map(|s| s.to_device),
                pos,
                crate::e2ee::to_device::TO_DEVICE_PER_SYNC,
            )
            .await?;
        let next = SyncToken {
            pos,
            typing: self.ephemeral.typing.serial(now),
            to_device: to_device_pos,
        };
        let pass = Pass {
            authed,
            since,
            next,
            filter,
            full_state,
            ignored: self.users.ignored_users(user_id).await?,
        };
        let device_lists = match pass.since_pos() {
            Some(since) => self.e2ee.device_list_changes(user_id, since, pos).await?,
            None => Default::default(),
        };
        let memberships = self.visible_memberships(&pass).await?;

        let rooms_with_events = self.rooms_with_events(&pass).await?;
        let receipts = self.receipts_by_room(&pass, &memberships).await?;
        let AccountData {
            global: account_data,
            rooms: room_data,
        } = self.account_data(&pass).await?;
        let (join, members) = self
            .joined_rooms(&pass, &memberships, rooms_with_events, receipts, room_data)
            .await?;
        let (invite, knock) = self.invited_rooms(&pass, &memberships).await?;
        let leave = self.left_rooms(&pass, &memberships).await?;
        let presence = self.presence(&pass, members, now).await?;

        let sections = Sections {
            next,
            join,
            invite,
            knock,
            leave,
            presence,
            account_data,
            to_device,
            device_lists,
        };
        let empty = sections.is_empty();
        Ok((self.response(authed, sections).await?, empty))
    }

    /// The user's memberships in the rooms the filter lets through.
    async fn visible_memberships(&self, pass: &Pass<'_>) -> ServiceResult<Vec<MembershipRecord>> {
        let memberships = self
            .ctx
            .storage
            .memberships_of_user(&pass.authed.user_id)
            .await?;
        Ok(memberships
            .into_iter()
            .filter(|m| pass.filter.room.allows_room(m.room_id.as_str()))
            .collect())
    }

    /// Incremental syncs read timelines only of rooms that have new events (one query, not one
    /// per joined room); `None` when every joined room is read.
    async fn rooms_with_events(
        &self,
        pass: &Pass<'_>,
    ) -> ServiceResult<Option<HashSet<OwnedRoomId>>> {
        match pass.since_pos() {
            // `next` was read first, so every event up to it is visible here.
            Some(s) if !pass.full_state => Ok(Some(
                self.ctx
                    .storage
                    .rooms_with_events_between(s, pass.next.pos)
                    .await?
                    .into_iter()
                    .collect(),
            )),
            _ => Ok(None),
        }
    }

    /// The response body: the sections plus the device's one-time and fallback key counts.
    async fn response(&self, authed: &Authed, s: Sections) -> ServiceResult<Value> {
        let device = authed.device_id.as_str();
        Ok(json!({
            "next_batch": s.next.to_string(),
            "rooms": { "join": s.join, "invite": s.invite, "leave": s.leave, "knock": s.knock },
            "presence": { "events": s.presence },
            "account_data": { "events": s.account_data },
            "to_device": { "events": s.to_device },
            "device_lists": { "changed": s.device_lists.changed, "left": s.device_lists.left },
            "device_one_time_keys_count": self.e2ee.one_time_key_counts(authed).await?,
            "device_unused_fallback_key_types":
                self.ctx.storage.unused_fallback_key_types(&authed.user_id, device).await?,
        }))
    }
}
