//! The federation scenario against Synapse, in both directions: history created before a join
//! is paged back on the other server (`/backfill`), typing, receipts and state changes cross,
//! and kicks and bans by one server's admin take effect on the other's user.
//!
//! Skipped with a loud notice when the Synapse venv is missing; CI sets
//! `MYELIN_REQUIRE_SYNAPSE=1`, which turns that into a failure.

use std::time::{Duration, Instant};

use myelin_testing::http::{ephemeral, room_path, PW};
use myelin_testing::{enc, StatusCode, SynapseServer, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const HISTORY: usize = 30;

/// Either server's client API, so one helper drives both.
enum Server<'a> {
    Myelin(&'a TestServer),
    Synapse(&'a SynapseServer),
}

impl Server<'_> {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        match self {
            Server::Myelin(m) => {
                let empty = json!({});
                match method {
                    Method::GET => m.get(path, Some(token)).await,
                    Method::PUT => m.put(path, Some(token), body.unwrap_or(&empty)).await,
                    _ => m.post(path, Some(token), body.unwrap_or(&empty)).await,
                }
            }
            Server::Synapse(s) => s.request(method, path, Some(token), body).await,
        }
    }

    async fn ok(&self, method: Method, path: &str, token: &str, body: Value) -> Value {
        let (status, answer) = self.call(method, path, token, Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        answer
    }

    /// A `/sync` token for now.
    async fn since_now(&self, token: &str) -> String {
        let sync = self
            .ok(
                Method::GET,
                "/_matrix/client/v3/sync?timeout=0",
                token,
                json!(null),
            )
            .await;
        sync["next_batch"].as_str().expect("next_batch").to_owned()
    }

    /// Long-polls `/sync` (from `since`, or from an initial sync) until `check` holds.
    async fn sync_until(
        &self,
        token: &str,
        since: Option<String>,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut since = since;
        loop {
            let path = match &since {
                Some(s) => format!("/_matrix/client/v3/sync?timeout=2000&since={}", enc(s)),
                None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
            };
            let (status, sync) = self.call(Method::GET, &path, token, None).await;
            assert_eq!(status, StatusCode::OK, "{sync}");
            if check(&sync) {
                return sync;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {sync}"
            );
            since = sync["next_batch"].as_str().map(str::to_owned);
        }
    }

    /// Polls a GET until `check` holds.
    async fn get_until(
        &self,
        token: &str,
        path: &str,
        what: &str,
        check: impl Fn(StatusCode, &Value) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.call(Method::GET, path, token, None).await;
            if check(status, &body) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every message body of the room, newest first, paging `/messages` back to the start.
    async fn history(&self, token: &str, room: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..40 {
            let mut path = format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
                enc(room)
            );
            if let Some(f) = &from {
                path.push_str(&format!("&from={}", enc(f)));
            }
            let page = self.ok(Method::GET, &path, token, json!(null)).await;
            let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
            bodies.extend(
                chunk
                    .iter()
                    .filter(|e| e["type"] == "m.room.message")
                    .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)),
            );
            match page["end"].as_str() {
                Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
                _ => break,
            }
        }
        bodies
    }
}

async fn send(server: &Server<'_>, token: &str, room: &str, txn: &str, body: &str) -> String {
    let answer = server
        .ok(
            Method::PUT,
            &room_path(room, &format!("send/m.room.message/{txn}")),
            token,
            json!({ "msgtype": "m.text", "body": body }),
        )
        .await;
    answer["event_id"].as_str().expect("event_id").to_owned()
}

fn is_typing(sync: &Value, room: &str, user: &str) -> bool {
    ephemeral(sync, room).iter().any(|e| {
        e["type"] == "m.typing"
            && e["content"]["user_ids"]
                .as_array()
                .is_some_and(|u| u.iter().any(|x| x == user))
    })
}

fn has_receipt(sync: &Value, room: &str, event_id: &str, user: &str) -> bool {
    ephemeral(sync, room)
        .iter()
        .any(|e| e["type"] == "m.receipt" && e["content"][event_id]["m.read"][user].is_object())
}

