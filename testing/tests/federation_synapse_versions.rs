//! Rooms of every version between Myelin and Synapse: for each version 1-12 a room created on
//! each side is joined from the other, messages cross both ways and redactions (the creator's
//! of the joiner's message, the joiner's of its own) take effect on both; and a v1 room whose DAG
//! forks (each server changes the topic and the power levels while the other is down) resolves
//! to the same state on both, the one the spec's state resolution v1 picks: by the SHA-1 of
//! event IDs between equals, and against the resolved power levels when one branch demoted the
//! other's user.
//!
//! Skipped with a loud notice when the Synapse venv is missing; CI sets
//! `MYELIN_REQUIRE_SYNAPSE=1`, which turns that into a failure.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use myelin_testing::http::{room_path, PW};
use myelin_testing::interop::{send_text, Server};
use myelin_testing::{enc, StatusCode, SynapseServer, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

/// How long a message or event may take to cross (both servers are busy with many rooms at once
/// on a small machine).
const CROSS_DEADLINE: Duration = Duration::from_secs(90);
/// How many version scenarios run at once.
const PARALLEL: usize = 6;

/// One server's user in a scenario.
struct Side<'a> {
    server: &'a Server<'a>,
    token: &'a str,
    /// The server's name, which the other side joins through.
    name: &'a str,
    label: &'static str,
}

impl<'a> Side<'a> {
    fn new(server: &'a Server<'a>, token: &'a str, name: &'a str, label: &'static str) -> Self {
        Side {
            server,
            token,
            name,
            label,
        }
    }
}

