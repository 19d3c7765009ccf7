//! Server-side key backups over HTTP: every `/room_keys/version` and `/room_keys/keys` endpoint
//! with its answers and errors (raw HTTP), and a real `matrix-sdk` client that backs up the room
//! key of an encrypted message, which a new login of the same user restores to decrypt it.

use std::time::{Duration, Instant};

use matrix_sdk::{
    config::SyncSettings,
    encryption::backups::BackupState,
    ruma::{
        api::client::room::create_room, events::room::message::RoomMessageEventContent, serde::Raw,
        OwnedEventId, OwnedRoomId,
    },
    Client,
};
use myelin_testing::http::{assert_err, assert_ok, register, C, PW};
use myelin_testing::{enc, Account, TestServer};
use serde_json::{json, Value};

const ALG: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM: &str = "!room:example.org";

fn key(index: u64, forwarded: u64, verified: bool, tag: &str) -> Value {
    json!({
        "first_message_index": index,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": { "ephemeral": "e", "ciphertext": tag, "mac": "m" },
    })
}

/// `{C}/room_keys/keys[/{room}[/{session}]]?version={version}`.
fn keys_path(room: Option<&str>, session: Option<&str>, version: &str) -> String {
    let mut path = format!("{C}/room_keys/keys");
    for part in [room, session].into_iter().flatten() {
        path.push('/');
        path.push_str(&enc(part));
    }
    format!("{path}?version={version}")
}

async fn create_version(server: &TestServer, who: &Account, auth_data: Value) -> String {
    let resp = server
        .post(
            &format!("{C}/room_keys/version"),
            who.token(),
            &json!({ "algorithm": ALG, "auth_data": auth_data }),
        )
        .await;
    assert_ok(&resp, "create a backup version");
    resp.1["version"]
        .as_str()
        .unwrap_or_else(|| panic!("version is a string: {}", resp.1))
        .to_owned()
}

#[tokio::test]
async fn backup_versions_are_created_read_updated_and_deleted() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let current = format!("{C}/room_keys/version");

    assert_err(
        &server.get(&current, None).await,
        401,
        "M_MISSING_TOKEN",
        "no token",
    );
    assert_err(
        &server.get(&current, alice.token()).await,
        404,
        "M_NOT_FOUND",
        "no backup yet (Element Web reads this exact answer as 'none')",
    );
    for (bad, code) in [
        (json!({ "algorithm": ALG }), "M_BAD_JSON"),
        (
            json!({ "algorithm": ALG, "auth_data": "text" }),
            "M_BAD_JSON",
        ),
        (json!({ "auth_data": {} }), "M_BAD_JSON"),
        (
            json!({ "algorithm": "", "auth_data": {} }),
            "M_INVALID_PARAM",
        ),
    ] {
        assert_err(
            &server.post(&current, alice.token(), &bad).await,
            400,
            code,
            &format!("create with {bad}"),
        );
    }

    let auth = json!({ "public_key": "pk1", "signatures": { alice.user_id.clone(): { "ed25519:D": "sig" } } });
    let v1 = create_version(&server, &alice, auth.clone()).await;
    let v2 = create_version(&server, &alice, json!({ "public_key": "pk2" })).await;
    assert_eq!((v1.as_str(), v2.as_str()), ("1", "2"), "versions count up");

    let (status, info) = server.get(&current, alice.token()).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["version"], "2");
    assert_eq!(info["algorithm"], ALG);
    assert_eq!(info["auth_data"], json!({ "public_key": "pk2" }));
    assert_eq!(info["count"], 0);
    assert!(info["etag"].is_string(), "{info}");
    let (status, first) = server.get(&format!("{current}/{v1}"), alice.token()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["auth_data"], auth);
    for unknown in ["3", "01", "abc"] {
        assert_err(
            &server
                .get(&format!("{current}/{unknown}"), alice.token())
                .await,
            404,
            "M_NOT_FOUND",
            &format!("version {unknown}"),
        );
    }
    assert_err(
        &server.get(&current, bob.token()).await,
        404,
        "M_NOT_FOUND",
        "another user has no backup",
    );

    // Updates: only auth_data changes; the algorithm and a body version must match.
    let v1_path = format!("{current}/{v1}");
    let new_auth = json!({ "public_key": "pk1", "signatures": {} });
    for (bad, what) in [
        (
            json!({ "algorithm": "org.example.other", "auth_data": {} }),
            "another algorithm",
        ),
        (
            json!({ "algorithm": ALG, "auth_data": {}, "version": "2" }),
            "another version in the body",
        ),
    ] {
        assert_err(
            &server.put(&v1_path, alice.token(), &bad).await,
            400,
            "M_INVALID_PARAM",
            what,
        );
    }
    let update = json!({ "algorithm": ALG, "auth_data": new_auth, "version": v1 });
    let resp = server.put(&v1_path, alice.token(), &update).await;
    assert_ok(&resp, "update auth_data");
    assert_eq!(resp.1, json!({}));
    assert_eq!(
        server.get(&v1_path, alice.token()).await.1["auth_data"],
        new_auth
    );
    let unversioned = json!({ "algorithm": ALG, "auth_data": {} });
    assert_err(
        &server
            .put(&format!("{current}/9"), alice.token(), &unversioned)
            .await,
        404,
        "M_NOT_FOUND",
        "update an unknown version",
    );
    assert_err(
        &server.put(&v1_path, bob.token(), &update).await,
        404,
        "M_NOT_FOUND",
        "another user's version",
    );

    // Deleting: the current version goes (twice is fine), the previous one is current again.
    let v2_path = format!("{current}/{v2}");
    for _ in 0..2 {
        let resp = server.delete(&v2_path, alice.token(), &json!({})).await;
        assert_ok(&resp, "delete version 2");
    }
    assert_err(
        &server.get(&v2_path, alice.token()).await,
        404,
        "M_NOT_FOUND",
        "a deleted version",
    );
    assert_err(
        &server.put(&v2_path, alice.token(), &unversioned).await,
        404,
        "M_NOT_FOUND",
        "update a deleted version",
    );
    assert_eq!(server.get(&current, alice.token()).await.1["version"], "1");
    assert_err(
        &server
            .delete(&format!("{current}/7"), alice.token(), &json!({}))
            .await,
        404,
        "M_NOT_FOUND",
        "delete an unknown version",
    );
    assert_eq!(
        create_version(&server, &alice, json!({})).await,
        "3",
        "a deleted version's number is not reused"
    );
}

