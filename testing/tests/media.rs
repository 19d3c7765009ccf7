//! The content repository over raw HTTP: uploads (at once, and created then uploaded), every
//! error (401, 404, 409, 403, 413, 429, 504, expiry, the legacy freeze), the headers that make
//! a served file safe in a browser, thumbnails (and a decompression bomb refused), and
//! matrix-sdk sending attachments and an avatar that another user's client downloads.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use matrix_sdk::{
    attachment::AttachmentConfig,
    config::SyncSettings,
    media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings},
    ruma::{events::room::MediaSource, OwnedMxcUri, OwnedRoomId, UInt},
    Client,
};
use myelin_testing::{Account, TestServer};
use reqwest::{header::HeaderMap, Method, StatusCode};
use serde_json::Value;

const PW: &str = "correct horse battery staple";

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
    fn assert_err(&self, status: u16, errcode: &str, what: &str) {
        assert_eq!(
            (
                self.status.as_u16(),
                self.json()["errcode"].as_str().unwrap_or_default()
            ),
            (status, errcode),
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Resp {
    let mut request =
        reqwest::Client::new().request(method, format!("{}{path}", server.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    }
    let response = request.send().await.expect("request");
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.bytes().await.expect("body").to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

async fn upload(server: &TestServer, who: &Account, query: &str, ct: &str, bytes: &[u8]) -> String {
    let path = format!("/_matrix/media/v3/upload{query}");
    let resp = send(
        server,
        Method::POST,
        &path,
        who.token(),
        Some((ct, bytes.to_vec())),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "upload: {}", resp.json());
    let uri = resp.json()["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_owned();
    uri.strip_prefix("mxc://").expect("an mxc URI").to_owned()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image =
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(width, height, Rgba([1, 2, 3, 255])));
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).expect("encode");
    out.into_inner()
}

const CSP: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
                   style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

fn assert_safe_headers(resp: &Resp) {
    assert_eq!(resp.header("content-security-policy"), CSP);
    assert_eq!(resp.header("x-content-type-options"), "nosniff");
    assert_eq!(resp.header("cross-origin-resource-policy"), "cross-origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_and_safe_headers() {
    let server = TestServer::start_with(|c| c.media.max_upload_bytes = 1024 * 1024).await;
    let alice = server.register("alice", PW).await;
    let name = server.server_name().to_owned();

    for (method, path) in [
        (Method::POST, "/_matrix/media/v3/upload".to_owned()),
        (Method::POST, "/_matrix/media/v1/create".to_owned()),
        (Method::GET, "/_matrix/client/v1/media/config".to_owned()),
        (Method::GET, "/_matrix/media/v3/config".to_owned()),
        (
            Method::GET,
            format!("/_matrix/client/v1/media/download/{name}/abc"),
        ),
        (
            Method::GET,
            format!("/_matrix/client/v1/media/thumbnail/{name}/abc?width=32&height=32"),
        ),
    ] {
        send(&server, method, &path, None, None)
            .await
            .assert_err(401, "M_MISSING_TOKEN", &path);
    }
    for path in [
        "/_matrix/client/v1/media/config",
        "/_matrix/media/v3/config",
    ] {
        let config = send(&server, Method::GET, path, alice.token(), None).await;
        assert_eq!(config.json()["m.upload.size"], 1024 * 1024, "{path}");
    }

    let text = upload(
        &server,
        &alice,
        "?filename=caf%C3%A9.txt",
        "text/plain",
        b"hello",
    )
    .await;
    let got = send(
        &server,
        Method::GET,
        &format!("/_matrix/client/v1/media/download/{text}"),
        alice.token(),
        None,
    )
    .await;
    assert_eq!((got.status, &got.body[..]), (StatusCode::OK, &b"hello"[..]));
    assert_eq!(got.header("content-type"), "text/plain");
    assert_eq!(
        got.header("content-disposition"),
        "inline; filename*=utf-8''caf%C3%A9.txt"
    );
    assert_safe_headers(&got);
    let named = send(
        &server,
        Method::GET,
        &format!("/_matrix/client/v1/media/download/{text}/other.txt"),
        alice.token(),
        None,
    )
    .await;
    assert_eq!(
        named.header("content-disposition"),
        "inline; filename=\"other.txt\""
    );

    let html = upload(
        &server,
        &alice,
        "?filename=x.html",
        "text/html",
        b"<script>alert(1)</script>",
    )
    .await;
    let got = send(
        &server,
        Method::GET,
        &format!("/_matrix/client/v1/media/download/{html}"),
        alice.token(),
        None,
    )
    .await;
    assert_eq!(
        got.header("content-disposition"),
        "attachment; filename=\"x.html\""
    );
    assert_safe_headers(&got);
    let bad_type = upload(&server, &alice, "", "not a type", b"x").await;
    let got = send(
        &server,
        Method::GET,
        &format!("/_matrix/client/v1/media/download/{bad_type}"),
        alice.token(),
        None,
    )
    .await;
    assert_eq!(got.header("content-type"), "application/octet-stream");
    assert_eq!(got.header("content-disposition"), "attachment");

    for path in [
        format!("/_matrix/client/v1/media/download/{name}/unknownmedia"),
        // Not a valid media ID: refused before any remote fetch.
        "/_matrix/client/v1/media/download/elsewhere.example/a!b".to_owned(),
        format!("/_matrix/media/v3/download/{text}"),
        format!("/_matrix/media/v3/thumbnail/{text}?width=32&height=32"),
    ] {
        send(&server, Method::GET, &path, alice.token(), None)
            .await
            .assert_err(404, "M_NOT_FOUND", &path);
    }
    // A remote server on a private address is not contacted (federation's address filter).
    let path = "/_matrix/client/v1/media/download/127.0.0.1:1/abc";
    send(&server, Method::GET, path, alice.token(), None)
        .await
        .assert_err(502, "M_UNKNOWN", path);

    let big = vec![7u8; 1024 * 1024 + 1];
    send(
        &server,
        Method::POST,
        "/_matrix/media/v3/upload",
        alice.token(),
        Some(("application/octet-stream", big)),
    )
    .await
    .assert_err(413, "M_TOO_LARGE", "an upload over the limit");
    let exact = vec![7u8; 1024 * 1024];
    let id = upload(&server, &alice, "", "application/octet-stream", &exact).await;
    let got = send(
        &server,
        Method::GET,
        &format!("/_matrix/client/v1/media/download/{id}"),
        alice.token(),
        None,
    )
    .await;
    assert_eq!(got.body.len(), 1024 * 1024);
    let versions = send(&server, Method::GET, "/_matrix/client/versions", None, None).await;
    assert_eq!(
        versions.json()["unstable_features"]["org.matrix.msc3916.stable"],
        true
    );
    send(
        &server,
        Method::GET,
        "/_matrix/client/v1/media/preview_url?url=https://example.org",
        alice.token(),
        None,
    )
    .await
    .assert_err(404, "M_UNRECOGNIZED", "URL previews are not served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_media_uploaded_later() {
    let server = TestServer::start_with(|c| {
        c.media.max_pending_uploads_per_user = 2;
        c.media.unused_expires_after_ms = 1_500;
    })
    .await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;

    let created = send(
        &server,
        Method::POST,
        "/_matrix/media/v1/create",
        alice.token(),
        None,
    )
    .await;
    assert_eq!(created.status, StatusCode::OK);
    let uri = created.json()["content_uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    assert!(created.json()["unused_expires_at"].as_u64().is_some());
    let id = uri.strip_prefix("mxc://").expect("mxc").to_owned();

    send(
        &server,
        Method::GET,
        &format!("/_matrix/client/v1/media/download/{id}?timeout_ms=100"),
        alice.token(),
        None,
    )
    .await
    .assert_err(504, "M_NOT_YET_UPLOADED", "a download before the upload");
    let put = format!("/_matrix/media/v3/upload/{id}");
    send(
        &server,
        Method::PUT,
        &put,
        bob.token(),
        Some(("text/plain", b"bob".to_vec())),
    )
    .await
    .assert_err(403, "M_FORBIDDEN", "an upload by another user");
    let ok = send(
        &server,
        Method::PUT,
        &put,
        alice.token(),
        Some(("text/plain", b"alice".to_vec())),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json());
    send(
        &server,
        Method::PUT,
        &put,
        alice.token(),
        Some(("text/plain", b"again".to_vec())),
    )
    .await
    .assert_err(409, "M_CANNOT_OVERWRITE_MEDIA", "a second upload");
    let got = send(
        &server,
        Method::GET,
        &format!("/_matrix/client/v1/media/download/{id}"),
        alice.token(),
        None,
    )
    .await;
    assert_eq!(&got.body[..], b"alice");
    send(
        &server,
        Method::PUT,
        &format!(
            "/_matrix/media/v3/upload/{}/nosuchmedia",
            server.server_name()
        ),
        alice.token(),
        Some(("text/plain", b"x".to_vec())),
    )
    .await
    .assert_err(404, "M_NOT_FOUND", "an upload to an unknown media ID");

    // Two pending is the cap; once they expire, more can be created, and theirs cannot be used.
    let first = send(
        &server,
        Method::POST,
        "/_matrix/media/v1/create",
        alice.token(),
        None,
    )
    .await;
    send(
        &server,
        Method::POST,
        "/_matrix/media/v1/create",
        alice.token(),
        None,
    )
    .await;
    send(
        &server,
        Method::POST,
        "/_matrix/media/v1/create",
        alice.token(),
        None,
    )
    .await
    .assert_err(429, "M_LIMIT_EXCEEDED", "a third pending upload");
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    let expired = first.json()["content_uri"]
        .as_str()
        .expect("uri")
        .trim_start_matches("mxc://")
        .to_owned();
    send(
        &server,
        Method::PUT,
        &format!("/_matrix/media/v3/upload/{expired}"),
        alice.token(),
        Some(("text/plain", b"late".to_vec())),
    )
    .await
    .assert_err(404, "M_NOT_FOUND", "an upload after expiry");
    send(
        &server,
        Method::GET,
        &format!("/_matrix/client/v1/media/download/{expired}"),
        alice.token(),
        None,
    )
    .await
    .assert_err(404, "M_NOT_FOUND", "a download of an expired media ID");
    let again = send(
        &server,
        Method::POST,
        "/_matrix/media/v1/create",
        alice.token(),
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "expired ones no longer count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_and_legacy_downloads() {
    let server = TestServer::start_with(|c| c.media.legacy_freeze_ms = i64::MAX as u64).await;
    let alice = server.register("alice", PW).await;
    let id = upload(
        &server,
        &alice,
        "?filename=p.png",
        "image/png",
        &png(400, 300),
    )
    .await;

    for (query, want) in [
        ("width=32&height=32&method=crop", (32, 32)),
        ("width=300&height=200&method=scale", (320, 240)),
        ("width=50&height=50&method=crop&animated=true", (96, 96)),
    ] {
        let thumb = send(
            &server,
            Method::GET,
            &format!("/_matrix/client/v1/media/thumbnail/{id}?{query}"),
            alice.token(),
            None,
        )
        .await;
        assert_eq!(thumb.status, StatusCode::OK, "{query}");
        assert_eq!(thumb.header("content-type"), "image/png");
        assert_safe_headers(&thumb);
        let image = image::load_from_memory(&thumb.body).expect("a PNG thumbnail");
        assert_eq!((image.width(), image.height()), want, "{query}");
    }
    let legacy = send(
        &server,
        Method::GET,
        &format!("/_matrix/media/v3/thumbnail/{id}?width=32&height=32&method=crop"),
        None,
        None,
    )
    .await;
    assert_eq!(
        legacy.status,
        StatusCode::OK,
        "legacy thumbnail before the freeze"
    );
    let legacy = send(
        &server,
        Method::GET,
        &format!("/_matrix/media/v3/download/{id}/x.png"),
        None,
        None,
    )
    .await;
    assert_eq!(
        (legacy.status, legacy.body.len()),
        (StatusCode::OK, png(400, 300).len())
    );
    assert_eq!(
        legacy.header("content-disposition"),
        "inline; filename=\"x.png\""
    );
    assert_safe_headers(&legacy);

    let path = format!("/_matrix/client/v1/media/thumbnail/{id}");
    send(&server, Method::GET, &path, alice.token(), None)
        .await
        .assert_err(400, "M_MISSING_PARAM", "no size");
    send(
        &server,
        Method::GET,
        &format!("{path}?width=32&height=32&method=zoom"),
        alice.token(),
        None,
    )
    .await
    .assert_err(400, "M_INVALID_PARAM", "an unknown method");
    send(
        &server,
        Method::GET,
        &format!("{path}?width=-1&height=32"),
        alice.token(),
        None,
    )
    .await
    .assert_err(400, "M_INVALID_PARAM", "a negative width");

    // A 2x2 GIF claiming 65535x65535 pixels: refused from its header.
    let mut bomb = Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(RgbaImage::new(2, 2))
        .write_to(&mut bomb, ImageFormat::Gif)
        .expect("gif");
    let mut bomb = bomb.into_inner();
    bomb[6..10].copy_from_slice(&[0xff; 4]);
    let bomb_id = upload(&server, &alice, "", "image/gif", &bomb).await;
    send(
        &server,
        Method::GET,
        &format!("/_matrix/client/v1/media/thumbnail/{bomb_id}?width=32&height=32"),
        alice.token(),
        None,
    )
    .await
    .assert_err(400, "M_UNKNOWN", "a decompression bomb");
    let text = upload(&server, &alice, "", "text/plain", b"words").await;
    send(
        &server,
        Method::GET,
        &format!("/_matrix/client/v1/media/thumbnail/{text}?width=32&height=32"),
        alice.token(),
        None,
    )
    .await
    .assert_err(400, "M_UNKNOWN", "a thumbnail of text");
}

/// A logged-in matrix-sdk client of `localpart`.
async fn sdk_client(server: &TestServer, localpart: &str) -> Client {
    let client = Client::builder()
        .homeserver_url(server.base_url())
        .build()
        .await
        .expect("build matrix-sdk client");
    client
        .matrix_auth()
        .login_username(localpart, PW)
        .send()
        .await
        .expect("login");
    client
}

/// Downloads `url` through `client` in `format`.
async fn sdk_download(client: &Client, url: &str, format: MediaFormat) -> Vec<u8> {
    let request = MediaRequestParameters {
        source: MediaSource::Plain(OwnedMxcUri::from(url)),
        format,
    };
    client
        .media()
        .get_media_content(&request, false)
        .await
        .unwrap_or_else(|e| panic!("SDK download of {url}: {e}"))
}

/// As clients use it, through matrix-sdk: Alice sends an image and a file to a room and sets an
/// avatar; Bob, in the room, downloads both attachments, a thumbnail of the image and her
/// avatar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_sdk_attachments_thumbnails_and_avatars() {
    let server = TestServer::start().await;
    let alice_account = server.register("alice", PW).await;
    let bob_account = server.register("bob", PW).await;
    let room = server
        .create_room(&alice_account.access_token, &serde_json::json!({}))
        .await;
    server
        .invite(&alice_account.access_token, &room, &bob_account.user_id)
        .await;
    server.join(&bob_account.access_token, &room).await;
    let room_id = OwnedRoomId::try_from(room.as_str()).expect("room ID");
    let (alice, bob) = (
        sdk_client(&server, "alice").await,
        sdk_client(&server, "bob").await,
    );
    alice
        .sync_once(SyncSettings::default())
        .await
        .expect("Alice syncs");
    let alice_room = alice.get_room(&room_id).expect("Alice's room");
    let image = png(640, 480);
    let file = b"the quarterly report, in plain text".to_vec();
    let mut sent = Vec::new();
    for (name, mime, bytes) in [
        ("photo.png", "image/png", &image),
        ("report.txt", "text/plain", &file),
    ] {
        let response = alice_room
            .send_attachment(
                name,
                &mime.parse().expect("mime"),
                bytes.clone(),
                AttachmentConfig::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("send {name}: {e}"));
        sent.push(response.event_id);
    }

    bob.sync_once(SyncSettings::default())
        .await
        .expect("Bob syncs");
    let bob_room = bob.get_room(&room_id).expect("Bob's room");
    let mut urls = Vec::new();
    for event_id in &sent {
        let event = bob_room.event(event_id, None).await.expect("the event");
        let json: Value = event.raw().deserialize_as().expect("event JSON");
        urls.push(
            json["content"]["url"]
                .as_str()
                .unwrap_or_else(|| panic!("no url in {json}"))
                .to_owned(),
        );
    }
    assert_eq!(sdk_download(&bob, &urls[0], MediaFormat::File).await, image);
    assert_eq!(sdk_download(&bob, &urls[1], MediaFormat::File).await, file);
    let thumbnail = sdk_download(
        &bob,
        &urls[0],
        MediaFormat::Thumbnail(MediaThumbnailSettings::new(
            UInt::from(32u32),
            UInt::from(32u32),
        )),
    )
    .await;
    let thumbnail = image::load_from_memory(&thumbnail).expect("the thumbnail is an image");
    // The smallest stored thumbnail at least that big, well under the original.
    assert!(
        thumbnail.width() >= 32 && thumbnail.width() < 640,
        "{}",
        thumbnail.width()
    );

    let avatar = png(40, 40);
    alice
        .account()
        .upload_avatar(&"image/png".parse().expect("mime"), avatar.clone())
        .await
        .expect("Alice sets an avatar");
    let (status, profile) = server
        .get(
            &format!(
                "/_matrix/client/v3/profile/{}/avatar_url",
                alice_account.user_id
            ),
            Some(&bob_account.access_token),
        )
        .await;
    assert_eq!(status, 200, "{profile}");
    let avatar_url = profile["avatar_url"].as_str().expect("an avatar URL");
    assert_eq!(
        sdk_download(&bob, avatar_url, MediaFormat::File).await,
        avatar
    );
}

/// `animated=true` on an animated GIF answers an animated GIF of the thumbnail's size (the
/// original when it is that small already); without it, or for a PNG, the static thumbnail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn animated_thumbnails() {
    use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
    use image::{AnimationDecoder, Delay, Frame};
    let gif = |size: u32| {
        let mut out = Vec::new();
        {
            let mut encoder = GifEncoder::new(&mut out);
            encoder.set_repeat(Repeat::Infinite).expect("repeat");
            let frames = (0..3u8).map(|i| {
                let buffer = RgbaImage::from_pixel(size, size, Rgba([i * 80, 10, 10, 255]));
                Frame::from_parts(buffer, 0, 0, Delay::from_numer_denom_ms(80, 1))
            });
            encoder.encode_frames(frames).expect("encode");
        }
        out
    };
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let big = upload(&server, &alice, "", "image/gif", &gif(120)).await;
    let small_gif = gif(16);
    let small = upload(&server, &alice, "", "image/gif", &small_gif).await;
    let still = upload(&server, &alice, "", "image/png", &png(120, 120)).await;
    let thumb = |id: &str, animated: &str| {
        format!("/_matrix/client/v1/media/thumbnail/{id}?width=32&height=32&method=crop{animated}")
    };

    let resp = send(
        &server,
        Method::GET,
        &thumb(&big, "&animated=true"),
        alice.token(),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json());
    assert_eq!(resp.header("content-type"), "image/gif");
    let frames = GifDecoder::new(Cursor::new(&resp.body))
        .expect("a GIF")
        .into_frames()
        .collect_frames()
        .expect("frames");
    assert_eq!(frames.len(), 3, "animated");
    assert_eq!(frames[0].buffer().dimensions(), (32, 32));

    let resp = send(&server, Method::GET, &thumb(&big, ""), alice.token(), None).await;
    assert_eq!(
        resp.header("content-type"),
        "image/png",
        "static unless asked"
    );
    let resp = send(
        &server,
        Method::GET,
        &thumb(&small, "&animated=true"),
        alice.token(),
        None,
    )
    .await;
    assert_eq!(resp.body, small_gif, "small enough: the original");
    let resp = send(
        &server,
        Method::GET,
        &thumb(&still, "&animated=true"),
        alice.token(),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("content-type"),
        "image/png",
        "a PNG cannot be animated"
    );
}
