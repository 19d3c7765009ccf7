//! Messages and events: transaction-ID idempotency, `/messages` pagination and filters,
//! `/context`, redactions, and what history visibility hides.

use myelin_testing::http::{assert_err, assert_ok, room_path, PW};
use myelin_testing::{enc, message_bodies, timeline, StatusCode, TestServer};
use serde_json::{json, Value};

use crate::{ids, messages, send_many, state_path};

#[tokio::test]
async fn txn_id_is_idempotent_per_device() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    let first = s
        .send_message(&alice.access_token, &room, "txn-1", "hello")
        .await;
    let again = s
        .send_message(&alice.access_token, &room, "txn-1", "hello")
        .await;
    assert_eq!(
        first, again,
        "same device + same txnId must return the same event"
    );

    let alice2 = s.login("alice", PW).await;
    assert_ne!(
        alice2.device_id, alice.device_id,
        "login must create a new device"
    );
    let other = s
        .send_message(&alice2.access_token, &room, "txn-1", "hello")
        .await;
    assert_ne!(
        other, first,
        "a different device with the same txnId is a new event"
    );

    let page = messages(&s, &alice, &room, "dir=b&limit=50").await;
    let hellos = message_bodies(page["chunk"].as_array().unwrap())
        .into_iter()
        .filter(|b| b == "hello")
        .count();
    assert_eq!(hellos, 2, "exactly two events must exist: {page}");
}

/// Transaction ids are scoped to a device *and an endpoint*: reusing a
/// `/send` txnId for `/redact` is a new request. (Reusing it for `/send` in
/// another room is the same endpoint, so the spec leaves that to the server.)
#[tokio::test]
async fn txn_id_is_scoped_to_the_endpoint() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let first = s
        .send_message(&alice.access_token, &room, "shared-txn", "one")
        .await;
    let second = s
        .send_message(&alice.access_token, &room, "other-txn", "two")
        .await;

    let path = room_path(&room, &format!("redact/{}/shared-txn", enc(&second)));
    let (st, body) = s.put(&path, alice.token(), &json!({})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let redaction = body["event_id"].as_str().expect("event_id");
    assert_ne!(
        redaction, first,
        "/redact with a txnId used on /send must be a new request"
    );
    let (_, ev) = s
        .get(
            &room_path(&room, &format!("event/{}", enc(&second))),
            alice.token(),
        )
        .await;
    assert_eq!(
        ev["content"],
        json!({}),
        "the redaction must have happened: {ev}"
    );
}

#[tokio::test]
async fn transaction_id_only_for_the_sending_device() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let alice2 = s.login("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    let event_id = s
        .send_message(&alice.access_token, &room, "my-txn-42", "echo")
        .await;

    let find = |sync: &Value| {
        timeline(sync, &room)
            .into_iter()
            .find(|e| e["event_id"] == event_id.as_str())
            .unwrap_or_else(|| panic!("event missing from sync: {sync}"))
    };
    let own = find(&s.sync(&alice.access_token, None, 0).await);
    assert_eq!(
        own["unsigned"]["transaction_id"], "my-txn-42",
        "sending device must get its txn id: {own}"
    );
    let other_device = find(&s.sync(&alice2.access_token, None, 0).await);
    assert!(
        other_device["unsigned"]["transaction_id"].is_null(),
        "other device got the txn id: {other_device}"
    );
    let other_user = find(&s.sync(&bob.access_token, None, 0).await);
    assert!(
        other_user["unsigned"]["transaction_id"].is_null(),
        "other user got the txn id: {other_user}"
    );
}

