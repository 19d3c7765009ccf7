//! Single events, the state at an event and auth chains for remote servers (`/event`, `/state`,
//! `/state_ids`, `/event_auth`).
//!
//! The state served at an event is the state *before* it, as the spec wants. Storage keeps the
//! state *after* each event, so:
//! - for a non-state event the two are the same snapshot;
//! - for a state event with one prev event, it is the state after that prev event;
//! - for the create event (no prev events) it is empty;
//! - for a state event with several prev events (a merge), it is the state after the event with
//!   the event's own entry put back to the value it replaced, taken from the newest prev event
//!   (by stream position) that has that key, or left out if none has. Every other entry is
//!   exact; that one entry is exact unless the prev events disagreed on it.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use myelin_core::Pdu;
use myelin_storage::{EventRecord, StateMap};
use ruma::{EventId, OwnedEventId, RoomId, ServerName};
use serde_json::value::RawValue as RawJsonValue;

use crate::{FederationReads, ServiceError, ServiceResult};

/// `/state`: the state before an event and its auth chain, as stored PDUs.
#[derive(Debug)]
pub struct StateAtEvent {
    pub pdus: Vec<Box<RawJsonValue>>,
    pub auth_chain: Vec<Box<RawJsonValue>>,
}

/// `/state_ids`: the same, as event IDs.
#[derive(Debug)]
pub struct StateIdsAtEvent {
    pub pdu_ids: Vec<OwnedEventId>,
    pub auth_chain_ids: Vec<OwnedEventId>,
}

impl FederationReads {
    /// `GET /_matrix/federation/v1/event/{eventId}`: one event the origin may see, as stored.
    pub async fn federation_event(
        &self,
        origin: &ServerName,
        event_id: &EventId,
    ) -> ServiceResult<Box<RawJsonValue>> {
        let record = self
            .ctx
            .storage
            .get_event(event_id)
            .await?
            .filter(|r| !r.is_withheld())
            .ok_or_else(|| ServiceError::NotFound(format!("Unknown event {event_id}")))?;
        let mut view = self.federation_view(origin, &record.pdu.room_id).await?;
        view.served_visible(&record).await
    }

