//! Sliding sync over raw HTTP: lists and ranges, incremental responses, positions
//! (`M_UNKNOWN_POS`, two connections of one device), long-polling, invites, and the to-device,
//! E2EE, account data, receipt and typing extensions.

use std::time::{Duration, Instant};

use myelin_testing::http::{assert_err, register, room_path};
use myelin_testing::{enc, Account, StatusCode, TestServer};
use serde_json::{json, Value};

const SS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// One sliding sync request; panics unless it succeeds.
async fn ss(
    server: &TestServer,
    who: &Account,
    pos: Option<&str>,
    timeout: u64,
    body: &Value,
) -> Value {
    let (status, resp) = ss_attempt(server, who, pos, timeout, body).await;
    assert_eq!(status, StatusCode::OK, "sliding sync {body}: {resp}");
    resp
}

async fn ss_attempt(
    server: &TestServer,
    who: &Account,
    pos: Option<&str>,
    timeout: u64,
    body: &Value,
) -> (StatusCode, Value) {
    let mut path = format!("{SS}?timeout={timeout}");
    if let Some(pos) = pos {
        path.push_str(&format!("&pos={}", enc(pos)));
    }
    server.post(&path, who.token(), body).await
}

/// A list `all` over every room with this range and timeline limit.
fn list(range: (u64, u64), timeline_limit: u64) -> Value {
    json!({
        "lists": { "all": {
            "ranges": [[range.0, range.1]],
            "timeline_limit": timeline_limit,
            "required_state": [["m.room.name", ""], ["m.room.member", "$ME"], ["m.room.member", "$LAZY"]],
        }},
    })
}

fn pos(resp: &Value) -> String {
    resp["pos"]
        .as_str()
        .expect("pos in the response")
        .to_owned()
}

