//! Error answers: the `errcode`s of malformed, unauthenticated, oversized and unknown
//! requests, awkward input (non-canonical numbers, odd state keys, NUL characters) and rate limits.

use myelin_testing::http::{assert_err, assert_ok, rate, room_path, C, PW};
use myelin_testing::{enc, message_bodies, StatusCode, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

use crate::{messages, state_path};

#[tokio::test]
async fn errcode_not_json_and_bad_json() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    let resp = s
        .request_raw(
            Method::POST,
            &format!("{C}/createRoom"),
            alice.token(),
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_err(
        &resp,
        400,
        "M_NOT_JSON",
        "createRoom with a body that is not JSON",
    );

    let send = room_path(&room, "send/m.room.message/t1");
    let resp = s
        .request_raw(
            Method::PUT,
            &send,
            alice.token(),
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_err(
        &resp,
        400,
        "M_NOT_JSON",
        "send with a body that is not JSON",
    );

    let resp = s
        .post(
            &format!("{C}/createRoom"),
            alice.token(),
            &json!({ "name": 5 }),
        )
        .await;
    assert_err(&resp, 400, "M_BAD_JSON", "createRoom with a numeric name");

    let resp = s
        .put(
            &room_path(&room, "send/m.room.message/t2"),
            alice.token(),
            &json!([1, 2]),
        )
        .await;
    assert_err(
        &resp,
        400,
        "M_BAD_JSON",
        "send with a JSON array as content",
    );
}

#[tokio::test]
async fn errcode_missing_and_unknown_token() {
    let s = TestServer::start().await;

    let resp = s.get(&format!("{C}/account/whoami"), None).await;
    assert_err(&resp, 401, "M_MISSING_TOKEN", "whoami without a token");

    let resp = s
        .get(&format!("{C}/account/whoami"), Some("syt_not_a_real_token"))
        .await;
    assert_err(
        &resp,
        401,
        "M_UNKNOWN_TOKEN",
        "whoami with an unknown token",
    );
    assert!(
        resp.1["soft_logout"].is_boolean(),
        "M_UNKNOWN_TOKEN must carry soft_logout: {}",
        resp.1
    );

    let resp = s
        .get(&format!("{C}/sync"), Some("syt_not_a_real_token"))
        .await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "sync with an unknown token");
}

#[tokio::test]
async fn errcode_not_found_and_invalid_param() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    s.send_message(&alice.access_token, &room, "t1", "hi").await;

    let path = room_path(
        &room,
        &format!(
            "event/{}",
            enc("$doesnotexist0000000000000000000000000000000")
        ),
    );
    assert_err(
        &s.get(&path, alice.token()).await,
        404,
        "M_NOT_FOUND",
        "unknown event id",
    );

    for query in ["dir=sideways", "dir=b&limit=lots", "dir=b&limit=-5"] {
        let resp = s
            .get(
                &room_path(&room, &format!("messages?{query}")),
                alice.token(),
            )
            .await;
        assert_err(&resp, 400, "M_INVALID_PARAM", &format!("/messages?{query}"));
    }
}

#[tokio::test]
async fn errcode_too_large_event() {
    let s = TestServer::start_with(|c| c.limits.max_request_bytes = 200_000).await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    // Comfortably below the 65536-byte event limit: accepted.
    let ok_body = "a".repeat(60_000);
    s.send_message(&alice.access_token, &room, "small", &ok_body)
        .await;

    // Event above 64 KiB, request below max_request_bytes: event too large.
    let big = json!({ "msgtype": "m.text", "body": "b".repeat(70_000) });
    let resp = s
        .put(
            &room_path(&room, "send/m.room.message/big"),
            alice.token(),
            &big,
        )
        .await;
    assert_err(&resp, 413, "M_TOO_LARGE", "message event over 65536 bytes");

    // Same for a state event.
    let big_state = json!({ "topic": "t".repeat(70_000) });
    let resp = s
        .put(
            &state_path(&room, "m.room.topic", ""),
            alice.token(),
            &big_state,
        )
        .await;
    assert_err(&resp, 413, "M_TOO_LARGE", "state event over 65536 bytes");

    // None of the rejected events made it into the room.
    let page = messages(&s, &alice, &room, "dir=b&limit=50").await;
    let bodies = message_bodies(page["chunk"].as_array().unwrap());
    assert_eq!(bodies, vec![ok_body], "only the small message exists");
}

