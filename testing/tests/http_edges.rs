//! Raw-HTTP edge cases of the Client-Server API: the things a client library
//! hides (exact status codes and `errcode`s, idempotency, pagination tokens,
//! long-poll wake-ups, persistence across restarts).
//!
//! Every test starts its own server on a fresh data directory.

use std::time::{Duration, Instant};

use myelin::config::RegistrationMode;
use myelin_testing::{enc, has_flow_stage, message_bodies, timeline, Account, StatusCode, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const PW: &str = "correct horse battery staple";
const C: &str = "/_matrix/client/v3";

fn errcode(body: &Value) -> &str {
    body["errcode"].as_str().unwrap_or("<no errcode>")
}

/// Asserts an error response: status and `errcode`.
#[track_caller]
fn assert_err(resp: &(StatusCode, Value), status: u16, code: &str, what: &str) {
    let (actual_status, body) = resp;
    assert_eq!(
        (actual_status.as_u16(), errcode(body)),
        (status, code),
        "{what}: unexpected response {actual_status} {body}"
    );
}

#[track_caller]
fn assert_ok(resp: &(StatusCode, Value), what: &str) {
    assert_eq!(resp.0, StatusCode::OK, "{what}: {}", resp.1);
}

fn room_path(room_id: &str, rest: &str) -> String {
    format!("{C}/rooms/{}/{rest}", enc(room_id))
}

fn state_path(room_id: &str, event_type: &str, state_key: &str) -> String {
    room_path(room_id, &format!("state/{event_type}/{}", enc(state_key)))
}

/// Event ids of `events`, in order.
fn ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap_or_else(|| panic!("expected an array of events, got {events}"))
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

async fn messages(s: &TestServer, who: &Account, room_id: &str, query: &str) -> Value {
    let resp = s.get(&room_path(room_id, &format!("messages?{query}")), who.token()).await;
    assert_ok(&resp, &format!("/messages?{query}"));
    resp.1
}

/// Sends `count` messages `"{prefix}{i}"` and returns their event ids.
async fn send_many(s: &TestServer, who: &Account, room_id: &str, prefix: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let body = format!("{prefix}{i}");
        ids.push(s.send_message(&who.access_token, room_id, &format!("txn-{body}"), &body).await);
    }
    ids
}

// ---------------------------------------------------------------------------
// Transactions and power levels
// ---------------------------------------------------------------------------

#[tokio::test]
async fn txn_id_is_idempotent_per_device() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    let first = s.send_message(&alice.access_token, &room, "txn-1", "hello").await;
    let again = s.send_message(&alice.access_token, &room, "txn-1", "hello").await;
    assert_eq!(first, again, "same device + same txnId must return the same event");

    let alice2 = s.login("alice", PW).await;
    assert_ne!(alice2.device_id, alice.device_id, "login must create a new device");
    let other = s.send_message(&alice2.access_token, &room, "txn-1", "hello").await;
    assert_ne!(other, first, "a different device with the same txnId is a new event");

    let page = messages(&s, &alice, &room, "dir=b&limit=50").await;
    let hellos = message_bodies(page["chunk"].as_array().unwrap())
        .into_iter()
        .filter(|b| b == "hello")
        .count();
    assert_eq!(hellos, 2, "exactly two events must exist: {page}");
}

