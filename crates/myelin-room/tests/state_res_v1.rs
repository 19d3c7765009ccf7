//! State resolution v1 (room version 1): forks of a v1 room built event by event, resolved
//! through `resolve_state`, which picks v1 by the room version's rules.

use std::{collections::HashMap, sync::Arc};

use myelin_core::Pdu;
use myelin_room::{
    auth_event_ids, build_pdu, check_auth, resolve_state, EventTemplate, PduContext, SigningKey,
};
use ruma::{
    events::StateEventType, room_version_rules::RoomVersionRules, signatures::Ed25519KeyPair,
    state_res::StateMap, OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId,
};
use serde_json::{json, Value};

const ALICE: &str = "@alice:localhost";
const BOB: &str = "@bob:localhost";

fn rules() -> RoomVersionRules {
    RoomVersionId::V1.rules().expect("v1 rules")
}

/// One branch of a v1 room: its state, tip and depth. Cloning it forks the room.
#[derive(Clone)]
struct Branch {
    room_id: OwnedRoomId,
    state: HashMap<(String, String), Arc<Pdu>>,
    tip: Vec<OwnedEventId>,
    depth: u64,
    key: Arc<SigningKey>,
}

impl Branch {
    fn new() -> Branch {
        let der = Ed25519KeyPair::generate();
        let key = SigningKey {
            server_name: "localhost".try_into().unwrap(),
            key_pair: Ed25519KeyPair::from_der(&der, "a_test".into()).unwrap(),
        };
        let mut room = Branch {
            room_id: "!v1:localhost".try_into().unwrap(),
            state: HashMap::new(),
            tip: vec![],
            depth: 0,
            key: Arc::new(key),
        };
        room.send(
            ALICE,
            "m.room.create",
            Some(""),
            json!({ "creator": ALICE, "room_version": "1" }),
        );
        room.send(
            ALICE,
            "m.room.member",
            Some(ALICE),
            json!({ "membership": "join" }),
        );
        room.send(
            ALICE,
            "m.room.power_levels",
            Some(""),
            json!({ "users": { ALICE: 100 }, "ban": 50, "kick": 50, "state_default": 50 }),
        );
        room.send(
            ALICE,
            "m.room.join_rules",
            Some(""),
            json!({ "join_rule": "public" }),
        );
        room
    }

    fn send(
        &mut self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Arc<Pdu> {
        let rules = rules();
        let sender: OwnedUserId = sender.try_into().unwrap();
        let auth_events = auth_event_ids(&rules, kind, &sender, state_key, &content, |t, k| {
            self.state
                .get(&(t.to_string(), k.to_owned()))
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
            room_id: Some(&self.room_id),
            sender: &sender,
            origin_server_ts: 1,
            prev_events: self.tip.clone(),
            auth_events,
            depth: self.depth + 1,
        };
        let pdu = Arc::new(build_pdu(template, ctx, &self.key).unwrap());
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
        .unwrap_or_else(|e| panic!("{kind} by {sender} refused: {e}"));
        if let Some(k) = &pdu.state_key {
            self.state
                .insert((pdu.kind.to_string(), k.clone()), pdu.clone());
        }
        self.tip = vec![pdu.event_id.clone()];
        self.depth += 1;
        pdu
    }

    fn state_map(&self) -> StateMap<OwnedEventId> {
        self.state
            .iter()
            .map(|((t, k), e)| ((t.as_str().into(), k.clone()), e.event_id.clone()))
            .collect()
    }
}

/// Resolves the branches' states, with every event of both at hand.
fn resolve(branches: &[&Branch]) -> StateMap<OwnedEventId> {
    let events: HashMap<OwnedEventId, Arc<Pdu>> = branches
        .iter()
        .flat_map(|b| b.state.values())
        .map(|e| (e.event_id.clone(), e.clone()))
        .collect();
    let sets: Vec<_> = branches.iter().map(|b| b.state_map()).collect();
    resolve_state(&rules(), &sets, |id| events.get(id).cloned()).expect("resolution")
}

fn get<'a>(state: &'a StateMap<OwnedEventId>, kind: &str, key: &str) -> Option<&'a OwnedEventId> {
    state.get(&(kind.into(), key.to_owned()))
}

