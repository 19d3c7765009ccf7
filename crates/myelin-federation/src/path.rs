//! Building the paths of outgoing federation requests: every identifier put in a path is
//! percent-encoded here, in one place, and each remote endpoint has its function.

use ruma::{EventId, RoomAliasId, RoomId, UserId};

const V1: &str = "/_matrix/federation/v1";
const V2: &str = "/_matrix/federation/v2";

/// `PUT /v1/send/{txnId}`.
pub fn send_transaction(txn_id: &str) -> String {
    format!("{V1}/send/{}", encode_segment(txn_id))
}

/// `GET /v1/make_{join,knock,leave}/{roomId}/{userId}`, offering `versions` (`ver=`), if any.
pub fn make_membership(
    membership: &str,
    room_id: &RoomId,
    user_id: &UserId,
    versions: &[&str],
) -> String {
    let mut path = format!(
        "{V1}/make_{membership}/{}/{}",
        encode_segment(room_id.as_str()),
        encode_segment(user_id.as_str())
    );
    for (i, version) in versions.iter().enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        path.push_str("ver=");
        path.push_str(&encode_segment(version));
    }
    path
}

/// `PUT /v2/send_join/{roomId}/{eventId}`.
pub fn send_join(room_id: &RoomId, event_id: &EventId) -> String {
    room_event_path(V2, "send_join", room_id, event_id)
}

/// `PUT /v1/send_knock/{roomId}/{eventId}`.
pub fn send_knock(room_id: &RoomId, event_id: &EventId) -> String {
    room_event_path(V1, "send_knock", room_id, event_id)
}

/// `PUT /v2/send_leave/{roomId}/{eventId}`.
pub fn send_leave(room_id: &RoomId, event_id: &EventId) -> String {
    room_event_path(V2, "send_leave", room_id, event_id)
}

/// `PUT /v2/invite/{roomId}/{eventId}`.
pub fn invite(room_id: &RoomId, event_id: &EventId) -> String {
    room_event_path(V2, "invite", room_id, event_id)
}

/// `PUT /v1/exchange_third_party_invite/{roomId}`.
pub fn exchange_third_party_invite(room_id: &RoomId) -> String {
    format!(
        "{V1}/exchange_third_party_invite/{}",
        encode_segment(room_id.as_str())
    )
}

/// `GET /v1/event_auth/{roomId}/{eventId}`.
pub fn event_auth(room_id: &RoomId, event_id: &EventId) -> String {
    room_event_path(V1, "event_auth", room_id, event_id)
}

/// `GET /v1/state/{roomId}?event_id=`.
pub fn state(room_id: &RoomId, event_id: &EventId) -> String {
    format!(
        "{V1}/state/{}?event_id={}",
        encode_segment(room_id.as_str()),
        encode_segment(event_id.as_str())
    )
}

/// `POST /v1/get_missing_events/{roomId}`.
pub fn get_missing_events(room_id: &RoomId) -> String {
    format!(
        "{V1}/get_missing_events/{}",
        encode_segment(room_id.as_str())
    )
}

/// `GET /v1/backfill/{roomId}?v=…&limit=`.
pub fn backfill<'a>(
    room_id: &RoomId,
    from: impl IntoIterator<Item = &'a EventId>,
    limit: usize,
) -> String {
    let mut path = format!("{V1}/backfill/{}?", encode_segment(room_id.as_str()));
    for id in from {
        path.push_str("v=");
        path.push_str(&encode_segment(id.as_str()));
        path.push('&');
    }
    path.push_str(&format!("limit={limit}"));
    path
}

/// `GET /v1/timestamp_to_event/{roomId}?ts=&dir=` (`dir` is `f` or `b`).
pub fn timestamp_to_event(room_id: &RoomId, ts: u64, forward: bool) -> String {
    let dir = if forward { "f" } else { "b" };
    format!(
        "{V1}/timestamp_to_event/{}?ts={ts}&dir={dir}",
        encode_segment(room_id.as_str())
    )
}

/// `GET /v1/hierarchy/{roomId}?suggested_only=`.
pub fn hierarchy(room_id: &RoomId, suggested_only: bool) -> String {
    format!(
        "{V1}/hierarchy/{}?suggested_only={suggested_only}",
        encode_segment(room_id.as_str())
    )
}

/// `GET /v1/query/directory?room_alias=`.
pub fn query_directory(alias: &RoomAliasId) -> String {
    format!(
        "{V1}/query/directory?room_alias={}",
        encode_segment(alias.as_str())
    )
}

/// `GET /v1/query/profile?user_id=` (and `&field=` for one field).
pub fn query_profile(user_id: &UserId, field: Option<&str>) -> String {
    let mut path = format!(
        "{V1}/query/profile?user_id={}",
        encode_segment(user_id.as_str())
    );
    if let Some(field) = field {
        path.push_str("&field=");
        path.push_str(&encode_segment(field));
    }
    path
}

/// `GET /v1/user/devices/{userId}`.
pub fn user_devices(user_id: &UserId) -> String {
    format!("{V1}/user/devices/{}", encode_segment(user_id.as_str()))
}

/// `GET` and `POST /v1/publicRooms`.
pub const PUBLIC_ROOMS: &str = "/_matrix/federation/v1/publicRooms";
/// `POST /v1/user/keys/query`.
pub const USER_KEYS_QUERY: &str = "/_matrix/federation/v1/user/keys/query";
/// `POST /v1/user/keys/claim`.
pub const USER_KEYS_CLAIM: &str = "/_matrix/federation/v1/user/keys/claim";

fn room_event_path(version: &str, endpoint: &str, room_id: &RoomId, event_id: &EventId) -> String {
    format!(
        "{version}/{endpoint}/{}/{}",
        encode_segment(room_id.as_str()),
        encode_segment(event_id.as_str())
    )
}

/// `segment` percent-encoded for one path segment (or query value): everything but the
/// unreserved characters of RFC 3986, so `!`, `$`, `@`, `:`, `#` and `/` in Matrix identifiers
/// never change the path's shape.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn identifiers_become_one_segment() {
        assert_eq!(encode_segment("!room:example.org"), "%21room%3Aexample.org");
        assert_eq!(encode_segment("$a/b+c"), "%24a%2Fb%2Bc");
        assert_eq!(encode_segment("@ü:x"), "%40%C3%BC%3Ax");
        assert_eq!(encode_segment("plain-_.~"), "plain-_.~");
    }

    #[test]
    fn endpoint_paths() {
        use ruma::{event_id, room_id, user_id};
        let room = room_id!("!r:x.org");
        let event = event_id!("$e/1");
        assert_eq!(
            super::send_join(room, event),
            "/_matrix/federation/v2/send_join/%21r%3Ax.org/%24e%2F1"
        );
        assert_eq!(
            super::make_membership("join", room, user_id!("@u:x.org"), &["10", "11"]),
            "/_matrix/federation/v1/make_join/%21r%3Ax.org/%40u%3Ax.org?ver=10&ver=11"
        );
        assert_eq!(
            super::backfill(room, [event], 5),
            "/_matrix/federation/v1/backfill/%21r%3Ax.org?v=%24e%2F1&limit=5"
        );
        assert_eq!(
            super::timestamp_to_event(room, 7, false),
            "/_matrix/federation/v1/timestamp_to_event/%21r%3Ax.org?ts=7&dir=b"
        );
    }
}