#[tokio::test]
async fn power_levels_forbid_unprivileged_state_changes() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat", "name": "Original" }))
        .await;
    s.join(&bob.access_token, &room).await;

    // Alice makes state changes need power 50 (bob has the default 0).
    let (st, mut pl) = s.get(&state_path(&room, "m.room.power_levels", ""), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "get power levels: {pl}");
    pl["state_default"] = json!(50);
    assert_ok(
        &s.put(&state_path(&room, "m.room.power_levels", ""), alice.token(), &pl).await,
        "alice sets power levels",
    );

    assert_err(
        &s.put(&state_path(&room, "m.room.name", ""), bob.token(), &json!({ "name": "Hijacked" })).await,
        403,
        "M_FORBIDDEN",
        "bob sets the room name",
    );
    let mut escalated = pl.clone();
    escalated["users"][&bob.user_id] = json!(100);
    assert_err(
        &s.put(&state_path(&room, "m.room.power_levels", ""), bob.token(), &escalated).await,
        403,
        "M_FORBIDDEN",
        "bob grants himself power",
    );
    assert_err(
        &s.put(&state_path(&room, "com.example.custom", ""), bob.token(), &json!({ "x": 1 })).await,
        403,
        "M_FORBIDDEN",
        "bob sets a custom state event",
    );

    // Messages need only events_default (0), so bob may still talk.
    s.send_message(&bob.access_token, &room, "b1", "still allowed").await;

    // Nothing bob tried took effect (GET without the optional trailing slash).
    let name_path = room_path(&room, "state/m.room.name");
    let (st, name) = s.get(&name_path, bob.token()).await;
    assert_eq!(st, StatusCode::OK, "get name: {name}");
    assert_eq!(name["name"], "Original");
    let (_, pl_now) = s.get(&state_path(&room, "m.room.power_levels", ""), bob.token()).await;
    assert_eq!(pl_now["state_default"], 50, "{pl_now}");
    assert!(pl_now["users"].get(&bob.user_id).is_none(), "bob gained power: {pl_now}");
}

// ---------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn errcode_not_json_and_bad_json() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    let resp = s
        .request_raw(Method::POST, &format!("{C}/createRoom"), alice.token(), Some(b"{not json".to_vec()))
        .await;
    assert_err(&resp, 400, "M_NOT_JSON", "createRoom with a body that is not JSON");

    let send = room_path(&room, "send/m.room.message/t1");
    let resp = s.request_raw(Method::PUT, &send, alice.token(), Some(b"{not json".to_vec())).await;
    assert_err(&resp, 400, "M_NOT_JSON", "send with a body that is not JSON");

    let resp = s.post(&format!("{C}/createRoom"), alice.token(), &json!({ "name": 5 })).await;
    assert_err(&resp, 400, "M_BAD_JSON", "createRoom with a numeric name");

    let resp = s.put(&room_path(&room, "send/m.room.message/t2"), alice.token(), &json!([1, 2])).await;
    assert_err(&resp, 400, "M_BAD_JSON", "send with a JSON array as content");
}

#[tokio::test]
async fn errcode_missing_and_unknown_token() {
    let s = TestServer::start().await;

    let resp = s.get(&format!("{C}/account/whoami"), None).await;
    assert_err(&resp, 401, "M_MISSING_TOKEN", "whoami without a token");

    let resp = s.get(&format!("{C}/account/whoami"), Some("syt_not_a_real_token")).await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "whoami with an unknown token");
    assert!(resp.1["soft_logout"].is_boolean(), "M_UNKNOWN_TOKEN must carry soft_logout: {}", resp.1);

    let resp = s.get(&format!("{C}/sync"), Some("syt_not_a_real_token")).await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "sync with an unknown token");
}

#[tokio::test]
async fn errcode_not_found_and_invalid_param() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    s.send_message(&alice.access_token, &room, "t1", "hi").await;

    let path = room_path(&room, &format!("event/{}", enc("$doesnotexist0000000000000000000000000000000")));
    assert_err(&s.get(&path, alice.token()).await, 404, "M_NOT_FOUND", "unknown event id");

    for query in ["dir=sideways", "dir=b&limit=lots", "dir=b&limit=-5"] {
        let resp = s.get(&room_path(&room, &format!("messages?{query}")), alice.token()).await;
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
    s.send_message(&alice.access_token, &room, "small", &ok_body).await;

    // Event above 64 KiB, request below max_request_bytes: event too large.
    let big = json!({ "msgtype": "m.text", "body": "b".repeat(70_000) });
    let resp = s.put(&room_path(&room, "send/m.room.message/big"), alice.token(), &big).await;
    assert_err(&resp, 413, "M_TOO_LARGE", "message event over 65536 bytes");

    // Same for a state event.
    let big_state = json!({ "topic": "t".repeat(70_000) });
    let resp = s.put(&state_path(&room, "m.room.topic", ""), alice.token(), &big_state).await;
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
    let resp = s.put(&room_path(&room, "send/m.room.message/huge"), alice.token(), &huge).await;
    assert_err(&resp, 413, "M_TOO_LARGE", "request body over max_request_bytes");

    // The server is still healthy afterwards and nothing was stored.
    assert_ok(&s.get(&format!("{C}/account/whoami"), alice.token()).await, "whoami after 413");
    let page = messages(&s, &alice, &room, "dir=b&limit=50").await;
    assert!(message_bodies(page["chunk"].as_array().unwrap()).is_empty(), "{page}");
}

