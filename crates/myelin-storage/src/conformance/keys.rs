//! Conformance tests of [`KeyStore`](crate::KeyStore): device, one-time, fallback and
//! cross-signing keys, the device-list change stream and to-device messages.

use ruma::OwnedUserId;

use super::{device, new_user, session, user};
use crate::{CrossSigningKind, KeyClaim, Storage, StorageResult, ToDeviceMessage, ToDeviceTxn};
use myelin_core::StreamPos;

async fn user_with_devices(store: &dyn Storage, user_id: &str, devices: &[&str]) {
    store
        .create_user(new_user(user_id, Some("h")))
        .await
        .unwrap();
    for d in devices {
        let token = format!("{user_id}/{d}");
        store
            .create_session(session(user_id, d, &token, None))
            .await
            .unwrap();
    }
}

fn claim(user_id: &str, device_id: &str, algorithm: &str) -> KeyClaim {
    KeyClaim {
        user_id: user(user_id),
        device_id: device(device_id),
        algorithm: algorithm.to_owned(),
    }
}

fn keys(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(id, json)| (id.to_string(), json.to_string()))
        .collect()
}

async fn claimed_ids(store: &dyn Storage, claims: &[KeyClaim]) -> StorageResult<Vec<String>> {
    Ok(store
        .claim_keys(claims)
        .await?
        .into_iter()
        .map(|k| format!("{}/{}", k.device_id, k.key_id))
        .collect())
}