#[tokio::test]
async fn keys_are_stored_read_and_deleted_by_backup_room_and_session() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let v = create_version(&server, &alice, json!({})).await;
    let token = alice.token();

    // Empty backup: the spec's empty shapes, 404 for one session.
    let (status, all) = server.get(&keys_path(None, None, &v), token).await;
    assert_eq!((status.as_u16(), all), (200, json!({ "rooms": {} })));
    let (status, room) = server.get(&keys_path(Some(ROOM), None, &v), token).await;
    assert_eq!((status.as_u16(), room), (200, json!({ "sessions": {} })));
    assert_err(
        &server
            .get(&keys_path(Some(ROOM), Some("s1"), &v), token)
            .await,
        404,
        "M_NOT_FOUND",
        "no key for the session",
    );

    // One upload per level; each answers the new etag and count.
    let (status, first) = server
        .put(
            &keys_path(None, None, &v),
            token,
            &json!({ "rooms": { ROOM: { "sessions": { "s1": key(0, 0, false, "a") } } } }),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["count"], 1);
    let (_, second) = server
        .put(
            &keys_path(Some(ROOM), None, &v),
            token,
            &json!({ "sessions": { "s2": key(2, 1, true, "b") } }),
        )
        .await;
    assert_eq!(second["count"], 2, "{second}");
    assert_ne!(
        second["etag"], first["etag"],
        "the etag moves with the keys"
    );
    let other_room = "!other:example.org";
    let (_, third) = server
        .put(
            &keys_path(Some(other_room), Some("s3"), &v),
            token,
            &key(5, 0, false, "c"),
        )
        .await;
    assert_eq!(third["count"], 3, "{third}");

    let (_, all) = server.get(&keys_path(None, None, &v), token).await;
    assert_eq!(
        all,
        json!({ "rooms": {
            ROOM: { "sessions": { "s1": key(0, 0, false, "a"), "s2": key(2, 1, true, "b") } },
            other_room: { "sessions": { "s3": key(5, 0, false, "c") } },
        } })
    );
    let (_, room) = server
        .get(&keys_path(Some(other_room), None, &v), token)
        .await;
    assert_eq!(room, json!({ "sessions": { "s3": key(5, 0, false, "c") } }));
    let (_, one) = server
        .get(&keys_path(Some(ROOM), Some("s2"), &v), token)
        .await;
    assert_eq!(one, key(2, 1, true, "b"));
    let (_, info) = server.get(&format!("{C}/room_keys/version"), token).await;
    assert_eq!(
        (info["count"].clone(), info["etag"].clone()),
        (json!(3), third["etag"].clone())
    );

    // The better key stays: verified first, then the lower index, then less forwarding.
    let s1 = keys_path(Some(ROOM), Some("s1"), &v);
    let (_, kept) = server.put(&s1, token, &key(1, 0, false, "worse")).await;
    assert_eq!(kept["etag"], third["etag"], "a worse key changes nothing");
    assert_eq!(server.get(&s1, token).await.1, key(0, 0, false, "a"));
    let (_, replaced) = server.put(&s1, token, &key(7, 2, true, "verified")).await;
    assert_ne!(replaced["etag"], third["etag"]);
    assert_eq!(replaced["count"], 3);
    assert_eq!(server.get(&s1, token).await.1, key(7, 2, true, "verified"));

    // Deletes answer the new etag and count: one session, a room, then everything.
    let (status, after) = server.delete(&s1, token, &json!({})).await;
    assert_eq!((status.as_u16(), after["count"].clone()), (200, json!(2)));
    assert_err(
        &server.get(&s1, token).await,
        404,
        "M_NOT_FOUND",
        "a deleted session",
    );
    let (_, after) = server
        .delete(&keys_path(Some(other_room), None, &v), token, &json!({}))
        .await;
    assert_eq!(after["count"], 1);
    let (_, after) = server
        .delete(&keys_path(None, None, &v), token, &json!({}))
        .await;
    assert_eq!(after["count"], 0);
    assert!(after["etag"].is_string(), "{after}");
    assert_eq!(
        server.get(&keys_path(None, None, &v), token).await.1,
        json!({ "rooms": {} })
    );
}