/// Polls `path` on `server` until `check` holds; panics after [`CROSS_DEADLINE`].
async fn until(
    side: &Side<'_>,
    path: &str,
    what: &str,
    check: impl Fn(StatusCode, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + CROSS_DEADLINE;
    loop {
        let (status, body) = side.server.call(Method::GET, path, side.token, None).await;
        if check(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out on {} waiting for {what}: {status} {body}",
            side.label
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `side` shows every one of `bodies` in the room's recent messages.
async fn until_messages(side: &Side<'_>, room: &str, bodies: &[&str]) {
    let path = room_path(room, "messages?dir=b&limit=50");
    until(
        side,
        &path,
        &format!("{bodies:?} in {room}"),
        |status, page| {
            status == StatusCode::OK
                && bodies.iter().all(|wanted| {
                    page["chunk"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|e| e["content"]["body"] == *wanted))
                })
        },
    )
    .await;
}

/// A room of `version` created on `creator`'s server, joined from `joiner`'s, with messages
/// both ways, the history from before the join readable on the joining side, and redactions
/// both ways.
async fn cross(version: u32, creator: &Side<'_>, joiner: &Side<'_>) {
    let v = version.to_string();
    let what = format!("v{v} room made on {}", creator.label);
    let room = creator
        .server
        .create_room(
            creator.token,
            json!({ "preset": "public_chat", "room_version": v, "name": what }),
        )
        .await;
    // Transaction IDs are the client's, unique per access token across rooms.
    let txn = |step: &str| format!("v{v}-{}-{step}", creator.label);
    let before = format!("{what}: before the join");
    send_text(
        creator.server,
        creator.token,
        &room,
        &txn("before"),
        &before,
    )
    .await;
    let (status, body) = joiner
        .server
        .join_via(joiner.token, &room, creator.name)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{what}: {} joins: {body}",
        joiner.label
    );
    let (status, create) = joiner
        .server
        .state(joiner.token, &room, "m.room.create")
        .await;
    assert_eq!(status, StatusCode::OK, "{what}: {create}");
    assert_eq!(create["room_version"], v.as_str(), "{what}: {create}");
    let (status, name) = joiner
        .server
        .state(joiner.token, &room, "m.room.name")
        .await;
    assert_eq!((status, &name["name"]), (StatusCode::OK, &json!(what)));

    let from_joiner = format!("{what}: from {}", joiner.label);
    let joiner_event = send_text(joiner.server, joiner.token, &room, &txn("j"), &from_joiner).await;
    let taken_back = format!("{what}: taken back by {}", joiner.label);
    let own_event = send_text(joiner.server, joiner.token, &room, &txn("t"), &taken_back).await;
    let after = format!("{what}: after the join");
    send_text(creator.server, creator.token, &room, &txn("after"), &after).await;
    until_messages(creator, &room, &[&from_joiner, &taken_back]).await;
    until_messages(joiner, &room, &[&before, &after, &from_joiner]).await;

    // Redactions in the version's format both ways: the creator (power 100) takes the joiner's
    // message down, the joiner its own; both servers show both redacted.
    redact(creator, &room, &joiner_event, &txn("rc")).await;
    redact(joiner, &room, &own_event, &txn("rj")).await;
    for side in [creator, joiner] {
        for event in [&joiner_event, &own_event] {
            until_redacted(side, &room, event).await;
        }
    }
}

/// Redacts `event_id` as `side`'s user.
async fn redact(side: &Side<'_>, room: &str, event_id: &str, txn: &str) {
    let path = room_path(room, &format!("redact/{}/{txn}", enc(event_id)));
    side.server
        .ok(Method::PUT, &path, side.token, json!({ "reason": "test" }))
        .await;
}

/// Waits until `side` serves `event_id` redacted (its content emptied).
async fn until_redacted(side: &Side<'_>, room: &str, event_id: &str) {
    let path = room_path(room, &format!("event/{}", enc(event_id)));
    until(
        side,
        &path,
        &format!("{event_id} redacted"),
        |status, event| status == StatusCode::OK && event["content"] == json!({}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_of_every_version_cross_between_myelin_and_synapse() {
    let Some(synapse_server) = SynapseServer::start().await else {
        return;
    };
    let myelin_server = TestServer::start_federating_tls().await;
    let alice = myelin_server.register("alice", PW).await;
    let (_sam, sam_token) = synapse_server.register("sam", PW).await;
    let (myelin, synapse) = (
        Server::Myelin(&myelin_server),
        Server::Synapse(&synapse_server),
    );
    let on_myelin = Side::new(
        &myelin,
        &alice.access_token,
        myelin_server.server_name(),
        "Myelin",
    );
    let on_synapse = Side::new(
        &synapse,
        &sam_token,
        synapse_server.server_name(),
        "Synapse",
    );

    // Both servers offer every version.
    for side in [&on_myelin, &on_synapse] {
        let caps = side
            .server
            .ok(
                Method::GET,
                "/_matrix/client/v3/capabilities",
                side.token,
                json!(null),
            )
            .await;
        let available = &caps["capabilities"]["m.room_versions"]["available"];
        for version in 1..=12 {
            assert_eq!(
                available[version.to_string()],
                "stable",
                "{} offers v{version}: {caps}",
                side.label
            );
        }
    }

    // Each version both ways: created on one side, joined from the other.
    let scenarios = (1..=12u32).flat_map(|v| [(v, true), (v, false)]);
    futures_util::stream::iter(scenarios)
        .for_each_concurrent(PARALLEL, |(version, myelin_creates)| {
            let (creator, joiner) = if myelin_creates {
                (&on_myelin, &on_synapse)
            } else {
                (&on_synapse, &on_myelin)
            };
            cross(version, creator, joiner)
        })
        .await;
}

/// The SHA-1 of an event ID, which breaks ties between conflicting events of equal depth in
/// state resolution v1.
fn sha1_of(event_id: &str) -> [u8; 20] {
    Sha1::digest(event_id.as_bytes()).into()
}

/// Of two conflicting state events of the same depth that both pass the auth rules, the one
/// state resolution v1 keeps: the lower SHA-1 of the event ID.
fn v1_winner<'a>(a: &'a str, b: &'a str) -> &'a str {
    if sha1_of(a) <= sha1_of(b) {
        a
    } else {
        b
    }
}

/// Sets a state event (empty state key); its event ID.
async fn put_state(side: &Side<'_>, room: &str, kind: &str, content: Value) -> String {
    let path = room_path(room, &format!("state/{kind}/"));
    let answer = side
        .server
        .ok(Method::PUT, &path, side.token, content)
        .await;
    answer["event_id"].as_str().expect("event_id").to_owned()
}

/// Sets the power needed for `m.room.avatar` to `level`: a power-level change that passes
/// the auth rules whichever of two such changes is applied first.
async fn change_power_levels(side: &Side<'_>, room: &str, level: u32) -> String {
    let (status, mut levels) = side
        .server
        .state(side.token, room, "m.room.power_levels")
        .await;
    assert_eq!(status, StatusCode::OK, "{levels}");
    levels["events"]["m.room.avatar"] = json!(level);
    put_state(side, room, "m.room.power_levels", levels).await
}

/// Waits until `side` has the event `event_id`.
async fn until_event(side: &Side<'_>, room: &str, event_id: &str) {
    let path = room_path(room, &format!("event/{}", enc(event_id)));
    until(side, &path, &format!("event {event_id}"), |status, _| {
        status == StatusCode::OK
    })
    .await;
}

/// The room's current state on `side`: `(type, state_key)` to event ID.
async fn state_ids(side: &Side<'_>, room: &str) -> BTreeMap<(String, String), String> {
    let (status, events) = side
        .server
        .call(Method::GET, &room_path(room, "state"), side.token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let text = |e: &Value, field: &str| e[field].as_str().unwrap_or_default().to_owned();
    events
        .as_array()
        .expect("a state array")
        .iter()
        .map(|e| ((text(e, "type"), text(e, "state_key")), text(e, "event_id")))
        .collect()
}

/// Who takes part in the fork test: alice on Myelin, sam on Synapse.
struct Users<'a> {
    alice: &'a str,
    alice_token: &'a str,
    myelin_name: &'a str,
    sam: &'a str,
    sam_token: &'a str,
    synapse_name: &'a str,
}

impl<'a> Users<'a> {
    fn alice_on(&self, server: &'a Server<'a>) -> Side<'a> {
        Side::new(server, self.alice_token, self.myelin_name, "Myelin")
    }

    fn sam_on(&self, server: &'a Server<'a>) -> Side<'a> {
        Side::new(server, self.sam_token, self.synapse_name, "Synapse")
    }

    /// Runs `f` with alice's side and sam's side on these servers.
    async fn with<T>(
        &self,
        myelin: &TestServer,
        synapse: &SynapseServer,
        f: impl AsyncFnOnce(&Side<'_>, &Side<'_>) -> T,
    ) -> T {
        let (on_myelin, on_synapse) = (Server::Myelin(myelin), Server::Synapse(synapse));
        let alice = Side::new(&on_myelin, self.alice_token, self.myelin_name, "Myelin");
        let sam = Side::new(&on_synapse, self.sam_token, self.synapse_name, "Synapse");
        f(&alice, &sam).await
    }
}

/// Brings both servers to the same latest event (a message from each, each seen by the
/// other), so each side's next event has the same depth.
async fn in_sync(alice: &Side<'_>, sam: &Side<'_>, room: &str, round: &str) {
    let (ping, pong) = (format!("ping {round}"), format!("pong {round}"));
    send_text(sam.server, sam.token, room, &ping, &ping).await;
    until_messages(alice, room, &[&ping]).await;
    send_text(alice.server, alice.token, room, &pong, &pong).await;
    until_messages(sam, room, &[&pong]).await;
}

/// Holds federation back to fork the room's DAG: `on_myelin` runs with Synapse down, then
/// `on_synapse` with Myelin down, so neither server sees the other's events until both are up
/// again. Returns the restarted Myelin and what each step returned.
async fn fork<M, S>(
    synapse: &mut SynapseServer,
    myelin: TestServer,
    on_myelin: impl AsyncFnOnce(&TestServer) -> M,
    on_synapse: impl AsyncFnOnce(&SynapseServer) -> S,
) -> (TestServer, M, S) {
    synapse.stop();
    let from_myelin = on_myelin(&myelin).await;
    let data = myelin.stop().await;
    synapse.restart().await;
    let from_synapse = on_synapse(synapse).await;
    (TestServer::restart(data).await, from_myelin, from_synapse)
}

/// After a fork: waits until each server has the other's last event, merges the branches with
/// an event on each side, and returns the state both then hold (asserted the same, event for
/// event).
async fn merged_state(
    alice: &Side<'_>,
    sam: &Side<'_>,
    room: &str,
    last: (&str, &str),
    round: &str,
) -> BTreeMap<(String, String), String> {
    until_event(sam, room, last.0).await;
    until_event(alice, room, last.1).await;
    let (on_m, on_s) = (
        format!("merged on Myelin {round}"),
        format!("merged on Synapse {round}"),
    );
    send_text(alice.server, alice.token, room, &on_m, &on_m).await;
    send_text(sam.server, sam.token, room, &on_s, &on_s).await;
    until_messages(alice, room, &[&on_m, &on_s]).await;
    until_messages(sam, room, &[&on_m, &on_s]).await;
    let on_myelin = state_ids(alice, room).await;
    assert_eq!(
        on_myelin,
        state_ids(sam, room).await,
        "{round}: Myelin's state, then Synapse's"
    );
    let topic = room_path(room, "state/m.room.topic/");
    let (status, shown) = alice
        .server
        .call(Method::GET, &topic, alice.token, None)
        .await;
    let (_, shown_by_synapse) = sam.server.call(Method::GET, &topic, sam.token, None).await;
    assert_eq!((status, &shown), (StatusCode::OK, &shown_by_synapse));
    on_myelin
}

/// One side's branch of the first fork: a topic and a power-level change; their event IDs.
async fn branch(side: &Side<'_>, room: &str, avatar_level: u32) -> (String, String) {
    let topic = json!({ "topic": format!("forked on {}", side.label) });
    let topic = put_state(side, room, "m.room.topic", topic).await;
    (topic, change_power_levels(side, room, avatar_level).await)
}

/// `(type, "")`, a key of [`state_ids`].
fn key(kind: &str) -> (String, String) {
    (kind.to_owned(), String::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forks_in_a_v1_room_resolve_alike_on_myelin_and_synapse() {
    let Some(mut synapse_server) = SynapseServer::start().await else {
        return;
    };
    let myelin_server = TestServer::start_federating_tls().await;
    let alice = myelin_server.register("alice", PW).await;
    let (sam, sam_token) = synapse_server.register("sam", PW).await;
    let (myelin_name, synapse_name) = (
        myelin_server.server_name().to_owned(),
        synapse_server.server_name().to_owned(),
    );
    let users = Users {
        alice: &alice.user_id,
        alice_token: &alice.access_token,
        myelin_name: &myelin_name,
        sam: &sam,
        sam_token: &sam_token,
        synapse_name: &synapse_name,
    };
    // A v1 room of sam's, where alice (power 50) may set the topic and the power levels too.
    let room = users
        .with(&myelin_server, &synapse_server, async |alice, sam| {
            let levels = json!({
                "users": { users.sam: 100, users.alice: 50 },
                "events": { "m.room.power_levels": 50 },
                "state_default": 50,
            });
            let room = sam
                .server
                .create_room(
                    sam.token,
                    json!({ "preset": "public_chat", "room_version": "1",
                            "power_level_content_override": levels }),
                )
                .await;
            let (status, body) = alice.server.join_via(alice.token, &room, sam.name).await;
            assert_eq!(status, StatusCode::OK, "alice joins the v1 room: {body}");
            in_sync(alice, sam, &room, "one").await;
            room
        })
        .await;

    // First fork: each side changes the topic and the power levels at the same depths. All
    // four changes pass the auth rules whatever the other side did, so v1 keeps, of each key's
    // two changes, the one whose event ID has the lower SHA-1.
    let (myelin_server, (m_topic, m_levels), (s_topic, s_levels)) = fork(
        &mut synapse_server,
        myelin_server,
        async |m| branch(&users.alice_on(&Server::Myelin(m)), &room, 40).await,
        async |s| branch(&users.sam_on(&Server::Synapse(s)), &room, 45).await,
    )
    .await;
    let state = users
        .with(&myelin_server, &synapse_server, async |alice, sam| {
            let last = (m_levels.as_str(), s_levels.as_str());
            let state = merged_state(alice, sam, &room, last, "one").await;
            in_sync(alice, sam, &room, "two").await;
            state
        })
        .await;
    assert_eq!(state[&key("m.room.topic")], v1_winner(&m_topic, &s_topic));
    assert_eq!(
        state[&key("m.room.power_levels")],
        v1_winner(&m_levels, &s_levels)
    );

    // Second fork: alice's branch is deeper (two messages, then a topic); sam's demotes her to
    // power 0, then sets a topic. v1 tries the deeper topic first, but under the resolved power
    // levels (sam's) alice may no longer set one: sam's topic wins on both servers.
    let (myelin_server, (m_last, m_topic), (s_levels, s_topic)) = fork(
        &mut synapse_server,
        myelin_server,
        async |m| {
            let server = Server::Myelin(m);
            let alice = users.alice_on(&server);
            let mut last = String::new();
            for i in 0..2 {
                let text = format!("deeper {i}");
                last = send_text(alice.server, alice.token, &room, &text, &text).await;
            }
            let topic = json!({ "topic": "alice's, deeper" });
            // Synapse soft-fails the topic (alice has lost her power there) and does not show
            // it: the test waits for the message before it.
            (last, put_state(&alice, &room, "m.room.topic", topic).await)
        },
        async |s| {
            let server = Server::Synapse(s);
            let sam = users.sam_on(&server);
            let (status, mut levels) = sam
                .server
                .state(sam.token, &room, "m.room.power_levels")
                .await;
            assert_eq!(status, StatusCode::OK, "{levels}");
            levels["users"][users.alice] = json!(0);
            let demoted = put_state(&sam, &room, "m.room.power_levels", levels).await;
            let topic = json!({ "topic": "sam's, after the demotion" });
            (demoted, put_state(&sam, &room, "m.room.topic", topic).await)
        },
    )
    .await;
    let state = users
        .with(&myelin_server, &synapse_server, async |alice, sam| {
            merged_state(alice, sam, &room, (&m_last, &s_topic), "two").await
        })
        .await;
    assert_eq!(state[&key("m.room.power_levels")], s_levels);
    assert_eq!(state[&key("m.room.topic")], s_topic, "not {m_topic}");
}
