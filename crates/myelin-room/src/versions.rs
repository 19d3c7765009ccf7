//! Which room versions this server can create and join, as data.

use ruma::{room_version_rules::RoomVersionRules, RoomVersionId};

use crate::RoomError;

/// Versions we create rooms in. Each version's event format, event IDs, auth rules and
/// redaction algorithm are ruma's `RoomVersionRules` for it. Version 1 is joined but not created:
/// its forks need state resolution v1, which is not written yet.
pub const SUPPORTED_VERSIONS: &[&str] = &["2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];

/// The rules of a supported room version.
pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules, RoomError> {
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(RoomError::UnsupportedVersion(version.to_string()));
    }
    version
        .rules()
        .ok_or_else(|| RoomError::UnsupportedVersion(version.to_string()))
}
