//! More conformance tests of [`KeyStore`](crate::KeyStore), next to the ones in `keys.rs`: key
//! material kept byte for byte, claims in upload order (also several in one call), cross-signing
//! keys per user and kind, and device-list changes sharing the stream. What happens to keys and
//! messages over a device's life is in `keys_lifecycle.rs`.

use std::collections::{BTreeMap, BTreeSet};

use ruma::OwnedUserId;
use serde_json::json;

use super::{device, new_user, session, user};
use crate::Storage;

/// Creates each user with the given devices (one login each).
pub(super) async fn users_with_devices(store: &dyn Storage, users: &[(&str, &[&str])]) {
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

pub(super) fn one_time_key(key_id: &str) -> (String, String) {
    (key_id.to_owned(), format!(r#"{{"key":"{key_id}"}}"#))
}

pub(super) fn claim(user_id: &str, device_id: &str, algorithm: &str) -> crate::KeyClaim {
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