#[test]
fn a_ban_on_one_fork_wins_over_the_join_it_follows() {
    let mut base = Branch::new();
    base.send(
        BOB,
        "m.room.member",
        Some(BOB),
        json!({ "membership": "join" }),
    );
    let (mut banned, mut chatty) = (base.clone(), base.clone());
    let ban = banned.send(
        ALICE,
        "m.room.member",
        Some(BOB),
        json!({ "membership": "ban" }),
    );
    chatty.send(
        ALICE,
        "m.room.topic",
        Some(""),
        json!({ "topic": "on the other fork" }),
    );

    for order in [[&banned, &chatty], [&chatty, &banned]] {
        let state = resolve(&order);
        assert_eq!(get(&state, "m.room.member", BOB), Some(&ban.event_id));
        // Keys only one fork changed are not in conflict and stay.
        let topic = chatty.state[&("m.room.topic".to_owned(), String::new())]
            .event_id
            .clone();
        assert_eq!(get(&state, "m.room.topic", ""), Some(&topic));
        assert_eq!(
            get(&state, "m.room.create", ""),
            Some(&base.state[&("m.room.create".to_owned(), String::new())].event_id)
        );
    }
}

#[test]
fn of_two_valid_events_the_deeper_one_wins() {
    let base = Branch::new();
    let (mut short, mut long) = (base.clone(), base.clone());
    short.send(ALICE, "m.room.topic", Some(""), json!({ "topic": "short" }));
    long.send(
        ALICE,
        "m.room.topic",
        Some(""),
        json!({ "topic": "long 1" }),
    );
    let deeper = long.send(
        ALICE,
        "m.room.topic",
        Some(""),
        json!({ "topic": "long 2" }),
    );
    assert_eq!(
        get(&resolve(&[&short, &long]), "m.room.topic", ""),
        Some(&deeper.event_id)
    );
    assert_eq!(
        get(&resolve(&[&long, &short]), "m.room.topic", ""),
        Some(&deeper.event_id)
    );
}

#[test]
fn a_power_change_that_the_other_fork_s_demotion_forbids_loses() {
    let mut base = Branch::new();
    base.send(
        BOB,
        "m.room.member",
        Some(BOB),
        json!({ "membership": "join" }),
    );
    base.send(
        ALICE,
        "m.room.power_levels",
        Some(""),
        json!({ "users": { ALICE: 100, BOB: 100 }, "ban": 50, "kick": 50, "state_default": 50 }),
    );
    let (mut by_alice, mut by_bob) = (base.clone(), base.clone());
    // Bob demotes himself on one fork; on the other he changes the rules while still at 100.
    let demotion = by_alice.send(
        BOB,
        "m.room.power_levels",
        Some(""),
        json!({ "users": { ALICE: 100, BOB: 0 }, "ban": 50, "kick": 50, "state_default": 50 }),
    );
    let stricter = by_bob.send(
        BOB,
        "m.room.power_levels",
        Some(""),
        json!({ "users": { ALICE: 100, BOB: 100 }, "ban": 100, "kick": 50, "state_default": 50 }),
    );
    let winners: Vec<_> = [[&by_alice, &by_bob], [&by_bob, &by_alice]]
        .iter()
        .map(|order| get(&resolve(order), "m.room.power_levels", "").cloned())
        .collect();
    // The same answer whichever order the forks come in, and one of the two events: the
    // lower-ordered one must hold unless the other passes with it in place.
    assert_eq!(winners[0], winners[1]);
    let winner = winners[0].clone().expect("power levels");
    assert!(winner == demotion.event_id || winner == stricter.event_id);
    // Equal depths: with bob demoted, his other change cannot pass; with the other change in
    // place, his demotion of himself still can. So the demotion wins either way.
    assert_eq!(winner, demotion.event_id);
}
