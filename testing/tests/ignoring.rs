//! Ignoring users (`m.ignored_user_list`): an ignored user's messages disappear from `/sync`,
//! `/messages` and `/context` from the next request on, their invites are not shown, their
//! state changes still are; the list set by matrix-sdk takes effect the same way.

use matrix_sdk::Client;
use myelin_testing::http::{register, room_path, sync_until, PW};
use myelin_testing::{enc, message_bodies, timeline, StatusCode, TestServer};
use serde_json::{json, Value};

async fn bodies_in_messages(s: &TestServer, token: &str, room: &str) -> Vec<String> {
    let (status, page) = s
        .get(&room_path(room, "messages?dir=b&limit=50"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    message_bodies(page["chunk"].as_array().expect("chunk"))
}

async fn ignore(s: &TestServer, token: &str, user_id: &str, ignored: &[&str]) {
    let list: serde_json::Map<String, Value> = ignored
        .iter()
        .map(|u| ((*u).to_owned(), json!({})))
        .collect();
    let path = format!(
        "/_matrix/client/v3/user/{}/account_data/m.ignored_user_list",
        enc(user_id)
    );
    let (status, body) = s
        .put(&path, Some(token), &json!({ "ignored_users": list }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn an_ignored_user_s_messages_and_invites_are_hidden_at_once() {
    let s = TestServer::start().await;
    let (alice, mallory) = (register(&s, "alice").await, register(&s, "mallory").await);
    let (at, mt) = (
        alice.token().expect("token"),
        mallory.token().expect("token"),
    );
    let room = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            Some(mt),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let shout = s.send_message(mt, &room, "m1", "shouting").await;
    s.send_message(at, &room, "a1", "hello").await;
    assert!(bodies_in_messages(&s, at, &room)
        .await
        .contains(&"shouting".to_owned()));

    ignore(&s, at, &alice.user_id, &[&mallory.user_id]).await;
    let (status, _) = s
        .put(
            &room_path(&room, "state/m.room.topic/"),
            Some(mt),
            &json!({ "topic": "mallory's topic" }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "public_chat: members may not set the topic"
    );
    s.send_message(mt, &room, "m2", "still shouting").await;
    s.send_message(at, &room, "a2", "quiet now").await;

    // /messages and /context drop mallory's messages; alice's stay.
    let bodies = bodies_in_messages(&s, at, &room).await;
    assert!(
        bodies.contains(&"hello".to_owned()) && bodies.contains(&"quiet now".to_owned()),
        "{bodies:?}"
    );
    assert!(!bodies.iter().any(|b| b.contains("shouting")), "{bodies:?}");
    let (status, _) = s
        .get(
            &room_path(&room, &format!("context/{}", enc(&shout))),
            Some(at),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the ignored user's event itself is hidden"
    );

    // /sync: no message of mallory in the timeline; the join (state) of mallory is still there.
    let mut seen_bodies = Vec::new();
    let mut saw_mallory_join = false;
    sync_until(&s, &alice, "alice's own message", |sync| {
        let events = timeline(sync, &room);
        seen_bodies.extend(message_bodies(&events));
        saw_mallory_join |= events
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == mallory.user_id.as_str());
        seen_bodies.iter().any(|b| b == "quiet now")
    })
    .await;
    assert!(
        !seen_bodies.iter().any(|b| b.contains("shouting")),
        "{seen_bodies:?}"
    );
    assert!(saw_mallory_join, "state events of ignored users stay");

    // An invite from mallory is not shown; unignored, the next invite is.
    let other = s
        .create_room(mt, &json!({ "preset": "private_chat" }))
        .await;
    let invite = |room: String| {
        let s = &s;
        let target = alice.user_id.clone();
        async move {
            s.post(
                &room_path(&room, "invite"),
                Some(mt),
                &json!({ "user_id": target }),
            )
            .await
        }
    };
    assert_eq!(invite(other.clone()).await.0, StatusCode::OK);
    let (status, sync) = s.get("/_matrix/client/v3/sync", Some(at)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        sync["rooms"]["invite"].get(&other).is_none(),
        "{}",
        sync["rooms"]["invite"]
    );
    ignore(&s, at, &alice.user_id, &[]).await;
    let (status, sync) = s.get("/_matrix/client/v3/sync", Some(at)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        sync["rooms"]["invite"].get(&other).is_some(),
        "{}",
        sync["rooms"]["invite"]
    );
    assert!(bodies_in_messages(&s, at, &room)
        .await
        .contains(&"still shouting".to_owned()));
}

#[tokio::test]
async fn the_ignore_list_matrix_sdk_sets_is_honoured() {
    let s = TestServer::start().await;
    let (alice, mallory) = (register(&s, "alice").await, register(&s, "mallory").await);
    let (at, mt) = (
        alice.token().expect("token"),
        mallory.token().expect("token"),
    );
    let room = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            Some(mt),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s.send_message(mt, &room, "m1", "noise").await;

    let client = Client::builder()
        .homeserver_url(s.base_url())
        .build()
        .await
        .expect("client");
    client
        .matrix_auth()
        .login_username("alice", PW)
        .send()
        .await
        .expect("login");
    let mallory_id = ruma_user(&mallory.user_id);
    client
        .account()
        .ignore_user(&mallory_id)
        .await
        .expect("ignore");
    assert!(!bodies_in_messages(&s, at, &room)
        .await
        .contains(&"noise".to_owned()));
    // The SDK unignores from the list it learnt through sync.
    client
        .sync_once(matrix_sdk::config::SyncSettings::default())
        .await
        .expect("sync");
    client
        .account()
        .unignore_user(&mallory_id)
        .await
        .expect("unignore");
    assert!(bodies_in_messages(&s, at, &room)
        .await
        .contains(&"noise".to_owned()));
}

fn ruma_user(id: &str) -> matrix_sdk::ruma::OwnedUserId {
    matrix_sdk::ruma::OwnedUserId::try_from(id).expect("user ID")
}
