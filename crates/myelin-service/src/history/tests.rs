//! The history subsystem's own decisions: what `/messages` and `/event` show a reader.

use myelin_storage::Direction;
use serde_json::json;

use crate::{filter::RoomEventFilter, test_support::harness, ServiceError};

#[tokio::test]
async fn joined_visibility_hides_what_was_said_before_the_reader_joined() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.services
        .rooms
        .send_state(
            &alice,
            &room,
            "m.room.history_visibility",
            "",
            json!({ "history_visibility": "joined" }),
        )
        .await
        .unwrap();
    let before = h.say(&alice, &room, "before bob").await.unwrap();
    h.join(&bob, &room).await.unwrap();
    h.say(&alice, &room, "after bob").await.unwrap();

    let history = &h.services.history;
    let page = history
        .messages(
            &bob.user_id,
            &bob.device_id,
            &room,
            None,
            None,
            Direction::Backward,
            50,
            &RoomEventFilter::default(),
        )
        .await
        .unwrap();
    let bodies: Vec<&str> = page
        .chunk
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["after bob"]);

    let hidden = history
        .get_room_event(&bob.user_id, &bob.device_id, &room, &before)
        .await;
    assert!(
        matches!(hidden, Err(ServiceError::NotFound(_))),
        "{hidden:?}"
    );
    let seen = history
        .get_room_event(&alice.user_id, &alice.device_id, &room, &before)
        .await
        .unwrap();
    assert_eq!(seen["content"]["body"], "before bob");
}

#[tokio::test]
async fn a_stranger_reads_nothing_of_a_private_room() {
    let h = harness();
    let (alice, eve) = (h.user("alice").await, h.user("eve").await);
    let room = h.room(&alice, "private_chat").await;
    h.say(&alice, &room, "hello").await.unwrap();
    let page = h
        .services
        .history
        .messages(
            &eve.user_id,
            &eve.device_id,
            &room,
            None,
            None,
            Direction::Backward,
            10,
            &RoomEventFilter::default(),
        )
        .await;
    assert!(
        matches!(page, Err(ServiceError::Forbidden(_))),
        "{}",
        page.is_ok()
    );
}