#[tokio::test]
async fn errcode_unrecognized() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;

    let resp = s.get(&format!("{C}/this/endpoint/does/not/exist"), alice.token()).await;
    assert_err(&resp, 404, "M_UNRECOGNIZED", "unknown endpoint");

    let resp = s.get(&format!("{C}/createRoom"), alice.token()).await;
    assert_err(&resp, 405, "M_UNRECOGNIZED", "GET on POST-only /createRoom");

    let resp = s.request(Method::DELETE, &format!("{C}/account/whoami"), alice.token(), None).await;
    assert_err(&resp, 405, "M_UNRECOGNIZED", "DELETE on GET-only /account/whoami");
}

// ---------------------------------------------------------------------------
// Registration and login
// ---------------------------------------------------------------------------

#[tokio::test]
async fn registration_user_in_use_and_invalid_username() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    assert!(alice.user_id.starts_with("@alice:"), "user id {}", alice.user_id);

    let resp = s.register_attempt(json!({ "username": "alice", "password": PW })).await;
    assert_err(&resp, 400, "M_USER_IN_USE", "registering alice twice");

    for bad in ["bad user", "with:colon", "emoji\u{1F600}"] {
        let resp = s.register_attempt(json!({ "username": bad, "password": PW })).await;
        assert_err(&resp, 400, "M_INVALID_USERNAME", &format!("registering {bad:?}"));
    }
}

#[tokio::test]
async fn register_available() {
    let s = TestServer::start().await;
    s.register("alice", PW).await;

    let resp = s.get(&format!("{C}/register/available?username=fresh"), None).await;
    assert_ok(&resp, "available fresh");
    assert_eq!(resp.1["available"], true, "{}", resp.1);

    let resp = s.get(&format!("{C}/register/available?username=alice"), None).await;
    assert_err(&resp, 400, "M_USER_IN_USE", "available alice");

    let resp = s.get(&format!("{C}/register/available?username={}", enc("bad user")), None).await;
    assert_err(&resp, 400, "M_INVALID_USERNAME", "available 'bad user'");
}

#[tokio::test]
async fn registration_closed() {
    let s = TestServer::start_with(|c| c.registration.mode = RegistrationMode::Closed).await;
    let resp = s.register_attempt(json!({ "username": "alice", "password": PW })).await;
    assert_err(&resp, 403, "M_FORBIDDEN", "registration while closed");
    assert_err(&s.login_attempt("alice", PW).await, 403, "M_FORBIDDEN", "login of never-created user");
}

