//! What a suspended account may not do (spec v1.18 "Account suspension"; the same actions
//! Synapse refuses): take part in rooms (send, set state, create, join, knock, invite, kick,
//! ban, upgrade, publish), change its profile, or upload media. Reading, leaving, redacting its
//! own events, receipts, encryption upkeep, account data and logging out stay open. Decided
//! here, once, when the request is authenticated.

use axum::http::Method;

use crate::endpoint_list::{endpoint_after, listed, EndpointList};

const SUSPENDED_REFUSED: EndpointList = &[
    ("PUT", "rooms/*/send/*/*"),
    ("PUT", "rooms/*/state/*"),
    ("PUT", "rooms/*/state/*/*"),
    ("POST", "createRoom"),
    ("POST", "join/*"),
    ("POST", "rooms/*/join"),
    ("POST", "knock/*"),
    ("POST", "rooms/*/invite"),
    ("POST", "rooms/*/kick"),
    ("POST", "rooms/*/ban"),
    ("POST", "rooms/*/unban"),
    ("POST", "rooms/*/upgrade"),
    ("PUT", "directory/room/*"),
    ("PUT", "directory/list/room/*"),
    ("PUT", "profile/*/*"),
    ("PUT", "rooms/*/typing/*"),
    ("POST", "upload"),
    ("POST", "create"),
    ("PUT", "upload/*/*"),
];

/// Whether a suspended account is refused `method path`.
pub fn suspended_refused(method: &Method, path: &str) -> bool {
    endpoint_after(path, &["/_matrix/client/", "/_matrix/media/"])
        .is_some_and(|endpoint| listed(SUSPENDED_REFUSED, method, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acting_is_refused_reading_and_leaving_are_not() {
        for (method, path) in [
            (
                Method::PUT,
                "/_matrix/client/v3/rooms/!a:b/send/m.room.message/t",
            ),
            (Method::POST, "/_matrix/client/v3/createRoom"),
            (Method::POST, "/_matrix/client/v3/join/%23a:b"),
            (Method::PUT, "/_matrix/client/v3/profile/@u:b/displayname"),
            (Method::POST, "/_matrix/media/v3/upload"),
            (
                Method::PUT,
                "/_matrix/client/v3/rooms/!a:b/state/m.room.name/",
            ),
        ] {
            assert!(suspended_refused(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (Method::GET, "/_matrix/client/v3/sync"),
            (Method::POST, "/_matrix/client/v3/rooms/!a:b/leave"),
            (Method::PUT, "/_matrix/client/v3/rooms/!a:b/redact/$e/t"),
            (Method::POST, "/_matrix/client/v3/logout"),
            (Method::POST, "/_matrix/client/v3/keys/upload"),
        ] {
            assert!(!suspended_refused(&method, path), "{method} {path}");
        }
    }
}
