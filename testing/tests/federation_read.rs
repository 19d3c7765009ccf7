//! The read side of federation between two servers on loopback: server B reads server A's rooms
//! (`/event`, `/state`, `/state_ids`, `/event_auth`, `/backfill`, `/get_missing_events`,
//! `/query/directory`) with `X-Matrix` signed requests, and is refused by history visibility,
//! server ACLs and missing signatures. Also `/.well-known/matrix/server`.

use std::collections::BTreeSet;
use std::sync::Arc;

use myelin_federation::auth::{sign_request, RequestToSign};
use myelin_federation::client::Signer;
use myelin_federation::ruma::signatures::Ed25519KeyPair;
use myelin_federation::ruma::{CanonicalJsonValue, OwnedServerName};
use myelin_federation::{FederationClient, FederationConfig};
use myelin_testing::federation::name;
use myelin_testing::hostile::server_key;
use myelin_testing::{enc, Account, StatusCode, TestServer};
use serde_json::{json, Value};

/// Server B as seen by server A: signs its requests with B's key.
struct Remote {
    a_url: String,
    a_name: OwnedServerName,
    b_name: OwnedServerName,
    b_key: Ed25519KeyPair,
    http: reqwest::Client,
}

impl Remote {
    async fn new(a: &TestServer, b: &TestServer) -> Remote {
        // B has answered, so its key file exists and is only read here.
        let (status, _) = b.get("/_matrix/federation/v1/version", None).await;
        assert_eq!(status, StatusCode::OK);
        Remote {
            a_url: a.base_url().to_owned(),
            a_name: name(a.loopback_server_name()),
            b_name: name(b.loopback_server_name()),
            b_key: server_key(b),
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request from B to A, signed unless `signed` is false.
    async fn send(
        &self,
        method: &str,
        uri: &str,
        body: Option<&Value>,
        signed: bool,
    ) -> (StatusCode, Value) {
        let method_ = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method_, format!("{}{uri}", self.a_url));
        if signed {
            let content: Option<CanonicalJsonValue> =
                body.map(|b| CanonicalJsonValue::try_from(b.clone()).expect("canonical body"));
            let header = sign_request(
                &RequestToSign {
                    method,
                    uri,
                    origin: &self.b_name,
                    destination: &self.a_name,
                    content: content.as_ref(),
                },
                &self.b_key,
            )
            .expect("signs");
            request = request.header("authorization", header.to_string());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.send("GET", uri, None, true).await
    }

    /// A signed GET that must succeed.
    async fn get_ok(&self, uri: &str) -> Value {
        let (status, body) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "GET {uri}: {body}");
        body
    }

    async fn missing_events(&self, room_id: &str, body: &Value) -> (StatusCode, Value) {
        let uri = format!("/_matrix/federation/v1/get_missing_events/{}", enc(room_id));
        self.send("POST", &uri, Some(body), true).await
    }
}

fn assert_refused(
    what: &str,
    (status, body): (StatusCode, Value),
    expected: StatusCode,
    errcode: &str,
) {
    assert_eq!(status, expected, "{what}: {body}");
    assert_eq!(body["errcode"], errcode, "{what}: {body}");
}

async fn put_state(
    server: &TestServer,
    account: &Account,
    room_id: &str,
    kind: &str,
    content: &Value,
) -> String {
    let path = format!("/_matrix/client/v3/rooms/{}/state/{kind}/", enc(room_id));
    let (status, body) = server.put(&path, account.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{kind}: {body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

/// The room's current state as A's client API reports it: `(type, event_id)` pairs.
async fn client_state(
    server: &TestServer,
    account: &Account,
    room_id: &str,
) -> Vec<(String, String)> {
    let path = format!("/_matrix/client/v3/rooms/{}/state", enc(room_id));
    let (status, body) = server.get(&path, account.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .expect("state array")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().expect("type").to_owned(),
                e["event_id"].as_str().expect("event_id").to_owned(),
            )
        })
        .collect()
}

fn ids(values: &Value) -> BTreeSet<String> {
    values
        .as_array()
        .expect("array of IDs")
        .iter()
        .map(|v| v.as_str().expect("ID").to_owned())
        .collect()
}

/// `type` of each PDU, and `content.body` for messages: a readable fingerprint of a PDU list.
fn summary(pdus: &Value) -> Vec<String> {
    pdus.as_array()
        .expect("array of PDUs")
        .iter()
        .map(|p| match p["content"]["body"].as_str() {
            Some(body) => body.to_owned(),
            None => p["type"].as_str().expect("type").to_owned(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_reads_a_world_readable_room() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating_with(|c| {
        c.federation.well_known_server = Some("matrix.example.org:443".into())
    })
    .await;
    let remote = Remote::new(&a, &b).await;
    let a_name = remote.a_name.as_str().to_owned();

    let alice = a.register("alice", "hunter2-hunter2").await;
    let token = alice.token().expect("token");
    let room = a
        .create_room(
            token,
            &json!({
                "preset": "public_chat",
                "room_alias_name": "readable",
                "name": "Readable",
                "initial_state": [{
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": { "history_visibility": "world_readable" },
                }],
            }),
        )
        .await;
    let mut messages = Vec::new();
    for i in 0..5 {
        messages.push(
            a.send_message(token, &room, &format!("t{i}"), &format!("message {i}"))
                .await,
        );
    }
    let topic_id = put_state(
        &a,
        &alice,
        &room,
        "m.room.topic",
        &json!({ "topic": "federation" }),
    )
    .await;
    let last = a.send_message(token, &room, "t5", "message 5").await;
    let state = client_state(&a, &alice, &room).await;
    let create_id = state
        .iter()
        .find(|(kind, _)| kind == "m.room.create")
        .expect("create event")
        .1
        .clone();
    let state_ids: BTreeSet<String> = state.iter().map(|(_, id)| id.clone()).collect();

    // GET /event: as stored (no event_id in a v10 PDU), inside a transaction-shaped answer.
    let event = remote
        .get_ok(&format!(
            "/_matrix/federation/v1/event/{}",
            enc(&messages[0])
        ))
        .await;
    assert_eq!(event["origin"], a_name.as_str(), "{event}");
    assert!(event["origin_server_ts"].as_u64().is_some(), "{event}");
    let pdus = event["pdus"].as_array().expect("pdus");
    assert_eq!(pdus.len(), 1, "{event}");
    assert_eq!(pdus[0]["content"]["body"], "message 0");
    assert_eq!(pdus[0]["room_id"], room.as_str());
    assert_eq!(pdus[0]["type"], "m.room.message");
    assert!(
        pdus[0].get("event_id").is_none(),
        "v3+ PDUs carry no event_id: {}",
        pdus[0]
    );
    assert!(
        pdus[0]["signatures"][a_name.as_str()].is_object(),
        "signed by A: {}",
        pdus[0]
    );

    // The same through the production federation client (resolution, signing).
    let config = FederationConfig {
        allow_private_destinations: true,
        plain_http_servers: vec!["127.0.0.1".into()],
        ..FederationConfig::default()
    };
    let client = FederationClient::new(
        &config,
        Arc::new(myelin_federation::client::SystemLookup::new(&config)),
        Arc::new(myelin_federation::SystemClock),
    );
    let via_client = client
        .request_json(
            reqwest::Method::GET,
            &remote.a_name,
            &format!("/_matrix/federation/v1/event/{}", enc(&messages[1])),
            None,
            Some(Signer {
                origin: &remote.b_name,
                key: &remote.b_key,
            }),
        )
        .await
        .expect("A serves B's signed request");
    let via_client = serde_json::to_value(&via_client).expect("json");
    assert_eq!(via_client["pdus"][0]["content"]["body"], "message 1");

    // GET /state_ids at the last message: the state before it is the current state.
    let at_last = remote
        .get_ok(&format!(
            "/_matrix/federation/v1/state_ids/{}?event_id={}",
            enc(&room),
            enc(&last)
        ))
        .await;
    assert_eq!(ids(&at_last["pdu_ids"]), state_ids, "{at_last}");
    let chain = ids(&at_last["auth_chain_ids"]);
    assert!(chain.contains(&create_id), "{at_last}");
    assert!(
        !chain.contains(&last) && !chain.contains(&messages[0]),
        "messages are never auth events: {at_last}"
    );

    // At the topic event: the state before it, which lacks the topic.
    let at_topic = remote
        .get_ok(&format!(
            "/_matrix/federation/v1/state_ids/{}?event_id={}",
            enc(&room),
            enc(&topic_id)
        ))
        .await;
    let mut before_topic = state_ids.clone();
    before_topic.remove(&topic_id);
    assert_eq!(ids(&at_topic["pdu_ids"]), before_topic, "{at_topic}");

    // GET /state: the same as full PDUs.
    let full = remote
        .get_ok(&format!(
            "/_matrix/federation/v1/state/{}?event_id={}",
            enc(&room),
            enc(&topic_id)
        ))
        .await;
    let kinds: BTreeSet<String> = summary(&full["pdus"]).into_iter().collect();
    let expected_kinds: BTreeSet<String> = state
        .iter()
        .map(|(kind, _)| kind.clone())
        .filter(|kind| kind != "m.room.topic")
        .collect();
    assert_eq!(kinds, expected_kinds, "{full}");
    assert_eq!(
        full["pdus"].as_array().map(Vec::len),
        Some(before_topic.len()),
        "{full}"
    );
    let chain_kinds = summary(&full["auth_chain"]);
    assert_eq!(
        chain_kinds.len(),
        chain.len(),
        "same auth chain at both events: {full}"
    );
    assert_eq!(
        chain_kinds.first().map(String::as_str),
        Some("m.room.create"),
        "oldest first: {full}"
    );

    // GET /event_auth: the auth chain of one message.
    let auth = remote
        .get_ok(&format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            enc(&room),
            enc(&messages[2])
        ))
        .await;
    let auth_kinds: BTreeSet<String> = summary(&auth["auth_chain"]).into_iter().collect();
    for kind in ["m.room.create", "m.room.member", "m.room.power_levels"] {
        assert!(auth_kinds.contains(kind), "{kind} missing: {auth}");
    }
    assert!(
        !auth_kinds.contains("m.room.message") && !auth_kinds.contains("m.room.topic"),
        "{auth}"
    );

    // GET /backfill: newest first, including the v event, `limit` honoured.
    let page = remote
        .get_ok(&format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=3",
            enc(&room),
            enc(&last)
        ))
        .await;
    assert_eq!(page["origin"], a_name.as_str());
    assert_eq!(
        summary(&page["pdus"]),
        ["message 5", "m.room.topic", "message 4"],
        "{page}"
    );
    // ...which is what A's own client sees paging back.
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=3",
        enc(&room)
    );
    let (status, client_page) = a.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(summary(&client_page["chunk"]), summary(&page["pdus"]));
    // From an older event, and with a limit above the cap: everything back to the create event.
    let all = remote
        .get_ok(&format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=1000",
            enc(&room),
            enc(&messages[1])
        ))
        .await;
    let all = summary(&all["pdus"]);
    assert_eq!(&all[..2], ["message 1", "message 0"], "{all:?}");
    assert_eq!(
        all.last().map(String::as_str),
        Some("m.room.create"),
        "{all:?}"
    );
    assert!(
        !all.iter().any(|s| s == "message 2"),
        "nothing after v: {all:?}"
    );
    // Two v events: the walk starts from the newer one.
    let two = remote
        .get_ok(&format!(
            "/_matrix/federation/v1/backfill/{}?v={}&v={}&limit=2",
            enc(&room),
            enc(&messages[0]),
            enc(&messages[3])
        ))
        .await;
    assert_eq!(summary(&two["pdus"]), ["message 3", "message 2"]);

    // POST /get_missing_events: between earliest and latest, oldest first, latest excluded.
    let (status, missing) = remote
        .missing_events(
            &room,
            &json!({ "earliest_events": [messages[1]], "latest_events": [last], "limit": 10 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{missing}");
    assert_eq!(
        summary(&missing["events"]),
        ["message 2", "message 3", "message 4", "m.room.topic"],
        "{missing}"
    );
    let (status, nearest) = remote
        .missing_events(
            &room,
            &json!({ "earliest_events": [], "latest_events": [last], "limit": 2, "min_depth": 0 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{nearest}");
    assert_eq!(
        summary(&nearest["events"]),
        ["message 4", "m.room.topic"],
        "the two nearest: {nearest}"
    );
    // min_depth stops the walk; an unknown latest event finds nothing.
    let depth_of_topic = full_pdu_depth(&remote, &topic_id).await;
    let (_, shallow) = remote
        .missing_events(
            &room,
            &json!({ "latest_events": [last], "limit": 20, "min_depth": depth_of_topic }),
        )
        .await;
    assert_eq!(summary(&shallow["events"]), ["m.room.topic"], "{shallow}");
    let (status, unknown) = remote
        .missing_events(
            &room,
            &json!({ "latest_events": ["$unknown:elsewhere.example"], "limit": 5 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{unknown}");
    assert_eq!(unknown["events"], json!([]));

    // GET /query/directory: our alias; unknown or foreign aliases are 404.
    let alias = format!("#readable:{a_name}");
    let directory = remote
        .get_ok(&format!(
            "/_matrix/federation/v1/query/directory?room_alias={}",
            enc(&alias)
        ))
        .await;
    assert_eq!(directory, json!({ "room_id": room, "servers": [a_name] }));
    let cases = [
        format!("#nope:{a_name}"),
        "#readable:elsewhere.example".to_owned(),
    ];
    for alias in cases {
        let uri = format!(
            "/_matrix/federation/v1/query/directory?room_alias={}",
            enc(&alias)
        );
        assert_refused(
            &alias,
            remote.get(&uri).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }

    // Unknown events and rooms: 404.
    let unknown_event = "$doesnotexist";
    let cases = [
        format!("/_matrix/federation/v1/event/{}", enc(unknown_event)),
        format!(
            "/_matrix/federation/v1/state_ids/{}?event_id={}",
            enc(&room),
            enc(unknown_event)
        ),
        format!(
            "/_matrix/federation/v1/state/{}?event_id={}",
            enc("!nope:elsewhere.example"),
            enc(&last)
        ),
        format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            enc(&room),
            enc(unknown_event)
        ),
        format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=5",
            enc(&room),
            enc(unknown_event)
        ),
    ];
    for uri in &cases {
        assert_refused(
            uri,
            remote.get(uri).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }

    // Unsigned requests: 401.
    let unsigned = [
        (
            "GET",
            format!("/_matrix/federation/v1/event/{}", enc(&last)),
            None,
        ),
        (
            "GET",
            format!(
                "/_matrix/federation/v1/state_ids/{}?event_id={}",
                enc(&room),
                enc(&last)
            ),
            None,
        ),
        (
            "GET",
            format!(
                "/_matrix/federation/v1/backfill/{}?v={}&limit=5",
                enc(&room),
                enc(&last)
            ),
            None,
        ),
        (
            "GET",
            format!(
                "/_matrix/federation/v1/query/directory?room_alias={}",
                enc(&alias)
            ),
            None,
        ),
        (
            "POST",
            format!("/_matrix/federation/v1/get_missing_events/{}", enc(&room)),
            Some(json!({ "latest_events": [last] })),
        ),
    ];
    for (method, uri, body) in &unsigned {
        let answer = remote.send(method, uri, body.as_ref(), false).await;
        assert_refused(uri, answer, StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
    }

    // /.well-known/matrix/server: configured on B, not on A.
    let (status, well_known) = b.get("/.well-known/matrix/server", None).await;
    assert_eq!(status, StatusCode::OK, "{well_known}");
    assert_eq!(well_known, json!({ "m.server": "matrix.example.org:443" }));
    assert_refused(
        "A's well-known",
        a.get("/.well-known/matrix/server", None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    a.stop().await;
    b.stop().await;
}

/// The `depth` of one of A's events, read over federation.
async fn full_pdu_depth(remote: &Remote, event_id: &str) -> u64 {
    let event = remote
        .get_ok(&format!("/_matrix/federation/v1/event/{}", enc(event_id)))
        .await;
    event["pdus"][0]["depth"].as_u64().expect("depth")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_visibility_and_server_acls_refuse_a_remote_server() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let remote = Remote::new(&a, &b).await;
    let alice = a.register("alice", "hunter2-hunter2").await;
    let token = alice.token().expect("token");

    // A private room (history visibility `shared`, no user of B in it): nothing is served.
    let private = a
        .create_room(token, &json!({ "preset": "private_chat" }))
        .await;
    let secret = a.send_message(token, &private, "s0", "secret").await;
    let refused = [
        format!("/_matrix/federation/v1/event/{}", enc(&secret)),
        format!(
            "/_matrix/federation/v1/state/{}?event_id={}",
            enc(&private),
            enc(&secret)
        ),
        format!(
            "/_matrix/federation/v1/state_ids/{}?event_id={}",
            enc(&private),
            enc(&secret)
        ),
        format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            enc(&private),
            enc(&secret)
        ),
        format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=10",
            enc(&private),
            enc(&secret)
        ),
    ];
    for uri in &refused {
        assert_refused(
            uri,
            remote.get(uri).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    let answer = remote
        .missing_events(&private, &json!({ "latest_events": [secret], "limit": 5 }))
        .await;
    assert_refused(
        "get_missing_events",
        answer,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    // Made world-readable, the same room is served from then on.
    put_state(
        &a,
        &alice,
        &private,
        "m.room.history_visibility",
        &json!({ "history_visibility": "world_readable" }),
    )
    .await;
    let open = a.send_message(token, &private, "s1", "open").await;
    let event = remote
        .get_ok(&format!("/_matrix/federation/v1/event/{}", enc(&open)))
        .await;
    assert_eq!(event["pdus"][0]["content"]["body"], "open");
    // Backfill still walks through the older, non-visible message, served redacted.
    let page = remote
        .get_ok(&format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=3",
            enc(&private),
            enc(&open)
        ))
        .await;
    let pdus = page["pdus"].as_array().expect("pdus");
    assert_eq!(pdus.len(), 3, "{page}");
    assert_eq!(pdus[0]["content"]["body"], "open");
    assert_eq!(pdus[1]["type"], "m.room.history_visibility");
    assert_eq!(pdus[2]["type"], "m.room.message");
    assert_eq!(
        pdus[2]["content"],
        json!({}),
        "the secret is redacted: {page}"
    );

    // A server ACL denying B (by host, so without its port) closes the room to it.
    let acl = json!({ "allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": true });
    put_state(&a, &alice, &private, "m.room.server_acl", &acl).await;
    let after = a.send_message(token, &private, "s2", "after the ACL").await;
    let denied = [
        format!("/_matrix/federation/v1/event/{}", enc(&open)),
        format!(
            "/_matrix/federation/v1/state_ids/{}?event_id={}",
            enc(&private),
            enc(&after)
        ),
        format!(
            "/_matrix/federation/v1/state/{}?event_id={}",
            enc(&private),
            enc(&after)
        ),
        format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            enc(&private),
            enc(&after)
        ),
        format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=10",
            enc(&private),
            enc(&after)
        ),
    ];
    for uri in &denied {
        assert_refused(
            uri,
            remote.get(uri).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    let answer = remote
        .missing_events(&private, &json!({ "latest_events": [after], "limit": 5 }))
        .await;
    assert_refused(
        "get_missing_events under ACL",
        answer,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    // IP literals refused outright; then an ACL that allows B opens the room again.
    let no_ips = json!({ "allow": ["*"], "allow_ip_literals": false });
    put_state(&a, &alice, &private, "m.room.server_acl", &no_ips).await;
    let uri = format!("/_matrix/federation/v1/event/{}", enc(&after));
    assert_refused(
        "IP literal",
        remote.get(&uri).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    put_state(
        &a,
        &alice,
        &private,
        "m.room.server_acl",
        &json!({ "allow": ["127.0.0.*"] }),
    )
    .await;
    let event = remote.get_ok(&uri).await;
    assert_eq!(event["pdus"][0]["content"]["body"], "after the ACL");

    a.stop().await;
    b.stop().await;
}

/// Long-polls `who`'s `/sync` on `server` until `user`'s membership in `room_id` is
/// `membership` (bounded: at most 20 long-polls).
async fn wait_for_membership(
    server: &TestServer,
    token: &str,
    room_id: &str,
    user: &str,
    membership: &str,
) {
    let mut since: Option<String> = None;
    for _ in 0..20 {
        let sync = server.sync(token, since.as_deref(), 2000).await;
        let room = &sync["rooms"]["join"][room_id];
        let events = room["timeline"]["events"]
            .as_array()
            .into_iter()
            .chain(room["state"]["events"].as_array())
            .flatten();
        let mut found = false;
        for e in events {
            if e["type"] == "m.room.member" && e["state_key"] == user {
                found = e["content"]["membership"] == membership;
            }
        }
        if found {
            return;
        }
        since = sync["next_batch"].as_str().map(str::to_owned);
    }
    panic!("{user} never became {membership} in {room_id}");
}

/// The per-server history-visibility rule, each visibility × a user of B who joins, leaves and
/// rejoins: B sees what its users were joined for, `shared` history once one of them is joined
/// again, and everything of a `world_readable` room; a visibility switched later changes nothing
/// that was sent before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_sees_history_by_the_visibility_at_each_event() {
    let a = TestServer::start_federating_with(|c| c.rate_limits.enabled = false).await;
    let b = TestServer::start_federating_with(|c| c.rate_limits.enabled = false).await;
    let remote = Remote::new(&a, &b).await;
    let alice = a.register("alice", "hunter2-hunter2").await;
    let bob = b.register("bob", "hunter2-hunter2").await;
    let (alice_token, bob_token) = (alice.token().unwrap(), bob.token().unwrap());
    let visible = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    for visibility in ["world_readable", "shared", "invited", "joined"] {
        let room_id = a
            .create_room(
                alice_token,
                &json!({
                    "preset": "public_chat",
                    "initial_state": [{ "type": "m.room.history_visibility", "state_key": "",
                                        "content": { "history_visibility": visibility } }],
                }),
            )
            .await;
        let join_path = format!(
            "/_matrix/client/v3/join/{}?via={}",
            enc(&room_id),
            enc(a.loopback_server_name())
        );
        let mut messages = Vec::new();
        let send = |n: usize| {
            let (a, room_id) = (&a, room_id.clone());
            async move {
                let id = a
                    .send_message(
                        alice_token,
                        &room_id,
                        &format!("{visibility}{n}"),
                        &format!("m{n}"),
                    )
                    .await;
                (format!("m{n}"), id)
            }
        };
        messages.push(send(1).await);
        let (status, body) = b.post(&join_path, Some(bob_token), &json!({})).await;
        assert_eq!(status, StatusCode::OK, "join: {body}");
        messages.push(send(2).await);
        b.leave(bob_token, &room_id).await;
        // B's leave reaches A through B's outbox: wait for A to have it.
        wait_for_membership(&a, alice_token, &room_id, &bob.user_id, "leave").await;
        messages.push(send(3).await);

        let seen = |messages: Vec<(String, String)>| {
            let remote = &remote;
            async move {
                let mut seen = BTreeSet::new();
                for (name, id) in messages {
                    let (status, body) = remote
                        .get(&format!("/_matrix/federation/v1/event/{}", enc(&id)))
                        .await;
                    match status {
                        StatusCode::OK => {
                            assert_eq!(body["pdus"][0]["content"]["body"], *name);
                            seen.insert(name);
                        }
                        _ => assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {body}"),
                    }
                }
                seen
            }
        };
        let expected = match visibility {
            "world_readable" => visible(&["m1", "m2", "m3"]),
            _ => visible(&["m2"]),
        };
        assert_eq!(
            seen(messages.clone()).await,
            expected,
            "B, whose user left, reading a {visibility} room"
        );

        // Bob rejoins: under `shared`, B may read all the history again.
        let (status, body) = b.post(&join_path, Some(bob_token), &json!({})).await;
        assert_eq!(status, StatusCode::OK, "rejoin: {body}");
        messages.push(send(4).await);
        let expected = match visibility {
            "world_readable" | "shared" => visible(&["m1", "m2", "m3", "m4"]),
            _ => visible(&["m2", "m4"]),
        };
        assert_eq!(
            seen(messages.clone()).await,
            expected,
            "B, whose user rejoined, reading a {visibility} room"
        );
    }
    a.stop().await;
    b.stop().await;
}

// ----- hostile transactions -----

/// A PDU of room version 10 built and signed as B: `(event ID, JSON)`.
fn b_pdu(remote: &Remote, fields: Value) -> (String, Value) {
    use myelin_federation::ruma::{signatures, CanonicalJsonObject, RoomVersionId};
    let rules = RoomVersionId::V10.rules().expect("v10 rules");
    let mut object: CanonicalJsonObject =
        serde_json::from_value(fields).expect("canonical PDU fields");
    signatures::hash_and_sign_event(
        remote.b_name.as_str(),
        &remote.b_key,
        &mut object,
        &rules.redaction,
    )
    .expect("signs");
    let hash = signatures::reference_hash(&object, &rules).expect("reference hash");
    (
        format!("${hash}"),
        serde_json::to_value(&object).expect("JSON"),
    )
}

/// PUT /send/{txnId} from B to A with `pdus`, returning the per-PDU results.
async fn send_transaction(remote: &Remote, txn_id: &str, pdus: Vec<Value>) -> Value {
    let body = json!({
        "origin": remote.b_name.as_str(),
        "origin_server_ts": 1,
        "pdus": pdus,
        "edus": [],
    });
    let uri = format!("/_matrix/federation/v1/send/{txn_id}");
    let (status, answer) = remote.send("PUT", &uri, Some(&body), true).await;
    assert_eq!(status, StatusCode::OK, "transaction: {answer}");
    answer["pdus"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pdus_are_refused_and_change_nothing() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let remote = Remote::new(&a, &b).await;
    let alice = a.register("alice", "hunter2-hunter2").await;
    let bob = b.register("bob", "hunter2-hunter2").await;
    let room = a
        .create_room(
            alice.token().expect("token"),
            &json!({ "preset": "public_chat" }),
        )
        .await;
    let path = format!(
        "/_matrix/client/v3/join/{}?via={}",
        enc(&room),
        enc(a.loopback_server_name())
    );
    let (status, body) = b.post(&path, bob.token(), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob joins over federation: {body}");

    // What a PDU from bob needs: A's current state and newest event.
    let state = client_state(&a, &alice, &room).await;
    let id_of = |kind: &str| {
        state
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, id)| id.clone())
            .expect("state event")
    };
    let (create, power) = (id_of("m.room.create"), id_of("m.room.power_levels"));
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        enc(&room),
        enc(&bob.user_id)
    );
    let (status, _) = a.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "A knows bob's membership");
    let members = format!("/_matrix/client/v3/rooms/{}/members", enc(&room));
    let (_, body) = a.get(&members, alice.token()).await;
    let bob_member = body["chunk"]
        .as_array()
        .and_then(|c| c.iter().find(|e| e["state_key"] == bob.user_id.as_str()))
        .and_then(|e| e["event_id"].as_str())
        .expect("bob's member event")
        .to_owned();
    let messages = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1",
        enc(&room)
    );
    let (_, body) = a.get(&messages, alice.token()).await;
    let newest = body["chunk"][0]["event_id"]
        .as_str()
        .expect("newest")
        .to_owned();
    let depth = full_pdu_depth(&remote, &newest).await;

    let message = |body: &str, extra: u64| {
        json!({
            "type": "m.room.message",
            "room_id": room,
            "sender": bob.user_id,
            "origin_server_ts": 1_700_000_000_000u64 + extra,
            "content": { "msgtype": "m.text", "body": body },
            "prev_events": [newest],
            "auth_events": [create, power, bob_member],
            "depth": depth + 1,
        })
    };

    // A good PDU is accepted and shows up on A.
    let (good_id, good) = b_pdu(&remote, message("hello from B", 0));
    let results = send_transaction(&remote, "txn-good", vec![good]).await;
    assert_eq!(results[&good_id], json!({}), "{results}");
    let (status, event) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(&good_id)
            ),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["content"]["body"], "hello from B");

    // A wrong signature: refused, not stored.
    let (bad_sig_id, mut bad_sig) = b_pdu(&remote, message("forged", 1));
    let key_id = bad_sig["signatures"][remote.b_name.as_str()]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .expect("key id");
    bad_sig["signatures"][remote.b_name.as_str()][&key_id] = json!(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    );
    // A changed content: the hash no longer matches, so the event is kept redacted.
    let (bad_hash_id, mut bad_hash) = b_pdu(&remote, message("original", 2));
    bad_hash["content"]["body"] = json!("tampered");
    // Bob granting himself power: fails the auth rules, rejected.
    let (power_id, power_grab) = b_pdu(
        &remote,
        json!({
            "type": "m.room.power_levels",
            "state_key": "",
            "room_id": room,
            "sender": bob.user_id,
            "origin_server_ts": 1_700_000_000_003u64,
            "content": { "users": { bob.user_id.clone(): 100 } },
            "prev_events": [good_id],
            "auth_events": [create, power, bob_member],
            "depth": depth + 2,
        }),
    );
    // Too large: over 64 KiB (inflated after signing; the size is checked first).
    let (too_large_id, mut too_large) = b_pdu(&remote, message("small", 4));
    too_large["content"]["padding"] = json!("x".repeat(70_000));
    let results = send_transaction(
        &remote,
        "txn-hostile",
        vec![bad_sig, bad_hash, power_grab, too_large],
    )
    .await;
    assert!(
        results[&bad_sig_id]["error"].is_string(),
        "bad signature: {results}"
    );
    assert!(
        results[&power_id] == json!({}),
        "power grab: processed (and rejected, as below): {results}"
    );
    assert!(
        results[&too_large_id]["error"].is_string(),
        "too large: {results}"
    );
    let event_path =
        |id: &str| format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(id));
    let (status, _) = a.get(&event_path(&bad_sig_id), alice.token()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a forged event is not stored"
    );
    let (status, _) = a.get(&event_path(&power_id), alice.token()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a rejected event is not shown"
    );
    let (status, redacted) = a.get(&event_path(&bad_hash_id), alice.token()).await;
    if status == StatusCode::OK {
        assert!(
            redacted["content"].get("body").is_none(),
            "kept redacted: {redacted}"
        );
    }
    // The room's state did not change.
    assert_eq!(
        client_state(&a, &alice, &room).await,
        state,
        "state unchanged by hostile PDUs"
    );

    // A redaction naming an event of another room: processed, rejected, and that event keeps
    // its content.
    let other = a
        .create_room(
            alice.token().expect("token"),
            &json!({ "preset": "public_chat" }),
        )
        .await;
    let elsewhere = a
        .send_message(
            alice.token().expect("token"),
            &other,
            "elsewhere",
            "keep me",
        )
        .await;
    let (redaction_id, redaction) = b_pdu(
        &remote,
        json!({
            "type": "m.room.redaction",
            "room_id": room,
            "sender": bob.user_id,
            "redacts": elsewhere,
            "origin_server_ts": 1_700_000_000_005u64,
            "content": {},
            "prev_events": [good_id],
            "auth_events": [create, power, bob_member],
            "depth": depth + 2,
        }),
    );
    let results = send_transaction(&remote, "txn-cross-room", vec![redaction]).await;
    assert_eq!(results[&redaction_id], json!({}), "{results}");
    let (status, _) = a.get(&event_path(&redaction_id), alice.token()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the cross-room redaction is rejected"
    );
    let other_event = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        enc(&other),
        enc(&elsewhere)
    );
    let (status, kept) = a.get(&other_event, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["content"]["body"], "keep me", "{kept}");

    // The same transaction ID again gets the stored answer, not a second processing.
    let again = send_transaction(&remote, "txn-good", vec![]).await;
    assert_eq!(again[&good_id], json!({}), "idempotent: {again}");

    // A request signed with a key B never published: 401.
    let stranger =
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "stranger".into()).expect("key pair");
    let forged = Remote {
        a_url: remote.a_url.clone(),
        a_name: remote.a_name.clone(),
        b_name: remote.b_name.clone(),
        b_key: stranger,
        http: reqwest::Client::new(),
    };
    let body =
        json!({ "origin": remote.b_name.as_str(), "origin_server_ts": 1, "pdus": [], "edus": [] });
    let answer = forged
        .send(
            "PUT",
            "/_matrix/federation/v1/send/txn-forged",
            Some(&body),
            true,
        )
        .await;
    assert_refused(
        "wrong key",
        answer,
        StatusCode::UNAUTHORIZED,
        "M_UNAUTHORIZED",
    );

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_server_is_rate_limited() {
    let a = TestServer::start_federating_with(|c| {
        c.rate_limits.federation = myelin::config::Rate {
            per_minute: 1,
            burst: 3,
        };
    })
    .await;
    let b = TestServer::start_federating().await;
    let remote = Remote::new(&a, &b).await;
    let uri = "/_matrix/federation/v1/query/profile?user_id=%40nobody%3Aexample.org";
    for _ in 0..3 {
        let (status, body) = remote.get(uri).await;
        assert_ne!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "within the burst: {body}"
        );
    }
    let (status, body) = remote.get(uri).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
    assert!(
        body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{body}"
    );
    a.stop().await;
    b.stop().await;
}

/// Questions about our users' devices and keys have a smaller budget per server than other
/// requests, and one question may name at most 1,000 users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_queries_are_budgeted_per_server() {
    let a = TestServer::start_federating_with(|c| {
        c.rate_limits.federation_key_query = myelin::config::Rate {
            per_minute: 1,
            burst: 3,
        };
    })
    .await;
    let b = TestServer::start_federating().await;
    let remote = Remote::new(&a, &b).await;
    let alice = a.register("alice", "hunter2-hunter2").await;
    let query = json!({ "device_keys": { alice.user_id.clone(): [] } });
    let uri = "/_matrix/federation/v1/user/keys/query";
    for _ in 0..3 {
        let (status, body) = remote.send("POST", uri, Some(&query), true).await;
        assert_eq!(status, StatusCode::OK, "within the burst: {body}");
        assert!(body["device_keys"][&alice.user_id].is_object(), "{body}");
    }
    let (status, body) = remote.send("POST", uri, Some(&query), true).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{body}");
    let devices = format!(
        "/_matrix/federation/v1/user/devices/{}",
        enc(&alice.user_id)
    );
    let (status, body) = remote.get(&devices).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the same budget: {body}"
    );
    // Other requests have their own budget.
    let (status, body) = remote
        .get("/_matrix/federation/v1/query/profile?user_id=%40alice%3Aexample.org")
        .await;
    assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    a.stop().await;

    // A query naming too many users is refused whole.
    let a = TestServer::start_federating().await;
    let remote = Remote::new(&a, &b).await;
    let many: serde_json::Map<String, Value> = (0..1_001)
        .map(|i| (format!("@u{i}:{}", a.loopback_server_name()), json!([])))
        .collect();
    let (status, body) = remote
        .send("POST", uri, Some(&json!({ "device_keys": many })), true)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errcode"], "M_INVALID_PARAM", "{body}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_invite_is_co_signed_and_reaches_the_invitee() {
    use myelin_federation::ruma::{signatures, CanonicalJsonObject, RoomVersionId};
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let remote = Remote::new(&a, &b).await;
    let alice = a.register("alice", "correct horse battery").await;
    let b_name = remote.b_name.as_str();
    let room_id = format!("!old:{b_name}");
    let event_id = format!("$invite1:{b_name}");

    // An invite in a version 1 room, built and signed as B: the event carries its own ID and
    // references events as [id, hashes] pairs; the stripped state rides in `unsigned`.
    let rules = RoomVersionId::V1.rules().expect("v1 rules");
    let mut object: CanonicalJsonObject = serde_json::from_value(json!({
        "event_id": event_id,
        "room_id": room_id,
        "sender": format!("@bob:{b_name}"),
        "origin": b_name,
        "origin_server_ts": 1_700_000_000_000u64,
        "type": "m.room.member",
        "state_key": alice.user_id,
        "content": { "membership": "invite" },
        "prev_events": [[format!("$prev:{b_name}"), { "sha256": "" }]],
        "auth_events": [[format!("$create:{b_name}"), { "sha256": "" }]],
        "depth": 5,
    }))
    .expect("canonical fields");
    signatures::hash_and_sign_event(b_name, &remote.b_key, &mut object, &rules.redaction)
        .expect("signs");
    let mut event = serde_json::to_value(&object).expect("JSON");
    event["unsigned"] = json!({ "invite_room_state": [{
        "type": "m.room.name", "state_key": "", "sender": format!("@bob:{b_name}"),
        "content": { "name": "An old room" },
    }] });

    let uri = format!(
        "/_matrix/federation/v1/invite/{}/{}",
        enc(&room_id),
        enc(&event_id)
    );
    let (status, answer) = remote.send("PUT", &uri, Some(&event), true).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer[0], 200,
        "the v1 answer is [200, {{event}}]: {answer}"
    );
    let signed = &answer[1]["event"];
    assert_eq!(signed["event_id"], event_id.as_str());
    assert!(
        signed["signatures"][a.server_name()].is_object(),
        "A co-signed the invite: {signed}"
    );

    let sync = a.sync(alice.token().expect("token"), None, 0).await;
    let invite_state = &sync["rooms"]["invite"][&room_id]["invite_state"]["events"];
    assert!(
        invite_state
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["content"]["name"] == "An old room")),
        "{sync}"
    );

    // A body that is not an event is refused.
    let (status, _) = remote
        .send(
            "PUT",
            &format!(
                "/_matrix/federation/v1/invite/{}/{}",
                enc(&room_id),
                enc("$other:x")
            ),
            Some(&json!({ "not": "an event" })),
            true,
        )
        .await;
    assert!(status.is_client_error(), "garbage is refused: {status}");
}
