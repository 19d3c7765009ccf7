//! The e2ee subsystem's own decisions: one-time keys are handed out once, counts follow.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::{
    e2ee::{ClaimRequest, KeysUpload},
    test_support::harness,
};

fn one_time_keys(ids: &[&str]) -> Map<String, Value> {
    ids.iter()
        .map(|id| {
            (
                format!("signed_curve25519:{id}"),
                json!({ "key": format!("key-{id}") }),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_one_time_key_is_claimed_once_then_the_fallback_key() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let e2ee = &h.services.e2ee;
    let counts = e2ee
        .upload_keys(
            &alice,
            KeysUpload {
                one_time_keys: one_time_keys(&["A"]),
                fallback_keys: one_time_keys(&["F"]),
                ..KeysUpload::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(counts["signed_curve25519"], 1);

    let claim = || ClaimRequest {
        one_time_keys: BTreeMap::from([(
            alice.user_id.clone(),
            BTreeMap::from([(alice.device_id.clone(), "signed_curve25519".to_owned())]),
        )]),
        timeout: None,
    };
    let key_of = |answer: &Value| {
        answer["one_time_keys"][alice.user_id.as_str()][alice.device_id.as_str()]
            .as_object()
            .and_then(|keys| keys.values().next().cloned())
    };
    let first = e2ee.claim_keys(&bob, claim()).await.unwrap();
    assert_eq!(key_of(&first), Some(json!({ "key": "key-A" })));
    assert_eq!(
        e2ee.one_time_key_counts(&alice).await.unwrap()["signed_curve25519"],
        0
    );

    // With the one-time keys gone, the fallback key answers (and keeps answering).
    for _ in 0..2 {
        let next = e2ee.claim_keys(&bob, claim()).await.unwrap();
        assert_eq!(key_of(&next), Some(json!({ "key": "key-F" })));
    }
}

#[tokio::test]
async fn a_malformed_key_id_is_refused() {
    let h = harness();
    let alice = h.user("alice").await;
    let mut keys = Map::new();
    keys.insert("no-algorithm".to_owned(), json!({ "key": "k" }));
    let upload = h
        .services
        .e2ee
        .upload_keys(
            &alice,
            KeysUpload {
                one_time_keys: keys,
                ..KeysUpload::default()
            },
        )
        .await;
    assert!(upload.is_err());
}

#[tokio::test]
async fn a_user_s_own_new_device_is_news_to_their_other_devices() {
    let h = harness();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    let second = h
        .services
        .accounts
        .start_session(&alice.user_id, Some("SECOND"), None, false)
        .await
        .unwrap();
    let second = crate::accounts::Authed {
        user_id: second.user_id,
        device_id: second.device_id,
        is_guest: false,
        suspended: false,
        appservice: None,
    };
    let storage = &h.services.ctx.storage;
    let since = storage.current_stream_pos().await.unwrap();
    let keys = json!({
        "user_id": alice.user_id, "device_id": "SECOND",
        "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": { "curve25519:SECOND": "key", "ed25519:SECOND": "key" },
        "signatures": {},
    });
    h.services
        .e2ee
        .upload_keys(
            &second,
            KeysUpload {
                device_keys: keys.as_object().cloned(),
                ..KeysUpload::default()
            },
        )
        .await
        .unwrap();
    let now = storage.current_stream_pos().await.unwrap();
    let e2ee = &h.services.e2ee;
    let for_alice = e2ee
        .device_list_changes(&alice.user_id, since, now)
        .await
        .unwrap();
    assert!(
        for_alice.changed.contains(&alice.user_id),
        "{:?}",
        for_alice.changed
    );
    let for_bob = e2ee
        .device_list_changes(&bob.user_id, since, now)
        .await
        .unwrap();
    assert!(
        for_bob.changed.contains(&alice.user_id),
        "{:?}",
        for_bob.changed
    );
    assert!(
        !for_bob.changed.contains(&bob.user_id),
        "{:?}",
        for_bob.changed
    );
}

/// Uploads identity keys for `who`'s device, with `key` as both keys.
async fn upload_identity_keys(
    h: &crate::test_support::Harness,
    who: &crate::accounts::Authed,
    key: &str,
) {
    let device = who.device_id.as_str();
    let keys = json!({
        "user_id": who.user_id, "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": { format!("curve25519:{device}"): key, format!("ed25519:{device}"): key },
        "signatures": {},
    });
    h.services
        .e2ee
        .upload_keys(
            who,
            KeysUpload {
                device_keys: keys.as_object().cloned(),
                ..KeysUpload::default()
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn user_devices_answers_the_id_of_the_latest_device_list_update() {
    let h = harness();
    let alice = h.user("alice").await;
    let storage = &h.services.ctx.storage;
    let e2ee = &h.services.e2ee;
    // No update yet: the current stream position, which the first update will be past.
    let answer = e2ee.federation_user_devices(&alice.user_id).await.unwrap();
    let now = storage.current_stream_pos().await.unwrap().0;
    assert_eq!(answer["stream_id"], now, "{answer}");
    assert_eq!(
        storage.device_list_stream_id(&alice.user_id).await.unwrap(),
        None
    );

    upload_identity_keys(&h, &alice, "first").await;
    let first = storage.device_list_stream_id(&alice.user_id).await.unwrap();
    let first = first.expect("the upload is an update of the chain");
    assert!(first > now, "{first} > {now}");
    let answer = e2ee.federation_user_devices(&alice.user_id).await.unwrap();
    assert_eq!(answer["stream_id"], first, "{answer}");
    assert_eq!(
        answer["devices"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );

    // The same keys again are no update; new ones are the next link.
    upload_identity_keys(&h, &alice, "first").await;
    assert_eq!(
        storage.device_list_stream_id(&alice.user_id).await.unwrap(),
        Some(first)
    );
    upload_identity_keys(&h, &alice, "second").await;
    let second = storage.device_list_stream_id(&alice.user_id).await.unwrap();
    let second = second.expect("a second update");
    assert!(second > first, "{second} > {first}");
    let answer = e2ee.federation_user_devices(&alice.user_id).await.unwrap();
    assert_eq!(answer["stream_id"], second, "{answer}");
}

mod remote_cache {
    use myelin_core::StreamPos;
    use myelin_storage::{RemoteDevice, RemoteDeviceChange, RemoteDeviceList};
    use ruma::{server_name, user_id};
    use serde_json::json;

    use crate::e2ee::remote_cache::{
        device_change, parse_user_devices, prev_ids, update_step, UpdateStep, MAX_REMOTE_DEVICES,
    };
    use crate::test_support::harness;

    #[test]
    fn an_update_applies_only_when_it_follows_on() {
        // Nothing cached: the change is only noted.
        assert_eq!(update_step(None, 5, &[4]), UpdateStep::NotCached);
        // No prev_id, or only the stream ID we hold: apply.
        assert_eq!(update_step(Some(4), 5, &[]), UpdateStep::Apply);
        assert_eq!(update_step(Some(4), 5, &[4]), UpdateStep::Apply);
        assert_eq!(update_step(Some(4), 6, &[4, 4]), UpdateStep::Apply);
        // A prev_id we never saw is a gap.
        assert_eq!(update_step(Some(4), 9, &[8]), UpdateStep::Resync);
        assert_eq!(update_step(Some(4), 9, &[4, 7]), UpdateStep::Resync);
        // Old news (a retried transaction, an update the fetched list already had).
        assert_eq!(update_step(Some(9), 9, &[8]), UpdateStep::AlreadySeen);
        assert_eq!(update_step(Some(9), 3, &[]), UpdateStep::AlreadySeen);
    }

    #[test]
    fn malformed_prev_ids_count_as_a_gap() {
        assert_eq!(prev_ids(&json!({})), Vec::<i64>::new());
        assert_eq!(prev_ids(&json!({ "prev_id": [3, 4] })), vec![3, 4]);
        assert_eq!(prev_ids(&json!({ "prev_id": ["x"] })), vec![-1]);
        assert_eq!(prev_ids(&json!({ "prev_id": 3 })), vec![-1]);
    }

    #[test]
    fn device_keys_must_be_the_device_s_own() {
        let bob = user_id!("@bob:remote.example");
        let keys = json!({ "user_id": bob, "device_id": "D1", "keys": {} });
        let update = json!({ "device_id": "D1", "keys": keys, "device_display_name": "phone" });
        assert!(matches!(
            device_change(bob, &update),
            Some(RemoteDeviceChange::Upsert(RemoteDevice { display_name: Some(n), .. })) if n == "phone"
        ));
        let deleted = json!({ "device_id": "D1", "keys": keys, "deleted": true });
        assert!(matches!(
            device_change(bob, &deleted),
            Some(RemoteDeviceChange::Delete(_))
        ));
        let other = json!({ "device_id": "D2", "keys": keys });
        assert!(matches!(
            device_change(bob, &other),
            Some(RemoteDeviceChange::Delete(_))
        ));
        let huge = json!({ "device_id": "D1", "keys": {
            "user_id": bob, "device_id": "D1", "pad": "x".repeat(20_000) } });
        assert!(matches!(
            device_change(bob, &huge),
            Some(RemoteDeviceChange::Delete(_))
        ));
        assert_eq!(device_change(bob, &json!({ "device_id": 3 })), None);
    }

    #[test]
    fn a_fetched_list_is_checked_and_bounded() {
        let bob = user_id!("@bob:remote.example");
        let device =
            |id: &str| json!({ "device_id": id, "keys": { "user_id": bob, "device_id": id } });
        let master = json!({ "user_id": bob, "usage": ["master"] });
        let body = json!({
            "user_id": bob, "stream_id": 12, "devices": [device("B"), device("A")],
            "master_key": master, "self_signing_key": { "user_id": "@eve:remote.example" },
        });
        let list = parse_user_devices(bob, &body).unwrap();
        assert_eq!(list.stream_id, 12);
        let ids: Vec<_> = list.devices.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(ids, ["A", "B"]);
        assert!(list.master_key.is_some());
        assert_eq!(
            list.self_signing_key, None,
            "a key of another user is dropped"
        );

        let other = json!({ "user_id": "@eve:remote.example", "stream_id": 1, "devices": [] });
        assert!(parse_user_devices(bob, &other).is_err());
        let no_stream = json!({ "user_id": bob, "devices": [] });
        assert!(parse_user_devices(bob, &no_stream).is_err());
        let many: Vec<_> = (0..=MAX_REMOTE_DEVICES)
            .map(|i| device(&format!("D{i}")))
            .collect();
        let too_many = json!({ "user_id": bob, "stream_id": 1, "devices": many });
        assert!(parse_user_devices(bob, &too_many).is_err(), "not cached");
    }

    fn cached_list(stream_id: i64) -> RemoteDeviceList {
        let bob = user_id!("@bob:remote.example");
        RemoteDeviceList {
            user_id: bob.to_owned(),
            stream_id,
            master_key: None,
            self_signing_key: None,
            devices: vec![RemoteDevice {
                device_id: "D1".into(),
                keys_json: json!({ "user_id": bob, "device_id": "D1" }).to_string(),
                display_name: None,
            }],
            fetched_pos: StreamPos::ZERO,
        }
    }

    #[tokio::test]
    async fn updates_patch_the_cache_and_a_gap_drops_it() {
        let h = harness();
        let (e2ee, storage) = (&h.services.e2ee, &h.services.ctx.storage);
        let bob = user_id!("@bob:remote.example");
        let origin = server_name!("remote.example");
        storage
            .replace_remote_device_list(&cached_list(4))
            .await
            .unwrap();
        let devices = || async {
            let lists = storage
                .remote_device_lists(&[bob.to_owned()])
                .await
                .unwrap();
            lists.first().map(|l| {
                let ids = l.devices.iter().map(|d| d.device_id.to_string()).collect();
                (l.stream_id, ids)
            })
        };

        // Another server cannot speak for bob.
        let update = json!({
            "user_id": bob, "device_id": "D2", "stream_id": 5, "prev_id": [4],
            "keys": { "user_id": bob, "device_id": "D2" },
        });
        let refused = e2ee
            .receive_device_list_update(server_name!("evil.example"), &update)
            .await;
        assert!(refused.is_err());
        assert_eq!(devices().await, Some((4, vec!["D1".to_owned()])));

        e2ee.receive_device_list_update(origin, &update)
            .await
            .unwrap();
        assert_eq!(devices().await, Some((5, vec!["D1".into(), "D2".into()])));
        let delete = json!({
            "user_id": bob, "device_id": "D1", "stream_id": 6, "prev_id": [5], "deleted": true,
        });
        e2ee.receive_device_list_update(origin, &delete)
            .await
            .unwrap();
        assert_eq!(devices().await, Some((6, vec!["D2".to_owned()])));

        // A gap: the list is no longer trusted (and is fetched again in the background).
        let gap = json!({
            "user_id": bob, "device_id": "D3", "stream_id": 9, "prev_id": [8],
            "keys": { "user_id": bob, "device_id": "D3" },
        });
        let before = storage.current_stream_pos().await.unwrap();
        e2ee.receive_device_list_update(origin, &gap).await.unwrap();
        assert_eq!(devices().await, None);
        let after = storage.current_stream_pos().await.unwrap();
        let changed = storage.device_list_changes(before, after).await.unwrap();
        assert_eq!(changed, vec![bob.to_owned()], "clients refetch bob's keys");
    }

    #[tokio::test]
    async fn signing_key_updates_replace_cached_keys() {
        let h = harness();
        let (e2ee, storage) = (&h.services.e2ee, &h.services.ctx.storage);
        let bob = user_id!("@bob:remote.example");
        storage
            .replace_remote_device_list(&cached_list(4))
            .await
            .unwrap();
        let master = json!({ "user_id": bob, "usage": ["master"], "keys": { "ed25519:M": "M" } });
        let stranger = json!({ "user_id": "@eve:remote.example", "usage": ["self_signing"] });
        let update = json!({ "user_id": bob, "master_key": master, "self_signing_key": stranger });
        e2ee.receive_signing_key_update(server_name!("remote.example"), &update)
            .await
            .unwrap();
        let list = storage
            .remote_device_lists(&[bob.to_owned()])
            .await
            .unwrap();
        let stored: serde_json::Value =
            serde_json::from_str(list[0].master_key.as_deref().unwrap()).unwrap();
        assert_eq!(stored, master);
        assert_eq!(
            list[0].self_signing_key, None,
            "a key of another user is ignored"
        );
    }
}