fn bodies(resp: &Value, room: &str) -> Vec<String> {
    resp["rooms"][room]["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn room_ids(resp: &Value) -> Vec<String> {
    resp["rooms"]
        .as_object()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

async fn named_room(server: &TestServer, who: &Account, name: &str) -> String {
    server
        .create_room(
            &who.access_token,
            &json!({ "name": name, "preset": "private_chat" }),
        )
        .await
}

#[tokio::test]
async fn a_list_then_only_what_is_new() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let token = &alice.access_token;
    let mut rooms = Vec::new();
    for name in ["one", "two", "three"] {
        let room = named_room(&server, &alice, name).await;
        server
            .send_message(token, &room, &format!("t-{name}"), &format!("in {name}"))
            .await;
        rooms.push(room);
    }

    // The two most recent rooms, latest first by bump stamp.
    let first = ss(&server, &alice, None, 0, &list((0, 1), 1)).await;
    assert_eq!(first["lists"]["all"]["count"], 3, "{first}");
    let mut sent = room_ids(&first);
    sent.sort();
    let mut want = vec![rooms[1].clone(), rooms[2].clone()];
    want.sort();
    assert_eq!(sent, want, "{first}");
    let three = &first["rooms"][&rooms[2]];
    assert_eq!(three["initial"], true);
    assert_eq!(three["name"], "three");
    assert_eq!(bodies(&first, &rooms[2]), vec!["in three"]);
    assert!(three["bump_stamp"].as_i64() > first["rooms"][&rooms[1]]["bump_stamp"].as_i64());
    assert!(three["prev_batch"].is_string());
    assert!(three["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id.as_str()));

    // A message to the oldest room moves it into the range: only it comes, with the new event.
    server.send_message(token, &rooms[0], "t-new", "news").await;
    let next = ss(&server, &alice, Some(&pos(&first)), 0, &list((0, 1), 1)).await;
    assert_eq!(room_ids(&next), vec![rooms[0].clone()], "{next}");
    let one = &next["rooms"][&rooms[0]];
    assert_eq!(bodies(&next, &rooms[0]), vec!["news"]);
    assert_eq!(one["initial"], true, "first time this connection sees it");
    assert_eq!(one["num_live"], 1);

    // Another message in a room the connection has: no longer initial.
    server
        .send_message(token, &rooms[0], "t-more", "more")
        .await;
    let more = ss(&server, &alice, Some(&pos(&next)), 0, &list((0, 1), 1)).await;
    assert_eq!(bodies(&more, &rooms[0]), vec!["more"]);
    assert!(more["rooms"][&rooms[0]]["initial"].is_null(), "{more}");
    // The prev_batch paginates with /messages.
    let prev_batch = more["rooms"][&rooms[0]]["prev_batch"]
        .as_str()
        .expect("prev_batch");
    let path = room_path(
        &rooms[0],
        &format!("messages?dir=b&limit=1&from={}", enc(prev_batch)),
    );
    let (status, page) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["chunk"][0]["content"]["body"], "news", "{page}");
}

#[tokio::test]
async fn positions_unknown_and_per_connection() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = named_room(&server, &alice, "room").await;

    let unknown = ss_attempt(&server, &alice, Some("s123"), 0, &list((0, 9), 1)).await;
    assert_err(
        &unknown,
        400,
        "M_UNKNOWN_POS",
        "a pos this server never gave",
    );
    let bad_timeout = server
        .post(&format!("{SS}?timeout=soon"), alice.token(), &json!({}))
        .await;
    assert_err(
        &bad_timeout,
        400,
        "M_INVALID_PARAM",
        "a timeout that is not a number",
    );
    let bad_range = ss_attempt(
        &server,
        &alice,
        None,
        0,
        &json!({ "lists": { "x": { "ranges": [[5, 1]], "timeline_limit": 1 } } }),
    )
    .await;
    assert_err(
        &bad_range,
        400,
        "M_INVALID_PARAM",
        "a range ending before it starts",
    );

    // matrix-sdk opens `room-list` and `encryption` side by side: each has its own positions.
    let with_conn = |conn: &str| {
        let mut body = list((0, 9), 1);
        body["conn_id"] = json!(conn);
        body
    };
    let a = ss(&server, &alice, None, 0, &with_conn("room-list")).await;
    let b = ss(&server, &alice, None, 0, &with_conn("encryption")).await;
    server
        .send_message(&alice.access_token, &room, "t1", "hello")
        .await;
    let a2 = ss(&server, &alice, Some(&pos(&a)), 0, &with_conn("room-list")).await;
    assert_eq!(bodies(&a2, &room), vec!["hello"]);
    // The other connection has not seen it yet.
    let b2 = ss(&server, &alice, Some(&pos(&b)), 0, &with_conn("encryption")).await;
    assert_eq!(bodies(&b2, &room), vec!["hello"]);
    let crossed = ss_attempt(
        &server,
        &alice,
        Some(&pos(&a2)),
        0,
        &with_conn("encryption"),
    )
    .await;
    assert_err(&crossed, 400, "M_UNKNOWN_POS", "another connection's pos");
    // A position survives no restart.
    let server = server.restarted().await;
    let after_restart =
        ss_attempt(&server, &alice, Some(&pos(&a2)), 0, &with_conn("room-list")).await;
    assert_err(
        &after_restart,
        400,
        "M_UNKNOWN_POS",
        "a pos from before a restart",
    );
}

#[tokio::test]
async fn hostile_requests_are_refused_and_strangers_rooms_stay_hidden() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let eve = register(&server, "eve").await;
    let secret = named_room(&server, &alice, "secret").await;

    let (status, body) = server
        .request_raw(
            reqwest::Method::POST,
            SS,
            eve.token(),
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_err(
        &(status, body),
        400,
        "M_NOT_JSON",
        "a body that is not JSON",
    );
    let wrong_shape = json!({ "lists": { "x": { "ranges": "all" } } });
    let resp = ss_attempt(&server, &eve, None, 0, &wrong_shape).await;
    assert_err(&resp, 400, "M_BAD_JSON", "ranges that are not pairs");
    let many: serde_json::Map<String, Value> = (0..101)
        .map(|i| {
            (
                format!("l{i}"),
                json!({ "ranges": [[0, 0]], "timeline_limit": 1 }),
            )
        })
        .collect();
    let resp = ss_attempt(&server, &eve, None, 0, &json!({ "lists": many })).await;
    assert_err(&resp, 400, "M_INVALID_PARAM", "too many lists");
    let long_conn = json!({ "conn_id": "x".repeat(65) });
    let resp = ss_attempt(&server, &eve, None, 0, &long_conn).await;
    assert_err(&resp, 400, "M_INVALID_PARAM", "a conn_id that is too long");
    let (status, _) = server.post(SS, None, &json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A subscription to a room eve is not in shows nothing of it.
    let peek = json!({ "room_subscriptions": { secret.clone(): {
        "timeline_limit": 10, "required_state": [["*", "*"]],
    } } });
    let resp = ss(&server, &eve, None, 0, &peek).await;
    assert!(
        resp["rooms"].as_object().is_none_or(|r| r.is_empty()),
        "{resp}"
    );
}

#[tokio::test]
async fn a_long_poll_wakes_on_a_send() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = server
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob.access_token, &room).await;
    let first = ss(&server, &alice, None, 0, &list((0, 9), 5)).await;

    // Nothing new: the request waits out its timeout.
    let started = Instant::now();
    let idle = ss(&server, &alice, Some(&pos(&first)), 500, &list((0, 9), 5)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "answered early: {idle}"
    );
    assert!(room_ids(&idle).is_empty(), "{idle}");

    let (idle_pos, body) = (pos(&idle), list((0, 9), 5));
    let started = Instant::now();
    let (woken, _) = tokio::join!(ss(&server, &alice, Some(&idle_pos), 20_000, &body), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server
            .send_message(&bob.access_token, &room, "t1", "wake up")
            .await;
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not woken by the send"
    );
    assert_eq!(bodies(&woken, &room), vec!["wake up"]);
    assert_eq!(woken["rooms"][&room]["num_live"], 1);
}

