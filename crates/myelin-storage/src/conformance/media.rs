//! Conformance tests of [`MediaStore`](crate::MediaStore): media uploaded at once, media created
//! and uploaded later (the per-user cap on pending uploads, expiry, who may upload, no second
//! upload), and thumbnails.

use super::user;
use crate::{MediaContent, MediaUploadOutcome, Storage, ThumbnailRecord};

fn content(sha: &str, size: u64) -> MediaContent {
    MediaContent {
        content_type: Some("image/png".to_owned()),
        filename: Some("café.png".to_owned()),
        size,
        sha256: sha.to_owned(),
    }
}

/// A media uploaded at once is stored with its content; an unknown ID is `None`.
pub async fn media_uploaded_at_once(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    assert_eq!(store.get_media("nope").await.unwrap(), None);
    store
        .insert_media("m1", &alice, 1_000, &content("aa", 12))
        .await
        .unwrap();
    let media = store.get_media("m1").await.unwrap().unwrap();
    assert_eq!(media.media_id, "m1");
    assert_eq!(media.uploader, alice);
    assert_eq!(media.created_ms, 1_000);
    assert_eq!(media.unused_expires_ms, None);
    assert_eq!(media.content, Some(content("aa", 12)));
    assert!(
        store
            .insert_media("m1", &alice, 2_000, &content("bb", 1))
            .await
            .is_err(),
        "a media ID is stored once"
    );
}

/// Created media count against the creator's cap until uploaded or expired; only the creator
/// uploads, once, before expiry.
pub async fn media_created_then_uploaded(store: &dyn Storage) {
    let (alice, bob) = (user("@alice:localhost"), user("@bob:localhost"));
    assert!(store
        .create_pending_media("p1", &alice, 1_000, 5_000, 2)
        .await
        .unwrap());
    assert!(store
        .create_pending_media("p2", &alice, 1_000, 2_000, 2)
        .await
        .unwrap());
    assert!(
        !store
            .create_pending_media("p3", &alice, 1_500, 5_000, 2)
            .await
            .unwrap(),
        "two pending uploads is the cap"
    );
    assert!(
        store
            .create_pending_media("b1", &bob, 1_500, 5_000, 2)
            .await
            .unwrap(),
        "the cap is per user"
    );
    let pending = store.get_media("p1").await.unwrap().unwrap();
    assert_eq!(
        (pending.content, pending.unused_expires_ms),
        (None, Some(5_000))
    );

    // p2 expired at 2 000: it no longer counts, and can no longer be uploaded.
    assert!(store
        .create_pending_media("p3", &alice, 2_000, 6_000, 2)
        .await
        .unwrap());
    let upload = |id: &'static str, who, at| {
        let who = user(who);
        async move {
            store
                .complete_media_upload(id, &who, at, &content("cc", 3))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        upload("p2", "@alice:localhost", 2_000).await,
        MediaUploadOutcome::Unknown
    );
    assert_eq!(
        upload("nope", "@alice:localhost", 2_000).await,
        MediaUploadOutcome::Unknown
    );
    assert_eq!(
        upload("p1", "@bob:localhost", 2_000).await,
        MediaUploadOutcome::NotCreator
    );
    assert_eq!(
        upload("p1", "@alice:localhost", 2_000).await,
        MediaUploadOutcome::Stored
    );
    assert_eq!(
        upload("p1", "@alice:localhost", 2_100).await,
        MediaUploadOutcome::AlreadyUploaded
    );
    let media = store.get_media("p1").await.unwrap().unwrap();
    assert_eq!(media.content, Some(content("cc", 3)));
    assert_eq!(media.unused_expires_ms, None);
    assert!(
        store
            .create_pending_media("p4", &alice, 2_100, 6_000, 2)
            .await
            .unwrap(),
        "an uploaded media no longer counts as pending"
    );
}

