//! Raw-HTTP edge cases of the Client-Server API: the things a client library
//! hides (exact status codes and `errcode`s, idempotency, pagination tokens,
//! long-poll wake-ups, persistence across restarts).
//!
//! Every test starts its own server on a fresh data directory. The tests are grouped by area,
//! one module each, in this one test binary: every test binary is linked on its own, so one
//! binary of modules links faster than a file per area. This file holds the helpers the
//! modules share.

mod accounts;
mod ephemeral;
mod errors;
mod events;
mod membership;
mod profile;
mod rooms;
mod server;
mod sync;

use myelin_testing::http::{assert_ok, room_path};
use myelin_testing::{enc, Account, TestServer};
use serde_json::Value;

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
