//! Who may read what over federation: a room's server ACL and its history visibility, applied to
//! the requesting server.
//!
//! Spec: Server-Server API, "Retrieving events" / "Server ACLs" and Client-Server API, "History
//! visibility". An event is served to a server when, in the state after that event (which counts
//! a membership event for its own target):
//! - `history_visibility` is `world_readable`, or
//! - a user of the server is joined (or invited, under `invited`), or
//! - it is `shared` (the default) and a user of the server is joined to the room now: a server
//!   in the room may read the room's shared history.
//!
//! Anything else (including unknown visibility values, treated as `joined`) is withheld: single
//! events are refused with `Forbidden`, history walks serve the redacted form so that the DAG
//! stays whole.

use std::{collections::HashMap, sync::Arc};

use myelin_storage::{EventRecord, SnapshotId};
use ruma::{EventId, RoomId, ServerName, UserId};
use serde_json::value::RawValue as RawJsonValue;

use crate::{rooms::RoomState, ServiceError, ServiceResult, Services};

/// One request's view of a room for a remote server: the room's current state (after its ACL let
/// the server in) and the visibility decisions made so far, per state snapshot.
pub(crate) struct ServerView<'a> {
    services: &'a Services,
    origin: &'a ServerName,
    pub current: Arc<RoomState>,
    visible_at: HashMap<SnapshotId, bool>,
}

impl Services {
    /// Opens `room_id` for `origin`: `NotFound` for a room we do not have, `Forbidden` when the
    /// room's server ACL denies the origin.
    pub(crate) async fn federation_view<'a>(
        &'a self,
        origin: &'a ServerName,
        room_id: &RoomId,
    ) -> ServiceResult<ServerView<'a>> {
        let current = self.check_server_acl(origin, room_id).await?;
        Ok(ServerView {
            services: self,
            origin,
            current,
            visible_at: HashMap::new(),
        })
    }
}

impl ServerView<'_> {
    /// An event of this room (`NotFound` if unknown or in another room).
    pub async fn event(&self, event_id: &EventId) -> ServiceResult<EventRecord> {
        match self.services.storage.get_event(event_id).await? {
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

    /// The event as served to the origin: as stored if it may see it, else redacted.
    pub async fn served(&mut self, record: &EventRecord) -> ServiceResult<Box<RawJsonValue>> {
        if self.may_see(record).await? || record.redacted_by.is_some() {
            return Ok(record.pdu.json.clone());
        }
        Ok(myelin_room::redact_pdu_json(
            &record.pdu,
            &self.current.rules,
        )?)
    }

    /// Whether the origin may see the event (see the module documentation).
    pub async fn may_see(&mut self, record: &EventRecord) -> ServiceResult<bool> {
        // Outliers (state and auth events from before we joined) have no stored state; they are
        // what other servers need to check the room's auth chains.
        if record.outlier.is_some() {
            return Ok(!record.is_withheld());
        }
        if let Some(&visible) = self.visible_at.get(&record.state_snapshot) {
            return Ok(visible);
        }
        let storage = &self.services.storage;
        let state = storage.state_at_snapshot(record.state_snapshot).await?;
        let mut ids = Vec::new();
        if let Some(id) = state.get(&("m.room.history_visibility".to_owned(), String::new())) {
            ids.push(id.clone());
        }
        let members = state
            .range(("m.room.member".to_owned(), String::new())..)
            .take_while(|((kind, _), _)| kind == "m.room.member");
        ids.extend(
            members
                .filter(|((_, key), _)| self.is_origin_user(key))
                .map(|(_, id)| id.clone()),
        );

        let mut visibility = "shared".to_owned();
        let (mut joined, mut invited) = (false, false);
        for event in storage.get_events(&ids).await? {
            let content = event.pdu.content_value();
            match event.pdu.kind.to_string().as_str() {
                "m.room.history_visibility" => {
                    if let Some(v) = content.get("history_visibility").and_then(|v| v.as_str()) {
                        visibility = v.to_owned();
                    }
                }
                _ => match content.get("membership").and_then(|m| m.as_str()) {
                    Some("join") => joined = true,
                    Some("invite") => invited = true,
                    _ => {}
                },
            }
        }
        let visible = match visibility.as_str() {
            "world_readable" => true,
            _ if joined => true,
            "invited" => invited,
            "shared" => self
                .current
                .members_with(&["join"])
                .iter()
                .any(|u| u.server_name() == self.origin),
            _ => false,
        };
        self.visible_at.insert(record.state_snapshot, visible);
        Ok(visible)
    }

    fn is_origin_user(&self, state_key: &str) -> bool {
        <&UserId>::try_from(state_key).is_ok_and(|user| user.server_name() == self.origin)
    }
}
