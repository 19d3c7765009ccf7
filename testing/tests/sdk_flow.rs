//! End-to-end scenario with the real `matrix-sdk` client (in-memory stores):
//! two users register, meet in a room, talk, paginate history, type, send
//! read receipts and part ways — everything checked through the SDK's own
//! view of the server's responses.

use std::time::Duration;

use matrix_sdk::{
    config::SyncSettings,
    room::MessagesOptions,
    ruma::{
        api::client::{
            account::register, receipt::create_receipt::v3::ReceiptType, room::create_room, uiaa,
        },
        events::{receipt::ReceiptThread, room::message::RoomMessageEventContent},
        serde::Raw,
        OwnedEventId, OwnedRoomId, UInt,
    },
    sync::SyncResponse,
    Client, Room, RoomMemberships, RoomState,
};
use myelin_testing::http::PW;
use myelin_testing::TestServer;
use serde_json::Value;

/// Long-poll timeout of each SDK sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(3);
/// How many syncs `sync_until` makes before giving up.
const MAX_SYNCS: usize = 15;

async fn new_client(server: &TestServer) -> Client {
    Client::builder()
        .homeserver_url(server.base_url())
        .build()
        .await
        .expect("build matrix-sdk client")
}

fn json<T>(raw: &Raw<T>) -> Value {
    serde_json::from_str(raw.json().get()).expect("event is JSON")
}

/// The timeline events of a joined room in one sync response, as JSON.
fn joined_timeline(resp: &SyncResponse, room_id: &OwnedRoomId) -> Vec<Value> {
    resp.rooms
        .joined
        .get(room_id)
        .map(|update| {
            update
                .timeline
                .events
                .iter()
                .map(|e| json(e.raw()))
                .collect()
        })
        .unwrap_or_default()
}

/// Syncs (continuing from the client's last token) until `check` finds what
/// it is looking for, and returns it.
async fn sync_until<T>(
    client: &Client,
    what: &str,
    mut check: impl FnMut(&SyncResponse) -> Option<T>,
) -> T {
    for _ in 0..MAX_SYNCS {
        let resp = client
            .sync_once(SyncSettings::default().timeout(SYNC_TIMEOUT))
            .await
            .unwrap_or_else(|e| panic!("sync failed while waiting for {what}: {e}"));
        if let Some(found) = check(&resp) {
            return found;
        }
    }
    panic!("{what}: not seen after {MAX_SYNCS} syncs");
}

/// Waits until `sender`'s message `body` shows up in `room_id`'s timeline.
async fn wait_for_message(client: &Client, room_id: &OwnedRoomId, sender: &str, body: &str) {
    sync_until(client, &format!("message {body:?} from {sender}"), |resp| {
        joined_timeline(resp, room_id)
            .iter()
            .any(|e| {
                e["type"] == "m.room.message"
                    && e["sender"] == sender
                    && e["content"]["body"] == body
            })
            .then_some(())
    })
    .await
}

/// Registers through the SDK, doing the UIA dance with `m.login.dummy`.
async fn sdk_register(client: &Client, username: &str) {
    let request = |auth: Option<uiaa::AuthData>| {
        let mut req = register::v3::Request::new();
        req.username = Some(username.to_owned());
        req.password = Some(PW.to_owned());
        req.auth = auth;
        req
    };
    let err = client
        .matrix_auth()
        .register(request(None))
        .await
        .expect_err("registration without auth must start User-Interactive Auth");
    let info = err
        .as_uiaa_response()
        .unwrap_or_else(|| panic!("expected a UIA 401, got: {err}"));
    assert!(
        info.session.is_some(),
        "UIA response without session: {info:?}"
    );
    let mut dummy = uiaa::Dummy::new();
    dummy.session = info.session.clone();
    let resp = client
        .matrix_auth()
        .register(request(Some(uiaa::AuthData::Dummy(dummy))))
        .await
        .expect("registration with m.login.dummy");
    assert!(resp.access_token.is_some(), "register must log in");
    assert!(
        client.matrix_auth().logged_in(),
        "SDK session after register"
    );
}

