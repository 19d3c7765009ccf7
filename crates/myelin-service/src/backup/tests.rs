//! The key backup subsystem's own decisions: version numbering and what names a version, which
//! changes `PUT /room_keys/version/{v}` refuses, that only the current version takes keys,
//! which of two keys for a session is kept, the bounds on an upload, and that deactivation
//! takes the backups with it.

use serde_json::{json, Map, Value};

use super::{BackupVersionBody, KeyBackupData, RoomKeyBackup, RoomKeys, MAX_SESSIONS_PER_REQUEST};
use crate::{test_support::harness, ServiceError};

const ALG: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM: &str = "!room:test.local";

fn body(algorithm: &str, auth_data: Value, version: Option<&str>) -> BackupVersionBody {
    BackupVersionBody {
        algorithm: algorithm.to_owned(),
        auth_data: auth_data.as_object().cloned().unwrap_or_default(),
        version: version.map(str::to_owned),
    }
}

fn key(index: u64, forwarded: u64, verified: bool, tag: &str) -> KeyBackupData {
    let mut data = Map::new();
    data.insert("ciphertext".into(), json!(tag));
    KeyBackupData {
        first_message_index: index,
        forwarded_count: forwarded,
        is_verified: verified,
        session_data: data,
    }
}

fn one(session: &str, key: KeyBackupData) -> RoomKeys {
    RoomKeys::of_session(ROOM.into(), session.into(), key)
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T, ServiceError>) {
    assert!(
        matches!(result, Err(ServiceError::NotFound(_))),
        "{result:?}"
    );
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, ServiceError>) {
    assert!(
        matches!(result, Err(ServiceError::InvalidParam(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn versions_count_up_and_only_numbers_we_gave_name_one() {
    let h = harness();
    let alice = h.user("alice").await.user_id;
    let backup = &h.services.backup;
    assert_not_found(backup.version(&alice, None).await);

    let auth = json!({ "public_key": "abc", "signatures": {} });
    let v1 = backup
        .create_version(&alice, body(ALG, auth.clone(), None))
        .await
        .unwrap();
    let v2 = backup
        .create_version(&alice, body(ALG, json!({}), None))
        .await
        .unwrap();
    assert_eq!((v1.as_str(), v2.as_str()), ("1", "2"));
    let current = backup.version(&alice, None).await.unwrap();
    assert_eq!((current.version.as_str(), current.count), ("2", 0));
    let first = backup.version(&alice, Some("1")).await.unwrap();
    assert_eq!(first.auth_data, auth);
    assert_eq!(first.algorithm, ALG);
    for not_ours in ["01", "+1", "x", "", "3", "-1", "18446744073709551616"] {
        assert_not_found(backup.version(&alice, Some(not_ours)).await);
    }

    // Deleting the current version makes the previous one current; deleting again is fine.
    backup.delete_version(&alice, "2").await.unwrap();
    backup.delete_version(&alice, "2").await.unwrap();
    assert_not_found(backup.delete_version(&alice, "7").await);
    assert_not_found(backup.delete_version(&alice, "abc").await);
    assert_not_found(backup.version(&alice, Some("2")).await);
    assert_eq!(backup.version(&alice, None).await.unwrap().version, "1");
    let v3 = backup
        .create_version(&alice, body(ALG, json!({}), None))
        .await
        .unwrap();
    assert_eq!(v3, "3", "a deleted version's number is not reused");

    assert_invalid(
        backup
            .create_version(&alice, body("", json!({}), None))
            .await,
    );
    assert_invalid(
        backup
            .create_version(&alice, body(&"a".repeat(256), json!({}), None))
            .await,
    );
}

#[tokio::test]
async fn updating_a_version_changes_only_its_auth_data() {
    let h = harness();
    let alice = h.user("alice").await.user_id;
    let backup = &h.services.backup;
    backup
        .create_version(&alice, body(ALG, json!({ "k": 1 }), None))
        .await
        .unwrap();

    let new_auth = json!({ "k": 2 });
    backup
        .update_version(&alice, "1", body(ALG, new_auth.clone(), Some("1")))
        .await
        .unwrap();
    backup
        .update_version(&alice, "1", body(ALG, new_auth.clone(), None))
        .await
        .unwrap();
    assert_eq!(
        backup.version(&alice, Some("1")).await.unwrap().auth_data,
        new_auth
    );
    assert_invalid(
        backup
            .update_version(&alice, "1", body("org.example.other", json!({}), None))
            .await,
    );
    assert_invalid(
        backup
            .update_version(&alice, "1", body(ALG, json!({}), Some("2")))
            .await,
    );
    assert_not_found(
        backup
            .update_version(&alice, "5", body(ALG, json!({}), None))
            .await,
    );
    assert_eq!(
        backup.version(&alice, Some("1")).await.unwrap().auth_data,
        new_auth,
        "refused updates change nothing"
    );
    backup.delete_version(&alice, "1").await.unwrap();
    assert_not_found(
        backup
            .update_version(&alice, "1", body(ALG, json!({}), None))
            .await,
    );
}

#[tokio::test]
async fn only_the_current_version_takes_keys_and_the_better_key_stays() {
    let h = harness();
    let alice = h.user("alice").await.user_id;
    let backup = &h.services.backup;
    assert_not_found(
        backup
            .put_keys(&alice, "1", one("s", key(0, 0, false, "a")))
            .await,
    );
    for _ in 0..2 {
        backup
            .create_version(&alice, body(ALG, json!({}), None))
            .await
            .unwrap();
    }
    match backup
        .put_keys(&alice, "1", one("s", key(0, 0, false, "a")))
        .await
    {
        Err(ServiceError::WrongRoomKeysVersion { current_version }) => {
            assert_eq!(current_version, "2")
        }
        other => panic!("expected a wrong-version refusal, got {other:?}"),
    }
    assert_not_found(
        backup
            .put_keys(&alice, "3", one("s", key(0, 0, false, "a")))
            .await,
    );

    let update = backup
        .put_keys(&alice, "2", one("s", key(4, 1, false, "first")))
        .await
        .unwrap();
    assert_eq!((update.etag.as_str(), update.count), ("1", 1));
    // A later index is worse; a verified key is better whatever its index.
    let same = backup
        .put_keys(&alice, "2", one("s", key(5, 0, false, "worse")))
        .await
        .unwrap();
    assert_eq!(same, update, "nothing changed: same etag");
    let better = backup
        .put_keys(&alice, "2", one("s", key(9, 3, true, "verified")))
        .await
        .unwrap();
    assert_eq!((better.etag.as_str(), better.count), ("2", 1));
    let stored = backup.session_key(&alice, "2", ROOM, "s").await.unwrap();
    assert_eq!(stored, key(9, 3, true, "verified"));
    assert_eq!(
        backup.version(&alice, None).await.unwrap().etag,
        better.etag,
        "the version's etag is the one the upload answered"
    );
}

#[tokio::test]
async fn reads_have_the_spec_shapes_when_nothing_is_there() {
    let h = harness();
    let alice = h.user("alice").await.user_id;
    let backup = &h.services.backup;
    backup
        .create_version(&alice, body(ALG, json!({}), None))
        .await
        .unwrap();
    assert_eq!(backup.keys(&alice, "1").await.unwrap(), RoomKeys::default());
    assert_eq!(
        backup.room_keys(&alice, "1", ROOM).await.unwrap(),
        RoomKeyBackup::default()
    );
    assert_not_found(backup.session_key(&alice, "1", ROOM, "s").await);
    assert_not_found(backup.keys(&alice, "2").await);
    assert_not_found(backup.room_keys(&alice, "2", ROOM).await);
    assert_invalid(backup.room_keys(&alice, "1", "not-a-room").await);

    backup
        .put_keys(&alice, "1", one("s", key(0, 0, false, "a")))
        .await
        .unwrap();
    let all = backup.keys(&alice, "1").await.unwrap();
    assert_eq!(all.rooms[ROOM].sessions["s"], key(0, 0, false, "a"));
    let deleted = backup
        .delete_keys(&alice, "1", Some(ROOM), Some("s"))
        .await
        .unwrap();
    assert_eq!((deleted.etag.as_str(), deleted.count), ("2", 0));
    assert_not_found(backup.delete_keys(&alice, "9", None, None).await);
}

#[tokio::test]
async fn an_upload_is_bounded_and_checked_before_anything_is_stored() {
    let h = harness();
    let alice = h.user("alice").await.user_id;
    let backup = &h.services.backup;
    backup
        .create_version(&alice, body(ALG, json!({}), None))
        .await
        .unwrap();

    let too_many = RoomKeyBackup {
        sessions: (0..=MAX_SESSIONS_PER_REQUEST)
            .map(|i| (format!("s{i}"), key(0, 0, false, "x")))
            .collect(),
    };
    assert_invalid(
        backup
            .put_keys(&alice, "1", RoomKeys::of_room(ROOM.into(), too_many))
            .await,
    );
    let mut bad_room = one("s", key(0, 0, false, "x"));
    bad_room
        .rooms
        .insert("no-sigil".into(), RoomKeyBackup::default());
    bad_room.rooms.insert(
        "also-bad".into(),
        one("t", key(0, 0, false, "x")).rooms.remove(ROOM).unwrap(),
    );
    assert_invalid(backup.put_keys(&alice, "1", bad_room).await);
    assert_invalid(
        backup
            .put_keys(&alice, "1", one("", key(0, 0, false, "x")))
            .await,
    );
    assert_invalid(
        backup
            .put_keys(&alice, "1", one(&"s".repeat(256), key(0, 0, false, "x")))
            .await,
    );
    assert_invalid(
        backup
            .put_keys(&alice, "1", one("s", key(1 << 53, 0, false, "x")))
            .await,
    );
    assert_eq!(
        backup.version(&alice, None).await.unwrap().count,
        0,
        "a refused upload stores none of its keys"
    );

    let exactly_max = RoomKeyBackup {
        sessions: (0..MAX_SESSIONS_PER_REQUEST)
            .map(|i| (format!("s{i}"), key(0, 0, false, "x")))
            .collect(),
    };
    let update = backup
        .put_keys(&alice, "1", RoomKeys::of_room(ROOM.into(), exactly_max))
        .await
        .unwrap();
    assert_eq!(update.count, MAX_SESSIONS_PER_REQUEST as u64);
}

#[tokio::test]
async fn deactivation_takes_the_backups() {
    let h = harness();
    let alice = h.user("alice").await.user_id;
    let backup = &h.services.backup;
    backup
        .create_version(&alice, body(ALG, json!({}), None))
        .await
        .unwrap();
    backup
        .put_keys(&alice, "1", one("s", key(0, 0, false, "x")))
        .await
        .unwrap();
    h.services.accounts.deactivate(&alice, false).await.unwrap();
    assert_not_found(backup.version(&alice, None).await);
    assert_not_found(backup.keys(&alice, "1").await);
}
