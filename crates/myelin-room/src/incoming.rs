//! The checks a server makes on a PDU it receives over federation (spec: server-server API,
//! "Checks performed on receipt of a PDU"), as pure functions: the caller fetches keys, auth
//! events and state and passes them in, so this module never does IO.
//!
//! 1. [`verify_received`]: format and size, signatures, content hash (an event whose hash does
//!    not match is kept redacted).
//! 2. [`check_received_auth`]: auth against the event's own auth events, against the state
//!    before the event (reject), and against the current state (soft-fail).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use myelin_core::Pdu;
use ruma::canonical_json::{redact, CanonicalJsonObject, CanonicalJsonValue};
use ruma::events::StateEventType;
use ruma::room_version_rules::{EventIdFormatVersion, RoomVersionRules};
use ruma::signatures::{PublicKeyMap, Verified};
use ruma::{EventId, OwnedEventId, OwnedServerName, RoomId, RoomVersionId};
use serde_json::value::RawValue as RawJsonValue;

use crate::{check_auth, RoomError};

/// A received PDU that passed the format, signature and hash checks.
#[derive(Debug, Clone)]
pub struct Received {
    pub pdu: Pdu,
    /// The content hash did not match, so `pdu` is the redacted form (spec step 3).
    pub redacted: bool,
}

/// The rules of any room version this build knows, including old ones we only join.
pub fn rules_for_received(version: &RoomVersionId) -> Result<RoomVersionRules, RoomError> {
    version
        .rules()
        .ok_or_else(|| RoomError::UnsupportedVersion(version.to_string()))
}

/// Parses a received PDU into a canonical JSON object, refusing malformed JSON.
pub fn parse_received(raw: &RawJsonValue) -> Result<CanonicalJsonObject, RoomError> {
    serde_json::from_str(raw.get())
        .map_err(|e| RoomError::InvalidEvent(format!("not a canonical JSON object: {e}")))
}

/// The servers whose signatures the PDU must carry (the sender's, and for some room versions
/// and restricted joins, others); the caller fetches their keys before [`verify_received`].
pub fn signing_servers(
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<BTreeSet<OwnedServerName>, RoomError> {
    ruma::signatures::required_server_signatures_to_verify_event(object, &rules.signatures)
        .map_err(|e| RoomError::InvalidEvent(format!("cannot tell who must sign the event: {e}")))
}

/// The event ID: carried in the PDU (room versions 1 and 2) or its reference hash (3+).
pub fn received_event_id(
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<OwnedEventId, RoomError> {
    if rules.event_id_format == EventIdFormatVersion::V1 {
        return match object.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => OwnedEventId::try_from(id.as_str())
                .map_err(|e| RoomError::InvalidEvent(e.to_string())),
            _ => Err(RoomError::InvalidEvent("missing event_id".into())),
        };
    }
    let hash = ruma::signatures::reference_hash(object, rules)
        .map_err(|e| RoomError::InvalidEvent(e.to_string()))?;
    OwnedEventId::try_from(format!("${hash}")).map_err(|e| RoomError::InvalidEvent(e.to_string()))
}

/// Steps 1–3 on receipt: the format and size rules of the room version, every required
/// signature against `keys`, and the content hash. A PDU whose hash does not match is redacted
/// (as the spec requires) rather than refused. `unsigned` from the sender is dropped.
pub fn verify_received(
    mut object: CanonicalJsonObject,
    room_id: &RoomId,
    rules: &RoomVersionRules,
    keys: &PublicKeyMap,
) -> Result<Received, RoomError> {
    ruma::state_res::check_pdu_format(&object, &rules.event_format)
        .map_err(RoomError::InvalidEvent)?;
    let event_id = received_event_id(&object, rules)?;
    let verified = ruma::signatures::verify_event(keys, &object, rules)
        .map_err(|e| RoomError::BadSignature(e.to_string()))?;
    object.remove("unsigned");
    let redacted = verified == Verified::Signatures;
    if redacted {
        object = redact(object, &rules.redaction, None)
            .map_err(|e| RoomError::InvalidEvent(e.to_string()))?;
    }
    let pdu = Pdu::from_canonical(event_id, &object)
        .map_err(|e| RoomError::InvalidEvent(e.to_string()))?;
    if pdu.room_id != room_id {
        return Err(RoomError::InvalidEvent(format!(
            "the event is in {}, not {room_id}",
            pdu.room_id
        )));
    }
    Ok(Received { pdu, redacted })
}

/// The outcome of the auth checks (steps 4–6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Allowed everywhere: store and apply it.
    Accepted,
    /// Not allowed by its auth events or by the state before it: store it as rejected (other
    /// events may reference it) but never apply it.
    Rejected(String),
    /// Allowed by the state before it but not by the current state: store it as part of the
    /// DAG, but do not send it to clients or apply it to the current state.
    SoftFailed(String),
}