#[tokio::test]
async fn only_the_current_version_takes_keys() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let token = alice.token();
    let upload = json!({ "sessions": { "s": key(0, 0, false, "a") } });
    assert_err(
        &server
            .put(&keys_path(Some(ROOM), None, "1"), token, &upload)
            .await,
        404,
        "M_NOT_FOUND",
        "keys before any backup exists",
    );
    let v1 = create_version(&server, &alice, json!({})).await;
    assert_ok(
        &server
            .put(&keys_path(Some(ROOM), None, &v1), token, &upload)
            .await,
        "keys into version 1",
    );
    let v2 = create_version(&server, &alice, json!({})).await;

    // Writing to the old version: 403 naming the current one, at every level.
    for path in [
        keys_path(None, None, &v1),
        keys_path(Some(ROOM), None, &v1),
        keys_path(Some(ROOM), Some("s"), &v1),
    ] {
        let body = if path.contains("/s?") {
            key(0, 0, false, "a")
        } else if path.contains(&enc(ROOM)) {
            upload.clone()
        } else {
            json!({ "rooms": { ROOM: upload } })
        };
        let resp = server.put(&path, token, &body).await;
        assert_err(&resp, 403, "M_WRONG_ROOM_KEYS_VERSION", &path);
        assert_eq!(resp.1["current_version"], v2.as_str(), "{}", resp.1);
    }
    // ...while reading and deleting it still work.
    let (status, old) = server.get(&keys_path(Some(ROOM), None, &v1), token).await;
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["sessions"]["s"], key(0, 0, false, "a"));

    // Deleting a version deletes its keys; it then takes nothing and shows nothing.
    assert_ok(
        &server
            .delete(&format!("{C}/room_keys/version/{v1}"), token, &json!({}))
            .await,
        "delete version 1",
    );
    for (resp, what) in [
        (
            server.get(&keys_path(None, None, &v1), token).await,
            "read a deleted version",
        ),
        (
            server
                .delete(&keys_path(None, None, &v1), token, &json!({}))
                .await,
            "delete keys of a deleted version",
        ),
        (
            server
                .put(&keys_path(Some(ROOM), None, "99"), token, &upload)
                .await,
            "keys into an unknown version",
        ),
    ] {
        assert_err(&resp, 404, "M_NOT_FOUND", what);
    }
    assert_ok(
        &server
            .put(&keys_path(Some(ROOM), None, &v2), token, &upload)
            .await,
        "the current version takes keys",
    );
}

