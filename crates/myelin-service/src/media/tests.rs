//! The media subsystem's own decisions: which types are served inline and how file names are
//! encoded, which standard size answers a thumbnail request, the refusal of decompression bombs,
//! and the upload paths (at once; created then uploaded once, by its creator; waiting for it).

use std::io::Cursor;
use std::sync::Arc;

use image::{DynamicImage, ImageFormat, RgbaImage};

use super::headers::{content_disposition, is_inline_safe, sanitize_content_type};
use super::thumbnail::{self, choose, Method, ThumbnailError, ThumbnailSpec};
use super::{Access, Media, UploadInfo};
use crate::test_support::harness;
use crate::ServiceError;

fn image_bytes(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let image = DynamicImage::ImageRgba8(RgbaImage::from_pixel(
        width,
        height,
        image::Rgba([200, 10, 10, 255]),
    ));
    let image = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(image.to_rgb8())
    } else {
        image
    };
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

#[test]
fn only_safe_types_are_inline() {
    for safe in [
        "image/png",
        "image/jpeg",
        "video/mp4",
        "audio/ogg",
        "text/plain; charset=utf-8",
    ] {
        assert!(is_inline_safe(safe), "{safe}");
    }
    for unsafe_type in [
        "text/html",
        "image/svg+xml",
        "application/javascript",
        "text/javascript",
        "application/xhtml+xml",
        "application/octet-stream",
    ] {
        assert!(!is_inline_safe(unsafe_type), "{unsafe_type}");
        assert!(content_disposition(unsafe_type, Some("x")).starts_with("attachment"));
    }
}

#[test]
fn dispositions_encode_file_names() {
    assert_eq!(content_disposition("image/png", None), "inline");
    assert_eq!(
        content_disposition("image/png", Some("cat.png")),
        "inline; filename=\"cat.png\""
    );
    assert_eq!(
        content_disposition("text/html", Some("page.html")),
        "attachment; filename=\"page.html\""
    );
    assert_eq!(
        content_disposition("image/png", Some("café \"x\".png")),
        "inline; filename*=utf-8''caf%C3%A9%20%22x%22.png"
    );
}

#[test]
fn content_types_are_checked_before_being_echoed() {
    assert_eq!(
        sanitize_content_type(Some("image/png")).as_deref(),
        Some("image/png")
    );
    assert_eq!(
        sanitize_content_type(Some("text/plain; charset=utf-8")).as_deref(),
        Some("text/plain; charset=utf-8")
    );
    for bad in ["", "png", "image/", "text/plain\r\nX-Evil: 1", "a b/c"] {
        assert_eq!(sanitize_content_type(Some(bad)), None, "{bad:?}");
    }
}

#[test]
fn thumbnail_requests_get_the_nearest_larger_standard_size() {
    let spec = |width, height, method| ThumbnailSpec {
        width,
        height,
        method,
    };
    assert_eq!(choose(32, 32, Method::Crop), spec(32, 32, Method::Crop));
    assert_eq!(choose(40, 40, Method::Crop), spec(96, 96, Method::Crop));
    assert_eq!(choose(500, 500, Method::Crop), spec(96, 96, Method::Crop));
    assert_eq!(
        choose(100, 100, Method::Scale),
        spec(320, 240, Method::Scale)
    );
    assert_eq!(
        choose(641, 100, Method::Scale),
        spec(800, 600, Method::Scale)
    );
    assert_eq!(
        choose(4000, 4000, Method::Scale),
        spec(800, 600, Method::Scale)
    );
}

#[test]
fn thumbnails_fit_and_never_enlarge() {
    let made = thumbnail::make(
        &image_bytes(1000, 500, ImageFormat::Png),
        &[
            choose(320, 240, Method::Scale),
            choose(96, 96, Method::Crop),
        ],
    )
    .expect("thumbnails");
    let dims = |bytes: &[u8]| image::load_from_memory(bytes).map(|i| (i.width(), i.height()));
    assert_eq!(dims(&made[0].bytes).ok(), Some((320, 160)));
    assert_eq!(dims(&made[1].bytes).ok(), Some((96, 96)));
    let small = thumbnail::make(
        &image_bytes(50, 20, ImageFormat::Jpeg),
        &[choose(800, 600, Method::Scale)],
    )
    .expect("thumbnail");
    assert_eq!(small[0].content_type, "image/jpeg");
    assert_eq!(dims(&small[0].bytes).ok(), Some((50, 20)));
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    // A tiny GIF whose header claims 65535 x 65535 pixels.
    let mut gif = image_bytes(2, 2, ImageFormat::Gif);
    gif[6..10].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        thumbnail::make(&gif, &thumbnail::STANDARD_SIZES).err(),
        Some(ThumbnailError::TooManyPixels(65535 * 65535))
    );
    assert_eq!(
        thumbnail::make(b"not an image", &thumbnail::STANDARD_SIZES).err(),
        Some(ThumbnailError::Unsupported)
    );
}

