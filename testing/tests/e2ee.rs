//! End-to-end encryption: real `matrix-sdk` clients (with their Olm/Megolm machines) talk in an
//! encrypted room on one Myelin and across two Myelins, so device keys, one-time key claims and
//! to-device messages must all work for a message to decrypt; raw HTTP covers the key and
//! to-device endpoints' edge cases.

use std::time::{Duration, Instant};

use matrix_sdk::{
    config::SyncSettings,
    ruma::{
        api::client::room::create_room, events::room::message::RoomMessageEventContent, serde::Raw,
        OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId,
    },
    sync::SyncResponse,
    Client,
};
use myelin_testing::http::PW;
use myelin_testing::{Account, StatusCode, SynapseServer, TestServer};
use serde_json::{json, Value};

async fn sdk_login(base_url: &str, username: &str) -> Client {
    let client = Client::builder()
        .homeserver_url(base_url)
        // Synapse under test serves HTTPS with a self-signed certificate.
        .disable_ssl_verification()
        .build()
        .await
        .expect("build matrix-sdk client");
    client
        .matrix_auth()
        .login_username(username, PW)
        .send()
        .await
        .expect("log in with the SDK");
    // The first sync uploads the device's identity and one-time keys.
    client
        .sync_once(SyncSettings::default())
        .await
        .expect("initial sync");
    client
}

fn json<T>(raw: &Raw<T>) -> Value {
    serde_json::from_str(raw.json().get()).expect("event is JSON")
}

/// Syncs until `check` finds something, or panics after 30 s.
async fn sdk_sync_until<T>(
    client: &Client,
    what: &str,
    mut check: impl FnMut(&SyncResponse) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let resp = client
            .sync_once(SyncSettings::default().timeout(Duration::from_secs(2)))
            .await
            .unwrap_or_else(|e| panic!("sync failed while waiting for {what}: {e}"));
        if let Some(found) = check(&resp) {
            return found;
        }
    }
    panic!("{what}: not seen within 30 s");
}

/// Waits until `body` arrives in `room_id` as an event the SDK decrypted. The room key travels
/// as a to-device message and may arrive a sync after the message itself; events that could
/// not be decrypted yet are fetched again (and decrypted) after each later sync.
async fn wait_for_decrypted(client: &Client, room_id: &OwnedRoomId, body: &str) {
    let room = client.get_room(room_id).expect("a joined room");
    let mut undecrypted: Vec<OwnedEventId> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let resp = client
            .sync_once(SyncSettings::default().timeout(Duration::from_secs(2)))
            .await
            .unwrap_or_else(|e| panic!("sync failed while waiting for {body:?}: {e}"));
        let events = resp
            .rooms
            .joined
            .get(room_id)
            .map(|r| r.timeline.events.clone())
            .unwrap_or_default();
        for event in events {
            if event.encryption_info().is_some() && json(event.raw())["content"]["body"] == body {
                return;
            }
            let raw = json(event.raw());
            if raw["type"] == "m.room.encrypted" {
                if let Some(id) = raw["event_id"].as_str().and_then(|i| i.try_into().ok()) {
                    undecrypted.push(id);
                }
            }
        }
        for id in &undecrypted {
            if let Ok(event) = room.event(id, None).await {
                if event.encryption_info().is_some() && json(event.raw())["content"]["body"] == body
                {
                    return;
                }
            }
        }
    }
    panic!("{body:?} was not received and decrypted within 30 s");
}

/// An encrypted room created by `client`, with `invite` invited.
async fn create_encrypted_room(client: &Client, invite: &OwnedUserId) -> OwnedRoomId {
    let mut request = create_room::v3::Request::new();
    let encryption = json!({
        "type": "m.room.encryption",
        "state_key": "",
        "content": { "algorithm": "m.megolm.v1.aes-sha2" },
    });
    request.initial_state = vec![Raw::new(&encryption).expect("raw").cast_unchecked()];
    request.invite = vec![invite.clone()];
    let room = client.create_room(request).await.expect("create room");
    room.room_id().to_owned()
}

