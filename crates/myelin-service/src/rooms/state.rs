//! `RoomState`: a room's current state held in memory, rebuilt from storage on first use.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use myelin_core::{Pdu, StreamPos};
use myelin_storage::{RoomStore, SnapshotId, Storage};
use ruma::{
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, ServerName, UserId,
};

use crate::push::RoomPushFacts;
use crate::{ServiceError, ServiceResult};

/// A room member's membership (`m.room.member` `content.membership`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Membership {
    Join,
    Invite,
    Knock,
    Leave,
    Ban,
}

impl Membership {
    /// The membership a content names; `None` for a missing or unknown value.
    pub fn of_content(content: &serde_json::Value) -> Option<Membership> {
        Membership::parse(content.get("membership")?.as_str()?)
    }

    pub fn parse(value: &str) -> Option<Membership> {
        Some(match value {
            "join" => Membership::Join,
            "invite" => Membership::Invite,
            "knock" => Membership::Knock,
            "leave" => Membership::Leave,
            "ban" => Membership::Ban,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Membership::Join => "join",
            Membership::Invite => "invite",
            Membership::Knock => "knock",
            Membership::Leave => "leave",
            Membership::Ban => "ban",
        }
    }
}

/// A current state event and where it sits in the stream.
#[derive(Debug, Clone)]
pub struct StateEntry {
    pub pdu: Arc<Pdu>,
    pub pos: StreamPos,
    /// For an `m.room.member` event with a user ID as state key: that user and their
    /// membership, parsed once when the event enters the state, so that membership questions
    /// (asked on every send, for its destinations and whom to wake) read no JSON.
    pub member: Option<(OwnedUserId, Option<Membership>)>,
    /// The redaction that redacted this event (`pdu` is then the redacted form): clients are
    /// sent it as `redacted_because`.
    pub redacted_by: Option<OwnedEventId>,
}

impl StateEntry {
    pub fn new(pdu: Arc<Pdu>, pos: StreamPos) -> StateEntry {
        let member = (pdu.kind == TimelineEventType::RoomMember)
            .then(|| {
                let user = OwnedUserId::try_from(pdu.state_key.as_deref()?).ok()?;
                Some((user, Membership::of_content(&pdu.content_value())))
            })
            .flatten();
        StateEntry {
            pdu,
            pos,
            member,
            redacted_by: None,
        }
    }

    /// The member's membership, for a member event.
    pub fn membership(&self) -> Option<Membership> {
        self.member.as_ref().and_then(|(_, m)| *m)
    }
}

#[derive(Debug, Clone)]
pub struct RoomState {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
    /// `(type, state_key)` → event. Shared between clones until one of them changes state:
    /// every send clones the room's state, and most sends change none of it.
    state: Arc<HashMap<(StateEventType, String), StateEntry>>,
    /// The snapshot ID of the current state.
    pub snapshot: SnapshotId,
    pub extremities: Vec<OwnedEventId>,
    pub depth: u64,
    /// Stream position of the newest event.
    pub last_pos: StreamPos,
    /// What push evaluation reads of this state, worked out on first use (see
    /// `push::room_facts`). Shared between clones, which hold the same state; replaced by an
    /// empty cell whenever the state changes.
    push_facts: Arc<OnceLock<Arc<RoomPushFacts>>>,
}

impl RoomState {
    /// Loads current state, extremities and depth from storage.
    pub async fn load(storage: &dyn Storage, room_id: &RoomId) -> ServiceResult<RoomState> {
        let info = RoomStore::room_info(storage, room_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("Unknown room {room_id}")))?;
        // Rooms joined over federation may be of any version we can read.
        let rules = myelin_room::rules_for_received(&info.version)?;
        let current = storage.current_state(room_id).await?;
        let ids: Vec<OwnedEventId> = current.values().cloned().collect();
        let mut state = HashMap::with_capacity(ids.len());
        for record in storage.get_events(&ids).await? {
            let key = (
                StateEventType::from(record.pdu.kind.to_string()),
                record.pdu.state_key.clone().unwrap_or_default(),
            );
            let entry = StateEntry {
                redacted_by: record.redacted_by,
                ..StateEntry::new(Arc::new(record.pdu), record.stream_pos)
            };
            state.insert(key, entry);
        }
        let extremities = storage.forward_extremities(room_id).await?;
        let tips = storage.get_events(&extremities).await?;
        let newest = tips
            .iter()
            .max_by_key(|r| r.stream_pos)
            .ok_or_else(|| ServiceError::Internal(format!("room {room_id} has no events")))?;
        // After a resolved fork the current state equals no snapshot: 0 says so, and the next
        // local event writes its state in full.
        let snapshot = info.current_snapshot.unwrap_or(0);
        Ok(RoomState {
            room_id: info.room_id,
            version: info.version,
            rules,
            state: Arc::new(state),
            snapshot,
            depth: tips.iter().map(|r| r.pdu.depth).max().unwrap_or(0),
            last_pos: newest.stream_pos,
            extremities,
            push_facts: Arc::default(),
        })
    }