#[tokio::test]
async fn errcode_too_large_request_body() {
    let s = TestServer::start_with(|c| c.limits.max_request_bytes = 200_000).await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    let huge = json!({ "msgtype": "m.text", "body": "c".repeat(300_000) });
    let resp = s
        .put(
            &room_path(&room, "send/m.room.message/huge"),
            alice.token(),
            &huge,
        )
        .await;
    assert_err(
        &resp,
        413,
        "M_TOO_LARGE",
        "request body over max_request_bytes",
    );

    // The server is still healthy afterwards and nothing was stored.
    assert_ok(
        &s.get(&format!("{C}/account/whoami"), alice.token()).await,
        "whoami after 413",
    );
    let page = messages(&s, &alice, &room, "dir=b&limit=50").await;
    assert!(
        message_bodies(page["chunk"].as_array().unwrap()).is_empty(),
        "{page}"
    );
}

#[tokio::test]
async fn errcode_unrecognized() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;

    let resp = s
        .get(&format!("{C}/this/endpoint/does/not/exist"), alice.token())
        .await;
    assert_err(&resp, 404, "M_UNRECOGNIZED", "unknown endpoint");

    let resp = s.get(&format!("{C}/createRoom"), alice.token()).await;
    assert_err(&resp, 405, "M_UNRECOGNIZED", "GET on POST-only /createRoom");

    let resp = s
        .request(
            Method::DELETE,
            &format!("{C}/account/whoami"),
            alice.token(),
            None,
        )
        .await;
    assert_err(
        &resp,
        405,
        "M_UNRECOGNIZED",
        "DELETE on GET-only /account/whoami",
    );
}

#[tokio::test]
async fn missing_required_field_is_bad_json() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let resp = s
        .post(&room_path(&room, "invite"), alice.token(), &json!({}))
        .await;
    assert_err(&resp, 400, "M_BAD_JSON", "invite without user_id");
    let resp = s
        .put(
            &state_path(&room, "m.room.name", ""),
            alice.token(),
            &json!("a string"),
        )
        .await;
    assert_err(
        &resp,
        400,
        "M_BAD_JSON",
        "state event content that is not an object",
    );
}

#[tokio::test]
async fn non_canonical_numbers_are_bad_json() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    // Signed events must be canonical JSON: integers within ±(2^53 - 1) only.
    let float = room_path(&room, "send/com.example.event/f1");
    assert_err(
        &s.put(&float, alice.token(), &json!({ "x": 1.5 })).await,
        400,
        "M_BAD_JSON",
        "float in content",
    );
    let huge = room_path(&room, "send/com.example.event/f2");
    let resp = s
        .request_raw(
            Method::PUT,
            &huge,
            alice.token(),
            Some(br#"{"x": 9007199254740993}"#.to_vec()),
        )
        .await;
    assert_err(&resp, 400, "M_BAD_JSON", "integer beyond 2^53 in content");

    let ok = s
        .put(
            &room_path(&room, "send/com.example.event/f3"),
            alice.token(),
            &json!({ "x": 9007199254740991_i64 }),
        )
        .await;
    assert_ok(&ok, "largest canonical integer");
}

#[tokio::test]
async fn odd_state_keys_and_unicode_round_trip() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "name": "Café ☕ 日本" }))
        .await;

    for key in ["a/b", "with space", "ünï©ødé", "?&=#"] {
        let path = state_path(&room, "com.example.odd", key);
        assert_ok(
            &s.put(&path, alice.token(), &json!({ "key": key })).await,
            &format!("put state key {key:?}"),
        );
        let (st, content) = s.get(&path, alice.token()).await;
        assert_eq!(st, StatusCode::OK, "get state key {key:?}: {content}");
        assert_eq!(content["key"], key, "{content}");
    }
    let (_, state) = s.get(&room_path(&room, "state"), alice.token()).await;
    let keys: Vec<&str> = state
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "com.example.odd")
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 4, "{state}");

    let (_, name) = s
        .get(&state_path(&room, "m.room.name", ""), alice.token())
        .await;
    assert_eq!(name["name"], "Café ☕ 日本");
    let body = "emoji 🎉, RTL \u{202E}, NUL-free \u{7f} and \"quotes\"";
    let event_id = s
        .send_message(&alice.access_token, &room, "ütf-txn 🎉", body)
        .await;
    let (_, ev) = s
        .get(
            &room_path(&room, &format!("event/{}", enc(&event_id))),
            alice.token(),
        )
        .await;
    assert_eq!(ev["content"]["body"], body, "{ev}");
    let again = s
        .send_message(&alice.access_token, &room, "ütf-txn 🎉", body)
        .await;
    assert_eq!(again, event_id, "unicode txn ids are idempotent too");
}