/// `bob` accepts the invite to `room_id` (through `via` for a remote room).
async fn accept_invite(bob: &Client, room_id: &OwnedRoomId, via: &[OwnedServerName]) {
    sdk_sync_until(bob, "the invite", |resp| {
        resp.rooms.invited.contains_key(room_id).then_some(())
    })
    .await;
    bob.join_room_by_id_or_alias((&**room_id).into(), via)
        .await
        .expect("bob joins");
}

/// Alice and Bob exchange encrypted messages in `room_id`; each decrypts the other's.
async fn converse(alice: &Client, bob: &Client, room_id: &OwnedRoomId) {
    sdk_sync_until(alice, "bob's join", |resp| {
        let events = &resp.rooms.joined.get(room_id)?.timeline.events;
        events
            .iter()
            .any(|e| {
                let e = json(e.raw());
                e["type"] == "m.room.member"
                    && e["state_key"] == bob.user_id().expect("bob").as_str()
                    && e["content"]["membership"] == "join"
            })
            .then_some(())
    })
    .await;
    let alice_room = alice.get_room(room_id).expect("alice's room");
    assert!(
        alice_room
            .latest_encryption_state()
            .await
            .expect("encryption state")
            .is_encrypted(),
        "the room is encrypted"
    );
    alice_room
        .send(RoomMessageEventContent::text_plain(
            "the eagle lands at dawn",
        ))
        .await
        .expect("alice sends an encrypted message");
    wait_for_decrypted(bob, room_id, "the eagle lands at dawn").await;

    let bob_room = bob.get_room(room_id).expect("bob's room");
    bob_room
        .send(RoomMessageEventContent::text_plain("dawn it is"))
        .await
        .expect("bob sends an encrypted message");
    wait_for_decrypted(alice, room_id, "dawn it is").await;
}

