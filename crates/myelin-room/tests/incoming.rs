//! The checks on receipt of a federated PDU: signatures, content hashes, and auth against the
//! auth events, the state before the event and the current state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use myelin_core::Pdu;
use myelin_room::{
    auth_event_ids, build_pdu, check_received_auth, parse_received, rules_for, rules_for_received,
    signing_servers, verify_received, AuthVerdict, EventTemplate, PduContext, PduStateMap,
    RoomError, SigningKey,
};
use ruma::events::StateEventType;
use ruma::serde::Base64;
use ruma::signatures::{Ed25519KeyPair, PublicKeyMap};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId};
use serde_json::{json, Value};

fn key(server: &str) -> SigningKey {
    let der = Ed25519KeyPair::generate();
    SigningKey {
        server_name: server.try_into().unwrap(),
        key_pair: Ed25519KeyPair::from_der(&der, "a_test".into()).unwrap(),
    }
}

fn key_map(keys: &[&SigningKey]) -> PublicKeyMap {
    keys.iter()
        .map(|k| {
            let set = BTreeMap::from([(
                "ed25519:a_test".to_owned(),
                Base64::new(k.key_pair.public_key().to_vec()),
            )]);
            (k.server_name.to_string(), set)
        })
        .collect()
}

/// A room on a remote server ("remote.test"), built event by event.
struct Room {
    version: RoomVersionId,
    room_id: Option<OwnedRoomId>,
    state: PduStateMap,
    events: HashMap<OwnedEventId, Arc<Pdu>>,
    tip: Vec<OwnedEventId>,
    depth: u64,
    key: SigningKey,
}

impl Room {
    fn new(version: &str) -> Room {
        let version = RoomVersionId::try_from(version).unwrap();
        let rules = rules_for(&version).unwrap();
        let room_id = (!rules.authorization.room_create_event_id_as_room_id)
            .then(|| "!room:remote.test".try_into().unwrap());
        let mut room = Room {
            version,
            room_id,
            state: HashMap::new(),
            events: HashMap::new(),
            tip: vec![],
            depth: 0,
            key: key("remote.test"),
        };
        let mut content = json!({ "room_version": room.version.as_str() });
        if !rules.authorization.use_room_create_sender {
            content["creator"] = json!("@alice:remote.test");
        }
        room.add("@alice:remote.test", "m.room.create", Some(""), content);
        room.add(
            "@alice:remote.test",
            "m.room.member",
            Some("@alice:remote.test"),
            json!({ "membership": "join" }),
        );
        let users = room.users(&[]);
        room.add(
            "@alice:remote.test",
            "m.room.power_levels",
            Some(""),
            json!({ "users": users }),
        );
        room.add(
            "@alice:remote.test",
            "m.room.join_rules",
            Some(""),
            json!({ "join_rule": "public" }),
        );
        room
    }

    /// Builds an event on the current state and tip (not applied).
    fn build(&self, sender: &str, kind: &str, state_key: Option<&str>, content: Value) -> Pdu {
        let rules = rules_for(&self.version).unwrap();
        let sender: OwnedUserId = sender.try_into().unwrap();
        let auth_events = auth_event_ids(&rules, kind, &sender, state_key, &content, |t, k| {
            self.state
                .get(&(t.clone(), k.to_owned()))
                .map(|e| e.event_id.clone())
        })
        .unwrap();
        let template = EventTemplate {
            kind: kind.into(),
            state_key: state_key.map(Into::into),
            content,
            redacts: None,
        };
        let ctx = PduContext {
            rules: &rules,
            room_id: self.room_id.as_ref(),
            sender: &sender,
            origin_server_ts: 1,
            prev_events: self.tip.clone(),
            auth_events,
            depth: self.depth + 1,
        };
        build_pdu(template, ctx, &self.key).unwrap()
    }

    fn apply(&mut self, pdu: Pdu) -> Arc<Pdu> {
        let pdu = Arc::new(pdu);
        self.room_id.get_or_insert_with(|| pdu.room_id.clone());
        if let Some(k) = &pdu.state_key {
            self.state.insert(
                (StateEventType::from(pdu.kind.to_string()), k.clone()),
                pdu.clone(),
            );
        }
        self.events.insert(pdu.event_id.clone(), pdu.clone());
        self.tip = vec![pdu.event_id.clone()];
        self.depth += 1;
        pdu
    }

