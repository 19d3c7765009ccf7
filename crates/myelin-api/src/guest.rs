//! What a guest account may call: the endpoints the spec's "Guest access" module lists, plus
//! the few Synapse also opens to guests that clients need to run (whoami, capabilities, filters,
//! account data, devices, media downloads). Everything else answers 403
//! `M_GUEST_ACCESS_FORBIDDEN`, decided here, once, when the request is authenticated.

use axum::http::Method;

use crate::endpoint_list::{endpoint_after, listed, EndpointList};

const GUEST_ENDPOINTS: EndpointList = &[
    // Reading rooms (guests read `world_readable` rooms and those they joined).
    ("GET", "rooms/*/state"),
    ("GET", "rooms/*/state/*"),
    ("GET", "rooms/*/state/*/*"),
    ("GET", "rooms/*/context/*"),
    ("GET", "rooms/*/event/*"),
    ("GET", "rooms/*/messages"),
    ("GET", "rooms/*/members"),
    ("GET", "rooms/*/initialSync"),
    ("GET", "sync"),
    ("GET", "events"),
    ("GET", "events/*"),
    ("GET", "publicRooms"),
    ("GET", "directory/room/*"),
    // Taking part.
    ("POST", "rooms/*/join"),
    ("POST", "join/*"),
    ("POST", "rooms/*/leave"),
    ("PUT", "rooms/*/send/m.room.message/*"),
    ("PUT", "rooms/*/typing/*"),
    ("POST", "rooms/*/receipt/*/*"),
    ("POST", "rooms/*/read_markers"),
    ("PUT", "sendToDevice/*/*"),
    // Own profile and presence.
    ("GET", "profile/*"),
    ("GET", "profile/*/*"),
    ("PUT", "profile/*/displayname"),
    ("GET", "presence/*/status"),
    ("PUT", "presence/*/status"),
    // End-to-end encryption.
    ("POST", "keys/upload"),
    ("POST", "keys/query"),
    ("POST", "keys/claim"),
    ("GET", "keys/changes"),
    ("GET", "devices"),
    ("GET", "devices/*"),
    ("PUT", "devices/*"),
    // What a client needs to run at all.
    ("GET", "account/whoami"),
    ("GET", "capabilities"),
    ("POST", "logout"),
    ("POST", "user/*/filter"),
    ("GET", "user/*/filter/*"),
    ("GET", "user/*/account_data/*"),
    ("PUT", "user/*/account_data/*"),
    ("GET", "user/*/rooms/*/account_data/*"),
    ("PUT", "user/*/rooms/*/account_data/*"),
    ("GET", "user/*/rooms/*/tags"),
    ("PUT", "user/*/rooms/*/tags/*"),
    ("DELETE", "user/*/rooms/*/tags/*"),
    ("GET", "voip/turnServer"),
    ("GET", "media/config"),
    ("GET", "media/download/*/*"),
    ("GET", "media/download/*/*/*"),
    ("GET", "media/thumbnail/*/*"),
];

/// Whether a guest may call `method path` (`path` as requested, `/_matrix/client/v3/...`).
pub fn guest_may_call(method: &Method, path: &str) -> bool {
    endpoint_after(path, &["/_matrix/client/"])
        .is_some_and(|endpoint| listed(GUEST_ENDPOINTS, method, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_list_and_nothing_else() {
        let allowed = [
            (Method::GET, "/_matrix/client/v3/sync"),
            (Method::GET, "/_matrix/client/r0/rooms/!a:b/messages"),
            (
                Method::PUT,
                "/_matrix/client/v3/rooms/!a:b/send/m.room.message/t1",
            ),
            (Method::POST, "/_matrix/client/v3/join/%23room:b"),
            (Method::GET, "/_matrix/client/v1/media/download/s/m"),
            (
                Method::GET,
                "/_matrix/client/v3/rooms/!a:b/state/m.room.name/",
            ),
        ];
        for (method, path) in allowed {
            assert!(guest_may_call(&method, path), "{method} {path}");
        }
        let refused = [
            (Method::POST, "/_matrix/client/v3/createRoom"),
            (
                Method::PUT,
                "/_matrix/client/v3/rooms/!a:b/send/m.room.encrypted/t1",
            ),
            (
                Method::PUT,
                "/_matrix/client/v3/rooms/!a:b/state/m.room.name/",
            ),
            (Method::POST, "/_matrix/client/v3/account/password"),
            (Method::GET, "/_matrix/client/v3/sync/extra"),
            (Method::POST, "/_matrix/media/v3/upload"),
            (Method::POST, "/_matrix/client/v3/rooms/!a:b/invite"),
        ];
        for (method, path) in refused {
            assert!(!guest_may_call(&method, path), "{method} {path}");
        }
    }
}