/// A state map of PDUs, keyed by event type and state key.
pub type PduStateMap = HashMap<(StateEventType, String), Arc<Pdu>>;

/// Steps 4–6 on receipt. `auth_events` must hold the PDU's auth events (the caller fetched any
/// missing ones, or the event is rejected); `state_before` is the room state before the event
/// (resolved across its prev events); `current_state` is the room's current state.
pub fn check_received_auth(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    auth_events: &HashMap<OwnedEventId, Arc<Pdu>>,
    state_before: &PduStateMap,
    current_state: &PduStateMap,
) -> AuthVerdict {
    // Step 4: against the event's own auth events, which must all be known and not rejected.
    for id in &pdu.auth_events {
        match auth_events.get(id) {
            None => return AuthVerdict::Rejected(format!("auth event {id} is unknown")),
            Some(e) if e.rejected => {
                return AuthVerdict::Rejected(format!("auth event {id} was rejected"))
            }
            Some(e) if e.room_id != pdu.room_id => {
                return AuthVerdict::Rejected(format!("auth event {id} is in another room"))
            }
            Some(_) => {}
        }
    }
    let by_id = |id: &EventId| auth_events.get(id).cloned();
    // From room version 12 the create event is implied by the room ID, not listed.
    let implied_create = match create_event_id(rules, pdu) {
        Some(Ok(id)) => Some(id),
        Some(Err(e)) => return AuthVerdict::Rejected(e),
        None => None,
    };
    let own_auth_state: PduStateMap = pdu
        .auth_events
        .iter()
        .chain(implied_create.as_ref())
        .filter_map(|id| auth_events.get(id))
        .filter_map(|e| {
            e.state_key
                .clone()
                .map(|k| ((StateEventType::from(e.kind.to_string()), k), e.clone()))
        })
        .collect();
    if let Err(e) = check_auth(rules, pdu, by_id, state_lookup(&own_auth_state)) {
        return AuthVerdict::Rejected(format!("not allowed by its auth events: {e}"));
    }
    // Step 5: against the state before the event.
    let fetch_known = |id: &EventId| {
        auth_events
            .get(id)
            .cloned()
            .or_else(|| find_by_id(state_before, id))
    };
    if let Err(e) = check_auth(rules, pdu, fetch_known, state_lookup(state_before)) {
        return AuthVerdict::Rejected(format!("not allowed by the state before it: {e}"));
    }
    // Step 6: against the current state.
    let fetch_current = |id: &EventId| {
        auth_events
            .get(id)
            .cloned()
            .or_else(|| find_by_id(current_state, id))
    };
    if let Err(e) = check_auth(rules, pdu, fetch_current, state_lookup(current_state)) {
        return AuthVerdict::SoftFailed(format!("not allowed by the current state: {e}"));
    }
    AuthVerdict::Accepted
}

/// The create event's ID when the room version derives it from the room ID (and the event is
/// not the create event itself).
fn create_event_id(rules: &RoomVersionRules, pdu: &Pdu) -> Option<Result<OwnedEventId, String>> {
    if !rules.authorization.room_create_event_id_as_room_id
        || pdu.kind.to_string() == "m.room.create"
    {
        return None;
    }
    let id = format!("${}", pdu.room_id.as_str().trim_start_matches('!'));
    Some(OwnedEventId::try_from(id).map_err(|e| format!("the room ID names no create event: {e}")))
}

fn state_lookup(state: &PduStateMap) -> impl Fn(&StateEventType, &str) -> Option<Arc<Pdu>> + '_ {
    move |kind, key| state.get(&(kind.clone(), key.to_owned())).cloned()
}

fn find_by_id(state: &PduStateMap, id: &EventId) -> Option<Arc<Pdu>> {
    state.values().find(|e| e.event_id == id).cloned()
}
