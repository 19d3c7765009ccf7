//! Bounded fan-out and memory (issue 11): to-device messages and key requests reach only
//! servers that share a room with the requesting user, and no more of them per request than
//! configured; `sendToDevice` is idempotent per txnId; the room cache holds only rooms that exist,
//! within its capacity, and reloads evicted rooms; and the behaviour bugs found on the way
//! (redacted state in memory, `device_lists.left`, presence changes reaching other members).

use std::path::Path;

use futures_util::{stream, StreamExt};
use myelin_testing::http::{sync_from_until, PW};
use myelin_testing::{enc, timeline, Account, Config, StatusCode, TestServer};
use serde_json::{json, Value};

/// The configuration a stopped test server ran with: the saved one of a federating server, else
/// the default for its data dir (on the PostgreSQL database named in the dir, if any).
fn config_of(dir: &Path) -> Config {
    if let Ok(text) = std::fs::read_to_string(dir.join("test-federating.toml")) {
        return Config::from_toml_str(&text).expect("the saved config parses");
    }
    let mut config = Config::for_data_dir(dir.to_path_buf());
    if let Ok(url) = std::fs::read_to_string(dir.join("test-postgres-url")) {
        config.database.backend = "postgres".to_owned();
        config.database.url = Some(url);
        config.database.pool_size = 4;
    }
    config
}

/// The stopped server's use cases, on its database.
async fn reopen(dir: &Path) -> myelin::Myelin {
    myelin::Myelin::open(config_of(dir))
        .await
        .expect("reopen the stopped server's data")
}

fn token(account: &Account) -> &str {
    account.token().expect("token")
}

fn device(account: &Account) -> &str {
    &account.device_id
}

async fn send_to_device(
    server: &TestServer,
    from: &Account,
    txn_id: &str,
    messages: Value,
) -> (StatusCode, Value) {
    server
        .put(
            &format!("/_matrix/client/v3/sendToDevice/m.test/{}", enc(txn_id)),
            Some(token(from)),
            &json!({ "messages": messages }),
        )
        .await
}

