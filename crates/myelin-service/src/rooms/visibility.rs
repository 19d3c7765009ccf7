//! History visibility: the one check every read of room content goes through, for local users
//! (`/messages`, `/context`, `/event`, `/state`, `/members`, `/sync`, `timestamp_to_event`) and,
//! through [`may_see`], for other servers (`federation/access.rs`).
//!
//! Spec: Client-Server API, "History visibility". A reader may see an event when, with the
//! room's `m.room.history_visibility` and the reader's membership *at that event*:
//! 1. the visibility is `world_readable`, or
//! 2. the reader's membership is `join`, or
//! 3. the visibility is `shared` and the reader joined the room at some point after the event, or
//! 4. the visibility is `invited` and the reader's membership is `invite`.
//!
//! For an `m.room.history_visibility` event the visibility before *or* after it may allow it, and
//! for the reader's own membership event their membership before or after it may (so a user sees
//! their own join, and their own leave after being joined). A leave or ban that never followed a
//! join or invite grants nothing.
//!
//! "At that event" is read from the event's stored state snapshot (the state after it, which for
//! any other event equals the state before it), not from the room's current state: switching a
//! room to `shared` opens nothing sent under `joined`.
//!
//! Events of our users deactivated with `erase` (state ones too) are served redacted to readers
//! who were not joined when they were sent: [`HistoryView::filter`] and
//! [`HistoryView::visible`] for timeline reads, [`HistoryView::state_as_seen`] for state.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use myelin_core::StreamPos;
use myelin_storage::{EventRecord, MembershipRecord, SnapshotId, StateKey};
use ruma::{OwnedUserId, UserId};
use serde_json::Value;

use super::RoomState;
use crate::{Rooms, ServiceError, ServiceResult};

const VISIBILITY_TYPE: &str = "m.room.history_visibility";
const MEMBER_TYPE: &str = "m.room.member";

/// A room's `history_visibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    WorldReadable,
    Shared,
    Invited,
    Joined,
}

impl Visibility {
    /// From an `m.room.history_visibility` content; `shared` without one, and the most
    /// restrictive for a value we do not know.
    pub fn of_content(content: Option<&Value>) -> Visibility {
        match content.map(|c| c.get("history_visibility").and_then(Value::as_str)) {
            None => Visibility::Shared,
            Some(Some("world_readable")) => Visibility::WorldReadable,
            Some(Some("shared")) => Visibility::Shared,
            Some(Some("invited")) => Visibility::Invited,
            Some(_) => Visibility::Joined,
        }
    }
}

/// A reader's standing at an event: their membership, as far as visibility cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Join,
    Invite,
    /// `knock`, `leave`, `ban`, or no membership at all: none of them grants anything.
    Other,
}

impl Standing {
    /// From an `m.room.member` content (`None`: no membership event).
    pub fn of_content(content: Option<&Value>) -> Standing {
        match content
            .and_then(|c| c.get("membership"))
            .and_then(Value::as_str)
        {
            Some("join") => Standing::Join,
            Some("invite") => Standing::Invite,
            _ => Standing::Other,
        }
    }
}

/// What decides whether one reader may see one event.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts {
    pub visibility: Visibility,
    /// For an `m.room.history_visibility` event: the visibility before it.
    pub visibility_before: Option<Visibility>,
    pub membership: Standing,
    /// For the reader's own membership event: their membership before it.
    pub membership_before: Option<Standing>,
    /// Whether the reader joined the room at some point after the event.
    pub joined_later: bool,
}

/// The spec's rule for one visibility and one membership.
fn allowed(visibility: Visibility, membership: Standing, joined_later: bool) -> bool {
    match (visibility, membership) {
        (Visibility::WorldReadable, _) | (_, Standing::Join) => true,
        (Visibility::Shared, _) => joined_later,
        (Visibility::Invited, Standing::Invite) => true,
        _ => false,
    }
}

