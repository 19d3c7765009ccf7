//! Who may read what over federation: a room's server ACL and its history visibility, applied to
//! the requesting server.
//!
//! Spec: Server-Server API, "Retrieving events" / "Server ACLs" and Client-Server API, "History
//! visibility". The rule is the clients' one (`rooms/visibility.rs`), read for a server: its
//! membership at an event is the most joined of its users' in the state after that event (which
//! counts a membership event for its own target), and it "joined later" when one of its users is
//! joined to the room now, so a server in the room may read the room's `shared` history. A
//! change of visibility is judged by the visibility before it too.
//!
//! Anything else (including unknown visibility values, treated as `joined`) is withheld: single
//! events are refused with `Forbidden`, history walks serve the redacted form so that the DAG
//! stays whole. Messages of our users deactivated with `erase` are always served redacted.

use std::{collections::HashMap, sync::Arc};

use myelin_storage::{EventRecord, SnapshotId};
use ruma::{EventId, OwnedUserId, RoomId, ServerName, UserId};
use serde_json::value::RawValue as RawJsonValue;

use crate::{
    rooms::{
        visibility::{self, EventFacts, Standing, Visibility},
        RoomState,
    },
    FederationReads, ServiceError, ServiceResult,
};

/// One request's view of a room for a remote server: the room's current state (after its ACL let
/// the server in) and the visibility decisions made so far, per state snapshot.
pub(crate) struct ServerView<'a> {
    storage: &'a dyn myelin_storage::Storage,
    origin: &'a ServerName,
    own_server: &'a ServerName,
    pub current: Arc<RoomState>,
    facts_at: HashMap<SnapshotId, (Visibility, Standing)>,
    /// Whether each sender asked about so far was erased.
    erased: HashMap<OwnedUserId, bool>,
}

impl FederationReads {
    /// Opens `room_id` for `origin`: `NotFound` for a room we do not have, `Forbidden` when the
    /// room's server ACL denies the origin.
    pub(crate) async fn federation_view<'a>(
        &'a self,
        origin: &'a ServerName,
        room_id: &RoomId,
    ) -> ServiceResult<ServerView<'a>> {
        let current = self.rooms.check_server_acl(origin, room_id).await?;
        Ok(ServerView {
            storage: self.ctx.storage.as_ref(),
            origin,
            own_server: self.ctx.server_name(),
            current,
            facts_at: HashMap::new(),
            erased: HashMap::new(),
        })
    }
}

