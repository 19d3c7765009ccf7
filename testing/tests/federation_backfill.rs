//! Backfill over federation: a user of B joins a room on A that already has 100 messages; paging
//! back with `/messages` past B's join makes B fetch the history from A (`/backfill`), so every
//! message arrives exactly once, newest first, down to the room's create event; the room then
//! goes on as before.

use std::time::{Duration, Instant};

use myelin_testing::http::register;
use myelin_testing::{enc, message_bodies, timeline, Account, StatusCode, TestServer};
use serde_json::{json, Value};

const MESSAGES: usize = 100;
const PAGE: usize = 30;

/// One `/messages` page, backward from `from` (or from the newest event).
async fn page_back(
    server: &TestServer,
    account: &Account,
    room_id: &str,
    from: Option<&str>,
) -> Value {
    let mut path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={PAGE}",
        enc(room_id)
    );
    if let Some(from) = from {
        path.push_str(&format!("&from={}", enc(from)));
    }
    let (status, body) = server.get(&path, account.token()).await;
    assert_eq!(status, StatusCode::OK, "messages from {from:?}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_back_fetches_history_from_the_room_server() {
    // Alice sends 100 messages in a row: more than the default send budget allows.
    let a = TestServer::start_federating_with(|c| c.rate_limits.enabled = false).await;
    let b = TestServer::start_federating().await;
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let alice_token = alice.token().expect("token");
    let bob_token = bob.token().expect("token");

    let room_id = a
        .create_room(alice_token, &json!({ "preset": "public_chat" }))
        .await;
    let sent: Vec<String> = (0..MESSAGES).map(|i| format!("history {i}")).collect();
    for (i, text) in sent.iter().enumerate() {
        a.send_message(alice_token, &room_id, &format!("h{i}"), text)
            .await;
    }

    let (status, body) = b
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                enc(&room_id),
                enc(a.loopback_server_name())
            ),
            Some(bob_token),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "join by room ID and via: {body}");

    // B holds the room from bob's join on: his sync shows none of the history.
    let sync = b.sync(bob_token, None, 0).await;
    assert!(
        message_bodies(&timeline(&sync, &room_id)).is_empty(),
        "no history before backfill: {sync}"
    );
    let prev_batch = sync["rooms"]["join"][&room_id]["timeline"]["prev_batch"]
        .as_str()
        .expect("prev_batch")
        .to_owned();
    let next_batch = sync["next_batch"].as_str().expect("next_batch").to_owned();

    // Page back until the create event, an empty chunk or no `end`.
    let mut bodies: Vec<String> = Vec::new();
    let mut from = Some(prev_batch);
    let mut reached_create = false;
    for _ in 0..20 {
        let page = page_back(&b, &bob, &room_id, from.as_deref()).await;
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        bodies.extend(message_bodies(&chunk));
        reached_create |= chunk.iter().any(|e| e["type"] == "m.room.create");
        from = page["end"].as_str().map(str::to_owned);
        if chunk.is_empty() || reached_create || from.is_none() {
            break;
        }
    }
    let expected: Vec<String> = sent.iter().rev().cloned().collect();
    assert_eq!(bodies, expected, "every message once, newest first");
    assert!(reached_create, "paging reaches the room's create event");

    // A second reader path: paging from the newest event (no `from`) sees the same history, now
    // served from B's storage.
    let page = page_back(&b, &bob, &room_id, None).await;
    let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
    let newest: Vec<String> = message_bodies(&chunk);
    assert_eq!(newest, expected[..newest.len()].to_vec(), "{page}");
    assert!(!newest.is_empty());

    // Nothing broke: a new message from alice still reaches bob's incremental sync, alone.
    a.send_message(alice_token, &room_id, "after", "after backfill")
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut since = next_batch;
    let mut seen: Vec<String> = Vec::new();
    while !seen.iter().any(|b| b == "after backfill") {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the new message; saw {seen:?}"
        );
        let sync = b.sync(bob_token, Some(&since), 2_000).await;
        seen.extend(message_bodies(&timeline(&sync, &room_id)));
        since = sync["next_batch"].as_str().expect("next_batch").to_owned();
    }
    assert_eq!(
        seen,
        ["after backfill"],
        "backfilled history is not new to sync"
    );
}