pub async fn device_keys_and_claims(store: &dyn Storage) {
    user_with_devices(store, "@alice:localhost", &["DEV1", "DEV2"]).await;
    let alice = user("@alice:localhost");

    // Identity keys: only for an existing device; replaced on re-upload; each write a change.
    assert_eq!(
        store.set_device_keys(&alice, "NOPE", "{}").await.unwrap(),
        None,
        "no keys for a device that does not exist"
    );
    let first = store
        .set_device_keys(&alice, "DEV1", r#"{"v":1}"#)
        .await
        .unwrap()
        .expect("DEV1 exists");
    let second = store
        .set_device_keys(&alice, "DEV1", r#"{"v":2}"#)
        .await
        .unwrap()
        .expect("DEV1 exists");
    assert!(second > first, "each change takes a new position");
    store
        .set_device_keys(&alice, "DEV2", r#"{"v":3}"#)
        .await
        .unwrap();
    let stored = store
        .device_keys(std::slice::from_ref(&alice))
        .await
        .unwrap();
    let summary: Vec<(String, String)> = stored
        .iter()
        .map(|k| (k.device_id.to_string(), k.keys_json.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("DEV1".to_owned(), r#"{"v":2}"#.to_owned()),
            ("DEV2".to_owned(), r#"{"v":3}"#.to_owned())
        ]
    );
    assert!(store
        .device_keys(&[user("@nobody:localhost")])
        .await
        .unwrap()
        .is_empty());

    // One-time keys: counted per algorithm; a re-uploaded ID keeps the first key.
    store
        .add_one_time_keys(
            &alice,
            "DEV1",
            &keys(&[
                ("signed_curve25519:A", r#"{"k":"a"}"#),
                ("signed_curve25519:B", r#"{"k":"b"}"#),
                ("curve25519:C", r#""c""#),
            ]),
        )
        .await
        .unwrap();
    store
        .add_one_time_keys(
            &alice,
            "DEV1",
            &keys(&[("signed_curve25519:A", r#"{"k":"other"}"#)]),
        )
        .await
        .unwrap();
    let counts = store.one_time_key_counts(&alice, "DEV1").await.unwrap();
    assert_eq!(counts.get("signed_curve25519"), Some(&2));
    assert_eq!(counts.get("curve25519"), Some(&1));
    assert!(store
        .one_time_key_counts(&alice, "DEV2")
        .await
        .unwrap()
        .is_empty());

    // Fallback keys: one per algorithm, unused until claimed.
    store
        .set_fallback_keys(
            &alice,
            "DEV1",
            &keys(&[("signed_curve25519:F1", r#"{"k":"f1"}"#)]),
        )
        .await
        .unwrap();
    store
        .set_fallback_keys(
            &alice,
            "DEV1",
            &keys(&[("signed_curve25519:F2", r#"{"k":"f2"}"#)]),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .unused_fallback_key_types(&alice, "DEV1")
            .await
            .unwrap(),
        ["signed_curve25519"]
    );

    // Claims: the oldest one-time key first, each once, then the fallback key (kept, used).
    let wanted = [claim("@alice:localhost", "DEV1", "signed_curve25519")];
    let first = store.claim_keys(&wanted).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].key_id, "signed_curve25519:A");
    assert_eq!(
        first[0].key_json, r#"{"k":"a"}"#,
        "the first upload of an ID wins"
    );
    assert_eq!(
        claimed_ids(store, &wanted).await.unwrap(),
        ["DEV1/signed_curve25519:B"]
    );
    assert_eq!(
        claimed_ids(store, &wanted).await.unwrap(),
        ["DEV1/signed_curve25519:F2"],
        "the latest fallback key once the one-time keys are gone"
    );
    assert_eq!(
        claimed_ids(store, &wanted).await.unwrap(),
        ["DEV1/signed_curve25519:F2"],
        "the fallback key stays"
    );
    assert!(store
        .unused_fallback_key_types(&alice, "DEV1")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .one_time_key_counts(&alice, "DEV1")
            .await
            .unwrap()
            .get("signed_curve25519"),
        None
    );
    // A device with nothing to claim, or an unknown algorithm, is left out.
    let none = [
        claim("@alice:localhost", "DEV2", "signed_curve25519"),
        claim("@alice:localhost", "DEV1", "unknown_alg"),
    ];
    assert!(store.claim_keys(&none).await.unwrap().is_empty());
    // A new fallback key is unused again.
    store
        .set_fallback_keys(
            &alice,
            "DEV1",
            &keys(&[("signed_curve25519:F3", r#"{"k":"f3"}"#)]),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .unused_fallback_key_types(&alice, "DEV1")
            .await
            .unwrap(),
        ["signed_curve25519"]
    );
}

pub async fn cross_signing_keys(store: &dyn Storage) {
    user_with_devices(store, "@alice:localhost", &["DEV1"]).await;
    let alice = user("@alice:localhost");
    let before = store.current_stream_pos().await.unwrap();
    let pos = store
        .set_cross_signing_keys(
            &alice,
            &[
                (CrossSigningKind::Master, r#"{"m":1}"#.to_owned()),
                (CrossSigningKind::SelfSigning, r#"{"s":1}"#.to_owned()),
            ],
        )
        .await
        .unwrap();
    assert!(pos > before);
    store
        .set_cross_signing_keys(
            &alice,
            &[(CrossSigningKind::Master, r#"{"m":2}"#.to_owned())],
        )
        .await
        .unwrap();
    let stored: Vec<(CrossSigningKind, String)> = store
        .cross_signing_keys(&[alice.clone(), user("@bob:localhost")])
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kind, k.key_json))
        .collect();
    assert_eq!(
        stored,
        [
            (CrossSigningKind::Master, r#"{"m":2}"#.to_owned()),
            (CrossSigningKind::SelfSigning, r#"{"s":1}"#.to_owned()),
        ]
    );
    let changed = store
        .device_list_changes(before, store.current_stream_pos().await.unwrap())
        .await
        .unwrap();
    assert_eq!(changed, [alice]);
}

pub async fn device_list_changes(store: &dyn Storage) {
    user_with_devices(store, "@alice:localhost", &["DEV1", "DEV2", "DEV3"]).await;
    let alice = user("@alice:localhost");
    let remote = user("@bob:remote.example");
    let start = store.current_stream_pos().await.unwrap();
    let a = store.mark_device_list_changed(&remote).await.unwrap();
    let b = store
        .set_device_keys(&alice, "DEV1", "{}")
        .await
        .unwrap()
        .unwrap();
    let c = store.mark_device_list_changed(&remote).await.unwrap();
    assert!(start < a && a < b && b < c);

    let all = store.device_list_changes(start, c).await.unwrap();
    assert_eq!(all, [alice.clone(), remote.clone()], "each user once");
    assert_eq!(
        store.device_list_changes(a, b).await.unwrap(),
        std::slice::from_ref(&alice)
    );
    assert_eq!(
        store.device_list_changes(b, c).await.unwrap(),
        std::slice::from_ref(&remote)
    );
    assert!(store.device_list_changes(c, c).await.unwrap().is_empty());

    // Deleting devices (one, then all but one) is a change too, with their keys gone.
    store.set_device_keys(&alice, "DEV2", "{}").await.unwrap();
    let before_delete = store.current_stream_pos().await.unwrap();
    store
        .delete_devices(&alice, &[device("DEV1"), device("NOPE")])
        .await
        .unwrap();
    let after_delete = store.current_stream_pos().await.unwrap();
    assert_eq!(
        store
            .device_list_changes(before_delete, after_delete)
            .await
            .unwrap(),
        std::slice::from_ref(&alice)
    );
    let left: Vec<String> = store
        .device_keys(std::slice::from_ref(&alice))
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.device_id.to_string())
        .collect();
    assert_eq!(left, ["DEV2"], "the deleted device's keys went with it");
    store
        .delete_all_devices(&alice, Some("DEV3"))
        .await
        .unwrap();
    let after_all = store.current_stream_pos().await.unwrap();
    assert_eq!(
        store
            .device_list_changes(after_delete, after_all)
            .await
            .unwrap(),
        std::slice::from_ref(&alice)
    );
    assert!(store
        .device_keys(std::slice::from_ref(&alice))
        .await
        .unwrap()
        .is_empty());
    // Deleting nothing changes nothing.
    store
        .delete_devices(&alice, &[device("NOPE")])
        .await
        .unwrap();
    assert_eq!(store.current_stream_pos().await.unwrap(), after_all);
}

fn message(recipient: &str, device_id: &str, n: u32) -> ToDeviceMessage {
    ToDeviceMessage {
        recipient: user(recipient),
        device_id: device(device_id),
        sender: user("@sender:localhost"),
        event_type: "m.test".to_owned(),
        content_json: format!(r#"{{"n":{n}}}"#),
    }
}

async fn numbers(
    store: &dyn Storage,
    user_id: &OwnedUserId,
    device_id: &str,
    after: StreamPos,
    up_to: StreamPos,
    limit: usize,
) -> Vec<String> {
    store
        .to_device_messages(user_id, device_id, after, up_to, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message.content_json)
        .collect()
}

pub async fn to_device_messages(store: &dyn Storage) {
    user_with_devices(store, "@alice:localhost", &["DEV1", "DEV2"]).await;
    let alice = user("@alice:localhost");
    let start = store.current_stream_pos().await.unwrap();
    let p1 = store
        .queue_to_device(&[
            message("@alice:localhost", "DEV1", 1),
            message("@alice:localhost", "DEV2", 1),
            message("@alice:localhost", "GONE", 1),
            message("@nobody:localhost", "DEV1", 1),
        ])
        .await
        .unwrap();
    let p2 = store
        .queue_to_device(&[message("@alice:localhost", "DEV1", 2)])
        .await
        .unwrap();
    let p3 = store
        .queue_to_device(&[message("@alice:localhost", "DEV1", 3)])
        .await
        .unwrap();
    assert!(start < p1 && p1 < p2 && p2 < p3);

    let all = numbers(store, &alice, "DEV1", start, p3, 10).await;
    assert_eq!(all, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
    assert_eq!(numbers(store, &alice, "DEV1", start, p3, 2).await.len(), 2);
    assert_eq!(
        numbers(store, &alice, "DEV1", p1, p2, 10).await,
        [r#"{"n":2}"#]
    );
    let first = store
        .to_device_messages(&alice, "DEV1", start, p3, 1)
        .await
        .unwrap();
    assert_eq!(first[0].stream_pos, p1);
    assert_eq!(first[0].message, message("@alice:localhost", "DEV1", 1));
    assert_eq!(numbers(store, &alice, "GONE", start, p3, 10).await.len(), 0);

    // Acknowledged messages go; the other device's stay.
    store.delete_to_device(&alice, "DEV1", p2).await.unwrap();
    assert_eq!(
        numbers(store, &alice, "DEV1", start, p3, 10).await,
        [r#"{"n":3}"#]
    );
    assert_eq!(
        numbers(store, &alice, "DEV2", start, p3, 10).await,
        [r#"{"n":1}"#]
    );
    // A deleted device's queue goes with it.
    store
        .delete_devices(&alice, &[device("DEV2")])
        .await
        .unwrap();
    assert!(numbers(store, &alice, "DEV2", start, p3, 10)
        .await
        .is_empty());
}

/// `sendToDevice` is recorded once per device, event type and txnId: a retry queues nothing, not
/// even its EDUs for other servers; another txnId, event type or device is a new request.
pub async fn to_device_transactions_run_once(store: &dyn Storage) {
    user_with_devices(store, "@alice:localhost", &["DEV1"]).await;
    user_with_devices(store, "@bob:localhost", &["PHONE"]).await;
    let (alice, bob) = (user("@alice:localhost"), user("@bob:localhost"));
    let txn = |device_id: &str, event_type: &str, txn_id: &str| ToDeviceTxn {
        user_id: bob.clone(),
        device_id: device(device_id),
        event_type: event_type.to_owned(),
        txn_id: txn_id.to_owned(),
    };
    let start = store.current_stream_pos().await.unwrap();
    let remote = [(
        ruma::server_name!("remote.example").to_owned(),
        r#"{"edu_type":"m.direct_to_device"}"#.to_owned(),
    )];
    let local = [message("@alice:localhost", "DEV1", 1)];
    assert!(store
        .queue_to_device_once(&txn("PHONE", "m.test", "t1"), &local, &remote)
        .await
        .unwrap());
    assert!(!store
        .queue_to_device_once(&txn("PHONE", "m.test", "t1"), &local, &remote)
        .await
        .unwrap());
    let now = store.current_stream_pos().await.unwrap();
    assert_eq!(
        numbers(store, &alice, "DEV1", start, now, 10).await.len(),
        1
    );
    let queued = store
        .outbox_peek(ruma::server_name!("remote.example"), 50, 100)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);

    for other in [txn("PHONE", "m.test", "t2"), txn("PHONE", "m.other", "t1")] {
        assert!(store
            .queue_to_device_once(&other, &local, &[])
            .await
            .unwrap());
    }
    let now = store.current_stream_pos().await.unwrap();
    assert_eq!(
        numbers(store, &alice, "DEV1", start, now, 10).await.len(),
        3
    );
    // A request with nothing to deliver locally takes no stream position.
    assert!(store
        .queue_to_device_once(&txn("PHONE", "m.test", "t3"), &[], &[])
        .await
        .unwrap());
    assert_eq!(store.current_stream_pos().await.unwrap(), now);
}
