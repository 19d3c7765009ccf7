//! Interoperability with Synapse over real HTTPS federation: Myelin (TLS listener, self-signed
//! certificate) and a Synapse from `.bench/synapse-venv` fetch each other's keys, and signed
//! (`X-Matrix`) requests are accepted both ways.
//!
//! Skipped with a loud notice when the Synapse venv is missing (`bash scripts/synapse-venv`);
//! CI sets `MYELIN_REQUIRE_SYNAPSE=1`, which turns that into a failure.

use std::sync::Arc;

use myelin_federation::client::{Signer, SystemLookup};
use myelin_federation::keyring::KeySource;
use myelin_federation::keys::verify_server_keys;
use myelin_federation::{FederationClient, FederationConfig};
use myelin_testing::federation::{name, now_ms, object};
use myelin_testing::http::PW;
use myelin_testing::{enc, StatusCode, SynapseServer, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

/// A federation client configured like the Myelin under test (HTTPS, self-signed certificates
/// of 127.0.0.1 accepted, loopback allowed), to see what Myelin's own requests run into.
fn myelin_like_client() -> FederationClient {
    let config = FederationConfig {
        allow_private_destinations: true,
        trusted_self_signed: vec!["127.0.0.1".into()],
        ..FederationConfig::default()
    };
    let lookup = Arc::new(SystemLookup::new(&config));
    FederationClient::new(&config, lookup, Arc::new(myelin_federation::SystemClock))
}

/// The keys `server` publishes itself, checked for its self-signature.
fn verified_keys(server: &str, published: &Value) -> Value {
    let keys = verify_server_keys(&name(server), object(published))
        .unwrap_or_else(|e| panic!("{server}'s keys do not verify: {e}; {published}"));
    json!(keys.verify_keys)
}

/// The entry for `server` in a notary answer's `server_keys`.
fn notarised<'a>(answer: &'a Value, server: &str) -> Option<&'a Value> {
    answer["server_keys"]
        .as_array()?
        .iter()
        .find(|k| k["server_name"] == server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn myelin_and_synapse_federate_over_https() {
    let Some(synapse) = SynapseServer::start().await else {
        return;
    };
    let myelin = TestServer::start_federating_tls().await;
    let (myelin_name, synapse_name) = (myelin.server_name(), synapse.server_name());
    let myelin_tls = myelin.tls_base_url().expect("a TLS listener");
    assert_eq!(
        myelin_tls.trim_start_matches("https://"),
        myelin_name,
        "Myelin is named after its TLS address, where Synapse will reach it"
    );

    // What each server publishes itself.
    let (status, synapse_published) = synapse
        .request(Method::GET, "/_matrix/key/v2/server", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{synapse_published}");
    let synapse_keys = verified_keys(synapse_name, &synapse_published);
    let (status, myelin_published) = myelin.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, StatusCode::OK, "{myelin_published}");
    let myelin_keys = verified_keys(myelin_name, &myelin_published);

    // 1. Myelin -> Synapse over HTTPS: Myelin's notary endpoint fetches Synapse's keys.
    let (status, answer) = myelin
        .get(
            &format!("/_matrix/key/v2/query/{}", enc(synapse_name)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let Some(fetched) = notarised(&answer, synapse_name) else {
        let direct = myelin_like_client().server_keys(&name(synapse_name)).await;
        panic!(
            "Myelin could not fetch Synapse's keys over HTTPS: notary answer {answer}; \
             a direct fetch with Myelin's federation client gives {direct:?}"
        );
    };
    assert_eq!(
        verified_keys(synapse_name, fetched),
        synapse_keys,
        "Myelin returns Synapse's own keys"
    );
    assert!(
        fetched["signatures"][myelin_name].is_object(),
        "and countersigns them as a notary: {fetched}"
    );

    // 2. Synapse -> Myelin over HTTPS: Synapse's notary endpoint fetches Myelin's keys. Synapse
    //    only goes to the server for keys asked for by ID (for `{}` it answers from its cache),
    //    and insists on a `minimum_valid_until_ts` for each.
    let key_id = myelin_keys
        .as_object()
        .and_then(|keys| keys.keys().next())
        .expect("Myelin publishes a key")
        .clone();
    let (status, answer) = synapse
        .request(
            Method::POST,
            "/_matrix/key/v2/query",
            None,
            Some(&json!({
                "server_keys": { myelin_name: { key_id: { "minimum_valid_until_ts": now_ms() } } }
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let fetched = notarised(&answer, myelin_name).unwrap_or_else(|| {
        panic!("Synapse could not fetch Myelin's keys over HTTPS (see its log): {answer}")
    });
    assert_eq!(
        verified_keys(myelin_name, fetched),
        myelin_keys,
        "Synapse returns Myelin's own keys"
    );

    // 3. Synapse -> Myelin with X-Matrix: a Synapse user looks up a Myelin user's profile, which
    //    Synapse asks Myelin for with a signed /_matrix/federation/v1/query/profile.
    let alice = myelin.register("alice", PW).await;
    let (status, body) = myelin
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&alice.user_id)
            ),
            alice.token(),
            &json!({ "displayname": "Alice on Myelin" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (bob, bob_token) = synapse.register("bob", PW).await;
    let (status, profile) = synapse
        .request(
            Method::GET,
            &format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)),
            Some(&bob_token),
            None,
        )
        .await;
    assert_eq!(
        (status, &profile["displayname"]),
        (StatusCode::OK, &json!("Alice on Myelin")),
        "Synapse's federated profile query to Myelin: {profile}"
    );

    // 4. Myelin -> Synapse with X-Matrix: a request signed with Myelin's key by Myelin's
    //    federation client (Synapse verifies it with the key it fetched from Myelin over HTTPS).
    let (status, body) = synapse
        .request(
            Method::PUT,
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&bob)),
            Some(&bob_token),
            Some(&json!({ "displayname": "Bob on Synapse" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = myelin::keys::load_or_generate(myelin.data_dir(), name(myelin_name))
        .expect("Myelin's signing key")
        .key_pair;
    let origin = name(myelin_name);
    let profile = myelin_like_client()
        .request_json(
            Method::GET,
            &name(synapse_name),
            &format!("/_matrix/federation/v1/query/profile?user_id={}", enc(&bob)),
            None,
            Some(Signer {
                origin: &origin,
                key: &key,
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("Synapse refused Myelin's signed profile query: {e}"));
    assert_eq!(
        profile.get("displayname").map(|v| v.to_string()),
        Some("\"Bob on Synapse\"".to_owned()),
        "{profile:?}"
    );

    // 5. Myelin -> Synapse through Myelin's client API: Alice looks up Bob's profile, which
    //    Myelin fetches from Synapse with a signed request of its own.
    let (status, remote) = myelin
        .get(
            &format!("/_matrix/client/v3/profile/{}", enc(&bob)),
            alice.token(),
        )
        .await;
    assert_eq!(
        (status, &remote["displayname"]),
        (StatusCode::OK, &json!("Bob on Synapse")),
        "Myelin's federated profile query to Synapse: {remote}"
    );
}

/// Polls `check` (a Synapse client API read) until it holds, or panics after 30 s.
async fn synapse_until(
    synapse: &SynapseServer,
    token: &str,
    path: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = synapse.request(Method::GET, path, Some(token), None).await;
        if status == StatusCode::OK && check(&body) {
            return body;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting on Synapse for {what}: {status} {body}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Polls a Myelin client API read until `check` holds, or panics after 30 s.
async fn myelin_until(
    myelin: &TestServer,
    token: &str,
    path: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = myelin.get(path, Some(token)).await;
        if status == StatusCode::OK && check(&body) {
            return body;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting on Myelin for {what}: {status} {body}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

fn has_body(messages: &Value, text: &str) -> bool {
    messages["chunk"]
        .as_array()
        .is_some_and(|c| c.iter().any(|e| e["content"]["body"] == text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_join_rooms_across_myelin_and_synapse() {
    let Some(synapse) = SynapseServer::start().await else {
        return;
    };
    let myelin = TestServer::start_federating_tls().await;
    let alice = myelin.register("alice", PW).await;
    let alice_token = alice.token().expect("token");
    let (sam, sam_token) = synapse.register("sam", PW).await;

    // A Synapse user joins a Myelin room by alias; messages cross both ways.
    let room = myelin
        .create_room(
            alice_token,
            &json!({ "preset": "public_chat", "room_alias_name": "interop", "name": "Interop" }),
        )
        .await;
    myelin
        .send_message(alice_token, &room, "m0", "before sam")
        .await;
    let alias = format!("#interop:{}", myelin.server_name());
    let (status, body) = synapse
        .request(
            Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(&alias)),
            Some(&sam_token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "Synapse user joins the Myelin room: {body}"
    );
    assert_eq!(body["room_id"], room.as_str());
    let members = format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room));
    myelin_until(
        &myelin,
        alice_token,
        &members,
        "sam's join on Myelin",
        |b| b["joined"][&sam].is_object(),
    )
    .await;
    myelin
        .send_message(alice_token, &room, "m1", "hello sam")
        .await;
    let messages = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
        enc(&room)
    );
    synapse_until(
        &synapse,
        &sam_token,
        &messages,
        "alice's message on Synapse",
        |b| has_body(b, "hello sam"),
    )
    .await;
    let (status, body) = synapse
        .request(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/s1",
                enc(&room)
            ),
            Some(&sam_token),
            Some(&json!({ "msgtype": "m.text", "body": "hello alice" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    myelin_until(
        &myelin,
        alice_token,
        &messages,
        "sam's message on Myelin",
        |b| has_body(b, "hello alice"),
    )
    .await;

    // A Myelin user joins a Synapse room by room ID through Synapse; messages cross.
    let (status, body) = synapse
        .request(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&sam_token),
            Some(&json!({ "preset": "public_chat", "name": "On Synapse" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let synapse_room = body["room_id"].as_str().expect("room_id").to_owned();
    let (status, body) = synapse
        .request(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/s2",
                enc(&synapse_room)
            ),
            Some(&sam_token),
            Some(&json!({ "msgtype": "m.text", "body": "made on synapse" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = myelin
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                enc(&synapse_room),
                enc(synapse.server_name())
            ),
            Some(alice_token),
            &json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "Myelin user joins the Synapse room: {body}"
    );
    let (status, name) = myelin
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.name/",
                enc(&synapse_room)
            ),
            Some(alice_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "On Synapse");
    let synapse_members = format!(
        "/_matrix/client/v3/rooms/{}/joined_members",
        enc(&synapse_room)
    );
    synapse_until(
        &synapse,
        &sam_token,
        &synapse_members,
        "alice's join on Synapse",
        |b| b["joined"][&alice.user_id].is_object(),
    )
    .await;
    myelin
        .send_message(alice_token, &synapse_room, "m2", "from myelin")
        .await;
    let synapse_messages = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
        enc(&synapse_room)
    );
    synapse_until(
        &synapse,
        &sam_token,
        &synapse_messages,
        "alice's message on Synapse",
        |b| has_body(b, "from myelin"),
    )
    .await;
    let (status, body) = synapse
        .request(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/s3",
                enc(&synapse_room)
            ),
            Some(&sam_token),
            Some(&json!({ "msgtype": "m.text", "body": "back from synapse" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    myelin_until(
        &myelin,
        alice_token,
        &synapse_messages,
        "sam's reply on Myelin",
        |b| has_body(b, "back from synapse"),
    )
    .await;
}
