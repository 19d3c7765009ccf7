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

/// `GET` a client path as `account`, expecting 200.
async fn get_ok(server: &TestServer, account: &Account, path: &str) -> Value {
    let (status, answer) = server.get(path, account.token()).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    answer
}

/// The newest member event of `user` in a `/messages` chunk (newest first) with `membership`.
fn member_event<'a>(chunk: &'a [Value], user: &str, membership: &str) -> &'a Value {
    chunk
        .iter()
        .find(|e| {
            e["type"] == "m.room.member"
                && e["state_key"] == user
                && e["content"]["membership"] == membership
        })
        .unwrap_or_else(|| panic!("no {membership} of {user}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_clears_the_profile_and_reaches_state_and_single_event_reads() {
    let a = TestServer::start().await;
    let bob = a.register("bob", PW).await;
    let alice = a.register("alice", PW).await;
    let bob_token = bob.token().expect("token");
    let path = format!(
        "/_matrix/client/v3/profile/{}/displayname",
        enc(&bob.user_id)
    );
    let (status, _) = a
        .put(
            &path,
            Some(bob_token),
            &json!({ "displayname": "Bob Builder" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let room = a
        .create_room(bob_token, &json!({ "preset": "public_chat" }))
        .await;
    a.join(alice.token().expect("token"), &room).await;
    let topic_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
        enc(&room)
    );
    let (status, _) = a
        .put(
            &topic_path,
            Some(bob_token),
            &json!({ "topic": "bob's topic" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let root = a.send_message(bob_token, &room, "t1", "bob's root").await;
    let reply = json!({
        "msgtype": "m.text",
        "body": "bob's reply",
        "m.relates_to": { "rel_type": "m.thread", "event_id": root },
    });
    let send = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/t2",
        enc(&room)
    );
    let (status, _) = a.put(&send, Some(bob_token), &reply).await;
    assert_eq!(status, StatusCode::OK);
    let carol = a.register("carol", PW).await;
    let invite = json!({ "user_id": carol.user_id, "reason": "bob's reason" });
    let invite_path = format!("/_matrix/client/v3/rooms/{}/invite", enc(&room));
    let (status, answer) = a.post(&invite_path, Some(bob_token), &invite).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    deactivate(&a, &bob, true).await;

    // Carol was notified of the invite without being in the room: she gets it redacted.
    let notifications = get_ok(&a, &carol, "/_matrix/client/v3/notifications").await;
    let invited = notifications["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .map(|n| &n["event"])
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == carol.user_id.as_str())
        .unwrap_or_else(|| panic!("no invite notification: {notifications}"));
    assert_eq!(
        invited["content"],
        json!({ "membership": "invite" }),
        "{invited}"
    );

    // The profile is gone, and the member events say so: a join without it, then the leave.
    let (status, _) = a
        .get(
            &format!("/_matrix/client/v3/profile/{}", enc(&bob.user_id)),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let messages = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
        enc(&room)
    );
    let chunk = get_ok(&a, &alice, &messages).await["chunk"]
        .as_array()
        .expect("chunk")
        .clone();
    let join = member_event(&chunk, &bob.user_id, "join");
    assert!(join["content"].get("displayname").is_none(), "{join}");
    let leave = member_event(&chunk, &bob.user_id, "leave");
    assert!(leave["content"].get("displayname").is_none(), "{leave}");

    // Alice was there: the topic and the messages stay whole for her.
    let topic = get_ok(&a, &alice, &topic_path).await;
    assert_eq!(topic["topic"], "bob's topic");
    let event_path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        enc(&room),
        enc(&root)
    );
    let event = get_ok(&a, &alice, &event_path).await;
    assert_eq!(event["content"]["body"], "bob's root");

    // Dave comes later: every read gives him bob's events redacted.
    let dave = a.register("dave", PW).await;
    a.join(dave.token().expect("token"), &room).await;
    let topic = get_ok(&a, &dave, &topic_path).await;
    assert_eq!(topic, json!({}), "/state/m.room.topic");
    let state = get_ok(
        &a,
        &dave,
        &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
    )
    .await;
    let topic = state
        .as_array()
        .expect("state")
        .iter()
        .find(|e| e["type"] == "m.room.topic")
        .expect("topic in state");
    assert_eq!(topic["content"], json!({}), "/state: {topic}");
    let event = get_ok(&a, &dave, &event_path).await;
    assert_eq!(event["content"], json!({}), "/event: {event}");
    let latest = &event["unsigned"]["m.relations"]["m.thread"]["latest_event"];
    assert_eq!(
        latest["content"],
        json!({}),
        "bundled thread reply: {event}"
    );
    let context = get_ok(
        &a,
        &dave,
        &format!(
            "/_matrix/client/v3/rooms/{}/context/{}",
            enc(&room),
            enc(&root)
        ),
    )
    .await;
    assert_eq!(
        context["event"]["content"],
        json!({}),
        "/context: {context}"
    );
    let topic = context["state"]
        .as_array()
        .expect("context state")
        .iter()
        .find(|e| e["type"] == "m.room.topic")
        .expect("topic in context state");
    assert_eq!(topic["content"], json!({}), "/context state: {topic}");
    let relations = get_ok(
        &a,
        &dave,
        &format!(
            "/_matrix/client/v1/rooms/{}/relations/{}",
            enc(&room),
            enc(&root)
        ),
    )
    .await;
    assert_eq!(relations["chunk"][0]["content"], json!({}), "{relations}");
    a.stop().await;
}
