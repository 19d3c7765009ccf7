//! The rooms a connection may list or send: the user's joins, invites and knocks, rooms left
//! since the connection's last response (shown once, so the client sees the leave), and left
//! rooms subscribed to; each with what the filters and the ordering read.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use futures_util::StreamExt;
use myelin_core::StreamPos;
use myelin_storage::MembershipRecord;
use ruma::{events::StateEventType, OwnedRoomId, RoomId, UserId};
use serde_json::Value;

use super::{pass::Pass, request::RoomConfig, SlidingSync};
use crate::{
    rooms::{Membership, RoomState},
    ServiceError, ServiceResult,
};

/// How many rooms' state and bump stamps are read at once.
const ROOMS_AT_ONCE: usize = 8;

/// What lists filter and sort on, apart from the room itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RoomFacts {
    pub room_id: OwnedRoomId,
    pub membership: Membership,
    /// Where the room sorts: its latest bump event, or the user's membership event in rooms
    /// they are not joined to (they see nothing after it).
    pub bump_stamp: i64,
    pub is_dm: bool,
    pub is_encrypted: bool,
    /// The create event's `type`.
    pub room_type: Option<String>,
}

/// One room of the user.
#[derive(Debug, Clone)]
pub(super) struct RoomEntry {
    pub facts: RoomFacts,
    pub record: MembershipRecord,
    /// The room's current state, when this server has it (not for an invite to, or a knock
    /// on, a room on another server).
    pub state: Option<Arc<RoomState>>,
}

impl SlidingSync {
    /// The user's rooms that lists and subscriptions may show, of the user's memberships and
    /// the rooms `m.direct` names.
    pub(super) async fn candidates(
        &self,
        pass: &Pass<'_>,
        subscriptions: &BTreeMap<OwnedRoomId, RoomConfig>,
        (direct, memberships): (HashSet<OwnedRoomId>, Vec<MembershipRecord>),
    ) -> ServiceResult<Vec<RoomEntry>> {
        let since = pass.prev.map(|p| p.stream);
        let records: Vec<MembershipRecord> = memberships
            .into_iter()
            .filter(|m| shown(m, since, subscriptions.contains_key(&m.room_id)))
            .collect();
        let mut entries = Vec::with_capacity(records.len());
        for m in records {
            entries.push(self.entry(pass, m, &direct));
        }
        let mut read = futures_util::stream::iter(entries).buffered(ROOMS_AT_ONCE);
        let mut out = Vec::new();
        while let Some(entry) = read.next().await {
            out.extend(entry?);
        }
        self.stamp(&mut out).await?;
        Ok(out)
    }

