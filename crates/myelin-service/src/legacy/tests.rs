//! The deprecated endpoints' own decisions: which rooms `/initialSync` lists, what `/events`
//! returns after a token and when it wakes, and that both read through the visibility check.

use std::time::Duration;

use serde_json::{json, Value};

use super::EventsRequest;
use crate::{test_support::harness, ServiceError};

fn bodies(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn initial_sync_lists_joined_and_invited_rooms_and_archived_on_request() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let joined = h.room(&alice, "public_chat").await;
    h.join(&bob, &joined).await.unwrap();
    for i in 0..3 {
        h.say(&alice, &joined, &format!("m{i}")).await.unwrap();
    }
    let invited = h.room(&alice, "private_chat").await;
    h.services
        .membership
        .invite(&alice.user_id, &invited, &bob.user_id, None)
        .await
        .unwrap();
    let left = h.room(&alice, "public_chat").await;
    h.join(&bob, &left).await.unwrap();
    h.services
        .membership
        .leave_room(&bob.user_id, &left, None)
        .await
        .unwrap();

    let legacy = &h.services.legacy;
    let body = legacy.initial_sync(&bob, Some(2), false).await.unwrap();
    let rooms = body["rooms"].as_array().unwrap();
    let find = |id: &ruma::RoomId| rooms.iter().find(|r| r["room_id"] == id.as_str());
    let room = find(&joined).expect("joined room listed");
    assert_eq!(room["membership"], "join");
    assert_eq!(bodies(&room["messages"]["chunk"]), ["m1", "m2"]);
    assert!(
        room["messages"]["start"].is_string(),
        "older messages remain"
    );
    assert!(room["state"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.create"));
    assert_eq!(room["visibility"], "private");
    let invite = find(&invited).expect("invite listed");
    assert_eq!(invite["membership"], "invite");
    assert_eq!(invite["invite"]["content"]["membership"], "invite");
    assert!(find(&left).is_none(), "left rooms need archived=true");
    assert!(body["end"].is_string());
    assert!(body["account_data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.push_rules"));

    let archived = legacy.initial_sync(&bob, None, true).await.unwrap();
    let left_room = archived["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == left.as_str())
        .expect("archived room listed")
        .clone();
    assert_eq!(left_room["membership"], "leave");
}

#[tokio::test]
async fn events_returns_what_came_after_the_token_and_moves_it_on() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    h.say(&alice, &room, "before").await.unwrap();
    let legacy = &h.services.legacy;
    let start = legacy.initial_sync(&bob, Some(1), false).await.unwrap()["end"]
        .as_str()
        .unwrap()
        .to_owned();
    h.say(&alice, &room, "after").await.unwrap();
    let req = EventsRequest {
        from: Some(start.clone()),
        ..Default::default()
    };
    let page = legacy.events(&bob, req).await.unwrap();
    assert_eq!(bodies(&page["chunk"]), ["after"]);
    assert_eq!(page["start"], json!(start));
    assert_eq!(page["chunk"][0]["room_id"], room.as_str());
    let next = EventsRequest {
        from: page["end"].as_str().map(str::to_owned),
        ..Default::default()
    };
    assert_eq!(
        bodies(&legacy.events(&bob, next).await.unwrap()["chunk"]),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn events_long_polls_until_a_message_arrives() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    let legacy = h.services.legacy.clone();
    let from = legacy.initial_sync(&bob, Some(0), false).await.unwrap()["end"]
        .as_str()
        .map(str::to_owned);
    let bob2 = bob.clone();
    let poll = tokio::spawn(async move {
        let req = EventsRequest {
            from,
            timeout_ms: 30_000,
            room_id: None,
        };
        legacy.events(&bob2, req).await
    });
    tokio::task::yield_now().await;
    // After the token: the poll finds it on its first read, or is woken by it.
    h.say(&alice, &room, "wake up").await.unwrap();
    let page = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("answered before its timeout")
        .unwrap()
        .unwrap();
    assert_eq!(bodies(&page["chunk"]), ["wake up"]);
}

#[tokio::test]
async fn peeking_works_in_world_readable_rooms_only() {
    let h = harness();
    let (alice, eve) = (h.user("alice").await, h.user("eve").await);
    let open = h.room(&alice, "public_chat").await;
    h.services
        .rooms
        .send_state(
            &alice,
            &open,
            "m.room.history_visibility",
            "",
            json!({ "history_visibility": "world_readable" }),
        )
        .await
        .unwrap();
    h.say(&alice, &open, "hello world").await.unwrap();
    let closed = h.room(&alice, "private_chat").await;
    h.say(&alice, &closed, "secret").await.unwrap();
    let legacy = &h.services.legacy;

    let peek = legacy.room_initial_sync(&eve, &open, None).await.unwrap();
    assert_eq!(bodies(&peek["messages"]["chunk"]), ["hello world"]);
    assert!(peek.get("membership").is_none());
    let refused = legacy.room_initial_sync(&eve, &closed, None).await;
    assert!(
        matches!(refused, Err(ServiceError::Forbidden(_))),
        "{refused:?}"
    );

    let token = peek["messages"]["end"].as_str().unwrap().to_owned();
    h.say(&alice, &open, "more").await.unwrap();
    let events = legacy
        .events(
            &eve,
            EventsRequest {
                from: Some(token.clone()),
                timeout_ms: 0,
                room_id: Some(open.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(bodies(&events["chunk"]), ["more"]);
    let refused = legacy
        .events(
            &eve,
            EventsRequest {
                from: Some(token),
                timeout_ms: 0,
                room_id: Some(closed.clone()),
            },
        )
        .await;
    assert!(
        matches!(refused, Err(ServiceError::Forbidden(_))),
        "{refused:?}"
    );

    let secret = h.say(&alice, &closed, "hidden").await.unwrap();
    let by_id = legacy.event(&eve, &secret).await;
    assert!(matches!(by_id, Err(ServiceError::NotFound(_))), "{by_id:?}");
    let visible = h.say(&alice, &open, "public").await.unwrap();
    assert_eq!(
        legacy.event(&eve, &visible).await.unwrap()["content"]["body"],
        "public"
    );
}