fn to_device_events(sync: &Value) -> Vec<Value> {
    sync["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_device_to_invented_servers_is_capped_and_never_queued() {
    let server = TestServer::start_federating_with(|c| {
        c.resources.max_servers_per_request = 20;
    })
    .await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let bob_since = next_batch(&server.sync(token(&bob), None, 0).await);

    // 3,000 invented servers in one request: refused whole, before anything is queued.
    let many: serde_json::Map<String, Value> = (0..3_000)
        .map(|i| (format!("@u:s{i}.invalid"), json!({ "*": { "n": i } })))
        .collect();
    let (status, body) = send_to_device(&server, &alice, "many", Value::Object(many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errcode"], "M_INVALID_PARAM", "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("3000")),
        "{body}"
    );

    // Under the cap: the local recipient gets the message; the invented servers, which share
    // no room with alice, are dropped.
    let mut few: serde_json::Map<String, Value> = (0..10)
        .map(|i| (format!("@u:s{i}.invalid"), json!({ "*": { "n": i } })))
        .collect();
    few.insert(
        bob.user_id.clone(),
        json!({ device(&bob): { "hello": "bob" } }),
    );
    let (status, body) = send_to_device(&server, &alice, "few", Value::Object(few)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The server stays responsive: a read right after answers.
    let (status, body) = server
        .get("/_matrix/client/v3/account/whoami", Some(token(&alice)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sync = sync_from_until(&server, &bob, Some(&bob_since), "alice's message", |s| {
        !to_device_events(s).is_empty()
    })
    .await;
    assert_eq!(
        to_device_events(&sync)[0]["content"]["hello"],
        "bob",
        "{sync}"
    );

    // Key queries and claims over the cap are refused too.
    let users: serde_json::Map<String, Value> = (0..21)
        .map(|i| (format!("@u:s{i}.invalid"), json!([])))
        .collect();
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(token(&alice)),
            &json!({ "device_keys": users }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errcode"], "M_INVALID_PARAM", "{body}");

    // Nothing was queued for any invented server.
    let dir = server.stop().await;
    let myelin = reopen(dir.path()).await;
    let queued = myelin
        .services()
        .ctx
        .storage
        .outbox_destinations()
        .await
        .expect("read the outbox");
    assert!(queued.is_empty(), "outbox rows for {queued:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_requests_reach_only_servers_sharing_a_room() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    let (status, body) = b
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(token(&bob)),
            &json!({ "device_keys": {
                "user_id": bob.user_id, "device_id": device(&bob),
                "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                "keys": { format!("curve25519:{}", device(&bob)): "bobkey" },
                "signatures": {},
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let query = |users: Vec<&str>| {
        let users: serde_json::Map<String, Value> = users
            .into_iter()
            .map(|u| (u.to_owned(), json!([])))
            .collect();
        json!({ "device_keys": users, "timeout": 10_000 })
    };
    let b_name = b.loopback_server_name().to_owned();

    // B shares no room with alice yet, and the invented server never will: both are failures,
    // neither contacted.
    let (status, body) = a
        .post(
            "/_matrix/client/v3/keys/query",
            Some(token(&alice)),
            &query(vec![&bob.user_id, "@x:invented.invalid"]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for server in [b_name.as_str(), "invented.invalid"] {
        let error = body["failures"][server]["error"].as_str().unwrap_or("");
        assert!(error.contains("shares no room"), "{server}: {body}");
    }
    assert!(body["device_keys"][&bob.user_id].is_null(), "{body}");
    let (status, body) = a
        .post(
            "/_matrix/client/v3/keys/claim",
            Some(token(&alice)),
            &json!({ "one_time_keys": { "@x:invented.invalid": { "DEV": "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["failures"]["invented.invalid"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("shares no room")),
        "{body}"
    );

    // Once bob joins alice's room, B answers for him.
    let room_id = a
        .create_room(token(&alice), &json!({ "preset": "public_chat" }))
        .await;
    let (status, body) = b
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                enc(&room_id),
                enc(a.loopback_server_name())
            ),
            Some(token(&bob)),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = a
        .post(
            "/_matrix/client/v3/keys/query",
            Some(token(&alice)),
            &query(vec![&bob.user_id, "@x:invented.invalid"]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["failures"][&b_name].is_null(), "{body}");
    assert_eq!(
        body["device_keys"][&bob.user_id][device(&bob)]["keys"]
            [format!("curve25519:{}", device(&bob))],
        "bobkey",
        "{body}"
    );
    assert!(body["failures"]["invented.invalid"].is_object(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_device_retried_with_the_same_txn_id_delivers_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let since = next_batch(&server.sync(token(&bob), None, 0).await);
    let to_bob = |n: u32| json!({ bob.user_id.clone(): { device(&bob): { "n": n } } });

    for (txn, n) in [("t1", 1), ("t1", 1), ("t2", 2), ("t1", 1)] {
        let (status, body) = send_to_device(&server, &alice, txn, to_bob(n)).await;
        assert_eq!(status, StatusCode::OK, "{txn}: {body}");
    }
    let sync = server.sync(token(&bob), Some(&since), 0).await;
    let got: Vec<Value> = to_device_events(&sync)
        .iter()
        .map(|e| e["content"]["n"].clone())
        .collect();
    assert_eq!(got, [json!(1), json!(2)], "{sync}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_existing_rooms_are_cached() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(server.create_room(token(&alice), &json!({})).await);
    }
    let statuses: Vec<StatusCode> = stream::iter(0..5_000)
        .map(|i| {
            let (server, alice) = (&server, &alice);
            async move {
                let path = format!(
                    "/_matrix/client/v3/rooms/{}/state",
                    enc(&format!("!random{i}:localhost"))
                );
                server.get(&path, Some(token(alice))).await.0
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::FORBIDDEN),
        "{:?}",
        statuses.iter().find(|s| **s != StatusCode::FORBIDDEN)
    );
    let (status, _) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state", enc(&rooms[0])),
            Some(token(&alice)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The same lookups on the same database, observed from inside: unknown rooms leave no
    // cache entry behind, existing ones are cached.
    let dir = server.stop().await;
    let myelin = reopen(dir.path()).await;
    let services = myelin.services();
    for i in 0..5_000 {
        let room = ruma_room_id(&format!("!random{i}:localhost"));
        assert!(services.rooms.room_state(&room).await.is_err());
    }
    assert_eq!(services.rooms.room_cache_len(), 0);
    for room in &rooms {
        services
            .rooms
            .room_state(&ruma_room_id(room))
            .await
            .expect("an existing room loads");
    }
    assert_eq!(services.rooms.room_cache_len(), rooms.len());
}

fn ruma_room_id(id: &str) -> myelin_federation::ruma::OwnedRoomId {
    myelin_federation::ruma::OwnedRoomId::try_from(id).expect("room ID")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_beyond_the_cache_capacity_still_read_and_write() {
    let server = TestServer::start_with(|c| c.resources.room_cache_capacity = 2).await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let mut rooms = Vec::new();
    for _ in 0..5 {
        let room = server
            .create_room(token(&alice), &json!({ "preset": "public_chat" }))
            .await;
        server.join(token(&bob), &room).await;
        rooms.push(room);
    }
    let since = next_batch(&server.sync(token(&bob), None, 0).await);
    for round in 0..2 {
        for (i, room) in rooms.iter().enumerate() {
            server
                .send_message(
                    token(&alice),
                    room,
                    &format!("m{round}-{i}"),
                    &format!("round {round} room {i}"),
                )
                .await;
            let (status, state) = server
                .get(
                    &format!("/_matrix/client/v3/rooms/{}/state", enc(room)),
                    Some(token(&bob)),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{state}");
            let members = state
                .as_array()
                .expect("state list")
                .iter()
                .filter(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "join")
                .count();
            assert_eq!(members, 2, "{state}");
        }
    }
    let sync = server.sync(token(&bob), Some(&since), 0).await;
    for (i, room) in rooms.iter().enumerate() {
        let bodies: Vec<String> = timeline(&sync, room)
            .iter()
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            bodies,
            [format!("round 0 room {i}"), format!("round 1 room {i}")],
            "{sync}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_state_event_is_redacted_in_current_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(
            token(&alice),
            &json!({ "preset": "public_chat", "visibility": "public" }),
        )
        .await;
    let topic_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
        enc(&room)
    );
    let (status, body) = server
        .put(
            &topic_path,
            Some(token(&alice)),
            &json!({ "topic": "the secret plan" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let topic_id = body["event_id"].as_str().expect("event_id").to_owned();
    let (status, body) = server
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&room),
                enc(&topic_id)
            ),
            Some(token(&alice)),
            &json!({ "reason": "oops" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = server.get(&topic_path, Some(token(&alice))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}), "the topic content is gone");
    let (status, state) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
            Some(token(&alice)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    let topic = state
        .as_array()
        .expect("state list")
        .iter()
        .find(|e| e["type"] == "m.room.topic")
        .cloned()
        .expect("the topic event stays in state");
    assert_eq!(topic["event_id"], topic_id.as_str());
    assert_eq!(topic["content"], json!({}), "{topic}");
    // The summary and the directory read the in-memory state.
    let (status, summary) = server
        .get(
            &format!("/_matrix/client/v1/room_summary/{}", enc(&room)),
            Some(token(&alice)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert!(summary.get("topic").is_none(), "{summary}");
    let (status, public) = server
        .get("/_matrix/client/v3/publicRooms", Some(token(&alice)))
        .await;
    assert_eq!(status, StatusCode::OK, "{public}");
    let listed = public["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|r| r["room_id"] == room.as_str())
        .cloned()
        .expect("the room is listed");
    assert!(listed.get("topic").is_none(), "{listed}");

    // A newcomer's sync sees the redacted form only.
    server.join(token(&bob), &room).await;
    let sync = server.sync(token(&bob), None, 0).await;
    assert!(
        !sync.to_string().contains("the secret plan"),
        "the redacted topic leaks: {sync}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_lists_report_users_who_stop_or_start_sharing_a_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server
        .create_room(token(&alice), &json!({ "preset": "public_chat" }))
        .await;
    let other = server
        .create_room(token(&carol), &json!({ "preset": "public_chat" }))
        .await;
    server.join(token(&bob), &room).await;
    server.join(token(&bob), &other).await;
    let bob_since = next_batch(&server.sync(token(&bob), None, 0).await);
    let alice_since = next_batch(&server.sync(token(&alice), None, 0).await);

    // Carol comes to share a room with alice: she is news for alice's device tracking.
    server.join(token(&carol), &room).await;
    let sync = sync_from_until(
        &server,
        &alice,
        Some(&alice_since),
        "carol in changed",
        |s| {
            s["device_lists"]["changed"]
                .as_array()
                .is_some_and(|c| c.contains(&json!(carol.user_id)))
        },
    )
    .await;
    let alice_since = next_batch(&sync);

    // Alice leaves the only room she shares with bob: each hears the other left.
    server.leave(token(&alice), &room).await;
    let sync = sync_from_until(&server, &bob, Some(&bob_since), "alice in left", |s| {
        s["device_lists"]["left"]
            .as_array()
            .is_some_and(|l| l.contains(&json!(alice.user_id)))
    })
    .await;
    // Carol still shares another room with bob: not in his `left`.
    assert!(
        !sync["device_lists"]["left"]
            .as_array()
            .expect("left")
            .contains(&json!(carol.user_id)),
        "{sync}"
    );
    sync_from_until(
        &server,
        &alice,
        Some(&alice_since),
        "bob and carol in left",
        |s| {
            let left = s["device_lists"]["left"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            left.contains(&json!(bob.user_id)) && left.contains(&json!(carol.user_id))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_unavailable_reaches_the_other_member() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(token(&alice), &json!({ "preset": "public_chat" }))
        .await;
    server.join(token(&bob), &room).await;
    let since = next_batch(&server.sync(token(&bob), None, 0).await);

    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)),
            Some(token(&alice)),
            &json!({ "presence": "unavailable", "status_msg": "away" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sync = sync_from_until(&server, &bob, Some(&since), "alice unavailable", |s| {
        s["presence"]["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["sender"] == alice.user_id.as_str() && e["content"]["presence"] == "unavailable"
            })
        })
    })
    .await;
    let event = sync["presence"]["events"]
        .as_array()
        .expect("presence events")
        .iter()
        .find(|e| e["sender"] == alice.user_id.as_str())
        .cloned()
        .expect("alice's presence");
    assert_eq!(event["content"]["status_msg"], "away", "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_with_a_one_room_cache_all_land() {
    let server = TestServer::start_with(|c| c.resources.room_cache_capacity = 1).await;
    let alice = server.register("alice", PW).await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(server.create_room(token(&alice), &json!({})).await);
    }
    // Every send evicts another room's state while writers of that room may hold its lock.
    let sends = (0..30).map(|i| {
        let (server, alice, room) = (&server, &alice, &rooms[i % rooms.len()]);
        async move {
            let path = format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/c{i}",
                enc(room)
            );
            let body = json!({ "msgtype": "m.text", "body": format!("c{i}") });
            server.put(&path, Some(token(alice)), &body).await
        }
    });
    for (status, body) in stream::iter(sends)
        .buffer_unordered(6)
        .collect::<Vec<_>>()
        .await
    {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for (r, room) in rooms.iter().enumerate() {
        let (status, page) = server
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                    enc(room)
                ),
                Some(token(&alice)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut bodies: Vec<String> = page["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect();
        bodies.sort();
        let mut expected: Vec<String> = (0..30)
            .filter(|i| i % rooms.len() == r)
            .map(|i| format!("c{i}"))
            .collect();
        expected.sort();
        assert_eq!(bodies, expected, "{page}");
    }
}

/// The per-request cap cannot be repeated without end: each user has a budget of servers named
/// over time, and a request that would overdraw it is refused with 429 whole.
#[tokio::test]
async fn servers_named_over_time_are_budgeted_per_user() {
    let server = TestServer::start_federating_with(|c| {
        c.rate_limits.remote_fan_out = myelin::config::Rate {
            per_minute: 1,
            burst: 6,
        };
    })
    .await;
    let alice = server.register("alice", PW).await;
    let carol = server.register("carol", PW).await;
    let naming = |from: usize| -> Value {
        Value::Object(
            (from..from + 4)
                .map(|i| (format!("@u:s{i}.invalid"), json!({ "*": { "n": i } })))
                .collect(),
        )
    };
    let (status, body) = send_to_device(&server, &alice, "b1", naming(0)).await;
    assert_eq!(status, StatusCode::OK, "4 of 6: {body}");
    let (status, body) = send_to_device(&server, &alice, "b2", naming(4)).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "4 more of 2 left: {body}"
    );
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{body}");
    assert!(body["retry_after_ms"].as_u64().is_some(), "{body}");
    // Key queries draw on the same budget; local users cost nothing; others have their own.
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(token(&alice)),
            &json!({ "device_keys": { "@u:s9.invalid": [], "@u:s10.invalid": [], "@u:s11.invalid": [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(token(&alice)),
            &json!({ "device_keys": { carol.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a local query: {body}");
    let (status, body) = send_to_device(&server, &carol, "c1", naming(0)).await;
    assert_eq!(status, StatusCode::OK, "carol's own budget: {body}");
}