impl ServerView<'_> {
    /// An event of this room (`NotFound` if unknown or in another room).
    pub async fn event(&self, event_id: &EventId) -> ServiceResult<EventRecord> {
        match self.storage.get_event(event_id).await? {
            Some(record) if record.pdu.room_id == self.current.room_id && !record.is_withheld() => {
                Ok(record)
            }
            _ => Err(ServiceError::NotFound(format!(
                "Unknown event {event_id} in room {}",
                self.current.room_id
            ))),
        }
    }

    /// `Forbidden` unless the origin may see the event.
    pub async fn require_visible(&mut self, record: &EventRecord) -> ServiceResult<()> {
        if self.may_see(record).await? {
            return Ok(());
        }
        tracing::info!(origin = %self.origin, event_id = %record.pdu.event_id, "federation read refused by history visibility");
        Err(ServiceError::Forbidden(format!(
            "Server {} may not see event {}",
            self.origin, record.pdu.event_id
        )))
    }

    /// The event as served to the origin: as stored if it may see it and its sender was not
    /// erased, else redacted.
    pub async fn served(&mut self, record: &EventRecord) -> ServiceResult<Box<RawJsonValue>> {
        let intact = self.may_see(record).await? && !self.sender_erased(record).await?;
        if intact || record.redacted_by.is_some() {
            return Ok(record.pdu.json.clone());
        }
        self.redacted(record)
    }

    /// A single event the origin may see (`Forbidden` otherwise), redacted when its sender was
    /// erased (deactivated with `erase`), as Synapse serves them.
    pub async fn served_visible(
        &mut self,
        record: &EventRecord,
    ) -> ServiceResult<Box<RawJsonValue>> {
        self.require_visible(record).await?;
        if record.redacted_by.is_some() || !self.sender_erased(record).await? {
            return Ok(record.pdu.json.clone());
        }
        self.redacted(record)
    }

    fn redacted(&self, record: &EventRecord) -> ServiceResult<Box<RawJsonValue>> {
        Ok(myelin_room::redact_pdu_json(
            &record.pdu,
            &self.current.rules,
        )?)
    }

    /// Whether the event's sender is one of our users deactivated with `erase`.
    async fn sender_erased(&mut self, record: &EventRecord) -> ServiceResult<bool> {
        let sender = &record.pdu.sender;
        // Only our own users can be erased here; state events stay (the room needs them).
        if record.pdu.state_key.is_some() || sender.server_name() != self.own_server {
            return Ok(false);
        }
        if let Some(&erased) = self.erased.get(sender) {
            return Ok(erased);
        }
        let users = [sender.clone()];
        let erased = !self.storage.erased_users(&users).await?.is_empty();
        self.erased.insert(sender.clone(), erased);
        Ok(erased)
    }

    /// Whether the origin may see the event (see the module documentation).
    pub async fn may_see(&mut self, record: &EventRecord) -> ServiceResult<bool> {
        // Outliers (state and auth events from before we joined) have no stored state; they are
        // what other servers need to check the room's auth chains.
        if record.outlier.is_some() {
            return Ok(!record.is_withheld());
        }
        let (visibility, membership) = self.at_snapshot(record.state_snapshot).await?;
        // A change of visibility is visible if the visibility before it allows it too.
        let visibility_before = if record.pdu.kind.to_string() == "m.room.history_visibility" {
            match record.pdu.prev_events.first() {
                Some(prev) => match self.storage.get_event(prev).await? {
                    Some(prev) if prev.outlier.is_none() => {
                        Some(self.at_snapshot(prev.state_snapshot).await?.0)
                    }
                    _ => None,
                },
                None => None,
            }
        } else {
            None
        };
        let joined_now = self
            .current
            .joined_members()
            .iter()
            .any(|u| u.server_name() == self.origin);
        Ok(visibility::may_see(EventFacts {
            visibility,
            visibility_before,
            membership,
            membership_before: None,
            joined_later: joined_now,
        }))
    }

    /// The visibility in a snapshot's state, and the best membership any user of the origin has
    /// in it (a server sees what its most joined user may see).
    async fn at_snapshot(&mut self, snapshot: SnapshotId) -> ServiceResult<(Visibility, Standing)> {
        if let Some(&found) = self.facts_at.get(&snapshot) {
            return Ok(found);
        }
        let storage = &self.storage;
        let state = storage.state_at_snapshot(snapshot).await?;
        let visibility_id = state
            .get(&("m.room.history_visibility".to_owned(), String::new()))
            .cloned();
        let mut ids: Vec<_> = visibility_id.iter().cloned().collect();
        let members = state
            .range(("m.room.member".to_owned(), String::new())..)
            .take_while(|((kind, _), _)| kind == "m.room.member");
        ids.extend(
            members
                .filter(|((_, key), _)| self.is_origin_user(key))
                .map(|(_, id)| id.clone()),
        );
        let mut visibility = Visibility::Shared;
        let mut membership = Standing::Other;
        for event in storage.get_events(&ids).await? {
            let content = event.pdu.content_value();
            if Some(&event.pdu.event_id) == visibility_id.as_ref() {
                visibility = Visibility::of_content(Some(&content));
                continue;
            }
            membership = match (membership, Standing::of_content(Some(&content))) {
                (Standing::Join, _) | (_, Standing::Join) => Standing::Join,
                (Standing::Invite, _) | (_, Standing::Invite) => Standing::Invite,
                _ => Standing::Other,
            };
        }
        self.facts_at.insert(snapshot, (visibility, membership));
        Ok((visibility, membership))
    }

    fn is_origin_user(&self, state_key: &str) -> bool {
        <&UserId>::try_from(state_key).is_ok_and(|user| user.server_name() == self.origin)
    }
}
