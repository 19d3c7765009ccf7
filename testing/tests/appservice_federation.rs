//! Application services across two Myelin servers on loopback: A runs the stub appservice, B
//! is a plain homeserver. A puppet's messages reach B's users as any local user's do; a
//! to-device message from B's user to a puppet's device reaches the appservice (MSC2409); B's
//! alias and profile queries over federation make A ask the appservice first, which creates
//! the portal room or the puppet on demand.

use myelin_testing::appservice::{as_user, register_puppet, StubAppservice, Txn, AS_TOKEN};
use myelin_testing::http::{assert_ok, register, sync_until, C};
use myelin_testing::{enc, message_bodies, timeline, TestServer};
use serde_json::{json, Value};

/// Server A, federating, with the stub registered for its server name.
async fn start_with_stub(stub: &StubAppservice, dir: &std::path::Path) -> TestServer {
    let server = TestServer::start_federating_with(|c| {
        let registration = stub.write_registration(dir, &c.server_name);
        c.appservices.registration_files = vec![registration];
        c.egress.allow = vec!["127.0.0.1".into()];
    })
    .await;
    stub.set_homeserver(server.base_url());
    server
}

/// Every to-device message of every transaction received.
fn to_device(txns: &[Txn]) -> Vec<Value> {
    txns.iter()
        .flat_map(|t| {
            t.body["de.sorunome.msc2409.to_device"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puppet_messages_federate_and_remote_to_device_reaches_the_appservice() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let a = start_with_stub(&stub, dir.path()).await;
    let b = TestServer::start_federating().await;
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let room = a
        .create_room(
            &alice.access_token,
            &json!({ "preset": "public_chat", "room_alias_name": "lobby" }),
        )
        .await;
    let alias = format!("#lobby:{}", a.loopback_server_name());
    let (status, joined) = b
        .post(
            &format!("{C}/join/{}", enc(&alias)),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "bob's remote join: {joined}");

    let puppet = format!("@stub_bob:{}", a.loopback_server_name());
    register_puppet(&a, "stub_bob").await;
    let join = as_user(&format!("{C}/join/{}", enc(&room)), &puppet);
    assert_ok(
        &a.post(&join, Some(AS_TOKEN), &json!({})).await,
        "puppet join",
    );
    let send = as_user(
        &format!("{C}/rooms/{}/send/m.room.message/p1?ts=1234567", enc(&room)),
        &puppet,
    );
    let body = json!({ "msgtype": "m.text", "body": "from the bridge" });
    assert_ok(&a.put(&send, Some(AS_TOKEN), &body).await, "puppet send");
    let sync = sync_until(&b, &bob, "the puppet's message", |sync| {
        message_bodies(&timeline(sync, &room)).contains(&"from the bridge".to_owned())
    })
    .await;
    let event = timeline(&sync, &room)
        .into_iter()
        .find(|e| e["content"]["body"] == "from the bridge")
        .unwrap();
    assert_eq!(event["sender"], puppet.as_str());
    assert_eq!(
        event["origin_server_ts"], 1234567,
        "massaged timestamp kept"
    );

    // Bob (on B) writes to the puppet's device: over federation, then to the appservice.
    let login = json!({ "type": "m.login.application_service", "device_id": "PUPDEV",
        "identifier": { "type": "m.id.user", "user": "stub_bob" } });
    assert_ok(
        &a.post(&format!("{C}/login"), Some(AS_TOKEN), &login).await,
        "puppet login",
    );
    let messages = json!({ "messages": { &puppet: { "PUPDEV": { "hello": "device" } } } });
    assert_ok(
        &b.put(
            &format!("{C}/sendToDevice/m.test/t1"),
            bob.token(),
            &messages,
        )
        .await,
        "remote to-device",
    );
    let txns = stub
        .wait_for("the remote to-device message", |t| {
            to_device(t)
                .iter()
                .any(|m| m["sender"] == bob.user_id.as_str())
        })
        .await;
    let message = to_device(&txns)
        .into_iter()
        .find(|m| m["sender"] == bob.user_id.as_str())
        .unwrap();
    assert_eq!(message["type"], "m.test");
    assert_eq!(message["to_user_id"], puppet.as_str());
    assert_eq!(message["to_device_id"], "PUPDEV");
    assert_eq!(message["content"]["hello"], "device");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_alias_and_profile_queries_ask_the_appservice_first() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let a = start_with_stub(&stub, dir.path()).await;
    let b = TestServer::start_federating().await;
    let bob = register(&b, "bob").await;
    let name = a.loopback_server_name();

    // No such alias yet on A: A asks the appservice, which creates the portal room.
    let portal = format!("#stub_portal:{name}");
    let (status, answer) = b
        .get(&format!("{C}/directory/room/{}", enc(&portal)), bob.token())
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["room_id"].as_str().unwrap().starts_with('!'));
    assert!(
        answer["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str() == Some(name)),
        "{answer}"
    );
    let (_, on_a) = a
        .get(&format!("{C}/directory/room/{}", enc(&portal)), None)
        .await;
    assert_eq!(on_a["room_id"], answer["room_id"]);
    // An alias outside every namespace is still unknown.
    let (status, _) = b
        .get(
            &format!("{C}/directory/room/{}", enc(&format!("#nobody:{name}"))),
            bob.token(),
        )
        .await;
    assert_eq!(status, 404);

    // No such user yet on A: A asks the appservice, which registers the puppet.
    let carol = format!("@stub_carol:{name}");
    let (status, profile) = b
        .get(&format!("{C}/profile/{}", enc(&carol)), bob.token())
        .await;
    assert_eq!(status, 200, "{profile}");
    let (status, _) = a.get(&format!("{C}/profile/{}", enc(&carol)), None).await;
    assert_eq!(status, 200, "the puppet exists on A now");
}
