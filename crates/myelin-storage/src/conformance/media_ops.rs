//! Conformance tests of the media operations of [`MediaStore`](crate::MediaStore): a user's
//! storage use, deleting local and cached remote media (and the files their rows named), the
//! least-recently-used order of the cache, and quarantine.

use super::user;
use crate::{MediaContent, Storage, ThumbnailRecord};

fn content(sha: &str, size: u64) -> MediaContent {
    MediaContent {
        content_type: Some("image/png".to_owned()),
        filename: None,
        size,
        sha256: sha.to_owned(),
    }
}

fn thumb(width: u32, sha: &str) -> ThumbnailRecord {
    ThumbnailRecord {
        width,
        height: 32,
        method: "scale".to_owned(),
        animated: false,
        content_type: "image/png".to_owned(),
        size: 7,
        sha256: sha.to_owned(),
    }
}

/// A user's storage use sums their uploaded media; deleting media removes their rows and
/// thumbnails and names the files they used; a file shared with another row stays in use.
pub async fn media_is_counted_and_deleted(store: &dyn Storage) {
    let (alice, bob) = (user("@alice:localhost"), user("@bob:localhost"));
    assert_eq!(store.media_bytes_of_user(&alice).await.unwrap(), 0);
    store
        .insert_media("a1", &alice, 1, &content("s1", 10))
        .await
        .unwrap();
    store
        .insert_media("a2", &alice, 2, &content("shared", 20))
        .await
        .unwrap();
    store
        .create_pending_media("a3", &alice, 3, 1_000, 5)
        .await
        .unwrap();
    store
        .insert_media("b1", &bob, 4, &content("shared", 20))
        .await
        .unwrap();
    store.put_thumbnail("a1", &thumb(32, "t1")).await.unwrap();
    assert_eq!(store.media_bytes_of_user(&alice).await.unwrap(), 30);
    assert_eq!(
        store.media_ids_of_user(&alice).await.unwrap(),
        vec!["a1", "a2", "a3"]
    );

    let ids = store.media_ids_of_user(&alice).await.unwrap();
    let files = store.delete_media(&ids).await.unwrap();
    assert_eq!(files, vec!["s1", "shared", "t1"]);
    assert_eq!(store.get_media("a1").await.unwrap(), None);
    assert_eq!(store.get_media("a3").await.unwrap(), None);
    assert!(store.thumbnails("a1").await.unwrap().is_empty());
    assert_eq!(store.media_bytes_of_user(&alice).await.unwrap(), 0);
    assert!(!store.sha256_in_use("s1").await.unwrap());
    assert!(!store.sha256_in_use("t1").await.unwrap());
    assert!(
        store.sha256_in_use("shared").await.unwrap(),
        "bob's media uses the same file"
    );
    assert!(store.get_media("b1").await.unwrap().is_some());
    assert!(store.delete_media(&[]).await.unwrap().is_empty());
}

/// Cached remote media lists least recently served first; deleting one removes its thumbnails
/// too; a file a remote thumbnail or local media names is in use.
pub async fn remote_media_is_listed_and_deleted(store: &dyn Storage) {
    store
        .put_remote_media("a.example", "old", 1_000, &content("r1", 5))
        .await
        .unwrap();
    store
        .put_remote_media("a.example", "new", 2_000, &content("r2", 6))
        .await
        .unwrap();
    store
        .put_remote_media("b.example", "mid", 1_500, &content("r3", 7))
        .await
        .unwrap();
    store
        .touch_remote_media("a.example", "old", 3_000)
        .await
        .unwrap();
    store
        .put_remote_thumbnail("b.example", "mid", &thumb(32, "rt"))
        .await
        .unwrap();
    let order: Vec<_> = store
        .remote_media_by_access()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.media_id, m.last_access_ms))
        .collect();
    assert_eq!(
        order,
        vec![
            ("mid".to_owned(), 1_500),
            ("new".to_owned(), 2_000),
            ("old".to_owned(), 3_000)
        ]
    );
    assert!(store.sha256_in_use("rt").await.unwrap());
    let mut files = store.delete_remote_media("b.example", "mid").await.unwrap();
    files.sort();
    assert_eq!(files, vec!["r3", "rt"]);
    assert!(!store.sha256_in_use("r3").await.unwrap());
    assert!(!store.sha256_in_use("rt").await.unwrap());
    assert_eq!(
        store.get_remote_media("b.example", "mid").await.unwrap(),
        None
    );
    assert!(store
        .remote_thumbnails("b.example", "mid")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.remote_media_by_access().await.unwrap().len(), 2);
}

/// Quarantine is per origin and media ID, stored or not, set and released once each.
pub async fn media_quarantine(store: &dyn Storage) {
    assert!(!store.is_media_quarantined("localhost", "m1").await.unwrap());
    assert!(store
        .set_media_quarantined("localhost", "m1", Some(10))
        .await
        .unwrap());
    assert!(
        !store
            .set_media_quarantined("localhost", "m1", Some(20))
            .await
            .unwrap(),
        "already quarantined"
    );
    assert!(store.is_media_quarantined("localhost", "m1").await.unwrap());
    assert!(!store
        .is_media_quarantined("other.example", "m1")
        .await
        .unwrap());
    assert!(store
        .set_media_quarantined("localhost", "m1", None)
        .await
        .unwrap());
    assert!(!store
        .set_media_quarantined("localhost", "m1", None)
        .await
        .unwrap());
    assert!(!store.is_media_quarantined("localhost", "m1").await.unwrap());
}
