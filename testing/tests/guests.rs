//! Guest access over HTTP: `register?kind=guest`, the endpoints a guest may and may not call,
//! `m.room.guest_access` on joins, guests leaving when it is withdrawn (locally or by another
//! server), reading `world_readable` rooms, upgrading a guest to a full account, and the switch
//! in config.

use myelin_testing::federation::now_ms;
use myelin_testing::hostile::HostileServer;
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

/// `user`'s membership in the room's current state, read by `token`.
async fn membership_of(s: &TestServer, token: &str, room: &str, user: &str) -> Value {
    let path = room_path(room, &format!("state/m.room.member/{}", enc(user)));
    let (status, content) = s.get(&path, Some(token)).await;
    assert_eq!(status, 200, "{content}");
    content["membership"].clone()
}

#[tokio::test]
async fn guests_leave_when_guest_access_is_withdrawn() {
    let s = TestServer::start().await;
    let alice = register(&s, "alice").await;
    let at = alice.token().expect("token");
    let bob = register(&s, "bob").await;
    let (guest_id, gt) = guest(&s).await;
    let room = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    s.join(bob.token().expect("token"), &room).await;
    set_guest_access(&s, at, &room, "can_join").await;
    assert_ok(
        &s.post(&room_path(&room, "join"), Some(&gt), &json!({}))
            .await,
        "the guest joins",
    );

    // Another change of state leaves the guest in.
    assert_ok(
        &s.put(
            &room_path(&room, "state/m.room.topic/"),
            Some(at),
            &json!({ "topic": "still open" }),
        )
        .await,
        "set a topic",
    );
    assert_eq!(membership_of(&s, at, &room, &guest_id).await, "join");

    set_guest_access(&s, at, &room, "forbidden").await;
    let (status, event) = s
        .get(
            &room_path(&room, &format!("state/m.room.member/{}", enc(&guest_id))),
            Some(at),
        )
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["membership"], "leave", "the guest left: {event}");
    // It left by itself: the full member event names the guest as its sender.
    let state = s.get(&room_path(&room, "state"), Some(at)).await;
    assert_ok(&state, "state");
    let leave = state
        .1
        .as_array()
        .expect("state")
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == guest_id.as_str())
        .expect("the guest's member event")
        .clone();
    assert_eq!(leave["sender"], guest_id.as_str(), "{leave}");
    // Full accounts stay.
    assert_eq!(membership_of(&s, at, &room, &bob.user_id).await, "join");
    assert_eq!(membership_of(&s, at, &room, &alice.user_id).await, "join");
    assert_err(
        &s.post(&room_path(&room, "join"), Some(&gt), &json!({}))
            .await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
        "the guest joins again",
    );
}

/// The event ID of the state event `(kind, key)` in the room, read by `token`.
async fn state_id(s: &TestServer, token: &str, room: &str, kind: &str, key: &str) -> String {
    let state = s.get(&room_path(room, "state"), Some(token)).await;
    assert_ok(&state, "state");
    state
        .1
        .as_array()
        .expect("state")
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == key)
        .and_then(|e| e["event_id"].as_str())
        .unwrap_or_else(|| panic!("no {kind} {key:?} in the state"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_leave_when_another_server_withdraws_guest_access() {
    let s = TestServer::start_federating_with(|c| c.registration.allow_guests = true).await;
    let alice = register(&s, "alice").await;
    let at = alice.token().expect("token");
    let (guest_id, gt) = guest(&s).await;
    let room = s
        .create_room(
            at,
            &json!({ "preset": "public_chat", "room_version": "10" }),
        )
        .await;
    set_guest_access(&s, at, &room, "can_join").await;
    assert_ok(
        &s.post(&room_path(&room, "join"), Some(&gt), &json!({}))
            .await,
        "the guest joins",
    );
    let hostile = HostileServer::start().await;
    let mallory = hostile.user("mallory");
    let mallory_join = hostile.join(&s, &room, "mallory").await;
    let power = json!({ "users": { alice.user_id.as_str(): 100, mallory.as_str(): 100 } });
    assert_ok(
        &s.put(
            &room_path(&room, "state/m.room.power_levels/"),
            Some(at),
            &power,
        )
        .await,
        "mallory gets power",
    );
    let create = state_id(&s, at, &room, "m.room.create", "").await;
    let power = state_id(&s, at, &room, "m.room.power_levels", "").await;
    let (status, newest) = hostile
        .request(
            &s,
            "GET",
            &format!("/_matrix/federation/v1/event/{}", enc(&power)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{newest}");
    let depth = newest["pdus"][0]["depth"].as_u64().expect("depth");
    let (_, forbid) = hostile.sign_pdu(json!({
        "type": "m.room.guest_access",
        "state_key": "",
        "room_id": room,
        "sender": mallory,
        "origin_server_ts": now_ms(),
        "content": { "guest_access": "forbidden" },
        "prev_events": [power],
        "auth_events": [create, power, mallory_join],
        "depth": depth + 1,
    }));
    let results = hostile.send_transaction(&s, "t1", vec![forbid]).await;
    assert!(
        results
            .as_object()
            .is_some_and(|r| r.values().all(|v| v.get("error").is_none())),
        "{results}"
    );
    let mut left = false;
    for _ in 0..50 {
        if membership_of(&s, at, &room, &guest_id).await == "leave" {
            left = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(left, "the guest did not leave");
    s.stop().await;
}
