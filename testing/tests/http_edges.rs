//! Raw-HTTP edge cases of the Client-Server API: the things a client library
//! hides (exact status codes and `errcode`s, idempotency, pagination tokens,
//! long-poll wake-ups, persistence across restarts).
//!
//! Every test starts its own server on a fresh data directory.

use std::time::{Duration, Instant};

use myelin::config::{Rate, RegistrationMode};
use myelin_testing::{
    enc, has_flow_stage, message_bodies, timeline, Account, StatusCode, TestServer,
};
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
    let resp = s
        .get(
            &room_path(room_id, &format!("messages?{query}")),
            who.token(),
        )
        .await;
    assert_ok(&resp, &format!("/messages?{query}"));
    resp.1
}

/// Sends `count` messages `"{prefix}{i}"` and returns their event ids.
async fn send_many(
    s: &TestServer,
    who: &Account,
    room_id: &str,
    prefix: &str,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let body = format!("{prefix}{i}");
        ids.push(
            s.send_message(&who.access_token, room_id, &format!("txn-{body}"), &body)
                .await,
        );
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

#[tokio::test]
async fn power_levels_forbid_unprivileged_state_changes() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(
            &alice.access_token,
            &json!({ "preset": "public_chat", "name": "Original" }),
        )
        .await;
    s.join(&bob.access_token, &room).await;

    // Alice makes state changes need power 50 (bob has the default 0).
    let (st, mut pl) = s
        .get(&state_path(&room, "m.room.power_levels", ""), alice.token())
        .await;
    assert_eq!(st, StatusCode::OK, "get power levels: {pl}");
    pl["state_default"] = json!(50);
    assert_ok(
        &s.put(
            &state_path(&room, "m.room.power_levels", ""),
            alice.token(),
            &pl,
        )
        .await,
        "alice sets power levels",
    );

    assert_err(
        &s.put(
            &state_path(&room, "m.room.name", ""),
            bob.token(),
            &json!({ "name": "Hijacked" }),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "bob sets the room name",
    );
    let mut escalated = pl.clone();
    escalated["users"][&bob.user_id] = json!(100);
    assert_err(
        &s.put(
            &state_path(&room, "m.room.power_levels", ""),
            bob.token(),
            &escalated,
        )
        .await,
        403,
        "M_FORBIDDEN",
        "bob grants himself power",
    );
    assert_err(
        &s.put(
            &state_path(&room, "com.example.custom", ""),
            bob.token(),
            &json!({ "x": 1 }),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "bob sets a custom state event",
    );

    // Messages need only events_default (0), so bob may still talk.
    s.send_message(&bob.access_token, &room, "b1", "still allowed")
        .await;

    // Nothing bob tried took effect (GET without the optional trailing slash).
    let name_path = room_path(&room, "state/m.room.name");
    let (st, name) = s.get(&name_path, bob.token()).await;
    assert_eq!(st, StatusCode::OK, "get name: {name}");
    assert_eq!(name["name"], "Original");
    let (_, pl_now) = s
        .get(&state_path(&room, "m.room.power_levels", ""), bob.token())
        .await;
    assert_eq!(pl_now["state_default"], 50, "{pl_now}");
    assert!(
        pl_now["users"].get(&bob.user_id).is_none(),
        "bob gained power: {pl_now}"
    );
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

// ---------------------------------------------------------------------------
// Registration and login
// ---------------------------------------------------------------------------

#[tokio::test]
async fn registration_user_in_use_and_invalid_username() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    assert!(
        alice.user_id.starts_with("@alice:"),
        "user id {}",
        alice.user_id
    );

    let resp = s
        .register_attempt(json!({ "username": "alice", "password": PW }))
        .await;
    assert_err(&resp, 400, "M_USER_IN_USE", "registering alice twice");

    for bad in ["bad user", "with:colon", "emoji\u{1F600}"] {
        let resp = s
            .register_attempt(json!({ "username": bad, "password": PW }))
            .await;
        assert_err(
            &resp,
            400,
            "M_INVALID_USERNAME",
            &format!("registering {bad:?}"),
        );
    }
}

#[tokio::test]
async fn register_available() {
    let s = TestServer::start().await;
    s.register("alice", PW).await;

    let resp = s
        .get(&format!("{C}/register/available?username=fresh"), None)
        .await;
    assert_ok(&resp, "available fresh");
    assert_eq!(resp.1["available"], true, "{}", resp.1);

    let resp = s
        .get(&format!("{C}/register/available?username=alice"), None)
        .await;
    assert_err(&resp, 400, "M_USER_IN_USE", "available alice");

    let resp = s
        .get(
            &format!("{C}/register/available?username={}", enc("bad user")),
            None,
        )
        .await;
    assert_err(&resp, 400, "M_INVALID_USERNAME", "available 'bad user'");
}

#[tokio::test]
async fn registration_closed() {
    let s = TestServer::start_with(|c| c.registration.mode = RegistrationMode::Closed).await;
    let resp = s
        .register_attempt(json!({ "username": "alice", "password": PW }))
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "registration while closed");
    assert_err(
        &s.login_attempt("alice", PW).await,
        403,
        "M_FORBIDDEN",
        "login of never-created user",
    );
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
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "first request starts UIA: {uia}"
    );
    let session = uia["session"].as_str().expect("session").to_owned();
    let flows = uia["flows"].as_array().expect("flows");
    assert!(!flows.is_empty(), "{uia}");
    for flow in flows {
        assert!(
            flow["stages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "m.login.registration_token"),
            "every flow must require the registration token: {uia}"
        );
    }

    // Dummy auth alone must not be enough.
    let mut dummy = base.clone();
    dummy["auth"] = json!({ "type": "m.login.dummy", "session": session });
    let (st, body) = s.post(&register, None, &dummy).await;
    assert_ne!(
        st,
        StatusCode::OK,
        "dummy auth bypassed the token requirement: {body}"
    );

    // A wrong token is refused.
    let mut wrong = base.clone();
    wrong["auth"] =
        json!({ "type": "m.login.registration_token", "token": "nope", "session": session });
    let (st, body) = s.post(&register, None, &wrong).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "wrong token: {body}");
    assert!(
        !body["completed"]
            .as_array()
            .is_some_and(|c| c.iter().any(|s| s == "m.login.registration_token")),
        "wrong token marked as completed: {body}"
    );

    // The right token, followed by any remaining stages (only dummy is expected).
    let mut auth =
        json!({ "type": "m.login.registration_token", "token": "let-me-in", "session": session });
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
        assert!(
            has_flow_stage(&body, "m.login.dummy"),
            "unexpected remaining stages: {body}"
        );
        auth = json!({ "type": "m.login.dummy", "session": session });
    }
    let body = result.expect("registration with a valid token did not complete");
    assert!(
        body["user_id"].as_str().unwrap().starts_with("@tok:"),
        "{body}"
    );
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

    assert_err(
        &s.login_attempt("alice", "wrong password").await,
        403,
        "M_FORBIDDEN",
        "wrong password",
    );
    assert_err(
        &s.login_attempt("nobody", PW).await,
        403,
        "M_FORBIDDEN",
        "unknown user",
    );

    let (st, flows) = s.get(&format!("{C}/login"), None).await;
    assert_eq!(st, StatusCode::OK, "{flows}");
    assert!(
        flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["type"] == "m.login.password"),
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

    assert_ok(
        &s.post(&format!("{C}/logout"), second.token(), &json!({}))
            .await,
        "logout",
    );
    let resp = s.get(&format!("{C}/account/whoami"), second.token()).await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "whoami after logout");

    // The other session is untouched, and the logged-out device is gone.
    assert_ok(
        &s.get(&format!("{C}/account/whoami"), alice.token()).await,
        "first device still works",
    );
    let (_, devices) = s.get(&format!("{C}/devices"), alice.token()).await;
    let listed: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![alice.device_id.as_str()], "{devices}");
}