async fn upload(media: &Arc<Media>, user: &ruma::UserId, bytes: &[u8], ct: &str) -> String {
    let mut file = media.begin_upload(user, None).await.expect("begin");
    file.write(bytes).await.expect("write");
    let info = UploadInfo {
        content_type: Some(ct.to_owned()),
        filename: Some("f".into()),
    };
    media.upload(user, file, info).await.expect("upload")
}

#[tokio::test]
async fn uploads_are_stored_and_served() {
    let h = harness();
    let alice = h.user("alice").await;
    let media = &h.services.media;
    let uri = upload(media, &alice.user_id, b"hello", "text/plain").await;
    let id = uri.strip_prefix("mxc://test.local/").expect("local mxc");
    let file = media
        .download("test.local", id, None, Access::Authenticated)
        .await
        .expect("download");
    assert_eq!(
        std::fs::read(&file.path).ok().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!((file.content_type.as_str(), file.size), ("text/plain", 5));
    assert!(
        matches!(
            media.download("test.local", id, None, Access::Legacy).await,
            Err(ServiceError::NotFound(_))
        ),
        "legacy downloads are frozen by default"
    );
    assert!(matches!(
        media
            .download("other.example", id, None, Access::Authenticated)
            .await,
        Err(ServiceError::NotFound(_))
    ));
    let mut big = media
        .begin_upload(&alice.user_id, None)
        .await
        .expect("begin");
    let chunk = vec![0u8; 1024 * 1024];
    let mut refused = None;
    for _ in 0..60 {
        if let Err(e) = big.write(&chunk).await {
            refused = Some(e);
            break;
        }
    }
    assert!(matches!(refused, Some(ServiceError::TooLarge(_))));
    assert!(matches!(
        media
            .begin_upload(&alice.user_id, Some(60 * 1024 * 1024))
            .await,
        Err(ServiceError::TooLarge(_))
    ));
}

#[tokio::test]
async fn created_media_is_uploaded_once_by_its_creator() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let media = &h.services.media;
    let (uri, expires) = media.create(&alice.user_id).await.expect("create");
    assert_eq!(expires, h.services.ctx.now_ms() + 24 * 60 * 60 * 1000);
    let id = uri
        .strip_prefix("mxc://test.local/")
        .expect("local mxc")
        .to_owned();
    assert!(matches!(
        media
            .download("test.local", &id, Some(10), Access::Authenticated)
            .await,
        Err(ServiceError::NotYetUploaded(_))
    ));
    assert!(matches!(
        media.check_upload_to(&bob.user_id, "test.local", &id).await,
        Err(ServiceError::Forbidden(_))
    ));
    // A download waiting for the upload gets it.
    let waiting = {
        let (media, id) = (media.clone(), id.clone());
        tokio::spawn(async move {
            media
                .download("test.local", &id, Some(5_000), Access::Authenticated)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut file = media
        .begin_upload(&alice.user_id, None)
        .await
        .expect("begin");
    file.write(b"later").await.expect("write");
    media
        .upload_to(
            &alice.user_id,
            "test.local",
            &id,
            file,
            UploadInfo::default(),
        )
        .await
        .expect("upload");
    let served = waiting.await.expect("task").expect("download");
    assert_eq!(
        (served.size, served.content_type.as_str()),
        (5, "application/octet-stream")
    );
    assert!(matches!(
        media
            .check_upload_to(&alice.user_id, "test.local", &id)
            .await,
        Err(ServiceError::CannotOverwriteMedia(_))
    ));
}

#[tokio::test]
async fn pending_uploads_are_capped_and_expire() {
    let h = harness();
    let alice = h.user("alice").await;
    let media = &h.services.media;
    for _ in 0..20 {
        media.create(&alice.user_id).await.expect("create");
    }
    assert!(matches!(
        media.create(&alice.user_id).await,
        Err(ServiceError::TooManyPendingUploads(_))
    ));
    let (uri, _) = {
        h.clock.advance(24 * 60 * 60 * 1000);
        media
            .create(&alice.user_id)
            .await
            .expect("the others expired")
    };
    let id = uri.strip_prefix("mxc://test.local/").expect("mxc");
    h.clock.advance(24 * 60 * 60 * 1000);
    assert!(matches!(
        media
            .download("test.local", id, Some(10), Access::Authenticated)
            .await,
        Err(ServiceError::NotFound(_))
    ));
}

#[tokio::test]
async fn thumbnails_are_made_on_demand_and_stored() {
    let h = harness();
    let alice = h.user("alice").await;
    let media = &h.services.media;
    let uri = upload(
        media,
        &alice.user_id,
        &image_bytes(400, 300, ImageFormat::Png),
        "image/png",
    )
    .await;
    let id = uri.strip_prefix("mxc://test.local/").expect("mxc");
    let thumb = media
        .thumbnail(
            "test.local",
            id,
            (50, 50, Method::Crop, false),
            None,
            Access::Authenticated,
        )
        .await
        .expect("thumbnail");
    assert_eq!(thumb.content_type, "image/png");
    let bytes = std::fs::read(&thumb.path).expect("thumbnail file");
    let image = image::load_from_memory(&bytes).expect("decode");
    assert_eq!((image.width(), image.height()), (96, 96));
    let stored = h.services.ctx.storage.thumbnails(id).await.expect("list");
    assert!(stored
        .iter()
        .any(|t| (t.width, t.height, t.method.as_str()) == (96, 96, "crop")));

    let text = upload(media, &alice.user_id, b"plain", "text/plain").await;
    let text_id = text.strip_prefix("mxc://test.local/").expect("mxc");
    assert!(matches!(
        media
            .thumbnail(
                "test.local",
                text_id,
                (32, 32, Method::Crop, false),
                None,
                Access::Authenticated
            )
            .await,
        Err(ServiceError::CannotThumbnail(_))
    ));
}

#[test]
fn remote_file_names_and_boundaries_are_parsed() {
    use super::remote::{disposition_filename, multipart_boundary};
    let name = |v: &str| disposition_filename(v);
    assert_eq!(
        name("inline; filename=\"a b.png\"").as_deref(),
        Some("a b.png")
    );
    assert_eq!(
        name("attachment; filename=plain.txt").as_deref(),
        Some("plain.txt")
    );
    assert_eq!(
        name("attachment; filename=\"x.txt\"; filename*=utf-8''caf%C3%A9.txt").as_deref(),
        Some("café.txt"),
        "the RFC 5987 name wins"
    );
    assert_eq!(name("inline"), None);
    assert_eq!(name("inline; filename=\"\""), None);
    assert_eq!(
        name("inline; filename*=utf-8''%FF%FE; filename=fallback").as_deref(),
        Some("fallback"),
        "invalid UTF-8 falls back to the plain name"
    );

    assert_eq!(
        multipart_boundary("multipart/mixed; boundary=abc").as_deref(),
        Some("abc")
    );
    assert_eq!(
        multipart_boundary("Multipart/Mixed; charset=x; boundary=\"q r\"").as_deref(),
        Some("q r")
    );
    assert_eq!(
        multipart_boundary("multipart/form-data; boundary=abc"),
        None
    );
    assert_eq!(multipart_boundary("multipart/mixed"), None);
    assert_eq!(multipart_boundary("application/json"), None);
}

/// Requests for one remote file while its fetch runs wait for that fetch; the next one after it
/// ends starts another.
#[tokio::test]
async fn concurrent_fetches_of_one_file_are_shared() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use myelin_storage::MediaContent;

    use super::remote::Inflight;

    let inflight = Inflight::default();
    let started = Arc::new(AtomicUsize::new(0));
    let key = || (ruma::owned_server_name!("a.example"), "m".to_owned(), None);
    let fetch = |started: Arc<AtomicUsize>| async move {
        started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Ok(MediaContent {
            content_type: None,
            filename: None,
            size: 1,
            sha256: "ab".to_owned(),
        })
    };
    let runs = (0..4).map(|_| inflight.run(key(), fetch(started.clone())));
    let outcomes = futures_util::future::join_all(runs).await;
    assert!(outcomes
        .iter()
        .all(|o| o.as_ref().is_ok_and(|c| c.sha256 == "ab")));
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "one fetch for four requests"
    );
    assert_eq!(inflight.len(), 0, "the finished fetch left the map");
    inflight
        .run(key(), fetch(started.clone()))
        .await
        .expect("fetched");
    assert_eq!(started.load(Ordering::SeqCst), 2);
}

#[test]
fn opengraph_properties_with_fallbacks() {
    use super::opengraph::parse;
    let page = r#"<!doctype html><html><head>
        <title>Ignored title</title>
        <meta property="og:title" content="  The   title ">
        <meta property="og:title" content="second title">
        <meta property="og:image" content="/img.png">
        <meta name="og:site_name" content="Site">
        <meta name="twitter:card" content="summary">
        <meta name="description" content="plain description">
        </head><body><p>text</p></body></html>"#;
    let og = parse(page);
    assert_eq!(og.get("og:title").map(String::as_str), Some("The title"));
    assert_eq!(og.get("og:image").map(String::as_str), Some("/img.png"));
    assert_eq!(og.get("og:site_name").map(String::as_str), Some("Site"));
    assert_eq!(
        og.get("og:description").map(String::as_str),
        Some("plain description"),
        "the meta description stands in"
    );
    assert!(!og.contains_key("twitter:card"));

    let bare = parse("<html><head><title>Only a <b>title</b></title></head></html>");
    assert_eq!(
        bare.get("og:title").map(String::as_str),
        Some("Only a <b>title</b>")
    );
    assert!(parse("not html at all <<<>>>").is_empty());

    let long = format!(
        r#"<meta property="og:description" content="{}">"#,
        "é".repeat(2000)
    );
    let cut = parse(&long);
    assert_eq!(
        cut["og:description"].chars().count(),
        501,
        "500 characters and an ellipsis"
    );
}

/// An animated GIF of `frames` frames of `size`×`size`.
fn animated_gif(size: u32, frames: u8) -> Vec<u8> {
    use image::codecs::gif::{GifEncoder, Repeat};
    use image::{Delay, Frame};
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        encoder.set_repeat(Repeat::Infinite).expect("repeat");
        let frames = (0..frames).map(|i| {
            let buffer = RgbaImage::from_pixel(size, size, image::Rgba([i * 60, 0, 0, 255]));
            Frame::from_parts(buffer, 0, 0, Delay::from_numer_denom_ms(100, 1))
        });
        encoder.encode_frames(frames).expect("encode");
    }
    out
}

