//! What an attacker tries against the client API without credentials or with a little
//! patience: guessing passwords and registration tokens, forging `X-Forwarded-For`, holding
//! connections open with slow requests or many sockets; and small authorisation edges (aliases,
//! presence, out-of-range parameters).
//!
//! Every loop is bounded in count and every wait on the network has an overall deadline.

use std::time::{Duration, Instant};

use myelin::config::RegistrationMode;
use myelin_testing::http::{password_auth, rate, C, PW};
use myelin_testing::{enc, Account, StatusCode, TestServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VALIDITY: &str = "/_matrix/client/v1/register/m.login.registration_token/validity";

/// How long any single wait for the server may take before the test fails. Far above every
/// configured timeout: the server is expected to act long before.
const DEADLINE: Duration = Duration::from_secs(30);

/// The `retry_after_ms` of a 429 `M_LIMIT_EXCEEDED`, or `None` for any other answer.
fn limit_exceeded(status: StatusCode, body: &Value) -> Option<u64> {
    if status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{body}");
    Some(body["retry_after_ms"].as_u64().expect("retry_after_ms"))
}

/// `POST /delete_devices` of `devices` with a password stage.
async fn delete_devices(
    s: &TestServer,
    user: &Account,
    devices: &[&str],
    password: &str,
) -> (StatusCode, Value) {
    s.post(
        &format!("{C}/delete_devices"),
        user.token(),
        &json!({ "devices": devices, "auth": password_auth(&user.user_id, password, None) }),
    )
    .await
}

#[tokio::test]
async fn wrong_uia_passwords_are_throttled_per_account() {
    // One wrong password per second refills the budget; three may be wrong at once.
    let s = TestServer::start_with(|c| c.rate_limits.failed_password = rate(60, 3)).await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let spare = s.login("alice", PW).await;

    // Guessing: 401 for each wrong password until the budget is used up, then 429. (Each guess
    // costs a password hash, so the bound leaves room for a slow machine refilling a token.)
    let mut refused = None;
    for attempt in 1..=20 {
        let (st, body) = delete_devices(&s, &alice, &[], &format!("guess {attempt}")).await;
        if let Some(retry) = limit_exceeded(st, &body) {
            refused = Some((attempt, retry));
            break;
        }
        assert_eq!(st, StatusCode::UNAUTHORIZED, "wrong password: {body}");
        assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
    }
    let (attempt, retry_ms) = refused.expect("no 429 within 20 wrong passwords");
    assert!(
        attempt > 3,
        "refused before the burst was used: attempt {attempt}"
    );
    assert!(
        retry_ms > 0 && retry_ms <= 1_000,
        "retry_after_ms {retry_ms}"
    );

    // Another account's budget is its own.
    let (st, body) = delete_devices(&s, &bob, &[], PW).await;
    assert_eq!(st, StatusCode::OK, "bob: {body}");

    // Once the bucket refills, the right password works again.
    tokio::time::sleep(Duration::from_millis(retry_ms)).await;
    let mut deleted = None;
    for _ in 0..5 {
        let (st, body) = delete_devices(&s, &alice, &[&spare.device_id], PW).await;
        match limit_exceeded(st, &body) {
            Some(retry) => tokio::time::sleep(Duration::from_millis(retry)).await,
            None => {
                deleted = Some((st, body));
                break;
            }
        }
    }
    let (st, body) = deleted.expect("still limited after waiting");
    assert_eq!(
        st,
        StatusCode::OK,
        "right password after the window: {body}"
    );
    let (st, body) = s.get(&format!("{C}/account/whoami"), spare.token()).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "deleted device's token: {body}"
    );
}

#[tokio::test]
async fn wrong_login_passwords_are_throttled_per_account_even_when_right() {
    // A budget that does not refill within the test: a locked account stays locked.
    let s = TestServer::start_with(|c| {
        c.rate_limits.failed_password = rate(1, 2);
        c.rate_limits.login = rate(6_000, 1_000);
    })
    .await;
    s.register("alice", PW).await;
    s.register("bob", PW).await;
    for _ in 0..2 {
        let (st, body) = s.login_attempt("alice", "guess").await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    }
    let (st, body) = s.login_attempt("alice", "guess").await;
    assert!(limit_exceeded(st, &body).is_some(), "{st} {body}");
    // The right password is refused too while the budget is used up (else the limit would only
    // slow down an attacker who can tell 429 from 403).
    let (st, body) = s.login_attempt("alice", PW).await;
    assert!(limit_exceeded(st, &body).is_some(), "{st} {body}");
    let (st, body) = s.login_attempt("bob", PW).await;
    assert_eq!(st, StatusCode::OK, "bob: {body}");
}