/// Whether a reader with these facts may see the event: the rule applied to the state at the
/// event, and to the state before it for visibility changes and the reader's own membership.
pub fn may_see(facts: EventFacts) -> bool {
    let visibilities = [Some(facts.visibility), facts.visibility_before];
    let memberships = [Some(facts.membership), facts.membership_before];
    visibilities.iter().flatten().any(|&v| {
        memberships
            .iter()
            .flatten()
            .any(|&m| allowed(v, m, facts.joined_later))
    })
}

/// One local user's view of one room's history, for one request: the membership record at hand
/// and the visibility and membership found at each state snapshot so far.
pub(crate) struct HistoryView<'a> {
    storage: &'a dyn myelin_storage::Storage,
    room: Arc<RoomState>,
    user_id: OwnedUserId,
    /// Where the user last joined the room, if ever.
    joined_pos: Option<StreamPos>,
    at_snapshot: HashMap<SnapshotId, (Visibility, Standing)>,
    /// Users whose non-state events this reader ignores (`m.ignored_user_list`).
    ignored: Arc<HashSet<OwnedUserId>>,
    /// Whether each local sender asked about so far was erased.
    erased: HashMap<OwnedUserId, bool>,
}

impl Rooms {
    /// `user_id`'s view of the room whose current state is `room`; `member` is their membership
    /// record in it, if any (callers often have it at hand already).
    pub(crate) fn history_view(
        &self,
        user_id: &UserId,
        room: Arc<RoomState>,
        member: Option<&MembershipRecord>,
    ) -> HistoryView<'_> {
        HistoryView {
            storage: self.ctx.storage.as_ref(),
            room,
            user_id: user_id.to_owned(),
            joined_pos: member.and_then(|m| m.joined_pos),
            at_snapshot: HashMap::new(),
            ignored: Arc::default(),
            erased: HashMap::new(),
        }
    }
}

