//! More conformance tests of [`KeyStore`](crate::KeyStore), next to the ones in `keys.rs`: key
//! material kept byte for byte, claims in upload order (also several in one call), positions
//! shared with the other streams, and what deleting devices or deactivating a user leaves behind.

use std::collections::{BTreeMap, BTreeSet};

use myelin_core::StreamPos;
use ruma::OwnedUserId;
use serde_json::{json, Value};

use super::{device, new_user, session, user};
use crate::Storage;

/// Creates each user with the given devices (one login each).
async fn users_with_devices(store: &dyn Storage, users: &[(&str, &[&str])]) {
    for (user_id, devices) in users {
        store.create_user(new_user(user_id, None)).await.unwrap();
        for dev in *devices {
            store
                .create_session(session(user_id, dev, &format!("{user_id}/{dev}"), None))
                .await
                .unwrap();
        }
    }
}

fn one_time_key(key_id: &str) -> (String, String) {
    (key_id.to_owned(), format!(r#"{{"key":"{key_id}"}}"#))
}

fn claim(user_id: &str, device_id: &str, algorithm: &str) -> crate::KeyClaim {
    crate::KeyClaim {
        user_id: user(user_id),
        device_id: device(device_id),
        algorithm: algorithm.to_owned(),
    }
}

/// `(user, device, key_id)` of claimed keys, for comparing answers.
fn claimed_ids(claimed: &[crate::ClaimedKey]) -> Vec<(String, String, String)> {
    claimed
        .iter()
        .map(|k| {
            (
                k.user_id.to_string(),
                k.device_id.to_string(),
                k.key_id.clone(),
            )
        })
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(alg, n)| ((*alg).to_owned(), *n))
        .collect()
}

/// Identity keys (stored byte for byte, only for existing devices) and one-time and fallback key
/// claims: oldest one-time key first, each once, then the fallback key, which stays.
pub async fn key_uploads_and_claims_in_detail(store: &dyn Storage) {
    const OTK: &str = "signed_curve25519";
    let alice = user("@alice:localhost");
    let bob = user("@bob:localhost");
    users_with_devices(
        store,
        &[
            ("@alice:localhost", &["DEV1", "DEV2"]),
            ("@bob:localhost", &["BOB1"]),
        ],
    )
    .await;
    let start = store.current_stream_pos().await.unwrap();

    // Identity keys.
    assert_eq!(
        store
            .set_device_keys(&alice, "NOPE", r#"{"device_id":"NOPE"}"#)
            .await
            .unwrap(),
        None,
        "no keys for a device that does not exist"
    );
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        start,
        "nothing written for a missing device"
    );
    // Odd spacing, key order and escapes must survive: signatures cover the uploaded text.
    let keys_v1 =
        r#"{"device_id":"DEV1",  "algorithms":["m.olm.v1"],"keys":{"b":"\u00e9","a":"x"}}"#;
    let p1 = store
        .set_device_keys(&alice, "DEV1", keys_v1)
        .await
        .unwrap()
        .expect("device exists");
    assert!(p1 > start);
    assert_eq!(store.current_stream_pos().await.unwrap(), p1);
    let keys_v2 = r#"{"device_id":"DEV1","v":2}"#;
    let p2 = store
        .set_device_keys(&alice, "DEV1", keys_v2)
        .await
        .unwrap()
        .expect("device exists");
    assert!(p2 > p1, "a replacement is a new change");
    store
        .set_device_keys(&bob, "BOB1", keys_v1)
        .await
        .unwrap()
        .expect("device exists");
    let records = store
        .device_keys(&[bob.clone(), alice.clone(), user("@nobody:localhost")])
        .await
        .unwrap();
    assert_eq!(
        records,
        [
            crate::DeviceKeysRecord {
                user_id: alice.clone(),
                device_id: device("DEV1"),
                keys_json: keys_v2.to_owned(),
                display_name: Some("DEV1 name".into()),
            },
            crate::DeviceKeysRecord {
                user_id: bob.clone(),
                device_id: device("BOB1"),
                keys_json: keys_v1.to_owned(),
                display_name: Some("BOB1 name".into()),
            },
        ],
        "ordered by user then device; DEV2 uploaded no keys"
    );
    store
        .set_device_display_name(&alice, "DEV1", Some("Phone"))
        .await
        .unwrap();
    store
        .set_device_keys(&alice, "DEV2", r#"{"device_id":"DEV2"}"#)
        .await
        .unwrap()
        .expect("device exists");
    let alice_keys = store
        .device_keys(std::slice::from_ref(&alice))
        .await
        .unwrap();
    assert_eq!(
        alice_keys
            .iter()
            .map(|r| (r.device_id.as_str(), r.display_name.as_deref()))
            .collect::<Vec<_>>(),
        [("DEV1", Some("Phone")), ("DEV2", Some("DEV2 name"))],
        "the display name comes from the device"
    );
    assert!(store.device_keys(&[]).await.unwrap().is_empty());

    // One-time keys: counts per algorithm; a key ID already stored keeps its first upload.
    assert!(store
        .one_time_key_counts(&alice, "DEV1")
        .await
        .unwrap()
        .is_empty());
    store
        .add_one_time_keys(
            &alice,
            "DEV1",
            &[
                one_time_key("signed_curve25519:BBB"),
                one_time_key("signed_curve25519:AAA"),
                one_time_key("curve25519:C1"),
            ],
        )
        .await
        .unwrap();
    store
        .add_one_time_keys(
            &alice,
            "DEV1",
            &[
                (
                    "signed_curve25519:BBB".into(),
                    r#"{"key":"replaced"}"#.into(),
                ),
                one_time_key("signed_curve25519:CCC"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store.one_time_key_counts(&alice, "DEV1").await.unwrap(),
        counts(&[(OTK, 3), ("curve25519", 1)])
    );
    store
        .add_one_time_keys(&alice, "DEV2", &[one_time_key("signed_curve25519:D2")])
        .await
        .unwrap();
    store
        .add_one_time_keys(&bob, "BOB1", &[one_time_key("signed_curve25519:AAA")])
        .await
        .unwrap();
    assert_eq!(
        store.one_time_key_counts(&alice, "DEV2").await.unwrap(),
        counts(&[(OTK, 1)]),
        "counts are per device"
    );
    store
        .add_one_time_keys(&alice, "NOPE", &[one_time_key("signed_curve25519:N")])
        .await
        .unwrap();
    assert!(
        store
            .one_time_key_counts(&alice, "NOPE")
            .await
            .unwrap()
            .is_empty(),
        "keys for a missing device are not kept"
    );

    // Fallback keys.
    assert!(store
        .unused_fallback_key_types(&alice, "DEV1")
        .await
        .unwrap()
        .is_empty());
    store
        .set_fallback_keys(
            &alice,
            "DEV1",
            &[("signed_curve25519:FB1".into(), r#"{"fallback":1}"#.into())],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .unused_fallback_key_types(&alice, "DEV1")
            .await
            .unwrap(),
        [OTK]
    );
    assert!(store
        .unused_fallback_key_types(&alice, "DEV2")
        .await
        .unwrap()
        .is_empty());

    // Claims: oldest upload first (not by key ID), each key once, even twice in one call.
    assert!(store.claim_keys(&[]).await.unwrap().is_empty());
    let first = store
        .claim_keys(&[
            claim("@alice:localhost", "DEV1", OTK),
            claim("@alice:localhost", "DEV1", OTK),
            claim("@bob:localhost", "BOB1", OTK),
            claim("@alice:localhost", "DEV1", "unknown_algorithm"),
            claim("@alice:localhost", "NOPE", OTK),
            claim("@nobody:localhost", "DEV1", OTK),
        ])
        .await
        .unwrap();
    assert_eq!(
        claimed_ids(&first),
        [
            (
                "@alice:localhost".into(),
                "DEV1".into(),
                "signed_curve25519:BBB".into()
            ),
            (
                "@alice:localhost".into(),
                "DEV1".into(),
                "signed_curve25519:AAA".into()
            ),
            (
                "@bob:localhost".into(),
                "BOB1".into(),
                "signed_curve25519:AAA".into()
            ),
        ],
        "requests that find nothing are left out"
    );
    assert_eq!(
        first[0].key_json, r#"{"key":"signed_curve25519:BBB"}"#,
        "a re-uploaded key ID kept its first upload"
    );
    assert_eq!(first[2].key_json, r#"{"key":"signed_curve25519:AAA"}"#);
    assert_eq!(
        store.one_time_key_counts(&alice, "DEV1").await.unwrap(),
        counts(&[(OTK, 1), ("curve25519", 1)]),
        "claimed keys are removed"
    );
    assert!(
        store
            .one_time_key_counts(&bob, "BOB1")
            .await
            .unwrap()
            .is_empty(),
        "an algorithm with no key left is not counted"
    );

    let next = store
        .claim_keys(&[claim("@alice:localhost", "DEV1", OTK)])
        .await
        .unwrap();
    assert_eq!(next[0].key_id, "signed_curve25519:CCC");
    assert_eq!(
        store
            .unused_fallback_key_types(&alice, "DEV1")
            .await
            .unwrap(),
        [OTK],
        "the fallback key is untouched while one-time keys last"
    );

    // No one-time key left: the fallback key, marked used but kept.
    let fallback = store
        .claim_keys(&[claim("@alice:localhost", "DEV1", OTK)])
        .await
        .unwrap();
    assert_eq!(
        fallback,
        [crate::ClaimedKey {
            user_id: alice.clone(),
            device_id: device("DEV1"),
            key_id: "signed_curve25519:FB1".into(),
            key_json: r#"{"fallback":1}"#.into(),
        }]
    );
    assert!(store
        .unused_fallback_key_types(&alice, "DEV1")
        .await
        .unwrap()
        .is_empty());
    let again = store
        .claim_keys(&[
            claim("@alice:localhost", "DEV1", OTK),
            claim("@alice:localhost", "DEV1", OTK),
        ])
        .await
        .unwrap();
    assert_eq!(
        claimed_ids(&again),
        [
            (
                "@alice:localhost".into(),
                "DEV1".into(),
                "signed_curve25519:FB1".into()
            ),
            (
                "@alice:localhost".into(),
                "DEV1".into(),
                "signed_curve25519:FB1".into()
            ),
        ],
        "a used fallback key is still handed out"
    );
    assert_eq!(
        store.one_time_key_counts(&alice, "DEV1").await.unwrap(),
        counts(&[("curve25519", 1)]),
        "other algorithms are untouched"
    );
    assert!(
        store
            .claim_keys(&[claim("@bob:localhost", "BOB1", OTK)])
            .await
            .unwrap()
            .is_empty(),
        "no one-time and no fallback key: nothing"
    );

    // A new fallback key replaces the old one and starts out unused.
    store
        .set_fallback_keys(
            &alice,
            "DEV1",
            &[
                ("signed_curve25519:FB2".into(), r#"{"fallback":2}"#.into()),
                ("curve25519:FBC".into(), r#"{"fallback":"c"}"#.into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .unused_fallback_key_types(&alice, "DEV1")
            .await
            .unwrap(),
        ["curve25519", OTK]
    );
    let replaced = store
        .claim_keys(&[claim("@alice:localhost", "DEV1", OTK)])
        .await
        .unwrap();
    assert_eq!(
        (replaced[0].key_id.as_str(), replaced[0].key_json.as_str()),
        ("signed_curve25519:FB2", r#"{"fallback":2}"#)
    );
    assert_eq!(
        store
            .unused_fallback_key_types(&alice, "DEV1")
            .await
            .unwrap(),
        ["curve25519"]
    );
    assert_eq!(
        store.one_time_key_counts(&alice, "DEV2").await.unwrap(),
        counts(&[(OTK, 1)]),
        "another device's keys are untouched"
    );
}

/// Cross-signing keys: set and replaced per kind, each write a device-list change.
pub async fn cross_signing_keys_per_user_and_kind(store: &dyn Storage) {
    use crate::CrossSigningKind::{Master, SelfSigning, UserSigning};
    let alice = user("@alice:localhost");
    let bob = user("@bob:localhost");
    let start = store.current_stream_pos().await.unwrap();

    assert!(store
        .cross_signing_keys(std::slice::from_ref(&alice))
        .await
        .unwrap()
        .is_empty());
    let p1 = store
        .set_cross_signing_keys(
            &alice,
            &[
                (Master, r#"{"usage":["master"], "v":1}"#.into()),
                (SelfSigning, r#"{"usage":["self_signing"]}"#.into()),
            ],
        )
        .await
        .unwrap();
    assert!(p1 > start);
    assert_eq!(store.current_stream_pos().await.unwrap(), p1);
    let p2 = store
        .set_cross_signing_keys(
            &alice,
            &[
                (Master, r#"{"usage":["master"],"v":2}"#.into()),
                (UserSigning, r#"{"usage":["user_signing"]}"#.into()),
            ],
        )
        .await
        .unwrap();
    assert!(p2 > p1);
    let p3 = store
        .set_cross_signing_keys(&bob, &[(Master, r#"{"bob":true}"#.into())])
        .await
        .unwrap();
    assert!(p3 > p2);

    let stored: BTreeMap<(String, crate::CrossSigningKind), String> = store
        .cross_signing_keys(&[alice.clone(), bob.clone(), user("@nobody:localhost")])
        .await
        .unwrap()
        .into_iter()
        .map(|k| ((k.user_id.to_string(), k.kind), k.key_json))
        .collect();
    let expected: BTreeMap<(String, crate::CrossSigningKind), String> = [
        (
            ("@alice:localhost", Master),
            r#"{"usage":["master"],"v":2}"#,
        ),
        (
            ("@alice:localhost", SelfSigning),
            r#"{"usage":["self_signing"]}"#,
        ),
        (
            ("@alice:localhost", UserSigning),
            r#"{"usage":["user_signing"]}"#,
        ),
        (("@bob:localhost", Master), r#"{"bob":true}"#),
    ]
    .into_iter()
    .map(|((u, kind), json)| ((u.to_owned(), kind), json.to_owned()))
    .collect();
    assert_eq!(stored, expected, "a kind not in a later upload stays");
    assert_eq!(
        store
            .cross_signing_keys(std::slice::from_ref(&bob))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.cross_signing_keys(&[]).await.unwrap().is_empty());

    let changed: BTreeSet<OwnedUserId> = store
        .device_list_changes(start, p3)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(changed, BTreeSet::from([alice, bob]));
}

/// The device-list change stream: positions from the global counter, `(since, up_to]`, each
/// user once.
pub async fn device_list_changes_share_the_stream(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let bob = user("@bob:localhost");
    let carol = user("@carol:localhost");
    let remote = user("@remote:other.example");
    users_with_devices(store, &[("@carol:localhost", &["C1"])]).await;
    let start = store.current_stream_pos().await.unwrap();

    let p1 = store.mark_device_list_changed(&alice).await.unwrap();
    let p2 = store.mark_device_list_changed(&bob).await.unwrap();
    let other = store
        .set_account_data(&alice, None, "m.x", &json!({}))
        .await
        .unwrap();
    let p3 = store.mark_device_list_changed(&alice).await.unwrap();
    let p4 = store
        .set_device_keys(&carol, "C1", "{}")
        .await
        .unwrap()
        .expect("device exists");
    let p5 = store.mark_device_list_changed(&remote).await.unwrap();
    assert!(start < p1 && p1 < p2 && p2 < other && other < p3 && p3 < p4 && p4 < p5);
    assert_eq!(p1, start.next(), "one position per change");
    assert_eq!(store.current_stream_pos().await.unwrap(), p5);

    let all = store.device_list_changes(start, p5).await.unwrap();
    let distinct: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), distinct.len(), "each user once: {all:?}");
    assert_eq!(
        distinct,
        BTreeSet::from([alice.clone(), bob.clone(), carol.clone(), remote.clone()])
    );
    assert_eq!(
        store.device_list_changes(start, p1).await.unwrap(),
        std::slice::from_ref(&alice)
    );
    assert_eq!(
        store.device_list_changes(p1, p2).await.unwrap(),
        std::slice::from_ref(&bob),
        "`since` is exclusive, `up_to` inclusive"
    );
    assert!(store
        .device_list_changes(p2, other)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.device_list_changes(p2, p3).await.unwrap(),
        std::slice::from_ref(&alice)
    );
    let tail: BTreeSet<_> = store
        .device_list_changes(p3, p5)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(tail, BTreeSet::from([carol, remote]));
    assert!(store.device_list_changes(p5, p5).await.unwrap().is_empty());
    assert!(store.device_list_changes(p3, p1).await.unwrap().is_empty());
    assert!(store
        .device_list_changes(p5, p5.next())
        .await
        .unwrap()
        .is_empty());
}

fn to_device(recipient: &str, device_id: &str, body: &str) -> crate::ToDeviceMessage {
    crate::ToDeviceMessage {
        recipient: user(recipient),
        device_id: device(device_id),
        sender: user("@sender:other.example"),
        event_type: "m.room.encrypted".into(),
        content_json: format!(r#"{{"body":"{body}"}}"#),
    }
}

/// `content_json` bodies of queued messages with their positions.
fn bodies(queued: &[crate::QueuedToDevice]) -> Vec<(StreamPos, String)> {
    queued
        .iter()
        .map(|q| {
            let content: Value = serde_json::from_str(&q.message.content_json).unwrap();
            (q.stream_pos, content["body"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// To-device messages: one position per queued batch, per-device queues read in
/// `(after, up_to]` with a limit, deleted once acknowledged; unknown devices get nothing.
pub async fn to_device_batches_and_late_devices(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let bob = user("@bob:localhost");
    users_with_devices(
        store,
        &[
            ("@alice:localhost", &["DEV1", "DEV2"]),
            ("@bob:localhost", &["BOB1"]),
        ],
    )
    .await;
    let start = store.current_stream_pos().await.unwrap();

    let q1 = store
        .queue_to_device(&[
            to_device("@alice:localhost", "DEV1", "a1"),
            to_device("@alice:localhost", "DEV2", "d2"),
            to_device("@alice:localhost", "NOPE", "lost"),
            to_device("@nobody:localhost", "DEV1", "lost"),
        ])
        .await
        .unwrap();
    assert!(q1 > start);
    assert_eq!(store.current_stream_pos().await.unwrap(), q1);
    let q2 = store
        .queue_to_device(&[
            to_device("@alice:localhost", "DEV1", "b1"),
            to_device("@bob:localhost", "BOB1", "bob"),
            to_device("@alice:localhost", "DEV1", "b2"),
        ])
        .await
        .unwrap();
    assert_eq!(q2, q1.next(), "a batch takes one position");
    let q3 = store
        .queue_to_device(&[to_device("@alice:localhost", "DEV1", "c1")])
        .await
        .unwrap();

    let all = store
        .to_device_messages(&alice, "DEV1", StreamPos::ZERO, q3, 100)
        .await
        .unwrap();
    assert_eq!(
        bodies(&all),
        [
            (q1, "a1".to_owned()),
            (q2, "b1".to_owned()),
            (q2, "b2".to_owned()),
            (q3, "c1".to_owned()),
        ],
        "oldest first, in queueing order within a position"
    );
    assert_eq!(
        all[0].message,
        crate::ToDeviceMessage {
            recipient: alice.clone(),
            device_id: device("DEV1"),
            sender: user("@sender:other.example"),
            event_type: "m.room.encrypted".into(),
            content_json: r#"{"body":"a1"}"#.into(),
        }
    );
    assert_eq!(
        bodies(
            &store
                .to_device_messages(&alice, "DEV1", StreamPos::ZERO, q3, 2)
                .await
                .unwrap()
        ),
        [(q1, "a1".to_owned()), (q2, "b1".to_owned())],
        "at most `limit`"
    );
    assert_eq!(
        bodies(
            &store
                .to_device_messages(&alice, "DEV1", q1, q2, 100)
                .await
                .unwrap()
        ),
        [(q2, "b1".to_owned()), (q2, "b2".to_owned())],
        "`after` is exclusive, `up_to` inclusive"
    );
    assert!(store
        .to_device_messages(&alice, "DEV1", q3, q3.next(), 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        bodies(
            &store
                .to_device_messages(&alice, "DEV2", start, q3, 100)
                .await
                .unwrap()
        ),
        [(q1, "d2".to_owned())]
    );
    assert_eq!(
        bodies(
            &store
                .to_device_messages(&bob, "BOB1", start, q3, 100)
                .await
                .unwrap()
        ),
        [(q2, "bob".to_owned())]
    );
    assert!(
        store
            .to_device_messages(&alice, "NOPE", start, q3, 100)
            .await
            .unwrap()
            .is_empty(),
        "messages for a device that does not exist are dropped"
    );
    store
        .create_session(session("@alice:localhost", "NOPE", "late", None))
        .await
        .unwrap();
    assert!(
        store
            .to_device_messages(&alice, "NOPE", start, q3, 100)
            .await
            .unwrap()
            .is_empty(),
        "...and not delivered to a device created later"
    );

    // Acknowledged messages go, for that device only.
    store.delete_to_device(&alice, "DEV1", q2).await.unwrap();
    assert_eq!(
        bodies(
            &store
                .to_device_messages(&alice, "DEV1", StreamPos::ZERO, q3, 100)
                .await
                .unwrap()
        ),
        [(q3, "c1".to_owned())]
    );
    assert_eq!(
        store
            .to_device_messages(&alice, "DEV2", start, q3, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .to_device_messages(&bob, "BOB1", start, q3, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    store.delete_to_device(&alice, "DEV1", q3).await.unwrap();
    assert!(store
        .to_device_messages(&alice, "DEV1", StreamPos::ZERO, q3, 100)
        .await
        .unwrap()
        .is_empty());
    store.delete_to_device(&alice, "NOPE", q3).await.unwrap();
}

/// Gives a device identity, one-time and fallback keys and a queued message.
async fn equip_device(store: &dyn Storage, user_id: &str, device_id: &str) {
    let owner = user(user_id);
    store
        .set_device_keys(
            &owner,
            device_id,
            &format!(r#"{{"device_id":"{device_id}"}}"#),
        )
        .await
        .unwrap()
        .expect("device exists");
    store
        .add_one_time_keys(
            &owner,
            device_id,
            &[one_time_key(&format!("signed_curve25519:{device_id}"))],
        )
        .await
        .unwrap();
    store
        .set_fallback_keys(
            &owner,
            device_id,
            &[one_time_key(&format!("signed_curve25519:FB{device_id}"))],
        )
        .await
        .unwrap();
    store
        .queue_to_device(&[to_device(user_id, device_id, device_id)])
        .await
        .unwrap();
}

/// Whether anything of the device's key material or queued messages is left.
async fn device_has_keys(store: &dyn Storage, user_id: &str, device_id: &str) -> bool {
    let owner = user(user_id);
    let identity = store
        .device_keys(std::slice::from_ref(&owner))
        .await
        .unwrap()
        .iter()
        .any(|r| r.device_id.as_str() == device_id);
    let one_time = !store
        .one_time_key_counts(&owner, device_id)
        .await
        .unwrap()
        .is_empty();
    let fallback = !store
        .unused_fallback_key_types(&owner, device_id)
        .await
        .unwrap()
        .is_empty();
    let now = store.current_stream_pos().await.unwrap();
    let messages = !store
        .to_device_messages(&owner, device_id, StreamPos::ZERO, now, 10)
        .await
        .unwrap()
        .is_empty();
    identity || one_time || fallback || messages
}

/// Asserts that the write since `before` took exactly one position, for one device-list change
/// of `user_id`.
async fn assert_one_change(store: &dyn Storage, before: StreamPos, user_id: &str) {
    let now = store.current_stream_pos().await.unwrap();
    assert_eq!(now, before.next(), "one new position");
    assert_eq!(
        store.device_list_changes(before, now).await.unwrap(),
        [user(user_id)]
    );
}

/// Deleting devices (one by one, all but one, by deactivation) removes their keys and queued
/// messages and records one device-list change, only when a device was actually deleted.
pub async fn deleting_devices_removes_their_keys(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let bob = user("@bob:localhost");
    let devices = ["DEV1", "DEV2", "DEV3", "DEV4"];
    users_with_devices(
        store,
        &[
            ("@alice:localhost", &devices),
            ("@bob:localhost", &["DEV1"]),
        ],
    )
    .await;
    for dev in devices {
        equip_device(store, "@alice:localhost", dev).await;
    }
    equip_device(store, "@bob:localhost", "DEV1").await;
    store
        .set_cross_signing_keys(&bob, &[(crate::CrossSigningKind::Master, "{}".into())])
        .await
        .unwrap();

    // One device, together with one that does not exist.
    let before = store.current_stream_pos().await.unwrap();
    store
        .delete_devices(&alice, &[device("DEV1"), device("NOPE")])
        .await
        .unwrap();
    assert_one_change(store, before, "@alice:localhost").await;
    assert!(!device_has_keys(store, "@alice:localhost", "DEV1").await);
    assert!(device_has_keys(store, "@alice:localhost", "DEV2").await);
    assert!(
        device_has_keys(store, "@bob:localhost", "DEV1").await,
        "another user's device of the same ID keeps its keys"
    );
    assert!(
        store
            .claim_keys(&[claim("@alice:localhost", "DEV1", "signed_curve25519")])
            .await
            .unwrap()
            .is_empty(),
        "nothing left to claim"
    );
    // The rows are gone, not merely hidden: a new device of the same ID starts empty.
    store
        .create_session(session("@alice:localhost", "DEV1", "again", None))
        .await
        .unwrap();
    assert!(!device_has_keys(store, "@alice:localhost", "DEV1").await);

    // Nothing deleted: no change.
    let before = store.current_stream_pos().await.unwrap();
    store
        .delete_devices(&alice, &[device("NOPE")])
        .await
        .unwrap();
    store.delete_devices(&alice, &[]).await.unwrap();
    assert_eq!(store.current_stream_pos().await.unwrap(), before);
    assert!(store
        .device_list_changes(before, before.next())
        .await
        .unwrap()
        .is_empty());

    // Several devices at once: still one change.
    let before = store.current_stream_pos().await.unwrap();
    store
        .delete_devices(&alice, &[device("DEV1"), device("DEV2")])
        .await
        .unwrap();
    assert_one_change(store, before, "@alice:localhost").await;
    assert!(!device_has_keys(store, "@alice:localhost", "DEV2").await);

    // All but one.
    let before = store.current_stream_pos().await.unwrap();
    store
        .delete_all_devices(&alice, Some("DEV4"))
        .await
        .unwrap();
    assert_one_change(store, before, "@alice:localhost").await;
    assert!(!device_has_keys(store, "@alice:localhost", "DEV3").await);
    assert!(device_has_keys(store, "@alice:localhost", "DEV4").await);
    assert_eq!(
        store
            .device_keys(std::slice::from_ref(&alice))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.device_id)
            .collect::<Vec<_>>(),
        [device("DEV4")]
    );
    let before = store.current_stream_pos().await.unwrap();
    store
        .delete_all_devices(&alice, Some("DEV4"))
        .await
        .unwrap();
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        before,
        "nothing to delete: no change"
    );
    store.delete_all_devices(&alice, None).await.unwrap();
    assert_one_change(store, before, "@alice:localhost").await;
    assert!(!device_has_keys(store, "@alice:localhost", "DEV4").await);
    assert!(store
        .device_keys(std::slice::from_ref(&alice))
        .await
        .unwrap()
        .is_empty());

    // Deactivation also drops the user's cross-signing keys.
    let before = store.current_stream_pos().await.unwrap();
    store.deactivate_user(&bob).await.unwrap();
    assert_one_change(store, before, "@bob:localhost").await;
    assert!(!device_has_keys(store, "@bob:localhost", "DEV1").await);
    assert!(store
        .cross_signing_keys(std::slice::from_ref(&bob))
        .await
        .unwrap()
        .is_empty());
    let before = store.current_stream_pos().await.unwrap();
    store.deactivate_user(&bob).await.unwrap();
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        before,
        "no devices left: no change"
    );
}

/// Copies every table of `from` into the empty `to` through [`Dump`](crate::dump::Dump), as
/// `myelin db copy` does.
async fn dump_copy<S: crate::dump::Dump>(from: &S, to: &S) {
    use crate::dump::{STREAM_COUNTER, TABLES};
    for table in TABLES {
        let mut offset = 0;
        loop {
            // Small batches, so that paging by the table's key is exercised too.
            let rows = from.read_rows(table, offset, 2).await.unwrap();
            if rows.is_empty() {
                break;
            }
            offset += rows.len() as u64;
            to.write_rows(table, rows).await.unwrap();
        }
        if table.name != STREAM_COUNTER {
            assert_eq!(
                to.count_rows(table).await.unwrap(),
                from.count_rows(table).await.unwrap(),
                "rows of {}",
                table.name
            );
        }
    }
    to.finish_restore().await.unwrap();
}

/// Not part of [`storage_conformance_tests!`](crate::storage_conformance_tests) (it needs two
/// stores): the key tables survive a dump copy into the empty store `to`, and IDs generated after
/// the copy (one-time key and to-device order) continue after the copied ones. `reopen` closes
/// and opens `to` again, as a server started on a copied database does (a store reads its stream
/// position when it opens).
pub async fn keys_survive_a_dump_copy<S, F, Fut>(from: &S, to: S, reopen: F)
where
    S: Storage + crate::dump::Dump,
    F: FnOnce(S) -> Fut,
    Fut: std::future::Future<Output = S>,
{
    use crate::CrossSigningKind::Master;
    let alice = user("@alice:localhost");
    let remote = user("@remote:other.example");
    users_with_devices(from, &[("@alice:localhost", &["DEV1", "DEV2"])]).await;
    equip_device(from, "@alice:localhost", "DEV1").await;
    equip_device(from, "@alice:localhost", "DEV2").await;
    from.add_one_time_keys(&alice, "DEV1", &[one_time_key("signed_curve25519:Z2")])
        .await
        .unwrap();
    from.set_cross_signing_keys(&alice, &[(Master, r#"{"m":1}"#.into())])
        .await
        .unwrap();
    let used = from
        .claim_keys(&[claim("@alice:localhost", "DEV2", "signed_curve25519")])
        .await
        .unwrap();
    assert_eq!(used.len(), 1);
    from.claim_keys(&[claim("@alice:localhost", "DEV2", "signed_curve25519")])
        .await
        .unwrap();
    let last = from.mark_device_list_changed(&remote).await.unwrap();

    dump_copy(from, &to).await;
    let to = reopen(to).await;

    assert_eq!(to.current_stream_pos().await.unwrap(), last);
    assert_eq!(
        to.device_keys(std::slice::from_ref(&alice)).await.unwrap(),
        from.device_keys(std::slice::from_ref(&alice))
            .await
            .unwrap()
    );
    assert_eq!(
        to.cross_signing_keys(std::slice::from_ref(&alice))
            .await
            .unwrap(),
        from.cross_signing_keys(std::slice::from_ref(&alice))
            .await
            .unwrap()
    );
    assert_eq!(
        to.device_list_changes(StreamPos::ZERO, last).await.unwrap(),
        from.device_list_changes(StreamPos::ZERO, last)
            .await
            .unwrap()
    );
    for dev in ["DEV1", "DEV2"] {
        assert_eq!(
            to.one_time_key_counts(&alice, dev).await.unwrap(),
            from.one_time_key_counts(&alice, dev).await.unwrap()
        );
        assert_eq!(
            to.unused_fallback_key_types(&alice, dev).await.unwrap(),
            from.unused_fallback_key_types(&alice, dev).await.unwrap(),
            "the used flag is copied"
        );
        assert_eq!(
            to.to_device_messages(&alice, dev, StreamPos::ZERO, last, 10)
                .await
                .unwrap(),
            from.to_device_messages(&alice, dev, StreamPos::ZERO, last, 10)
                .await
                .unwrap()
        );
    }

    // New rows continue after the copied ones: a key uploaded now is claimed last.
    to.add_one_time_keys(&alice, "DEV1", &[one_time_key("signed_curve25519:A0")])
        .await
        .unwrap();
    let order = to
        .claim_keys(&[
            claim("@alice:localhost", "DEV1", "signed_curve25519"),
            claim("@alice:localhost", "DEV1", "signed_curve25519"),
            claim("@alice:localhost", "DEV1", "signed_curve25519"),
        ])
        .await
        .unwrap();
    assert_eq!(
        order.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        [
            "signed_curve25519:DEV1",
            "signed_curve25519:Z2",
            "signed_curve25519:A0"
        ]
    );
    let pos = to
        .queue_to_device(&[
            to_device("@alice:localhost", "DEV1", "new1"),
            to_device("@alice:localhost", "DEV1", "new2"),
        ])
        .await
        .unwrap();
    assert!(pos > last, "positions continue after the copied ones");
    let queued = to
        .to_device_messages(&alice, "DEV1", StreamPos::ZERO, pos, 10)
        .await
        .unwrap();
    assert_eq!(
        bodies(&queued)
            .into_iter()
            .map(|(_, b)| b)
            .collect::<Vec<_>>(),
        ["DEV1", "new1", "new2"]
    );
}
