//! Every room version we create rooms in, through the whole local life of a room: creation,
//! messages, state, invites and joins, kicks, bans and redactions.

use serde_json::json;

use crate::{
    membership::CreateRoomRequest,
    rooms::Membership,
    test_support::{harness, text},
};

#[tokio::test]
async fn every_supported_version_lives_a_whole_room_life() {
    for version in myelin_room::SUPPORTED_VERSIONS {
        let h = harness();
        let (alice, bob, carol) = (
            h.user("alice").await,
            h.user("bob").await,
            h.user("carol").await,
        );
        let req = CreateRoomRequest {
            room_version: Some((*version).to_owned()),
            preset: Some("private_chat".to_owned()),
            name: Some(format!("v{version}")),
            ..CreateRoomRequest::default()
        };
        let room = h
            .services
            .membership
            .create_room(&alice.user_id, req)
            .await
            .unwrap_or_else(|e| panic!("create a v{version} room: {e:?}"));
        let rooms = &h.services.rooms;
        let membership = &h.services.membership;
        let state = rooms.room_state(&room).await.unwrap();
        assert_eq!(state.version.as_str(), *version);

        let said = h.say(&alice, &room, "hello").await;
        let said = said.unwrap_or_else(|e| panic!("v{version} message: {e:?}"));
        rooms
            .send_state(&alice, &room, "m.room.topic", "", json!({ "topic": "t" }))
            .await
            .unwrap_or_else(|e| panic!("v{version} state: {e:?}"));
        membership
            .invite(&alice.user_id, &room, &bob.user_id, None)
            .await
            .unwrap_or_else(|e| panic!("v{version} invite: {e:?}"));
        h.join(&bob, &room)
            .await
            .unwrap_or_else(|e| panic!("v{version} join: {e:?}"));
        rooms
            .send_message(&bob, &room, "m.room.message", "b1", text("hi"))
            .await
            .unwrap_or_else(|e| panic!("v{version} bob's message: {e:?}"));
        assert!(
            h.join(&carol, &room).await.is_err(),
            "v{version}: an uninvited user joined a private room"
        );
        rooms
            .redact(&alice, &room, &said, "r1", None)
            .await
            .unwrap_or_else(|e| panic!("v{version} redaction: {e:?}"));
        membership
            .kick(&alice.user_id, &room, &bob.user_id, None)
            .await
            .unwrap_or_else(|e| panic!("v{version} kick: {e:?}"));
        membership
            .ban(&alice.user_id, &room, &carol.user_id, None)
            .await
            .unwrap_or_else(|e| panic!("v{version} ban: {e:?}"));
        let state = rooms.room_state(&room).await.unwrap();
        assert_eq!(
            state.membership(&bob.user_id),
            Some(Membership::Leave),
            "v{version}"
        );
        assert_eq!(
            state.membership(&carol.user_id),
            Some(Membership::Ban),
            "v{version}"
        );
        let redacted = h
            .services
            .history
            .get_room_event(&alice.user_id, &alice.device_id, &room, &said)
            .await
            .unwrap();
        assert_eq!(redacted["content"], json!({}), "v{version}");
    }
}
