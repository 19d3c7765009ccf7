//! The media operations of `myelin media ...`, run (through [`myelin::media::run`], the function
//! the command line calls) against the data of a server that keeps running: deleting a user's
//! and a room's media (rows, thumbnails and files, a file shared with other media kept),
//! quarantine (404 to clients, on both download paths and thumbnails, and to other servers) and
//! purging the cache of remote media least recently used first. The binary itself is run by
//! `crates/myelin/tests/crash_media.rs`.

use std::path::Path;

use myelin::media::MediaCommand;
use myelin_federation::auth::{sign_request, RequestToSign};
use myelin_testing::federation::name;
use myelin_testing::hostile::server_key;
use myelin_testing::http::{room_path, PW};
use myelin_testing::{Account, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn upload(server: &TestServer, who: &Account, ct: &str, bytes: &[u8]) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload", server.base_url()))
        .bearer_auth(&who.access_token)
        .header("content-type", ct)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::OK, "upload");
    let body: Value = response.json().await.expect("json");
    body["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_owned()
}

/// `GET` of a client media path (`download` or `thumbnail?...`) of `uri` on `server`; the
/// status and the body.
async fn fetch(server: &TestServer, who: &Account, what: &str, uri: &str) -> (u16, Vec<u8>) {
    let (what, query) = match what.split_once('?') {
        Some((what, query)) => (what, format!("?{query}")),
        None => (what, String::new()),
    };
    let path = format!(
        "/_matrix/client/v1/media/{what}/{}{query}",
        &uri["mxc://".len()..]
    );
    get(server, Some(who), &path).await
}

/// `GET path` on `server`, with `who`'s token if given; the status and the body.
async fn get(server: &TestServer, who: Option<&Account>, path: &str) -> (u16, Vec<u8>) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.base_url()));
    if let Some(who) = who {
        request = request.bearer_auth(&who.access_token);
    }
    let response = request.send().await.expect("get");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

/// The status of a signed `GET /_matrix/federation/v1/media/download/{id}` from `b` to `a`.
async fn federation_download(a: &TestServer, b: &TestServer, uri: &str) -> u16 {
    let path = format!(
        "/_matrix/federation/v1/media/download/{}",
        uri.rsplit('/').next().expect("media ID")
    );
    let header = sign_request(
        &RequestToSign {
            method: "GET",
            uri: &path,
            origin: &name(b.loopback_server_name()),
            destination: &name(a.loopback_server_name()),
            content: None,
        },
        &server_key(b),
    )
    .expect("signs");
    reqwest::Client::new()
        .get(format!("{}{path}", a.base_url()))
        .header("authorization", header.to_string())
        .send()
        .await
        .expect("federation get")
        .status()
        .as_u16()
}

async fn run(server: &TestServer, command: MediaCommand) -> String {
    myelin::media::run(server.config().clone(), command)
        .await
        .expect("the media command succeeds")
}

/// Whether a file of the media directory holds exactly `bytes`.
fn stored(server: &TestServer, bytes: &[u8]) -> bool {
    fn walk(dir: &Path, bytes: &[u8]) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let path = entry.path();
            if path.is_dir() {
                path.file_name().is_some_and(|n| n != "tmp") && walk(&path, bytes)
            } else {
                std::fs::read(&path).is_ok_and(|content| content == bytes)
            }
        })
    }
    walk(&server.data_dir().join("media"), bytes)
}

