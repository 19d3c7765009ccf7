//! `/sync`: long-poll wake-ups (for messages and for invites, typing and account data),
//! tokens across restarts, invites, newly joined rooms, gaps, filters and `use_state_after`.

use std::time::{Duration, Instant};

use myelin_testing::http::{assert_err, assert_ok, ephemeral, room_path, C, PW};
use myelin_testing::{enc, timeline, Account, StatusCode, TestServer};
use serde_json::{json, Value};

use crate::{ids, messages, send_many, state_path};

/// Starts a `/sync?timeout=10000&since=…` in the background, runs `action`,
/// and returns the long-poll's response, asserting it woke up early.
async fn long_poll_around<F, Fut>(
    s: &std::sync::Arc<TestServer>,
    who: &Account,
    what: &str,
    action: F,
) -> Value
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let since = s.sync(&who.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll = {
        let (s, token) = (s.clone(), who.access_token.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = s.sync(&token, Some(&since), 10_000).await;
            (started.elapsed(), resp)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    action().await;
    let (elapsed, resp) = poll.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(8),
        "{what}: long-poll timed out instead of waking ({elapsed:?}): {resp}"
    );
    resp
}

#[tokio::test]
async fn sync_long_poll_wakes_up_on_new_message() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let since = s.sync(&alice.access_token, None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    let poll = {
        let (s, token, since) = (s.clone(), alice.access_token.clone(), since.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = s.sync(&token, Some(&since), 10_000).await;
            (started.elapsed(), resp)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let event_id = s
        .send_message(&alice.access_token, &room, "wake", "wake up")
        .await;

    let (elapsed, resp) = poll.await.unwrap();
    let events = timeline(&resp, &room);
    assert!(
        events.iter().any(|e| e["event_id"] == event_id.as_str()),
        "long-poll response lacks the new message: {resp}"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "sync timed out instead of waking up ({elapsed:?})"
    );
    assert_ne!(
        resp["next_batch"],
        since.as_str(),
        "next_batch must advance"
    );
}

#[tokio::test]
async fn long_poll_wakes_for_invites_typing_and_account_data() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    let resp = long_poll_around(&s, &bob, "invite", || {
        s.invite(&alice.access_token, &room, &bob.user_id)
    })
    .await;
    assert!(
        resp["rooms"]["invite"][&room].is_object(),
        "invite not in woken sync: {resp}"
    );

    s.join(&bob.access_token, &room).await;
    let typing = room_path(&room, &format!("typing/{}", enc(&bob.user_id)));
    let resp = long_poll_around(&s, &alice, "typing", || async {
        assert_ok(
            &s.put(
                &typing,
                bob.token(),
                &json!({ "typing": true, "timeout": 20000 }),
            )
            .await,
            "typing",
        );
    })
    .await;
    assert!(
        ephemeral(&resp, &room)
            .iter()
            .any(|e| e["type"] == "m.typing"),
        "typing not in woken sync: {resp}"
    );

    let ad = format!(
        "{C}/user/{}/account_data/com.example.wake",
        enc(&alice.user_id)
    );
    let resp = long_poll_around(&s, &alice, "account data", || async {
        assert_ok(
            &s.put(&ad, alice.token(), &json!({ "x": 1 })).await,
            "account data",
        );
    })
    .await;
    assert!(
        resp["account_data"]["events"]
            .as_array()
            .is_some_and(|evs| evs.iter().any(|e| e["type"] == "com.example.wake")),
        "account data not in woken sync: {resp}"
    );
}

#[tokio::test]
async fn sync_token_survives_restart() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let before = send_many(&s, &alice, &room, "before-", 3).await;
    let first = s.sync(&alice.access_token, None, 0).await;
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();
    let initial_ids: Vec<Value> = timeline(&first, &room)
        .iter()
        .map(|e| e["event_id"].clone())
        .collect();
    for id in &before {
        assert!(
            initial_ids.contains(&json!(id)),
            "initial sync lacks {id}: {first}"
        );
    }

    let s = s.restarted().await;
    let after = send_many(&s, &alice, &room, "after-", 2).await;

    let resp = s.sync(&alice.access_token, Some(&since), 5_000).await;
    let got: Vec<String> = timeline(&resp, &room)
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        got, after,
        "incremental sync from a pre-restart token: {resp}"
    );

    // The new token keeps working, and yields nothing new.
    let next = resp["next_batch"].as_str().unwrap().to_owned();
    let resp = s.sync(&alice.access_token, Some(&next), 0).await;
    assert!(timeline(&resp, &room).is_empty(), "events repeated: {resp}");
}

