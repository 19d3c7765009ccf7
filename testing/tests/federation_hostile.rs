//! A hostile federation server against Myelin, both on loopback: membership templates for
//! another room, user or membership are never signed (the local user stays in their private
//! room, and nothing for another room reaches the hostile server's `send_*`); events of our own
//! users that we never made are refused when replayed through `/send`, as is anything from a
//! server with no member in the room; invite and knock stripped state is trimmed; the server ACL
//! applies to `/invite` and `/hierarchy`; a resident server that changes our join or sends the
//! state of another room is caught; a failed outgoing transaction is retried under the same
//! txnId with the same content.

use std::collections::HashMap;
use std::time::Duration;

use myelin_testing::federation::now_ms;
use myelin_testing::hostile::{server_key, sign_pdu, HostileServer, Recorded, SendJoinAnswer};
use myelin_testing::http::{register, sync_until};
use myelin_testing::{enc, Account, StatusCode, TestServer};
use serde_json::{json, Value};

/// How long the hostile server waits for Myelin to contact it.
const WAIT: Duration = Duration::from_secs(20);

/// A room of version 10 (the version the hostile server signs) with this preset.
async fn create_room(server: &TestServer, account: &Account, preset: &str) -> String {
    server
        .create_room(
            account.token().expect("token"),
            &json!({ "preset": preset, "room_version": "10" }),
        )
        .await
}

/// `account`'s membership in `room_id` as its own server has it.
async fn membership(server: &TestServer, account: &Account, room_id: &str) -> Value {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        enc(room_id),
        enc(&account.user_id)
    );
    let (status, member) = server.get(&path, account.token()).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    member["membership"].clone()
}

