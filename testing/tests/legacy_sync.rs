//! The deprecated sync endpoints over HTTP: `/initialSync` (with `archived`),
//! `/rooms/{roomId}/initialSync`, `/events` long-polling and peeking (with typing, receipts and
//! presence), `/events/{eventId}`, and that all of them refuse what the reader may not see.

use std::time::Duration;

use myelin_testing::http::{assert_err, assert_ok, register, room_path};
use myelin_testing::{enc, TestServer};
use serde_json::{json, Value};

fn bodies(chunk: &Value) -> Vec<&str> {
    chunk
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["content"]["body"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn initial_sync_then_events_long_poll() {
    let s = TestServer::start().await;
    let (alice, bob) = (register(&s, "alice").await, register(&s, "bob").await);
    let (at, bt) = (alice.token().expect("token"), bob.token().expect("token"));
    let room = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    s.join(bt, &room).await;
    for i in 0..3 {
        s.send_message(at, &room, &format!("t{i}"), &format!("m{i}"))
            .await;
    }
    let left = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    s.join(bt, &left).await;
    s.leave(bt, &left).await;

    let initial = s
        .get("/_matrix/client/v3/initialSync?limit=2", Some(bt))
        .await;
    assert_ok(&initial, "initialSync");
    let rooms = initial.1["rooms"].as_array().expect("rooms");
    let joined = rooms
        .iter()
        .find(|r| r["room_id"] == room.as_str())
        .expect("joined room listed");
    assert_eq!(joined["membership"], "join");
    assert_eq!(bodies(&joined["messages"]["chunk"]), ["m1", "m2"]);
    assert!(rooms.iter().all(|r| r["room_id"] != left.as_str()));
    let archived = s
        .get("/_matrix/client/v3/initialSync?archived=true", Some(bt))
        .await;
    assert!(archived.1["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .any(|r| r["room_id"] == left.as_str() && r["membership"] == "leave"));

    // `/events` from initialSync's `end`: a long poll that a new message answers.
    let end = initial.1["end"].as_str().expect("end").to_owned();
    let poll = {
        let path = format!("/_matrix/client/v3/events?timeout=20000&from={}", enc(&end));
        let token = bt.to_owned();
        let s = &s;
        async move { s.get(&path, Some(&token)).await }
    };
    let send = async {
        // Sent after the token whether or not the poll is waiting yet: it sees it either way.
        s.send_message(at, &room, "t-live", "live").await
    };
    let (events, event_id) =
        tokio::time::timeout(Duration::from_secs(15), async { tokio::join!(poll, send) })
            .await
            .expect("the poll answered");
    assert_ok(&events, "/events");
    assert_eq!(bodies(&events.1["chunk"]), ["live"]);
    assert_eq!(events.1["start"], json!(end));

    let one = s
        .get(
            &format!("/_matrix/client/v3/events/{}", enc(&event_id)),
            Some(bt),
        )
        .await;
    assert_ok(&one, "/events/{eventId}");
    assert_eq!(one.1["content"]["body"], "live");

    assert_err(
        &s.get("/_matrix/client/v3/events?from=nonsense", Some(bt))
            .await,
        400,
        "M_INVALID_PARAM",
        "a bad from token",
    );
}

#[tokio::test]
async fn peeking_into_world_readable_rooms_only() {
    let s = TestServer::start().await;
    let (alice, eve) = (register(&s, "alice").await, register(&s, "eve").await);
    let (at, et) = (alice.token().expect("token"), eve.token().expect("token"));
    let open = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    assert_ok(
        &s.put(
            &room_path(&open, "state/m.room.history_visibility/"),
            Some(at),
            &json!({ "history_visibility": "world_readable" }),
        )
        .await,
        "make the room world_readable",
    );
    s.send_message(at, &open, "t1", "hello").await;
    let closed = s
        .create_room(at, &json!({ "preset": "private_chat" }))
        .await;
    let secret = s.send_message(at, &closed, "t2", "secret").await;

    let peek = s.get(&room_path(&open, "initialSync"), Some(et)).await;
    assert_ok(&peek, "peek with /rooms/{roomId}/initialSync");
    assert_eq!(bodies(&peek.1["messages"]["chunk"]), ["hello"]);
    assert_err(
        &s.get(&room_path(&closed, "initialSync"), Some(et)).await,
        403,
        "M_FORBIDDEN",
        "initialSync of a room eve may not read",
    );

    let from = peek.1["messages"]["end"].as_str().expect("end").to_owned();
    s.send_message(at, &open, "t3", "news").await;
    let events = s
        .get(
            &format!(
                "/_matrix/client/v3/events?room_id={}&from={}&timeout=0",
                enc(&open),
                enc(&from)
            ),
            Some(et),
        )
        .await;
    assert_ok(&events, "peek with /events?room_id=");
    assert_eq!(bodies(&events.1["chunk"]), ["news"]);
    assert_err(
        &s.get(
            &format!(
                "/_matrix/client/v3/events?room_id={}&timeout=0",
                enc(&closed)
            ),
            Some(et),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "peeking into a private room",
    );
    assert_err(
        &s.get(
            &format!("/_matrix/client/v3/events/{}", enc(&secret)),
            Some(et),
        )
        .await,
        404,
        "M_NOT_FOUND",
        "an event of a room eve may not read",
    );
}

#[tokio::test]
async fn events_carry_typing_receipts_and_presence() {
    let s = TestServer::start().await;
    let (alice, bob) = (register(&s, "alice").await, register(&s, "bob").await);
    let (at, bt) = (alice.token().expect("token"), bob.token().expect("token"));
    let room = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    s.join(bt, &room).await;
    let message = s.send_message(at, &room, "t1", "read me").await;
    let now = s.get("/_matrix/client/v3/events?timeout=0", Some(at)).await;
    assert_ok(&now, "/events now");
    let from = now.1["end"].as_str().expect("end").to_owned();

    let typing = format!("typing/{}", enc(&bob.user_id));
    let body = json!({ "typing": true, "timeout": 30000 });
    assert_ok(
        &s.put(&room_path(&room, &typing), Some(bt), &body).await,
        "bob types",
    );
    let receipt = format!("receipt/m.read/{}", enc(&message));
    assert_ok(
        &s.post(&room_path(&room, &receipt), Some(bt), &json!({}))
            .await,
        "bob reads",
    );
    let presence = format!("/_matrix/client/v3/presence/{}/status", enc(&bob.user_id));
    let body = json!({ "presence": "online", "status_msg": "here" });
    assert_ok(&s.put(&presence, Some(bt), &body).await, "bob is online");

    let path = format!("/_matrix/client/v3/events?timeout=0&from={}", enc(&from));
    let events = s.get(&path, Some(at)).await;
    assert_ok(&events, "/events");
    let chunk = events.1["chunk"].as_array().expect("chunk");
    let of_type = |kind: &str| {
        chunk
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {chunk:?}"))
    };
    let typing = of_type("m.typing");
    assert_eq!(typing["room_id"], room.as_str());
    assert_eq!(typing["content"]["user_ids"], json!([bob.user_id]));
    let receipt = of_type("m.receipt");
    assert_eq!(receipt["room_id"], room.as_str());
    assert!(
        receipt["content"][&message]["m.read"][&bob.user_id]["ts"].is_u64(),
        "{receipt}"
    );
    let presence = of_type("m.presence");
    assert_eq!(presence["sender"], bob.user_id.as_str());
    assert_eq!(presence["content"]["status_msg"], "here");

    // From the batch's end nothing is repeated.
    let end = events.1["end"].as_str().expect("end");
    let path = format!("/_matrix/client/v3/events?timeout=0&from={}", enc(end));
    let again = s.get(&path, Some(at)).await;
    assert_ok(&again, "/events again");
    assert_eq!(again.1["chunk"], json!([]), "{}", again.1);
}
