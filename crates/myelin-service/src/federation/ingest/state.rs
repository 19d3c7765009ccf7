//! The room state a received event is checked against: the state before it (from its prev
//! events, resolved when they are several), state maps as PDUs, state resolution over stored
//! auth chains, and the auth events an event names.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use myelin_core::Pdu;
use myelin_room::{resolve_state, PduStateMap};
use myelin_storage::{SnapshotId, StateMap};
use ruma::{events::StateEventType, room_version_rules::RoomVersionRules, OwnedEventId};

use crate::{rooms::RoomState, Ingest, ServiceError, ServiceResult};

/// The state before a received event.
pub(super) struct StateBefore {
    pub(super) state: StateMap,
    /// The state snapshot of the event's prev event when it has exactly one, in the timeline:
    /// the state after the event is then stored as a change to it.
    pub(super) linear_base: Option<SnapshotId>,
}

impl Ingest {
    /// The state before `pdu`: from its prev events when we have them all in the timeline, else
    /// as the origin gave it (`remote`: its answer was checked like any PDU and kept as outliers).
    pub(super) async fn state_before(
        &self,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        remote: Option<StateMap>,
    ) -> ServiceResult<StateBefore> {
        let prevs = self.ctx.storage.get_events(&pdu.prev_events).await?;
        let prevs: Vec<_> = prevs.into_iter().filter(|r| r.outlier.is_none()).collect();
        let linear_base = match prevs.as_slice() {
            [prev] if pdu.prev_events.len() == 1 => Some(prev.state_snapshot),
            _ => None,
        };
        let state = if prevs.len() == pdu.prev_events.len() {
            let mut sets = Vec::with_capacity(prevs.len());
            for prev in &prevs {
                sets.push(
                    self.ctx
                        .storage
                        .state_at_snapshot(prev.state_snapshot)
                        .await?,
                );
            }
            self.resolve_states(rules, sets, None).await?
        } else {
            remote.ok_or_else(|| {
                ServiceError::Forbidden(format!(
                    "the state before {} is unknown: its prev events are missing",
                    pdu.event_id
                ))
            })?
        };
        Ok(StateBefore { state, linear_base })
    }

    /// Stored events (timeline or outliers) by ID.
    pub(super) async fn known_events(
        &self,
        ids: &[OwnedEventId],
    ) -> ServiceResult<HashMap<OwnedEventId, Arc<Pdu>>> {
        Ok(self
            .ctx
            .storage
            .get_events(ids)
            .await?
            .into_iter()
            .map(|r| (r.pdu.event_id.clone(), Arc::new(r.pdu)))
            .collect())
    }

    /// The PDUs of a state map (entries whose event is unknown are left out).
    pub(crate) async fn state_pdus(&self, state: &StateMap) -> ServiceResult<PduStateMap> {
        let ids: Vec<OwnedEventId> = state.values().cloned().collect();
        let events = self.known_events(&ids).await?;
        Ok(state
            .iter()
            .filter_map(|((kind, key), id)| {
                let pdu = events.get(id)?.clone();
                Some(((StateEventType::from(kind.as_str()), key.clone()), pdu))
            })
            .collect())
    }

    /// One state from several: the single set as is, several through state resolution over
    /// their stored auth chains (and `pending`, an event being stored that the sets name).
    pub(crate) async fn resolve_states(
        &self,
        rules: &RoomVersionRules,
        mut sets: Vec<StateMap>,
        pending: Option<&Arc<Pdu>>,
    ) -> ServiceResult<StateMap> {
        sets.dedup();
        if sets.len() <= 1 {
            return Ok(sets.pop().unwrap_or_default());
        }
        let starts: Vec<OwnedEventId> = sets
            .iter()
            .flat_map(|s| s.values().cloned())
            .chain(pending.iter().flat_map(|p| p.auth_events.iter().cloned()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut events = self.auth_closure(starts).await?;
        if let Some(pdu) = pending {
            events.insert(pdu.event_id.clone(), pdu.clone());
        }
        let ruma_sets: Vec<ruma::state_res::StateMap<OwnedEventId>> = sets
            .iter()
            .map(|s| {
                s.iter()
                    .map(|((k, sk), id)| {
                        ((StateEventType::from(k.as_str()), sk.clone()), id.clone())
                    })
                    .collect()
            })
            .collect();
        let resolved = resolve_state(rules, &ruma_sets, |id| events.get(id).cloned())?;
        Ok(resolved
            .into_iter()
            .map(|((k, sk), id)| ((k.to_string(), sk), id))
            .collect())
    }

    /// `starts` and everything reachable from them through `auth_events`, loaded from storage
    /// one layer at a time; bounded by [`myelin_room::MAX_WALK`].
    async fn auth_closure(
        &self,
        starts: Vec<OwnedEventId>,
    ) -> ServiceResult<HashMap<OwnedEventId, Arc<Pdu>>> {
        let mut loaded: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        let mut asked: HashSet<OwnedEventId> = starts.iter().cloned().collect();
        let mut frontier = starts;
        while !frontier.is_empty() {
            if asked.len() > myelin_room::MAX_WALK {
                return Err(ServiceError::Forbidden(
                    "the room's auth DAG is too large to resolve".into(),
                ));
            }
            let mut next = Vec::new();
            for chunk in frontier.chunks(500) {
                for record in self.ctx.storage.get_events(chunk).await? {
                    next.extend(
                        record
                            .pdu
                            .auth_events
                            .iter()
                            .filter(|a| asked.insert((*a).clone()))
                            .cloned(),
                    );
                    loaded.insert(record.pdu.event_id.clone(), Arc::new(record.pdu));
                }
            }
            frontier = next;
        }
        Ok(loaded)
    }
}

/// The event's auth events, plus the create event where the room version implies it by the
/// room ID (version 12) instead of listing it.
pub(super) fn auth_ids_with_create(rules: &RoomVersionRules, pdu: &Pdu) -> Vec<OwnedEventId> {
    let mut ids = pdu.auth_events.clone();
    if rules.authorization.room_create_event_id_as_room_id
        && pdu.kind.to_string() != "m.room.create"
    {
        if let Ok(id) =
            OwnedEventId::try_from(format!("${}", pdu.room_id.as_str().trim_start_matches('!')))
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// The room's current state as PDUs.
pub(super) fn current_state_pdus(current: &RoomState) -> PduStateMap {
    current
        .entries()
        .filter_map(|e| {
            let key = e.pdu.state_key.clone()?;
            Some((
                (StateEventType::from(e.pdu.kind.to_string()), key),
                e.pdu.clone(),
            ))
        })
        .collect()
}

/// The room's current state as event IDs.
pub(super) fn current_state_ids(current: &RoomState) -> StateMap {
    current
        .entries()
        .filter_map(|e| {
            Some((
                (e.pdu.kind.to_string(), e.pdu.state_key.clone()?),
                e.pdu.event_id.clone(),
            ))
        })
        .collect()
}

/// Whether `state` is exactly the room's current state.
pub(super) fn state_before_matches(current: &RoomState, state: &StateMap) -> bool {
    let mut count = 0;
    for entry in current.entries() {
        count += 1;
        let Some(key) = &entry.pdu.state_key else {
            return false;
        };
        if state.get(&(entry.pdu.kind.to_string(), key.clone())) != Some(&entry.pdu.event_id) {
            return false;
        }
    }
    count == state.len()
}