#[tokio::test]
async fn registration_token_validity_guesses_are_throttled() {
    let s = TestServer::start_with(|c| {
        c.registration.mode = RegistrationMode::Token;
        c.registration.tokens = vec!["the-real-token".into()];
        c.rate_limits.registration_token_validity = rate(1, 5);
    })
    .await;
    let (st, body) = s
        .get(&format!("{VALIDITY}?token=the-real-token"), None)
        .await;
    assert_eq!(
        (st, &body["valid"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let mut refused_at = None;
    for guess in 0..200 {
        let (st, body) = s
            .get(&format!("{VALIDITY}?token=guess-{guess}"), None)
            .await;
        if let Some(retry) = limit_exceeded(st, &body) {
            assert!(retry > 0, "{body}");
            refused_at = Some(guess);
            break;
        }
        assert_eq!(
            (st, &body["valid"]),
            (StatusCode::OK, &json!(false)),
            "{body}"
        );
    }
    // One check was spent on the real token; four guesses remain of the burst of five.
    assert_eq!(
        refused_at,
        Some(4),
        "no 429 for guessing registration tokens"
    );
}

/// `GET` of the token validity endpoint with an `X-Forwarded-For` header, if any.
async fn validity_from(s: &TestServer, forwarded_for: Option<&str>) -> StatusCode {
    let mut request = reqwest::Client::new().get(format!("{}{VALIDITY}?token=guess", s.base_url()));
    if let Some(ip) = forwarded_for {
        request = request.header("X-Forwarded-For", ip);
    }
    let response = request.send().await.expect("validity request");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert!(limit_exceeded(status, &body).is_some());
    } else {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    status
}

fn token_mode_with_validity_burst(c: &mut myelin::Config, burst: u32) {
    c.registration.mode = RegistrationMode::Token;
    c.registration.tokens = vec!["the-real-token".into()];
    c.rate_limits.registration_token_validity = rate(1, burst);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    // No trusted proxies (the default): every forged address is the loopback peer's bucket.
    let s = TestServer::start_with(|c| token_mode_with_validity_burst(c, 2)).await;
    assert_eq!(
        validity_from(&s, Some("198.51.100.1")).await,
        StatusCode::OK
    );
    assert_eq!(
        validity_from(&s, Some("198.51.100.2")).await,
        StatusCode::OK
    );
    assert_eq!(
        validity_from(&s, Some("198.51.100.3")).await,
        StatusCode::TOO_MANY_REQUESTS,
        "a fresh X-Forwarded-For from an untrusted peer got a fresh budget"
    );
    assert_eq!(validity_from(&s, None).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let s = TestServer::start_with(|c| {
        token_mode_with_validity_burst(c, 2);
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let first = "198.51.100.1";
    assert_eq!(validity_from(&s, Some(first)).await, StatusCode::OK);
    assert_eq!(validity_from(&s, Some(first)).await, StatusCode::OK);
    assert_eq!(
        validity_from(&s, Some(first)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own bucket, as does the proxy itself; a
    // client cannot escape by prepending a forged address (the proxy appends the real one).
    assert_eq!(
        validity_from(&s, Some("198.51.100.2")).await,
        StatusCode::OK
    );
    assert_eq!(validity_from(&s, None).await, StatusCode::OK);
    assert_eq!(
        validity_from(&s, Some(&format!("203.0.113.77, {first}"))).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

// ----- connections -----

/// Reads until the server closes the connection (EOF or reset); returns what was read.
/// Fails the test if the connection is still open at [`DEADLINE`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
    received
}

/// Sends one keep-alive `GET /versions` on `stream` and reads its whole response.
async fn get_versions(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write request");
    let response = tokio::time::timeout(DEADLINE, async {
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.expect("read response");
            assert!(n > 0, "connection closed before the response: {received:?}");
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received).into_owned();
            let Some(head_end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().expect("content-length"))
                })
                .expect("a content-length");
            if received.len() >= head_end + 4 + length {
                return text;
            }
        }
    })
    .await
    .expect("no response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

async fn connect(s: &TestServer) -> TcpStream {
    let addr = s.base_url().trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test]
async fn half_sent_headers_are_disconnected() {
    let s = TestServer::start_with(|c| c.http.header_read_timeout_ms = 300).await;
    let mut stream = connect(&s).await;
    stream
        .write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: loc")
        .await
        .expect("write half a head");
    let answer = read_until_closed(&mut stream).await;
    // Whatever hyper says on the way out, it never served the request.
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "{answer:?}"
    );

    // A client that connects and says nothing at all is disconnected too.
    let mut silent = connect(&s).await;
    read_until_closed(&mut silent).await;
}

#[tokio::test]
async fn a_partial_body_gets_408_and_is_disconnected() {
    let s = TestServer::start_with(|c| c.http.request_body_timeout_ms = 300).await;
    let mut stream = connect(&s).await;
    stream
        .write_all(
            b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .expect("write 1 of 1000 body bytes");
    let answer = String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn idle_keep_alive_connections_outlive_the_header_timeout_until_the_idle_timeout() {
    let s = TestServer::start_with(|c| {
        c.http.header_read_timeout_ms = 200;
        c.http.idle_timeout_ms = 60_000;
    })
    .await;
    let mut stream = connect(&s).await;
    get_versions(&mut stream).await;
    // Several header timeouts of idling: the connection is still open for the next request.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    get_versions(&mut stream).await;

    let s = TestServer::start_with(|c| c.http.idle_timeout_ms = 300).await;
    let mut stream = connect(&s).await;
    get_versions(&mut stream).await;
    let rest = read_until_closed(&mut stream).await;
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn the_body_timeout_does_not_cut_long_polling_sync() {
    let s = TestServer::start_with(|c| c.http.request_body_timeout_ms = 200).await;
    let alice = s.register("alice", PW).await;
    let first = s.sync(&alice.access_token, None, 0).await;
    let since = first["next_batch"].as_str().expect("next_batch");
    let started = Instant::now();
    // Nothing happens meanwhile, so the server holds the request for the whole timeout.
    let second = s.sync(&alice.access_token, Some(since), 1_500).await;
    assert!(second["next_batch"].is_string(), "{second}");
    assert!(
        started.elapsed() >= Duration::from_millis(1_000),
        "the long-poll answered early"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed() {
    let s = TestServer::start_with(|c| c.http.max_connections = 2).await;
    let mut first = connect(&s).await;
    let mut second = connect(&s).await;
    // Served, so both are accepted and hold their slots.
    get_versions(&mut first).await;
    get_versions(&mut second).await;

    let mut third = connect(&s).await;
    // Writing may already fail if the server closed the socket; either way no answer comes.
    let _ = third
        .write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut third).await;
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    // The open connections are unaffected.
    get_versions(&mut first).await;

    // A freed slot is usable again (the server notices the close on its own time, so retry).
    drop(second);
    let deadline = Instant::now() + DEADLINE;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut fresh = connect(&s).await;
        let request = fresh
            .write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await;
        let mut buf = [0u8; 12];
        let served = request.is_ok()
            && tokio::time::timeout(DEADLINE, fresh.read_exact(&mut buf))
                .await
                .is_ok_and(|r| r.is_ok())
            && &buf == b"HTTP/1.1 200";
        if served {
            break;
        }
        assert!(
            Instant::now() < deadline && attempts < 200,
            "the freed slot was never reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----- small authorisation edges -----

#[tokio::test]
async fn aliases_need_membership_and_a_taken_alias_is_a_conflict() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    let alias_path = |alias: &str| format!("{C}/directory/room/{}", enc(alias));

    // Not joined: no alias for someone else's room.
    let (st, body) = s
        .put(
            &alias_path("#bobs-name:localhost"),
            bob.token(),
            &json!({ "room_id": room }),
        )
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (st, _) = s
        .get(&alias_path("#bobs-name:localhost"), bob.token())
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "the refused alias exists");

    let (st, body) = s
        .put(
            &alias_path("#lobby:localhost"),
            alice.token(),
            &json!({ "room_id": room }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // Joined: bob may add his own alias, but not take alice's.
    s.join(&bob.access_token, &room).await;
    let (st, body) = s
        .put(
            &alias_path("#bobs-name:localhost"),
            bob.token(),
            &json!({ "room_id": room }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = s
        .put(
            &alias_path("#lobby:localhost"),
            bob.token(),
            &json!({ "room_id": room }),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "taken alias: {body}");
    assert!(body["errcode"].is_string(), "{body}");
}

#[tokio::test]
async fn presence_is_visible_to_oneself_and_room_sharers_only() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let presence = format!("{C}/presence/{}/status", enc(&alice.user_id));
    let (st, body) = s
        .put(
            &presence,
            alice.token(),
            &json!({ "presence": "online", "status_msg": "at my desk" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    let (st, body) = s.get(&presence, alice.token()).await;
    assert_eq!(
        (st, &body["status_msg"]),
        (StatusCode::OK, &json!("at my desk")),
        "{body}"
    );
    let (st, body) = s.get(&presence, bob.token()).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "a stranger read alice's presence: {body}"
    );

    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    let (st, body) = s.get(&presence, bob.token()).await;
    assert_eq!(
        (st, &body["presence"]),
        (StatusCode::OK, &json!("online")),
        "{body}"
    );

    s.leave(&bob.access_token, &room).await;
    let (st, body) = s.get(&presence, bob.token()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "after leaving: {body}");
}

#[tokio::test]
async fn timestamp_to_event_refuses_timestamps_out_of_range() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let path = |ts: &str| {
        format!(
            "/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir=b",
            enc(&room)
        )
    };
    let (st, body) = s.get(&path("18446744073709551615"), alice.token()).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "{body}"
    );
    // The largest storable time is fine: the room's latest event is before it.
    let (st, body) = s.get(&path("9223372036854775807"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body["event_id"].is_string(), "{body}");
}