#[tokio::test]
async fn registration_with_token() {
    let s = TestServer::start_with(|c| {
        c.registration.mode = RegistrationMode::Token;
        c.registration.tokens = vec!["let-me-in".to_owned()];
    })
    .await;
    let register = format!("{C}/register");
    let base = json!({ "username": "tok", "password": PW });

    let (st, uia) = s.post(&register, None, &base).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "first request starts UIA: {uia}");
    let session = uia["session"].as_str().expect("session").to_owned();
    let flows = uia["flows"].as_array().expect("flows");
    assert!(!flows.is_empty(), "{uia}");
    for flow in flows {
        assert!(
            flow["stages"].as_array().unwrap().iter().any(|s| s == "m.login.registration_token"),
            "every flow must require the registration token: {uia}"
        );
    }

    // Dummy auth alone must not be enough.
    let mut dummy = base.clone();
    dummy["auth"] = json!({ "type": "m.login.dummy", "session": session });
    let (st, body) = s.post(&register, None, &dummy).await;
    assert_ne!(st, StatusCode::OK, "dummy auth bypassed the token requirement: {body}");

    // A wrong token is refused.
    let mut wrong = base.clone();
    wrong["auth"] = json!({ "type": "m.login.registration_token", "token": "nope", "session": session });
    let (st, body) = s.post(&register, None, &wrong).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "wrong token: {body}");
    assert!(
        !body["completed"].as_array().is_some_and(|c| c.iter().any(|s| s == "m.login.registration_token")),
        "wrong token marked as completed: {body}"
    );

    // The right token, followed by any remaining stages (only dummy is expected).
    let mut auth = json!({ "type": "m.login.registration_token", "token": "let-me-in", "session": session });
    let mut result = None;
    for _ in 0..4 {
        let mut req = base.clone();
        req["auth"] = auth.clone();
        let (st, body) = s.post(&register, None, &req).await;
        if st == StatusCode::OK {
            result = Some(body);
            break;
        }
        assert_eq!(st, StatusCode::UNAUTHORIZED, "unexpected UIA step: {body}");
        assert!(has_flow_stage(&body, "m.login.dummy"), "unexpected remaining stages: {body}");
        auth = json!({ "type": "m.login.dummy", "session": session });
    }
    let body = result.expect("registration with a valid token did not complete");
    assert!(body["user_id"].as_str().unwrap().starts_with("@tok:"), "{body}");
    let token = body["access_token"].as_str().expect("access_token");
    let (st, who) = s.get(&format!("{C}/account/whoami"), Some(token)).await;
    assert_eq!(st, StatusCode::OK, "{who}");
}

#[tokio::test]
async fn registration_token_validity_endpoint() {
    let s = TestServer::start_with(|c| {
        c.registration.mode = RegistrationMode::Token;
        c.registration.tokens = vec!["let-me-in".to_owned()];
    })
    .await;
    let path = "/_matrix/client/v1/register/m.login.registration_token/validity";
    let resp = s.get(&format!("{path}?token=let-me-in"), None).await;
    assert_ok(&resp, "validity of a good token");
    assert_eq!(resp.1["valid"], true, "{}", resp.1);
    let resp = s.get(&format!("{path}?token=nope"), None).await;
    assert_ok(&resp, "validity of a bad token");
    assert_eq!(resp.1["valid"], false, "{}", resp.1);
}

#[tokio::test]
async fn login_whoami_and_logout() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;

    assert_err(&s.login_attempt("alice", "wrong password").await, 403, "M_FORBIDDEN", "wrong password");
    assert_err(&s.login_attempt("nobody", PW).await, 403, "M_FORBIDDEN", "unknown user");

    let (st, flows) = s.get(&format!("{C}/login"), None).await;
    assert_eq!(st, StatusCode::OK, "{flows}");
    assert!(
        flows["flows"].as_array().unwrap().iter().any(|f| f["type"] == "m.login.password"),
        "GET /login must offer m.login.password: {flows}"
    );

    let second = s.login("alice", PW).await;
    assert_eq!(second.user_id, alice.user_id);

    for acct in [&alice, &second] {
        let (st, who) = s.get(&format!("{C}/account/whoami"), acct.token()).await;
        assert_eq!(st, StatusCode::OK, "{who}");
        assert_eq!(who["user_id"], acct.user_id.as_str());
        assert_eq!(who["device_id"], acct.device_id.as_str());
    }

    assert_ok(&s.post(&format!("{C}/logout"), second.token(), &json!({})).await, "logout");
    let resp = s.get(&format!("{C}/account/whoami"), second.token()).await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "whoami after logout");

    // The other session is untouched, and the logged-out device is gone.
    assert_ok(&s.get(&format!("{C}/account/whoami"), alice.token()).await, "first device still works");
    let (_, devices) = s.get(&format!("{C}/devices"), alice.token()).await;
    let listed: Vec<&str> =
        devices["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![alice.device_id.as_str()], "{devices}");
}

