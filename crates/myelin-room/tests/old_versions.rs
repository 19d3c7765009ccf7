//! Events we build in rooms of versions 1 and 2 (which we only join) use those versions' format:
//! a server-chosen `event_id` in the event and `[id, {hashes}]` pairs for references, and they
//! pass the checks another server applies on receipt.

use std::collections::BTreeMap;

use myelin_room::{
    build_pdu, parse_received, received_event_id, rules_for_received, verify_received,
    EventTemplate, PduContext, SigningKey,
};
use ruma::serde::Base64;
use ruma::signatures::{Ed25519KeyPair, PublicKeyMap};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId};
use serde_json::{json, Value};

fn key() -> SigningKey {
    let der = Ed25519KeyPair::generate();
    SigningKey {
        server_name: "ours.test".try_into().unwrap(),
        key_pair: Ed25519KeyPair::from_der(&der, "a_test".into()).unwrap(),
    }
}

#[test]
fn events_in_v1_and_v2_rooms_use_the_old_format() {
    let key = key();
    let keys: PublicKeyMap = BTreeMap::from([(
        "ours.test".to_owned(),
        BTreeMap::from([(
            "ed25519:a_test".to_owned(),
            Base64::new(key.key_pair.public_key().to_vec()),
        )]),
    )]);
    let room_id: OwnedRoomId = "!old:remote.test".try_into().unwrap();
    let sender: OwnedUserId = "@bob:ours.test".try_into().unwrap();
    let prev: OwnedEventId = "$abc:remote.test".try_into().unwrap();
    let auth: OwnedEventId = "$create:remote.test".try_into().unwrap();
    for version in [RoomVersionId::V1, RoomVersionId::V2] {
        let rules = rules_for_received(&version).unwrap();
        let build = |body: &str| {
            build_pdu(
                EventTemplate {
                    kind: "m.room.message".into(),
                    state_key: None,
                    content: json!({ "msgtype": "m.text", "body": body }),
                    redacts: None,
                },
                PduContext {
                    rules: &rules,
                    room_id: Some(&room_id),
                    sender: &sender,
                    origin_server_ts: 1_700_000_000_000,
                    prev_events: vec![prev.clone()],
                    auth_events: vec![auth.clone()],
                    depth: 7,
                },
                &key,
            )
            .unwrap()
        };
        let pdu = build("hello old room");
        let json: Value = serde_json::from_str(pdu.json.get()).unwrap();

        assert_eq!(
            json["event_id"],
            pdu.event_id.as_str(),
            "{version}: the ID is in the event"
        );
        assert!(
            pdu.event_id.as_str().ends_with(":ours.test"),
            "{}",
            pdu.event_id
        );
        assert_eq!(
            json["prev_events"][0][0],
            prev.as_str(),
            "{version}: {json}"
        );
        assert!(json["prev_events"][0][1]["sha256"].is_string(), "{json}");
        assert_eq!(json["auth_events"][0][0], auth.as_str(), "{json}");
        assert_eq!(json["origin"], "ours.test");
        assert_eq!(
            pdu.prev_events,
            std::slice::from_ref(&prev),
            "the IDs parse back"
        );
        assert_eq!(pdu.auth_events, std::slice::from_ref(&auth));
        assert_ne!(
            build("another").event_id,
            pdu.event_id,
            "IDs are unique per event"
        );

        // What a receiving server checks: the ID, the signature and the content hash.
        let object = parse_received(&pdu.json).unwrap();
        assert_eq!(received_event_id(&object, &rules).unwrap(), pdu.event_id);
        let received = verify_received(object, &room_id, &rules, &keys).unwrap();
        assert!(!received.redacted, "{version}: the content hash matches");
        assert_eq!(received.pdu.event_id, pdu.event_id);
    }
}
