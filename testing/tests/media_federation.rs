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
