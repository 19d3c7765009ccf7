//! Auth rules and redaction per room version, with JSON fixtures: one `check` helper per feature.

use std::{collections::HashMap, sync::Arc};

use myelin_core::Pdu;
use myelin_room::{
    auth_event_ids, build_pdu, check_auth, redact_pdu_json, rules_for, EventTemplate, PduContext,
    SigningKey,
};
use ruma::{
    events::StateEventType, signatures::Ed25519KeyPair, OwnedRoomId, OwnedUserId, RoomVersionId,
};
use serde_json::{json, Value};

fn key() -> SigningKey {
    let der = Ed25519KeyPair::generate();
    SigningKey {
        server_name: "localhost".try_into().unwrap(),
        key_pair: Ed25519KeyPair::from_der(&der, "a_test".into()).unwrap(),
    }
}

/// A room built event by event, keeping current state in memory.
struct Room {
    version: RoomVersionId,
    room_id: Option<OwnedRoomId>,
    state: HashMap<(String, String), Arc<Pdu>>,
    tip: Vec<ruma::OwnedEventId>,
    depth: u64,
    key: SigningKey,
}

impl Room {
    fn new(version: &str, creator: &str) -> Room {
        let version = RoomVersionId::try_from(version).unwrap();
        let mut room = Room {
            version,
            room_id: None,
            state: HashMap::new(),
            tip: vec![],
            depth: 0,
            key: key(),
        };
        let rules = rules_for(&room.version).unwrap();
        if !rules.authorization.room_create_event_id_as_room_id {
            room.room_id = Some("!room:localhost".try_into().unwrap());
        }
        let mut content = json!({ "room_version": room.version.as_str() });
        if !rules.authorization.use_room_create_sender {
            content["creator"] = json!(creator);
        }
        room.send(creator, "m.room.create", Some(""), content)
            .expect("create is allowed");
        room.send(
            creator,
            "m.room.member",
            Some(creator),
            json!({ "membership": "join" }),
        )
        .expect("creator joins");
        room
    }

