//! `sliding-sync`: simplified sliding sync (MSC4186) for a user in many rooms, with the set-up
//! of `initial-sync`. Measures the first response of the room-list request Element X sends, on
//! a new connection (`conn_id`) per sample so that no server can replay an earlier answer, and
//! the wake-up of a pending long-poll when another member sends a message: from the send's
//! 200 to the long-poll's answer carrying it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::client::{Client, User};
use crate::error::{BenchError, Result};
use crate::report::{Better, WorkloadReport};
use crate::setup::Ctx;
use crate::stats::Summary;

use super::initial_sync::rooms_with_history;
use super::ms_since;

/// The rooms the `all_rooms` list asks for (`ranges: [[0, 19]]`), as Element X does.
const WINDOW: usize = 20;
/// How long a long-poll is given to reach the server before the message is sent.
const PARK_MS: u64 = 20;
/// Long-polls that may answer before the send (with something else) before a sample is lost.
const EARLY_ANSWERS: usize = 5;

/// The sizes of `sliding-sync`; rooms, members and events come from `initial-sync`'s flags.
#[derive(Debug, Clone)]
pub struct Params {
    pub rooms: usize,
    pub members: usize,
    /// Messages sent into each room before measuring.
    pub events: usize,
    /// First responses measured, each on a new connection.
    pub samples: usize,
    /// Wake-ups measured.
    pub wakeups: usize,
    /// The `timeout` of the long-poll, in milliseconds.
    pub long_poll_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            rooms: 200,
            members: 50,
            events: 20,
            samples: 5,
            wakeups: 50,
            long_poll_ms: 30_000,
        }
    }
}

/// The room-list request of Element X (matrix-sdk's `room-list` connection): one list of the
/// 20 most recent rooms with their latest event and the state a room list shows, and the
/// extensions on for every room sent (`*` spelled out: Synapse reads an absent `lists` as none).
pub fn room_list_request(conn_id: &str) -> Value {
    let state = [
        ("m.room.encryption", ""),
        ("m.room.member", "$LAZY"),
        ("m.room.member", "$ME"),
        ("m.room.name", ""),
        ("m.room.avatar", ""),
        ("m.room.create", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.topic", ""),
        ("m.room.join_rules", ""),
        ("m.room.power_levels", ""),
        ("m.room.history_visibility", ""),
        ("m.room.pinned_events", ""),
        ("m.room.tombstone", ""),
        ("m.call.member", "*"),
    ];
    let required_state: Vec<Value> = state.iter().map(|(t, k)| json!([t, k])).collect();
    json!({
        "conn_id": conn_id,
        "lists": { "all_rooms": {
            "ranges": [[0, WINDOW - 1]],
            "timeline_limit": 1,
            "required_state": required_state,
        } },
        "extensions": {
            "e2ee": { "enabled": true },
            "to_device": { "enabled": true },
            "account_data": { "enabled": true, "lists": ["*"], "rooms": ["*"] },
            "receipts": { "enabled": true, "lists": ["*"], "rooms": ["*"] },
            "typing": { "enabled": true, "lists": ["*"], "rooms": ["*"] },
        },
    })
}

/// The `pos` of a sliding sync response.
fn pos_of(response: &Value) -> Result<String> {
    response
        .get("pos")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Response {
            what: "POST sliding sync".into(),
            detail: "no pos".into(),
        })
}

/// Whether `room_id`'s timeline in `response` holds a message with `body`.
fn carries(response: &Value, room_id: &str, body: &str) -> bool {
    response
        .get("rooms")
        .and_then(|r| r.get(room_id))
        .and_then(|r| r.get("timeline"))
        .and_then(Value::as_array)
        .is_some_and(|t| {
            t.iter()
                .any(|e| e.pointer("/content/body").and_then(Value::as_str) == Some(body))
        })
}

/// Checks the first response: the list counts every room and the window is filled.
fn check_first(response: &Value, rooms: usize) -> Option<String> {
    let count = response
        .pointer("/lists/all_rooms/count")
        .and_then(Value::as_u64);
    let sent = response
        .get("rooms")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if count != Some(rooms as u64) {
        return Some(format!("all_rooms count {count:?}, expected {rooms}"));
    }
    if sent != rooms.min(WINDOW) {
        return Some(format!(
            "first response sent {sent} rooms, expected {}",
            rooms.min(WINDOW)
        ));
    }
    None
}

/// Measures the first response on `samples` new connections.
async fn first_responses(ctx: &Ctx, me: &User, p: &Params, report: &mut WorkloadReport) {
    let mut samples = Vec::with_capacity(p.samples);
    for i in 0..p.samples {
        let body = room_list_request(&format!("room-list-{i}"));
        let t = Instant::now();
        match ctx.client.sliding_sync(me, None, 0, &body).await {
            Ok(response) => {
                samples.push(ms_since(t));
                if let Some(e) = check_first(&response, p.rooms) {
                    report.error(e);
                }
            }
            Err(e) => report.error(e),
        }
    }
    if let Some(first) = samples.first() {
        report.metric("first_cold", "ms", *first, Better::Lower);
    }
    if let Some(s) = Summary::of(&samples) {
        report.metric("first_p50", "ms", s.p50, Better::Lower);
    }
}

/// A long-poll in flight: its answer and the instant it arrived.
type Poll = JoinHandle<(Result<Value>, Instant)>;

fn long_poll(client: &Client, user: &User, pos: &str, timeout_ms: u64, body: &Value) -> Poll {
    let (client, user, pos, body) = (client.clone(), user.clone(), pos.to_owned(), body.clone());
    tokio::spawn(async move {
        let r = client
            .sliding_sync(&user, Some(&pos), timeout_ms, &body)
            .await;
        (r, Instant::now())
    })
}