#[tokio::test]
async fn graceful_stop_with_pending_long_poll() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let alice = s.register("alice", PW).await;
    let since = s.sync(&alice.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!(
        "{}{C}/sync?timeout=10000&since={}",
        s.base_url(),
        enc(&since)
    );
    let token = alice.access_token.clone();
    let pending = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let s = std::sync::Arc::into_inner(s).expect("sole owner");
    let started = Instant::now();
    let dir = s.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stop took {:?}",
        started.elapsed()
    );
    let _ = pending.await.unwrap();

    // And the data is intact afterwards.
    let s = TestServer::restart(dir).await;
    assert_ok(
        &s.get(&format!("{C}/account/whoami"), alice.token()).await,
        "whoami after restart",
    );
}

#[tokio::test]
async fn invite_shows_in_sync_with_stripped_state() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let since = s.sync(&bob.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let room = s
        .create_room(&alice.access_token, &json!({ "name": "Invitation" }))
        .await;
    s.invite(&alice.access_token, &room, &bob.user_id).await;

    let resp = s.sync(&bob.access_token, Some(&since), 5_000).await;
    let stripped = resp["rooms"]["invite"][&room]["invite_state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no invite for bob: {resp}"))
        .clone();
    assert!(
        stripped.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == bob.user_id.as_str()
            && e["content"]["membership"] == "invite"),
        "invite_state lacks bob's invite: {resp}"
    );
    assert!(
        stripped
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Invitation"),
        "invite_state lacks the room name: {resp}"
    );
    assert!(
        resp["rooms"]["join"].get(&room).is_none(),
        "invited room listed as joined: {resp}"
    );
}

