//! Which room versions this server can create and join, as data.

use ruma::{room_version_rules::RoomVersionRules, RoomVersionId};

use crate::RoomError;

/// Versions we create rooms in: every version of the spec. Each version's event format, event
/// IDs, auth rules and redaction algorithm are ruma's `RoomVersionRules` for it; state resolution
/// is v1 (`resolve_v1.rs`) for version 1 and ruma's v2 for the others.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
];

/// The rules of a supported room version.
pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules, RoomError> {
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(RoomError::UnsupportedVersion(version.to_string()));
    }
    version
        .rules()
        .ok_or_else(|| RoomError::UnsupportedVersion(version.to_string()))
}