    /// Builds and authorises an event; on success it becomes part of the room.
    fn send(
        &mut self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Result<Arc<Pdu>, String> {
        let rules = rules_for(&self.version).unwrap();
        let sender: OwnedUserId = sender.try_into().unwrap();
        let auth_events = auth_event_ids(&rules, kind, &sender, state_key, &content, |t, k| {
            self.state
                .get(&(t.to_string(), k.to_owned()))
                .map(|e| e.event_id.clone())
        })
        .map_err(|e| e.to_string())?;
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
        let pdu = Arc::new(build_pdu(template, ctx, &self.key).map_err(|e| e.to_string())?);
        let by_id: HashMap<_, _> = self
            .state
            .values()
            .map(|e| (e.event_id.clone(), e.clone()))
            .collect();
        check_auth(
            &rules,
            &pdu,
            |id| by_id.get(id).cloned(),
            |t: &StateEventType, k: &str| self.state.get(&(t.to_string(), k.to_owned())).cloned(),
        )
        .map_err(|e| e.to_string())?;
        if self.room_id.is_none() {
            self.room_id = Some(pdu.room_id.clone());
        }
        if let Some(k) = &pdu.state_key {
            self.state
                .insert((pdu.kind.to_string(), k.clone()), pdu.clone());
        }
        self.tip = vec![pdu.event_id.clone()];
        self.depth += 1;
        Ok(pdu)
    }
}

const VERSIONS: &[&str] = &["10", "11", "12"];

fn check_allowed(
    version: &str,
    setup: impl Fn(&mut Room),
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    expected: bool,
) {
    let mut room = Room::new(version, "@alice:localhost");
    setup(&mut room);
    let outcome = room.send(sender, kind, state_key, content);
    assert_eq!(
        outcome.is_ok(),
        expected,
        "v{version} {kind} by {sender}: {outcome:?}"
    );
}

#[test]
fn creator_may_set_state_and_strangers_may_not_send() {
    for v in VERSIONS {
        check_allowed(
            v,
            |_| {},
            "@alice:localhost",
            "m.room.name",
            Some(""),
            json!({ "name": "n" }),
            true,
        );
        check_allowed(
            v,
            |_| {},
            "@bob:localhost",
            "m.room.message",
            None,
            json!({ "body": "hi" }),
            false,
        );
    }
}

#[test]
fn joining_follows_the_join_rule() {
    let public = |r: &mut Room| {
        r.send(
            "@alice:localhost",
            "m.room.join_rules",
            Some(""),
            json!({ "join_rule": "public" }),
        )
        .unwrap();
    };
    for v in VERSIONS {
        check_allowed(
            v,
            public,
            "@bob:localhost",
            "m.room.member",
            Some("@bob:localhost"),
            json!({ "membership": "join" }),
            true,
        );
        check_allowed(
            v,
            |r| {
                r.send(
                    "@alice:localhost",
                    "m.room.join_rules",
                    Some(""),
                    json!({ "join_rule": "invite" }),
                )
                .unwrap();
            },
            "@bob:localhost",
            "m.room.member",
            Some("@bob:localhost"),
            json!({ "membership": "join" }),
            false,
        );
    }
}

#[test]
fn power_levels_gate_state_events() {
    let setup = |r: &mut Room| {
        r.send(
            "@alice:localhost",
            "m.room.join_rules",
            Some(""),
            json!({ "join_rule": "public" }),
        )
        .unwrap();
        let mut users = json!({});
        if !rules_for(&r.version)
            .unwrap()
            .authorization
            .explicitly_privilege_room_creators
        {
            users["@alice:localhost"] = json!(100);
        }
        r.send(
            "@alice:localhost",
            "m.room.power_levels",
            Some(""),
            json!({ "users": users, "state_default": 50, "events_default": 0 }),
        )
        .unwrap();
        r.send(
            "@bob:localhost",
            "m.room.member",
            Some("@bob:localhost"),
            json!({ "membership": "join" }),
        )
        .unwrap();
    };
    for v in VERSIONS {
        check_allowed(
            v,
            setup,
            "@bob:localhost",
            "m.room.topic",
            Some(""),
            json!({ "topic": "x" }),
            false,
        );
        check_allowed(
            v,
            setup,
            "@bob:localhost",
            "m.room.message",
            None,
            json!({ "body": "x" }),
            true,
        );
        check_allowed(
            v,
            setup,
            "@alice:localhost",
            "m.room.topic",
            Some(""),
            json!({ "topic": "x" }),
            true,
        );
    }
}

#[test]
fn event_ids_are_reference_hashes_and_v12_rooms_derive_their_id() {
    let room = Room::new("12", "@alice:localhost");
    let create = room
        .state
        .get(&("m.room.create".into(), "".into()))
        .unwrap();
    assert_eq!(
        create.room_id.as_str(),
        format!("!{}", &create.event_id.as_str()[1..])
    );
    assert!(!create.room_id_in_json);
    let room = Room::new("10", "@alice:localhost");
    let create = room
        .state
        .get(&("m.room.create".into(), "".into()))
        .unwrap();
    assert!(create.event_id.as_str().starts_with('$') && !create.event_id.as_str().contains(':'));
}

/// Redacting keeps what each version preserves.
fn check_redaction(version: &str, kind: &str, content: Value, kept: Value) {
    let mut room = Room::new(version, "@alice:localhost");
    let pdu = room
        .send("@alice:localhost", kind, Some(""), content)
        .unwrap();
    let redacted: Value = serde_json::from_str(
        redact_pdu_json(&pdu, &rules_for(&room.version).unwrap())
            .unwrap()
            .get(),
    )
    .unwrap();
    assert_eq!(redacted["content"], kept, "v{version} {kind}");
    assert!(redacted.get("signatures").is_some() && redacted.get("hashes").is_some());
}

#[test]
fn redaction_per_room_version() {
    for v in VERSIONS {
        check_redaction(v, "m.room.name", json!({ "name": "secret" }), json!({}));
        check_redaction(
            v,
            "m.room.join_rules",
            json!({ "join_rule": "public", "extra": 1 }),
            json!({ "join_rule": "public" }),
        );
        check_redaction(
            v,
            "m.room.history_visibility",
            json!({ "history_visibility": "shared", "x": 1 }),
            json!({ "history_visibility": "shared" }),
        );
    }
}

#[test]
fn oversized_events_are_refused() {
    let mut room = Room::new("10", "@alice:localhost");
    let err = room
        .send(
            "@alice:localhost",
            "m.room.message",
            None,
            json!({ "body": "x".repeat(70_000) }),
        )
        .unwrap_err();
    assert!(err.contains("too large"), "{err}");
}