#[tokio::test]
async fn devices_list_rename_delete() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let phone = s.login("alice", PW).await;

    let (st, devices) = s.get(&format!("{C}/devices"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{devices}");
    let mut listed: Vec<String> =
        devices["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap().to_owned()).collect();
    listed.sort();
    let mut expected = vec![alice.device_id.clone(), phone.device_id.clone()];
    expected.sort();
    assert_eq!(listed, expected, "{devices}");

    let device_path = format!("{C}/devices/{}", enc(&phone.device_id));
    assert_ok(&s.put(&device_path, alice.token(), &json!({ "display_name": "Phone" })).await, "rename");
    let (st, device) = s.get(&device_path, alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{device}");
    assert_eq!(device["display_name"], "Phone");
    assert_eq!(device["device_id"], phone.device_id.as_str());

    // Deleting needs UIA with m.login.password.
    let (st, uia) = s.delete(&device_path, alice.token(), &json!({})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "delete without auth must start UIA: {uia}");
    assert!(has_flow_stage(&uia, "m.login.password"), "{uia}");
    let session = uia["session"].clone();
    let password_auth = |password: &str| {
        json!({ "auth": {
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": alice.user_id },
            "password": password,
            "session": session,
        }})
    };

    let (st, body) = s.delete(&device_path, alice.token(), &password_auth("wrong")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "wrong password in UIA: {body}");
    assert_eq!(errcode(&body), "M_FORBIDDEN", "{body}");
    assert_ok(&s.get(&device_path, alice.token()).await, "device survives a failed delete");

    assert_ok(&s.delete(&device_path, alice.token(), &password_auth(PW)).await, "delete with password");
    assert_err(&s.get(&device_path, alice.token()).await, 404, "M_NOT_FOUND", "deleted device");
    let resp = s.get(&format!("{C}/account/whoami"), phone.token()).await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "token of the deleted device");
}

// ---------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------

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
    let event_id = s.send_message(&alice.access_token, &room, "wake", "wake up").await;

    let (elapsed, resp) = poll.await.unwrap();
    let events = timeline(&resp, &room);
    assert!(
        events.iter().any(|e| e["event_id"] == event_id.as_str()),
        "long-poll response lacks the new message: {resp}"
    );
    assert!(elapsed < Duration::from_secs(8), "sync timed out instead of waking up ({elapsed:?})");
    assert_ne!(resp["next_batch"], since.as_str(), "next_batch must advance");
}

#[tokio::test]
async fn sync_token_survives_restart() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let before = send_many(&s, &alice, &room, "before-", 3).await;
    let first = s.sync(&alice.access_token, None, 0).await;
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();
    let initial_ids: Vec<Value> = timeline(&first, &room).iter().map(|e| e["event_id"].clone()).collect();
    for id in &before {
        assert!(initial_ids.contains(&json!(id)), "initial sync lacks {id}: {first}");
    }

    let s = s.restarted().await;
    let after = send_many(&s, &alice, &room, "after-", 2).await;

    let resp = s.sync(&alice.access_token, Some(&since), 5_000).await;
    let got: Vec<String> = timeline(&resp, &room)
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, after, "incremental sync from a pre-restart token: {resp}");

    // The new token keeps working, and yields nothing new.
    let next = resp["next_batch"].as_str().unwrap().to_owned();
    let resp = s.sync(&alice.access_token, Some(&next), 0).await;
    assert!(timeline(&resp, &room).is_empty(), "events repeated: {resp}");
}

// ---------------------------------------------------------------------------
// Room history
// ---------------------------------------------------------------------------