#[tokio::test]
async fn hostile_key_uploads_are_refused() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let token = alice.token();
    let v = create_version(&server, &alice, json!({})).await;
    let room_path = keys_path(Some(ROOM), None, &v);

    assert_err(
        &server.get(&format!("{C}/room_keys/keys"), token).await,
        400,
        "M_MISSING_PARAM",
        "no version parameter",
    );
    assert_err(
        &server
            .put(
                &format!("{C}/room_keys/keys/{}", enc(ROOM)),
                token,
                &json!({ "sessions": {} }),
            )
            .await,
        400,
        "M_MISSING_PARAM",
        "no version parameter on an upload",
    );
    let too_many: serde_json::Map<String, Value> = (0..=1000)
        .map(|i| (format!("s{i}"), key(0, 0, false, "x")))
        .collect();
    let resp = server
        .put(&room_path, token, &json!({ "sessions": too_many }))
        .await;
    assert_err(
        &resp,
        400,
        "M_INVALID_PARAM",
        "1001 sessions in one request",
    );
    assert!(
        resp.1["error"].as_str().unwrap_or("").contains("1000"),
        "the error names the limit: {}",
        resp.1
    );
    for (path, body, code, what) in [
        (
            keys_path(Some("not-a-room"), None, &v),
            json!({ "sessions": { "s": key(0, 0, false, "x") } }),
            "M_INVALID_PARAM",
            "a room ID without its sigil",
        ),
        (
            room_path.clone(),
            json!({ "sessions": { "s": { "first_message_index": 0, "forwarded_count": 0, "is_verified": "yes", "session_data": {} } } }),
            "M_BAD_JSON",
            "is_verified is not a boolean",
        ),
        (
            room_path.clone(),
            json!({ "sessions": { "s": { "first_message_index": -1, "forwarded_count": 0, "is_verified": false, "session_data": {} } } }),
            "M_BAD_JSON",
            "a negative index",
        ),
        (
            room_path.clone(),
            json!({ "sessions": { "s": key(9_007_199_254_740_992, 0, false, "x") } }),
            "M_INVALID_PARAM",
            "an index beyond JSON's integers",
        ),
        (
            room_path.clone(),
            json!({ "sessions": { "s": { "first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": "text" } } }),
            "M_BAD_JSON",
            "session_data is not an object",
        ),
        (
            room_path.clone(),
            json!({ "sessions": { "s".repeat(256): key(0, 0, false, "x") } }),
            "M_INVALID_PARAM",
            "a session ID of 256 bytes",
        ),
    ] {
        assert_err(&server.put(&path, token, &body).await, 400, code, what);
    }
    // Bytes are bounded by the request body limit (1 MiB by default).
    let huge = json!({ "sessions": { "s": key(0, 0, false, &"x".repeat(1_100_000)) } });
    assert_err(
        &server.put(&room_path, token, &huge).await,
        413,
        "M_TOO_LARGE",
        "a body over the limit",
    );
    let (status, info) = server.get(&format!("{C}/room_keys/version"), token).await;
    assert_eq!(
        (status.as_u16(), info["count"].clone()),
        (200, json!(0)),
        "nothing stored"
    );

    // The largest batch allowed goes through.
    let max: serde_json::Map<String, Value> = (0..1000)
        .map(|i| (format!("s{i}"), key(0, 0, false, "x")))
        .collect();
    let (status, stored) = server
        .put(&room_path, token, &json!({ "sessions": max }))
        .await;
    assert_eq!(
        (status.as_u16(), stored["count"].clone()),
        (200, json!(1000)),
        "{stored}"
    );
}

// ---- matrix-sdk ---------------------------------------------------------------------------

async fn sdk_login(server: &TestServer, username: &str) -> Client {
    let client = Client::builder()
        .homeserver_url(server.base_url())
        .build()
        .await
        .expect("build matrix-sdk client");
    client
        .matrix_auth()
        .login_username(username, PW)
        .send()
        .await
        .expect("log in with the SDK");
    client
        .sync_once(SyncSettings::default())
        .await
        .expect("initial sync");
    client
}