#[tokio::test]
async fn devices_list_rename_delete() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let phone = s.login("alice", PW).await;

    let (st, devices) = s.get(&format!("{C}/devices"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{devices}");
    let mut listed: Vec<String> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected = vec![alice.device_id.clone(), phone.device_id.clone()];
    expected.sort();
    assert_eq!(listed, expected, "{devices}");

    let device_path = format!("{C}/devices/{}", enc(&phone.device_id));
    assert_ok(
        &s.put(
            &device_path,
            alice.token(),
            &json!({ "display_name": "Phone" }),
        )
        .await,
        "rename",
    );
    let (st, device) = s.get(&device_path, alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{device}");
    assert_eq!(device["display_name"], "Phone");
    assert_eq!(device["device_id"], phone.device_id.as_str());

    // Deleting needs UIA with m.login.password.
    let (st, uia) = s.delete(&device_path, alice.token(), &json!({})).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "delete without auth must start UIA: {uia}"
    );
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

    let (st, body) = s
        .delete(&device_path, alice.token(), &password_auth("wrong"))
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "wrong password in UIA: {body}"
    );
    assert_eq!(errcode(&body), "M_FORBIDDEN", "{body}");
    assert_ok(
        &s.get(&device_path, alice.token()).await,
        "device survives a failed delete",
    );

    assert_ok(
        &s.delete(&device_path, alice.token(), &password_auth(PW))
            .await,
        "delete with password",
    );
    assert_err(
        &s.get(&device_path, alice.token()).await,
        404,
        "M_NOT_FOUND",
        "deleted device",
    );
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
async fn members_with_membership_filters() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let carol = s.register("carol", PW).await;
    let dave = s.register("dave", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    s.invite(&alice.access_token, &room, &carol.user_id).await;
    s.join(&dave.access_token, &room).await;
    s.leave(&dave.access_token, &room).await;

    let members = |query: &'static str| {
        let s = &s;
        let room = &room;
        let alice = &alice;
        async move {
            let (st, body) = s
                .get(&room_path(room, &format!("members{query}")), alice.token())
                .await;
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
        vec![
            pair(&alice, "join"),
            pair(&bob, "join"),
            pair(&carol, "invite"),
            pair(&dave, "leave")
        ]
    );
    assert_eq!(
        members("?membership=join").await,
        vec![pair(&alice, "join"), pair(&bob, "join")]
    );
    assert_eq!(
        members("?membership=invite").await,
        vec![pair(&carol, "invite")]
    );
    assert_eq!(
        members("?membership=leave").await,
        vec![pair(&dave, "leave")]
    );
    assert_eq!(
        members("?not_membership=join").await,
        vec![pair(&carol, "invite"), pair(&dave, "leave")]
    );

    let (st, joined) = s
        .get(&room_path(&room, "joined_members"), bob.token())
        .await;
    assert_eq!(st, StatusCode::OK, "{joined}");
    let mut joined_ids: Vec<&String> = joined["joined"]
        .as_object()
        .expect("joined map")
        .keys()
        .collect();
    joined_ids.sort();
    assert_eq!(joined_ids, vec![&alice.user_id, &bob.user_id], "{joined}");
}

#[tokio::test]
async fn members_at_a_past_token() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    let before_bob = s.sync(&alice.access_token, None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    s.join(&bob.access_token, &room).await;

    let member_ids = |body: &Value| {
        let mut ids: Vec<String> = body["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .map(|e| e["state_key"].as_str().expect("state_key").to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (st, then) = s
        .get(
            &room_path(&room, &format!("members?at={}", enc(&before_bob))),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{then}");
    assert_eq!(member_ids(&then), vec![alice.user_id.clone()], "{then}");
    let (st, now) = s.get(&room_path(&room, "members"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{now}");
    let mut both = vec![alice.user_id.clone(), bob.user_id.clone()];
    both.sort();
    assert_eq!(member_ids(&now), both, "{now}");
    let (st, bad) = s
        .get(&room_path(&room, "members?at=nonsense"), alice.token())
        .await;
    assert_eq!(
        (st, bad["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "{bad}"
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
async fn displayname_change_updates_member_events() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room1 = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    let room2 = s.create_room(&alice.access_token, &json!({})).await;
    s.join(&bob.access_token, &room1).await;
    let bob_since = s.sync(&bob.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let profile = format!("{C}/profile/{}/displayname", enc(&alice.user_id));
    assert_ok(
        &s.put(
            &profile,
            alice.token(),
            &json!({ "displayname": "Alice Liddell" }),
        )
        .await,
        "set name",
    );
    let (st, body) = s.get(&profile, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "Alice Liddell");

    for room in [&room1, &room2] {
        let (st, member) = s
            .get(
                &state_path(room, "m.room.member", &alice.user_id),
                alice.token(),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{member}");
        assert_eq!(
            member["displayname"], "Alice Liddell",
            "member event in {room}: {member}"
        );
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
    let per_room = format!(
        "{C}/user/{user}/rooms/{}/account_data/com.example.room",
        enc(&room)
    );
    let tag = format!("{C}/user/{user}/rooms/{}/tags/u.work", enc(&room));

    assert_ok(
        &s.put(&global, alice.token(), &json!({ "a": 1 })).await,
        "global account data",
    );
    assert_ok(
        &s.put(&per_room, alice.token(), &json!({ "b": 2 })).await,
        "room account data",
    );
    assert_ok(
        &s.put(&tag, alice.token(), &json!({ "order": 0.5 })).await,
        "tag",
    );

    assert_eq!(s.get(&global, alice.token()).await.1, json!({ "a": 1 }));
    assert_eq!(s.get(&per_room, alice.token()).await.1, json!({ "b": 2 }));
    let (st, tags) = s
        .get(
            &format!("{C}/user/{user}/rooms/{}/tags", enc(&room)),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{tags}");
    assert_eq!(tags["tags"]["u.work"]["order"], 0.5, "{tags}");
    assert_err(
        &s.get(
            &format!("{C}/user/{user}/account_data/com.example.unset"),
            alice.token(),
        )
        .await,
        404,
        "M_NOT_FOUND",
        "unset account data",
    );

    let find = |events: &Value, ty: &str| -> Option<Value> {
        events
            .as_array()?
            .iter()
            .find(|e| e["type"] == ty)
            .map(|e| e["content"].clone())
    };

    let initial = s.sync(&alice.access_token, None, 0).await;
    assert_eq!(
        find(&initial["account_data"]["events"], "com.example.global"),
        Some(json!({ "a": 1 })),
        "{initial}"
    );
    let room_ad = &initial["rooms"]["join"][&room]["account_data"]["events"];
    assert_eq!(
        find(room_ad, "com.example.room"),
        Some(json!({ "b": 2 })),
        "{initial}"
    );
    let tags_event =
        find(room_ad, "m.tag").unwrap_or_else(|| panic!("no m.tag in sync: {initial}"));
    assert_eq!(tags_event["tags"]["u.work"]["order"], 0.5, "{initial}");

    // Changes arrive in incremental sync.
    let since = initial["next_batch"].as_str().unwrap().to_owned();
    assert_ok(
        &s.put(&global, alice.token(), &json!({ "a": 2 })).await,
        "update global",
    );
    assert_ok(
        &s.delete(&tag, alice.token(), &json!({})).await,
        "delete tag",
    );
    let inc = s.sync(&alice.access_token, Some(&since), 5_000).await;
    assert_eq!(
        find(&inc["account_data"]["events"], "com.example.global"),
        Some(json!({ "a": 2 })),
        "{inc}"
    );
    let tags_event = find(
        &inc["rooms"]["join"][&room]["account_data"]["events"],
        "m.tag",
    )
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
async fn discovery_endpoints() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;

    let (st, versions) = s.get("/_matrix/client/versions", None).await;
    assert_eq!(st, StatusCode::OK, "{versions}");
    let list = versions["versions"].as_array().expect("versions array");
    assert!(
        list.iter()
            .any(|v| v.as_str().is_some_and(|v| v.starts_with("v1."))),
        "{versions}"
    );

    let (st, caps) = s.get(&format!("{C}/capabilities"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{caps}");
    let room_versions = &caps["capabilities"]["m.room_versions"];
    let default = room_versions["default"]
        .as_str()
        .unwrap_or_else(|| panic!("no default room version: {caps}"));
    assert!(
        room_versions["available"].get(default).is_some(),
        "default room version not available: {caps}"
    );
    assert_err(
        &s.get(&format!("{C}/capabilities"), None).await,
        401,
        "M_MISSING_TOKEN",
        "capabilities without token",
    );

    // Without configured discovery information the spec's answer is 404.
    let resp = s.get("/.well-known/matrix/client", None).await;
    assert_err(
        &resp,
        404,
        "M_NOT_FOUND",
        "well-known without configuration",
    );
}

#[tokio::test]
async fn well_known_client_when_configured() {
    let s = TestServer::start_with(|c| {
        c.well_known.client_base_url = Some("https://matrix.example.org".to_owned());
    })
    .await;
    let (st, wk) = s.get("/.well-known/matrix/client", None).await;
    assert_eq!(st, StatusCode::OK, "{wk}");
    assert_eq!(
        wk["m.homeserver"]["base_url"], "https://matrix.example.org",
        "{wk}"
    );
}

// ---------------------------------------------------------------------------
// More sync and permission edges
// ---------------------------------------------------------------------------

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
async fn non_members_are_forbidden() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let carol = s.register("carol", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "private_chat" }))
        .await;
    let event_id = s
        .send_message(&alice.access_token, &room, "t1", "secret")
        .await;

    let resp = s
        .put(
            &room_path(&room, "send/m.room.message/c1"),
            carol.token(),
            &json!({ "msgtype": "m.text", "body": "x" }),
        )
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "non-member sends a message");
    let resp = s
        .post(
            &format!("{C}/join/{}", enc(&room)),
            carol.token(),
            &json!({}),
        )
        .await;
    assert_err(
        &resp,
        403,
        "M_FORBIDDEN",
        "joining an invite-only room uninvited",
    );
    let resp = s
        .get(&room_path(&room, "messages?dir=b"), carol.token())
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "non-member reads /messages");
    let resp = s
        .get(
            &room_path(&room, &format!("event/{}", enc(&event_id))),
            carol.token(),
        )
        .await;
    assert!(
        matches!(resp.0.as_u16(), 403 | 404) && resp.1["content"]["body"].is_null(),
        "non-member read an event: {} {}",
        resp.0,
        resp.1
    );
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
async fn account_data_of_other_users_is_forbidden() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let path = format!("{C}/user/{}/account_data/com.example", enc(&bob.user_id));
    let resp = s.put(&path, alice.token(), &json!({ "a": 1 })).await;
    assert_err(&resp, 403, "M_FORBIDDEN", "alice writes bob's account data");
    let resp = s.get(&path, alice.token()).await;
    assert_err(&resp, 403, "M_FORBIDDEN", "alice reads bob's account data");
}

#[tokio::test]
async fn server_controlled_account_data_is_refused() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let user = enc(&alice.user_id);
    let room_level = format!(
        "{C}/user/{user}/rooms/{}/account_data/m.fully_read",
        enc(&room)
    );
    let global = format!("{C}/user/{user}/account_data/m.push_rules");
    let room_resp = s
        .put(&room_level, alice.token(), &json!({ "event_id": "$x" }))
        .await;
    let global_resp = s
        .put(&global, alice.token(), &json!({ "global": {} }))
        .await;
    assert_err(
        &global_resp,
        405,
        "M_BAD_JSON",
        "setting m.push_rules through global account data",
    );
    assert_err(
        &room_resp,
        405,
        "M_BAD_JSON",
        "setting m.fully_read through room account data",
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
async fn full_profile_and_state_listing() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "name": "Listing" }))
        .await;
    let profile = format!("{C}/profile/{}", enc(&alice.user_id));
    assert_ok(
        &s.put(
            &format!("{profile}/displayname"),
            alice.token(),
            &json!({ "displayname": "Al" }),
        )
        .await,
        "name",
    );
    let (st, body) = s.get(&profile, alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "Al", "{body}");
    assert_err(
        &s.get(
            &format!("{C}/profile/{}", enc("@nobody:localhost")),
            alice.token(),
        )
        .await,
        404,
        "M_NOT_FOUND",
        "unknown profile",
    );

    let (st, state) = s.get(&room_path(&room, "state"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{state}");
    let types: Vec<&str> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for ty in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.name",
    ] {
        assert!(types.contains(&ty), "{ty} missing from /state: {state}");
    }
    let (_, member) = s
        .get(
            &state_path(&room, "m.room.member", &alice.user_id),
            alice.token(),
        )
        .await;
    assert_eq!(
        member["displayname"], "Al",
        "member event follows the profile: {member}"
    );
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

// ---------------------------------------------------------------------------
// Visibility, receipts, typing
// ---------------------------------------------------------------------------

fn ephemeral_of(sync: &Value, room_id: &str) -> Vec<Value> {
    sync["rooms"]["join"][room_id]["ephemeral"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
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

#[tokio::test]
async fn left_member_sees_nothing_after_leaving() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    s.send_message(&alice.access_token, &room, "t1", "while bob is here")
        .await;
    let bob_since = s.sync(&bob.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    s.leave(&bob.access_token, &room).await;
    let secret = s
        .send_message(&alice.access_token, &room, "t2", "after bob left")
        .await;

    let resp = s.sync(&bob.access_token, Some(&bob_since), 0).await;
    let left = &resp["rooms"]["leave"][&room];
    assert!(
        left.is_object(),
        "left room missing from bob's sync: {resp}"
    );
    assert!(resp["rooms"]["join"].get(&room).is_none(), "{resp}");
    assert!(
        !resp.to_string().contains("after bob left"),
        "sync leaks post-leave message: {resp}"
    );

    let (st, page) = s
        .get(&room_path(&room, "messages?dir=b&limit=100"), bob.token())
        .await;
    if st == StatusCode::OK {
        let bodies = message_bodies(page["chunk"].as_array().unwrap());
        assert!(
            !bodies.contains(&"after bob left".to_owned()),
            "/messages leaks post-leave message: {page}"
        );
    } else {
        assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
    }
    let (st, ev) = s
        .get(
            &room_path(&room, &format!("event/{}", enc(&secret))),
            bob.token(),
        )
        .await;
    assert!(
        matches!(st.as_u16(), 403 | 404),
        "post-leave event readable: {st} {ev}"
    );
}

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
    let receipts: Vec<Value> = ephemeral_of(&resp, &room)
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
    let receipts: Vec<Value> = ephemeral_of(&resp, &room)
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
    let users = ephemeral_of(&resp, &room)
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
    let users = ephemeral_of(&resp, &room)
        .into_iter()
        .find(|e| e["type"] == "m.typing")
        .unwrap_or_else(|| panic!("typing stop not synced: {resp}"))["content"]["user_ids"]
        .clone();
    assert_eq!(users, json!([]), "{resp}");
}

#[tokio::test]
async fn register_with_inhibit_login() {
    let s = TestServer::start().await;
    let (st, body) = s
        .register_attempt(json!({ "username": "quiet", "password": PW, "inhibit_login": true }))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body["user_id"]
            .as_str()
            .is_some_and(|u| u.starts_with("@quiet:")),
        "{body}"
    );
    assert!(
        body.get("access_token").is_none(),
        "inhibit_login must not return a token: {body}"
    );
    s.login("quiet", PW).await;
}

// ---------------------------------------------------------------------------
// Event details, accounts, aliases
// ---------------------------------------------------------------------------

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
async fn register_generates_username_and_names_the_device() {
    let s = TestServer::start().await;
    let (st, body) = s
        .register_attempt(json!({
            "password": PW,
            "device_id": "MYDEVICE",
            "initial_device_display_name": "Laptop",
        }))
        .await;
    assert_eq!(st, StatusCode::OK, "registration without username: {body}");
    let user_id = body["user_id"].as_str().expect("user_id");
    assert!(
        user_id.starts_with('@') && user_id.ends_with(":localhost"),
        "{body}"
    );
    assert_eq!(body["device_id"], "MYDEVICE", "{body}");
    let token = body["access_token"].as_str().unwrap();
    let (st, device) = s.get(&format!("{C}/devices/MYDEVICE"), Some(token)).await;
    assert_eq!(st, StatusCode::OK, "{device}");
    assert_eq!(device["display_name"], "Laptop", "{device}");
}

#[tokio::test]
async fn login_with_full_user_id_and_logout_all() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let by_mxid = s.login(&alice.user_id, PW).await;
    assert_eq!(by_mxid.user_id, alice.user_id);
    let third = s.login("alice", PW).await;

    assert_ok(
        &s.post(&format!("{C}/logout/all"), third.token(), &json!({}))
            .await,
        "logout/all",
    );
    for acct in [&alice, &by_mxid, &third] {
        let resp = s.get(&format!("{C}/account/whoami"), acct.token()).await;
        assert_err(
            &resp,
            401,
            "M_UNKNOWN_TOKEN",
            &format!("device {} after logout/all", acct.device_id),
        );
    }
    let fresh = s.login("alice", PW).await;
    let (_, devices) = s.get(&format!("{C}/devices"), fresh.token()).await;
    assert_eq!(
        devices["devices"].as_array().map(Vec::len),
        Some(1),
        "{devices}"
    );
}

#[tokio::test]
async fn room_alias_and_joined_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(
            &alice.access_token,
            &json!({ "preset": "public_chat", "room_alias_name": "lobby" }),
        )
        .await;
    let resp = s
        .post(
            &format!("{C}/createRoom"),
            bob.token(),
            &json!({ "room_alias_name": "lobby" }),
        )
        .await;
    assert_err(
        &resp,
        400,
        "M_ROOM_IN_USE",
        "second room with the same alias",
    );

    let (st, dir) = s
        .get(
            &format!("{C}/directory/room/{}", enc("#lobby:localhost")),
            bob.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{dir}");
    assert_eq!(dir["room_id"], room.as_str(), "{dir}");
    let (st, alias) = s
        .get(
            &state_path(&room, "m.room.canonical_alias", ""),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{alias}");
    assert_eq!(alias["alias"], "#lobby:localhost", "{alias}");

    // Joining by alias.
    let (st, joined) = s
        .post(
            &format!("{C}/join/{}", enc("#lobby:localhost")),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{joined}");
    assert_eq!(joined["room_id"], room.as_str());
    let (st, rooms) = s.get(&format!("{C}/joined_rooms"), bob.token()).await;
    assert_eq!(st, StatusCode::OK, "{rooms}");
    assert_eq!(rooms["joined_rooms"], json!([room]), "{rooms}");
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

// ---------------------------------------------------------------------------
// Concurrency and long-poll wake-ups for non-timeline changes
// ---------------------------------------------------------------------------

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
        ephemeral_of(&resp, &room)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_and_sends_stay_consistent() {
    const USERS: usize = 6;
    const PER_USER: usize = 15;
    let s = std::sync::Arc::new(TestServer::start().await);
    let alice = s.register("alice", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(s.register(&format!("user{i}"), PW).await);
    }

    let tasks: Vec<_> = users
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, user)| {
            let (s, room) = (s.clone(), room.clone());
            tokio::spawn(async move {
                s.join(&user.access_token, &room).await;
                let mut ids = Vec::new();
                for n in 0..PER_USER {
                    let body = format!("u{i}-{n}");
                    ids.push(
                        s.send_message(&user.access_token, &room, &body, &body)
                            .await,
                    );
                }
                ids
            })
        })
        .collect();
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(task.await.expect("writer task"));
    }

    let (st, joined) = s
        .get(&room_path(&room, "joined_members"), alice.token())
        .await;
    assert_eq!(st, StatusCode::OK, "{joined}");
    assert_eq!(
        joined["joined"].as_object().unwrap().len(),
        USERS + 1,
        "a concurrent join was lost: {joined}"
    );

    let page = messages(&s, &alice, &room, "dir=f&limit=1000").await;
    let chunk = page["chunk"].as_array().unwrap();
    let bodies = message_bodies(chunk);
    assert_eq!(bodies.len(), USERS * PER_USER, "{page}");
    for (i, ids_of_user) in sent.iter().enumerate() {
        let positions: Vec<usize> = ids_of_user
            .iter()
            .map(|id| {
                chunk
                    .iter()
                    .position(|e| e["event_id"] == id.as_str())
                    .expect("acknowledged event in history")
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "user{i}'s messages out of order"
        );
        let join_pos = chunk
            .iter()
            .position(|e| {
                e["type"] == "m.room.member" && e["state_key"] == users[i].user_id.as_str()
            })
            .expect("join in history");
        assert!(join_pos < positions[0], "user{i} spoke before joining");
    }

    // Every member's sync agrees on the membership.
    for user in &users {
        let resp = s.sync(&user.access_token, None, 0).await;
        let state_and_timeline: Vec<Value> = resp["rooms"]["join"][&room]["state"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .chain(timeline(&resp, &room))
            .collect();
        let mut joined_members: Vec<&str> = Vec::new();
        for e in &state_and_timeline {
            if e["type"] == "m.room.member" {
                let key = e["state_key"].as_str().unwrap();
                joined_members.retain(|k| *k != key);
                if e["content"]["membership"] == "join" {
                    joined_members.push(key);
                }
            }
        }
        // The initial sync's timeline may be limited; the summary must still count everyone.
        let summary = &resp["rooms"]["join"][&room]["summary"]["m.joined_member_count"];
        if !summary.is_null() {
            assert_eq!(summary, &json!(USERS + 1), "{resp}");
        }
        assert!(
            joined_members.contains(&user.user_id.as_str()),
            "{} not joined in own sync",
            user.user_id
        );
    }
}

// ---------------------------------------------------------------------------
// Account lifecycle and moderation
// ---------------------------------------------------------------------------

fn password_auth(user_id: &str, password: &str, session: &Value) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user_id },
        "password": password,
        "session": session,
    })
}

/// Runs a UIA-protected POST with `m.login.password`.
async fn post_with_password(
    s: &TestServer,
    path: &str,
    who: &Account,
    password: &str,
    body: Value,
) -> (StatusCode, Value) {
    let (st, uia) = s.post(path, who.token(), &body).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "{path} must require UIA: {uia}"
    );
    assert!(has_flow_stage(&uia, "m.login.password"), "{uia}");
    let mut body = body;
    body["auth"] = password_auth(&who.user_id, password, &uia["session"]);
    s.post(path, who.token(), &body).await
}

#[tokio::test]
async fn change_password_logs_out_other_devices() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let other = s.login("alice", PW).await;

    let resp = post_with_password(
        &s,
        &format!("{C}/account/password"),
        &alice,
        PW,
        json!({ "new_password": "n3w-pass" }),
    )
    .await;
    assert_ok(&resp, "change password");
    assert_err(
        &s.login_attempt("alice", PW).await,
        403,
        "M_FORBIDDEN",
        "login with the old password",
    );
    s.login("alice", "n3w-pass").await;
    assert_ok(
        &s.get(&format!("{C}/account/whoami"), alice.token()).await,
        "the requesting device stays",
    );
    let resp = s.get(&format!("{C}/account/whoami"), other.token()).await;
    assert_err(
        &resp,
        401,
        "M_UNKNOWN_TOKEN",
        "other device after a password change",
    );
}

#[tokio::test]
async fn deactivated_account_is_gone_for_good() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    let resp = post_with_password(
        &s,
        &format!("{C}/account/deactivate"),
        &alice,
        PW,
        json!({}),
    )
    .await;
    assert_ok(&resp, "deactivate");
    assert_err(
        &s.get(&format!("{C}/account/whoami"), alice.token()).await,
        401,
        "M_UNKNOWN_TOKEN",
        "old token",
    );
    assert_err(
        &s.login_attempt("alice", PW).await,
        403,
        "M_USER_DEACTIVATED",
        "login after deactivation",
    );
    let resp = s
        .register_attempt(json!({ "username": "alice", "password": PW }))
        .await;
    assert_err(
        &resp,
        400,
        "M_USER_IN_USE",
        "re-registering a deactivated name",
    );

    // The deactivated user left their rooms.
    let bob = s.register("bob", PW).await;
    let (st, members) = s.get(&room_path(&room, "members"), bob.token()).await;
    if st == StatusCode::OK {
        let alice_member = members["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["state_key"] == alice.user_id.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(alice_member["content"]["membership"], "leave", "{members}");
    }
}

#[tokio::test]
async fn kick_ban_unban() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;

    let resp = s
        .post(
            &room_path(&room, "kick"),
            bob.token(),
            &json!({ "user_id": alice.user_id }),
        )
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "bob (power 0) kicks alice");

    let resp = s
        .post(
            &room_path(&room, "kick"),
            alice.token(),
            &json!({ "user_id": bob.user_id, "reason": "out" }),
        )
        .await;
    assert_ok(&resp, "kick");
    let (_, member) = s
        .get(
            &state_path(&room, "m.room.member", &bob.user_id),
            alice.token(),
        )
        .await;
    assert_eq!(member["membership"], "leave", "{member}");
    assert_eq!(member["reason"], "out", "{member}");

    s.join(&bob.access_token, &room).await;
    assert_ok(
        &s.post(
            &room_path(&room, "ban"),
            alice.token(),
            &json!({ "user_id": bob.user_id }),
        )
        .await,
        "ban",
    );
    let resp = s
        .post(&format!("{C}/join/{}", enc(&room)), bob.token(), &json!({}))
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "banned user joins");
    let (_, member) = s
        .get(
            &state_path(&room, "m.room.member", &bob.user_id),
            alice.token(),
        )
        .await;
    assert_eq!(member["membership"], "ban", "{member}");

    assert_ok(
        &s.post(
            &room_path(&room, "unban"),
            alice.token(),
            &json!({ "user_id": bob.user_id }),
        )
        .await,
        "unban",
    );
    s.join(&bob.access_token, &room).await;
}

#[tokio::test]
async fn refresh_tokens() {
    let s = TestServer::start().await;
    s.register("alice", PW).await;
    let (st, login) = s
        .post(
            &format!("{C}/login"),
            None,
            &json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "alice" },
                "password": PW,
                "refresh_token": true,
            }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{login}");
    let refresh = login["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token: {login}"))
        .to_owned();
    assert!(
        login["expires_in_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{login}"
    );

    let (st, renewed) = s
        .post(
            &format!("{C}/refresh"),
            None,
            &json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{renewed}");
    let new_access = renewed["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    assert_ne!(new_access, login["access_token"].as_str().unwrap());
    let (st, who) = s
        .get(&format!("{C}/account/whoami"), Some(&new_access))
        .await;
    assert_eq!(st, StatusCode::OK, "{who}");
    assert_eq!(
        who["device_id"], login["device_id"],
        "refresh keeps the device"
    );

    let resp = s
        .post(
            &format!("{C}/refresh"),
            None,
            &json!({ "refresh_token": "not-a-refresh-token" }),
        )
        .await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "unknown refresh token");
}

#[tokio::test]
async fn forget_removes_left_room_from_sync() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    s.leave(&bob.access_token, &room).await;

    let resp = s.sync(&bob.access_token, None, 0).await;
    // Initial syncs may omit left rooms; but it must not be joined.
    assert!(resp["rooms"]["join"].get(&room).is_none(), "{resp}");
    assert_ok(
        &s.post(&room_path(&room, "forget"), bob.token(), &json!({}))
            .await,
        "forget",
    );
    let filter = enc(&json!({ "room": { "include_leave": true } }).to_string());
    let (st, resp) = s
        .get(&format!("{C}/sync?timeout=0&filter={filter}"), bob.token())
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert!(
        resp["rooms"]["leave"].get(&room).is_none(),
        "forgotten room still in sync: {resp}"
    );

    let resp = s
        .post(&room_path(&room, "forget"), alice.token(), &json!({}))
        .await;
    assert_eq!(
        resp.0,
        StatusCode::BAD_REQUEST,
        "forgetting a joined room: {}",
        resp.1
    );
}