#[tokio::test]
async fn messages_pagination_both_directions() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let sent = send_many(&s, &alice, &room, "m", 10).await;

    // Newest first, 4 at a time.
    let page1 = messages(&s, &alice, &room, "dir=b&limit=4").await;
    assert_eq!(ids(&page1["chunk"]), sent[6..].iter().rev().cloned().collect::<Vec<_>>(), "{page1}");
    let end1 = page1["end"].as_str().expect("end token on a non-final page").to_owned();
    let page2 = messages(&s, &alice, &room, &format!("dir=b&limit=4&from={}", enc(&end1))).await;
    assert_eq!(ids(&page2["chunk"]), sent[2..6].iter().rev().cloned().collect::<Vec<_>>(), "{page2}");

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
    assert_eq!(oldest_first[0]["type"], "m.room.create", "history must start at the create event");
    assert_eq!(message_bodies(&oldest_first), (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
    let all_ids = ids(&Value::Array(oldest_first.clone()));
    let mut dedup = all_ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), all_ids.len(), "duplicate events while paginating");

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
    assert_eq!(ids(&Value::Array(forward)), all_ids, "forward pagination differs from backward");

    // A token splits the timeline: forward from it gives what backward from it did not.
    let after = messages(&s, &alice, &room, &format!("dir=f&limit=100&from={}", enc(&end1))).await;
    assert_eq!(ids(&after["chunk"]), sent[6..].to_vec(), "dir=f from page1.end: {after}");

    // `to` bounds pagination at a token.
    let bounded = messages(&s, &alice, &room, &format!("dir=b&limit=100&to={}", enc(&end1))).await;
    assert_eq!(ids(&bounded["chunk"]), ids(&page1["chunk"]), "dir=b to=page1.end: {bounded}");
    let head = messages(&s, &alice, &room, &format!("dir=f&limit=100&to={}", enc(&end1))).await;
    let head_ids = ids(&head["chunk"]);
    assert_eq!(head_ids.last(), Some(&sent[5]), "dir=f to=page1.end must stop before m6: {head}");
    assert_eq!(head_ids, all_ids[..all_ids.len() - 4].to_vec(), "{head}");
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
    assert!(before.len() + after.len() <= 4, "limit applies to before+after: {ctx}");
    // events_before is newest first, events_after oldest first.
    assert_eq!(before, sent[5 - before.len()..5].iter().rev().cloned().collect::<Vec<_>>(), "{ctx}");
    assert_eq!(after, sent[6..6 + after.len()].to_vec(), "{ctx}");
    assert!(
        ctx["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"),
        "context state must include the room state: {ctx}"
    );

    // start/end continue the context with /messages.
    let start = ctx["start"].as_str().expect("start");
    let older = messages(&s, &alice, &room, &format!("dir=b&limit=1&from={}", enc(start))).await;
    assert_eq!(ids(&older["chunk"]), vec![sent[4 - before.len()].clone()], "{older}");
    let end = ctx["end"].as_str().expect("end");
    let newer = messages(&s, &alice, &room, &format!("dir=f&limit=1&from={}", enc(end))).await;
    assert_eq!(ids(&newer["chunk"]), vec![sent[6 + after.len()].clone()], "{newer}");
}

