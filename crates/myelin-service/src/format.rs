//! Turning stored PDUs into the client-server event formats.

use myelin_core::Pdu;
use myelin_storage::EventRecord;
use ruma::{DeviceId, UserId};

use crate::rooms::client_txn_id;
use serde_json::{json, Map, Value};

/// The `ClientEvent` format. The viewer's device gets `unsigned.transaction_id` for its own sends;
/// `redacted_because` is the redaction event, already formatted, if the event was redacted.
pub fn client_event(
    record: &EventRecord,
    viewer: Option<(&UserId, &DeviceId)>,
    now_ms: u64,
    redacted_because: Option<Value>,
) -> Value {
    let pdu = &record.pdu;
    let mut event = client_event_of_pdu(pdu, now_ms, redacted_because);
    if let (Some((device, txn_key)), Some((viewer_user, viewer_device))) = (&record.txn, viewer) {
        // Device IDs are only unique per user.
        if pdu.sender == viewer_user && device.as_str() == viewer_device.as_str() {
            event["unsigned"]["transaction_id"] = json!(client_txn_id(txn_key));
        }
    }
    event
}

/// An event without a viewer (no `transaction_id`), from its PDU alone: what [`client_event`]
/// gives for a record of it with `viewer` `None` (current state held in memory).
pub fn client_event_of_pdu(pdu: &Pdu, now_ms: u64, redacted_because: Option<Value>) -> Value {
    let mut event = base_event(pdu);
    let mut unsigned = Map::new();
    unsigned.insert(
        "age".into(),
        json!(now_ms.saturating_sub(pdu.origin_server_ts.0.into())),
    );
    if let Some(because) = redacted_because {
        unsigned.insert("redacted_because".into(), because);
    }
    event["unsigned"] = Value::Object(unsigned);
    event
}

/// The fields every format shares.
fn base_event(pdu: &Pdu) -> Value {
    let mut event = json!({
        "content": pdu.content_value(),
        "event_id": pdu.event_id,
        "origin_server_ts": pdu.origin_server_ts,
        "room_id": pdu.room_id,
        "sender": pdu.sender,
        "type": pdu.kind.to_string(),
    });
    if let Some(key) = &pdu.state_key {
        event["state_key"] = json!(key);
    }
    if let Some(redacts) = &pdu.redacts {
        event["redacts"] = json!(redacts);
    }
    event
}

/// The state types an invitee or knocker sees of a room (the spec's recommended stripped state).
pub(crate) const STRIPPED_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// The stripped state format used for invites.
pub fn stripped_state(pdu: &Pdu) -> Value {
    json!({
        "content": pdu.content_value(),
        "sender": pdu.sender,
        "state_key": pdu.state_key.clone().unwrap_or_default(),
        "type": pdu.kind.to_string(),
    })
}