fn png() -> Vec<u8> {
    let image = image::RgbaImage::from_pixel(64, 48, image::Rgba([9, 8, 7, 255]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(image)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner()
}

async fn send_event(server: &TestServer, who: &Account, room: &str, txn: &str, content: Value) {
    let path = room_path(room, &format!("send/m.room.message/{txn}"));
    let (status, body) = server.put(&path, who.token(), &content).await;
    assert_eq!(status, StatusCode::OK, "send: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_a_users_and_a_rooms_media() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let own = upload(&server, &alice, "text/plain", b"alice's own").await;
    let picture = upload(&server, &alice, "image/png", &png()).await;
    let shared = upload(&server, &alice, "text/plain", b"shared bytes").await;
    let bobs_copy = upload(&server, &bob, "text/plain", b"shared bytes").await;
    let in_room = upload(&server, &bob, "text/plain", b"sent in the room").await;
    let room_thumb = upload(&server, &bob, "text/plain", b"a room thumbnail").await;
    let encrypted = upload(&server, &bob, "text/plain", b"an encrypted file").await;
    let kept = upload(&server, &bob, "text/plain", b"not in the room").await;
    let thumb = "thumbnail?width=32&height=32&method=scale";
    assert_eq!(fetch(&server, &bob, thumb, &picture).await.0, 200);

    let room = server.create_room(&alice.access_token, &json!({})).await;
    let image = json!({ "msgtype": "m.image", "body": "x", "url": in_room,
                        "info": { "thumbnail_url": room_thumb } });
    send_event(&server, &alice, &room, "t1", image).await;
    let file = json!({ "msgtype": "m.file", "body": "y",
                       "file": { "url": encrypted, "v": "v2" } });
    send_event(&server, &alice, &room, "t2", file).await;
    let remote = json!({ "msgtype": "m.file", "body": "z", "url": "mxc://elsewhere.example/abc" });
    send_event(&server, &alice, &room, "t3", remote).await;

    let summary = run(&server, MediaCommand::DeleteRoom { room_id: room }).await;
    assert!(summary.contains("3 media"), "{summary}");
    for uri in [&in_room, &room_thumb, &encrypted] {
        assert_eq!(
            fetch(&server, &alice, "download", uri).await.0,
            404,
            "{uri}"
        );
    }
    assert!(!stored(&server, b"sent in the room"), "the file is removed");
    assert!(!stored(&server, b"an encrypted file"));
    assert_eq!(fetch(&server, &bob, "download", &kept).await.0, 200);

    run(
        &server,
        MediaCommand::DeleteUser {
            user_id: alice.user_id.clone(),
        },
    )
    .await;
    for uri in [&own, &picture, &shared] {
        assert_eq!(fetch(&server, &bob, "download", uri).await.0, 404, "{uri}");
    }
    assert_eq!(fetch(&server, &bob, thumb, &picture).await.0, 404);
    assert!(!stored(&server, b"alice's own"));
    assert!(!stored(&server, &png()));
    let (status, body) = fetch(&server, &bob, "download", &bobs_copy).await;
    assert_eq!(
        (status, &body[..]),
        (200, &b"shared bytes"[..]),
        "bob's copy"
    );
    assert!(stored(&server, b"shared bytes"), "a shared file stays");

    // The server keeps working after the operations.
    let again = upload(&server, &alice, "text/plain", b"alice's own").await;
    assert_eq!(fetch(&server, &alice, "download", &again).await.0, 200);
    let refused = myelin::media::run(
        server.config().clone(),
        MediaCommand::DeleteUser {
            user_id: "@someone:elsewhere.example".into(),
        },
    )
    .await;
    assert!(refused.is_err(), "only users of this server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_media_is_not_found_anywhere() {
    // A serves its media through the legacy endpoints too, so that both paths are checked.
    let a = TestServer::start_federating_with(|c| c.media.legacy_freeze_ms = i64::MAX as u64).await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    let text = upload(&a, &alice, "text/plain", b"to be quarantined").await;
    let id = &text["mxc://".len()..];
    let legacy = format!("/_matrix/media/v3/download/{id}");
    let named = format!("/_matrix/client/v1/media/download/{id}/name.txt");
    assert_eq!(get(&a, None, &legacy).await.0, 200, "legacy before");
    let picture = upload(&a, &alice, "image/png", &png()).await;
    let in_room = upload(&a, &alice, "text/plain", b"named in a room").await;
    let thumb = "thumbnail?width=32&height=32&method=crop";

    run(&a, MediaCommand::Quarantine { uri: text.clone() }).await;
    run(
        &a,
        MediaCommand::Quarantine {
            uri: picture.clone(),
        },
    )
    .await;
    assert_eq!(fetch(&a, &alice, "download", &text).await.0, 404);
    assert_eq!(get(&a, Some(&alice), &named).await.0, 404);
    assert_eq!(get(&a, None, &legacy).await.0, 404, "legacy after");
    assert_eq!(fetch(&a, &alice, thumb, &picture).await.0, 404);
    let legacy_thumb = format!(
        "/_matrix/media/v3/thumbnail/{}?width=32&height=32",
        &picture["mxc://".len()..]
    );
    assert_eq!(get(&a, None, &legacy_thumb).await.0, 404);
    assert_eq!(federation_download(&a, &b, &text).await, 404, "to servers");
    assert_eq!(fetch(&b, &bob, "download", &text).await.0, 404, "through B");

    run(&a, MediaCommand::Unquarantine { uri: text.clone() }).await;
    assert_eq!(fetch(&a, &alice, "download", &text).await.0, 200);
    assert_eq!(get(&a, Some(&alice), &named).await.0, 200);
    assert_eq!(get(&a, None, &legacy).await.0, 200, "legacy released");
    let (status, body) = fetch(&b, &bob, "download", &text).await;
    assert_eq!((status, &body[..]), (200, &b"to be quarantined"[..]));

    // B quarantines its cached copy of A's media.
    run(&b, MediaCommand::Quarantine { uri: text.clone() }).await;
    assert_eq!(fetch(&b, &bob, "download", &text).await.0, 404);
    assert_eq!(fetch(&a, &alice, "download", &text).await.0, 200, "A's own");

    let room = a.create_room(&alice.access_token, &json!({})).await;
    let content = json!({ "msgtype": "m.file", "body": "f", "url": in_room });
    send_event(&a, &alice, &room, "t1", content).await;
    let summary = run(&a, MediaCommand::QuarantineRoom { room_id: room }).await;
    assert!(summary.contains("Quarantined 1 media"), "{summary}");
    assert_eq!(fetch(&a, &alice, "download", &in_room).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_the_remote_cache_least_recently_used_first() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    let files: [&[u8]; 3] = [b"first remote file", b"second remote file", b"third file"];
    let mut uris = Vec::new();
    for bytes in files {
        let uri = upload(&a, &alice, "text/plain", bytes).await;
        assert_eq!(fetch(&b, &bob, "download", &uri).await.0, 200);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        uris.push(uri);
    }
    assert!(files.iter().all(|bytes| stored(&b, bytes)), "cached on B");

    let keep = files[2].len() as u64;
    let summary = run(
        &b,
        MediaCommand::PurgeRemote {
            older_than: None,
            max_bytes: Some(keep),
        },
    )
    .await;
    assert!(summary.contains("2 media"), "{summary}");
    assert!(
        !stored(&b, files[0]) && !stored(&b, files[1]),
        "oldest gone"
    );
    assert!(stored(&b, files[2]), "the most recent stays");
    assert!(stored(&a, files[0]), "A's own media is untouched");

    // A purged copy is fetched again when asked for.
    let (status, body) = fetch(&b, &bob, "download", &uris[0]).await;
    assert_eq!((status, &body[..]), (200, files[0]));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let summary = run(
        &b,
        MediaCommand::PurgeRemote {
            older_than: Some("0s".into()),
            max_bytes: None,
        },
    )
    .await;
    assert!(summary.contains("2 media"), "{summary}");
    assert!(files.iter().all(|bytes| !stored(&b, bytes)), "all gone");
}