/// An encrypted room of `client` alone: its messages still get a Megolm session, whose key the
/// client backs up.
async fn encrypted_room(client: &Client) -> OwnedRoomId {
    let mut request = create_room::v3::Request::new();
    let encryption = json!({
        "type": "m.room.encryption",
        "state_key": "",
        "content": { "algorithm": "m.megolm.v1.aes-sha2" },
    });
    request.initial_state = vec![Raw::new(&encryption).expect("raw").cast_unchecked()];
    client
        .create_room(request)
        .await
        .expect("create room")
        .room_id()
        .to_owned()
}

/// The backed-up keys on the server, as the raw API shows them to `token`.
async fn server_backup(server: &TestServer, token: &str) -> (String, Value) {
    let (status, info) = server
        .get(&format!("{C}/room_keys/version"), Some(token))
        .await;
    assert_eq!(status, 200, "{info}");
    let version = info["version"].as_str().expect("version").to_owned();
    let (status, keys) = server
        .get(&keys_path(None, None, &version), Some(token))
        .await;
    assert_eq!(status, 200, "{keys}");
    (version, keys)
}

/// Fetches the event (decrypting it with the client's keys) until it shows `body`.
async fn wait_until_decrypts(
    client: &Client,
    room_id: &OwnedRoomId,
    event_id: &OwnedEventId,
    body: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let room = client.get_room(room_id).expect("the room is known");
        if let Ok(event) = room.event(event_id, None).await {
            let decrypted: Value =
                serde_json::from_str(event.raw().json().get()).expect("event JSON");
            if event.encryption_info().is_some() && decrypted["content"]["body"] == body {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{body:?} never decrypted on the new login"
        );
        client
            .sync_once(SyncSettings::default().timeout(Duration::from_secs(1)))
            .await
            .expect("sync");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_backs_up_a_room_key_that_a_new_login_restores() {
    let server = TestServer::start().await;
    let account = register(&server, "alice").await;
    let phone = sdk_login(&server, "alice").await;

    // Backups on: the SDK creates a version and uploads every room key it has from then on.
    let backups = phone.encryption().backups();
    backups.create().await.expect("create a backup");
    assert_eq!(backups.state(), BackupState::Enabled);
    let room_id = encrypted_room(&phone).await;
    let room = phone.get_room(&room_id).expect("the new room");
    let sent = room
        .send(RoomMessageEventContent::text_plain(
            "kept safe in the backup",
        ))
        .await
        .expect("send an encrypted message");
    backups
        .wait_for_steady_state()
        .await
        .expect("room keys uploaded");

    // The server holds the session's key, encrypted: a session of this room, no plaintext.
    let (version, keys) = server_backup(&server, &account.access_token).await;
    let sessions = keys["rooms"][room_id.as_str()]["sessions"]
        .as_object()
        .unwrap_or_else(|| panic!("no key of the room in the backup: {keys}"));
    assert!(!sessions.is_empty(), "{keys}");
    let stored = sessions.values().next().expect("a session");
    for field in ["ephemeral", "ciphertext", "mac"] {
        assert!(stored["session_data"][field].is_string(), "{stored}");
    }
    assert!(
        !keys.to_string().contains("kept safe"),
        "no plaintext on the server"
    );

    // A recovery key puts the backup key in secret storage; a new login of alice recovers it,
    // downloads the room's keys from the backup and decrypts the message.
    let recovery_key = phone
        .encryption()
        .recovery()
        .enable()
        .await
        .expect("enable recovery");
    let laptop = sdk_login(&server, "alice").await;
    assert_ne!(laptop.device_id(), phone.device_id(), "a second device");
    laptop
        .encryption()
        .recovery()
        .recover(&recovery_key)
        .await
        .expect("recover with the recovery key");
    let laptop_backups = laptop.encryption().backups();
    assert!(
        laptop_backups.are_enabled().await,
        "the backup key was recovered"
    );
    laptop_backups
        .download_room_keys_for_room(&room_id)
        .await
        .expect("download the room's keys");
    wait_until_decrypts(
        &laptop,
        &room_id,
        &sent.response.event_id,
        "kept safe in the backup",
    )
    .await;
    assert_eq!(
        server_backup(&server, &account.access_token).await.0,
        version,
        "restoring read the same backup version"
    );
}
