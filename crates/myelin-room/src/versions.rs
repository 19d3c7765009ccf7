//! Which room versions this server can create and join, as data.

use ruma::{room_version_rules::RoomVersionRules, RoomVersionId};

use crate::RoomError;

/// Versions we create rooms in (all use state resolution v2 and canonical JSON).
pub const SUPPORTED_VERSIONS: &[&str] = &["10", "11", "12"];

/// The rules of a supported room version.
pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules, RoomError> {
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(RoomError::UnsupportedVersion(version.to_string()));
    }
    version
        .rules()
        .ok_or_else(|| RoomError::UnsupportedVersion(version.to_string()))
}
