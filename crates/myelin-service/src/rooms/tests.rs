//! The rooms subsystem's own decisions: who may append what, transaction IDs, the cached
//! membership of the in-memory state, redactions reaching the current state, the directory a
//! `/publicRooms` lists.

use serde_json::json;

use crate::{
    rooms::Membership,
    test_support::{harness, text},
    ServiceError,
};

#[tokio::test]
async fn only_members_send_and_a_retried_transaction_is_one_event() {
    let h = harness();
    let (alice, eve) = (h.user("alice").await, h.user("eve").await);
    let room = h.room(&alice, "public_chat").await;
    let rooms = &h.services.rooms;

    let first = rooms
        .send_message(&alice, &room, "m.room.message", "txn1", text("hi"))
        .await
        .unwrap();
    let retried = rooms
        .send_message(&alice, &room, "m.room.message", "txn1", text("hi"))
        .await
        .unwrap();
    assert_eq!(first, retried);

    let stranger = h.say(&eve, &room, "let me in").await;
    assert!(
        matches!(stranger, Err(ServiceError::Forbidden(_))),
        "{stranger:?}"
    );
}

#[tokio::test]
async fn state_needs_the_power_level_for_its_type() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    let rooms = &h.services.rooms;

    let by_member = rooms
        .send_state(&bob, &room, "m.room.name", "", json!({ "name": "mine" }))
        .await;
    assert!(
        matches!(by_member, Err(ServiceError::Forbidden(_))),
        "{by_member:?}"
    );
    rooms
        .send_state(&alice, &room, "m.room.name", "", json!({ "name": "ours" }))
        .await
        .unwrap();
    let state = rooms.room_state(&room).await.unwrap();
    let name = state.content(&"m.room.name".into(), "").unwrap();
    assert_eq!(name["name"], "ours");
    let create = rooms
        .send_state(&alice, &room, "m.room.create", "", json!({}))
        .await;
    assert!(
        matches!(create, Err(ServiceError::Forbidden(_))),
        "{create:?}"
    );
}

#[tokio::test]
async fn the_cached_state_knows_every_membership() {
    let h = harness();
    let (alice, bob, carol) = (
        h.user("alice").await,
        h.user("bob").await,
        h.user("carol").await,
    );
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    let membership = &h.services.membership;
    membership
        .invite(&alice.user_id, &room, &carol.user_id, None)
        .await
        .unwrap();
    membership
        .leave_room(&bob.user_id, &room, None)
        .await
        .unwrap();

    let state = h.services.rooms.room_state(&room).await.unwrap();
    assert_eq!(state.membership(&alice.user_id), Some(Membership::Join));
    assert_eq!(state.membership(&bob.user_id), Some(Membership::Leave));
    assert_eq!(state.membership(&carol.user_id), Some(Membership::Invite));
    assert_eq!(state.joined_members(), vec![alice.user_id.clone()]);
    assert_eq!(
        state
            .members_with(&[Membership::Invite, Membership::Leave])
            .len(),
        2
    );
}

#[tokio::test]
async fn a_redacted_state_event_loses_its_content_in_the_current_state() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "public_chat").await;
    let rooms = &h.services.rooms;
    let topic = rooms
        .send_state(
            &alice,
            &room,
            "m.room.topic",
            "",
            json!({ "topic": "secret" }),
        )
        .await
        .unwrap();
    rooms
        .redact(&alice, &room, &topic, "r1", Some("oops"))
        .await
        .unwrap();
    let state = rooms.room_state(&room).await.unwrap();
    let entry = state.get(&"m.room.topic".into(), "").unwrap();
    assert_eq!(entry.pdu.event_id, topic);
    assert_eq!(entry.pdu.content_value(), json!({}));
}

/// Which directory `/publicRooms` lists: the main one by default, one appservice network's by
/// its `instance_id`, both with `include_all_networks`; a malformed ID or both choices are
/// refused rather than read as "the main one".
#[tokio::test]
async fn public_rooms_lists_the_directory_asked_for() {
    use crate::rooms::{instance_id, PublicRoomsQuery};
    use serde_json::Value;

    let h = harness();
    let alice = h.user("alice").await;
    let (main, bridged) = (
        h.room(&alice, "public_chat").await,
        h.room(&alice, "public_chat").await,
    );
    let storage = &h.services.ctx.storage;
    storage.set_room_published(&main, true).await.unwrap();
    storage
        .set_network_room_published("bridge", "irc", &bridged, true)
        .await
        .unwrap();
    let rooms = &h.services.rooms;
    let list = |body: Value| async move {
        let query = PublicRoomsQuery::from_body(&body)?;
        let answer = rooms.local_public_rooms(&query).await?;
        let rooms: Vec<String> = answer["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["room_id"].as_str().map(str::to_owned))
            .collect();
        Ok::<_, ServiceError>(rooms)
    };
    let irc = instance_id("bridge", "irc");
    assert_eq!(irc, "bridge|irc");
    assert_eq!(list(json!({})).await.unwrap(), [main.to_string()]);
    assert_eq!(
        list(json!({ "third_party_instance_id": irc }))
            .await
            .unwrap(),
        [bridged.to_string()]
    );
    let mut all = list(json!({ "include_all_networks": true })).await.unwrap();
    all.sort();
    let mut expected = vec![main.to_string(), bridged.to_string()];
    expected.sort();
    assert_eq!(all, expected);
    assert!(list(json!({ "third_party_instance_id": "bridge|slack" }))
        .await
        .unwrap()
        .is_empty());
    for bad in [
        json!({ "third_party_instance_id": "irc" }),
        json!({ "third_party_instance_id": "a|b|c" }),
        json!({ "third_party_instance_id": irc, "include_all_networks": true }),
    ] {
        let refused = list(bad.clone()).await;
        assert!(
            matches!(refused, Err(ServiceError::InvalidParam(_))),
            "{bad}: {refused:?}"
        );
    }
    let not_json = list(json!({ "include_all_networks": "yes" })).await;
    assert!(
        matches!(not_json, Err(ServiceError::BadJson(_))),
        "{not_json:?}"
    );
}
