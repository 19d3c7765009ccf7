//! Membership templates from another server (`make_join`, `make_knock`, `make_leave`) and what
//! they must be before we sign one. Whatever we complete and sign carries our server's
//! signature, so a hostile resident server that could choose the room, the user or the
//! membership would get a membership of ours it can replay anywhere (a knock that takes a user
//! out of a private room, a leave for a room it is not in). Pure functions.

use ruma::{
    room_version_rules::RoomVersionRules, CanonicalJsonObject, CanonicalJsonValue, RoomId,
    RoomVersionId, ServerName, UserId,
};
use serde_json::value::RawValue as RawJsonValue;

use crate::{ServiceError, ServiceResult};

/// Room versions we can join on other servers (the `ver` of `make_join` / `make_knock`).
pub(super) const JOINABLE_VERSIONS: &[&str] = &[
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
];

/// The fields of a template we keep; `origin`, `origin_server_ts`, hashes, signatures and (room
/// versions 1 and 2) the event ID are ours to set, and anything else is not a server's to add
/// to an event we sign.
const TEMPLATE_FIELDS: &[&str] = &[
    "auth_events",
    "content",
    "depth",
    "prev_events",
    "room_id",
    "sender",
    "state_key",
    "type",
];

/// The template `server` answered for `user_id`'s `membership` in `room_id`, checked and
/// trimmed to [`TEMPLATE_FIELDS`], with its room version and that version's rules. Refused
/// (`Remote`, so the next server is tried) unless the room, type, sender, state key and
/// membership are exactly the ones asked for and the room version is one we join.
pub(super) fn checked_template(
    event: &RawJsonValue,
    room_version: Option<&RoomVersionId>,
    server: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
    membership: &str,
) -> ServiceResult<(CanonicalJsonObject, RoomVersionId, RoomVersionRules)> {
    let refuse = |why: String| {
        ServiceError::Remote(format!(
            "{server} answered make_{membership} for {user_id} in {room_id} with {why}; \
             not signed"
        ))
    };
    // The spec makes `room_version` optional in old answers, meaning version 1.
    let version = room_version.cloned().unwrap_or(RoomVersionId::V1);
    if !JOINABLE_VERSIONS.contains(&version.as_str()) {
        return Err(refuse(format!(
            "room version {version}, which we do not join"
        )));
    }
    let rules = version
        .rules()
        .ok_or_else(|| refuse(format!("room version {version}, which we do not know")))?;
    let template: CanonicalJsonObject = serde_json::from_str(event.get())
        .map_err(|e| refuse(format!("a template that is not a JSON object ({e})")))?;
    let string = |field: &str| match template.get(field) {
        Some(CanonicalJsonValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let expect = |field: &str, wanted: &str| {
        let given = string(field);
        if given == Some(wanted) {
            Ok(())
        } else {
            Err(refuse(format!(
                "a template whose `{field}` is {} instead of {wanted}",
                given.unwrap_or("missing")
            )))
        }
    };
    expect("type", "m.room.member")?;
    expect("room_id", room_id.as_str())?;
    expect("sender", user_id.as_str())?;
    expect("state_key", user_id.as_str())?;
    let given_membership = match template.get("content") {
        Some(CanonicalJsonValue::Object(content)) => match content.get("membership") {
            Some(CanonicalJsonValue::String(m)) => Some(m.as_str()),
            _ => None,
        },
        _ => None,
    };
    if given_membership != Some(membership) {
        return Err(refuse(format!(
            "a template whose membership is {} instead of {membership}",
            given_membership.unwrap_or("missing")
        )));
    }
    let template = template
        .into_iter()
        .filter(|(k, _)| TEMPLATE_FIELDS.contains(&k.as_str()))
        .collect();
    Ok((template, version, rules))
}

/// The `join_authorised_via_users_server` a restricted room's template names, if it is a user ID
/// (the resident server that will co-sign our join; only a user ID is carried over).
pub(super) fn authorising_user(template: &CanonicalJsonObject) -> Option<String> {
    let Some(CanonicalJsonValue::Object(content)) = template.get("content") else {
        return None;
    };
    match content.get("join_authorised_via_users_server") {
        Some(CanonicalJsonValue::String(user)) if UserId::parse(user.as_str()).is_ok() => {
            Some(user.clone())
        }
        _ => None,
    }
}

/// Whether `returned` (a resident server's answer to `send_join` for a restricted room) is `ours`
/// with signatures added and nothing else changed: no field is added, removed or altered, and
/// our own signatures are still there.
pub(super) fn same_event_more_signatures(
    ours: &CanonicalJsonObject,
    returned: &CanonicalJsonObject,
    our_server: &ServerName,
) -> bool {
    let without_signatures = |o: &CanonicalJsonObject| -> CanonicalJsonObject {
        o.iter()
            .filter(|(k, _)| *k != "signatures" && *k != "unsigned")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let signatures_of = |o: &CanonicalJsonObject| match o.get("signatures") {
        Some(CanonicalJsonValue::Object(s)) => s.get(our_server.as_str()).cloned(),
        _ => None,
    };
    without_signatures(ours) == without_signatures(returned)
        && signatures_of(ours).is_some()
        && signatures_of(ours) == signatures_of(returned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(value: serde_json::Value) -> Box<RawJsonValue> {
        serde_json::value::to_raw_value(&value).expect("raw JSON")
    }

    fn good() -> serde_json::Value {
        json!({
            "type": "m.room.member",
            "room_id": "!room:remote.example",
            "sender": "@alice:me.example",
            "state_key": "@alice:me.example",
            "content": { "membership": "knock" },
            "prev_events": ["$prev"],
            "auth_events": ["$create"],
            "depth": 5,
            "origin": "remote.example",
            "origin_server_ts": 7,
            "hashes": { "sha256": "x" },
            "unsigned": { "age": 1 },
            "redacts": "$other",
        })
    }

    fn check(
        template: serde_json::Value,
        version: Option<&str>,
    ) -> ServiceResult<CanonicalJsonObject> {
        let server = <&ServerName>::try_from("remote.example").expect("server name");
        let room = <&RoomId>::try_from("!room:remote.example").expect("room ID");
        let user = <&UserId>::try_from("@alice:me.example").expect("user ID");
        let version = version.map(|v| RoomVersionId::try_from(v).expect("version"));
        checked_template(
            &raw(template),
            version.as_ref(),
            server,
            room,
            user,
            "knock",
        )
        .map(|(t, _, _)| t)
    }

    #[test]
    fn a_template_for_what_was_asked_is_kept_without_foreign_fields() {
        let template = check(good(), Some("10")).expect("accepted");
        let mut keys: Vec<&str> = template.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, TEMPLATE_FIELDS);
    }

    #[test]
    fn a_template_for_anything_else_is_refused() {
        for (field, value) in [
            ("room_id", json!("!private:me.example")),
            ("sender", json!("@bob:me.example")),
            ("state_key", json!("@bob:me.example")),
            ("type", json!("m.room.message")),
            ("content", json!({ "membership": "leave" })),
            ("content", json!({})),
            ("room_id", json!(null)),
        ] {
            let mut template = good();
            template[field] = value.clone();
            let refused = check(template, Some("10"));
            assert!(
                matches!(refused, Err(ServiceError::Remote(_))),
                "{field} = {value}: {refused:?}"
            );
        }
        for version in ["99", "org.example.custom"] {
            assert!(check(good(), Some(version)).is_err(), "version {version}");
        }
        assert!(check(json!([1]), Some("10")).is_err());
    }

    #[test]
    fn only_our_event_with_added_signatures_passes_as_the_signed_join() {
        let server = <&ServerName>::try_from("me.example").expect("server name");
        let ours: CanonicalJsonObject = serde_json::from_value(json!({
            "type": "m.room.member",
            "content": { "membership": "join" },
            "signatures": { "me.example": { "ed25519:a": "sig" } },
        }))
        .expect("object");
        let mut cosigned = ours.clone();
        let value =
            json!({ "me.example": { "ed25519:a": "sig" }, "r.example": { "ed25519:b": "s" } });
        cosigned.insert(
            "signatures".into(),
            serde_json::from_value(value).expect("signatures"),
        );
        assert!(same_event_more_signatures(&ours, &cosigned, server));
        let mut changed = cosigned.clone();
        changed.insert(
            "content".into(),
            serde_json::from_value(json!({ "membership": "join", "displayname": "x" }))
                .expect("content"),
        );
        assert!(!same_event_more_signatures(&ours, &changed, server));
        let mut stripped = cosigned;
        stripped.insert(
            "signatures".into(),
            serde_json::from_value(json!({ "r.example": { "ed25519:b": "s" } })).expect("sigs"),
        );
        assert!(!same_event_more_signatures(&ours, &stripped, server));
    }
}