#[tokio::test]
async fn two_users_full_conversation() {
    let server = TestServer::start().await;

    // alice registers through the SDK; bob registers over raw HTTP, then logs in with the SDK.
    let alice = new_client(&server).await;
    sdk_register(&alice, "alice").await;
    let alice_id = alice.user_id().expect("alice user id").to_owned();

    server.register("bob", PW).await;
    let bob = new_client(&server).await;
    bob.matrix_auth()
        .login_username("bob", PW)
        .send()
        .await
        .expect("bob logs in");
    let bob_id = bob.user_id().expect("bob user id").to_owned();
    let whoami = bob.whoami().await.expect("whoami");
    assert_eq!(whoami.user_id, bob_id);

    // Both clients start syncing.
    alice
        .sync_once(SyncSettings::default())
        .await
        .expect("alice initial sync");
    bob.sync_once(SyncSettings::default())
        .await
        .expect("bob initial sync");

    // alice creates a room and invites bob.
    let alice_room = alice
        .create_room(create_room::v3::Request::new())
        .await
        .expect("create room");
    let room_id = alice_room.room_id().to_owned();
    alice_room
        .invite_user_by_id(&bob_id)
        .await
        .expect("invite bob");

    // bob sees the invite and joins.
    sync_until(&bob, "invite", |resp| {
        resp.rooms.invited.contains_key(&room_id).then_some(())
    })
    .await;
    assert_eq!(
        bob.get_room(&room_id).expect("invited room known").state(),
        RoomState::Invited
    );
    let bob_room = bob.join_room_by_id(&room_id).await.expect("bob joins");
    assert_eq!(bob_room.state(), RoomState::Joined);

    // alice sees bob's join.
    sync_until(&alice, "bob's join", |resp| {
        joined_timeline(resp, &room_id)
            .iter()
            .any(|e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == bob_id.as_str()
                    && e["content"]["membership"] == "join"
            })
            .then_some(())
    })
    .await;

    // They exchange messages.
    alice_room
        .send(RoomMessageEventContent::text_plain("hi bob"))
        .await
        .expect("alice sends");
    wait_for_message(&bob, &room_id, alice_id.as_str(), "hi bob").await;
    bob_room
        .send(RoomMessageEventContent::text_plain("hi alice"))
        .await
        .expect("bob sends");
    wait_for_message(&alice, &room_id, bob_id.as_str(), "hi alice").await;

    // alice names the room and sets a topic; bob sees both.
    alice_room
        .set_name("Book club".to_owned())
        .await
        .expect("set name");
    alice_room
        .set_room_topic("Chapter one")
        .await
        .expect("set topic");
    sync_until(&bob, "name and topic", |_| {
        (bob_room.name().as_deref() == Some("Book club")
            && bob_room.topic().as_deref() == Some("Chapter one"))
        .then_some(())
    })
    .await;

    // alice sends 200 messages; bob paginates back through all of them.
    for i in 0..200 {
        alice_room
            .send(RoomMessageEventContent::text_plain(format!("bulk-{i}")))
            .await
            .unwrap_or_else(|e| panic!("send bulk-{i}: {e}"));
    }
    let mut newest_first = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..100 {
        let mut options = MessagesOptions::backward().from(from.as_deref());
        options.limit = UInt::from(30u32);
        let page = bob_room.messages(options).await.expect("/messages");
        let chunk_len = page.chunk.len();
        for event in &page.chunk {
            let event = json(event.raw());
            if let Some(body) = event["content"]["body"].as_str() {
                if body.starts_with("bulk-") {
                    assert_eq!(event["sender"], alice_id.as_str());
                    newest_first.push(body.to_owned());
                }
            }
        }
        match page.end {
            Some(end) if chunk_len > 0 => from = Some(end),
            _ => break,
        }
    }
    newest_first.reverse();
    let expected: Vec<String> = (0..200).map(|i| format!("bulk-{i}")).collect();
    assert_eq!(
        newest_first.len(),
        200,
        "bob paginated {} bulk messages",
        newest_first.len()
    );
    assert_eq!(newest_first, expected, "bulk messages out of order");

    // bob catches up through sync, then types and sends a read receipt.
    let last = sync_until(&bob, "last bulk message", |resp| {
        joined_timeline(resp, &room_id)
            .iter()
            .find(|e| e["content"]["body"] == "bulk-199")
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
    })
    .await;
    let last_event_id: OwnedEventId = last.parse().expect("event id");

    bob_room.typing_notice(true).await.expect("typing notice");
    sync_until(&alice, "bob typing", |resp| {
        ephemeral(resp, &room_id)
            .iter()
            .any(|e| {
                e["type"] == "m.typing"
                    && e["content"]["user_ids"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|id| id == bob_id.as_str()))
            })
            .then_some(())
    })
    .await;

    bob_room
        .send_single_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, last_event_id)
        .await
        .expect("read receipt");
    sync_until(&alice, "bob's read receipt", |resp| {
        ephemeral(resp, &room_id)
            .iter()
            .any(|e| {
                e["type"] == "m.receipt"
                    && e["content"][last.as_str()]["m.read"]
                        .get(bob_id.as_str())
                        .is_some()
            })
            .then_some(())
    })
    .await;

    // bob leaves; alice sees it.
    bob_room.leave().await.expect("bob leaves");
    sync_until(&alice, "bob's leave", |resp| {
        joined_timeline(resp, &room_id)
            .iter()
            .any(|e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == bob_id.as_str()
                    && e["content"]["membership"] == "leave"
            })
            .then_some(())
    })
    .await;
    sync_until(&bob, "room moved to left", |resp| {
        resp.rooms.left.contains_key(&room_id).then_some(())
    })
    .await;
    assert_eq!(
        bob.get_room(&room_id).map(|r: Room| r.state()),
        Some(RoomState::Left)
    );
}

