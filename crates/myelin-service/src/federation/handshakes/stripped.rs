//! The stripped state another server sends with an invite (`invite_room_state`) or a knock
//! (`knock_room_state`), trimmed before we keep it. It is stored as given and shown to the
//! invitee by `/sync`, yet nothing vouches for it, so only what helps the user recognise the
//! room is kept: well-formed stripped events of the recommended types, of the invited room,
//! few and small.

use std::collections::HashSet;

use ruma::{RoomId, UserId};
use serde_json::{json, Value};

/// The most stripped state events kept per invite or knock.
pub(crate) const MAX_STRIPPED_EVENTS: usize = 50;
/// The most bytes (as JSON) of stripped state kept per invite or knock.
pub(crate) const MAX_STRIPPED_BYTES: usize = 64 * 1024;

/// The events of `given` worth keeping, as stripped state (`type`, `state_key`, `sender`,
/// `content`): one per type and state key (the first), of the recommended types (and the
/// inviter's own membership, which carries their display name), in `room_id` when they say
/// which room they are in, within [`MAX_STRIPPED_EVENTS`] and [`MAX_STRIPPED_BYTES`]. Anything
/// else is dropped. Full PDUs (as the spec asks for since v1.16) are reduced to stripped form.
pub(crate) fn remote_stripped_state(
    given: Vec<Value>,
    room_id: &RoomId,
    inviter: Option<&UserId>,
) -> Vec<Value> {
    let mut kept = Vec::new();
    let mut seen = HashSet::new();
    let mut bytes = 0;
    for event in given {
        if kept.len() == MAX_STRIPPED_EVENTS {
            break;
        }
        let Some(stripped) = stripped_event(&event, room_id, inviter) else {
            continue;
        };
        let size = stripped.to_string().len();
        if bytes + size > MAX_STRIPPED_BYTES {
            continue;
        }
        let key = (stripped["type"].clone(), stripped["state_key"].clone());
        if !seen.insert(key) {
            continue;
        }
        bytes += size;
        kept.push(stripped);
    }
    kept
}

/// One entry as stripped state, if it is one we keep.
fn stripped_event(event: &Value, room_id: &RoomId, inviter: Option<&UserId>) -> Option<Value> {
    let kind = event.get("type")?.as_str()?;
    let state_key = event.get("state_key")?.as_str()?;
    let sender = UserId::parse(event.get("sender")?.as_str()?).ok()?;
    let content = event.get("content").filter(|c| c.is_object())?;
    if let Some(given_room) = event.get("room_id") {
        if given_room.as_str() != Some(room_id.as_str()) {
            return None;
        }
    }
    let recommended = crate::format::STRIPPED_STATE_TYPES.contains(&kind) && state_key.is_empty();
    let inviters_membership =
        kind == "m.room.member" && inviter.is_some_and(|u| u.as_str() == state_key && *u == sender);
    if !recommended && !inviters_membership {
        return None;
    }
    Some(json!({
        "type": kind,
        "state_key": state_key,
        "sender": sender,
        "content": content,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> &'static RoomId {
        <&RoomId>::try_from("!room:remote.example").expect("room ID")
    }

    fn event(kind: &str, content: Value) -> Value {
        json!({ "type": kind, "state_key": "", "sender": "@mallory:remote.example", "content": content })
    }

    #[test]
    fn keeps_recommended_types_once_in_stripped_form() {
        let mut full_create = event("m.room.create", json!({ "room_version": "10" }));
        full_create["room_id"] = json!("!room:remote.example");
        full_create["signatures"] = json!({ "remote.example": { "ed25519:a": "s" } });
        let given = vec![
            full_create,
            event("m.room.name", json!({ "name": "first" })),
            event("m.room.name", json!({ "name": "second" })),
            event("m.room.power_levels", json!({})),
            event("com.example.anything", json!({})),
        ];
        let kept = remote_stripped_state(given, room(), None);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept[0]["type"], "m.room.create");
        assert!(kept[0].get("signatures").is_none());
        assert_eq!(kept[1]["content"]["name"], "first");
    }

    #[test]
    fn drops_malformed_entries_and_other_rooms() {
        let mut other_room = event("m.room.topic", json!({ "topic": "x" }));
        other_room["room_id"] = json!("!other:remote.example");
        let mut member = event("m.room.member", json!({ "membership": "join" }));
        member["state_key"] = json!("@mallory:remote.example");
        let mut someone_else = member.clone();
        someone_else["state_key"] = json!("@eve:remote.example");
        let given = vec![
            other_room,
            json!("not an object"),
            json!({ "type": "m.room.name", "state_key": "", "sender": "nobody", "content": {} }),
            json!({ "type": "m.room.name", "state_key": "", "sender": "@a:b.c", "content": 1 }),
            json!({ "type": "m.room.name", "state_key": 3, "sender": "@a:b.c", "content": {} }),
            someone_else,
            member,
        ];
        let inviter = <&UserId>::try_from("@mallory:remote.example").expect("user");
        let kept = remote_stripped_state(given, room(), Some(inviter));
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0]["state_key"], "@mallory:remote.example");
    }

    #[test]
    fn stays_within_the_byte_budget() {
        let big = "x".repeat(MAX_STRIPPED_BYTES);
        let given = vec![
            event("m.room.topic", json!({ "topic": big })),
            event("m.room.name", json!({ "name": "small" })),
        ];
        let kept = remote_stripped_state(given, room(), None);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0]["type"], "m.room.name");
        let total: usize = kept.iter().map(|e| e.to_string().len()).sum();
        assert!(total <= MAX_STRIPPED_BYTES);
    }
}