/// Creates a public room on `server` with `HISTORY` messages `{prefix}0..` in it.
async fn room_with_history(server: &Server<'_>, token: &str, prefix: &str) -> String {
    let created = server
        .ok(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            token,
            json!({ "preset": "public_chat", "name": format!("{prefix} history") }),
        )
        .await;
    let room = created["room_id"].as_str().expect("room_id").to_owned();
    for i in 0..HISTORY {
        send(
            server,
            token,
            &room,
            &format!("{prefix}{i}"),
            &format!("{prefix}{i}"),
        )
        .await;
    }
    room
}

fn expected_history(prefix: &str) -> Vec<String> {
    (0..HISTORY).rev().map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_typing_receipts_and_state_cross_with_synapse() {
    let Some(synapse_server) = SynapseServer::start().await else {
        return;
    };
    let myelin_server = TestServer::start_federating_tls().await;
    let (myelin, synapse) = (
        Server::Myelin(&myelin_server),
        Server::Synapse(&synapse_server),
    );
    let alice = myelin_server.register("alice", PW).await;
    let alice_token = alice.access_token.as_str();
    let (sam, sam_token) = synapse_server.register("sam", PW).await;

    // History made on each side before the other side's user joins.
    let on_myelin = room_with_history(&myelin, alice_token, "m").await;
    let on_synapse = room_with_history(&synapse, &sam_token, "s").await;
    synapse
        .ok(
            Method::POST,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&on_myelin),
                enc(myelin_server.server_name())
            ),
            &sam_token,
            json!({}),
        )
        .await;
    myelin
        .ok(
            Method::POST,
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                enc(&on_synapse),
                enc(synapse_server.server_name())
            ),
            alice_token,
            json!({}),
        )
        .await;
    assert_eq!(
        synapse.history(&sam_token, &on_myelin).await,
        expected_history("m"),
        "Synapse's /messages shows the history created on Myelin, once each, in order"
    );
    assert_eq!(
        myelin.history(alice_token, &on_synapse).await,
        expected_history("s"),
        "Myelin's /messages shows the history created on Synapse, once each, in order"
    );

    // Typing both ways.
    myelin
        .ok(
            Method::PUT,
            &room_path(&on_myelin, &format!("typing/{}", enc(&alice.user_id))),
            alice_token,
            json!({ "typing": true, "timeout": 30000 }),
        )
        .await;
    synapse
        .sync_until(&sam_token, None, "alice typing, on Synapse", |s| {
            is_typing(s, &on_myelin, &alice.user_id)
        })
        .await;
    synapse
        .ok(
            Method::PUT,
            &room_path(&on_myelin, &format!("typing/{}", enc(&sam))),
            &sam_token,
            json!({ "typing": true, "timeout": 30000 }),
        )
        .await;
    myelin
        .sync_until(alice_token, None, "sam typing, on Myelin", |s| {
            is_typing(s, &on_myelin, &sam)
        })
        .await;

    // Read receipts both ways.
    let from_alice = send(&myelin, alice_token, &on_myelin, "r1", "read me, sam").await;
    let from_sam = send(&synapse, &sam_token, &on_myelin, "r2", "read me, alice").await;
    myelin
        .get_until(
            alice_token,
            &room_path(&on_myelin, &format!("event/{}", enc(&from_sam))),
            "sam's message on Myelin",
            |st, _| st == StatusCode::OK,
        )
        .await;
    synapse
        .get_until(
            &sam_token,
            &room_path(&on_myelin, &format!("event/{}", enc(&from_alice))),
            "alice's message on Synapse",
            |st, _| st == StatusCode::OK,
        )
        .await;
    myelin
        .ok(
            Method::POST,
            &room_path(&on_myelin, &format!("receipt/m.read/{}", enc(&from_sam))),
            alice_token,
            json!({}),
        )
        .await;
    synapse
        .sync_until(&sam_token, None, "alice's receipt, on Synapse", |s| {
            has_receipt(s, &on_myelin, &from_sam, &alice.user_id)
        })
        .await;
    synapse
        .ok(
            Method::POST,
            &room_path(&on_myelin, &format!("receipt/m.read/{}", enc(&from_alice))),
            &sam_token,
            json!({}),
        )
        .await;
    myelin
        .sync_until(alice_token, None, "sam's receipt, on Myelin", |s| {
            has_receipt(s, &on_myelin, &from_alice, &sam)
        })
        .await;

    // State changes both ways: each room's creator sets its topic, the other server sees it.
    myelin
        .ok(
            Method::PUT,
            &room_path(&on_myelin, "state/m.room.topic/"),
            alice_token,
            json!({ "topic": "set on Myelin" }),
        )
        .await;
    synapse
        .get_until(
            &sam_token,
            &room_path(&on_myelin, "state/m.room.topic/"),
            "Myelin's topic on Synapse",
            |st, b| st == StatusCode::OK && b["topic"] == "set on Myelin",
        )
        .await;
    synapse
        .ok(
            Method::PUT,
            &room_path(&on_synapse, "state/m.room.topic/"),
            &sam_token,
            json!({ "topic": "set on Synapse" }),
        )
        .await;
    myelin
        .get_until(
            alice_token,
            &room_path(&on_synapse, "state/m.room.topic/"),
            "Synapse's topic on Myelin",
            |st, b| st == StatusCode::OK && b["topic"] == "set on Synapse",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_and_bans_cross_with_synapse() {
    let Some(synapse_server) = SynapseServer::start().await else {
        return;
    };
    let myelin_server = TestServer::start_federating_tls().await;
    let (myelin, synapse) = (
        Server::Myelin(&myelin_server),
        Server::Synapse(&synapse_server),
    );
    let alice = myelin_server.register("alice", PW).await;
    let alice_token = alice.access_token.as_str();
    let (sam, sam_token) = synapse_server.register("sam", PW).await;
    let member =
        |room: &str, user: &str| room_path(room, &format!("state/m.room.member/{}", enc(user)));
    let join_myelin_room = |room: String| {
        let path = format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            enc(&room),
            enc(myelin_server.server_name())
        );
        let synapse = &synapse;
        let token = sam_token.clone();
        async move {
            synapse
                .call(Method::POST, &path, &token, Some(&json!({})))
                .await
        }
    };

    // A Myelin admin kicks, then bans, a Synapse user.
    let created = myelin
        .ok(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            alice_token,
            json!({ "preset": "public_chat" }),
        )
        .await;
    let room = created["room_id"].as_str().expect("room_id").to_owned();
    let (status, body) = join_myelin_room(room.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    myelin
        .get_until(
            alice_token,
            &member(&room, &sam),
            "sam's join on Myelin",
            |st, b| st == StatusCode::OK && b["membership"] == "join",
        )
        .await;
    let since = synapse.since_now(&sam_token).await;
    myelin
        .ok(
            Method::POST,
            &room_path(&room, "kick"),
            alice_token,
            json!({ "user_id": sam, "reason": "out" }),
        )
        .await;
    synapse
        .sync_until(&sam_token, Some(since), "the kick, on Synapse", |s| {
            s["rooms"]["leave"].get(&room).is_some()
        })
        .await;
    let (status, body) = join_myelin_room(room.clone()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a kicked user may rejoin a public room: {body}"
    );
    myelin
        .get_until(
            alice_token,
            &member(&room, &sam),
            "sam's rejoin on Myelin",
            |st, b| st == StatusCode::OK && b["membership"] == "join",
        )
        .await;
    myelin
        .ok(
            Method::POST,
            &room_path(&room, "ban"),
            alice_token,
            json!({ "user_id": sam, "reason": "gone" }),
        )
        .await;
    synapse
        .get_until(
            &sam_token,
            "/_matrix/client/v3/joined_rooms",
            "the ban, on Synapse",
            |st, b| {
                st == StatusCode::OK
                    && !b["joined_rooms"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|x| x == room.as_str()))
            },
        )
        .await;
    let (status, body) = join_myelin_room(room.clone()).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a banned user cannot rejoin: {body}"
    );
    let (status, state) = myelin
        .call(Method::GET, &member(&room, &sam), alice_token, None)
        .await;
    assert_eq!(
        (status, &state["membership"]),
        (StatusCode::OK, &json!("ban")),
        "{state}"
    );

    // A Synapse admin kicks a Myelin user.
    let created = synapse
        .ok(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            &sam_token,
            json!({ "preset": "public_chat" }),
        )
        .await;
    let synapse_room = created["room_id"].as_str().expect("room_id").to_owned();
    myelin
        .ok(
            Method::POST,
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                enc(&synapse_room),
                enc(synapse_server.server_name())
            ),
            alice_token,
            json!({}),
        )
        .await;
    synapse
        .get_until(
            &sam_token,
            &member(&synapse_room, &alice.user_id),
            "alice's join on Synapse",
            |st, b| st == StatusCode::OK && b["membership"] == "join",
        )
        .await;
    let since = myelin.since_now(alice_token).await;
    synapse
        .ok(
            Method::POST,
            &room_path(&synapse_room, "kick"),
            &sam_token,
            json!({ "user_id": alice.user_id }),
        )
        .await;
    myelin
        .sync_until(alice_token, Some(since), "the kick, on Myelin", |s| {
            s["rooms"]["leave"].get(&synapse_room).is_some()
        })
        .await;
    let (status, joined) = myelin
        .call(
            Method::GET,
            "/_matrix/client/v3/joined_rooms",
            alice_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !joined["joined_rooms"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == synapse_room.as_str())),
        "{joined}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_of_old_versions_on_synapse_work_from_myelin() {
    let Some(synapse_server) = SynapseServer::start().await else {
        return;
    };
    let myelin_server = TestServer::start_federating_tls().await;
    let (myelin, synapse) = (
        Server::Myelin(&myelin_server),
        Server::Synapse(&synapse_server),
    );
    let alice = myelin_server.register("alice", PW).await;
    let alice_token = alice.access_token.as_str();
    let (_sam, sam_token) = synapse_server.register("sam", PW).await;

    // Room versions 1 and 2 use server-chosen event IDs and `[id, hashes]` references; events
    // Myelin builds there must be accepted by Synapse, and Synapse's by Myelin.
    for version in ["1", "2", "5"] {
        let created = synapse
            .ok(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                &sam_token,
                json!({ "preset": "public_chat", "room_version": version }),
            )
            .await;
        let room = created["room_id"].as_str().expect("room_id").to_owned();
        myelin
            .ok(
                Method::POST,
                &format!(
                    "/_matrix/client/v3/join/{}?via={}",
                    enc(&room),
                    enc(synapse_server.server_name())
                ),
                alice_token,
                json!({}),
            )
            .await;
        let text = format!("hello from myelin in a v{version} room");
        send(&myelin, alice_token, &room, &format!("old{version}"), &text).await;
        let wanted = text.clone();
        synapse
            .get_until(
                &sam_token,
                &room_path(&room, "messages?dir=b&limit=20"),
                "Myelin's message on Synapse",
                move |st, b| {
                    st == StatusCode::OK
                        && b["chunk"].as_array().is_some_and(|c| {
                            c.iter().any(|e| e["content"]["body"] == wanted.as_str())
                        })
                },
            )
            .await;
        let reply = format!("synapse answers in v{version}");
        send(
            &synapse,
            &sam_token,
            &room,
            &format!("reply{version}"),
            &reply,
        )
        .await;
        myelin
            .get_until(
                alice_token,
                &room_path(&room, "messages?dir=b&limit=20"),
                "Synapse's reply on Myelin",
                move |st, b| {
                    st == StatusCode::OK
                        && b["chunk"].as_array().is_some_and(|c| {
                            c.iter().any(|e| e["content"]["body"] == reply.as_str())
                        })
                },
            )
            .await;
    }
}