impl HistoryView<'_> {
    /// The same view, hiding the messages (not the state) of the users the reader ignores.
    pub fn ignoring(mut self, ignored: Arc<HashSet<OwnedUserId>>) -> Self {
        self.ignored = ignored;
        self
    }

    /// The room this is a view of.
    pub fn room_id(&self) -> &ruma::RoomId {
        &self.room.room_id
    }

    /// Whether the user may see `record` (see the module documentation). Events outside the
    /// timeline (outliers, rejected, soft-failed) are never shown, nor the messages of users the
    /// reader ignores.
    pub async fn may_see(&mut self, record: &EventRecord) -> ServiceResult<bool> {
        if record.outlier.is_some() || record.pdu.room_id != self.room.room_id {
            return Ok(false);
        }
        if record.pdu.state_key.is_none() && self.ignored.contains(&record.pdu.sender) {
            return Ok(false);
        }
        let (visibility, mut membership) = self.at_snapshot(record.state_snapshot).await?;
        // History fetched from other servers (below every position of ours) is from before this
        // server was in the room, so before any local user could have been a member; its stored
        // state is borrowed from our oldest event and would claim otherwise.
        let backfilled = record.stream_pos < StreamPos::ZERO;
        if backfilled {
            membership = Standing::Other;
        }
        let kind = record.pdu.kind.to_string();
        let own_membership = kind == MEMBER_TYPE
            && record.pdu.state_key.as_deref() == Some(self.user_id.as_str())
            && !backfilled;
        let before = if kind == VISIBILITY_TYPE || own_membership {
            self.before(record).await?
        } else {
            None
        };
        let joined_later = self.joined_pos.is_some_and(|j| j > record.stream_pos);
        Ok(may_see(EventFacts {
            visibility,
            visibility_before: before.filter(|_| kind == VISIBILITY_TYPE).map(|(v, _)| v),
            membership,
            membership_before: before.filter(|_| own_membership).map(|(_, m)| m),
            joined_later,
        }))
    }

    /// The events of `records` the user may see, in their order, as they get them.
    pub async fn filter(&mut self, records: Vec<EventRecord>) -> ServiceResult<Vec<EventRecord>> {
        let mut visible = Vec::with_capacity(records.len());
        for record in records {
            if let Some(record) = self.visible(record).await? {
                visible.push(record);
            }
        }
        Ok(visible)
    }

    /// `record` as the user gets it, if they may see it at all: the one answer for every read
    /// of a single event (`/event`, `/context`, bundled replies and edits).
    pub async fn visible(&mut self, record: EventRecord) -> ServiceResult<Option<EventRecord>> {
        if !self.may_see(&record).await? {
            return Ok(None);
        }
        Ok(Some(self.as_seen(record).await?))
    }

    /// State the reader is shown (`/state`, `/members`, the state of `/context`), each event as
    /// they get it; whether they may read that state at all is the caller's check.
    pub async fn state_as_seen(
        &mut self,
        records: Vec<EventRecord>,
    ) -> ServiceResult<Vec<EventRecord>> {
        self.learn_erased(&records).await?;
        let mut seen = Vec::with_capacity(records.len());
        for record in records {
            seen.push(self.as_seen(record).await?);
        }
        Ok(seen)
    }

    /// The event as the reader gets it: redacted when its sender is one of our users
    /// deactivated with `erase` and the reader was not joined when it was sent (as Synapse
    /// does, state events included: those who were there keep what they saw, newcomers do not
    /// get it; a redacted member event keeps its membership).
    async fn as_seen(&mut self, mut record: EventRecord) -> ServiceResult<EventRecord> {
        let sender = &record.pdu.sender;
        if record.redacted_by.is_some()
            || sender.server_name() != self.user_id.server_name()
            || *sender == self.user_id
        {
            return Ok(record);
        }
        // The reader's membership is known already for events `may_see` looked at; for state
        // it is not, and erasure (rare, known per sender) spares a lookup per event.
        let known = self.at_snapshot.contains_key(&record.state_snapshot);
        if known && self.joined_at(&record).await? {
            return Ok(record);
        }
        let erased = match self.erased.get(sender) {
            Some(&erased) => erased,
            None => {
                let users = [sender.clone()];
                let erased = !self.storage.erased_users(&users).await?.is_empty();
                self.erased.insert(sender.clone(), erased);
                erased
            }
        };
        if !erased || (!known && self.joined_at(&record).await?) {
            return Ok(record);
        }
        let json = myelin_room::redact_pdu_json(&record.pdu, &self.room.rules)?;
        record.pdu = myelin_core::Pdu::from_json(record.pdu.event_id.clone(), json)
            .map_err(|e| ServiceError::Internal(format!("redacted event: {e}")))?;
        Ok(record)
    }

    /// Whether the reader was joined when `record` was sent (history fetched from other servers
    /// predates every local membership).
    async fn joined_at(&mut self, record: &EventRecord) -> ServiceResult<bool> {
        let (_, membership) = self.at_snapshot(record.state_snapshot).await?;
        Ok(membership == Standing::Join && record.stream_pos >= StreamPos::ZERO)
    }

    /// Learns in one query which of the local senders of `records` not asked about yet were
    /// erased (a room's whole state has many senders).
    async fn learn_erased(&mut self, records: &[EventRecord]) -> ServiceResult<()> {
        let mut unknown: Vec<OwnedUserId> = records
            .iter()
            .map(|r| &r.pdu.sender)
            .filter(|s| s.server_name() == self.user_id.server_name())
            .filter(|s| !self.erased.contains_key(*s))
            .cloned()
            .collect();
        unknown.sort();
        unknown.dedup();
        if unknown.is_empty() {
            return Ok(());
        }
        let erased: HashSet<OwnedUserId> = self
            .storage
            .erased_users(&unknown)
            .await?
            .into_iter()
            .collect();
        for user in unknown {
            let is_erased = erased.contains(&user);
            self.erased.insert(user, is_erased);
        }
        Ok(())
    }

    /// Visibility and the user's membership before a state event: the state after its first
    /// prev event in the timeline (`None` when that is not known).
    async fn before(
        &mut self,
        record: &EventRecord,
    ) -> ServiceResult<Option<(Visibility, Standing)>> {
        let Some(prev) = record.pdu.prev_events.first() else {
            return Ok(None);
        };
        let prev = self.storage.get_event(prev).await?;
        match prev {
            Some(prev) if prev.outlier.is_none() && prev.pdu.room_id == self.room.room_id => {
                Ok(Some(self.at_snapshot(prev.state_snapshot).await?))
            }
            _ => Ok(None),
        }
    }

    /// The visibility and the user's membership in a snapshot's state: from the room's current
    /// state in memory when the snapshot is the current one, else two keyed lookups.
    async fn at_snapshot(&mut self, snapshot: SnapshotId) -> ServiceResult<(Visibility, Standing)> {
        if let Some(&found) = self.at_snapshot.get(&snapshot) {
            return Ok(found);
        }
        let found = if snapshot != 0 && snapshot == self.room.snapshot {
            (
                Visibility::of_content(self.room.content(&VISIBILITY_TYPE.into(), "").as_ref()),
                Standing::of_content(
                    self.room
                        .content(&MEMBER_TYPE.into(), self.user_id.as_str())
                        .as_ref(),
                ),
            )
        } else {
            let storage = &self.storage;
            let visibility_key: StateKey = (VISIBILITY_TYPE.to_owned(), String::new());
            let member_key: StateKey = (MEMBER_TYPE.to_owned(), self.user_id.to_string());
            let entries = storage
                .state_entries_at(snapshot, &[visibility_key.clone(), member_key.clone()])
                .await?;
            let ids: Vec<_> = entries.values().cloned().collect();
            let events = storage.get_events(&ids).await?;
            let content_of = |key: &StateKey| {
                let id = entries.get(key)?;
                events
                    .iter()
                    .find(|e| &e.pdu.event_id == id)
                    .map(|e| e.pdu.content_value())
            };
            (
                Visibility::of_content(content_of(&visibility_key).as_ref()),
                Standing::of_content(content_of(&member_key).as_ref()),
            )
        };
        self.at_snapshot.insert(snapshot, found);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(visibility: Visibility, membership: Standing, joined_later: bool) -> EventFacts {
        EventFacts {
            visibility,
            visibility_before: None,
            membership,
            membership_before: None,
            joined_later,
        }
    }

    #[test]
    fn the_spec_rules() {
        use Standing::*;
        use Visibility::*;
        // (visibility, membership at the event, joined later) → visible
        let table = [
            (WorldReadable, Other, false, true),
            (Joined, Join, false, true),
            (Invited, Join, false, true),
            (Shared, Join, false, true),
            (Shared, Other, true, true),
            (Shared, Invite, true, true),
            (Shared, Other, false, false),
            (Shared, Invite, false, false),
            (Invited, Invite, false, true),
            (Invited, Other, true, false),
            (Joined, Invite, false, false),
            (Joined, Other, true, false),
        ];
        for (v, m, later, expected) in table {
            assert_eq!(may_see(facts(v, m, later)), expected, "{v:?} {m:?} {later}");
        }
    }

    #[test]
    fn before_or_after_for_visibility_and_own_membership() {
        use Standing::*;
        use Visibility::*;
        // A switch from `invited` to `joined` is seen by an invitee.
        let mut f = facts(Joined, Invite, false);
        assert!(!may_see(f));
        f.visibility_before = Some(Invited);
        assert!(may_see(f));
        // One's own leave after being joined, under `joined`.
        let mut f = facts(Joined, Other, false);
        f.membership_before = Some(Join);
        assert!(may_see(f));
        // A withdrawn knock grants nothing.
        let mut f = facts(Joined, Other, false);
        f.membership_before = Some(Other);
        assert!(!may_see(f));
    }

    #[test]
    fn parsing_contents() {
        use serde_json::json;
        assert_eq!(Visibility::of_content(None), Visibility::Shared);
        assert_eq!(
            Visibility::of_content(Some(&json!({"history_visibility": "bogus"}))),
            Visibility::Joined
        );
        assert_eq!(
            Standing::of_content(Some(&json!({"membership": "ban"}))),
            Standing::Other
        );
        assert_eq!(Standing::of_content(None), Standing::Other);
    }
}
