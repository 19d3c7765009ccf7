//! Every room version, over federation: a room of each version created on one Myelin server is
//! joined by a user of another, and messages and state cross both ways.

use myelin_testing::http::{register, room_path, sync_until};
use myelin_testing::{enc, message_bodies, timeline, StatusCode, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_of_every_version_federate() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let (alice_token, bob_token) = (alice.token().expect("token"), bob.token().expect("token"));

    let (status, caps) = a
        .get("/_matrix/client/v3/capabilities", Some(alice_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{caps}");
    let versions = &caps["capabilities"]["m.room_versions"];
    assert_eq!(versions["default"], "10", "{caps}");
    for version in 1..=12 {
        let version = version.to_string();
        assert_eq!(versions["available"][&version], "stable", "{caps}");

        let room_id = a
            .create_room(
                alice_token,
                &json!({ "preset": "public_chat", "room_version": version, "name": format!("v{version}") }),
            )
            .await;
        a.send_message(alice_token, &room_id, &format!("a{version}"), "from alice")
            .await;
        let join = format!(
            "/_matrix/client/v3/join/{}?via={}",
            enc(&room_id),
            enc(a.loopback_server_name())
        );
        let (status, body) = b.post(&join, Some(bob_token), &json!({})).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "v{version}: bob joins over federation: {body}"
        );

        // B holds the room's state, in the room's version.
        let (status, create) = b
            .get(
                &room_path(&room_id, "state/m.room.create/"),
                Some(bob_token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "v{version}: {create}");
        assert_eq!(create["room_version"], version.as_str(), "{create}");
        let (status, name) = b
            .get(&room_path(&room_id, "state/m.room.name/"), Some(bob_token))
            .await;
        assert_eq!(
            (status, name["name"].as_str()),
            (StatusCode::OK, Some(format!("v{version}").as_str()))
        );

        // Bob's message reaches A; A's history is readable on B.
        b.send_message(bob_token, &room_id, &format!("b{version}"), "from bob")
            .await;
        let mut on_a = Vec::new();
        sync_until(
            &a,
            &alice,
            &format!("v{version}: bob's message on A"),
            |sync| {
                on_a.extend(message_bodies(&timeline(sync, &room_id)));
                on_a.iter().any(|b| b == "from bob")
            },
        )
        .await;
        let messages = room_path(&room_id, "messages?dir=b&limit=20");
        let (status, page) = b.get(&messages, Some(bob_token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let on_b = message_bodies(page["chunk"].as_array().expect("chunk"));
        assert!(
            on_b.iter().any(|m| m == "from alice"),
            "v{version}: {on_b:?}"
        );
    }
}
