//! The federation scenario against Synapse, in both directions: history created before a join
//! is paged back on the other server (`/backfill`), typing, receipts and state changes cross,
//! and kicks and bans by one server's admin take effect on the other's user.
//!
//! Skipped with a loud notice when the Synapse venv is missing; CI sets
//! `MYELIN_REQUIRE_SYNAPSE=1`, which turns that into a failure.

use myelin_testing::http::{ephemeral, room_path, PW};
use myelin_testing::interop::{send_text, Server};
use myelin_testing::{enc, StatusCode, SynapseServer, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const HISTORY: usize = 30;

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
        send_text(
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
    let from_alice = send_text(&myelin, alice_token, &on_myelin, "r1", "read me, sam").await;
    let from_sam = send_text(&synapse, &sam_token, &on_myelin, "r2", "read me, alice").await;
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
