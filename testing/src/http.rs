//! Helpers shared by the raw-HTTP test files: client-API paths, response assertions,
//! User-Interactive Auth bodies, and `/sync` loops that wait for something to arrive.
//!
//! They live here, not in each test file, so that every file asserts an error response (or
//! waits for a sync) the same way.

use std::time::{Duration, Instant};

use myelin::config::Rate;
use serde_json::{json, Value};

use crate::{enc, Account, StatusCode, TestServer};

/// The password of most test accounts.
pub const PW: &str = "correct horse battery staple";

/// The Client-Server API v3 prefix; short because it starts most paths in the tests.
pub const C: &str = "/_matrix/client/v3";

/// How long [`sync_until`] and [`sync_from_until`] wait before failing the test.
const SYNC_DEADLINE: Duration = Duration::from_secs(20);

/// `{C}/rooms/{roomId}/{rest}`, with the room ID percent-encoded.
pub fn room_path(room_id: &str, rest: &str) -> String {
    format!("{C}/rooms/{}/{rest}", enc(room_id))
}

/// The `errcode` of an error body, or `<no errcode>` so a missing one shows in the assertion.
pub fn errcode(body: &Value) -> &str {
    body["errcode"].as_str().unwrap_or("<no errcode>")
}

/// Asserts an error response: status and `errcode`.
#[track_caller]
pub fn assert_err(resp: &(StatusCode, Value), status: u16, code: &str, what: &str) {
    let (actual_status, body) = resp;
    assert_eq!(
        (actual_status.as_u16(), errcode(body)),
        (status, code),
        "{what}: unexpected response {actual_status} {body}"
    );
}

/// Asserts a 200 response.
#[track_caller]
pub fn assert_ok(resp: &(StatusCode, Value), what: &str) {
    assert_eq!(resp.0, StatusCode::OK, "{what}: {}", resp.1);
}

/// A rate limit for a test configuration.
pub fn rate(per_minute: u32, burst: u32) -> Rate {
    Rate { per_minute, burst }
}

/// An `m.login.password` UIA stage for `user_id`, in the UIA `session` if one is given.
pub fn password_auth(user_id: &str, password: &str, session: Option<&Value>) -> Value {
    let mut auth = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user_id },
        "password": password,
    });
    if let Some(session) = session {
        auth["session"] = session.clone();
    }
    auth
}

/// Registers `name` with the password [`PW`]: for tests that never log in again.
pub async fn register(server: &TestServer, name: &str) -> Account {
    server.register(name, PW).await
}

/// The ephemeral events (typing, receipts) of joined room `room_id` in a `/sync` response
/// (empty if the room is not in the response).
pub fn ephemeral(sync: &Value, room_id: &str) -> Vec<Value> {
    sync["rooms"]["join"][room_id]["ephemeral"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Syncs from scratch until `check` holds for a response; panics after 20 s.
pub async fn sync_until(
    server: &TestServer,
    account: &Account,
    what: &str,
    check: impl FnMut(&Value) -> bool,
) -> Value {
    sync_from_until(server, account, None, what, check).await
}

/// [`sync_until`] starting from a `since` token: long-polls of 2 s, each from the previous
/// response's `next_batch`.
pub async fn sync_from_until(
    server: &TestServer,
    account: &Account,
    since: Option<&str>,
    what: &str,
    mut check: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + SYNC_DEADLINE;
    let mut since = since.map(str::to_owned);
    loop {
        let sync = server
            .sync(&account.access_token, since.as_deref(), 2_000)
            .await;
        if check(&sync) {
            return sync;
        }
        if Instant::now() > deadline {
            panic!(
                "no sync of {} showed {what} within {SYNC_DEADLINE:?}; last sync: {sync}",
                account.user_id
            );
        }
        since = sync["next_batch"].as_str().map(str::to_owned);
    }
}