#[tokio::test]
async fn messages_pagination_both_directions() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let sent = send_many(&s, &alice, &room, "m", 10).await;

    // Newest first, 4 at a time.
    let page1 = messages(&s, &alice, &room, "dir=b&limit=4").await;
    assert_eq!(
        ids(&page1["chunk"]),
        sent[6..].iter().rev().cloned().collect::<Vec<_>>(),
        "{page1}"
    );
    let end1 = page1["end"]
        .as_str()
        .expect("end token on a non-final page")
        .to_owned();
    let page2 = messages(
        &s,
        &alice,
        &room,
        &format!("dir=b&limit=4&from={}", enc(&end1)),
    )
    .await;
    assert_eq!(
        ids(&page2["chunk"]),
        sent[2..6].iter().rev().cloned().collect::<Vec<_>>(),
        "{page2}"
    );

    // Walk back to the start: the whole room, newest first, no duplicates.
    let mut backward = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..50 {
        let query = match &from {
            Some(t) => format!("dir=b&limit=3&from={}", enc(t)),
            None => "dir=b&limit=3".to_owned(),
        };
        let page = messages(&s, &alice, &room, &query).await;
        let chunk = page["chunk"].as_array().unwrap().clone();
        backward.extend(chunk.iter().cloned());
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => break,
        }
    }
    let mut oldest_first = backward.clone();
    oldest_first.reverse();
    assert_eq!(
        oldest_first[0]["type"], "m.room.create",
        "history must start at the create event"
    );
    assert_eq!(
        message_bodies(&oldest_first),
        (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    let all_ids = ids(&Value::Array(oldest_first.clone()));
    let mut dedup = all_ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(
        dedup.len(),
        all_ids.len(),
        "duplicate events while paginating"
    );

    // Forward from the beginning yields the same history, oldest first.
    let mut forward = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..50 {
        let query = match &from {
            Some(t) => format!("dir=f&limit=3&from={}", enc(t)),
            None => "dir=f&limit=3".to_owned(),
        };
        let page = messages(&s, &alice, &room, &query).await;
        let chunk = page["chunk"].as_array().unwrap().clone();
        forward.extend(chunk.iter().cloned());
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => break,
        }
    }
    assert_eq!(
        ids(&Value::Array(forward)),
        all_ids,
        "forward pagination differs from backward"
    );

    // A token splits the timeline: forward from it gives what backward from it did not.
    let after = messages(
        &s,
        &alice,
        &room,
        &format!("dir=f&limit=100&from={}", enc(&end1)),
    )
    .await;
    assert_eq!(
        ids(&after["chunk"]),
        sent[6..].to_vec(),
        "dir=f from page1.end: {after}"
    );

    // `to` bounds pagination at a token.
    let bounded = messages(
        &s,
        &alice,
        &room,
        &format!("dir=b&limit=100&to={}", enc(&end1)),
    )
    .await;
    assert_eq!(
        ids(&bounded["chunk"]),
        ids(&page1["chunk"]),
        "dir=b to=page1.end: {bounded}"
    );
    let head = messages(
        &s,
        &alice,
        &room,
        &format!("dir=f&limit=100&to={}", enc(&end1)),
    )
    .await;
    let head_ids = ids(&head["chunk"]);
    assert_eq!(
        head_ids.last(),
        Some(&sent[5]),
        "dir=f to=page1.end must stop before m6: {head}"
    );
    assert_eq!(head_ids, all_ids[..all_ids.len() - 4].to_vec(), "{head}");
}

#[tokio::test]
async fn messages_with_event_filter() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let sent = send_many(&s, &alice, &room, "m", 4).await;
    assert_ok(
        &s.put(
            &state_path(&room, "m.room.topic", ""),
            alice.token(),
            &json!({ "topic": "t" }),
        )
        .await,
        "topic",
    );

    let filter = enc(&json!({ "types": ["m.room.message"] }).to_string());
    let page = messages(
        &s,
        &alice,
        &room,
        &format!("dir=b&limit=100&filter={filter}"),
    )
    .await;
    assert_eq!(
        ids(&page["chunk"]),
        sent.iter().rev().cloned().collect::<Vec<_>>(),
        "{page}"
    );

    let filter = enc(&json!({ "not_types": ["m.room.message"] }).to_string());
    let page = messages(
        &s,
        &alice,
        &room,
        &format!("dir=b&limit=100&filter={filter}"),
    )
    .await;
    let chunk = page["chunk"].as_array().unwrap();
    assert!(
        chunk.iter().all(|e| e["type"] != "m.room.message"),
        "{page}"
    );
    assert_eq!(chunk[0]["type"], "m.room.topic", "{page}");
}

#[tokio::test]
async fn event_context() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let sent = send_many(&s, &alice, &room, "m", 10).await;

    let path = room_path(&room, &format!("context/{}?limit=4", enc(&sent[5])));
    let (st, ctx) = s.get(&path, alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{ctx}");
    assert_eq!(ctx["event"]["event_id"], sent[5].as_str());
    assert_eq!(ctx["event"]["content"]["body"], "m5");
    let before = ids(&ctx["events_before"]);
    let after = ids(&ctx["events_after"]);
    assert!(!before.is_empty() && !after.is_empty(), "{ctx}");
    assert!(
        before.len() + after.len() <= 4,
        "limit applies to before+after: {ctx}"
    );
    // events_before is newest first, events_after oldest first.
    assert_eq!(
        before,
        sent[5 - before.len()..5]
            .iter()
            .rev()
            .cloned()
            .collect::<Vec<_>>(),
        "{ctx}"
    );
    assert_eq!(after, sent[6..6 + after.len()].to_vec(), "{ctx}");
    assert!(
        ctx["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create"),
        "context state must include the room state: {ctx}"
    );

    // start/end continue the context with /messages.
    let start = ctx["start"].as_str().expect("start");
    let older = messages(
        &s,
        &alice,
        &room,
        &format!("dir=b&limit=1&from={}", enc(start)),
    )
    .await;
    assert_eq!(
        ids(&older["chunk"]),
        vec![sent[4 - before.len()].clone()],
        "{older}"
    );
    let end = ctx["end"].as_str().expect("end");
    let newer = messages(
        &s,
        &alice,
        &room,
        &format!("dir=f&limit=1&from={}", enc(end)),
    )
    .await;
    assert_eq!(
        ids(&newer["chunk"]),
        vec![sent[6 + after.len()].clone()],
        "{newer}"
    );
}

