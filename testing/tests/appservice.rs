//! Application services over raw HTTP, against a stub appservice on loopback
//! (`myelin_testing::appservice`): registration-file errors, `as_token` authentication and
//! masquerading, exclusive namespaces, timestamp massaging, the ping, third-party lookups,
//! puppets and portals created on queries, transactions retried under the same txnId while the
//! appservice is down and kept across a restart, ephemeral events, MSC3202 key counts, and the
//! egress filter refusing an appservice on a private address.

use myelin_testing::appservice::{
    all_events, as_user, register_puppet, StubAppservice, Txn, AS_ID, AS_TOKEN,
};
use myelin_testing::http::{assert_err, assert_ok, register, room_path, C};
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

fn events_with_body<'a>(txns: &'a [Txn], body: &str) -> Vec<&'a Txn> {
    txns.iter()
        .filter(|t| {
            t.body["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["content"]["body"] == body))
        })
        .collect()
}

#[tokio::test]
async fn registration_file_errors_are_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "id: x\nurl: null\nas_token: a\nhs_token: b\nsender_localpart: bot\n\
         namespaces:\n  users:\n    - regex: '@x_(:localhost'\n      exclusive: true\n",
    )
    .unwrap();
    let mut config = myelin::Config::for_data_dir(dir.path().join("data"));
    config.appservices.registration_files = vec![bad.clone(), dir.path().join("missing.yaml")];
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("bad.yaml") && err.contains("regex"), "{err}");
    assert!(
        err.contains("missing.yaml") && err.contains("cannot read"),
        "{err}"
    );
    assert!(myelin::Myelin::open(config).await.is_err());
}

#[tokio::test]
async fn as_token_authentication_and_masquerading() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    let (status, who) = server
        .get(&format!("{C}/account/whoami"), Some(AS_TOKEN))
        .await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["user_id"], "@stubbot:localhost");
    assert!(
        who.get("device_id").is_none(),
        "no device without MSC3202: {who}"
    );

    let resp = server
        .get(&format!("{C}/account/whoami"), Some("not-a-token"))
        .await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "unknown token");
    let hs = server
        .get(&format!("{C}/account/whoami"), Some("stub-hs-token"))
        .await;
    assert_err(
        &hs,
        401,
        "M_UNKNOWN_TOKEN",
        "the hs_token is no client token",
    );
    let alice = register(&server, "alice").await;
    let outside = server
        .get(
            &as_user(&format!("{C}/account/whoami"), &alice.user_id),
            Some(AS_TOKEN),
        )
        .await;
    assert_err(
        &outside,
        403,
        "M_FORBIDDEN",
        "masquerading outside the namespace",
    );
    let unregistered = as_user(&format!("{C}/account/whoami"), "@stub_nobody:localhost");
    let resp = server.get(&unregistered, Some(AS_TOKEN)).await;
    assert_err(
        &resp,
        403,
        "M_FORBIDDEN",
        "masquerading as an unregistered puppet",
    );

    register_puppet(&server, "stub_puppet").await;
    let puppet = as_user(&format!("{C}/account/whoami"), "@stub_puppet:localhost");
    let (_, who) = server.get(&puppet, Some(AS_TOKEN)).await;
    assert_eq!(who["user_id"], "@stub_puppet:localhost");
    // A user's own access token is not an appservice's: user_id is ignored.
    let (_, who) = server
        .get(
            &as_user(&format!("{C}/account/whoami"), "@stub_puppet:localhost"),
            alice.token(),
        )
        .await;
    assert_eq!(who["user_id"], alice.user_id);
}

