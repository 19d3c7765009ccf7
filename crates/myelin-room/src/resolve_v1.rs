//! State resolution v1 (room version 1), written from the spec's description: the unconflicted
//! state stands; conflicts are resolved for `m.room.power_levels` first, then `m.room.join_rules`,
//! then each `m.room.member`, each against the state resolved so far, and then every other
//! conflicted key.
//!
//! - For the auth event types, the conflicting events are taken from the lowest depth up; each
//!   must pass the auth rules against the state with the one before it in place, and the last one
//!   that does wins.
//! - For any other key, the first event from the greatest depth down that passes the auth rules
//!   wins (the one of least depth when none does).
//!
//! Ties in depth are broken by the SHA-1 of the event IDs. There is no walk over the DAG: the work
//! is bounded by the sizes of the state sets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use myelin_core::Pdu;
use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::StateMap;
use ruma::{EventId, OwnedEventId};
use sha1::{Digest, Sha1};

use crate::RoomError;

type Key = (StateEventType, String);

/// Resolves `state_sets` (the states at the tips of each fork) into one state, by the rules of
/// room version 1.
pub fn resolve_state_v1(
    rules: &RoomVersionRules,
    state_sets: &[StateMap<OwnedEventId>],
    fetch_event: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Result<StateMap<OwnedEventId>, RoomError> {
    let mut candidates: BTreeMap<Key, BTreeSet<OwnedEventId>> = BTreeMap::new();
    for set in state_sets {
        for (key, id) in set {
            candidates
                .entry(key.clone())
                .or_default()
                .insert(id.clone());
        }
    }
    let mut resolved: HashMap<Key, Arc<Pdu>> = HashMap::new();
    let mut conflicted: BTreeMap<Key, Vec<Arc<Pdu>>> = BTreeMap::new();
    for (key, ids) in candidates {
        // Events we cannot read take no part; a key left with one event is not in conflict.
        let mut events: Vec<Arc<Pdu>> = ids.iter().filter_map(|id| fetch_event(id)).collect();
        match events.len() {
            0 => {}
            1 => {
                resolved.insert(key, events.remove(0));
            }
            _ => {
                conflicted.insert(key, events);
            }
        }
    }

    let phases: [fn(&Key) -> bool; 3] = [
        |k| k.0 == StateEventType::RoomPowerLevels,
        |k| k.0 == StateEventType::RoomJoinRules,
        |k| k.0 == StateEventType::RoomMember,
    ];
    for in_phase in phases {
        // Each phase resolves against the state as the earlier phases left it.
        let auth = resolved.clone();
        for (key, events) in conflicted.iter().filter(|(k, _)| in_phase(k)) {
            let winner = resolve_auth_events(rules, events, &auth)?;
            resolved.insert(key.clone(), winner);
        }
    }
    let auth = resolved.clone();
    for (key, events) in conflicted
        .iter()
        .filter(|(k, _)| !phases.iter().any(|p| p(k)))
    {
        resolved.insert(key.clone(), resolve_normal_events(rules, events, &auth)?);
    }
    Ok(resolved
        .into_iter()
        .map(|(key, pdu)| (key, pdu.event_id.clone()))
        .collect())
}

/// An auth event type's conflict: from the lowest depth up, each event must pass with the one
/// before it in place; the last that does wins.
fn resolve_auth_events(
    rules: &RoomVersionRules,
    events: &[Arc<Pdu>],
    auth: &HashMap<Key, Arc<Pdu>>,
) -> Result<Arc<Pdu>, RoomError> {
    let mut lowest_first = ordered(events);
    lowest_first.reverse();
    let mut auth = auth.clone();
    let mut winner = lowest_first
        .first()
        .cloned()
        .ok_or_else(|| RoomError::InvalidEvent("an empty conflict".into()))?;
    for event in lowest_first.into_iter().skip(1) {
        auth.insert(key_of(&winner)?, winner.clone());
        if !passes(rules, &event, &auth) {
            return Ok(winner);
        }
        winner = event;
    }
    Ok(winner)
}

/// Any other conflict: the first event from the greatest depth down that passes the auth rules,
/// else the one of least depth.
fn resolve_normal_events(
    rules: &RoomVersionRules,
    events: &[Arc<Pdu>],
    auth: &HashMap<Key, Arc<Pdu>>,
) -> Result<Arc<Pdu>, RoomError> {
    let ordered = ordered(events);
    if let Some(event) = ordered.iter().find(|e| passes(rules, e, auth)) {
        return Ok(event.clone());
    }
    ordered
        .last()
        .cloned()
        .ok_or_else(|| RoomError::InvalidEvent("an empty conflict".into()))
}

/// Greatest depth first; equal depths by the SHA-1 of the event ID, in ascending hex order.
fn ordered(events: &[Arc<Pdu>]) -> Vec<Arc<Pdu>> {
    let mut keyed: Vec<(std::cmp::Reverse<u64>, [u8; 20], Arc<Pdu>)> = events
        .iter()
        .map(|e| {
            let digest: [u8; 20] = Sha1::digest(e.event_id.as_bytes()).into();
            (std::cmp::Reverse(e.depth), digest, e.clone())
        })
        .collect();
    keyed.sort_by_key(|k| (k.0, k.1));
    keyed.into_iter().map(|(_, _, e)| e).collect()
}

fn passes(rules: &RoomVersionRules, event: &Pdu, auth: &HashMap<Key, Arc<Pdu>>) -> bool {
    ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, event, |ty, key| {
        auth.get(&(ty.clone(), key.to_owned())).cloned()
    })
    .is_ok()
}

fn key_of(pdu: &Pdu) -> Result<Key, RoomError> {
    let state_key = pdu.state_key.clone().ok_or_else(|| {
        RoomError::InvalidEvent("a state conflict holds a non-state event".into())
    })?;
    Ok((pdu.kind.to_string().into(), state_key))
}