// ---------------------------------------------------------------------------
// Awkward input
// ---------------------------------------------------------------------------

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
async fn user_data_survives_restart() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let user = enc(&alice.user_id);
    let (st, body) = s
        .post(
            &format!("{C}/user/{user}/filter"),
            alice.token(),
            &json!({ "room": { "timeline": { "limit": 3 } } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let filter_id = body["filter_id"].as_str().unwrap().to_owned();
    let global = format!("{C}/user/{user}/account_data/com.example.kept");
    assert_ok(
        &s.put(&global, alice.token(), &json!({ "k": true })).await,
        "account data",
    );
    let tag = format!("{C}/user/{user}/rooms/{}/tags/m.favourite", enc(&room));
    assert_ok(&s.put(&tag, alice.token(), &json!({})).await, "tag");
    let device = format!("{C}/devices/{}", enc(&alice.device_id));
    assert_ok(
        &s.put(&device, alice.token(), &json!({ "display_name": "Kept" }))
            .await,
        "rename device",
    );
    let profile = format!("{C}/profile/{user}/displayname");
    assert_ok(
        &s.put(
            &profile,
            alice.token(),
            &json!({ "displayname": "Kept Alice" }),
        )
        .await,
        "displayname",
    );

    let s = s.restarted().await;

    let (st, filter) = s
        .get(
            &format!("{C}/user/{user}/filter/{}", enc(&filter_id)),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "filter after restart: {filter}");
    assert_eq!(filter["room"]["timeline"]["limit"], 3);
    assert_eq!(s.get(&global, alice.token()).await.1, json!({ "k": true }));
    let (_, tags) = s
        .get(
            &format!("{C}/user/{user}/rooms/{}/tags", enc(&room)),
            alice.token(),
        )
        .await;
    assert!(tags["tags"]["m.favourite"].is_object(), "{tags}");
    let (_, dev) = s.get(&device, alice.token()).await;
    assert_eq!(dev["display_name"], "Kept", "{dev}");
    assert_eq!(s.get(&profile, None).await.1["displayname"], "Kept Alice");
    let (st, resp) = s
        .get(
            &format!("{C}/sync?timeout=0&filter={}", enc(&filter_id)),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert!(
        timeline(&resp, &room).len() <= 3,
        "stored filter not applied after restart: {resp}"
    );
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

fn rate(per_minute: u32, burst: u32) -> Rate {
    Rate { per_minute, burst }
}

#[tokio::test]
async fn push_rules_can_be_read_changed_and_synced() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let t = alice.token();

    // Server defaults, both through /pushrules/ and the initial sync.
    let (st, all) = s.get("/_matrix/client/v3/pushrules/", t).await;
    assert_eq!(st, StatusCode::OK, "{all}");
    let overrides = all["global"]["override"]
        .as_array()
        .expect("override rules");
    assert!(
        overrides
            .iter()
            .any(|r| r["rule_id"] == ".m.rule.master" && r["default"] == true),
        "{all}"
    );
    let sync = s.sync(&alice.access_token, None, 0).await;
    let synced = sync["account_data"]["events"]
        .as_array()
        .expect("account data")
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .cloned();
    assert_eq!(
        synced.expect("m.push_rules in initial sync")["content"]["global"]["override"],
        all["global"]["override"]
    );
    let since = sync["next_batch"].as_str().expect("next_batch").to_owned();

    // A new content rule, placed, read back, toggled and given new actions.
    let rule = json!({ "pattern": "cake", "actions": ["notify", { "set_tweak": "highlight" }] });
    let (st, body) = s
        .put("/_matrix/client/v3/pushrules/global/content/cake", t, &rule)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, got) = s
        .get("/_matrix/client/v3/pushrules/global/content/cake", t)
        .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(
        (
            got["pattern"].as_str(),
            got["enabled"].as_bool(),
            got["default"].as_bool()
        ),
        (Some("cake"), Some(true), Some(false)),
        "{got}"
    );
    let (st, _) = s
        .put(
            "/_matrix/client/v3/pushrules/global/content/cake/enabled",
            t,
            &json!({ "enabled": false }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, enabled) = s
        .get(
            "/_matrix/client/v3/pushrules/global/content/cake/enabled",
            t,
        )
        .await;
    assert_eq!(enabled, json!({ "enabled": false }));
    let (st, _) = s
        .put(
            "/_matrix/client/v3/pushrules/global/content/cake/actions",
            t,
            &json!({ "actions": [] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, actions) = s
        .get(
            "/_matrix/client/v3/pushrules/global/content/cake/actions",
            t,
        )
        .await;
    assert_eq!(actions, json!({ "actions": [] }));
    // Server default rules can be disabled but not deleted.
    let (st, _) = s
        .put(
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled",
            t,
            &json!({ "enabled": true }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = s
        .delete(
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master",
            t,
            &json!({}),
        )
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "{body}"
    );

    // The change reaches the next sync as account data.
    let next = s.sync(&alice.access_token, Some(&since), 0).await;
    let synced = next["account_data"]["events"]
        .as_array()
        .expect("account data")
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .cloned();
    let synced = synced.expect("m.push_rules after a change");
    assert!(
        synced["content"]["global"]["content"]
            .as_array()
            .expect("content rules")
            .iter()
            .any(|r| r["rule_id"] == "cake"),
        "{synced}"
    );

    // Errors: unknown rule, unknown kind, missing pattern, server-owned account data.
    let (st, body) = s
        .delete(
            "/_matrix/client/v3/pushrules/global/content/cake",
            t,
            &json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = s
        .get("/_matrix/client/v3/pushrules/global/content/cake", t)
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")),
        "{body}"
    );
    let (st, body) = s
        .get("/_matrix/client/v3/pushrules/global/nonsense/x", t)
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "{body}"
    );
    let (st, body) = s
        .put(
            "/_matrix/client/v3/pushrules/global/content/nopattern",
            t,
            &json!({ "actions": [] }),
        )
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")),
        "{body}"
    );
    let path = format!(
        "/_matrix/client/v3/user/{}/account_data/m.push_rules",
        enc(&alice.user_id)
    );
    let (st, body) = s.put(&path, t, &json!({ "global": {} })).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("M_BAD_JSON")),
        "{body}"
    );
}

#[tokio::test]
async fn user_directory_finds_people_in_shared_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let _loner = s.register("bobby", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    let (st, _) = s
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&bob.user_id)
            ),
            bob.token(),
            &json!({ "displayname": "Robert Builder" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    let search = |term: &'static str, limit: u64| {
        let s = &s;
        let alice = &alice;
        async move {
            let (st, body) = s
                .post(
                    "/_matrix/client/v3/user_directory/search",
                    alice.token(),
                    &json!({ "search_term": term, "limit": limit }),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{body}");
            body
        }
    };
    let found = search("rob", 10).await;
    assert_eq!(
        found["results"],
        json!([{ "user_id": bob.user_id, "display_name": "Robert Builder" }]),
        "{found}"
    );
    assert_eq!(found["limited"], false);
    // bobby shares no room with alice, so only bob is found.
    let found = search("bob", 10).await;
    assert_eq!(
        found["results"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    let found = search("localhost", 1).await;
    assert_eq!(
        (
            found["results"].as_array().map(Vec::len),
            found["limited"].as_bool()
        ),
        (Some(1), Some(true)),
        "{found}"
    );
    let (st, body) = s
        .post(
            "/_matrix/client/v3/user_directory/search",
            alice.token(),
            &json!({ "limit": 3 }),
        )
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")),
        "{body}"
    );
}

#[tokio::test]
async fn room_upgrade_replaces_the_room() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat", "name": "Old name", "room_version": "10", "room_alias_name": "upgraded" }))
        .await;
    s.join(&bob.access_token, &room).await;

    // Bob (power 0) may not upgrade; an unknown version is refused.
    let upgrade = |who: &Account, version: &str| {
        let path = room_path(&room, "upgrade");
        let body = json!({ "new_version": version });
        let token = who.access_token.clone();
        let s = &s;
        async move { s.post(&path, Some(&token), &body).await }
    };
    let (st, body) = upgrade(&bob, "11").await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (st, body) = upgrade(&alice, "999").await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_UNSUPPORTED_ROOM_VERSION")),
        "{body}"
    );

    for version in ["11", "12"] {
        let old = s
            .get(
                &format!(
                    "/_matrix/client/v3/directory/room/{}",
                    enc("#upgraded:localhost")
                ),
                None,
            )
            .await
            .1["room_id"]
            .as_str()
            .expect("alias")
            .to_owned();
        let path = room_path(&old, "upgrade");
        let (st, body) = s
            .post(&path, alice.token(), &json!({ "new_version": version }))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let new = body["replacement_room"]
            .as_str()
            .expect("replacement_room")
            .to_owned();

        let (_, create) = s
            .get(&room_path(&new, "state/m.room.create/"), alice.token())
            .await;
        assert_eq!(
            (
                create["room_version"].as_str(),
                create["predecessor"]["room_id"].as_str()
            ),
            (Some(version), Some(old.as_str())),
            "{create}"
        );
        let (_, name) = s
            .get(&room_path(&new, "state/m.room.name/"), alice.token())
            .await;
        assert_eq!(name["name"], "Old name");
        let (_, rules) = s
            .get(&room_path(&new, "state/m.room.join_rules/"), alice.token())
            .await;
        assert_eq!(rules["join_rule"], "public");
        let (_, tombstone) = s
            .get(&room_path(&old, "state/m.room.tombstone/"), alice.token())
            .await;
        assert_eq!(tombstone["replacement_room"], new.as_str());
        // The alias follows the room; the old room is read-only for ordinary members.
        let (_, alias) = s
            .get(
                &format!(
                    "/_matrix/client/v3/directory/room/{}",
                    enc("#upgraded:localhost")
                ),
                None,
            )
            .await;
        assert_eq!(alias["room_id"], new.as_str());
        let (_, canonical) = s
            .get(
                &room_path(&new, "state/m.room.canonical_alias/"),
                alice.token(),
            )
            .await;
        assert_eq!(canonical["alias"], "#upgraded:localhost");
        let (st, body) = s
            .put(
                &room_path(&old, "send/m.room.message/late"),
                bob.token(),
                &json!({ "msgtype": "m.text", "body": "hi" }),
            )
            .await;
        assert_eq!(
            (st, body["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
            "{body}"
        );
        // Bob follows the tombstone.
        s.join(&bob.access_token, &new).await;
    }
}

#[tokio::test]
async fn knocking_asks_to_join_and_can_be_accepted() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let knock_room = s
        .create_room(
            &alice.access_token,
            &json!({ "room_version": "11", "initial_state": [
        { "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }
    ] }),
        )
        .await;
    let invite_only = s
        .create_room(&alice.access_token, &json!({ "room_version": "11" }))
        .await;
    let since = s.sync(&bob.access_token, None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    let knock = |room: &str| {
        let path = format!("/_matrix/client/v3/knock/{}", enc(room));
        let s = &s;
        let token = bob.access_token.clone();
        async move {
            s.post(&path, Some(&token), &json!({ "reason": "let me in" }))
                .await
        }
    };
    let (st, body) = knock(&invite_only).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (st, body) = knock(&knock_room).await;
    assert_eq!(
        (st, body["room_id"].as_str()),
        (StatusCode::OK, Some(knock_room.as_str())),
        "{body}"
    );

    // Bob sees the knock in his sync; Alice sees the knock as a member event.
    let synced = s.sync(&bob.access_token, Some(&since), 0).await;
    let knock_state = &synced["rooms"]["knock"][&knock_room]["knock_state"]["events"];
    let own = knock_state
        .as_array()
        .expect("knock_state")
        .iter()
        .find(|e| e["type"] == "m.room.member")
        .cloned()
        .expect("member event");
    assert_eq!(
        (
            own["content"]["membership"].as_str(),
            own["state_key"].as_str()
        ),
        (Some("knock"), Some(bob.user_id.as_str())),
        "{synced}"
    );
    let (_, member) = s
        .get(
            &room_path(
                &knock_room,
                &format!("state/m.room.member/{}", enc(&bob.user_id)),
            ),
            alice.token(),
        )
        .await;
    assert_eq!(
        (member["membership"].as_str(), member["reason"].as_str()),
        (Some("knock"), Some("let me in")),
        "{member}"
    );

    // Alice lets Bob in by inviting him; he joins.
    s.invite(&alice.access_token, &knock_room, &bob.user_id)
        .await;
    s.join(&bob.access_token, &knock_room).await;
    let (st, body) = knock(&knock_room).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
}

#[tokio::test]
async fn turn_credentials_when_configured() {
    let plain = TestServer::start().await;
    let alice = plain.register("alice", PW).await;
    let (st, body) = plain
        .get("/_matrix/client/v3/voip/turnServer", alice.token())
        .await;
    assert_eq!(
        (st, body),
        (StatusCode::OK, json!({})),
        "no TURN server configured"
    );
    let (st, body) = plain
        .get("/_matrix/client/v3/account/3pid", alice.token())
        .await;
    assert_eq!((st, body), (StatusCode::OK, json!({ "threepids": [] })));

    let s = TestServer::start_with(|c| {
        c.turn.uris = vec!["turn:turn.localhost:3478?transport=udp".into()];
        c.turn.shared_secret = Some("secret".into());
        c.turn.user_lifetime_ms = 3_600_000;
    })
    .await;
    let alice = s.register("alice", PW).await;
    let (st, body) = s
        .get("/_matrix/client/v3/voip/turnServer", alice.token())
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        (body["ttl"].as_u64(), body["uris"][0].as_str()),
        (Some(3600), Some("turn:turn.localhost:3478?transport=udp")),
        "{body}"
    );
    let username = body["username"].as_str().expect("username");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, alice.user_id);
    assert!(expiry.parse::<u64>().expect("expiry") > 1_700_000_000);
    assert_eq!(
        body["password"].as_str().map(str::len),
        Some(28),
        "base64 of a SHA-1 HMAC"
    );
    let (st, body) = s.get("/_matrix/client/v3/voip/turnServer", None).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_MISSING_TOKEN"))
    );
}

#[tokio::test]
async fn room_summary_and_mutual_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let carol = s.register("carol", PW).await;
    let public = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat", "name": "Lobby", "topic": "Hello", "room_alias_name": "lobby" }))
        .await;
    let private = s
        .create_room(
            &alice.access_token,
            &json!({ "preset": "private_chat", "name": "Secret" }),
        )
        .await;
    s.join(&bob.access_token, &public).await;

    let summary = |room: String, token: Option<String>| {
        let s = &s;
        async move {
            s.get(
                &format!("/_matrix/client/v1/room_summary/{}", enc(&room)),
                token.as_deref(),
            )
            .await
        }
    };
    // Anyone may see the public room, by ID or alias; members see their membership.
    let (st, body) = summary("#lobby:localhost".into(), None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["room_id"].as_str(),
            body["name"].as_str(),
            body["topic"].as_str(),
            body["num_joined_members"].as_u64(),
            body["join_rule"].as_str()
        ),
        (
            Some(public.as_str()),
            Some("Lobby"),
            Some("Hello"),
            Some(2),
            Some("public")
        ),
        "{body}"
    );
    assert!(body.get("membership").is_none(), "{body}");
    let (_, body) = summary(public.clone(), Some(bob.access_token.clone())).await;
    assert_eq!(body["membership"], "join");
    // The private room is hidden from outsiders, shown to its member.
    let (st, body) = summary(private.clone(), Some(carol.access_token.clone())).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")),
        "{body}"
    );
    let (st, body) = summary(private.clone(), Some(alice.access_token.clone())).await;
    assert_eq!(
        (st, body["name"].as_str()),
        (StatusCode::OK, Some("Secret")),
        "{body}"
    );

    // Mutual rooms: only the public one is shared by Alice and Bob.
    let path = format!(
        "/_matrix/client/v1/mutual_rooms?user_id={}",
        enc(&bob.user_id)
    );
    let (st, body) = s.get(&path, alice.token()).await;
    assert_eq!(
        (st, body),
        (StatusCode::OK, json!({ "joined": [public], "count": 1 }))
    );
    let path = format!(
        "/_matrix/client/v1/mutual_rooms?user_id={}",
        enc(&alice.user_id)
    );
    let (st, body) = s.get(&path, alice.token()).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "own user: {body}"
    );
    let (st, body) = s
        .get("/_matrix/client/v1/mutual_rooms", alice.token())
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "missing user_id: {body}"
    );
}

#[tokio::test]
async fn support_well_known_and_profile_field_delete() {
    let plain = TestServer::start().await;
    let (st, body) = plain.get("/.well-known/matrix/support", None).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );

    let s = TestServer::start_with(|c| {
        c.well_known.support_page = Some("https://localhost/support".into());
        c.well_known.support_contacts = vec![myelin::config::SupportContact {
            role: "m.role.admin".into(),
            matrix_id: Some("@admin:localhost".into()),
            email_address: None,
        }];
    })
    .await;
    let (st, body) = s.get("/.well-known/matrix/support", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "support_page": "https://localhost/support", "contacts": [{ "role": "m.role.admin", "matrix_id": "@admin:localhost" }] })
    );

    let alice = s.register("alice", PW).await;
    let field = format!(
        "/_matrix/client/v3/profile/{}/displayname",
        enc(&alice.user_id)
    );
    let (st, _) = s
        .put(&field, alice.token(), &json!({ "displayname": "Alice" }))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.delete(&field, alice.token(), &json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = s.get(&field, None).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")),
        "{body}"
    );
    let bob = s.register("bob", PW).await;
    let (st, body) = s.delete(&field, bob.token(), &json!({})).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
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