#[tokio::test]
async fn exclusive_namespaces_are_refused_to_everyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    let (_, flows) = server.get(&format!("{C}/login"), None).await;
    assert!(flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["type"] == "m.login.application_service"));

    let resp = server
        .get(&format!("{C}/register/available?username=stub_x"), None)
        .await;
    assert_err(
        &resp,
        400,
        "M_EXCLUSIVE",
        "an exclusive user ID is not available",
    );
    let body = json!({ "username": "stub_x", "password": "long enough password", "auth": { "type": "m.login.dummy" } });
    let resp = server.post(&format!("{C}/register"), None, &body).await;
    assert_err(
        &resp,
        400,
        "M_EXCLUSIVE",
        "registering an exclusive user ID",
    );
    let body = json!({ "type": "m.login.application_service", "username": "alice2" });
    let resp = server
        .post(&format!("{C}/register"), Some(AS_TOKEN), &body)
        .await;
    assert_err(
        &resp,
        400,
        "M_EXCLUSIVE",
        "an appservice registering outside its namespace",
    );
    let resp = server
        .post(
            &format!("{C}/register"),
            None,
            &json!({ "type": "m.login.application_service", "username": "stub_y" }),
        )
        .await;
    assert_err(
        &resp,
        401,
        "M_MISSING_TOKEN",
        "appservice registration without a token",
    );

    // inhibit_login gives no token; a login of the puppet then does.
    let body = json!({ "type": "m.login.application_service", "username": "stub_y", "inhibit_login": true });
    let (status, reg) = server
        .post(&format!("{C}/register"), Some(AS_TOKEN), &body)
        .await;
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["user_id"], "@stub_y:localhost");
    assert!(reg.get("access_token").is_none());
    let login = json!({ "type": "m.login.application_service", "identifier": { "type": "m.id.user", "user": "stub_y" } });
    let (status, session) = server
        .post(&format!("{C}/login"), Some(AS_TOKEN), &login)
        .await;
    assert_eq!(status, 200, "{session}");
    assert!(session["access_token"].is_string());

    let alice = register(&server, "alice").await;
    let room = server.create_room(&alice.access_token, &json!({})).await;
    let resp = server
        .put(
            &format!("{C}/directory/room/{}", enc("#stub_room:localhost")),
            alice.token(),
            &json!({ "room_id": room }),
        )
        .await;
    assert_err(&resp, 400, "M_EXCLUSIVE", "an exclusive alias");
    let resp = server
        .post(
            &format!("{C}/createRoom"),
            alice.token(),
            &json!({ "room_alias_name": "stub_other" }),
        )
        .await;
    assert_err(
        &resp,
        400,
        "M_EXCLUSIVE",
        "createRoom with an exclusive alias",
    );
    let resp = server
        .put(
            &format!("{C}/directory/room/{}", enc("#lobby:localhost")),
            alice.token(),
            &json!({ "room_id": room }),
        )
        .await;
    assert_ok(&resp, "an alias outside every namespace");
}

#[tokio::test]
async fn puppets_send_with_massaged_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    let alice = register(&server, "alice").await;
    let room = server
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    register_puppet(&server, "stub_bob").await;
    let puppet = "@stub_bob:localhost";
    let resp = server
        .post(
            &as_user(&format!("{C}/join/{}", enc(&room)), puppet),
            Some(AS_TOKEN),
            &json!({}),
        )
        .await;
    assert_ok(&resp, "puppet join");
    let send = as_user(
        &room_path(&room, "send/m.room.message/t1?ts=1234567"),
        puppet,
    );
    let (status, sent) = server
        .put(
            &send,
            Some(AS_TOKEN),
            &json!({ "msgtype": "m.text", "body": "from the network" }),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let event_id = sent["event_id"].as_str().unwrap();
    let (_, event) = server
        .get(
            &room_path(&room, &format!("event/{}", enc(event_id))),
            alice.token(),
        )
        .await;
    assert_eq!(event["origin_server_ts"], 1234567);
    assert_eq!(event["sender"], puppet);
    let state = as_user(&room_path(&room, "state/m.room.topic/?ts=7654321"), puppet);
    let resp = server
        .put(&state, Some(AS_TOKEN), &json!({ "topic": "bridged" }))
        .await;
    // The puppet lacks the power level for the topic: refused, not a crash.
    assert_err(&resp, 403, "M_FORBIDDEN", "topic without power");
    // Other users' ?ts= is ignored.
    let path = room_path(&room, "send/m.room.message/a1?ts=1");
    let (_, mine) = server
        .put(
            &path,
            alice.token(),
            &json!({ "msgtype": "m.text", "body": "me" }),
        )
        .await;
    let (_, event) = server
        .get(
            &room_path(
                &room,
                &format!("event/{}", enc(mine["event_id"].as_str().unwrap())),
            ),
            alice.token(),
        )
        .await;
    assert_ne!(event["origin_server_ts"], 1);
}