    fn add(
        &mut self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Arc<Pdu> {
        let pdu = self.build(sender, kind, state_key, content);
        self.apply(pdu)
    }

    /// A power levels `users` map: Alice at 100 (unless she is a v12 creator, who may not be
    /// listed) plus `others`.
    fn users(&self, others: &[(&str, i64)]) -> Value {
        let mut users = serde_json::Map::new();
        if !rules_for(&self.version)
            .unwrap()
            .authorization
            .explicitly_privilege_room_creators
        {
            users.insert("@alice:remote.test".into(), json!(100));
        }
        for (user, level) in others {
            users.insert((*user).into(), json!(level));
        }
        Value::Object(users)
    }

    fn room_id(&self) -> OwnedRoomId {
        self.room_id.clone().unwrap()
    }

    fn verdict(&self, pdu: &Pdu, state_before: &PduStateMap) -> AuthVerdict {
        let rules = rules_for(&self.version).unwrap();
        check_received_auth(&rules, pdu, &self.events, state_before, &self.state)
    }
}

fn json_object(pdu: &Pdu) -> serde_json::Map<String, Value> {
    serde_json::from_str(pdu.json.get()).unwrap()
}

fn reparse(object: &serde_json::Map<String, Value>) -> ruma::CanonicalJsonObject {
    parse_received(&serde_json::value::to_raw_value(object).unwrap()).unwrap()
}

#[test]
fn signatures_and_hashes_are_checked() {
    for version in ["10", "11", "12"] {
        let room = Room::new(version);
        let rules = rules_for_received(&room.version).unwrap();
        let pdu = room.build(
            "@alice:remote.test",
            "m.room.message",
            None,
            json!({ "body": "hello", "msgtype": "m.text" }),
        );
        let keys = key_map(&[&room.key]);

        let object = reparse(&json_object(&pdu));
        let servers = signing_servers(&object, &rules).unwrap();
        assert!(
            servers.iter().any(|s| s.as_str() == "remote.test"),
            "{version}: {servers:?}"
        );
        let ok = verify_received(object, &room.room_id(), &rules, &keys).unwrap();
        assert_eq!(
            (ok.redacted, &ok.pdu.event_id),
            (false, &pdu.event_id),
            "{version}: intact event"
        );

        // Changed content: the signature (over the redacted form) holds, the hash does not.
        let mut tampered = json_object(&pdu);
        tampered["content"]["body"] = json!("evil");
        let redacted = verify_received(reparse(&tampered), &room.room_id(), &rules, &keys).unwrap();
        assert!(redacted.redacted, "{version}: hash mismatch is redacted");
        assert_eq!(redacted.pdu.content.get(), "{}", "{version}");

        // A changed signed field, a wrong key, a missing signature, the wrong room: refused.
        let mut forged = json_object(&pdu);
        forged["origin_server_ts"] = json!(2);
        assert!(
            matches!(
                verify_received(reparse(&forged), &room.room_id(), &rules, &keys),
                Err(RoomError::BadSignature(_))
            ),
            "{version}"
        );
        let stranger = key("remote.test");
        assert!(matches!(
            verify_received(
                reparse(&json_object(&pdu)),
                &room.room_id(),
                &rules,
                &key_map(&[&stranger])
            ),
            Err(RoomError::BadSignature(_))
        ));
        let mut unsigned = json_object(&pdu);
        unsigned.remove("signatures");
        assert!(verify_received(reparse(&unsigned), &room.room_id(), &rules, &keys).is_err());
        let other_room: OwnedRoomId = "!other:remote.test".try_into().unwrap();
        assert!(matches!(
            verify_received(reparse(&json_object(&pdu)), &other_room, &rules, &keys),
            Err(RoomError::InvalidEvent(_))
        ));
    }
}

#[test]
fn oversized_and_malformed_pdus_are_refused() {
    let room = Room::new("11");
    let rules = rules_for_received(&room.version).unwrap();
    let keys = key_map(&[&room.key]);
    let mut big = json_object(&room.build(
        "@alice:remote.test",
        "m.room.message",
        None,
        json!({ "body": "x" }),
    ));
    big["content"]["body"] = json!("x".repeat(70_000));
    assert!(matches!(
        verify_received(reparse(&big), &room.room_id(), &rules, &keys),
        Err(RoomError::InvalidEvent(_))
    ));
    let mut no_sender = json_object(&room.build(
        "@alice:remote.test",
        "m.room.message",
        None,
        json!({ "body": "x" }),
    ));
    no_sender.remove("sender");
    assert!(verify_received(reparse(&no_sender), &room.room_id(), &rules, &keys).is_err());
    assert!(parse_received(&serde_json::value::to_raw_value(&json!([1, 2])).unwrap()).is_err());
    assert!(matches!(
        rules_for_received(&"999".try_into().unwrap()),
        Err(RoomError::UnsupportedVersion(_))
    ));
}

#[test]
fn auth_verdicts_follow_the_three_checks() {
    for version in ["10", "11", "12"] {
        let mut room = Room::new(version);
        // Bob joins the public room: accepted everywhere.
        let join = room.build(
            "@bob:other.test",
            "m.room.member",
            Some("@bob:other.test"),
            json!({ "membership": "join" }),
        );
        let before = room.state.clone();
        assert_eq!(
            room.verdict(&join, &before),
            AuthVerdict::Accepted,
            "{version}"
        );
        room.apply(join);
        let state_with_bob = room.state.clone();

        // A message from a user who never joined: rejected by its own auth events.
        let stranger = room.build(
            "@mallory:other.test",
            "m.room.message",
            None,
            json!({ "body": "hi" }),
        );
        assert!(
            matches!(
                room.verdict(&stranger, &state_with_bob),
                AuthVerdict::Rejected(_)
            ),
            "{version}"
        );

        // Bob's message, then Alice bans Bob: the message is fine against the state before it
        // but not against the current state, so it is soft-failed.
        let late = room.build(
            "@bob:other.test",
            "m.room.message",
            None,
            json!({ "body": "still here" }),
        );
        room.add(
            "@alice:remote.test",
            "m.room.member",
            Some("@bob:other.test"),
            json!({ "membership": "ban" }),
        );
        assert!(
            matches!(
                room.verdict(&late, &state_with_bob),
                AuthVerdict::SoftFailed(_)
            ),
            "{version}"
        );

        // An event citing an auth event we don't have is rejected.
        let mut unknown = room.build(
            "@alice:remote.test",
            "m.room.message",
            None,
            json!({ "body": "x" }),
        );
        unknown.auth_events.push("$unknown".try_into().unwrap());
        assert!(
            matches!(
                room.verdict(&unknown, &room.state.clone()),
                AuthVerdict::Rejected(_)
            ),
            "{version}"
        );
    }
}

/// The state after each fork, as event IDs, for resolution.
fn ids(state: &PduStateMap) -> ruma::state_res::StateMap<OwnedEventId> {
    state
        .iter()
        .map(|(k, e)| (k.clone(), e.event_id.clone()))
        .collect()
}

#[test]
fn state_resolution_prefers_power_over_a_concurrent_change() {
    for version in ["10", "11", "12"] {
        let mut room = Room::new(version);
        room.add(
            "@bob:other.test",
            "m.room.member",
            Some("@bob:other.test"),
            json!({ "membership": "join" }),
        );
        let users = room.users(&[("@bob:other.test", 50)]);
        room.add(
            "@alice:remote.test",
            "m.room.power_levels",
            Some(""),
            json!({ "users": users }),
        );
        let topic = room.add(
            "@alice:remote.test",
            "m.room.topic",
            Some(""),
            json!({ "topic": "original" }),
        );
        let fork_state = room.state.clone();
        let fork_tip = room.tip.clone();

        // Fork A: Alice demotes Bob. Fork B, concurrently: Bob changes the topic.
        let demote = room.apply(room.build(
            "@alice:remote.test",
            "m.room.power_levels",
            Some(""),
            json!({ "users": room.users(&[]) }),
        ));
        let state_a = room.state.clone();
        room.state = fork_state.clone();
        room.tip = fork_tip;
        let bobs_topic = room.apply(room.build(
            "@bob:other.test",
            "m.room.topic",
            Some(""),
            json!({ "topic": "bob was here" }),
        ));
        let state_b = room.state.clone();

        let rules = rules_for_received(&room.version).unwrap();
        let events = room.events.clone();
        let resolved = myelin_room::resolve_state(&rules, &[ids(&state_a), ids(&state_b)], |id| {
            events.get(id).cloned()
        })
        .unwrap();
        let pl_key = (StateEventType::RoomPowerLevels, String::new());
        let topic_key = (StateEventType::RoomTopic, String::new());
        assert_eq!(
            resolved[&pl_key], demote.event_id,
            "{version}: the demotion wins"
        );
        assert_eq!(
            resolved[&topic_key], topic.event_id,
            "{version}: Bob's topic fails against the resolved power levels"
        );
        assert_ne!(resolved[&topic_key], bobs_topic.event_id);
        // Unconflicted state passes through.
        assert_eq!(resolved.len(), fork_state.len());
    }
}

#[test]
fn auth_chains_and_subgraphs_are_bounded_walks() {
    let room = Room::new("12");
    let events = room.events.clone();
    let fetch = |id: &ruma::EventId| events.get(id).cloned();
    let pl = room.state[&(StateEventType::RoomPowerLevels, String::new())].clone();
    let chain = myelin_room::auth_chain([pl.event_id.clone()], fetch).unwrap();
    let member = room.state[&(StateEventType::RoomMember, "@alice:remote.test".into())]
        .event_id
        .clone();
    assert!(chain.contains(&member), "{chain:?}");
    assert!(!chain.contains(&pl.event_id));
    // Between the member event and the power levels (which cites it) lies nothing else.
    let conflicted = [member.clone(), pl.event_id.clone()].into_iter().collect();
    let subgraph = myelin_room::conflicted_subgraph(&conflicted, fetch).unwrap();
    assert_eq!(subgraph, conflicted);
}