/// Asserts that `account` is still joined to `room_id`, by its state and `/joined_rooms`.
async fn assert_still_joined(server: &TestServer, account: &Account, room_id: &str, what: &str) {
    assert_eq!(
        membership(server, account, room_id).await,
        "join",
        "{what}: the user must still be joined"
    );
    let (status, joined) = server
        .get("/_matrix/client/v3/joined_rooms", account.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert!(
        joined["joined_rooms"]
            .as_array()
            .is_some_and(|rooms| rooms.iter().any(|r| r == room_id)),
        "{what}: {room_id} is still among the joined rooms: {joined}"
    );
}

/// The event IDs of `room_id`'s current state by `(type, state_key)`, and its newest event.
async fn room_ids(
    server: &TestServer,
    account: &Account,
    room_id: &str,
) -> (HashMap<(String, String), String>, String) {
    let path = format!("/_matrix/client/v3/rooms/{}/state", enc(room_id));
    let (status, state) = server.get(&path, account.token()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    let ids = state
        .as_array()
        .expect("state array")
        .iter()
        .map(|e| {
            (
                (
                    e["type"].as_str().expect("type").to_owned(),
                    e["state_key"].as_str().expect("state_key").to_owned(),
                ),
                e["event_id"].as_str().expect("event_id").to_owned(),
            )
        })
        .collect();
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1",
        enc(room_id)
    );
    let (status, page) = server.get(&path, account.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let latest = page["chunk"][0]["event_id"]
        .as_str()
        .expect("newest event")
        .to_owned();
    (ids, latest)
}

/// The fields of an `m.room.member` event of `sender` about `target` in a room with these IDs.
fn member_fields(
    room_id: &str,
    sender: &str,
    target: &str,
    membership: &str,
    (ids, latest): &(HashMap<(String, String), String>, String),
    origin: &str,
) -> Value {
    let id = |kind: &str, key: &str| ids.get(&(kind.to_owned(), key.to_owned())).cloned();
    // The auth events the spec selects for a membership: the join rules only where they matter.
    let join_rules = ["join", "invite", "knock"]
        .contains(&membership)
        .then(|| id("m.room.join_rules", ""))
        .flatten();
    let auth: Vec<String> = [
        id("m.room.create", ""),
        id("m.room.power_levels", ""),
        join_rules,
        id("m.room.member", target),
        id("m.room.member", sender),
    ]
    .into_iter()
    .flatten()
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect();
    json!({
        "type": "m.room.member",
        "room_id": room_id,
        "sender": sender,
        "state_key": target,
        "content": { "membership": membership },
        "prev_events": [latest],
        "auth_events": auth,
        "depth": 100,
        "origin": origin,
        "origin_server_ts": now_ms(),
    })
}

/// A template of the hostile server's own (made-up) room: for `membership` of `user`.
fn own_room_template(hostile: &HostileServer, user: &str, membership: &str) -> Value {
    json!({
        "type": "m.room.member",
        "room_id": hostile.room("hostile"),
        "sender": user,
        "state_key": user,
        "content": { "membership": membership },
        "prev_events": ["$Q7dUnHxv9XkVYgPzq1PvRqOy6m2Xb6qlU2gGZl9z5kQ"],
        "auth_events": ["$jmsm3iAYe1x1V8SlyJhG0lNB3D2bSp5bJ1m0dFLJaE4"],
        "depth": 7,
        "origin": hostile.server_name(),
        "origin_server_ts": 1,
    })
}

/// Oversized and hostile stripped state: a valid name among duplicates, forbidden types, events
/// of another room, malformed entries and one huge topic.
fn hostile_stripped_state(hostile: &HostileServer) -> Vec<Value> {
    let sender = hostile.user("mallory");
    let event = |kind: &str, content: Value| json!({ "type": kind, "state_key": "", "sender": sender, "content": content });
    let mut state = vec![
        event(
            "m.room.create",
            json!({ "room_version": "10", "creator": sender }),
        ),
        event("m.room.name", json!({ "name": "The real name" })),
    ];
    for i in 0..100 {
        state.push(event("m.room.name", json!({ "name": format!("dup {i}") })));
        state.push(event(
            "com.example.junk",
            json!({ "junk": "j".repeat(2_000), "i": i }),
        ));
    }
    let mut elsewhere = event("m.room.topic", json!({ "topic": "from another room" }));
    elsewhere["room_id"] = json!("!elsewhere:example.org");
    state.push(elsewhere);
    state.push(json!("not an event"));
    state.push(json!({ "type": "m.room.avatar", "state_key": "", "content": {} }));
    state.push(event(
        "m.room.topic",
        json!({ "topic": "t".repeat(80_000) }),
    ));
    state.push(event("m.room.join_rules", json!({ "join_rule": "invite" })));
    state
}

/// Asserts that stripped state as `/sync` shows it kept only the allowed part of
/// [`hostile_stripped_state`].
fn assert_trimmed(events: &[Value], what: &str) {
    let allowed = [
        "m.room.create",
        "m.room.join_rules",
        "m.room.name",
        "m.room.avatar",
        "m.room.canonical_alias",
        "m.room.encryption",
        "m.room.topic",
        "m.room.member",
    ];
    assert!(events.len() <= 10, "{what}: {} events kept", events.len());
    for event in events {
        assert!(
            allowed.contains(&event["type"].as_str().unwrap_or("")),
            "{what}: {event}"
        );
    }
    let names: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "m.room.name")
        .collect();
    assert_eq!(names.len(), 1, "{what}: one name: {events:?}");
    assert_eq!(names[0]["content"]["name"], "The real name");
    assert!(
        events.iter().all(|e| e["type"] != "m.room.topic"),
        "{what}: neither the other room's topic nor the huge one: {events:?}"
    );
    assert!(events.iter().any(|e| e["type"] == "m.room.join_rules"));
    let bytes: usize = events.iter().map(|e| e.to_string().len()).sum();
    assert!(bytes <= 70 * 1024, "{what}: {bytes} bytes kept");
}

/// Every `send_*` request the hostile server received is for its own room.
fn assert_send_only_for(hostile: &HostileServer, room_id: &str) {
    for request in hostile.received() {
        if request.path.contains("/send_") {
            assert_eq!(
                request.body["room_id"], room_id,
                "an event for another room reached {}: {:?}",
                request.path, request.body
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_for_another_room_user_or_membership_are_never_signed() {
    let a = TestServer::start_federating().await;
    let hostile = HostileServer::start().await;
    let alice = register(&a, "alice").await;
    let bob = register(&a, "bob").await;
    let private = create_room(&a, &alice, "private_chat").await;
    let ids = room_ids(&a, &alice, &private).await;
    let target = hostile.room("hostile");
    let origin = hostile.server_name().to_owned();

    // Knocks on the hostile server's room, answered with templates for something else.
    let knock_path = format!(
        "/_matrix/client/v3/knock/{}?via={}",
        enc(&target),
        enc(&origin)
    );
    let wrong_knocks = [
        (
            "alice's knock on her own private room",
            "10",
            member_fields(
                &private,
                &alice.user_id,
                &alice.user_id,
                "knock",
                &ids,
                &origin,
            ),
        ),
        (
            "bob's knock",
            "10",
            own_room_template(&hostile, &bob.user_id, "knock"),
        ),
        ("a knock sent by alice about bob", "10", {
            let mut t = own_room_template(&hostile, &alice.user_id, "knock");
            t["state_key"] = json!(bob.user_id);
            t
        }),
        (
            "a leave",
            "10",
            own_room_template(&hostile, &alice.user_id, "leave"),
        ),
        ("a message", "10", {
            let mut t = own_room_template(&hostile, &alice.user_id, "knock");
            t["type"] = json!("m.room.message");
            t
        }),
        (
            "an unknown room version",
            "org.example.evil",
            own_room_template(&hostile, &alice.user_id, "knock"),
        ),
    ];
    for (what, version, template) in &wrong_knocks {
        hostile.set_template("knock", version, template.clone());
        let (status, body) = a.post(&knock_path, alice.token(), &json!({})).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{what}: {body}");
        assert_eq!(body["errcode"], "M_UNKNOWN", "{what}: {body}");
    }
    // Joining through it with a template for the private room.
    hostile.set_template(
        "join",
        "10",
        member_fields(
            &private,
            &alice.user_id,
            &alice.user_id,
            "join",
            &ids,
            &origin,
        ),
    );
    let join_path = format!(
        "/_matrix/client/v3/join/{}?via={}",
        enc(&target),
        enc(&origin)
    );
    let (status, body) = a.post(&join_path, alice.token(), &json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "join: {body}");

    // Myelin asked every time, and signed nothing: no send_knock or send_join came.
    assert_eq!(
        hostile
            .received_under("/_matrix/federation/v1/make_knock/")
            .len(),
        wrong_knocks.len()
    );
    assert_eq!(
        hostile
            .received_under("/_matrix/federation/v1/make_join/")
            .len(),
        1
    );
    let sent: Vec<Recorded> = hostile
        .received()
        .into_iter()
        .filter(|r| r.path.contains("/send_"))
        .collect();
    assert!(sent.is_empty(), "nothing was signed: {sent:?}");
    assert_still_joined(&a, &alice, &private, "after the hostile templates").await;

    // A template for what was asked is signed and sent; the knock state it answers is trimmed.
    hostile.set_template(
        "knock",
        "10",
        own_room_template(&hostile, &alice.user_id, "knock"),
    );
    hostile.set_knock_room_state(hostile_stripped_state(&hostile));
    let (status, body) = a.post(&knock_path, alice.token(), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "a proper knock: {body}");
    let knocks = hostile.received_under("/_matrix/federation/v1/send_knock/");
    assert_eq!(knocks.len(), 1, "{knocks:?}");
    let knock = &knocks[0].body;
    assert_eq!(knock["room_id"], target);
    assert_eq!(knock["sender"], alice.user_id);
    assert_eq!(knock["state_key"], alice.user_id);
    assert_eq!(knock["content"]["membership"], "knock");
    assert_eq!(knock["origin"], a.server_name(), "our origin, not theirs");
    assert_ne!(knock["origin_server_ts"], 1, "our timestamp, not theirs");
    assert!(knock.get("redacts").is_none());
    assert_send_only_for(&hostile, &target);
    let sync = sync_until(&a, &alice, "the knock", |sync| {
        sync["rooms"]["knock"].get(&target).is_some()
    })
    .await;
    let events = sync["rooms"]["knock"][&target]["knock_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The knock itself is shown with the stripped state.
    let stripped: Vec<Value> = events
        .into_iter()
        .filter(|e| e["type"] != "m.room.member")
        .collect();
    assert_trimmed(&stripped, "knock_room_state");
    assert_still_joined(&a, &alice, &private, "after the proper knock").await;
    a.stop().await;
}

/// An invite from `hostile`'s mallory to `invitee` for the hostile server's room, with
/// `invite_room_state`: the signed event's ID and the answer.
async fn invite_from_hostile(
    a: &TestServer,
    hostile: &HostileServer,
    room_id: &str,
    invitee: &str,
    invite_room_state: Vec<Value>,
) -> (String, StatusCode, Value) {
    let mut fields = own_room_template(hostile, invitee, "invite");
    fields["room_id"] = json!(room_id);
    fields["sender"] = json!(hostile.user("mallory"));
    fields["origin_server_ts"] = json!(now_ms());
    let (event_id, event) = hostile.sign_pdu(fields);
    let uri = format!(
        "/_matrix/federation/v2/invite/{}/{}",
        enc(room_id),
        enc(&event_id)
    );
    let body = json!({
        "event": event,
        "room_version": "10",
        "invite_room_state": invite_room_state,
    });
    let (status, answer) = hostile.request(a, "PUT", &uri, Some(&body)).await;
    (event_id, status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_for_another_room_is_never_signed_nor_accepted_when_replayed() {
    let a = TestServer::start_federating().await;
    let hostile = HostileServer::start().await;
    let alice = register(&a, "alice").await;
    let private = create_room(&a, &alice, "private_chat").await;
    let origin = hostile.server_name().to_owned();
    let target = hostile.room("hostile");

    // The hostile server invites alice to its room, then answers her rejection's make_leave
    // with a leave of her private room.
    let (_, status, body) =
        invite_from_hostile(&a, &hostile, &target, &alice.user_id, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "invite: {body}");
    sync_until(&a, &alice, "the invite", |sync| {
        sync["rooms"]["invite"].get(&target).is_some()
    })
    .await;
    let ids = room_ids(&a, &alice, &private).await;
    hostile.set_template(
        "leave",
        "10",
        member_fields(
            &private,
            &alice.user_id,
            &alice.user_id,
            "leave",
            &ids,
            &origin,
        ),
    );
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&target)),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the rejection stays local: {body}");
    assert_eq!(
        hostile
            .received_under("/_matrix/federation/v1/make_leave/")
            .len(),
        1
    );
    let sent: Vec<Recorded> = hostile
        .received()
        .into_iter()
        .filter(|r| r.path.contains("/send_"))
        .collect();
    assert!(
        sent.is_empty(),
        "no leave was signed for the private room: {sent:?}"
    );
    assert_still_joined(&a, &alice, &private, "after the rejection").await;

    // Had Myelin signed that leave, the hostile server would replay it through /send. It has no
    // member in the room: refused.
    let a_key = server_key(&a);
    let forged = member_fields(
        &private,
        &alice.user_id,
        &alice.user_id,
        "leave",
        &ids,
        a.server_name(),
    );
    let (leave_id, leave) = sign_pdu(a.server_name(), &a_key, forged);
    let results = hostile.send_transaction(&a, "replay-1", vec![leave]).await;
    assert!(
        results[&leave_id]["error"].is_string(),
        "the replayed leave is refused: {results}"
    );
    assert_still_joined(&a, &alice, &private, "after the replay").await;
    // Nor is anything else it sends about that room looked into: Myelin does not call back to
    // ask it for the missing events or the state.
    let (stray_id, stray) = hostile.sign_pdu(json!({
        "type": "m.room.message",
        "room_id": private,
        "sender": hostile.user("mallory"),
        "content": { "msgtype": "m.text", "body": "let me in" },
        "prev_events": ["$Q7dUnHxv9XkVYgPzq1PvRqOy6m2Xb6qlU2gGZl9z5kQ"],
        "auth_events": [ids.0[&("m.room.create".to_owned(), String::new())]],
        "depth": 100,
        "origin": origin,
        "origin_server_ts": now_ms(),
    }));
    let results = hostile.send_transaction(&a, "stray-1", vec![stray]).await;
    assert!(
        results[&stray_id]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no member")),
        "{results}"
    );
    let asked: Vec<Recorded> = hostile
        .received()
        .into_iter()
        .filter(|r| {
            ["get_missing_events", "/state", "event_auth", "/event/"]
                .iter()
                .any(|p| r.path.contains(p))
        })
        .collect();
    assert!(asked.is_empty(), "nothing was asked of it: {asked:?}");

    // In a room where the hostile server does have a member, our user's leave that we never
    // made is refused all the same, while its own user's message goes through.
    let public = create_room(&a, &alice, "public_chat").await;
    hostile.join(&a, &public, "mallory").await;
    let ids = room_ids(&a, &alice, &public).await;
    let forged = member_fields(
        &public,
        &alice.user_id,
        &alice.user_id,
        "leave",
        &ids,
        a.server_name(),
    );
    let (leave_id, leave) = sign_pdu(a.server_name(), &a_key, forged);
    let mallory = hostile.user("mallory");
    let id = |kind: &str, key: &str| ids.0[&(kind.to_owned(), key.to_owned())].clone();
    let (message_id, message) = hostile.sign_pdu(json!({
        "type": "m.room.message",
        "room_id": public,
        "sender": mallory,
        "content": { "msgtype": "m.text", "body": "hello from mallory" },
        "prev_events": [ids.1],
        "auth_events": [
            id("m.room.create", ""),
            id("m.room.power_levels", ""),
            id("m.room.member", &mallory),
        ],
        "depth": 100,
        "origin": origin,
        "origin_server_ts": now_ms(),
    }));
    let results = hostile
        .send_transaction(&a, "replay-2", vec![leave, message])
        .await;
    let error = results[&leave_id]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("did not make"),
        "our user's leave that we never made is refused: {results}"
    );
    assert_eq!(
        results[&message_id],
        json!({}),
        "the member's own message is accepted: {results}"
    );
    assert_still_joined(&a, &alice, &public, "after the replay in the shared room").await;
    let (status, event) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&public),
                enc(&message_id)
            ),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_invite_state_is_trimmed() {
    let a = TestServer::start_federating().await;
    let hostile = HostileServer::start().await;
    let alice = register(&a, "alice").await;
    let target = hostile.room("hostile");
    let state = hostile_stripped_state(&hostile);
    let given = serde_json::to_string(&state).expect("JSON").len();
    assert!(given > 300_000, "the test sends a lot: {given} bytes");
    let (_, status, body) = invite_from_hostile(&a, &hostile, &target, &alice.user_id, state).await;
    assert_eq!(status, StatusCode::OK, "invite: {body}");
    assert!(
        body["event"]["signatures"][a.server_name()].is_object(),
        "co-signed: {body}"
    );
    let sync = sync_until(&a, &alice, "the invite", |sync| {
        sync["rooms"]["invite"].get(&target).is_some()
    })
    .await;
    let events = sync["rooms"]["invite"][&target]["invite_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (invites, stripped): (Vec<Value>, Vec<Value>) = events
        .into_iter()
        .partition(|e| e["type"] == "m.room.member");
    assert_eq!(invites.len(), 1, "the invite itself: {invites:?}");
    assert_eq!(invites[0]["state_key"], alice.user_id);
    assert_eq!(invites[0]["sender"], hostile.user("mallory"));
    assert_trimmed(&stripped, "invite_room_state");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_acl_applies_to_invites_and_hierarchy() {
    let a = TestServer::start_federating().await;
    let hostile = HostileServer::start().await;
    let alice = register(&a, "alice").await;
    let bob = register(&a, "bob").await;
    let room = create_room(&a, &alice, "public_chat").await;
    let hierarchy = format!("/_matrix/federation/v1/hierarchy/{}", enc(&room));

    // Without an ACL the hostile server may ask.
    let (status, body) = hostile.request(&a, "GET", &hierarchy, None).await;
    assert_eq!(status, StatusCode::OK, "hierarchy: {body}");
    assert_eq!(body["room"]["room_id"], room);
    let (_, status, body) =
        invite_from_hostile(&a, &hostile, &room, &bob.user_id, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "invite: {body}");

    // An ACL denying its host (127.0.0.1; ports are not compared) shuts it out of both.
    let (status, body) = a
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.server_acl/",
                enc(&room)
            ),
            alice.token(),
            &json!({ "allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = hostile.request(&a, "GET", &hierarchy, None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "hierarchy under the ACL: {body}"
    );
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    let (_, status, body) =
        invite_from_hostile(&a, &hostile, &room, &bob.user_id, Vec::new()).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "invite v2 under the ACL: {body}"
    );
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    // The v1 invite too (its body is the event itself).
    let mut fields = own_room_template(&hostile, &bob.user_id, "invite");
    fields["room_id"] = json!(room);
    fields["sender"] = json!(hostile.user("mallory"));
    let (event_id, event) = hostile.sign_pdu(fields);
    let uri = format!(
        "/_matrix/federation/v1/invite/{}/{}",
        enc(&room),
        enc(&event_id)
    );
    let (status, body) = hostile.request(&a, "PUT", &uri, Some(&event)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "invite v1 under the ACL: {body}"
    );
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    // Bob was never invited.
    let sync = a.sync(bob.token().expect("token"), None, 0).await;
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "{sync}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_is_retried_under_the_same_txn_id() {
    let a = TestServer::start_federating_with(|c| c.federation.retry_min_ms = 200).await;
    let hostile = HostileServer::start().await;
    let alice = register(&a, "alice").await;
    let token = alice.token().expect("token");
    let room = create_room(&a, &alice, "public_chat").await;
    hostile.join(&a, &room, "mallory").await;

    let sends = |log: &[Recorded]| -> Vec<Recorded> {
        log.iter()
            .filter(|r| r.method == "PUT" && r.txn_id().is_some())
            .cloned()
            .collect()
    };
    let carries = |request: &Recorded, body: &str| {
        request.body["pdus"]
            .as_array()
            .is_some_and(|pdus| pdus.iter().any(|p| p["content"]["body"] == body))
    };
    let before = sends(&hostile.received()).len();
    hostile.fail_sends(1);
    a.send_message(token, &room, "t1", "first").await;
    let failed = hostile
        .wait_for("the first attempt", WAIT, |log| {
            sends(log).get(before).cloned()
        })
        .await;
    // Queued while the first transaction is failing: goes in a later transaction.
    a.send_message(token, &room, "t2", "second").await;
    let retried = hostile
        .wait_for("the retry", WAIT, |log| sends(log).get(before + 1).cloned())
        .await;
    assert_eq!(
        retried.txn_id(),
        failed.txn_id(),
        "the retry keeps its txnId"
    );
    assert_eq!(retried.body, failed.body, "and its content");
    let second = hostile
        .wait_for("the second message", WAIT, |log| {
            sends(log).into_iter().find(|r| carries(r, "second"))
        })
        .await;
    assert_ne!(second.txn_id(), failed.txn_id(), "a new batch, a new txnId");
    // The first message went out, in the failed transaction or a later one.
    hostile
        .wait_for("the first message", WAIT, |log| {
            sends(log).into_iter().find(|r| carries(r, "first"))
        })
        .await;
    assert!(!carries(&failed, "second"));
    a.stop().await;
}

async fn joined_rooms(server: &TestServer, account: &Account) -> Vec<Value> {
    let (status, joined) = server
        .get("/_matrix/client/v3/joined_rooms", account.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    joined["joined_rooms"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_server_that_changes_our_join_or_mixes_in_another_room_is_caught() {
    let a = TestServer::start_federating().await;
    let hostile = HostileServer::start().await;
    let alice = register(&a, "alice").await;
    let room = hostile.make_room("resident");
    let other = hostile.make_room("other");
    let join_path = format!(
        "/_matrix/client/v3/join/{}?via={}",
        enc(&room.room_id),
        enc(hostile.server_name())
    );
    let mut state = room.state();
    state.extend(other.state());

    // Our join comes back with its content changed (so only its redacted form still verifies):
    // refused, and the user is not in the room.
    hostile.set_template(
        "join",
        "10",
        room.template(hostile.server_name(), &alice.user_id, "join"),
    );
    hostile.set_send_join(SendJoinAnswer {
        state: state.clone(),
        auth_chain: room.state(),
        tamper_with_event: true,
    });
    let (status, body) = a.post(&join_path, alice.token(), &json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "tampered join: {body}");
    assert!(
        !joined_rooms(&a, &alice)
            .await
            .contains(&json!(room.room_id)),
        "not joined after the tampered answer"
    );

    // Sent back as it was, the join goes through; the other room's events mixed into the state
    // are left out.
    hostile.set_template(
        "join",
        "10",
        room.template(hostile.server_name(), &alice.user_id, "join"),
    );
    hostile.set_send_join(SendJoinAnswer {
        state,
        auth_chain: room.state(),
        tamper_with_event: false,
    });
    let (status, body) = a.post(&join_path, alice.token(), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "join: {body}");
    assert!(joined_rooms(&a, &alice)
        .await
        .contains(&json!(room.room_id)));
    assert_send_only_for(&hostile, &room.room_id);
    let (ids, _) = room_ids(&a, &alice, &room.room_id).await;
    let in_room: Vec<&String> = room.events.iter().map(|(id, _)| id).collect();
    for ((kind, key), id) in &ids {
        assert!(
            in_room.contains(&id) || (kind == "m.room.member" && key == &alice.user_id),
            "{kind} {key} {id} is an event of the room"
        );
    }
    assert_eq!(ids.len(), room.events.len() + 1, "{ids:?}");
    let path = format!("/_matrix/client/v3/rooms/{}/state", enc(&other.room_id));
    let (status, body) = a.get(&path, alice.token()).await;
    assert_ne!(
        status,
        StatusCode::OK,
        "the other room stays unknown: {body}"
    );
    a.stop().await;
}

/// A member server whose event needs fetches (an unknown prev event) and that never answers
/// them holds no one up: the fetches happen before the room's write lock is taken, so a local
/// send into the same room goes through while they are still unanswered. (Were the lock held
/// across them, the send would wait until our request to the hostile server timed out, and by
/// then its transaction would have been answered.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_member_server_never_holds_the_room_lock() {
    let a = TestServer::start_federating().await;
    let hostile = HostileServer::start().await;
    let alice = register(&a, "alice").await;
    let room = create_room(&a, &alice, "public_chat").await;
    hostile.join(&a, &room, "mallory").await;
    let ids = room_ids(&a, &alice, &room).await;
    let mallory = hostile.user("mallory");
    let id = |kind: &str, key: &str| ids.0[&(kind.to_owned(), key.to_owned())].clone();
    let (message_id, message) = hostile.sign_pdu(json!({
        "type": "m.room.message",
        "room_id": room,
        "sender": mallory,
        "content": { "msgtype": "m.text", "body": "after a gap" },
        "prev_events": ["$an-event-we-never-saw"],
        "auth_events": [
            id("m.room.create", ""),
            id("m.room.power_levels", ""),
            id("m.room.member", &mallory),
        ],
        "depth": 100,
        "origin": hostile.server_name(),
        "origin_server_ts": now_ms(),
    }));

    let results = {
        hostile.hold_fetches();
        let (a_ref, hostile_ref) = (&a, &hostile);
        let transaction = async move {
            hostile_ref
                .send_transaction(a_ref, "gap-1", vec![message])
                .await
        };
        tokio::pin!(transaction);
        // Drive the transaction until Myelin asks the hostile server about the gap.
        let asked = async {
            hostile
                .wait_for("get_missing_events", WAIT, |log| {
                    log.iter()
                        .any(|r| {
                            r.path
                                .starts_with("/_matrix/federation/v1/get_missing_events/")
                        })
                        .then_some(())
                })
                .await
        };
        tokio::select! {
            _ = asked => {}
            answer = &mut transaction => panic!("the transaction ended before any fetch: {answer}"),
        }
        // The fetch is held: a local send into the same room must not wait for it.
        let sent = a
            .send_message(
                alice.token().unwrap(),
                &room,
                "during",
                "sent during the fetch",
            )
            .await;
        assert!(sent.starts_with('$'));
        let still_held = futures_util::FutureExt::now_or_never(&mut transaction).is_none();
        assert!(
            still_held,
            "the local send had to wait for the hostile server's fetch to end"
        );
        // Released, the transaction ends; the gap stays open (the hostile server answers nothing
        // useful), so its event is refused without the state before it.
        hostile.release_fetches();
        transaction.await
    };
    assert!(
        results[&message_id]["error"].is_string(),
        "an event after an unbridged gap is not accepted: {results}"
    );
    a.stop().await;
}
