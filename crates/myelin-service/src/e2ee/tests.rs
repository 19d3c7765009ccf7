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
