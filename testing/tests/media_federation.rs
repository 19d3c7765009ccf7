//! Media over federation between two servers on loopback: server A serves its media to server B
//! through `/_matrix/federation/v1/media/download` and `/thumbnail` (signed requests,
//! `multipart/mixed` answers), and B's users download and thumbnail A's media through B.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use myelin_federation::auth::{sign_request, RequestToSign};
use myelin_testing::federation::name;
use myelin_testing::hostile::server_key;
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

/// A GET from server `b` to server `a`, signed with B's key unless `signed` is false.
async fn federation_get(a: &TestServer, b: &TestServer, uri: &str, signed: bool) -> Resp {
    let mut request = reqwest::Client::new().get(format!("{}{uri}", a.base_url()));
    if signed {
        let header = sign_request(
            &RequestToSign {
                method: "GET",
                uri,
                origin: &name(b.loopback_server_name()),
                destination: &name(a.loopback_server_name()),
                content: None,
            },
            &server_key(b),
        )
        .expect("signs");
        request = request.header("authorization", header.to_string());
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

async fn upload(server: &TestServer, who: &Account, ct: &str, bytes: &[u8]) -> String {
    let resp = send(
        server,
        Method::POST,
        "/_matrix/media/v3/upload?filename=pic.png",
        who.token(),
        Some((ct, bytes.to_vec())),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "upload: {}", resp.json());
    resp.json()["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_owned()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, y| {
        Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(image)
        .write_to(&mut out, ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// A part of a multipart body: its headers (lowercase names) and bytes.
type Part = (Vec<(String, String)>, Vec<u8>);

/// A three-frame animated GIF of `size`×`size`.
fn animated_gif(size: u32) -> Vec<u8> {
    use image::codecs::gif::{GifEncoder, Repeat};
    use image::{Delay, Frame};
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        encoder.set_repeat(Repeat::Infinite).expect("repeat");
        let frames = (0..3u8).map(|i| {
            let buffer = RgbaImage::from_pixel(size, size, Rgba([i * 80, 20, 20, 255]));
            Frame::from_parts(buffer, 0, 0, Delay::from_numer_denom_ms(80, 1))
        });
        encoder.encode_frames(frames).expect("encode");
    }
    out
}

/// The parts of a `multipart/mixed` body.
fn parts(resp: &Resp) -> Vec<Part> {
    let content_type = resp.header("content-type");
    assert!(
        content_type.starts_with("multipart/mixed"),
        "multipart answer: {content_type}"
    );
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let body = &resp.body;
    let mut found = Vec::new();
    let mut positions = Vec::new();
    let mut i = 0;
    while let Some(at) = find(&body[i..], delimiter.as_bytes()) {
        positions.push(i + at);
        i += at + delimiter.len();
    }
    for pair in positions.windows(2) {
        let part = &body[pair[0] + delimiter.len() + 2..pair[1] - 2];
        let split = find(part, b"\r\n\r\n").expect("headers end");
        let headers = String::from_utf8_lossy(&part[..split])
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        found.push((headers, part[split + 4..].to_vec()));
    }
    let last = positions.last().expect("a closing delimiter");
    assert!(body[last + delimiter.len()..].starts_with(b"--"), "closed");
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn part_header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

fn media_id(uri: &str) -> &str {
    uri.rsplit('/').next().expect("media ID")
}

/// A serves its media to B as `multipart/mixed`: `{}` then the file; unsigned is 401, unknown 404,
/// and a thumbnail is an image part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_media_to_other_servers() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let text = b"hello over federation".to_vec();
    let uri = upload(&a, &alice, "text/plain", &text).await;
    let path = format!("/_matrix/federation/v1/media/download/{}", media_id(&uri));

    let unsigned = federation_get(&a, &b, &path, false).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED, "unsigned");

    let resp = federation_get(&a, &b, &path, true).await;
    assert_eq!(resp.status, StatusCode::OK);
    let found = parts(&resp);
    assert_eq!(found.len(), 2, "metadata and file");
    assert_eq!(part_header(&found[0].0, "content-type"), "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&found[0].1).expect("json"),
        serde_json::json!({})
    );
    assert_eq!(part_header(&found[1].0, "content-type"), "text/plain");
    assert!(part_header(&found[1].0, "content-disposition").contains("pic.png"));
    assert_eq!(found[1].1, text);

    let unknown = federation_get(&a, &b, "/_matrix/federation/v1/media/download/nope", true).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["errcode"], "M_NOT_FOUND");

    let image = upload(&a, &alice, "image/png", &png(200, 100)).await;
    let thumb_path = format!(
        "/_matrix/federation/v1/media/thumbnail/{}?width=32&height=32&method=crop",
        media_id(&image)
    );
    let thumb = federation_get(&a, &b, &thumb_path, true).await;
    assert_eq!(thumb.status, StatusCode::OK);
    let found = parts(&thumb);
    assert_eq!(part_header(&found[1].0, "content-type"), "image/png");
    let decoded = image::load_from_memory(&found[1].1).expect("a thumbnail image");
    assert_eq!((decoded.width(), decoded.height()), (32, 32));

    let no_size = federation_get(
        &a,
        &b,
        &format!(
            "/_matrix/federation/v1/media/thumbnail/{}",
            media_id(&image)
        ),
        true,
    )
    .await;
    assert_eq!(no_size.status, StatusCode::BAD_REQUEST);
}

/// B's users download and thumbnail A's media through B; B keeps a copy, served after A stops.
/// B's legacy endpoint does not fetch remote media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_remote_media_through_the_home_server() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    let text = b"a file from server A".to_vec();
    let uri = upload(&a, &alice, "text/plain", &text).await;
    let image = upload(&a, &alice, "image/png", &png(300, 200)).await;
    let remote = |uri: &str, what: &str| format!("/_matrix/client/v1/media/{what}/{}", &uri[6..]);

    let legacy = send(
        &b,
        Method::GET,
        &format!("/_matrix/media/v3/download/{}", &uri[6..]),
        None,
        None,
    )
    .await;
    assert_eq!(legacy.status, StatusCode::NOT_FOUND, "legacy never fetches");

    let resp = send(
        &b,
        Method::GET,
        &remote(&uri, "download"),
        bob.token(),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json());
    assert_eq!(resp.body, text);
    assert_eq!(resp.header("content-type"), "text/plain");
    assert!(resp.header("content-disposition").contains("pic.png"));
    assert_eq!(resp.header("x-content-type-options"), "nosniff");

    let path = format!(
        "{}?width=96&height=96&method=crop",
        remote(&image, "thumbnail")
    );
    let thumb = send(&b, Method::GET, &path, bob.token(), None).await;
    assert_eq!(thumb.status, StatusCode::OK, "{}", thumb.json());
    assert_eq!(thumb.header("content-type"), "image/png");
    let decoded = image::load_from_memory(&thumb.body).expect("a thumbnail");
    assert_eq!((decoded.width(), decoded.height()), (96, 96));
    let legacy_thumb = format!(
        "/_matrix/media/v3/thumbnail/{}?width=96&height=96&method=crop",
        &image[6..]
    );
    let legacy = send(&b, Method::GET, &legacy_thumb, None, None).await;
    assert_eq!(
        legacy.status,
        StatusCode::NOT_FOUND,
        "the legacy API serves no copy fetched after the freeze"
    );

    // An animated thumbnail of A's GIF is made on B from the original.
    let gif = upload(&a, &alice, "image/gif", &animated_gif(100)).await;
    let path = format!(
        "{}?width=32&height=32&method=crop&animated=true",
        remote(&gif, "thumbnail")
    );
    let animated = send(&b, Method::GET, &path, bob.token(), None).await;
    assert_eq!(animated.status, StatusCode::OK, "{}", animated.json());
    assert_eq!(animated.header("content-type"), "image/gif");
    let frames = image::codecs::gif::GifDecoder::new(Cursor::new(&animated.body)).expect("a GIF");
    let frames = image::AnimationDecoder::into_frames(frames)
        .collect_frames()
        .expect("frames");
    assert_eq!(frames.len(), 3, "animated");

    let unknown = format!(
        "/_matrix/client/v1/media/download/{}/nope",
        a.loopback_server_name()
    );
    let resp = send(&b, Method::GET, &unknown, bob.token(), None).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.json());

    let path_thumb = format!(
        "{}?width=30&height=30&method=crop",
        remote(&image, "thumbnail")
    );
    let image_path = remote(&image, "download");
    let original = send(&b, Method::GET, &image_path, bob.token(), None).await;
    assert_eq!(original.status, StatusCode::OK);
    drop(a.stop().await);

    let again = send(
        &b,
        Method::GET,
        &remote(&uri, "download"),
        bob.token(),
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "served from B's copy");
    assert_eq!(again.body, text);
    let thumb = send(&b, Method::GET, &path_thumb, bob.token(), None).await;
    assert_eq!(
        thumb.status,
        StatusCode::OK,
        "made from B's copy: {}",
        thumb.json()
    );
    let decoded = image::load_from_memory(&thumb.body).expect("a thumbnail");
    assert_eq!((decoded.width(), decoded.height()), (32, 32));
}