/// The ephemeral events of a joined room in one sync response, as JSON.
fn ephemeral(resp: &SyncResponse, room_id: &OwnedRoomId) -> Vec<Value> {
    resp.rooms
        .joined
        .get(room_id)
        .map(|update| update.ephemeral.iter().map(json).collect())
        .unwrap_or_default()
}

/// Profile, member list, redaction, `/context` and kicking through the SDK.
#[tokio::test]
async fn profile_members_redaction_and_context() {
    let server = TestServer::start().await;
    server.register("alice", PW).await;
    server.register("bob", PW).await;
    let alice = new_client(&server).await;
    alice
        .matrix_auth()
        .login_username("alice", PW)
        .send()
        .await
        .expect("alice logs in");
    let bob = new_client(&server).await;
    bob.matrix_auth()
        .login_username("bob", PW)
        .send()
        .await
        .expect("bob logs in");
    let bob_id = bob.user_id().unwrap().to_owned();

    alice
        .account()
        .set_display_name(Some("Alice Liddell"))
        .await
        .expect("set display name");
    assert_eq!(
        alice
            .account()
            .get_display_name()
            .await
            .expect("get display name")
            .as_deref(),
        Some("Alice Liddell")
    );

    let mut request = create_room::v3::Request::new();
    request.preset = Some(create_room::v3::RoomPreset::PublicChat);
    let alice_room = alice.create_room(request).await.expect("create room");
    let room_id = alice_room.room_id().to_owned();
    let bob_room = bob.join_room_by_id(&room_id).await.expect("bob joins");

    let mut ids = Vec::new();
    for i in 0..5 {
        let resp = alice_room
            .send(RoomMessageEventContent::text_plain(format!("c{i}")))
            .await
            .expect("send");
        ids.push(resp.response.event_id);
    }

    // Member list as the SDK fetches it (GET /members).
    let members = bob_room
        .members(RoomMemberships::JOIN)
        .await
        .expect("members");
    let mut joined: Vec<String> = members.iter().map(|m| m.user_id().to_string()).collect();
    joined.sort();
    assert_eq!(
        joined,
        vec![alice.user_id().unwrap().to_string(), bob_id.to_string()]
    );
    let alice_member = members
        .iter()
        .find(|m| Some(m.user_id()) == alice.user_id())
        .unwrap();
    assert_eq!(
        alice_member.display_name(),
        Some("Alice Liddell"),
        "member event follows the profile"
    );

    // Context around c2.
    let ctx = bob_room
        .event_with_context(&ids[2], false, UInt::from(2u32), None)
        .await
        .expect("/context");
    let target = json(ctx.event.expect("context event").raw());
    assert_eq!(target["content"]["body"], "c2");
    let before: Vec<Value> = ctx.events_before.iter().map(|e| json(e.raw())).collect();
    let after: Vec<Value> = ctx.events_after.iter().map(|e| json(e.raw())).collect();
    assert_eq!(
        before.first().map(|e| e["content"]["body"].clone()),
        Some(Value::from("c1")),
        "{before:?}"
    );
    assert_eq!(
        after.first().map(|e| e["content"]["body"].clone()),
        Some(Value::from("c3")),
        "{after:?}"
    );

    // alice redacts c4; bob fetches the redacted event.
    alice_room
        .redact(&ids[4], Some("typo"), None)
        .await
        .expect("redact");
    let fetched = json(
        bob_room
            .event(&ids[4], None)
            .await
            .expect("GET event")
            .raw(),
    );
    assert_eq!(fetched["content"], serde_json::json!({}), "{fetched}");
    assert_eq!(
        fetched["unsigned"]["redacted_because"]["content"]["reason"], "typo",
        "{fetched}"
    );

    // alice kicks bob; bob's client learns it through sync.
    bob.sync_once(SyncSettings::default())
        .await
        .expect("bob syncs before the kick");
    alice_room
        .kick_user(&bob_id, Some("bye"))
        .await
        .expect("kick");
    sync_until(&bob, "kick", |resp| {
        resp.rooms.left.contains_key(&room_id).then_some(())
    })
    .await;
    assert_eq!(
        bob.get_room(&room_id).map(|r| r.state()),
        Some(RoomState::Left)
    );
}