#[tokio::test]
async fn newly_joined_room_in_incremental_sync_has_full_state() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(
            &alice.access_token,
            &json!({ "preset": "public_chat", "name": "Lobby", "topic": "Welcome" }),
        )
        .await;
    send_many(&s, &alice, &room, "old-", 3).await;
    let since = s.sync(&bob.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    s.join(&bob.access_token, &room).await;

    let resp = s.sync(&bob.access_token, Some(&since), 5_000).await;
    let joined = &resp["rooms"]["join"][&room];
    assert!(
        joined.is_object(),
        "joined room missing from incremental sync: {resp}"
    );
    let mut all: Vec<Value> = joined["state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    all.extend(timeline(&resp, &room));
    for (ty, key) in [
        ("m.room.create", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", alice.user_id.as_str()),
        ("m.room.member", bob.user_id.as_str()),
    ] {
        assert!(
            all.iter().any(|e| e["type"] == ty && e["state_key"] == key),
            "({ty}, {key:?}) missing from bob's first sync of the room: {resp}"
        );
    }
}

#[tokio::test]
async fn limited_incremental_sync_reports_gap_state_and_prev_batch() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    let since = s.sync(&bob.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // A state change, then enough messages to push it out of a 5-event timeline.
    assert_ok(
        &s.put(
            &state_path(&room, "m.room.name", ""),
            alice.token(),
            &json!({ "name": "Renamed" }),
        )
        .await,
        "rename",
    );
    let sent = send_many(&s, &alice, &room, "m", 20).await;

    let filter = enc(&json!({ "room": { "timeline": { "limit": 5 } } }).to_string());
    let (st, resp) = s
        .get(
            &format!("{C}/sync?timeout=0&since={}&filter={filter}", enc(&since)),
            bob.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    let tl = &resp["rooms"]["join"][&room]["timeline"];
    assert_eq!(ids(&tl["events"]), sent[15..].to_vec(), "{resp}");
    assert_eq!(tl["limited"], true, "{resp}");
    let state = resp["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Renamed"),
        "state change in the gap missing from `state`: {resp}"
    );

    // prev_batch continues exactly where the timeline starts.
    let prev = tl["prev_batch"].as_str().expect("prev_batch");
    let page = messages(
        &s,
        &bob,
        &room,
        &format!("dir=b&limit=5&from={}", enc(prev)),
    )
    .await;
    assert_eq!(
        ids(&page["chunk"]),
        sent[10..15].iter().rev().cloned().collect::<Vec<_>>(),
        "{page}"
    );
}

#[tokio::test]
async fn filters_stored_and_applied_in_sync() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let sent = send_many(&s, &alice, &room, "m", 5).await;
    let filter_base = format!("{C}/user/{}/filter", enc(&alice.user_id));

    let filter = json!({ "room": { "timeline": { "limit": 2 } } });
    let (st, body) = s.post(&filter_base, alice.token(), &filter).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let filter_id = body["filter_id"].as_str().expect("filter_id").to_owned();
    let (st, stored) = s
        .get(&format!("{filter_base}/{}", enc(&filter_id)), alice.token())
        .await;
    assert_eq!(st, StatusCode::OK, "{stored}");
    assert_eq!(stored["room"]["timeline"]["limit"], 2, "{stored}");
    assert_err(
        &s.get(&format!("{filter_base}/999999"), alice.token()).await,
        404,
        "M_NOT_FOUND",
        "unknown filter id",
    );

    let sync_with = |filter: String| {
        let (s, alice) = (&s, &alice);
        async move {
            let (st, resp) = s
                .get(
                    &format!("{C}/sync?timeout=0&filter={}", enc(&filter)),
                    alice.token(),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "sync with filter {filter}: {resp}");
            resp
        }
    };

    let resp = sync_with(filter_id).await;
    let tl = &resp["rooms"]["join"][&room]["timeline"];
    assert_eq!(
        ids(&tl["events"]),
        sent[3..].to_vec(),
        "stored filter limit 2: {resp}"
    );
    assert_eq!(tl["limited"], true, "{resp}");
    assert!(
        tl["prev_batch"].is_string(),
        "limited timeline needs prev_batch: {resp}"
    );

    let resp = sync_with(json!({ "room": { "timeline": { "limit": 1 } } }).to_string()).await;
    assert_eq!(
        ids(&resp["rooms"]["join"][&room]["timeline"]["events"]),
        sent[4..].to_vec(),
        "inline filter: {resp}"
    );

    let resp = sync_with(
        json!({ "room": { "timeline": { "limit": 50, "types": ["m.room.message"] } } }).to_string(),
    )
    .await;
    assert_eq!(
        ids(&resp["rooms"]["join"][&room]["timeline"]["events"]),
        sent,
        "types filter: {resp}"
    );
}

#[tokio::test]
async fn sync_use_state_after() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let since = s.sync(&alice.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ok(
        &s.put(
            &state_path(&room, "m.room.name", ""),
            alice.token(),
            &json!({ "name": "After" }),
        )
        .await,
        "rename",
    );
    s.send_message(&alice.access_token, &room, "t1", "hello")
        .await;

    let (st, resp) = s
        .get(
            &format!(
                "{C}/sync?timeout=0&use_state_after=true&since={}",
                enc(&since)
            ),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    let (_, versions) = s.get("/_matrix/client/versions", None).await;
    let claims_1_16 = versions["versions"].as_array().unwrap().iter().any(|v| {
        v.as_str()
            .and_then(|v| v.strip_prefix("v1."))
            .and_then(|minor| minor.parse::<u32>().ok())
            .is_some_and(|minor| minor >= 16)
    });
    let joined = &resp["rooms"]["join"][&room];
    if joined.get("state_after").is_none() {
        assert!(
            !claims_1_16,
            "server claims v1.16+ but ignores use_state_after: {resp}"
        );
        return;
    }
    assert!(
        joined.get("state").is_none(),
        "with use_state_after, `state` must be omitted: {resp}"
    );
    let state_after = joined["state_after"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        state_after
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "After"),
        "state_after must cover state changes in the timeline too: {resp}"
    );
}
