//! State resolution across forks of the DAG (ruma's state resolution v2 / v2.1), with the auth
//! chains and the conflicted state subgraph it needs computed here from a fetch closure, so
//! that the caller decides where events come from and this module does no IO.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use myelin_core::Pdu;
use ruma::room_version_rules::{RoomVersionRules, StateResolutionVersion};
use ruma::state_res::StateMap;
use ruma::{EventId, OwnedEventId};

use crate::RoomError;

/// The most events one resolution may walk: a hostile DAG must not make us work without end.
pub const MAX_WALK: usize = 200_000;

/// Resolves `state_sets` (the states at the tips of each fork) into one state.
pub fn resolve_state(
    rules: &RoomVersionRules,
    state_sets: &[StateMap<OwnedEventId>],
    fetch_event: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Result<StateMap<OwnedEventId>, RoomError> {
    let StateResolutionVersion::V2(res_rules) = &rules.state_res else {
        return crate::resolve_state_v1(rules, state_sets, fetch_event);
    };
    let auth_chains = state_sets
        .iter()
        .map(|set| {
            auth_chain(set.values().cloned(), &fetch_event).map(|chain| chain.into_iter().collect())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let subgraph = |conflicted: &StateMap<Vec<OwnedEventId>>| {
        let ids: HashSet<OwnedEventId> = conflicted.values().flatten().cloned().collect();
        conflicted_subgraph(&ids, &fetch_event)
            .ok()
            .map(|set| set.into_iter().collect())
    };
    ruma::state_res::resolve(
        &rules.authorization,
        res_rules,
        state_sets,
        auth_chains,
        &fetch_event,
        subgraph,
    )
    .map_err(|e| RoomError::Forbidden(format!("state resolution failed: {e}")))
}

/// Every event reachable from `starts` through `auth_events` (the starts excluded unless
/// reachable from another start).
pub fn auth_chain(
    starts: impl IntoIterator<Item = OwnedEventId>,
    fetch_event: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Result<HashSet<OwnedEventId>, RoomError> {
    let mut chain = HashSet::new();
    let mut queue: VecDeque<OwnedEventId> = VecDeque::new();
    for start in starts {
        if let Some(pdu) = fetch_event(&start) {
            queue.extend(pdu.auth_events.iter().cloned());
        }
    }
    while let Some(id) = queue.pop_front() {
        if !chain.insert(id.clone()) {
            continue;
        }
        if chain.len() > MAX_WALK {
            return Err(RoomError::InvalidEvent(format!(
                "auth chain longer than {MAX_WALK} events"
            )));
        }
        if let Some(pdu) = fetch_event(&id) {
            queue.extend(
                pdu.auth_events
                    .iter()
                    .filter(|a| !chain.contains(*a))
                    .cloned(),
            );
        }
    }
    Ok(chain)
}

/// The conflicted state subgraph (room version 12): the events on auth-event paths from one
/// conflicted event to another, i.e. ancestors of a conflicted event that are themselves
/// descendants of one.
pub fn conflicted_subgraph(
    conflicted: &HashSet<OwnedEventId>,
    fetch_event: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Result<HashSet<OwnedEventId>, RoomError> {
    // Every ancestor of the conflicted events, with its auth events.
    let mut parents: HashMap<OwnedEventId, Vec<OwnedEventId>> = HashMap::new();
    let mut queue: VecDeque<OwnedEventId> = conflicted.iter().cloned().collect();
    while let Some(id) = queue.pop_front() {
        if parents.contains_key(&id) {
            continue;
        }
        if parents.len() > MAX_WALK {
            return Err(RoomError::InvalidEvent(format!(
                "auth DAG larger than {MAX_WALK} events"
            )));
        }
        let auth = fetch_event(&id)
            .map(|p| p.auth_events.clone())
            .unwrap_or_default();
        queue.extend(auth.iter().filter(|a| !parents.contains_key(*a)).cloned());
        parents.insert(id, auth);
    }
    // Which ancestors lead (through auth events) to a conflicted event, computed leaves first.
    let mut reaches: HashMap<OwnedEventId, bool> = HashMap::new();
    for id in parents.keys() {
        reaches_conflicted(id, &parents, conflicted, &mut reaches);
    }
    // An ancestor is in the subgraph if it is conflicted or some auth event of it leads to one.
    Ok(parents
        .iter()
        .filter(|(id, auth)| {
            conflicted.contains(*id)
                || auth
                    .iter()
                    .any(|a| reaches.get(a).copied().unwrap_or(false))
        })
        .map(|(id, _)| id.clone())
        .collect())
}

/// Whether `id` is conflicted or has an auth-event path to a conflicted event (iterative, so a
/// deep DAG cannot overflow the stack).
fn reaches_conflicted(
    start: &OwnedEventId,
    parents: &HashMap<OwnedEventId, Vec<OwnedEventId>>,
    conflicted: &HashSet<OwnedEventId>,
    memo: &mut HashMap<OwnedEventId, bool>,
) -> bool {
    let mut stack = vec![(start.clone(), false)];
    while let Some((id, expanded)) = stack.pop() {
        if memo.contains_key(&id) {
            continue;
        }
        let auth = parents.get(&id).map(Vec::as_slice).unwrap_or_default();
        if expanded {
            let value = conflicted.contains(&id)
                || auth.iter().any(|a| memo.get(a).copied().unwrap_or(false));
            memo.insert(id, value);
        } else {
            stack.push((id.clone(), true));
            stack.extend(
                auth.iter()
                    .filter(|a| !memo.contains_key(*a))
                    .map(|a| (a.clone(), false)),
            );
        }
    }
    memo.get(start).copied().unwrap_or(false)
}