#[tokio::test]
async fn ping_thirdparty_and_queries_reach_the_appservice() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(versions["unstable_features"]["fi.mau.msc2659.stable"], true);
    let ping = format!("/_matrix/client/v1/appservice/{AS_ID}/ping");
    let (status, answer) = server
        .post(
            &ping,
            Some(AS_TOKEN),
            &json!({ "transaction_id": "ping-1" }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["duration_ms"].is_u64());
    assert_eq!(stub.pings(), vec![json!({ "transaction_id": "ping-1" })]);
    let alice = register(&server, "alice").await;
    let resp = server.post(&ping, alice.token(), &json!({})).await;
    assert_err(&resp, 403, "M_FORBIDDEN", "a user pinging an appservice");
    let resp = server
        .post(
            "/_matrix/client/v1/appservice/other/ping",
            Some(AS_TOKEN),
            &json!({}),
        )
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "pinging another appservice");

    let (status, protocols) = server
        .get(&format!("{C}/thirdparty/protocols"), alice.token())
        .await;
    assert_eq!(status, 200);
    assert_eq!(protocols["stubnet"]["location_fields"], json!(["channel"]));
    let (_, locations) = server
        .get(
            &format!("{C}/thirdparty/location/stubnet?channel=general"),
            alice.token(),
        )
        .await;
    assert_eq!(locations[0]["alias"], "#stub_chan:localhost");
    let resp = server
        .get(&format!("{C}/thirdparty/protocol/nope"), alice.token())
        .await;
    assert_err(&resp, 404, "M_NOT_FOUND", "an unknown protocol");

    // An alias of the namespace nobody created: the appservice makes the portal on the query.
    let (status, portal) = server
        .get(
            &format!("{C}/directory/room/{}", enc("#stub_portal:localhost")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{portal}");
    assert!(portal["room_id"].as_str().unwrap().starts_with('!'));
    let resp = server
        .get(
            &format!("{C}/directory/room/{}", enc("#nobody:localhost")),
            None,
        )
        .await;
    assert_err(&resp, 404, "M_NOT_FOUND", "an alias nobody claims");
    // A puppet's profile: the appservice registers it on the query.
    let (status, profile) = server
        .get(
            &format!("{C}/profile/{}", enc("@stub_carol:localhost")),
            alice.token(),
        )
        .await;
    assert_eq!(status, 200, "{profile}");
    let room_id = portal["room_id"].as_str().unwrap();
    let resp = server
        .put(
            &format!("{C}/directory/list/appservice/stubnet/{}", enc(room_id)),
            Some(AS_TOKEN),
            &json!({ "visibility": "public" }),
        )
        .await;
    assert_ok(&resp, "publishing a portal");
    // In the network's directory, not the main one (`appservice_directory.rs` has the rest).
    let listed = |answer: &Value| {
        answer["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["room_id"] == room_id)
    };
    let (_, public) = server.get(&format!("{C}/publicRooms"), None).await;
    assert!(!listed(&public), "{public}");
    let (_, all) = server
        .get(&format!("{C}/publicRooms?include_all_networks=true"), None)
        .await;
    assert!(listed(&all), "{all}");
}

#[tokio::test]
async fn transactions_are_retried_under_the_same_txn_id_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    let alice = register(&server, "alice").await;
    let room = server
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    register_puppet(&server, "stub_bob").await;
    let join = as_user(&format!("{C}/join/{}", enc(&room)), "@stub_bob:localhost");
    assert_ok(
        &server.post(&join, Some(AS_TOKEN), &json!({})).await,
        "puppet join",
    );
    stub.wait_for("the puppet's join", |t| {
        all_events(t).iter().any(|e| e["type"] == "m.room.member")
    })
    .await;

    stub.fail_next(2);
    server
        .send_message(&alice.access_token, &room, "m1", "while down")
        .await;
    let txns = stub
        .wait_for("three tries", |t| {
            events_with_body(t, "while down").len() >= 3
        })
        .await;
    let tries = events_with_body(&txns, "while down");
    assert!(
        tries.iter().all(|t| t.txn_id == tries[0].txn_id),
        "{tries:#?}"
    );
    assert!(tries
        .iter()
        .all(|t| t.authorized && t.body == tries[0].body));

    // Down across a restart: the stored transaction comes back under its txnId.
    stub.fail_next(usize::MAX);
    server
        .send_message(&alice.access_token, &room, "m2", "before restart")
        .await;
    let txns = stub
        .wait_for("a try before the restart", |t| {
            !events_with_body(t, "before restart").is_empty()
        })
        .await;
    let first_id = events_with_body(&txns, "before restart")[0].txn_id.clone();
    let dir_back = server.stop().await;
    stub.fail_next(0);
    let registration = dir.path().join("stub-registration.yaml");
    let server = TestServer::restart_with(dir_back, |c| {
        c.appservices.registration_files = vec![registration];
        c.egress.allow = vec!["127.0.0.1".into()];
    })
    .await;
    server
        .send_message(&alice.access_token, &room, "m3", "after restart")
        .await;
    let txns = stub
        .wait_for("the message after the restart", |t| {
            !events_with_body(t, "after restart").is_empty()
        })
        .await;
    let before: Vec<_> = events_with_body(&txns, "before restart");
    assert!(
        before.iter().all(|t| t.txn_id == first_id),
        "same txnId after the restart"
    );
    // Each event went out under one txnId only, and txnIds only grow.
    let mut seen = std::collections::HashMap::new();
    for t in &txns {
        for e in t.body["events"].as_array().unwrap() {
            let id = e["event_id"].as_str().unwrap().to_owned();
            let txn = seen.entry(id).or_insert_with(|| t.txn_id.clone());
            assert_eq!(*txn, t.txn_id, "an event under two txnIds");
        }
    }
    let ids: Vec<u64> = txns.iter().map(|t| t.txn_id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "{ids:?}");
}

#[tokio::test]
async fn ephemeral_events_and_msc3202_key_counts_reach_the_appservice() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    let alice = register(&server, "alice").await;
    let room = server
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    register_puppet(&server, "stub_bob").await;
    let puppet = "@stub_bob:localhost";
    let join = as_user(&format!("{C}/join/{}", enc(&room)), puppet);
    assert_ok(
        &server.post(&join, Some(AS_TOKEN), &json!({})).await,
        "puppet join",
    );

    let typing = room_path(&room, &format!("typing/{}", enc(&alice.user_id)));
    let resp = server
        .put(
            &typing,
            alice.token(),
            &json!({ "typing": true, "timeout": 10000 }),
        )
        .await;
    assert_ok(&resp, "typing");
    let event_id = server
        .send_message(&alice.access_token, &room, "r1", "read me")
        .await;
    let receipt = room_path(&room, &format!("receipt/m.read/{}", enc(&event_id)));
    assert_ok(
        &server.post(&receipt, alice.token(), &json!({})).await,
        "receipt",
    );
    let ephemeral = |t: &[Txn]| -> Vec<Value> {
        t.iter()
            .flat_map(|t| {
                t.body["de.sorunome.msc2409.ephemeral"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    let txns = stub
        .wait_for("typing and a receipt", |t| {
            let e = ephemeral(t);
            e.iter().any(|e| e["type"] == "m.typing") && e.iter().any(|e| e["type"] == "m.receipt")
        })
        .await;
    let events = ephemeral(&txns);
    let typing = events.iter().find(|e| e["type"] == "m.typing").unwrap();
    assert_eq!(typing["room_id"], room.as_str());
    assert_eq!(typing["content"]["user_ids"], json!([alice.user_id]));

    // MSC3202: the puppet's device (logged in by the appservice) uploads keys as masqueraded.
    let login = json!({ "type": "m.login.application_service", "device_id": "PUPDEV",
        "identifier": { "type": "m.id.user", "user": "stub_bob" } });
    assert_ok(
        &server
            .post(&format!("{C}/login"), Some(AS_TOKEN), &login)
            .await,
        "puppet login",
    );
    let upload = format!(
        "{}&device_id=PUPDEV",
        as_user(&format!("{C}/keys/upload"), puppet)
    );
    let keys = json!({ "one_time_keys": {
        "signed_curve25519:AAAAAQ": { "key": "k1", "signatures": {} },
        "signed_curve25519:AAAAAg": { "key": "k2", "signatures": {} },
    } });
    let (status, counts) = server.post(&upload, Some(AS_TOKEN), &keys).await;
    assert_eq!(status, 200, "{counts}");
    let resp = server
        .post(
            &format!(
                "{}&device_id=NOPE",
                as_user(&format!("{C}/keys/upload"), puppet)
            ),
            Some(AS_TOKEN),
            &keys,
        )
        .await;
    assert_err(
        &resp,
        403,
        "M_FORBIDDEN",
        "a device the puppet does not have",
    );
    let field = "org.matrix.msc3202.device_one_time_keys_count";
    let txns = stub
        .wait_for("key counts", |t| {
            t.iter()
                .any(|t| t.body[field][puppet]["PUPDEV"].is_object())
        })
        .await;
    let counted = txns
        .iter()
        .rev()
        .find(|t| t.body[field][puppet]["PUPDEV"].is_object())
        .unwrap();
    assert_eq!(
        counted.body[field][puppet]["PUPDEV"]["signed_curve25519"],
        2
    );
}

#[tokio::test]
async fn an_appservice_on_a_private_address_is_refused_by_the_egress_filter() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let registration = stub.write_registration(dir.path(), "localhost");
    // No [egress] allow: 127.0.0.1 is a private address.
    let server = TestServer::start_with(|c| {
        c.appservices.registration_files = vec![registration];
    })
    .await;
    let ping = format!("/_matrix/client/v1/appservice/{AS_ID}/ping");
    let resp = server.post(&ping, Some(AS_TOKEN), &json!({})).await;
    assert_err(
        &resp,
        502,
        "M_CONNECTION_FAILED",
        "ping to a refused address",
    );
    assert!(stub.pings().is_empty());
}

#[tokio::test]
async fn msc4190_appservices_manage_their_users_devices() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    register_puppet(&server, "stub_dev").await;
    let puppet = "@stub_dev:localhost";
    let device = as_user(&format!("{C}/devices/BRIDGEDEV"), puppet);
    let resp = server
        .put(
            &device,
            Some(AS_TOKEN),
            &json!({ "display_name": "Bridge" }),
        )
        .await;
    assert_ok(&resp, "an appservice creating its user's device");
    let whoami = format!(
        "{}&device_id=BRIDGEDEV",
        as_user(&format!("{C}/account/whoami"), puppet)
    );
    let (_, who) = server.get(&whoami, Some(AS_TOKEN)).await;
    assert_eq!(who["device_id"], "BRIDGEDEV");
    let (_, listed) = server
        .get(&as_user(&format!("{C}/devices"), puppet), Some(AS_TOKEN))
        .await;
    // The registration made a device of its own too; find ours by its ID.
    let bridge = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == "BRIDGEDEV")
        .cloned()
        .unwrap_or_default();
    assert_eq!(bridge["display_name"], "Bridge", "devices: {listed}");
    // Deleted without user-interactive auth; masquerading as it is then refused.
    let resp = server.delete(&device, Some(AS_TOKEN), &json!({})).await;
    assert_ok(&resp, "an appservice deleting its user's device");
    let resp = server.get(&whoami, Some(AS_TOKEN)).await;
    assert_err(&resp, 403, "M_FORBIDDEN", "a deleted device");
    // A user's own token still only renames existing devices.
    let alice = register(&server, "alice").await;
    let resp = server
        .put(
            &format!("{C}/devices/NEWONE"),
            alice.token(),
            &json!({ "display_name": "x" }),
        )
        .await;
    assert_err(
        &resp,
        404,
        "M_NOT_FOUND",
        "a user creating a device through PUT",
    );
}
