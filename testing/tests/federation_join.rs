//! Two Myelin servers on loopback federating: a user of B joins a room on A (by alias and by
//! room ID), messages, state, typing and receipts cross both ways through the durable outbox
//! and `/send`, invites to remote users are accepted and rejected, kicks reach the kicked
//! user's server, and a server that was down receives everything queued for it, in order.

use myelin_testing::http::{register, sync_from_until, sync_until};
use myelin_testing::{enc, message_bodies, timeline, Account, StatusCode, TestServer};
use serde_json::{json, Value};

/// Every timeline message body of `room_id` seen by `account` from an initial sync on.
async fn wait_for_messages(
    server: &TestServer,
    account: &Account,
    room_id: &str,
    wanted: &[&str],
) -> Vec<String> {
    let mut bodies: Vec<String> = Vec::new();
    sync_until(server, account, &format!("messages {wanted:?}"), |sync| {
        bodies.extend(message_bodies(&timeline(sync, room_id)));
        wanted.iter().all(|w| bodies.iter().any(|b| b == w))
    })
    .await;
    bodies
}

fn user_id(account: &Account) -> String {
    account.user_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_messages_state_and_ephemeral_cross_servers() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let alice_token = alice.token().expect("token");
    let bob_token = bob.token().expect("token");

    let room_id = a
        .create_room(
            alice_token,
            &json!({ "preset": "public_chat", "room_alias_name": "lobby", "name": "Lobby" }),
        )
        .await;
    a.send_message(alice_token, &room_id, "t0", "before bob")
        .await;

    // Bob joins through A by alias (remote alias resolution, make_join, send_join).
    let alias = format!("#lobby:{}", a.loopback_server_name());
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&alias)),
            Some(bob_token),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "remote join: {body}");
    assert_eq!(body["room_id"], room_id.as_str());

    // B now has the room with its state: the name and both members.
    let (status, name) = b
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.name/",
                enc(&room_id)
            ),
            Some(bob_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "Lobby");
    let (status, members) = b
        .get(
            &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room_id)),
            Some(bob_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert!(members["joined"][user_id(&alice)].is_object(), "{members}");
    assert!(members["joined"][user_id(&bob)].is_object(), "{members}");

    // A learns of the join (A is the resident server that accepted it).
    let (status, members) = a
        .get(
            &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room_id)),
            Some(alice_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert!(members["joined"][user_id(&bob)].is_object(), "{members}");

    // Messages both ways, through each server's outbox and the other's /send.
    a.send_message(alice_token, &room_id, "t1", "hello bob")
        .await;
    wait_for_messages(&b, &bob, &room_id, &["hello bob"]).await;
    b.send_message(bob_token, &room_id, "t1", "hello alice")
        .await;
    wait_for_messages(&a, &alice, &room_id, &["hello alice"]).await;

    // A state change on A reaches B.
    let (status, body) = a
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
                enc(&room_id)
            ),
            Some(alice_token),
            &json!({ "topic": "federated" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until(&b, &bob, "the topic", |sync| {
        timeline(sync, &room_id)
            .iter()
            .any(|e| e["type"] == "m.room.topic" && e["content"]["topic"] == "federated")
    })
    .await;

    // Typing on B shows on A.
    let (status, body) = b
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                enc(&room_id),
                enc(&user_id(&bob))
            ),
            Some(bob_token),
            &json!({ "typing": true, "timeout": 20000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bob_id = user_id(&bob);
    sync_until(&a, &alice, "bob typing", |sync| {
        sync["rooms"]["join"][&room_id]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|events| {
                events.iter().any(|e| {
                    e["type"] == "m.typing"
                        && e["content"]["user_ids"]
                            .as_array()
                            .is_some_and(|ids| ids.iter().any(|u| u == bob_id.as_str()))
                })
            })
    })
    .await;

    // A read receipt from B shows on A.
    let last = b.send_message(bob_token, &room_id, "t2", "read this").await;
    wait_for_messages(&a, &alice, &room_id, &["read this"]).await;
    let (status, body) = b
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room_id),
                enc(&last)
            ),
            Some(bob_token),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_until(&a, &alice, "bob's receipt", |sync| {
        sync["rooms"]["join"][&room_id]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|events| {
                events.iter().any(|e| {
                    e["type"] == "m.receipt" && e["content"][&last]["m.read"][&bob_id].is_object()
                })
            })
    })
    .await;

    // Profiles across servers: A asks B for bob's profile.
    let (status, body) = b
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&bob_id)),
            Some(bob_token),
            &json!({ "displayname": "Bob of B" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, profile) = a
        .get(
            &format!("/_matrix/client/v3/profile/{}", enc(&bob_id)),
            Some(alice_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "Bob of B");

    // Kick: B hears that bob left. Synced from a token taken before it: an initial sync leaves
    // out left rooms, so a kick that landed first would never show.
    let before_kick = b.sync(bob_token, None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/rooms/{}/kick", enc(&room_id)),
            Some(alice_token),
            &json!({ "user_id": bob_id, "reason": "bye" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sync_from_until(&b, &bob, Some(&before_kick), "bob's kick", |sync| {
        sync["rooms"]["leave"][&room_id].is_object()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_invites_are_accepted_and_rejected() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = register(&a, "alice").await;
    let carol = register(&b, "carol").await;
    let dave = register(&b, "dave").await;
    let alice_token = alice.token().expect("token");

    let room_id = a
        .create_room(
            alice_token,
            &json!({ "preset": "private_chat", "name": "Secret" }),
        )
        .await;

    // Carol is invited; the invite shows in her /sync with the room's stripped state.
    a.invite(alice_token, &room_id, &user_id(&carol)).await;
    let sync = sync_until(&b, &carol, "carol's invite", |sync| {
        sync["rooms"]["invite"][&room_id].is_object()
    })
    .await;
    let stripped = &sync["rooms"]["invite"][&room_id]["invite_state"]["events"];
    assert!(
        stripped.as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret")),
        "{stripped}"
    );
    // She accepts by room ID alone: the invite says which server to join through.
    b.join(carol.token().expect("token"), &room_id).await;
    let carol_id = user_id(&carol);
    sync_until(&a, &alice, "carol's join", |sync| {
        timeline(sync, &room_id).iter().any(|e| {
            e["type"] == "m.room.member"
                && e["state_key"] == carol_id.as_str()
                && e["content"]["membership"] == "join"
        })
    })
    .await;

    // Dave is invited and rejects: A sees his leave, his own /sync shows the room left.
    a.invite(alice_token, &room_id, &user_id(&dave)).await;
    let invited = sync_until(&b, &dave, "dave's invite", |sync| {
        sync["rooms"]["invite"][&room_id].is_object()
    })
    .await;
    let since = invited["next_batch"].as_str().map(str::to_owned);
    b.leave(dave.token().expect("token"), &room_id).await;
    let dave_id = user_id(&dave);
    sync_until(&a, &alice, "dave's rejection", |sync| {
        timeline(sync, &room_id).iter().any(|e| {
            e["type"] == "m.room.member"
                && e["state_key"] == dave_id.as_str()
                && e["content"]["membership"] == "leave"
        })
    })
    .await;
    sync_from_until(&b, &dave, since.as_deref(), "dave's leave", |sync| {
        sync["rooms"]["leave"][&room_id].is_object()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_was_down_gets_everything_in_order() {
    let a = TestServer::start_federating_with(|c| {
        c.federation.retry_min_ms = 200;
        c.federation.retry_max_ms = 1_000;
    })
    .await;
    let b = TestServer::start_federating().await;
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let alice_token = alice.token().expect("token");
    let room_id = a
        .create_room(alice_token, &json!({ "preset": "public_chat" }))
        .await;
    let (status, body) = b
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                enc(&room_id),
                enc(a.loopback_server_name())
            ),
            Some(bob.token().expect("token")),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "join by room ID and via: {body}");

    // B goes down; A queues 50 messages for it.
    let b_dir = b.stop().await;
    let expected: Vec<String> = (0..50).map(|i| format!("queued {i}")).collect();
    for (i, text) in expected.iter().enumerate() {
        a.send_message(alice_token, &room_id, &format!("q{i}"), text)
            .await;
    }
    // B comes back on the same port (its server name), and A's backoff retries reach it.
    let b = TestServer::restart(b_dir).await;
    let wanted: Vec<&str> = expected.iter().map(String::as_str).collect();
    let bodies = wait_for_messages(&b, &bob, &room_id, &wanted).await;
    let got: Vec<&String> = bodies.iter().filter(|b| b.starts_with("queued ")).collect();
    let mut deduped: Vec<&String> = Vec::new();
    for body in got {
        if !deduped.contains(&body) {
            deduped.push(body);
        }
    }
    assert_eq!(
        deduped.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        wanted,
        "all 50 arrive, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knocking_on_a_remote_room() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = register(&a, "alice").await;
    let ellen = register(&b, "ellen").await;
    let alice_token = alice.token().expect("token");
    let room_id = a
        .create_room(
            alice_token,
            &json!({
                "preset": "private_chat",
                "name": "Knock here",
                "initial_state": [{
                    "type": "m.room.join_rules", "state_key": "",
                    "content": { "join_rule": "knock" },
                }],
            }),
        )
        .await;
    let path = format!(
        "/_matrix/client/v3/knock/{}?via={}",
        enc(&room_id),
        enc(a.loopback_server_name())
    );
    let (status, body) = b
        .post(&path, ellen.token(), &json!({ "reason": "let me in" }))
        .await;
    assert_eq!(status, StatusCode::OK, "remote knock: {body}");
    // Ellen's /sync shows the knock with the room's stripped state.
    sync_until(&b, &ellen, "ellen's knock", |sync| {
        sync["rooms"]["knock"][&room_id]["knock_state"]["events"]
            .as_array()
            .is_some_and(|e| {
                e.iter()
                    .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock here")
            })
    })
    .await;
    // A has the knock in the room's state.
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        enc(&room_id),
        enc(&ellen.user_id)
    );
    let (status, member) = a.get(&path, Some(alice_token)).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["membership"], "knock");
    assert_eq!(member["reason"], "let me in");

    // Ellen withdraws the knock: B goes through A (make_leave/send_leave), so A's state shows
    // her leave and her /sync moves the room from `knock` to `leave`.
    let since = b.sync(ellen.token().expect("token"), None, 0).await["next_batch"]
        .as_str()
        .map(str::to_owned);
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room_id)),
            ellen.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "knock withdrawal: {body}");
    let (status, member) = a.get(&path, Some(alice_token)).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["membership"], "leave", "A saw the withdrawal");
    sync_from_until(
        &b,
        &ellen,
        since.as_deref(),
        "the withdrawn knock under leave",
        |sync| sync["rooms"]["leave"].get(&room_id).is_some(),
    )
    .await;
    let sync = b.sync(ellen.token().expect("token"), None, 0).await;
    assert!(sync["rooms"]["knock"].get(&room_id).is_none(), "{sync}");
}

/// A redaction received over federation redacts the state event it targets in the room's
/// current state too, not only in storage: the topic bob (on B) set and then redacted reads as
/// redacted on A right away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_redaction_of_state_redacts_current_state() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let bob_token = bob.token().expect("token");
    let room_id = b
        .create_room(bob_token, &json!({ "preset": "public_chat" }))
        .await;
    let (status, body) = a
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                enc(&room_id),
                enc(b.loopback_server_name())
            ),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "join: {body}");
    let room = |rest: &str| format!("/_matrix/client/v3/rooms/{}/{rest}", enc(&room_id));
    let (status, body) = b
        .put(
            &room("state/m.room.topic/"),
            Some(bob_token),
            &json!({ "topic": "a secret topic" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "topic: {body}");
    let topic_id = body["event_id"].as_str().expect("event_id").to_owned();
    sync_until(&a, &alice, "the topic on A", |sync| {
        timeline(sync, &room_id)
            .iter()
            .any(|e| e["event_id"] == topic_id.as_str())
    })
    .await;
    let (status, body) = b
        .put(
            &room(&format!("redact/{}/r1", enc(&topic_id))),
            Some(bob_token),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "redact: {body}");
    let redaction_id = body["event_id"].as_str().expect("event_id").to_owned();
    sync_until(&a, &alice, "the redaction on A", |sync| {
        timeline(sync, &room_id)
            .iter()
            .any(|e| e["event_id"] == redaction_id.as_str())
    })
    .await;
    let (status, topic) = a.get(&room("state/m.room.topic/"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{topic}");
    assert_eq!(
        topic,
        json!({}),
        "A's current state holds the redacted topic"
    );
    let (_, state) = a.get(&room("state"), alice.token()).await;
    assert!(
        !state.to_string().contains("a secret topic"),
        "the redacted topic is gone from A's /state: {state}"
    );
    // The summary is read from the in-memory current state.
    let (status, summary) = a
        .get(
            &format!("/_matrix/client/v1/room_summary/{}", enc(&room_id)),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert!(
        summary.get("topic").is_none_or(Value::is_null),
        "the redacted topic is gone from A's room summary: {summary}"
    );
    a.stop().await;
    b.stop().await;
}