#[tokio::test]
async fn invites_carry_stripped_state_then_join() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = named_room(&server, &bob, "bob's room").await;
    let first = ss(&server, &alice, None, 0, &list((0, 9), 5)).await;
    assert_eq!(first["lists"]["all"]["count"], 0);

    server
        .invite(&bob.access_token, &room, &alice.user_id)
        .await;
    let invited = ss(&server, &alice, Some(&pos(&first)), 5_000, &list((0, 9), 5)).await;
    let entry = &invited["rooms"][&room];
    assert_eq!(invited["lists"]["all"]["count"], 1);
    let state = entry["invite_state"].as_array().expect("invite_state");
    assert!(
        state.iter().any(|e| e["type"] == "m.room.create"),
        "{entry}"
    );
    assert!(state
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "bob's room"));
    assert!(state.iter().any(|e| {
        e["type"] == "m.room.member"
            && e["state_key"] == alice.user_id.as_str()
            && e["content"]["membership"] == "invite"
    }));
    assert!(
        entry["timeline"].is_null(),
        "no timeline for an invite: {entry}"
    );

    // Filtering invites out leaves nothing (on a connection of its own: a request without
    // `pos` starts its connection afresh).
    let mut no_invites = list((0, 9), 5);
    no_invites["lists"]["all"]["filters"] = json!({ "is_invite": false });
    no_invites["conn_id"] = json!("filtered");
    let filtered = ss(&server, &alice, None, 0, &no_invites).await;
    assert_eq!(filtered["lists"]["all"]["count"], 0);

    server.join(&alice.access_token, &room).await;
    let joined = ss(
        &server,
        &alice,
        Some(&pos(&invited)),
        5_000,
        &list((0, 9), 5),
    )
    .await;
    let entry = &joined["rooms"][&room];
    assert_eq!(entry["initial"], true, "{entry}");
    assert!(entry["invite_state"].is_null());
    assert!(entry["required_state"].as_array().unwrap().iter().any(|e| {
        e["state_key"] == alice.user_id.as_str() && e["content"]["membership"] == "join"
    }));
    assert_eq!(entry["joined_count"], 2);

    // Leaving shows the room once more, with the leave; then it is gone.
    server.leave(&alice.access_token, &room).await;
    let left = ss(
        &server,
        &alice,
        Some(&pos(&joined)),
        5_000,
        &list((0, 9), 5),
    )
    .await;
    assert!(
        left["rooms"][&room]["required_state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| {
                e["state_key"] == alice.user_id.as_str() && e["content"]["membership"] == "leave"
            }),
        "{left}"
    );
    let after = ss(&server, &alice, Some(&pos(&left)), 0, &list((0, 9), 5)).await;
    assert_eq!(after["lists"]["all"]["count"], 0, "{after}");
}

fn to_device_request(since: Option<&str>) -> Value {
    let mut ext = json!({ "enabled": true });
    if let Some(since) = since {
        ext["since"] = json!(since);
    }
    json!({ "conn_id": "encryption", "extensions": { "to_device": ext } })
}

