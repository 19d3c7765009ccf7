//! Guest access over HTTP: `register?kind=guest`, the endpoints a guest may and may not call,
//! `m.room.guest_access` on joins, reading `world_readable` rooms, upgrading a guest to a full
//! account, and the switch in config.

use myelin_testing::http::{assert_err, assert_ok, register, room_path};
use myelin_testing::{enc, TestServer};
use serde_json::{json, Value};

async fn guest(s: &TestServer) -> (String, String) {
    let (status, body) = s
        .post("/_matrix/client/v3/register?kind=guest", None, &json!({}))
        .await;
    assert_eq!(status, 200, "guest registration: {body}");
    let user_id = body["user_id"].as_str().expect("user_id").to_owned();
    let token = body["access_token"].as_str().expect("token").to_owned();
    (user_id, token)
}

async fn set_guest_access(s: &TestServer, token: &str, room: &str, value: &str) {
    assert_ok(
        &s.put(
            &room_path(room, "state/m.room.guest_access/"),
            Some(token),
            &json!({ "guest_access": value }),
        )
        .await,
        "set m.room.guest_access",
    );
}

#[tokio::test]
async fn guests_do_what_the_spec_lists_and_nothing_more() {
    let s = TestServer::start().await;
    let alice = register(&s, "alice").await;
    let at = alice.token().expect("token");
    let (guest_id, gt) = guest(&s).await;
    let localpart = guest_id.trim_start_matches('@').split(':').next().unwrap();
    assert!(localpart.bytes().all(|b| b.is_ascii_digit()), "{guest_id}");
    let whoami = s.get("/_matrix/client/v3/account/whoami", Some(&gt)).await;
    assert_eq!(whoami.1["is_guest"], json!(true));

    assert_err(
        &s.post("/_matrix/client/v3/createRoom", Some(&gt), &json!({}))
            .await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
        "a guest creates a room",
    );

    let open = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    assert_err(
        &s.post(
            &format!("/_matrix/client/v3/join/{}", enc(&open)),
            Some(&gt),
            &json!({}),
        )
        .await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
        "joining a room with guest_access forbidden",
    );
    set_guest_access(&s, at, &open, "can_join").await;
    assert_ok(
        &s.post(&room_path(&open, "join"), Some(&gt), &json!({}))
            .await,
        "joining a room with guest_access can_join",
    );
    assert_ok(
        &s.put(
            &room_path(&open, "send/m.room.message/g1"),
            Some(&gt),
            &json!({ "msgtype": "m.text", "body": "hi from a guest" }),
        )
        .await,
        "a guest sends a message",
    );
    assert_err(
        &s.put(
            &room_path(&open, "send/m.reaction/g2"),
            Some(&gt),
            &json!({}),
        )
        .await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
        "a guest sends another event type",
    );
    let sync = s.get("/_matrix/client/v3/sync", Some(&gt)).await;
    assert_ok(&sync, "a guest syncs");
    let timeline = &sync.1["rooms"]["join"][&open]["timeline"]["events"];
    assert!(timeline
        .as_array()
        .expect("timeline")
        .iter()
        .any(|e| e["content"]["body"] == "hi from a guest"));

    // A world_readable room a guest never joined can still be read.
    let readable = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    assert_ok(
        &s.put(
            &room_path(&readable, "state/m.room.history_visibility/"),
            Some(at),
            &json!({ "history_visibility": "world_readable" }),
        )
        .await,
        "make it world_readable",
    );
    s.send_message(at, &readable, "t1", "for everyone").await;
    let messages = s
        .get(&room_path(&readable, "messages?dir=b&limit=5"), Some(&gt))
        .await;
    assert_ok(&messages, "a guest reads a world_readable room");
    assert!(messages.1["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .any(|e| e["content"]["body"] == "for everyone"));
}

#[tokio::test]
async fn a_guest_upgrades_to_a_full_account_keeping_its_id() {
    let s = TestServer::start().await;
    let (guest_id, gt) = guest(&s).await;
    let localpart = guest_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap()
        .to_owned();

    // Numeric user IDs are the guests'.
    assert_err(
        &s.register_attempt(json!({ "username": "12345", "password": "pw-12345" }))
            .await,
        400,
        "M_INVALID_USERNAME",
        "registering a numeric username",
    );
    assert_err(
        &s.register_attempt(
            json!({ "guest_access_token": gt, "username": "someoneelse", "password": "pw" }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
        "upgrading to another user ID",
    );
    let upgraded: (_, Value) = s
        .register_attempt(json!({ "guest_access_token": gt, "password": "a-good-password" }))
        .await;
    assert_ok(&upgraded, "upgrade");
    assert_eq!(upgraded.1["user_id"], json!(guest_id));
    let new_token = upgraded.1["access_token"].as_str().expect("token");
    let whoami = s
        .get("/_matrix/client/v3/account/whoami", Some(new_token))
        .await;
    assert_eq!(whoami.1["is_guest"], json!(false));
    assert_ok(
        &s.post("/_matrix/client/v3/createRoom", Some(&gt), &json!({}))
            .await,
        "the old guest token is now a full account's",
    );
    s.login(&localpart, "a-good-password").await;
    assert_err(
        &s.register_attempt(json!({ "guest_access_token": gt, "password": "again" }))
            .await,
        403,
        "M_FORBIDDEN",
        "upgrading twice",
    );
}

#[tokio::test]
async fn guests_are_off_unless_configured() {
    let s = TestServer::start_with(|c| c.registration.allow_guests = false).await;
    assert_err(
        &s.post("/_matrix/client/v3/register?kind=guest", None, &json!({}))
            .await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
        "guest registration when disabled",
    );
}
