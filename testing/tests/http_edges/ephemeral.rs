//! Ephemeral events: public and private read receipts, read markers, and typing.

use myelin_testing::http::{assert_err, assert_ok, ephemeral, room_path, PW};
use myelin_testing::{enc, StatusCode, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn receipts_public_private_and_read_markers() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    let e1 = s
        .send_message(&alice.access_token, &room, "t1", "one")
        .await;
    let e2 = s
        .send_message(&alice.access_token, &room, "t2", "two")
        .await;
    let alice_since = s.sync(&alice.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // bob: a private receipt on e1, a public one on e2, and a fully-read marker.
    let receipt = |ty: &str, ev: &str| room_path(&room, &format!("receipt/{ty}/{}", enc(ev)));
    assert_ok(
        &s.post(&receipt("m.read.private", &e1), bob.token(), &json!({}))
            .await,
        "private receipt",
    );
    assert_ok(
        &s.post(&receipt("m.read", &e2), bob.token(), &json!({}))
            .await,
        "public receipt",
    );
    assert_ok(
        &s.post(
            &room_path(&room, "read_markers"),
            bob.token(),
            &json!({ "m.fully_read": e2 }),
        )
        .await,
        "read markers",
    );
    let resp = s
        .post(&receipt("m.bogus", &e2), bob.token(), &json!({}))
        .await;
    assert_eq!(
        resp.0,
        StatusCode::BAD_REQUEST,
        "unknown receipt type: {}",
        resp.1
    );

    // alice sees bob's public receipt only.
    let resp = s.sync(&alice.access_token, Some(&alice_since), 5_000).await;
    let receipts: Vec<Value> = ephemeral(&resp, &room)
        .into_iter()
        .filter(|e| e["type"] == "m.receipt")
        .collect();
    assert!(
        receipts
            .iter()
            .any(|r| r["content"][&e2]["m.read"].get(&bob.user_id).is_some()),
        "alice lacks bob's public receipt: {resp}"
    );
    assert!(
        !resp.to_string().contains("m.read.private"),
        "bob's private receipt leaked to alice: {resp}"
    );
    assert!(
        !resp.to_string().contains("m.fully_read"),
        "bob's read marker leaked to alice: {resp}"
    );

    // bob sees his own private receipt and his fully-read marker.
    let resp = s.sync(&bob.access_token, None, 0).await;
    let receipts: Vec<Value> = ephemeral(&resp, &room)
        .into_iter()
        .filter(|e| e["type"] == "m.receipt")
        .collect();
    assert!(
        receipts.iter().any(|r| r["content"][&e1]["m.read.private"]
            .get(&bob.user_id)
            .is_some()),
        "bob lacks his own private receipt: {resp}"
    );
    let fully_read = resp["rooms"]["join"][&room]["account_data"]["events"]
        .as_array()
        .and_then(|evs| evs.iter().find(|e| e["type"] == "m.fully_read").cloned())
        .unwrap_or_else(|| panic!("no m.fully_read for bob: {resp}"));
    assert_eq!(
        fully_read["content"]["event_id"],
        e2.as_str(),
        "{fully_read}"
    );
}

#[tokio::test]
async fn typing_start_stop_and_only_for_yourself() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    let since = s.sync(&alice.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let typing = |user: &str| room_path(&room, &format!("typing/{}", enc(user)));
    let resp = s
        .put(
            &typing(&alice.user_id),
            bob.token(),
            &json!({ "typing": true, "timeout": 30000 }),
        )
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "bob sets alice typing");

    assert_ok(
        &s.put(
            &typing(&bob.user_id),
            bob.token(),
            &json!({ "typing": true, "timeout": 30000 }),
        )
        .await,
        "bob typing",
    );
    let resp = s.sync(&alice.access_token, Some(&since), 5_000).await;
    let users = ephemeral(&resp, &room)
        .into_iter()
        .find(|e| e["type"] == "m.typing")
        .unwrap_or_else(|| panic!("no m.typing: {resp}"))["content"]["user_ids"]
        .clone();
    assert_eq!(users, json!([bob.user_id]), "{resp}");

    let since = resp["next_batch"].as_str().unwrap().to_owned();
    assert_ok(
        &s.put(
            &typing(&bob.user_id),
            bob.token(),
            &json!({ "typing": false }),
        )
        .await,
        "bob stops",
    );
    let resp = s.sync(&alice.access_token, Some(&since), 5_000).await;
    let users = ephemeral(&resp, &room)
        .into_iter()
        .find(|e| e["type"] == "m.typing")
        .unwrap_or_else(|| panic!("typing stop not synced: {resp}"))["content"]["user_ids"]
        .clone();
    assert_eq!(users, json!([]), "{resp}");
}