#[tokio::test]
async fn redaction_removes_content() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let event_id = s
        .send_message(&alice.access_token, &room, "t1", "regrettable")
        .await;

    let path = room_path(&room, &format!("redact/{}/r1", enc(&event_id)));
    let (st, body) = s
        .put(&path, alice.token(), &json!({ "reason": "oops" }))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let redaction_id = body["event_id"]
        .as_str()
        .expect("redaction event_id")
        .to_owned();

    let (st, ev) = s
        .get(
            &room_path(&room, &format!("event/{}", enc(&event_id))),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{ev}");
    assert_eq!(ev["type"], "m.room.message");
    assert_eq!(
        ev["content"],
        json!({}),
        "redacted content must be empty: {ev}"
    );
    let because = &ev["unsigned"]["redacted_because"];
    assert_eq!(because["type"], "m.room.redaction", "{ev}");
    assert_eq!(because["event_id"], redaction_id.as_str(), "{ev}");

    // History shows the redacted form too.
    let page = messages(&s, &alice, &room, "dir=b&limit=10").await;
    let in_history = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == event_id.as_str())
        .unwrap_or_else(|| panic!("redacted event missing from /messages: {page}"))
        .clone();
    assert_eq!(in_history["content"], json!({}), "{in_history}");
}

#[tokio::test]
async fn redacting_others_needs_power() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    let alices = s
        .send_message(&alice.access_token, &room, "a1", "alice's words")
        .await;
    let bobs = s
        .send_message(&bob.access_token, &room, "b1", "bob's words")
        .await;

    let resp = s
        .put(
            &room_path(&room, &format!("redact/{}/r1", enc(&alices))),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_err(
        &resp,
        403,
        "M_FORBIDDEN",
        "bob (power 0) redacts alice's event",
    );
    let resp = s
        .put(
            &room_path(&room, &format!("redact/{}/r2", enc(&bobs))),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_ok(&resp, "bob redacts his own event");

    let (_, ev) = s
        .get(
            &room_path(&room, &format!("event/{}", enc(&alices))),
            alice.token(),
        )
        .await;
    assert_eq!(ev["content"]["body"], "alice's words", "{ev}");
    let (_, ev) = s
        .get(
            &room_path(&room, &format!("event/{}", enc(&bobs))),
            alice.token(),
        )
        .await;
    assert_eq!(ev["content"], json!({}), "{ev}");
}

#[tokio::test]
async fn redacted_member_event_keeps_membership() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    let member = state_path(&room, "m.room.member", &bob.user_id);
    let (st, body) = s
        .put(
            &member,
            bob.token(),
            &json!({ "membership": "join", "displayname": "Bobby" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let member_event = body["event_id"].as_str().unwrap().to_owned();

    let path = room_path(&room, &format!("redact/{}/r1", enc(&member_event)));
    assert_ok(
        &s.put(&path, alice.token(), &json!({})).await,
        "alice (power 100) redacts bob's member event",
    );
    let (st, ev) = s
        .get(
            &room_path(&room, &format!("event/{}", enc(&member_event))),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{ev}");
    assert_eq!(
        ev["content"],
        json!({ "membership": "join" }),
        "redaction keeps only `membership`: {ev}"
    );
    let (_, current) = s.get(&member, alice.token()).await;
    assert_eq!(
        current,
        json!({ "membership": "join" }),
        "current state is the redacted event: {current}"
    );
}

#[tokio::test]
async fn history_visibility_joined_hides_earlier_messages() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(
            &alice.access_token,
            &json!({
                "preset": "public_chat",
                "initial_state": [{
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": { "history_visibility": "joined" },
                }],
            }),
        )
        .await;
    s.send_message(&alice.access_token, &room, "t1", "before bob")
        .await;
    s.join(&bob.access_token, &room).await;
    s.send_message(&alice.access_token, &room, "t2", "after bob")
        .await;

    let page = messages(&s, &bob, &room, "dir=b&limit=100").await;
    let bodies = message_bodies(page["chunk"].as_array().unwrap());
    assert_eq!(
        bodies,
        vec!["after bob".to_owned()],
        "bob must only see messages from his join on: {page}"
    );

    let resp = s.sync(&bob.access_token, None, 0).await;
    let bodies = message_bodies(&timeline(&resp, &room));
    assert!(
        !bodies.contains(&"before bob".to_owned()),
        "initial sync leaks history: {resp}"
    );
    assert!(bodies.contains(&"after bob".to_owned()), "{resp}");
}
