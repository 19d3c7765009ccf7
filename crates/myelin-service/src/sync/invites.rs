//! `rooms.invite` and `rooms.knock`: the stripped state of rooms the user is invited to or has
//! knocked on, from our state or, for a remote room, as its server sent it.

use myelin_storage::{MembershipRecord, RoomStore};
use serde_json::{json, Map, Value};

use super::{pass::Pass, Syncer};
use crate::{
    format::{stripped_state, STRIPPED_STATE_TYPES},
    ServiceResult,
};

impl Syncer {
    /// `rooms.invite` and `rooms.knock`: the invites and knocks new since the token.
    pub(super) async fn invited_rooms(
        &self,
        pass: &Pass<'_>,
        memberships: &[MembershipRecord],
    ) -> ServiceResult<(Map<String, Value>, Map<String, Value>)> {
        let mut invite = Map::new();
        let mut knock = Map::new();
        for m in memberships {
            let changed = pass.since_pos().is_none_or(|s| m.stream_pos > s);
            match m.membership.as_str() {
                "invite" if changed && !self.invited_by_ignored(pass, m).await? => {
                    let events = self.stripped_room_state(m).await?;
                    invite.insert(
                        m.room_id.to_string(),
                        json!({ "invite_state": { "events": events } }),
                    );
                }
                "knock" if changed => {
                    let events = self.stripped_room_state(m).await?;
                    knock.insert(
                        m.room_id.to_string(),
                        json!({ "knock_state": { "events": events } }),
                    );
                }
                _ => {}
            }
        }
        Ok((invite, knock))
    }

    /// Whether the membership event (an invite) was sent by a user this user ignores.
    async fn invited_by_ignored(
        &self,
        pass: &Pass<'_>,
        m: &MembershipRecord,
    ) -> ServiceResult<bool> {
        if pass.ignored.is_empty() {
            return Ok(false);
        }
        let sender = self.ctx.storage.get_event(&m.event_id).await?;
        Ok(sender.is_some_and(|r| pass.ignored.contains(&r.pdu.sender)))
    }

    /// The room's stripped state plus the membership event.
    async fn stripped_room_state(&self, m: &MembershipRecord) -> ServiceResult<Vec<Value>> {
        let known = RoomStore::room_info(self.ctx.storage.as_ref(), &m.room_id)
            .await?
            .is_some();
        if !known {
            // An invite to a room on another server: the state its server sent with it.
            return self.remote_stripped_state(m).await;
        }
        let state = self.rooms.room_state(&m.room_id).await?;
        let mut events: Vec<Value> = STRIPPED_STATE_TYPES
            .iter()
            .filter_map(|k| state.get(&(*k).into(), ""))
            .map(|e| stripped_state(&e.pdu))
            .collect();
        if let Some(member) = self.ctx.storage.get_event(&m.event_id).await? {
            events.push(stripped_state(&member.pdu));
        }
        Ok(events)
    }

    /// The stripped state stored with a remote invite, plus the invite itself.
    async fn remote_stripped_state(&self, m: &MembershipRecord) -> ServiceResult<Vec<Value>> {
        let mut events: Vec<Value> = match self
            .ctx
            .storage
            .stripped_state(&m.room_id, &m.user_id)
            .await?
        {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => Vec::new(),
        };
        if let Some(member) = self.ctx.storage.get_event(&m.event_id).await? {
            events.push(stripped_state(&member.pdu));
        }
        Ok(events)
    }
}