#[tokio::test]
async fn members_with_membership_filters() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let carol = s.register("carol", PW).await;
    let dave = s.register("dave", PW).await;
    let room = s.create_room(&alice.access_token, &json!({ "preset": "public_chat" })).await;
    s.join(&bob.access_token, &room).await;
    s.invite(&alice.access_token, &room, &carol.user_id).await;
    s.join(&dave.access_token, &room).await;
    s.leave(&dave.access_token, &room).await;

    let members = |query: &'static str| {
        let s = &s;
        let room = &room;
        let alice = &alice;
        async move {
            let (st, body) = s.get(&room_path(room, &format!("members{query}")), alice.token()).await;
            assert_eq!(st, StatusCode::OK, "/members{query}: {body}");
            let mut found: Vec<(String, String)> = body["chunk"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    assert_eq!(e["type"], "m.room.member");
                    (
                        e["state_key"].as_str().unwrap().to_owned(),
                        e["content"]["membership"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            found.sort();
            found
        }
    };
    let pair = |a: &Account, m: &str| (a.user_id.clone(), m.to_owned());

    assert_eq!(
        members("").await,
        vec![pair(&alice, "join"), pair(&bob, "join"), pair(&carol, "invite"), pair(&dave, "leave")]
    );
    assert_eq!(members("?membership=join").await, vec![pair(&alice, "join"), pair(&bob, "join")]);
    assert_eq!(members("?membership=invite").await, vec![pair(&carol, "invite")]);
    assert_eq!(members("?membership=leave").await, vec![pair(&dave, "leave")]);
    assert_eq!(members("?not_membership=join").await, vec![pair(&carol, "invite"), pair(&dave, "leave")]);

    let (st, joined) = s.get(&room_path(&room, "joined_members"), bob.token()).await;
    assert_eq!(st, StatusCode::OK, "{joined}");
    let mut joined_ids: Vec<&String> = joined["joined"].as_object().expect("joined map").keys().collect();
    joined_ids.sort();
    assert_eq!(joined_ids, vec![&alice.user_id, &bob.user_id], "{joined}");
}

#[tokio::test]
async fn redaction_removes_content() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let event_id = s.send_message(&alice.access_token, &room, "t1", "regrettable").await;

    let path = room_path(&room, &format!("redact/{}/r1", enc(&event_id)));
    let (st, body) = s.put(&path, alice.token(), &json!({ "reason": "oops" })).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let redaction_id = body["event_id"].as_str().expect("redaction event_id").to_owned();

    let (st, ev) = s.get(&room_path(&room, &format!("event/{}", enc(&event_id))), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{ev}");
    assert_eq!(ev["type"], "m.room.message");
    assert_eq!(ev["content"], json!({}), "redacted content must be empty: {ev}");
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
async fn displayname_change_updates_member_events() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room1 = s.create_room(&alice.access_token, &json!({ "preset": "public_chat" })).await;
    let room2 = s.create_room(&alice.access_token, &json!({})).await;
    s.join(&bob.access_token, &room1).await;
    let bob_since = s.sync(&bob.access_token, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    let profile = format!("{C}/profile/{}/displayname", enc(&alice.user_id));
    assert_ok(&s.put(&profile, alice.token(), &json!({ "displayname": "Alice Liddell" })).await, "set name");
    let (st, body) = s.get(&profile, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "Alice Liddell");

    for room in [&room1, &room2] {
        let (st, member) = s.get(&state_path(room, "m.room.member", &alice.user_id), alice.token()).await;
        assert_eq!(st, StatusCode::OK, "{member}");
        assert_eq!(member["displayname"], "Alice Liddell", "member event in {room}: {member}");
        assert_eq!(member["membership"], "join");
    }

    // Bob sees the new member event come in through sync.
    let resp = s.sync(&bob.access_token, Some(&bob_since), 5_000).await;
    let events = timeline(&resp, &room1);
    assert!(
        events.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == alice.user_id.as_str()
            && e["content"]["displayname"] == "Alice Liddell"),
        "bob's sync lacks alice's new member event: {resp}"
    );
}

// ---------------------------------------------------------------------------
// Account data, filters, discovery
// ---------------------------------------------------------------------------

#[tokio::test]
async fn account_data_and_tags_in_sync() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let user = enc(&alice.user_id);
    let global = format!("{C}/user/{user}/account_data/com.example.global");
    let per_room = format!("{C}/user/{user}/rooms/{}/account_data/com.example.room", enc(&room));
    let tag = format!("{C}/user/{user}/rooms/{}/tags/u.work", enc(&room));

    assert_ok(&s.put(&global, alice.token(), &json!({ "a": 1 })).await, "global account data");
    assert_ok(&s.put(&per_room, alice.token(), &json!({ "b": 2 })).await, "room account data");
    assert_ok(&s.put(&tag, alice.token(), &json!({ "order": 0.5 })).await, "tag");

    assert_eq!(s.get(&global, alice.token()).await.1, json!({ "a": 1 }));
    assert_eq!(s.get(&per_room, alice.token()).await.1, json!({ "b": 2 }));
    let (st, tags) = s.get(&format!("{C}/user/{user}/rooms/{}/tags", enc(&room)), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{tags}");
    assert_eq!(tags["tags"]["u.work"]["order"], 0.5, "{tags}");
    assert_err(
        &s.get(&format!("{C}/user/{user}/account_data/com.example.unset"), alice.token()).await,
        404,
        "M_NOT_FOUND",
        "unset account data",
    );

    let find = |events: &Value, ty: &str| -> Option<Value> {
        events.as_array()?.iter().find(|e| e["type"] == ty).map(|e| e["content"].clone())
    };

    let initial = s.sync(&alice.access_token, None, 0).await;
    assert_eq!(find(&initial["account_data"]["events"], "com.example.global"), Some(json!({ "a": 1 })), "{initial}");
    let room_ad = &initial["rooms"]["join"][&room]["account_data"]["events"];
    assert_eq!(find(room_ad, "com.example.room"), Some(json!({ "b": 2 })), "{initial}");
    let tags_event = find(room_ad, "m.tag").unwrap_or_else(|| panic!("no m.tag in sync: {initial}"));
    assert_eq!(tags_event["tags"]["u.work"]["order"], 0.5, "{initial}");

    // Changes arrive in incremental sync.
    let since = initial["next_batch"].as_str().unwrap().to_owned();
    assert_ok(&s.put(&global, alice.token(), &json!({ "a": 2 })).await, "update global");
    assert_ok(&s.delete(&tag, alice.token(), &json!({})).await, "delete tag");
    let inc = s.sync(&alice.access_token, Some(&since), 5_000).await;
    assert_eq!(find(&inc["account_data"]["events"], "com.example.global"), Some(json!({ "a": 2 })), "{inc}");
    let tags_event = find(&inc["rooms"]["join"][&room]["account_data"]["events"], "m.tag")
        .unwrap_or_else(|| panic!("tag removal not synced: {inc}"));
    assert_eq!(tags_event["tags"], json!({}), "{inc}");
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
    let (st, stored) = s.get(&format!("{filter_base}/{}", enc(&filter_id)), alice.token()).await;
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
            let (st, resp) =
                s.get(&format!("{C}/sync?timeout=0&filter={}", enc(&filter)), alice.token()).await;
            assert_eq!(st, StatusCode::OK, "sync with filter {filter}: {resp}");
            resp
        }
    };

    let resp = sync_with(filter_id).await;
    let tl = &resp["rooms"]["join"][&room]["timeline"];
    assert_eq!(ids(&tl["events"]), sent[3..].to_vec(), "stored filter limit 2: {resp}");
    assert_eq!(tl["limited"], true, "{resp}");
    assert!(tl["prev_batch"].is_string(), "limited timeline needs prev_batch: {resp}");

    let resp = sync_with(json!({ "room": { "timeline": { "limit": 1 } } }).to_string()).await;
    assert_eq!(ids(&resp["rooms"]["join"][&room]["timeline"]["events"]), sent[4..].to_vec(), "inline filter: {resp}");

    let resp =
        sync_with(json!({ "room": { "timeline": { "limit": 50, "types": ["m.room.message"] } } }).to_string()).await;
    assert_eq!(ids(&resp["rooms"]["join"][&room]["timeline"]["events"]), sent, "types filter: {resp}");
}