#[tokio::test]
async fn unknown_rooms_and_state_are_client_errors() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let nowhere = "!doesnotexist:localhost";
    let checks = [
        (Method::GET, room_path(nowhere, "messages?dir=b"), None),
        (Method::GET, room_path(nowhere, "state"), None),
        (Method::GET, room_path(nowhere, "members"), None),
        (
            Method::PUT,
            room_path(nowhere, "send/m.room.message/t1"),
            Some(json!({ "msgtype": "m.text", "body": "x" })),
        ),
        (
            Method::POST,
            format!("{C}/join/{}", enc(nowhere)),
            Some(json!({})),
        ),
        (Method::POST, room_path(nowhere, "leave"), Some(json!({}))),
    ];
    for (method, path, body) in checks {
        let (st, resp) = s
            .request(method.clone(), &path, alice.token(), body.as_ref())
            .await;
        assert!(
            matches!(st.as_u16(), 403 | 404) && resp["errcode"].is_string(),
            "{method} {path}: expected 403/404 with an errcode, got {st} {resp}"
        );
    }
    let bad_id = format!("{C}/rooms/{}/messages?dir=b", enc("not-a-room-id"));
    let (st, resp) = s.get(&bad_id, alice.token()).await;
    assert!(
        st.is_client_error() && resp["errcode"].is_string(),
        "malformed room id: {st} {resp}"
    );

    let room = s.create_room(&alice.access_token, &json!({})).await;
    let resp = s
        .get(&state_path(&room, "m.room.topic", ""), alice.token())
        .await;
    assert_err(&resp, 404, "M_NOT_FOUND", "unset state event");
}

#[tokio::test]
async fn nul_characters_are_refused_cleanly() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let (st, body) = s
        .put(
            &room_path(&room, "send/m.room.message/nul1"),
            alice.token(),
            &json!({ "body": "a\u{0}b" }),
        )
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")),
        "{body}"
    );
    let path = format!(
        "/_matrix/client/v3/profile/{}/displayname",
        enc(&alice.user_id)
    );
    let (st, body) = s
        .put(&path, alice.token(), &json!({ "displayname": "x\u{0}" }))
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")),
        "{body}"
    );
    let (st, body) = s
        .put(
            &room_path(&room, "state/m.room.topic/a%00b"),
            alice.token(),
            &json!({ "topic": "t" }),
        )
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "{body}"
    );
    // A literal backslash-u in text is fine.
    let (st, body) = s
        .put(
            &room_path(&room, "send/m.room.message/nul2"),
            alice.token(),
            &json!({ "body": "\\u0000" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn rate_limits_answer_limit_exceeded() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.message = rate(60, 3);
        c.rate_limits.login = rate(60, 2);
    })
    .await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    // Three messages fit the burst; the fourth is refused with a retry time, then allowed later.
    let http = reqwest::Client::new();
    let send = |txn: &'static str| {
        let url = format!(
            "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
            s.base_url(),
            enc(&room)
        );
        http.put(url)
            .bearer_auth(&alice.access_token)
            .json(&json!({ "msgtype": "m.text", "body": txn }))
            .send()
    };
    for txn in ["r1", "r2", "r3"] {
        let response = send(txn).await.expect("send");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = send("r4").await.expect("send");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_header: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{body}");
    let retry_ms = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry_ms > 0 && retry_ms <= 1_000, "{body}");
    assert_eq!(retry_header, 1);
    // A retry of an acknowledged txnId is not a new message: it still answers its event.
    assert_eq!(send("r1").await.expect("send").status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(retry_ms + 50)).await;
    assert_eq!(send("r4").await.expect("send").status(), StatusCode::OK);

    // Logins are limited per client address, whatever the account.
    let (st, _) = s.login_attempt("alice", PW).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.login_attempt("alice", "wrong password").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = s.login_attempt("alice", PW).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("M_LIMIT_EXCEEDED")),
        "{body}"
    );
}
