//! Conformance tests of [`BackupStore`](crate::BackupStore): version numbering and tombstones,
//! the rule that keeps the better of two keys for a session, reads and deletes by room and
//! session, writes to a version that is not the current one, and deactivation.

use super::keys_in_detail::users_with_devices;
use super::{room, user};
use crate::{BackedUpKey, BackupCounts, BackupKeysWrite, KeySelection, Storage};

const ALG: &str = "m.megolm_backup.v1.curve25519-aes-sha2";

fn key(room_id: &str, session: &str, index: u64, forwarded: u64, verified: bool) -> BackedUpKey {
    BackedUpKey {
        room_id: room(room_id),
        session_id: session.to_owned(),
        first_message_index: index,
        forwarded_count: forwarded,
        is_verified: verified,
        session_data: format!(r#"{{"ciphertext":"{session}/{index}/{forwarded}/{verified}"}}"#),
    }
}

fn stored(write: BackupKeysWrite) -> BackupCounts {
    match write {
        BackupKeysWrite::Stored(counts) => counts,
        other => panic!("keys not stored: {other:?}"),
    }
}

/// Versions count up per user from 1, the current one is the highest not deleted, a deleted
/// number is never given again, and only `auth_data` changes.
pub async fn backup_versions_are_numbered_per_user(store: &dyn Storage) {
    let (alice, bob) = (user("@alice:localhost"), user("@bob:localhost"));
    assert_eq!(store.backup_version(&alice, None).await.unwrap(), None);
    assert_eq!(
        store
            .create_backup_version(&alice, ALG, r#"{"k":1}"#)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .create_backup_version(&alice, "org.example.other", r#"{"k":2}"#)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.create_backup_version(&bob, ALG, "{}").await.unwrap(),
        1,
        "numbered per user"
    );

    let current = store.backup_version(&alice, None).await.unwrap().unwrap();
    assert_eq!(
        (
            current.version,
            current.algorithm.as_str(),
            current.auth_data.as_str()
        ),
        (2, "org.example.other", r#"{"k":2}"#)
    );
    assert_eq!((current.etag, current.count), (0, 0));
    let first = store
        .backup_version(&alice, Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.version, first.algorithm.as_str()), (1, ALG));
    assert_eq!(store.backup_version(&alice, Some(3)).await.unwrap(), None);

    assert!(store
        .update_backup_auth_data(&alice, 1, r#"{"k":"new"}"#)
        .await
        .unwrap());
    let first = store
        .backup_version(&alice, Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.auth_data.as_str(), first.algorithm.as_str()),
        (r#"{"k":"new"}"#, ALG)
    );
    assert!(!store
        .update_backup_auth_data(&alice, 7, "{}")
        .await
        .unwrap());

    // Deleting the current version makes the previous one current again.
    assert!(store.delete_backup_version(&alice, 2).await.unwrap());
    assert_eq!(store.backup_version(&alice, Some(2)).await.unwrap(), None);
    assert_eq!(
        store
            .backup_version(&alice, None)
            .await
            .unwrap()
            .map(|v| v.version),
        Some(1)
    );
    assert!(
        store.delete_backup_version(&alice, 2).await.unwrap(),
        "a deleted version can be deleted again"
    );
    assert!(!store.delete_backup_version(&alice, 9).await.unwrap());
    assert!(!store
        .update_backup_auth_data(&alice, 2, "{}")
        .await
        .unwrap());
    assert_eq!(
        store
            .create_backup_version(&alice, ALG, "{}")
            .await
            .unwrap(),
        3,
        "a deleted number is not given again"
    );
    assert_eq!(
        store
            .backup_version(&bob, None)
            .await
            .unwrap()
            .map(|v| v.version),
        Some(1),
        "another user's versions are untouched"
    );
}

/// The read-back key of one session.
async fn session(store: &dyn Storage, version: u64, session: &str) -> BackedUpKey {
    let selection = KeySelection::Session(room("!r:localhost"), session.to_owned());
    let mut keys = store
        .backup_keys(&user("@alice:localhost"), version, &selection)
        .await
        .unwrap()
        .expect("the version exists");
    assert_eq!(keys.len(), 1, "one key per session");
    keys.remove(0)
}

/// A stored key is replaced only by a better one: verified first, then the lower first message
/// index, then the lower forwarded count; an equal or worse upload changes nothing, not even
/// the etag.
pub async fn backup_keys_keep_the_better_key(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let v = store
        .create_backup_version(&alice, ALG, "{}")
        .await
        .unwrap();
    let owner = &alice;
    let put = |k: BackedUpKey| async move {
        stored(store.put_backup_keys(owner, v, &[k]).await.unwrap())
    };
    let r = "!r:localhost";

    let first = put(key(r, "s", 5, 2, false)).await;
    assert_eq!(first, BackupCounts { etag: 1, count: 1 });
    // (upload, replaces the stored key?) in turn; the stored key after each is the better one.
    let steps = [
        (key(r, "s", 5, 2, false), false), // the same key again
        (key(r, "s", 6, 0, false), false), // a later index loses, whatever its forwarded count
        (key(r, "s", 5, 3, false), false), // same index, more forwarding loses
        (key(r, "s", 5, 1, false), true),  // same index, less forwarding wins
        (key(r, "s", 4, 9, false), true),  // a lower index wins over forwarding
        (key(r, "s", 9, 9, true), true),   // verified wins over a lower index
        (key(r, "s", 0, 0, false), false), // unverified never replaces verified
        (key(r, "s", 3, 0, true), true),   // among verified keys, the lower index wins
        (key(r, "s", 3, 0, true), false),
    ];
    let mut etag = first.etag;
    let mut best = key(r, "s", 5, 2, false);
    for (upload, replaces) in steps {
        let counts = put(upload.clone()).await;
        if replaces {
            etag += 1;
            best = upload.clone();
        }
        assert_eq!(
            counts,
            BackupCounts { etag, count: 1 },
            "after uploading {upload:?}"
        );
        assert_eq!(
            session(store, v, "s").await,
            best,
            "after uploading {upload:?}"
        );
    }

    // A batch: new sessions and an improvement count once, in one etag step.
    let counts = stored(
        store
            .put_backup_keys(
                &alice,
                v,
                &[
                    key(r, "t", 0, 0, false),
                    key(r, "s", 9, 9, false),
                    key("!other:localhost", "u", 1, 0, true),
                ],
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        counts,
        BackupCounts {
            etag: etag + 1,
            count: 3
        }
    );
    assert_eq!(
        session(store, v, "s").await,
        best,
        "the worse key in a batch is dropped"
    );
    let info = store
        .backup_version(&alice, Some(v))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((info.etag, info.count), (etag + 1, 3));
}

/// Keys are read and deleted for a whole version, a room or one session; only the current
/// version takes writes; deleting a version takes its keys.
pub async fn backup_keys_by_room_and_session(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let old = store
        .create_backup_version(&alice, ALG, "{}")
        .await
        .unwrap();
    stored(
        store
            .put_backup_keys(&alice, old, &[key("!a:localhost", "old", 0, 0, false)])
            .await
            .unwrap(),
    );
    let v = store
        .create_backup_version(&alice, ALG, "{}")
        .await
        .unwrap();
    let keys = [
        key("!a:localhost", "s1", 0, 0, false),
        key("!a:localhost", "s2", 1, 0, true),
        key("!b:localhost", "s1", 2, 1, false),
    ];
    assert_eq!(
        stored(store.put_backup_keys(&alice, v, &keys).await.unwrap()),
        BackupCounts { etag: 1, count: 3 }
    );
    let owner = &alice;
    let read = |selection: KeySelection, version: u64| async move {
        store.backup_keys(owner, version, &selection).await.unwrap()
    };
    assert_eq!(read(KeySelection::All, v).await, Some(keys.to_vec()));
    assert_eq!(
        read(KeySelection::Room(room("!a:localhost")), v).await,
        Some(keys[..2].to_vec())
    );
    assert_eq!(
        read(KeySelection::Session(room("!b:localhost"), "s1".into()), v).await,
        Some(keys[2..].to_vec())
    );
    assert_eq!(
        read(KeySelection::Room(room("!none:localhost")), v).await,
        Some(vec![])
    );
    assert_eq!(
        read(KeySelection::All, old).await.map(|k| k.len()),
        Some(1),
        "an older version stays readable"
    );
    assert_eq!(read(KeySelection::All, 99).await, None);

    // Writes go to the current version only.
    assert_eq!(
        store.put_backup_keys(&alice, old, &keys).await.unwrap(),
        BackupKeysWrite::NotCurrent { current: v }
    );
    assert_eq!(
        store.put_backup_keys(&alice, 99, &keys).await.unwrap(),
        BackupKeysWrite::UnknownVersion
    );

    // Deletes: one session, nothing (the etag stays), a room, everything.
    let delete = |selection: KeySelection| async move {
        store
            .delete_backup_keys(owner, v, &selection)
            .await
            .unwrap()
            .expect("the version exists")
    };
    let session = KeySelection::Session(room("!a:localhost"), "s2".into());
    assert_eq!(
        delete(session.clone()).await,
        BackupCounts { etag: 2, count: 2 }
    );
    assert_eq!(delete(session).await, BackupCounts { etag: 2, count: 2 });
    assert_eq!(
        delete(KeySelection::Room(room("!b:localhost"))).await,
        BackupCounts { etag: 3, count: 1 }
    );
    assert_eq!(
        delete(KeySelection::All).await,
        BackupCounts { etag: 4, count: 0 }
    );
    assert_eq!(
        store
            .delete_backup_keys(&alice, 99, &KeySelection::All)
            .await
            .unwrap(),
        None
    );

    // Deleting a version takes its keys: nothing is left to read, and its keys do not come
    // back in a later version.
    store.put_backup_keys(&alice, v, &keys).await.unwrap();
    assert!(store.delete_backup_version(&alice, v).await.unwrap());
    assert_eq!(read(KeySelection::All, v).await, None);
    assert_eq!(
        store.put_backup_keys(&alice, v, &keys).await.unwrap(),
        BackupKeysWrite::UnknownVersion
    );
    assert_eq!(
        stored(store.put_backup_keys(&alice, old, &keys).await.unwrap()).count,
        4,
        "the older version is current again"
    );
    let next = store
        .create_backup_version(&alice, ALG, "{}")
        .await
        .unwrap();
    assert_eq!(read(KeySelection::All, next).await, Some(vec![]));
}

/// Deactivating a user removes all their backups; other users keep theirs.
pub async fn deactivation_removes_backups(store: &dyn Storage) {
    let (alice, bob) = (user("@alice:localhost"), user("@bob:localhost"));
    users_with_devices(
        store,
        &[("@alice:localhost", &["A"]), ("@bob:localhost", &["B"])],
    )
    .await;
    for who in [&alice, &bob] {
        let v = store.create_backup_version(who, ALG, "{}").await.unwrap();
        stored(
            store
                .put_backup_keys(who, v, &[key("!r:localhost", "s", 0, 0, false)])
                .await
                .unwrap(),
        );
    }
    store.deactivate_user(&alice, false).await.unwrap();
    assert_eq!(store.backup_version(&alice, None).await.unwrap(), None);
    assert_eq!(
        store
            .backup_keys(&alice, 1, &KeySelection::All)
            .await
            .unwrap(),
        None
    );
    let bobs = store.backup_version(&bob, None).await.unwrap().unwrap();
    assert_eq!(bobs.count, 1);
}

/// Fills a backup for the dump-copy test: a deleted version, a current one with keys.
pub(crate) async fn fill_backups(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let gone = store
        .create_backup_version(&alice, ALG, "{}")
        .await
        .unwrap();
    store.delete_backup_version(&alice, gone).await.unwrap();
    let v = store
        .create_backup_version(&alice, ALG, r#"{"public_key":"pk"}"#)
        .await
        .unwrap();
    stored(
        store
            .put_backup_keys(
                &alice,
                v,
                &[
                    key("!r:localhost", "s1", 0, 0, true),
                    key("!r:localhost", "s2", 3, 1, false),
                ],
            )
            .await
            .unwrap(),
    );
}

/// After a dump copy: the same current version and keys, and the next version number
/// continues after the copied ones.
pub(crate) async fn assert_backups_copied(from: &dyn Storage, to: &dyn Storage) {
    let alice = user("@alice:localhost");
    let current = to.backup_version(&alice, None).await.unwrap();
    assert_eq!(current, from.backup_version(&alice, None).await.unwrap());
    let version = current.expect("a current backup").version;
    assert_eq!(
        to.backup_keys(&alice, version, &KeySelection::All)
            .await
            .unwrap(),
        from.backup_keys(&alice, version, &KeySelection::All)
            .await
            .unwrap()
    );
    assert_eq!(to.backup_version(&alice, Some(1)).await.unwrap(), None);
    assert_eq!(
        to.create_backup_version(&alice, ALG, "{}").await.unwrap(),
        version + 1
    );
}