#[tokio::test]
async fn to_device_messages_stay_until_acknowledged() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let (status, body) = server
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.ping/t1",
            alice.token(),
            &json!({ "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "n": 1 } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let first = ss(&server, &bob, None, 0, &to_device_request(None)).await;
    let ext = &first["extensions"]["to_device"];
    assert_eq!(ext["events"][0]["type"], "org.example.ping", "{first}");
    assert_eq!(ext["events"][0]["sender"], alice.user_id.as_str());
    let next_batch = ext["next_batch"].as_str().expect("next_batch").to_owned();

    // Not acknowledged (no `since`): the message comes again.
    let again = ss(&server, &bob, None, 0, &to_device_request(None)).await;
    assert_eq!(
        again["extensions"]["to_device"]["events"][0]["content"]["n"],
        1
    );
    // Acknowledged: gone.
    let acked = ss(
        &server,
        &bob,
        Some(&pos(&again)),
        0,
        &to_device_request(Some(&next_batch)),
    )
    .await;
    let events = acked["extensions"]["to_device"]["events"].as_array();
    assert!(events.is_none_or(|e| e.is_empty()), "{acked}");
    let fresh = ss(&server, &bob, None, 0, &to_device_request(None)).await;
    assert!(fresh["extensions"]["to_device"]["events"]
        .as_array()
        .is_none_or(|e| e.is_empty()));
}

#[tokio::test]
async fn to_device_limit_bounds_each_response() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    // Three sends: three positions, one message each.
    for n in 1..=3 {
        let (status, body) = server
            .put(
                &format!("/_matrix/client/v3/sendToDevice/org.example.ping/t{n}"),
                alice.token(),
                &json!({ "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "n": n } } } }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let limited = |since: Option<&str>| {
        let mut req = to_device_request(since);
        req["extensions"]["to_device"]["limit"] = json!(2);
        req
    };
    let numbers = |resp: &Value| -> Vec<u64> {
        resp["extensions"]["to_device"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["content"]["n"].as_u64())
            .collect()
    };
    let first = ss(&server, &bob, None, 0, &limited(None)).await;
    assert_eq!(numbers(&first), vec![1, 2], "{first}");
    let next_batch = first["extensions"]["to_device"]["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let rest = ss(
        &server,
        &bob,
        Some(&pos(&first)),
        0,
        &limited(Some(&next_batch)),
    )
    .await;
    assert_eq!(numbers(&rest), vec![3], "{rest}");
}

#[tokio::test]
async fn a_changed_required_state_sends_only_what_it_adds() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = named_room(&server, &alice, "topical").await;
    let (status, body) = server
        .put(
            &room_path(&room, "state/m.room.topic/"),
            alice.token(),
            &json!({ "topic": "T" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let with_state = |state: Value| json!({ "lists": { "all": { "ranges": [[0, 0]], "timeline_limit": 1, "required_state": state } } });
    let types = |resp: &Value| -> Vec<String> {
        let mut t: Vec<String> = resp["rooms"][&room]["required_state"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect();
        t.sort();
        t
    };
    let first = ss(
        &server,
        &alice,
        None,
        0,
        &with_state(json!([["m.room.name", ""]])),
    )
    .await;
    assert_eq!(types(&first), vec!["m.room.name"], "{first}");

    let wider = with_state(json!([
        ["m.room.name", ""],
        ["m.room.topic", ""],
        ["m.room.member", "*"]
    ]));
    let next = ss(&server, &alice, Some(&pos(&first)), 0, &wider).await;
    assert_eq!(
        types(&next),
        vec!["m.room.member", "m.room.topic"],
        "{next}"
    );
    assert!(next["rooms"][&room].get("initial").is_none(), "{next}");
    assert!(bodies(&next, &room).is_empty(), "{next}");

    // A rename: the name comes, once, under the wider state too.
    let (status, body) = server
        .put(
            &room_path(&room, "state/m.room.name/"),
            alice.token(),
            &json!({ "name": "renamed" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let renamed = ss(&server, &alice, Some(&pos(&next)), 0, &wider).await;
    assert_eq!(types(&renamed), vec!["m.room.name"], "{renamed}");
    assert_eq!(renamed["rooms"][&room]["name"], "renamed");
}

#[tokio::test]
async fn a_longer_timeline_limit_expands_the_timeline() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = named_room(&server, &alice, "history").await;
    for n in 1..=3 {
        server
            .send_message(
                &alice.access_token,
                &room,
                &format!("t{n}"),
                &format!("m{n}"),
            )
            .await;
    }
    let first = ss(&server, &alice, None, 0, &list((0, 0), 1)).await;
    assert_eq!(bodies(&first, &room), vec!["m3"]);
    assert!(first["rooms"][&room]
        .get("unstable_expanded_timeline")
        .is_none());
    let longer = ss(&server, &alice, Some(&pos(&first)), 0, &list((0, 0), 3)).await;
    let update = &longer["rooms"][&room];
    assert_eq!(bodies(&longer, &room), vec!["m1", "m2", "m3"], "{longer}");
    assert_eq!(update["unstable_expanded_timeline"], true, "{longer}");
    assert!(update.get("initial").is_none(), "{longer}");
}

#[tokio::test]
async fn e2ee_extension_counts_keys_and_device_changes() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = server
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob.access_token, &room).await;
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/upload",
            alice.token(),
            &json!({
                "one_time_keys": {
                    "signed_curve25519:AAAA": { "key": "one" },
                    "signed_curve25519:AAAB": { "key": "two" },
                },
                "fallback_keys": { "signed_curve25519:AAAC": { "key": "fb", "fallback": true } },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let e2ee = json!({ "conn_id": "encryption", "extensions": { "e2ee": { "enabled": true } } });
    let first = ss(&server, &alice, None, 0, &e2ee).await;
    let ext = &first["extensions"]["e2ee"];
    assert_eq!(
        ext["device_one_time_keys_count"]["signed_curve25519"], 2,
        "{first}"
    );
    assert_eq!(
        ext["device_unused_fallback_key_types"],
        json!(["signed_curve25519"])
    );

    // Bob's new device keys: alice shares a room with him, so he is in `changed`.
    let device = bob.device_id.clone();
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/upload",
            bob.token(),
            &json!({ "device_keys": {
                "user_id": bob.user_id, "device_id": device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                "keys": { format!("curve25519:{device}"): "k", format!("ed25519:{device}"): "k" },
                "signatures": {},
            } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let next = ss(&server, &alice, Some(&pos(&first)), 5_000, &e2ee).await;
    assert_eq!(
        next["extensions"]["e2ee"]["device_lists"]["changed"],
        json!([bob.user_id]),
        "{next}"
    );
}

#[tokio::test]
async fn account_data_receipts_and_typing_of_the_rooms_in_range() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = server
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob.access_token, &room).await;
    let event = server
        .send_message(&alice.access_token, &room, "t1", "read me")
        .await;
    let mut body = list((0, 9), 1);
    body["extensions"] = json!({
        "account_data": { "enabled": true },
        "receipts": { "enabled": true },
        "typing": { "enabled": true },
    });
    let first = ss(&server, &alice, None, 0, &body).await;
    let global = first["extensions"]["account_data"]["global"]
        .as_array()
        .expect("global");
    assert!(
        global.iter().any(|e| e["type"] == "m.push_rules"),
        "{first}"
    );

    let tag_path = format!(
        "/_matrix/client/v3/user/{}/rooms/{}/tags/u.work",
        enc(&alice.user_id),
        enc(&room)
    );
    let (status, resp) = server
        .put(&tag_path, alice.token(), &json!({ "order": 0.5 }))
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let receipt = room_path(&room, &format!("receipt/m.read/{}", enc(&event)));
    let (status, resp) = server.post(&receipt, bob.token(), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let typing = room_path(&room, &format!("typing/{}", enc(&bob.user_id)));
    let (status, resp) = server
        .put(
            &typing,
            bob.token(),
            &json!({ "typing": true, "timeout": 20_000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");

    let next = ss(&server, &alice, Some(&pos(&first)), 0, &body).await;
    let ext = &next["extensions"];
    let room_data = ext["account_data"]["rooms"][&room]
        .as_array()
        .expect("room account data");
    assert!(
        room_data
            .iter()
            .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["u.work"].is_object()),
        "{next}"
    );
    assert!(
        ext["receipts"]["rooms"][&room]["content"][&event]["m.read"][&bob.user_id].is_object(),
        "{next}"
    );
    assert_eq!(
        ext["typing"]["rooms"][&room]["content"]["user_ids"],
        json!([bob.user_id]),
        "{next}"
    );
}
