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
