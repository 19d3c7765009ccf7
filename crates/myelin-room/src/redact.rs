//! Redaction: the per-version algorithm from ruma applied to a stored PDU.

use myelin_core::Pdu;
use ruma::{canonical_json::redact, room_version_rules::RoomVersionRules};
use serde_json::value::RawValue as RawJsonValue;

use crate::RoomError;

/// The redacted form of `pdu`'s JSON (signatures and hashes kept, content stripped to what the
/// room version preserves).
pub fn redact_pdu_json(
    pdu: &Pdu,
    rules: &RoomVersionRules,
) -> Result<Box<RawJsonValue>, RoomError> {
    let object = pdu
        .to_canonical()
        .map_err(|e| RoomError::InvalidEvent(e.to_string()))?;
    let redacted = redact(object, &rules.redaction, None)
        .map_err(|e| RoomError::InvalidEvent(e.to_string()))?;
    serde_json::value::to_raw_value(&redacted).map_err(|e| RoomError::InvalidEvent(e.to_string()))
}