    /// The state of a room whose only event so far is its create event.
    pub fn new_room(create: Arc<Pdu>) -> ServiceResult<RoomState> {
        let version = create
            .content_value()
            .get("room_version")
            .and_then(|v| v.as_str())
            .map(RoomVersionId::try_from)
            .transpose()
            .map_err(|e| ServiceError::BadJson(e.to_string()))?
            .unwrap_or(RoomVersionId::V1);
        let rules = myelin_room::rules_for(&version)?;
        Ok(RoomState {
            room_id: create.room_id.clone(),
            version,
            rules,
            state: Arc::default(),
            snapshot: 0,
            extremities: Vec::new(),
            depth: 0,
            last_pos: StreamPos::ZERO,
            push_facts: Arc::default(),
        })
    }

    /// The state after appending `pdu` (persisted at `pos` with state `snapshot`).
    pub fn with_event(mut self, pdu: Arc<Pdu>, pos: StreamPos, snapshot: SnapshotId) -> RoomState {
        if let Some(key) = &pdu.state_key {
            Arc::make_mut(&mut self.state).insert(
                (StateEventType::from(pdu.kind.to_string()), key.clone()),
                StateEntry::new(pdu.clone(), pos),
            );
            self.push_facts = Arc::default();
        }
        self.snapshot = snapshot;
        self.extremities = vec![pdu.event_id.clone()];
        self.depth = self.depth.max(pdu.depth);
        self.last_pos = pos;
        self
    }

    /// The state after `target` was redacted by `by` (its redacted JSON stored): a current
    /// state event keeps its place but loses the content the redaction algorithm strips.
    pub fn with_redacted(
        mut self,
        target: &EventId,
        redacted: Box<serde_json::value::RawValue>,
        by: &EventId,
    ) -> RoomState {
        if !self.state.values().any(|e| e.pdu.event_id == target) {
            return self;
        }
        let state = Arc::make_mut(&mut self.state);
        let Some(entry) = state.values_mut().find(|e| e.pdu.event_id == target) else {
            return self;
        };
        match Pdu::from_json(target.to_owned(), redacted) {
            Ok(pdu) => {
                *entry = StateEntry {
                    redacted_by: Some(by.to_owned()),
                    ..StateEntry::new(Arc::new(pdu), entry.pos)
                };
                // A redacted member event loses its display name, power levels their users.
                self.push_facts = Arc::default();
            }
            Err(e) => tracing::warn!(%target, error = %e, "the redacted event does not parse"),
        }
        self
    }

    /// What push evaluation reads of this state (local members, names, power levels).
    pub(crate) fn push_facts(&self, server: &ServerName) -> Arc<RoomPushFacts> {
        self.push_facts
            .get_or_init(|| Arc::new(RoomPushFacts::of(self, server)))
            .clone()
    }

    pub fn get(&self, kind: &StateEventType, state_key: &str) -> Option<&StateEntry> {
        self.state.get(&(kind.clone(), state_key.to_owned()))
    }

    /// A state event by ID (auth events of new events are always current state).
    pub fn by_event_id(&self, id: &EventId) -> Option<Arc<Pdu>> {
        self.state
            .values()
            .find(|e| e.pdu.event_id == id)
            .map(|e| e.pdu.clone())
    }

    pub fn entries(&self) -> impl Iterator<Item = &StateEntry> {
        self.state.values()
    }

    /// `content` of a state event as JSON.
    pub fn content(&self, kind: &StateEventType, state_key: &str) -> Option<serde_json::Value> {
        self.get(kind, state_key).map(|e| e.pdu.content_value())
    }

    pub fn membership(&self, user_id: &UserId) -> Option<Membership> {
        self.get(&StateEventType::RoomMember, user_id.as_str())?
            .membership()
    }

    /// Whether the user is joined.
    pub fn is_joined(&self, user_id: &UserId) -> bool {
        self.membership(user_id) == Some(Membership::Join)
    }

    /// Every `m.room.member` entry with a valid user ID as state key, with that user.
    pub fn member_entries(&self) -> impl Iterator<Item = (&UserId, &StateEntry)> {
        self.state
            .values()
            .filter_map(|e| Some((&*e.member.as_ref()?.0, e)))
    }

    /// Users whose membership is one of `memberships`.
    pub fn members_with(&self, memberships: &[Membership]) -> Vec<OwnedUserId> {
        self.member_entries()
            .filter(|(_, e)| e.membership().is_some_and(|m| memberships.contains(&m)))
            .map(|(user, _)| user.to_owned())
            .collect()
    }

    /// The joined members.
    pub fn joined_members(&self) -> Vec<OwnedUserId> {
        self.members_with(&[Membership::Join])
    }

    /// `m.room.history_visibility`, defaulting to `shared`.
    pub fn history_visibility(&self) -> String {
        self.content(&StateEventType::RoomHistoryVisibility, "")
            .and_then(|c| {
                c.get("history_visibility")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "shared".to_owned())
    }

    pub fn join_rule(&self) -> String {
        self.content(&StateEventType::RoomJoinRules, "")
            .and_then(|c| {
                c.get("join_rule")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "invite".to_owned())
    }
}