#[test]
fn animated_thumbnails_keep_their_frames() {
    use image::codecs::gif::GifDecoder;
    use image::AnimationDecoder;
    let crop = ThumbnailSpec {
        width: 32,
        height: 32,
        method: Method::Crop,
    };
    let big = animated_gif(100, 3);
    let thumb = thumbnail::make_animated(&big, crop)
        .expect("made")
        .expect("animated");
    assert_eq!(thumb.content_type, "image/gif");
    let frames = GifDecoder::new(Cursor::new(&thumb.bytes))
        .expect("a GIF")
        .into_frames()
        .collect_frames()
        .expect("frames");
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].buffer().dimensions(), (32, 32));

    let small = animated_gif(20, 2);
    let same = thumbnail::make_animated(&small, crop)
        .expect("made")
        .expect("animated");
    assert_eq!(same.bytes, small, "small enough: the original answers");

    let still = animated_gif(100, 1);
    assert!(thumbnail::make_animated(&still, crop)
        .expect("read")
        .is_none());
    let png = image_bytes(100, 100, ImageFormat::Png);
    assert!(thumbnail::make_animated(&png, crop)
        .expect("read")
        .is_none());
    assert!(thumbnail::is_animatable(Some("image/gif")));
    assert!(!thumbnail::is_animatable(Some("image/png")));
}

