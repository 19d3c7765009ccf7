//! Users deactivated with `erase: true`: their messages are served redacted to other servers
//! (`/event`, `/backfill`) and to users who join later, while those who were in the room when
//! they were sent keep seeing them, as Synapse does.

use myelin_testing::hostile::HostileServer;
use myelin_testing::http::{password_auth, PW};
use myelin_testing::{enc, Account, StatusCode, TestServer};
use serde_json::{json, Value};

async fn deactivate(server: &TestServer, account: &Account, erase: bool) {
    let mut body = json!({ "auth": password_auth(&account.user_id, PW, None), "erase": erase });
    let path = "/_matrix/client/v3/account/deactivate";
    let (mut status, mut answer) = server.post(path, account.token(), &body).await;
    if status == StatusCode::UNAUTHORIZED {
        body["auth"] = password_auth(&account.user_id, PW, Some(&answer["session"]));
        (status, answer) = server.post(path, account.token(), &body).await;
    }
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// The bodies `/messages` gives `account`, by event ID.
async fn bodies(server: &TestServer, account: &Account, room: &str) -> Vec<(String, Value)> {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
        enc(room)
    );
    let (status, messages) = server.get(&path, account.token()).await;
    assert_eq!(status, StatusCode::OK, "{messages}");
    messages["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            let id = e["event_id"].as_str().expect("event_id").to_owned();
            (id, e["content"]["body"].clone())
        })
        .collect()
}

fn body_of(bodies: &[(String, Value)], event_id: &str) -> Value {
    bodies
        .iter()
        .find(|(id, _)| id == event_id)
        .map(|(_, body)| body.clone())
        .unwrap_or_else(|| panic!("{event_id} not listed: {bodies:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_s_messages_are_served_redacted() {
    let a = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let bob = a.register("bob", PW).await;
    let carol = a.register("carol", PW).await;
    let room = a
        .create_room(
            alice.token().expect("token"),
            &json!({ "preset": "public_chat", "room_version": "10" }),
        )
        .await;
    a.join(bob.token().expect("token"), &room).await;
    a.join(carol.token().expect("token"), &room).await;
    let secret = a
        .send_message(bob.token().expect("token"), &room, "t1", "bob's secret")
        .await;
    let kept = a
        .send_message(carol.token().expect("token"), &room, "t2", "carol's words")
        .await;
    deactivate(&a, &bob, true).await;
    deactivate(&a, &carol, false).await;

    // Alice was there: she still sees both messages.
    let seen = bodies(&a, &alice, &room).await;
    assert_eq!(body_of(&seen, &secret), "bob's secret");
    assert_eq!(body_of(&seen, &kept), "carol's words");

    // Dave joins later (history is `shared`): bob's message reaches him redacted, carol's not.
    let dave = a.register("dave", PW).await;
    a.join(dave.token().expect("token"), &room).await;
    let seen = bodies(&a, &dave, &room).await;
    assert_eq!(body_of(&seen, &secret), Value::Null, "{seen:?}");
    assert_eq!(body_of(&seen, &kept), "carol's words");

    // Another server in the room gets it redacted too, by /event and by /backfill.
    let hostile = HostileServer::start().await;
    hostile.join(&a, &room, "mallory").await;
    let uri = format!("/_matrix/federation/v1/event/{}", enc(&secret));
    let (status, answer) = hostile.request(&a, "GET", &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["pdus"][0]["content"], json!({}), "{answer}");
    let uri = format!("/_matrix/federation/v1/event/{}", enc(&kept));
    let (_, answer) = hostile.request(&a, "GET", &uri, None).await;
    assert_eq!(answer["pdus"][0]["content"]["body"], "carol's words");
    let uri = format!(
        "/_matrix/federation/v1/backfill/{}?v={}&limit=50",
        enc(&room),
        enc(&kept)
    );
    let (status, answer) = hostile.request(&a, "GET", &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let backfilled = answer["pdus"]
        .as_array()
        .expect("pdus")
        .iter()
        .find(|p| p["sender"] == bob.user_id.as_str() && p["type"] == "m.room.message")
        .cloned()
        .expect("bob's message backfilled");
    assert_eq!(backfilled["content"], json!({}), "{backfilled}");
    a.stop().await;
}