#[tokio::test]
async fn discovery_endpoints() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;

    let (st, versions) = s.get("/_matrix/client/versions", None).await;
    assert_eq!(st, StatusCode::OK, "{versions}");
    let list = versions["versions"].as_array().expect("versions array");
    assert!(list.iter().any(|v| v.as_str().is_some_and(|v| v.starts_with("v1."))), "{versions}");

    let (st, caps) = s.get(&format!("{C}/capabilities"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{caps}");
    let room_versions = &caps["capabilities"]["m.room_versions"];
    let default = room_versions["default"].as_str().unwrap_or_else(|| panic!("no default room version: {caps}"));
    assert!(room_versions["available"].get(default).is_some(), "default room version not available: {caps}");
    assert_err(&s.get(&format!("{C}/capabilities"), None).await, 401, "M_MISSING_TOKEN", "capabilities without token");

    // Without configured discovery information the spec's answer is 404.
    let resp = s.get("/.well-known/matrix/client", None).await;
    assert_err(&resp, 404, "M_NOT_FOUND", "well-known without configuration");
}

#[tokio::test]
async fn well_known_client_when_configured() {
    let s = TestServer::start_with(|c| {
        c.well_known.client_base_url = Some("https://matrix.example.org".to_owned());
    })
    .await;
    let (st, wk) = s.get("/.well-known/matrix/client", None).await;
    assert_eq!(st, StatusCode::OK, "{wk}");
    assert_eq!(wk["m.homeserver"]["base_url"], "https://matrix.example.org", "{wk}");
}