#[test]
fn preview_pages_are_read_in_their_charset() {
    use super::preview::decode_page;
    let latin1 = b"<title>caf\xe9</title>";
    assert_eq!(
        decode_page(latin1, "text/html; charset=ISO-8859-1"),
        "<title>café</title>"
    );
    let meta = b"<meta charset=\"windows-1252\"><title>na\xefve</title>";
    assert!(decode_page(meta, "text/html").ends_with("<title>naïve</title>"));
    assert_eq!(decode_page("déjà".as_bytes(), "text/html"), "déjà");
    assert_eq!(
        decode_page(b"a\xffb", "text/html; charset=bogus"),
        "a\u{fffd}b"
    );
}

#[test]
fn media_named_in_event_content() {
    use super::ops::{media_in_content, MxcRef};
    let mxc = |uri: &str| MxcRef::parse(uri).expect("valid");
    assert_eq!(MxcRef::parse("mxc://a.example/"), None);
    assert_eq!(MxcRef::parse("mxc://a.example/x/y"), None);
    assert_eq!(MxcRef::parse("https://a.example/x"), None);
    assert_eq!(mxc("mxc://a.example:8448/abc_D-1").origin, "a.example:8448");
    let content = serde_json::json!({
        "url": "mxc://a.example/main",
        "info": { "thumbnail_url": "mxc://a.example/thumb",
                  "thumbnail_file": { "url": "mxc://b.example/encthumb" } },
        "file": { "url": "mxc://a.example/enc" },
        "avatar_url": "mxc://a.example/avatar",
        "m.new_content": { "url": "mxc://a.example/edited" },
        "body": "mxc://a.example/in-text",
    });
    let mut found = std::collections::BTreeSet::new();
    media_in_content(&content, &mut found);
    let ids: Vec<_> = found.iter().map(|m| m.media_id.as_str()).collect();
    assert_eq!(
        ids,
        ["edited", "enc", "main", "thumb", "encthumb"],
        "a.example, then b.example"
    );
}