mod stub {
    //! A federation peer that answers media requests as the test wants: slowly and counting,
    //! through a `Location`, only on the legacy endpoint, too large, or not at all.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use axum::extract::{Path, RawQuery, State};
    use axum::http::{header, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::Router;

    #[derive(Default)]
    pub struct Counts {
        pub downloads: AtomicUsize,
        pub legacy: AtomicUsize,
        pub legacy_query: std::sync::Mutex<String>,
    }

    pub struct Stub {
        pub name: String,
        pub counts: Arc<Counts>,
    }

    pub async fn start() -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let name = listener.local_addr().expect("addr").to_string();
        let counts = Arc::new(Counts::default());
        let app = Router::new()
            .route("/_matrix/federation/v1/media/download/{id}", get(download))
            .route(
                "/_matrix/federation/v1/media/thumbnail/{id}",
                get(|| async { (StatusCode::NOT_FOUND, r#"{"errcode":"M_UNRECOGNIZED"}"#) }),
            )
            .route("/_matrix/media/v3/download/{server}/{id}", get(legacy))
            .route("/files/{id}", get(file))
            .with_state((counts.clone(), name.clone()));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Stub { name, counts }
    }

    type St = State<(Arc<Counts>, String)>;

    fn multipart(second_part_headers: &str, body: &[u8]) -> Response {
        let mut out = b"--XyZ\r\nContent-Type: application/json\r\n\r\n{}\r\n--XyZ\r\n".to_vec();
        out.extend_from_slice(second_part_headers.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n--XyZ--\r\n");
        (
            [(header::CONTENT_TYPE, "multipart/mixed; boundary=XyZ")],
            out,
        )
            .into_response()
    }

    async fn download(State((counts, name)): St, Path(id): Path<String>) -> Response {
        counts.downloads.fetch_add(1, Ordering::SeqCst);
        match id.as_str() {
            "slow" => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                multipart("Content-Type: text/plain", b"slow bytes")
            }
            "redirect" => multipart(&format!("Location: http://{name}/files/target"), b""),
            "private" => multipart("Location: http://10.0.0.1/files/target", b""),
            "big" => multipart("Content-Type: text/plain", &[b'x'; 4096]),
            "old" => (StatusCode::NOT_FOUND, r#"{"errcode":"M_UNRECOGNIZED"}"#).into_response(),
            _ => (StatusCode::NOT_FOUND, r#"{"errcode":"M_NOT_FOUND"}"#).into_response(),
        }
    }

    async fn legacy(
        State((counts, _)): St,
        Path((_, id)): Path<(String, String)>,
        RawQuery(query): RawQuery,
    ) -> Response {
        counts.legacy.fetch_add(1, Ordering::SeqCst);
        *counts.legacy_query.lock().expect("lock") = query.unwrap_or_default();
        if id != "old" {
            return (StatusCode::NOT_FOUND, r#"{"errcode":"M_NOT_FOUND"}"#).into_response();
        }
        (
            [
                (header::CONTENT_TYPE, "text/plain"),
                (
                    header::CONTENT_DISPOSITION,
                    "inline; filename*=utf-8''vieux%20fichier.txt",
                ),
            ],
            "from the legacy endpoint",
        )
            .into_response()
    }

    async fn file() -> Response {
        (
            [
                (header::CONTENT_TYPE, "text/plain"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"target.txt\"",
                ),
            ],
            "redirected bytes",
        )
            .into_response()
    }
}

/// Against a stub peer: concurrent requests for one file make one fetch, a `Location` part is
/// followed (a private address in it is refused), older servers are read through the legacy
/// endpoint, and a file over `media.max_remote_bytes` is 502 `M_TOO_LARGE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_remote_media_once_through_redirects_and_fallbacks() {
    use std::sync::atomic::Ordering;
    let peer = stub::start().await;
    let b = TestServer::start_federating_with(|config| {
        config.egress.allow = vec!["127.0.0.1".to_owned()];
        config.media.max_remote_bytes = 1024;
    })
    .await;
    let bob = b.register("bob", PW).await;
    let path = |id: &str| format!("/_matrix/client/v1/media/download/{}/{id}", peer.name);

    let slow = path("slow");
    let requests = (0..5).map(|_| send(&b, Method::GET, &slow, bob.token(), None));
    let answers = futures_util::future::join_all(requests).await;
    for resp in &answers {
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.json());
        assert_eq!(resp.body, b"slow bytes");
    }
    assert_eq!(peer.counts.downloads.load(Ordering::SeqCst), 1, "one fetch");
    let cached = send(&b, Method::GET, &path("slow"), bob.token(), None).await;
    assert_eq!(cached.body, b"slow bytes");
    assert_eq!(peer.counts.downloads.load(Ordering::SeqCst), 1, "cached");

    let redirected = send(&b, Method::GET, &path("redirect"), bob.token(), None).await;
    assert_eq!(redirected.status, StatusCode::OK, "{}", redirected.json());
    assert_eq!(redirected.body, b"redirected bytes");
    assert!(redirected
        .header("content-disposition")
        .contains("target.txt"));

    let private = send(&b, Method::GET, &path("private"), bob.token(), None).await;
    assert_eq!(
        private.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        private.json()
    );

    let old = send(&b, Method::GET, &path("old"), bob.token(), None).await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.json());
    assert_eq!(old.body, b"from the legacy endpoint");
    assert!(
        old.header("content-disposition")
            .contains("filename=\"vieux fichier.txt\""),
        "{}",
        old.header("content-disposition")
    );
    let query = peer.counts.legacy_query.lock().expect("lock").clone();
    assert!(query.contains("allow_remote=false"), "{query}");

    let big = send(&b, Method::GET, &path("big"), bob.token(), None).await;
    assert_eq!(big.status, StatusCode::BAD_GATEWAY);
    assert_eq!(big.json()["errcode"], "M_TOO_LARGE");

    let gone = send(&b, Method::GET, &path("gone"), bob.token(), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        peer.counts.legacy.load(Ordering::SeqCst),
        1,
        "no fallback on M_NOT_FOUND"
    );

    let unauthenticated = send(&b, Method::GET, &path("slow"), None, None).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
}

/// A raw request to Synapse (self-signed HTTPS): status, headers and bytes.
async fn synapse_send(
    synapse: &myelin_testing::SynapseServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Resp {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let mut request = client
        .request(method, format!("{}{path}", synapse.base_url()))
        .bearer_auth(token);
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    }
    let response = request.send().await.expect("request to Synapse");
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.bytes().await.expect("body").to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

/// Myelin and Synapse download (and thumbnail) each other's media over federation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_between_myelin_and_synapse() {
    let Some(synapse) = myelin_testing::SynapseServer::start().await else {
        return;
    };
    let myelin = TestServer::start_federating_tls().await;
    let alice = myelin.register("alice", PW).await;
    let (_, bob_token) = synapse.register("bob", PW).await;

    // Synapse's media through Myelin.
    let picture = png(120, 80);
    let uploaded = synapse_send(
        &synapse,
        Method::POST,
        "/_matrix/media/v3/upload?filename=syn.png",
        &bob_token,
        Some(("image/png", picture.clone())),
    )
    .await;
    assert_eq!(uploaded.status, StatusCode::OK, "{}", uploaded.json());
    let uri = uploaded.json()["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_owned();
    let path = format!("/_matrix/client/v1/media/download/{}", &uri[6..]);
    let resp = send(&myelin, Method::GET, &path, alice.token(), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json());
    assert_eq!(resp.body, picture);
    assert_eq!(resp.header("content-type"), "image/png");
    assert!(resp.header("content-disposition").contains("syn.png"));
    let thumb_path = format!(
        "/_matrix/client/v1/media/thumbnail/{}?width=32&height=32&method=crop",
        &uri[6..]
    );
    let thumb = send(&myelin, Method::GET, &thumb_path, alice.token(), None).await;
    assert_eq!(thumb.status, StatusCode::OK, "{}", thumb.json());
    image::load_from_memory(&thumb.body).expect("Synapse's thumbnail is an image");

    // Myelin's media through Synapse.
    let text = b"from Myelin to Synapse".to_vec();
    let uri = upload(&myelin, &alice, "text/plain", &text).await;
    let path = format!("/_matrix/client/v1/media/download/{}", &uri[6..]);
    let resp = synapse_send(&synapse, Method::GET, &path, &bob_token, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json());
    assert_eq!(resp.body, text);
    let image_uri = upload(&myelin, &alice, "image/png", &png(200, 150)).await;
    let thumb_path = format!(
        "/_matrix/client/v1/media/thumbnail/{}?width=96&height=96&method=crop",
        &image_uri[6..]
    );
    let thumb = synapse_send(&synapse, Method::GET, &thumb_path, &bob_token, None).await;
    assert_eq!(thumb.status, StatusCode::OK, "{}", thumb.json());
    let decoded = image::load_from_memory(&thumb.body).expect("Myelin's thumbnail");
    assert_eq!((decoded.width(), decoded.height()), (96, 96));
}
