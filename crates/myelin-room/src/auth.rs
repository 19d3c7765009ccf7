//! Authorisation: which state events authorise a new event, and the auth rules themselves
//! (delegated to `ruma::state_res`).

use std::sync::Arc;

use myelin_core::Pdu;
use ruma::{
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    EventId, OwnedEventId, UserId,
};

use crate::RoomError;

/// The IDs of the current state events that authorise an event (the spec's auth events
/// selection), looked up with `state`.
pub fn auth_event_ids(
    rules: &RoomVersionRules,
    kind: &str,
    sender: &UserId,
    state_key: Option<&str>,
    content: &serde_json::Value,
    state: impl Fn(&StateEventType, &str) -> Option<OwnedEventId>,
) -> Result<Vec<OwnedEventId>, RoomError> {
    let raw = serde_json::value::to_raw_value(content)
        .map_err(|e| RoomError::InvalidEvent(e.to_string()))?;
    let kind = TimelineEventType::from(kind);
    let types =
        ruma::state_res::auth_types_for_event(&kind, sender, state_key, &raw, &rules.authorization)
            .map_err(RoomError::InvalidEvent)?;
    Ok(types.iter().filter_map(|(t, k)| state(t, k)).collect())
}

/// Checks `pdu` against the authorisation rules: its auth events (fetched by ID) and the given
/// state (fetched by type and state key).
pub fn check_auth(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    fetch_event: impl Fn(&EventId) -> Option<Arc<Pdu>>,
    fetch_state: impl Fn(&StateEventType, &str) -> Option<Arc<Pdu>>,
) -> Result<(), RoomError> {
    ruma::state_res::check_state_independent_auth_rules(&rules.authorization, pdu, &fetch_event)
        .map_err(RoomError::Forbidden)?;
    ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, &fetch_state)
        .map_err(RoomError::Forbidden)
}