fn joined(
    r: std::result::Result<(Result<Value>, Instant), tokio::task::JoinError>,
) -> Result<(Value, Instant)> {
    match r {
        Ok((Ok(v), at)) => Ok((v, at)),
        Ok((Err(e), _)) => Err(e),
        Err(e) => Err(BenchError::Invalid(format!("long-poll task failed: {e}"))),
    }
}

/// Starts a long-poll that is still pending after [`PARK_MS`]; answers that come earlier
/// (something other than the coming message) move `pos` on.
async fn parked_poll(
    ctx: &Ctx,
    me: &User,
    pos: &mut String,
    p: &Params,
    body: &Value,
) -> Result<Poll> {
    for _ in 0..EARLY_ANSWERS {
        let poll = long_poll(&ctx.client, me, pos, p.long_poll_ms, body);
        tokio::time::sleep(Duration::from_millis(PARK_MS)).await;
        if !poll.is_finished() {
            return Ok(poll);
        }
        *pos = pos_of(&joined(poll.await)?.0)?;
    }
    Err(BenchError::Invalid(format!(
        "the long-poll answered at once {EARLY_ANSWERS} times in a row"
    )))
}

/// One wake-up: parks a long-poll, has `sender` send into `room`, and returns the time from
/// the send's 200 to the answer carrying the message (0 when the answer came first).
async fn one_wakeup(
    ctx: &Ctx,
    (me, sender): (&User, &User),
    room: &str,
    i: usize,
    pos: &mut String,
    p: &Params,
    body: &Value,
) -> Result<f64> {
    let mut poll = parked_poll(ctx, me, pos, p, body).await?;
    let text = format!("ss-wake-{i}");
    let sent = ctx
        .client
        .send_text(sender, room, &format!("ss{i}"), &text)
        .await;
    let t0 = Instant::now();
    if let Err(e) = sent {
        poll.abort();
        return Err(e);
    }
    // Answers without the message (another wake-up) are followed up until it arrives.
    for _ in 0..EARLY_ANSWERS {
        let (response, at) = joined(poll.await)?;
        *pos = pos_of(&response)?;
        if carries(&response, room, &text) {
            return Ok(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
        }
        poll = long_poll(&ctx.client, me, pos, p.long_poll_ms, body);
    }
    poll.abort();
    Err(BenchError::Invalid(format!(
        "message {text} did not arrive in the sliding sync long-poll"
    )))
}

/// Runs `sliding-sync`.
pub async fn run(ctx: &Ctx, p: &Params) -> Result<WorkloadReport> {
    if p.members < 2 || p.rooms == 0 || p.samples == 0 || p.wakeups == 0 {
        return Err(BenchError::Invalid(
            "sliding-sync needs rooms, samples, wake-ups > 0 and at least 2 members".into(),
        ));
    }
    let mut report = WorkloadReport::new("sliding-sync");
    report.param("rooms", p.rooms);
    report.param("members", p.members);
    report.param("events", p.events);
    report.param("samples", p.samples);
    report.param("wakeups", p.wakeups);
    report.param("long_poll_ms", p.long_poll_ms);

    let (users, rooms) = rooms_with_history(ctx, "l", p.rooms, p.members, p.events).await?;
    let me = &users[0];
    first_responses(ctx, me, p, &mut report).await;

    let body = room_list_request("room-list-wake");
    let mut pos = pos_of(&ctx.client.sliding_sync(me, None, 0, &body).await?)?;
    let mut latencies = Vec::with_capacity(p.wakeups);
    for i in 0..p.wakeups {
        let sender = &users[1 + i % (users.len() - 1)];
        let room = &rooms[i % rooms.len()];
        match one_wakeup(ctx, (me, sender), room, i, &mut pos, p, &body).await {
            Ok(ms) => latencies.push(ms),
            Err(e) => report.error(e),
        }
    }
    report.latency("wakeup", Summary::of(&latencies));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_the_room_list_of_element_x() {
        let r = room_list_request("c1");
        assert_eq!(r["conn_id"], "c1");
        assert_eq!(r.pointer("/lists/all_rooms/ranges/0/1"), Some(&json!(19)));
        assert_eq!(
            r.pointer("/lists/all_rooms/timeline_limit"),
            Some(&json!(1))
        );
        let state = r
            .pointer("/lists/all_rooms/required_state")
            .and_then(Value::as_array);
        assert!(state.is_some_and(|s| s.contains(&json!(["m.room.member", "$LAZY"]))));
        for ext in ["e2ee", "to_device", "account_data", "receipts", "typing"] {
            assert_eq!(r["extensions"][ext]["enabled"], true, "{ext}");
        }
    }

    #[test]
    fn finds_the_message_and_checks_the_window() {
        let r = json!({ "pos": "7", "lists": { "all_rooms": { "count": 30 } }, "rooms": {
            "!a:x": { "timeline": [ { "content": { "body": "ss-wake-1" } } ] } } });
        assert!(carries(&r, "!a:x", "ss-wake-1"));
        assert!(!carries(&r, "!a:x", "ss-wake-2"));
        assert!(!carries(&r, "!b:x", "ss-wake-1"));
        assert_eq!(pos_of(&r).ok().as_deref(), Some("7"));
        assert!(check_first(&r, 30).is_some());
        assert!(check_first(&r, 1).is_some());
        let one = json!({ "lists": { "all_rooms": { "count": 1 } }, "rooms": { "!a:x": {} } });
        assert!(check_first(&one, 1).is_none());
    }
}
