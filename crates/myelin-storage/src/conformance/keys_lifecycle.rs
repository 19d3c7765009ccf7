//! Conformance tests of [`KeyStore`](crate::KeyStore) over a device's life: to-device messages
//! across batches and for devices created late, what deleting devices or deactivating a user
//! leaves behind, and keys (and key backups) surviving a dump copy.

use myelin_core::StreamPos;
use serde_json::Value;

use super::keys_in_detail::{claim, one_time_key, users_with_devices};
use super::{device, session, user};
use crate::Storage;

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
    store.deactivate_user(&bob, false).await.unwrap();
    assert_one_change(store, before, "@bob:localhost").await;
    assert!(!device_has_keys(store, "@bob:localhost", "DEV1").await);
    assert!(store
        .cross_signing_keys(std::slice::from_ref(&bob))
        .await
        .unwrap()
        .is_empty());
    let before = store.current_stream_pos().await.unwrap();
    store.deactivate_user(&bob, false).await.unwrap();
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        before,
        "no devices left: no change"
    );
}

/// Copies every table of `from` into the empty `to` through [`Dump`](crate::dump::Dump), as
/// `myelin db copy` does.
async fn dump_copy<S: crate::dump::Dump>(from: &S, to: &S) {
    use crate::dump::{is_single_row, TABLES};
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
        if !is_single_row(table) {
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
    super::backup::fill_backups(from).await;
    from.replace_remote_device_list(&crate::RemoteDeviceList {
        user_id: remote.clone(),
        stream_id: 3,
        master_key: Some(r#"{"m":2}"#.into()),
        self_signing_key: None,
        devices: vec![crate::RemoteDevice {
            device_id: device("RDEV"),
            keys_json: r#"{"k":1}"#.into(),
            display_name: None,
        }],
        fetched_pos: StreamPos::ZERO,
    })
    .await
    .unwrap();
    let last = from.mark_device_list_changed(&remote).await.unwrap();
    from.next_device_list_stream_id(&alice, 9).await.unwrap();

    dump_copy(from, &to).await;
    let to = reopen(to).await;

    assert_eq!(to.current_stream_pos().await.unwrap(), last);
    super::backup::assert_backups_copied(from, &to).await;
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
        to.remote_device_lists(std::slice::from_ref(&remote))
            .await
            .unwrap(),
        from.remote_device_lists(std::slice::from_ref(&remote))
            .await
            .unwrap(),
        "the remote device cache is copied"
    );
    assert_eq!(
        to.device_list_stream_id(&alice).await.unwrap(),
        Some(9),
        "the chain of device-list updates goes on from where it was"
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