/// The server only ever stores ciphertext: every message in the room's history is
/// `m.room.encrypted` and no plaintext appears in it.
async fn assert_only_ciphertext(server: &TestServer, token: &str, room_id: &OwnedRoomId) {
    let (status, page) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                myelin_testing::enc(room_id.as_str())
            ),
            Some(token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["chunk"].as_array().expect("chunk");
    let encrypted = events
        .iter()
        .filter(|e| e["type"] == "m.room.encrypted")
        .count();
    assert!(encrypted >= 2, "both messages are stored encrypted: {page}");
    assert!(
        !events.iter().any(|e| e["type"] == "m.room.message"),
        "no plaintext message in the room: {page}"
    );
    assert!(!page.to_string().contains("eagle"), "no plaintext anywhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_talk_in_an_encrypted_room() {
    let server = TestServer::start().await;
    let alice_account = server.register("alice", PW).await;
    server.register("bob", PW).await;
    let alice = sdk_login(server.base_url(), "alice").await;
    let bob = sdk_login(server.base_url(), "bob").await;
    let bob_id = bob.user_id().expect("bob").to_owned();

    let room_id = create_encrypted_room(&alice, &bob_id).await;
    accept_invite(&bob, &room_id, &[]).await;
    converse(&alice, &bob, &room_id).await;
    assert_only_ciphertext(&server, alice_account.token().expect("token"), &room_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_talk_encrypted_across_two_servers() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice_account = a.register("alice", PW).await;
    let bob_account = b.register("bob", PW).await;
    let alice = sdk_login(a.base_url(), "alice").await;
    let bob = sdk_login(b.base_url(), "bob").await;
    let bob_id = bob.user_id().expect("bob").to_owned();

    let room_id = create_encrypted_room(&alice, &bob_id).await;
    let via: OwnedServerName = a.server_name().try_into().expect("server name");
    accept_invite(&bob, &room_id, &[via]).await;
    converse(&alice, &bob, &room_id).await;
    assert_only_ciphertext(&a, alice_account.token().expect("token"), &room_id).await;

    // Bob signs in on a second device: A hears of it (m.device_list_update), alice's /sync
    // lists bob as changed, and a key query on A (answered by B) returns both devices.
    let alice_token = alice_account.token().expect("token");
    let since = a.sync(alice_token, None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let bob_phone = b.login("bob", PW).await;
    let phone_device = bob_phone.device_id.clone();
    upload_device_keys(&b, &bob_phone, "phone-key").await;
    let mut since = Some(since);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sync = a.sync(alice_token, since.as_deref(), 2_000).await;
        let changed = sync["device_lists"]["changed"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if changed.iter().any(|u| u == bob_id.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob's new device never reached alice's /sync"
        );
        since = sync["next_batch"].as_str().map(str::to_owned);
    }
    let (status, keys) = a
        .post(
            "/_matrix/client/v3/keys/query",
            Some(alice_token),
            &json!({ "device_keys": { bob_id.as_str(): [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let devices = keys["device_keys"][bob_id.as_str()]
        .as_object()
        .expect("bob's devices");
    assert_eq!(devices.len(), 2, "both of bob's devices: {keys}");
    assert!(devices.contains_key(&phone_device), "{keys}");
    assert_eq!(keys["failures"], json!({}), "{keys}");

    // A to-device message from alice reaches bob's phone on B through m.direct_to_device.
    let (status, body) = a
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.ping/txn1",
            Some(alice_token),
            &json!({ "messages": { bob_id.as_str(): { phone_device.as_str(): { "n": 7 } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let message = wait_for_to_device(&b, &bob_phone, "org.example.ping").await;
    assert_eq!(message["sender"], alice.user_id().expect("alice").as_str());
    assert_eq!(message["content"]["n"], 7);
    drop(bob_account);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_talk_encrypted_between_synapse_and_myelin() {
    let Some(synapse) = SynapseServer::start().await else {
        return;
    };
    let myelin = TestServer::start_federating_tls().await;
    synapse.register("alice", PW).await;
    myelin.register("bob", PW).await;
    let alice = sdk_login(synapse.base_url(), "alice").await;
    let bob = sdk_login(myelin.base_url(), "bob").await;
    let bob_id = bob.user_id().expect("bob").to_owned();

    // Alice's encrypted room lives on Synapse; bob on Myelin is invited and joins through it.
    // Synapse and Myelin exchange device keys (/user/keys/query), one-time keys
    // (/user/keys/claim) and the room key (m.direct_to_device) for the messages to decrypt.
    let room_id = create_encrypted_room(&alice, &bob_id).await;
    let via: OwnedServerName = synapse.server_name().try_into().expect("server name");
    accept_invite(&bob, &room_id, &[via]).await;
    converse(&alice, &bob, &room_id).await;
}

/// Uploads minimal (unsigned, test-only) identity keys for `account`'s device.
async fn upload_device_keys(server: &TestServer, account: &Account, key: &str) -> Value {
    let device = account.device_id.clone();
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/upload",
            account.token(),
            &json!({ "device_keys": {
                "user_id": account.user_id,
                "device_id": device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": { format!("curve25519:{device}"): key, format!("ed25519:{device}"): key },
                "signatures": { account.user_id.clone(): { format!("ed25519:{device}"): "sig" } },
            } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Long-polls until a to-device message of `event_type` arrives; returns it.
async fn wait_for_to_device(server: &TestServer, account: &Account, event_type: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut since: Option<String> = None;
    loop {
        let sync = server
            .sync(account.token().expect("token"), since.as_deref(), 2_000)
            .await;
        let events = sync["to_device"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(found) = events.into_iter().find(|e| e["type"] == event_type) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {event_type} to-device message"
        );
        since = sync["next_batch"].as_str().map(str::to_owned);
    }
}

/// `claimer` claims a `signed_curve25519` key of `owner`'s device: `{key_id: key}`.
async fn claim_key(
    server: &TestServer,
    claimer: &Account,
    owner: &Account,
) -> serde_json::Map<String, Value> {
    let body = json!({ "one_time_keys": { owner.user_id.clone(): { owner.device_id.clone(): "signed_curve25519" } } });
    let (status, answer) = server
        .post("/_matrix/client/v3/keys/claim", claimer.token(), &body)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["one_time_keys"][owner.user_id.as_str()][owner.device_id.as_str()]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn one_time_keys_are_claimed_once_then_the_fallback_key() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let alice_device = alice.device_id.clone();

    // Malformed uploads are refused and change nothing.
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/upload",
            alice.token(),
            &json!({ "device_keys": { "user_id": bob.user_id, "device_id": alice_device,
                "algorithms": [], "keys": {}, "signatures": {} } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errcode"], "M_INVALID_PARAM");
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/upload",
            alice.token(),
            &json!({ "one_time_keys": { "no-algorithm": "key" } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errcode"], "M_BAD_JSON");

    let upload = upload_device_keys(&server, &alice, "alice-key").await;
    assert_eq!(upload["one_time_key_counts"]["signed_curve25519"], 0);
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/upload",
            alice.token(),
            &json!({
                "one_time_keys": {
                    "signed_curve25519:AAAA": { "key": "one" },
                    "signed_curve25519:AAAB": { "key": "two" },
                },
                "fallback_keys": { "signed_curve25519:FFFF": { "key": "fallback", "fallback": true } },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["one_time_key_counts"]["signed_curve25519"], 2);

    // Bob sees alice's device keys, with the device's display name in `unsigned`.
    let (status, keys) = server
        .post(
            "/_matrix/client/v3/keys/query",
            bob.token(),
            &json!({ "device_keys": { alice.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let device = &keys["device_keys"][alice.user_id.as_str()][alice_device.as_str()];
    assert_eq!(
        device["keys"][format!("ed25519:{alice_device}")],
        "alice-key",
        "{keys}"
    );

    // Two claims get the two one-time keys, each once; the third gets the fallback key.
    let first = claim_key(&server, &bob, &alice).await;
    let second = claim_key(&server, &bob, &alice).await;
    let third = claim_key(&server, &bob, &alice).await;
    assert!(first.contains_key("signed_curve25519:AAAA"), "{first:?}");
    assert!(second.contains_key("signed_curve25519:AAAB"), "{second:?}");
    assert!(third.contains_key("signed_curve25519:FFFF"), "{third:?}");

    // Alice's sync shows no one-time keys left and the fallback key as used.
    let sync = server.sync(alice.token().expect("token"), None, 0).await;
    assert_eq!(
        sync["device_one_time_keys_count"]["signed_curve25519"], 0,
        "{sync}"
    );
    assert_eq!(
        sync["device_unused_fallback_key_types"],
        json!([]),
        "{sync}"
    );
}

#[tokio::test]
async fn to_device_messages_are_delivered_until_acknowledged() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let bob_laptop = server.login("bob", PW).await;
    let bob_token = bob.token().expect("token");

    let first = server.sync(bob_token, None, 0).await;
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();

    // `*` reaches every device of bob's.
    let (status, body) = server
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.hello/t1",
            alice.token(),
            &json!({ "messages": { bob.user_id.clone(): { "*": { "hello": "all" } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.hello/t2",
            alice.token(),
            &json!({ "messages": { bob.user_id.clone(): { "*": "not an object" } } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The long-poll wakes with the message.
    let sync = server.sync(bob_token, Some(&since), 10_000).await;
    let events = sync["to_device"]["events"]
        .as_array()
        .expect("to_device events");
    assert_eq!(events.len(), 1, "{sync}");
    assert_eq!(events[0]["sender"], alice.user_id.as_str());
    assert_eq!(events[0]["content"]["hello"], "all");

    // Syncing again from the same token (the client lost the answer) delivers it again ...
    let again = server.sync(bob_token, Some(&since), 0).await;
    assert_eq!(
        again["to_device"]["events"].as_array().map(Vec::len),
        Some(1),
        "{again}"
    );
    // ... and from the newer token it is acknowledged and gone.
    let next = again["next_batch"].as_str().expect("next_batch");
    let after = server.sync(bob_token, Some(next), 0).await;
    assert_eq!(after["to_device"]["events"], json!([]), "{after}");

    // The other device got its own copy.
    let laptop = server
        .sync(bob_laptop.token().expect("token"), None, 0)
        .await;
    assert_eq!(
        laptop["to_device"]["events"][0]["content"]["hello"], "all",
        "{laptop}"
    );

    // 150 messages at once: delivered over two syncs, none lost, none twice.
    let laptop_device = bob_laptop.device_id.clone();
    for i in 0..150 {
        let (status, body) = server
            .put(
                &format!("/_matrix/client/v3/sendToDevice/org.example.count/c{i}"),
                alice.token(),
                &json!({ "messages": { bob.user_id.clone(): { laptop_device.clone(): { "i": i } } } }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut seen = Vec::new();
    let mut since = laptop["next_batch"].as_str().map(str::to_owned);
    for _ in 0..5 {
        let sync = server
            .sync(bob_laptop.token().expect("token"), since.as_deref(), 0)
            .await;
        let events = sync["to_device"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(events.len() <= 100, "at most 100 per sync");
        seen.extend(events.iter().filter_map(|e| e["content"]["i"].as_u64()));
        since = sync["next_batch"].as_str().map(str::to_owned);
    }
    assert_eq!(
        seen,
        (0..150).collect::<Vec<u64>>(),
        "all 150, in order, once each"
    );
}

#[tokio::test]
async fn device_list_changes_reach_users_sharing_a_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server
        .create_room(
            alice.token().expect("token"),
            &json!({ "preset": "public_chat" }),
        )
        .await;
    server.join(bob.token().expect("token"), &room).await;

    let bob_since = server.sync(bob.token().expect("token"), None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let carol_since = server.sync(carol.token().expect("token"), None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    upload_device_keys(&server, &alice, "alice-key").await;

    // Bob shares a room with alice: his long-poll wakes with her in `changed`.
    let sync = server
        .sync(bob.token().expect("token"), Some(&bob_since), 10_000)
        .await;
    assert_eq!(
        sync["device_lists"]["changed"],
        json!([alice.user_id]),
        "{sync}"
    );
    // Carol shares none: nothing for her.
    let sync = server
        .sync(carol.token().expect("token"), Some(&carol_since), 0)
        .await;
    assert_eq!(sync["device_lists"]["changed"], json!([]), "{sync}");

    // /keys/changes between the two tokens says the same.
    let now = server.sync(bob.token().expect("token"), None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let (status, changes) = server
        .get(
            &format!("/_matrix/client/v3/keys/changes?from={bob_since}&to={now}"),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changes}");
    assert_eq!(changes["changed"], json!([alice.user_id]), "{changes}");

    // Logging out deletes the device and its keys, which is a change too.
    let (status, body) = server
        .post("/_matrix/client/v3/logout", alice.token(), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sync = server
        .sync(bob.token().expect("token"), Some(&now), 10_000)
        .await;
    assert_eq!(
        sync["device_lists"]["changed"],
        json!([alice.user_id]),
        "{sync}"
    );
    let (_, keys) = server
        .post(
            "/_matrix/client/v3/keys/query",
            bob.token(),
            &json!({ "device_keys": { alice.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(
        keys["device_keys"][alice.user_id.as_str()],
        json!({}),
        "{keys}"
    );
}
