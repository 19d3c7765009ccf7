//! Event filters (`POST /user/{userId}/filter`, `filter=` on `/sync` and `/messages`).

use serde::Deserialize;
use serde_json::Value;

/// `RoomEventFilter` / `StateFilter`, the fields the server acts on.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoomEventFilter {
    pub limit: Option<u64>,
    pub types: Option<Vec<String>>,
    #[serde(default)]
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    #[serde(default)]
    pub not_senders: Vec<String>,
    pub rooms: Option<Vec<String>>,
    #[serde(default)]
    pub not_rooms: Vec<String>,
    #[serde(default)]
    pub lazy_load_members: bool,
    #[serde(default)]
    pub include_redundant_members: bool,
    /// Only events with a relation from one of these senders (spec: "Filtering" in
    /// "Threading").
    pub related_by_senders: Option<Vec<String>>,
    /// Only events with a relation of one of these types.
    pub related_by_rel_types: Option<Vec<String>>,
    /// Unread counts per thread (`unread_thread_notifications` in `/sync`), the room's own
    /// counts then covering the main timeline only.
    #[serde(default)]
    pub unread_thread_notifications: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventFilter {
    pub limit: Option<u64>,
    pub types: Option<Vec<String>>,
    #[serde(default)]
    pub not_types: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoomFilter {
    pub rooms: Option<Vec<String>>,
    #[serde(default)]
    pub not_rooms: Vec<String>,
    #[serde(default)]
    pub include_leave: bool,
    #[serde(default)]
    pub timeline: RoomEventFilter,
    #[serde(default)]
    pub state: RoomEventFilter,
    #[serde(default)]
    pub ephemeral: RoomEventFilter,
    #[serde(default)]
    pub account_data: RoomEventFilter,
}

/// The top-level `Filter`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub room: RoomFilter,
    #[serde(default)]
    pub presence: EventFilter,
    #[serde(default)]
    pub account_data: EventFilter,
}

/// Matches `pattern` with a trailing `*` wildcard, as the spec's filters do.
fn glob(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

fn type_allowed(types: &Option<Vec<String>>, not_types: &[String], kind: &str) -> bool {
    !not_types.iter().any(|p| glob(p, kind))
        && types
            .as_ref()
            .is_none_or(|t| t.iter().any(|p| glob(p, kind)))
}

impl RoomEventFilter {
    pub fn allows(&self, kind: &str, sender: &str) -> bool {
        type_allowed(&self.types, &self.not_types, kind)
            && !self.not_senders.iter().any(|s| s == sender)
            && self
                .senders
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| x == sender))
    }

    pub fn allows_room(&self, room_id: &str) -> bool {
        !self.not_rooms.iter().any(|r| r == room_id)
            && self
                .rooms
                .as_ref()
                .is_none_or(|r| r.iter().any(|x| x == room_id))
    }

    /// Whether the filter keeps only events that have certain relations.
    pub fn filters_relations(&self) -> bool {
        self.related_by_senders.is_some() || self.related_by_rel_types.is_some()
    }
}

impl EventFilter {
    pub fn allows(&self, kind: &str) -> bool {
        type_allowed(&self.types, &self.not_types, kind)
    }
}

impl RoomFilter {
    pub fn allows_room(&self, room_id: &str) -> bool {
        !self.not_rooms.iter().any(|r| r == room_id)
            && self
                .rooms
                .as_ref()
                .is_none_or(|r| r.iter().any(|x| x == room_id))
    }
}

impl Filter {
    /// Parses a filter definition; unknown fields are ignored as the spec allows.
    pub fn from_json(value: &Value) -> Result<Filter, serde_json::Error> {
        serde_json::from_value(value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_exclusions() {
        let f: RoomEventFilter = serde_json::from_value(
            serde_json::json!({"types": ["m.room.*"], "not_types": ["m.room.member"]}),
        )
        .unwrap();
        assert!(f.allows("m.room.message", "@a:x"));
        assert!(!f.allows("m.room.member", "@a:x"));
        assert!(!f.allows("org.custom", "@a:x"));
    }
}
