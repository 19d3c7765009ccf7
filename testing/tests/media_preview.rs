//! URL previews (`/_matrix/client/v1/media/preview_url`) against pages served on loopback by the
//! test, with the egress filter told to allow `127.0.0.1` only here: OpenGraph properties, the
//! `og:image` stored as media, the `<title>` fallback, an image URL, caching; off by default; and
//! private addresses refused (nothing fetched) when not allowed.

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use myelin_testing::{enc, TestServer};
use reqwest::StatusCode;
use serde_json::Value;

const PW: &str = "correct horse battery staple";

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbaImage::from_pixel(width, height, Rgba([10, 200, 10, 255]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(image)
        .write_to(&mut out, ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// A web server on loopback: its base URL and how many requests it answered.
async fn pages() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    let app = Router::new()
        .route(
            "/article",
            get(|| async {
                let html = r#"<!doctype html><html><head>
                    <title>Not this</title>
                    <meta property="og:title" content="An article">
                    <meta property="og:description" content="What it is about">
                    <meta property="og:image" content="/pic.png">
                    <meta property="og:image:width" content="9999">
                    </head><body>body</body></html>"#;
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
            }),
        )
        .route(
            "/plain",
            get(|| async {
                let html = "<html><head><title>Just a title</title>\
                            <meta name=\"description\" content=\"A description\"></head></html>";
                ([(header::CONTENT_TYPE, "text/html")], html).into_response()
            }),
        )
        .route(
            "/pic.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], png(40, 30)).into_response() }),
        )
        .route(
            "/moved",
            get(|| async { axum::response::Redirect::temporary("/plain") }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let count = count.clone();
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, hits)
}

async fn preview(server: &TestServer, token: Option<&str>, url: &str) -> (StatusCode, Value) {
    let path = format!("/_matrix/client/v1/media/preview_url?url={}&ts=1", enc(url));
    server.get(&path, token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_pages_through_the_egress_filter() {
    let (base, hits) = pages().await;
    let server = TestServer::start_with(|config| {
        config.media.url_previews = true;
        config.egress.allow = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let alice = server.register("alice", PW).await;

    let (status, og) = preview(&server, alice.token(), &format!("{base}/article")).await;
    assert_eq!(status, StatusCode::OK, "{og}");
    assert_eq!(og["og:title"], "An article");
    assert_eq!(og["og:description"], "What it is about");
    assert_eq!(og["og:image:width"], 40, "measured, not the page's claim");
    assert_eq!(og["og:image:height"], 30);
    assert_eq!(og["og:image:type"], "image/png");
    let uri = og["og:image"].as_str().expect("og:image");
    assert!(uri.starts_with("mxc://"), "{uri}");
    let (status, _) = server
        .get(
            &format!("/_matrix/client/v1/media/download/{}", &uri[6..]),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the image is stored as media");
    assert_eq!(og["matrix:image:size"], png(40, 30).len());

    let fetched = hits.load(Ordering::SeqCst);
    let (_, again) = preview(&server, alice.token(), &format!("{base}/article")).await;
    assert_eq!(again["og:title"], "An article");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        fetched,
        "served from the cache"
    );

    let (status, plain) = preview(&server, alice.token(), &format!("{base}/moved")).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    assert_eq!(plain["og:title"], "Just a title");
    assert_eq!(plain["og:description"], "A description");
    assert!(plain.get("og:image").is_none());

    let (status, image) = preview(&server, alice.token(), &format!("{base}/pic.png")).await;
    assert_eq!(status, StatusCode::OK, "{image}");
    assert!(image["og:image"]
        .as_str()
        .is_some_and(|u| u.starts_with("mxc://")));
    assert_eq!(image["og:image:width"], 40);

    let (status, body) = preview(&server, None, &format!("{base}/article")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = preview(&server, alice.token(), "ftp://example.org/").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
    let (status, body) = server
        .get("/_matrix/media/v3/preview_url", alice.token())
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM"))
    );
}

/// With previews on and no egress exception, loopback and private addresses are refused before
/// anything is sent; with previews off the endpoint is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused() {
    let (base, hits) = pages().await;
    let server = TestServer::start_with(|config| config.media.url_previews = true).await;
    let alice = server.register("alice", PW).await;
    let port = base.rsplit(':').next().expect("port");
    for url in [
        format!("{base}/article"),
        format!("http://localhost:{port}/article"),
        "http://10.0.0.1/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let (status, body) = preview(&server, alice.token(), &url).await;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::BAD_GATEWAY,
            "{url}: {status} {body}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was fetched");

    let off = TestServer::start().await;
    let bob = off.register("bob", PW).await;
    let (status, body) = preview(&off, bob.token(), &format!("{base}/article")).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_UNRECOGNIZED"))
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// Fetching previews spends the user's budget (429 past it); answers from the cache do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_are_rate_limited() {
    let (base, _) = pages().await;
    let server = TestServer::start_with(|config| {
        config.media.url_previews = true;
        config.egress.allow = vec!["127.0.0.1".to_owned()];
        config.rate_limits.url_preview.burst = 2;
        config.rate_limits.url_preview.per_minute = 1;
    })
    .await;
    let alice = server.register("alice", PW).await;
    for page in ["article", "plain"] {
        let (status, body) = preview(&server, alice.token(), &format!("{base}/{page}")).await;
        assert_eq!(status, StatusCode::OK, "{page}: {body}");
    }
    let (status, body) = preview(&server, alice.token(), &format!("{base}/moved")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
    let (status, body) = preview(&server, alice.token(), &format!("{base}/plain")).await;
    assert_eq!(status, StatusCode::OK, "cached: {body}");
}