/// Thumbnails are listed per media and replaced by size, method and animation.
pub async fn media_thumbnails(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    store
        .insert_media("m1", &alice, 1_000, &content("aa", 12))
        .await
        .unwrap();
    assert_eq!(store.thumbnails("m1").await.unwrap(), vec![]);
    let thumb = |w, h, method: &str, sha: &str| ThumbnailRecord {
        width: w,
        height: h,
        method: method.to_owned(),
        animated: false,
        content_type: "image/png".to_owned(),
        size: 10,
        sha256: sha.to_owned(),
    };
    store
        .put_thumbnail("m1", &thumb(96, 96, "crop", "t1"))
        .await
        .unwrap();
    store
        .put_thumbnail("m1", &thumb(32, 32, "crop", "t2"))
        .await
        .unwrap();
    store
        .put_thumbnail("m1", &thumb(96, 96, "crop", "t3"))
        .await
        .unwrap();
    let animated = ThumbnailRecord {
        animated: true,
        ..thumb(96, 96, "crop", "t4")
    };
    store.put_thumbnail("m1", &animated).await.unwrap();
    assert_eq!(
        store.thumbnails("m1").await.unwrap(),
        vec![
            thumb(32, 32, "crop", "t2"),
            thumb(96, 96, "crop", "t3"),
            animated
        ]
    );
}

/// Remote media is cached per origin and media ID (replaced on a new fetch), its last access only
/// moves forward, and its thumbnails are kept apart from local media's, with or without the
/// original.
pub async fn remote_media_cache(store: &dyn Storage) {
    assert_eq!(
        store.get_remote_media("a.example", "m1").await.unwrap(),
        None
    );
    store
        .put_remote_media("a.example", "m1", 1_000, &content("aa", 12))
        .await
        .unwrap();
    store
        .put_remote_media("b.example", "m1", 1_100, &content("bb", 3))
        .await
        .unwrap();
    let cached = store
        .get_remote_media("a.example", "m1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (cached.origin.as_str(), cached.media_id.as_str()),
        ("a.example", "m1")
    );
    assert_eq!(cached.content, content("aa", 12));
    assert_eq!((cached.fetched_ms, cached.last_access_ms), (1_000, 1_000));
    assert_eq!(
        store.get_media("m1").await.unwrap(),
        None,
        "not local media"
    );

    store
        .touch_remote_media("a.example", "m1", 5_000)
        .await
        .unwrap();
    store
        .touch_remote_media("a.example", "m1", 4_000)
        .await
        .unwrap();
    let touched = store
        .get_remote_media("a.example", "m1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((touched.fetched_ms, touched.last_access_ms), (1_000, 5_000));

    store
        .put_remote_media("a.example", "m1", 6_000, &content("cc", 4))
        .await
        .unwrap();
    let refetched = store
        .get_remote_media("a.example", "m1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refetched.content, content("cc", 4));
    assert_eq!(refetched.fetched_ms, 6_000);

    let thumb = |width, sha: &str| ThumbnailRecord {
        width,
        height: 32,
        method: "crop".to_owned(),
        animated: false,
        content_type: "image/png".to_owned(),
        size: 10,
        sha256: sha.to_owned(),
    };
    store
        .put_remote_thumbnail("a.example", "m1", &thumb(32, "t1"))
        .await
        .unwrap();
    store
        .put_remote_thumbnail("a.example", "m1", &thumb(32, "t2"))
        .await
        .unwrap();
    store
        .put_remote_thumbnail("c.example", "only-thumb", &thumb(96, "t3"))
        .await
        .unwrap();
    assert_eq!(
        store.remote_thumbnails("a.example", "m1").await.unwrap(),
        vec![thumb(32, "t2")]
    );
    assert_eq!(
        store
            .remote_thumbnails("c.example", "only-thumb")
            .await
            .unwrap(),
        vec![thumb(96, "t3")]
    );
    assert!(store
        .remote_thumbnails("b.example", "m1")
        .await
        .unwrap()
        .is_empty());
    assert!(store.thumbnails("m1").await.unwrap().is_empty());
}