    /// `GET /_matrix/federation/v1/state/{roomId}?event_id=`.
    pub async fn federation_state(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> ServiceResult<StateAtEvent> {
        let (state, chain) = self.state_and_auth_chain(origin, room_id, event_id).await?;
        Ok(StateAtEvent {
            pdus: state.iter().map(|p| p.json.clone()).collect(),
            auth_chain: chain.iter().map(|p| p.json.clone()).collect(),
        })
    }

    /// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=`.
    pub async fn federation_state_ids(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> ServiceResult<StateIdsAtEvent> {
        let (state, chain) = self.state_and_auth_chain(origin, room_id, event_id).await?;
        Ok(StateIdsAtEvent {
            pdu_ids: state.iter().map(|p| p.event_id.clone()).collect(),
            auth_chain_ids: chain.iter().map(|p| p.event_id.clone()).collect(),
        })
    }

    /// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`: every event reachable from the
    /// event through `auth_events` (the event itself excluded), oldest first.
    pub async fn federation_event_auth(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> ServiceResult<Vec<Box<RawJsonValue>>> {
        let mut view = self.federation_view(origin, room_id).await?;
        let record = view.event(event_id).await?;
        view.require_visible(&record).await?;
        let chain = self
            .stored_auth_chain(room_id, vec![Arc::new(record.pdu)])
            .await?;
        Ok(chain.iter().map(|p| p.json.clone()).collect())
    }

    /// The state before the event (see the module documentation) and the auth chain of that
    /// state, after checking the origin may see the event.
    async fn state_and_auth_chain(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> ServiceResult<(Vec<Arc<Pdu>>, Vec<Arc<Pdu>>)> {
        let mut view = self.federation_view(origin, room_id).await?;
        let record = view.event(event_id).await?;
        view.require_visible(&record).await?;
        let ids: Vec<OwnedEventId> = self
            .state_before_event(&record)
            .await?
            .into_values()
            .collect();
        let mut state: Vec<Arc<Pdu>> = self
            .ctx
            .storage
            .get_events(&ids)
            .await?
            .into_iter()
            .map(|r| Arc::new(r.pdu))
            .collect();
        state.sort_by(|a, b| {
            a.depth
                .cmp(&b.depth)
                .then_with(|| a.event_id.cmp(&b.event_id))
        });
        let chain = self.stored_auth_chain(room_id, state.clone()).await?;
        Ok((state, chain))
    }

    /// The state before `record` (see the module documentation).
    async fn state_before_event(&self, record: &EventRecord) -> ServiceResult<StateMap> {
        let pdu = &record.pdu;
        let Some(state_key) = &pdu.state_key else {
            return Ok(self
                .ctx
                .storage
                .state_at_snapshot(record.state_snapshot)
                .await?);
        };
        if pdu.prev_events.is_empty() {
            return Ok(StateMap::new());
        }
        let mut prevs: Vec<EventRecord> = self
            .ctx
            .storage
            .get_events(&pdu.prev_events)
            .await?
            .into_iter()
            .filter(|p| p.pdu.room_id == pdu.room_id && p.outlier.is_none())
            .collect();
        if let [prev] = prevs.as_slice() {
            if pdu.prev_events.len() == 1 {
                return Ok(self
                    .ctx
                    .storage
                    .state_at_snapshot(prev.state_snapshot)
                    .await?);
            }
        }
        let key = (pdu.kind.to_string(), state_key.clone());
        let mut state = self
            .ctx
            .storage
            .state_at_snapshot(record.state_snapshot)
            .await?;
        state.remove(&key);
        prevs.sort_by_key(|p| std::cmp::Reverse(p.stream_pos));
        for prev in prevs {
            if let Some(id) = self
                .ctx
                .storage
                .state_at_snapshot(prev.state_snapshot)
                .await?
                .remove(&key)
            {
                state.insert(key, id);
                break;
            }
        }
        Ok(state)
    }

    /// The auth chain of `starts` within `room_id`, oldest first: loaded from storage one layer of
    /// `auth_events` at a time (one query per layer), then walked with
    /// [`myelin_room::auth_chain`]. Bounded by [`myelin_room::MAX_WALK`] events.
    pub(crate) async fn stored_auth_chain(
        &self,
        room_id: &RoomId,
        starts: Vec<Arc<Pdu>>,
    ) -> ServiceResult<Vec<Arc<Pdu>>> {
        let start_ids: Vec<OwnedEventId> = starts.iter().map(|p| p.event_id.clone()).collect();
        let mut asked: HashSet<OwnedEventId> = start_ids.iter().cloned().collect();
        let mut frontier: Vec<OwnedEventId> = Vec::new();
        let mut loaded: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        let mut take =
            |pdu: Arc<Pdu>, asked: &mut HashSet<OwnedEventId>, frontier: &mut Vec<OwnedEventId>| {
                frontier.extend(
                    pdu.auth_events
                        .iter()
                        .filter(|a| asked.insert((*a).clone()))
                        .cloned(),
                );
                loaded.insert(pdu.event_id.clone(), pdu);
            };
        for pdu in starts {
            take(pdu, &mut asked, &mut frontier);
        }
        while !frontier.is_empty() {
            if asked.len() > myelin_room::MAX_WALK {
                return Err(ServiceError::TooLarge(format!(
                    "Auth chain longer than {} events",
                    myelin_room::MAX_WALK
                )));
            }
            let layer = std::mem::take(&mut frontier);
            for record in self.ctx.storage.get_events(&layer).await? {
                if record.pdu.room_id == room_id {
                    take(Arc::new(record.pdu), &mut asked, &mut frontier);
                }
            }
        }
        let ids = myelin_room::auth_chain(start_ids, |id| loaded.get(id).cloned())?;
        let mut chain: Vec<Arc<Pdu>> = ids
            .iter()
            .filter_map(|id| loaded.get(id).cloned())
            .collect();
        chain.sort_by(|a, b| {
            a.depth
                .cmp(&b.depth)
                .then_with(|| a.event_id.cmp(&b.event_id))
        });
        Ok(chain)
    }
}
