//! Building a local event: the full PDU of its room version, hashed and signed, with a
//! reference-hash event ID.

use myelin_core::Pdu;
use ruma::{
    canonical_json::{to_canonical_value, CanonicalJsonObject, CanonicalJsonValue},
    room_version_rules::{EventIdFormatVersion, RoomVersionRules},
    signatures::Ed25519KeyPair,
    OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId,
};

use crate::RoomError;

/// The largest PDU the spec allows, in bytes of canonical JSON.
pub const MAX_PDU_BYTES: usize = 65_536;

/// The server's signing key.
pub struct SigningKey {
    pub server_name: OwnedServerName,
    pub key_pair: Ed25519KeyPair,
}

/// What the client asked for.
#[derive(Debug, Clone)]
pub struct EventTemplate {
    pub kind: String,
    pub state_key: Option<String>,
    pub content: serde_json::Value,
    /// For `m.room.redaction` in room versions before 11 (top-level `redacts`).
    pub redacts: Option<OwnedEventId>,
}

/// Where the event goes in the DAG.
#[derive(Debug, Clone)]
pub struct PduContext<'a> {
    pub rules: &'a RoomVersionRules,
    /// `None` only for the create event of a room version that derives the ID from it.
    pub room_id: Option<&'a OwnedRoomId>,
    pub sender: &'a OwnedUserId,
    pub origin_server_ts: u64,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: u64,
}

/// Builds, hashes and signs a PDU.
pub fn build_pdu(
    template: EventTemplate,
    ctx: PduContext<'_>,
    key: &SigningKey,
) -> Result<Pdu, RoomError> {
    let invalid = |e: &dyn std::fmt::Display| RoomError::InvalidEvent(e.to_string());
    let CanonicalJsonValue::Object(content) =
        to_canonical_value(&template.content).map_err(|e| invalid(&e))?
    else {
        return Err(RoomError::InvalidEvent(
            "content must be a JSON object".into(),
        ));
    };
    let v1_ids = ctx.rules.event_id_format == EventIdFormatVersion::V1;
    // Room versions 1 and 2 reference events as `[id, {"sha256": hash}]` pairs. Receivers use
    // only the IDs, and the hash of a referenced event is not at hand here, so it is left empty.
    let ids = |ids: &[OwnedEventId]| {
        CanonicalJsonValue::Array(
            ids.iter()
                .map(|i| {
                    let id = CanonicalJsonValue::String(i.to_string());
                    if v1_ids {
                        let hash = CanonicalJsonObject::from([(
                            "sha256".to_owned(),
                            CanonicalJsonValue::String(String::new()),
                        )]);
                        CanonicalJsonValue::Array(vec![id, CanonicalJsonValue::Object(hash)])
                    } else {
                        id
                    }
                })
                .collect(),
        )
    };

    let mut object = CanonicalJsonObject::new();
    object.insert("auth_events".into(), ids(&ctx.auth_events));
    object.insert("content".into(), CanonicalJsonValue::Object(content));
    object.insert(
        "depth".into(),
        CanonicalJsonValue::Integer((ctx.depth as i64).try_into().map_err(|e| invalid(&e))?),
    );
    object.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(
            (ctx.origin_server_ts as i64)
                .try_into()
                .map_err(|e| invalid(&e))?,
        ),
    );
    object.insert("prev_events".into(), ids(&ctx.prev_events));
    if let Some(room_id) = ctx.room_id {
        object.insert(
            "room_id".into(),
            CanonicalJsonValue::String(room_id.to_string()),
        );
    }
    object.insert(
        "sender".into(),
        CanonicalJsonValue::String(ctx.sender.to_string()),
    );
    if let Some(state_key) = &template.state_key {
        object.insert(
            "state_key".into(),
            CanonicalJsonValue::String(state_key.clone()),
        );
    }
    object.insert(
        "type".into(),
        CanonicalJsonValue::String(template.kind.clone()),
    );
    if let Some(redacts) = &template.redacts {
        if !ctx.rules.redaction.content_field_redacts {
            object.insert(
                "redacts".into(),
                CanonicalJsonValue::String(redacts.to_string()),
            );
        }
    }

    if v1_ids {
        object.insert(
            "origin".into(),
            CanonicalJsonValue::String(key.server_name.to_string()),
        );
        insert_v1_event_id(&mut object, &key.server_name)?;
    }
    ruma::signatures::hash_and_sign_event(
        key.server_name.as_str(),
        &key.key_pair,
        &mut object,
        &ctx.rules.redaction,
    )
    .map_err(|e| match e {
        ruma::signatures::JsonError::PduTooLarge => RoomError::TooLarge,
        other => RoomError::Key(other.to_string()),
    })?;
    let event_id = crate::incoming::received_event_id(&object, ctx.rules)?;

    let json = serde_json::to_string(&object).map_err(|e| invalid(&e))?;
    if json.len() > MAX_PDU_BYTES {
        return Err(RoomError::TooLarge);
    }
    let raw = serde_json::value::RawValue::from_string(json).map_err(|e| invalid(&e))?;
    Pdu::from_json(event_id, raw).map_err(|e| invalid(&e))
}