    /// Sets the bump stamp of every room: its latest bump event in a room the user is joined
    /// to (all such rooms looked up at once), else the user's membership event (they see
    /// nothing after it).
    async fn stamp(&self, entries: &mut [RoomEntry]) -> ServiceResult<()> {
        let joined: Vec<(usize, &RoomId, StreamPos)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.facts.membership == Membership::Join)
            .filter_map(|(i, e)| Some((i, &*e.facts.room_id, e.state.as_ref()?.last_pos)))
            .collect();
        let rooms: Vec<(&RoomId, StreamPos)> = joined.iter().map(|&(_, r, p)| (r, p)).collect();
        let stamps = self
            .bumps
            .of_many(self.ctx.storage.as_ref(), &rooms)
            .await?;
        let mut bumps = vec![None; entries.len()];
        for ((i, _, _), stamp) in joined.iter().zip(stamps) {
            bumps[*i] = stamp;
        }
        for (entry, bump) in entries.iter_mut().zip(bumps) {
            entry.facts.bump_stamp = bump.unwrap_or(entry.record.stream_pos).0.max(0);
        }
        Ok(())
    }

    /// One room's entry; `None` for a membership we cannot make sense of, or an invite from
    /// a user the user ignores.
    async fn entry(
        &self,
        pass: &Pass<'_>,
        record: MembershipRecord,
        direct: &HashSet<OwnedRoomId>,
    ) -> ServiceResult<Option<RoomEntry>> {
        let user_id = &pass.authed.user_id;
        let Some(membership) = Membership::parse(&record.membership) else {
            return Ok(None);
        };
        if membership == Membership::Invite && self.invited_by_ignored(pass, &record).await? {
            return Ok(None);
        }
        let state = match self.rooms.room_state(&record.room_id).await {
            Ok(state) => Some(state),
            Err(ServiceError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let (is_encrypted, room_type, invited_as_direct) = match &state {
            Some(state) => state_facts(state, user_id, membership),
            None => {
                let stripped = crate::sync::remote_stripped_state(&self.ctx, &record).await?;
                stripped_facts(&stripped)
            }
        };
        let is_dm = direct.contains(&record.room_id)
            || (membership == Membership::Invite && invited_as_direct);
        let facts = RoomFacts {
            room_id: record.room_id.clone(),
            membership,
            // Set by `stamp`, for all rooms at once.
            bump_stamp: 0,
            is_dm,
            is_encrypted,
            room_type,
        };
        Ok(Some(RoomEntry {
            facts,
            record,
            state,
        }))
    }

    /// Whether the invite was sent by a user the user ignores.
    async fn invited_by_ignored(
        &self,
        pass: &Pass<'_>,
        record: &MembershipRecord,
    ) -> ServiceResult<bool> {
        if pass.ignored.is_empty() {
            return Ok(false);
        }
        let invite = self.ctx.storage.get_event(&record.event_id).await?;
        Ok(invite.is_some_and(|r| pass.ignored.contains(&r.pdu.sender)))
    }

    /// The rooms `m.direct` account data names as DMs.
    pub(super) async fn direct_rooms(
        &self,
        user_id: &UserId,
    ) -> ServiceResult<HashSet<OwnedRoomId>> {
        let content = self
            .ctx
            .storage
            .get_account_data(user_id, None, "m.direct")
            .await?;
        Ok(direct_rooms_of(content.as_ref()))
    }

    /// The rooms that are children (`m.space.child` with a `via`) of the given spaces, of those
    /// the user is joined to.
    pub(super) async fn space_children(
        &self,
        entries: &[RoomEntry],
        spaces: &HashSet<&RoomId>,
    ) -> ServiceResult<HashSet<OwnedRoomId>> {
        let mut children = HashSet::new();
        let joined_spaces = entries.iter().filter(|e| {
            e.facts.membership == Membership::Join && spaces.contains(&*e.facts.room_id)
        });
        for space in joined_spaces {
            let Some(state) = &space.state else { continue };
            let child_type = StateEventType::SpaceChild.to_string();
            for e in state.entries() {
                let is_child = e.pdu.kind.to_string() == child_type
                    && e.pdu
                        .content_value()
                        .get("via")
                        .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()));
                if let Some(child) = is_child.then(|| e.pdu.state_key.as_deref()).flatten() {
                    children.extend(OwnedRoomId::try_from(child).ok());
                }
            }
        }
        Ok(children)
    }
}

/// Whether a membership is shown: joins, invites and knocks always; a leave or ban only once
/// right after it happened (or when the room is subscribed to), never once forgotten.
fn shown(m: &MembershipRecord, since: Option<StreamPos>, subscribed: bool) -> bool {
    match m.membership.as_str() {
        "join" | "invite" | "knock" => true,
        "leave" | "ban" => !m.forgotten && (subscribed || since.is_some_and(|s| m.stream_pos > s)),
        _ => false,
    }
}

/// Encryption, room type, and whether the user's invite says it is a DM, from current state.
/// Read for every room of the user on every request: the create event's content is read for
/// its `type` alone, and the member event only for an invite (the only case that asks).
fn state_facts(
    state: &RoomState,
    user_id: &UserId,
    membership: Membership,
) -> (bool, Option<String>, bool) {
    #[derive(serde::Deserialize)]
    struct CreateType {
        #[serde(rename = "type")]
        room_type: Option<Value>,
    }
    let encrypted = state.get(&StateEventType::RoomEncryption, "").is_some();
    let room_type = state
        .get(&StateEventType::RoomCreate, "")
        .and_then(|e| serde_json::from_str::<CreateType>(e.pdu.content.get()).ok())
        .and_then(|c| c.room_type?.as_str().map(str::to_owned));
    let direct = membership == Membership::Invite
        && state
            .content(&StateEventType::RoomMember, user_id.as_str())
            .is_some_and(|c| c.get("is_direct") == Some(&Value::Bool(true)));
    (encrypted, room_type, direct)
}

/// The same facts from the stripped state of an invite to a room on another server.
fn stripped_facts(stripped: &[Value]) -> (bool, Option<String>, bool) {
    let of_type = |t: &str| stripped.iter().find(|e| e["type"] == t);
    let encrypted = of_type("m.room.encryption").is_some();
    let room_type =
        of_type("m.room.create").and_then(|e| e["content"]["type"].as_str().map(str::to_owned));
    (encrypted, room_type, false)
}

/// The room IDs of `m.direct` content (`{user: [room, ...]}`); anything malformed is skipped.
pub(super) fn direct_rooms_of(content: Option<&Value>) -> HashSet<OwnedRoomId> {
    content
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|users| users.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|r| OwnedRoomId::try_from(r).ok())
        .collect()
}
