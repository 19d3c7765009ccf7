//! `/timestamp_to_event`: the event nearest a time, from the client API and, when the local
//! server has nothing there (history from before it joined), from another server in the room.

use std::time::Duration;

use myelin_testing::{enc, StatusCode, TestServer};
use serde_json::{json, Value};

async fn event_ts(server: &TestServer, token: &str, room: &str, event_id: &str) -> u64 {
    let (status, event) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(room),
                enc(event_id)
            ),
            Some(token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    event["origin_server_ts"]
        .as_u64()
        .expect("origin_server_ts")
}

async fn nearest(
    server: &TestServer,
    token: &str,
    room: &str,
    ts: u64,
    dir: &str,
) -> (StatusCode, Value) {
    server
        .get(
            &format!(
                "/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir={dir}",
                enc(room)
            ),
            Some(token),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_nearest_a_time_locally_and_over_federation() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", "correct horse battery").await;
    let bob = b.register("bob", "correct horse battery").await;
    let eve = a.register("eve", "correct horse battery").await;
    let alice_token = alice.token().expect("token");
    let room = a
        .create_room(alice_token, &json!({ "preset": "public_chat" }))
        .await;
    let first = a.send_message(alice_token, &room, "t1", "first").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = a.send_message(alice_token, &room, "t2", "second").await;
    let first_ts = event_ts(&a, alice_token, &room, &first).await;
    let second_ts = event_ts(&a, alice_token, &room, &second).await;
    assert!(second_ts > first_ts);

    let (status, found) = nearest(&a, alice_token, &room, first_ts, "f").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["event_id"], first.as_str());
    assert_eq!(found["origin_server_ts"], first_ts);
    let (_, found) = nearest(&a, alice_token, &room, first_ts + 1, "f").await;
    assert_eq!(
        found["event_id"],
        second.as_str(),
        "the first event at or after the time"
    );
    let (_, found) = nearest(&a, alice_token, &room, second_ts - 1, "b").await;
    assert_eq!(
        found["event_id"],
        first.as_str(),
        "the last event at or before the time"
    );
    let (status, body) = nearest(&a, alice_token, &room, second_ts + 60_000, "f").await;
    assert_eq!(
        (status, &body["errcode"]),
        (StatusCode::NOT_FOUND, &json!("M_NOT_FOUND")),
        "{body}"
    );
    let (status, body) = nearest(&a, alice_token, &room, first_ts, "sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = nearest(&a, eve.token().expect("token"), &room, first_ts, "f").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a non-member may not look: {body}"
    );

    // Bob joins from B, which has nothing from before its join: B asks A.
    let (status, body) = b
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                enc(&room),
                enc(a.server_name())
            ),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, found) = nearest(&b, bob.token().expect("token"), &room, first_ts, "b").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["event_id"], first.as_str(), "found through A");
}
