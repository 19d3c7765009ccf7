//! The outbox's own decisions: which servers a room's events and EDUs go to.

use std::sync::Arc;

use myelin_core::{Pdu, StreamPos};
use ruma::OwnedEventId;
use serde_json::json;

use crate::{rooms::RoomState, test_support::harness_with, FederationConfig};

fn pdu(
    n: u32,
    kind: &str,
    sender: &str,
    state_key: Option<&str>,
    content: serde_json::Value,
) -> Arc<Pdu> {
    let mut event = json!({
        "room_id": "!room:test.local",
        "type": kind,
        "sender": sender,
        "content": content,
        "origin_server_ts": 1,
        "depth": n,
        "prev_events": [],
        "auth_events": [],
    });
    if let Some(key) = state_key {
        event["state_key"] = json!(key);
    }
    let id = OwnedEventId::try_from(format!("$e{n}")).unwrap();
    let raw = serde_json::value::to_raw_value(&event).unwrap();
    Arc::new(Pdu::from_json(id, raw).unwrap())
}

fn member(n: u32, user: &str, membership: &str) -> Arc<Pdu> {
    pdu(
        n,
        "m.room.member",
        user,
        Some(user),
        json!({ "membership": membership }),
    )
}

/// A room of ours with members on two other servers (one blocked) and one who left.
fn room() -> RoomState {
    let create = pdu(
        1,
        "m.room.create",
        "@alice:test.local",
        Some(""),
        json!({ "room_version": "10" }),
    );
    let mut state =
        RoomState::new_room(create.clone())
            .unwrap()
            .with_event(create, StreamPos(1), 1);
    for (n, (user, membership)) in [
        ("@alice:test.local", "join"),
        ("@bob:one.example", "join"),
        ("@bea:one.example", "join"),
        ("@carol:two.example", "leave"),
        ("@mallory:blocked.example", "join"),
    ]
    .into_iter()
    .enumerate()
    {
        let n = n as u32 + 2;
        state = state.with_event(member(n, user, membership), StreamPos(n.into()), n.into());
    }
    state
}

fn federating() -> FederationConfig {
    FederationConfig {
        enabled: true,
        blocked_servers: vec!["blocked.example".to_owned()],
        ..FederationConfig::default()
    }
}

#[tokio::test]
async fn events_go_to_each_other_joined_server_once_blocked_ones_left_out() {
    let h = harness_with(federating());
    let message = pdu(
        20,
        "m.room.message",
        "@alice:test.local",
        None,
        json!({ "body": "hi" }),
    );
    let destinations = h.services.outbox.destinations_of(&room(), &message);
    assert_eq!(destinations, ["one.example"]);
}

#[tokio::test]
async fn a_member_event_also_reaches_its_target_s_server() {
    let h = harness_with(federating());
    let invite = member(20, "@carol:two.example", "invite");
    let mut destinations = h.services.outbox.destinations_of(&room(), &invite);
    destinations.sort();
    assert_eq!(destinations, ["one.example", "two.example"]);
    let to_blocked = member(21, "@eve:blocked.example", "ban");
    assert_eq!(
        h.services.outbox.destinations_of(&room(), &to_blocked),
        ["one.example"]
    );
}

#[tokio::test]
async fn nothing_goes_out_with_federation_off() {
    let h = harness_with(FederationConfig {
        enabled: false,
        ..federating()
    });
    let message = pdu(
        20,
        "m.room.message",
        "@alice:test.local",
        None,
        json!({ "body": "hi" }),
    );
    assert!(h
        .services
        .outbox
        .destinations_of(&room(), &message)
        .is_empty());
}
