//! Application services, continued (raw HTTP against the loopback stub): presence as MSC2409
//! ephemeral events for the users that share a room with the appservice's users, MSC3202
//! `device_lists.left` for users who no longer share a room with any of them, and the reverse
//! third-party lookups (by alias and by user ID).

use myelin_testing::appservice::{
    all_ephemeral, as_user, register_puppet, StubAppservice, Txn, AS_TOKEN,
};
use myelin_testing::http::{assert_err, assert_ok, register, C};
use myelin_testing::{enc, TestServer};
use serde_json::{json, Value};

/// A server with the stub registered, its loopback address allowed by the egress filter.
async fn start(stub: &StubAppservice, dir: &std::path::Path) -> TestServer {
    let registration = stub.write_registration(dir, "localhost");
    let server = TestServer::start_with(|c| {
        c.appservices.registration_files = vec![registration];
        c.egress.allow = vec!["127.0.0.1".into()];
    })
    .await;
    stub.set_homeserver(server.base_url());
    server
}

/// Joins the stub's puppet `@stub_bob:localhost` (registered first if `register`) to `room`.
async fn puppet_joins(server: &TestServer, room: &str, register: bool) {
    if register {
        register_puppet(server, "stub_bob").await;
    }
    let join = as_user(&format!("{C}/join/{}", enc(room)), "@stub_bob:localhost");
    assert_ok(
        &server.post(&join, Some(AS_TOKEN), &json!({})).await,
        "puppet join",
    );
}

fn presence_of<'a>(events: &'a [Value], user: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["type"] == "m.presence" && e["sender"] == user)
}

#[tokio::test]
async fn presence_of_users_sharing_a_room_reaches_the_appservice() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    let alice = register(&server, "alice").await;
    let carol = register(&server, "carol").await;
    let room = server
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    puppet_joins(&server, &room, true).await;

    // Carol shares no room with the appservice's users: her presence is none of its business.
    let path = format!("{C}/presence/{}/status", enc(&carol.user_id));
    let resp = server
        .put(&path, carol.token(), &json!({ "presence": "online" }))
        .await;
    assert_ok(&resp, "carol's presence");
    let path = format!("{C}/presence/{}/status", enc(&alice.user_id));
    let body = json!({ "presence": "unavailable", "status_msg": "away" });
    assert_ok(
        &server.put(&path, alice.token(), &body).await,
        "alice's presence",
    );
    let txns = stub
        .wait_for("alice's presence", |t| {
            presence_of(&all_ephemeral(t), &alice.user_id).is_some()
        })
        .await;
    let events = all_ephemeral(&txns);
    let presence = presence_of(&events, &alice.user_id).unwrap();
    assert_eq!(presence["content"]["presence"], "unavailable");
    assert_eq!(presence["content"]["status_msg"], "away");
    assert!(presence["content"]["last_active_ago"].is_u64());
    assert!(
        presence_of(&events, &carol.user_id).is_none(),
        "{events:#?}"
    );

    // Presence set by a /sync (`set_presence`) counts as well.
    let resp = server
        .get(
            &format!("{C}/sync?set_presence=online&timeout=0"),
            alice.token(),
        )
        .await;
    assert_ok(&resp, "sync with set_presence");
    stub.wait_for("alice online", |t| {
        all_ephemeral(t)
            .iter()
            .any(|e| e["sender"] == alice.user_id.as_str() && e["content"]["presence"] == "online")
    })
    .await;
}

/// The MSC3202 `device_lists.left` of every transaction, flattened.
fn left_users(txns: &[Txn]) -> Vec<String> {
    txns.iter()
        .flat_map(|t| {
            t.body["org.matrix.msc3202.device_lists"]["left"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn users_no_longer_sharing_a_room_are_in_device_lists_left() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    let alice = register(&server, "alice").await;
    let dave = register(&server, "dave").await;
    let room = server
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    let other = server
        .create_room(&dave.access_token, &json!({ "preset": "public_chat" }))
        .await;
    puppet_joins(&server, &room, true).await;
    puppet_joins(&server, &other, false).await;
    server.join(&dave.access_token, &room).await;

    // Dave leaves one room but still shares the other with the puppet; Alice shares none after.
    server.leave(&dave.access_token, &room).await;
    server.leave(&alice.access_token, &room).await;
    let txns = stub
        .wait_for("alice in device_lists.left", |t| {
            left_users(t).contains(&alice.user_id)
        })
        .await;
    assert!(
        !left_users(&txns).contains(&dave.user_id),
        "dave still shares a room: {txns:#?}"
    );
    let last = txns
        .iter()
        .rev()
        .find(|t| left_users(std::slice::from_ref(t)).contains(&alice.user_id))
        .unwrap();
    let changed = &last.body["org.matrix.msc3202.device_lists"]["changed"];
    assert!(
        !changed
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == alice.user_id.as_str()),
        "a user who left is not also changed: {changed}"
    );
}

#[tokio::test]
async fn reverse_third_party_lookups_ask_every_appservice_with_a_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    let alice = register(&server, "alice").await;
    let alias = "#stub_chan:localhost";
    let (status, locations) = server
        .get(
            &format!("{C}/thirdparty/location?alias={}", enc(alias)),
            alice.token(),
        )
        .await;
    assert_eq!(status, 200, "{locations}");
    assert_eq!(
        locations,
        json!([{ "alias": alias, "protocol": "stubnet", "fields": { "channel": "general" } }])
    );
    let user = "@stub_carol:localhost";
    let (status, users) = server
        .get(
            &format!("{C}/thirdparty/user?userid={}", enc(user)),
            alice.token(),
        )
        .await;
    assert_eq!(status, 200, "{users}");
    assert_eq!(users[0]["userid"], user);
    assert_eq!(users[0]["protocol"], "stubnet");

    let resp = server
        .get(&format!("{C}/thirdparty/location"), alice.token())
        .await;
    assert_err(&resp, 400, "M_MISSING_PARAM", "a lookup without an alias");
    let resp = server
        .get(&format!("{C}/thirdparty/user?userid=nope"), alice.token())
        .await;
    assert_err(&resp, 400, "M_INVALID_PARAM", "a malformed user ID");
    let resp = server
        .get(&format!("{C}/thirdparty/user?userid={}", enc(user)), None)
        .await;
    assert_err(&resp, 401, "M_MISSING_TOKEN", "a lookup without a token");
}
