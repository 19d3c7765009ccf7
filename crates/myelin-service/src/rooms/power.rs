//! Power levels as the client-server API reads them (the auth rules do the rest).

use ruma::events::StateEventType;
use ruma::UserId;
use serde_json::Value;

use super::RoomState;

impl RoomState {
    /// The user's power level; room creators of versions with privileged creators rank above all.
    pub fn user_power(&self, user_id: &UserId) -> i64 {
        if self.rules.authorization.explicitly_privilege_room_creators && self.is_creator(user_id) {
            return i64::MAX;
        }
        let Some(pl) = self.content(&StateEventType::RoomPowerLevels, "") else {
            // Without power levels, the creator has 100 and everyone else 0.
            return if self.is_creator(user_id) { 100 } else { 0 };
        };
        pl.get("users")
            .and_then(|u| u.get(user_id.as_str()))
            .and_then(as_int)
            .or_else(|| pl.get("users_default").and_then(as_int))
            .unwrap_or(0)
    }

    /// The level a named action (`redact`, `kick`, `ban`, `invite`) needs.
    pub fn action_level(&self, action: &str) -> i64 {
        let default = if action == "invite" { 0 } else { 50 };
        self.content(&StateEventType::RoomPowerLevels, "")
            .and_then(|pl| pl.get(action).and_then(as_int))
            .unwrap_or(default)
    }

    /// The level needed to send a state event of type `kind`.
    pub fn state_event_level(&self, kind: &str) -> i64 {
        let Some(pl) = self.content(&StateEventType::RoomPowerLevels, "") else {
            return 50;
        };
        pl.get("events")
            .and_then(|e| e.get(kind))
            .and_then(as_int)
            .or_else(|| pl.get("state_default").and_then(as_int))
            .unwrap_or(50)
    }

    fn is_creator(&self, user_id: &UserId) -> bool {
        let Some(create) = self.get(&StateEventType::RoomCreate, "") else {
            return false;
        };
        if create.pdu.sender == user_id {
            return true;
        }
        let content = create.pdu.content_value();
        content
            .get("additional_creators")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|c| c.as_str() == Some(user_id.as_str())))
    }
}

/// Power levels may be integers or (in old rooms) numeric strings.
fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}