/// Completes an event template a resident server handed out (`make_join`, `make_leave`,
/// `make_knock`): sets `origin`, `origin_server_ts` (and, in room versions 1 and 2, an
/// `event_id` of ours), then hashes and signs it. The template's DAG fields (`prev_events`,
/// `auth_events`, `depth`) are kept as given: the resident server knows the room, we do not.
pub fn complete_template(
    mut object: CanonicalJsonObject,
    rules: &RoomVersionRules,
    origin_server_ts: u64,
    key: &SigningKey,
) -> Result<Pdu, RoomError> {
    let invalid = |e: &dyn std::fmt::Display| RoomError::InvalidEvent(e.to_string());
    object.remove("signatures");
    object.remove("hashes");
    object.remove("unsigned");
    object.insert(
        "origin".into(),
        CanonicalJsonValue::String(key.server_name.to_string()),
    );
    object.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(
            (origin_server_ts as i64)
                .try_into()
                .map_err(|e| invalid(&e))?,
        ),
    );
    if rules.event_id_format == EventIdFormatVersion::V1 {
        insert_v1_event_id(&mut object, &key.server_name)?;
    }
    ruma::signatures::hash_and_sign_event(
        key.server_name.as_str(),
        &key.key_pair,
        &mut object,
        &rules.redaction,
    )
    .map_err(|e| match e {
        ruma::signatures::JsonError::PduTooLarge => RoomError::TooLarge,
        other => RoomError::Key(other.to_string()),
    })?;
    let event_id = crate::incoming::received_event_id(&object, rules)?;
    Pdu::from_canonical(event_id, &object).map_err(|e| invalid(&e))
}

/// Room versions 1 and 2 carry a server-chosen `event_id` in the event; ours is derived from a
/// hash of the whole event, content included (so it is unique), and names our server.
fn insert_v1_event_id(
    object: &mut CanonicalJsonObject,
    server: &ruma::ServerName,
) -> Result<(), RoomError> {
    let hash = ruma::signatures::content_hash(object)
        .map_err(|e| RoomError::InvalidEvent(e.to_string()))?
        .encode()
        .replace(['+', '/'], "");
    let id = format!("${}:{server}", &hash[..hash.len().min(24)]);
    object.insert("event_id".into(), CanonicalJsonValue::String(id));
    Ok(())
}

/// Adds our signature to an event another server built (an invite to one of our users, or a
/// join a restricted room's resident server co-signs), returning the new JSON.
pub fn co_sign(
    object: &mut CanonicalJsonObject,
    rules: &RoomVersionRules,
    key: &SigningKey,
) -> Result<(), RoomError> {
    ruma::signatures::sign_event(
        key.server_name.as_str(),
        &key.key_pair,
        object,
        &rules.redaction,
    )
    .map_err(|e| RoomError::Key(e.to_string()))
}
