//! A hostile federation server for tests: an axum server on loopback, named `127.0.0.1:PORT`
//! like the federating [`TestServer`]s, with its own signing key (served at
//! `/_matrix/key/v2/server`, so Myelin verifies what it signs). It answers `make_join`,
//! `make_knock` and `make_leave` with whatever templates the test sets (for other rooms, users
//! or memberships), answers `send_*` and `/send` as the test says (failing `/send` on demand),
//! records every request it gets, and sends signed requests of its own: `/send` transactions
//! (replaying events, or EDUs), invites with any stripped state, joins, hierarchy queries; other
//! paths are answered as the test sets (`set_answer`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode as AxumStatus, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use myelin_federation::auth::{sign_request, RequestToSign};
use myelin_federation::keys::own_server_keys;
use myelin_federation::ruma::signatures::{self, Ed25519KeyPair};
use myelin_federation::ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, RoomVersionId,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::federation::now_ms;
use crate::{enc, StatusCode, TestServer, REQUEST_TIMEOUT};

/// One request the hostile server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path, percent-decoded, without the query.
    pub path: String,
    pub body: Value,
}

impl Recorded {
    /// The `txnId` of a `PUT /send/{txnId}`.
    pub fn txn_id(&self) -> Option<&str> {
        self.path.strip_prefix("/_matrix/federation/v1/send/")
    }
}

/// What the server does, as the test sets it.
#[derive(Default)]
struct Behaviour {
    /// The answer (`{ "room_version", "event" }`) to `make_{membership}`, by membership.
    templates: HashMap<String, Value>,
    /// `/send` transactions still to be answered 500.
    failing_sends: usize,
    /// The `knock_room_state` answered to `send_knock`.
    knock_room_state: Vec<Value>,
    /// How `send_join` is answered; refused (403) when unset.
    send_join: Option<SendJoinAnswer>,
    /// Answers (200) to requests whose path starts with a prefix, set by the test.
    answers: Vec<(String, Value)>,
}

/// The answer to `send_join` (v2): the room's state and auth chain, and the joining server's
/// event sent back, changed or not.
#[derive(Clone, Debug)]
pub struct SendJoinAnswer {
    pub state: Vec<Value>,
    pub auth_chain: Vec<Value>,
    /// Changes the returned event's `content.displayname` without re-hashing it, as a resident
    /// server that tampers with the join it "co-signs".
    pub tamper_with_event: bool,
}

/// A room of the hostile server, version 10, made of events it signed: the create event,
/// mallory's join, power levels giving mallory 100, and public join rules.
#[derive(Clone, Debug)]
pub struct HostileRoom {
    pub room_id: String,
    /// `(event ID, JSON)` of the create, member, power levels and join rules events.
    pub events: Vec<(String, Value)>,
}

impl HostileRoom {
    /// The state events (all of them), as `send_join` answers them.
    pub fn state(&self) -> Vec<Value> {
        self.events.iter().map(|(_, e)| e.clone()).collect()
    }

    fn id(&self, index: usize) -> &str {
        &self.events[index].0
    }

    /// A `make_*` template for `user`'s `membership`, on top of the room's last event.
    pub fn template(&self, origin: &str, user: &str, membership: &str) -> Value {
        let mut auth = vec![self.id(0), self.id(2)];
        if ["join", "knock", "invite"].contains(&membership) {
            auth.push(self.id(3));
        }
        json!({
            "type": "m.room.member",
            "room_id": self.room_id,
            "sender": user,
            "state_key": user,
            "content": { "membership": membership },
            "prev_events": [self.id(3)],
            "auth_events": auth,
            "depth": 5,
            "origin": origin,
            "origin_server_ts": now_ms(),
        })
    }
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    log: Mutex<Vec<Recorded>>,
    /// Woken at every recorded request.
    arrived: Notify,
    /// While true, the fetches a receiving server makes about the room's DAG
    /// (`get_missing_events`, `/state`, `/state_ids`, `/event_auth`) are held unanswered.
    fetches_held: tokio::sync::watch::Sender<bool>,
    keys: Value,
    name: String,
}

/// The hostile server; stops when dropped.
pub struct HostileServer {
    name: OwnedServerName,
    key: Ed25519KeyPair,
    shared: Arc<Shared>,
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.abort();
    }
}

/// A new Ed25519 key pair with version `version`.
pub fn generate_key(version: &str) -> Ed25519KeyPair {
    let der = Ed25519KeyPair::generate();
    Ed25519KeyPair::from_der(&der, version.to_owned()).expect("generated key loads")
}

/// The signing key of a [`TestServer`] started with `start_federating*`, read from its data
/// directory: for tests that stand for a server which got that key's signature on something.
pub fn server_key(server: &TestServer) -> Ed25519KeyPair {
    let name: OwnedServerName = server
        .server_name()
        .try_into()
        .expect("a valid server name");
    myelin::keys::load_or_generate(server.data_dir(), name)
        .expect("the server's signing key")
        .key_pair
}

/// `fields` as a PDU of room version 10 (hashed and signed by `server` with `key`): its event ID
/// and JSON.
pub fn sign_pdu(server: &str, key: &Ed25519KeyPair, fields: Value) -> (String, Value) {
    let rules = RoomVersionId::V10.rules().expect("v10 rules");
    let mut object: CanonicalJsonObject =
        serde_json::from_value(fields).expect("canonical PDU fields");
    signatures::hash_and_sign_event(server, key, &mut object, &rules.redaction).expect("signs");
    let hash = signatures::reference_hash(&object, &rules).expect("reference hash");
    (
        format!("${hash}"),
        serde_json::to_value(&object).expect("JSON"),
    )
}

impl HostileServer {
    /// Starts the server on an OS-assigned port of `127.0.0.1`.
    pub async fn start() -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener address");
        let name: OwnedServerName = addr.to_string().try_into().expect("server name");
        let key = generate_key("hostile");
        let now = now_ms();
        let keys = own_server_keys(&name, &key, &BTreeMap::new(), now + 3_600_000);
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(Behaviour::default()),
            log: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            fetches_held: tokio::sync::watch::Sender::new(false),
            keys: serde_json::to_value(keys).expect("keys JSON"),
            name: name.to_string(),
        });
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = signal.await;
                })
                .await;
        });
        HostileServer {
            name,
            key,
            shared,
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("HTTP client"),
            shutdown: Some(shutdown),
            task,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn server_name(&self) -> &str {
        self.name.as_str()
    }

    /// A user ID of this server.
    pub fn user(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.name)
    }

    /// A room ID of this server.
    pub fn room(&self, localpart: &str) -> String {
        format!("!{localpart}:{}", self.name)
    }

    // ---- behaviour ----

    /// Answers `make_{membership}` (`join`, `knock`, `leave`) with this template from now on.
    pub fn set_template(&self, membership: &str, room_version: &str, event: Value) {
        self.behaviour().templates.insert(
            membership.to_owned(),
            json!({ "room_version": room_version, "event": event }),
        );
    }

    /// Answers the next `count` `/send` transactions with a 500.
    pub fn fail_sends(&self, count: usize) {
        self.behaviour().failing_sends = count;
    }

    /// Holds every fetch about the room's DAG (`get_missing_events`, `/state`, `/state_ids`,
    /// `/event_auth`) unanswered until [`HostileServer::release_fetches`]: a server as slow as
    /// it may be.
    pub fn hold_fetches(&self) {
        self.shared.fetches_held.send_replace(true);
    }

    /// Answers the held fetches (404) and those to come.
    pub fn release_fetches(&self) {
        self.shared.fetches_held.send_replace(false);
    }

    /// Answers `send_join` (v2) so from now on.
    pub fn set_send_join(&self, answer: SendJoinAnswer) {
        self.behaviour().send_join = Some(answer);
    }

    /// Makes a room of this server (see [`HostileRoom`]); nothing is sent anywhere.
    pub fn make_room(&self, localpart: &str) -> HostileRoom {
        let room_id = self.room(localpart);
        let mallory = self.user("mallory");
        let origin = self.name.as_str();
        let mut events: Vec<(String, Value)> = Vec::new();
        let mut event = |kind: &str, state_key: &str, content: Value, auth: Vec<String>| {
            let prev: Vec<String> = events
                .last()
                .map(|(id, _)| id.clone())
                .into_iter()
                .collect();
            let depth = events.len() + 1;
            let signed = self.sign_pdu(json!({
                "type": kind,
                "room_id": room_id,
                "sender": mallory,
                "state_key": state_key,
                "content": content,
                "prev_events": prev,
                "auth_events": auth,
                "depth": depth,
                "origin": origin,
                "origin_server_ts": now_ms(),
            }));
            events.push(signed.clone());
            signed.0
        };
        let create = event(
            "m.room.create",
            "",
            json!({ "creator": mallory, "room_version": "10" }),
            vec![],
        );
        let join = event(
            "m.room.member",
            &mallory,
            json!({ "membership": "join" }),
            vec![create.clone()],
        );
        let power = event(
            "m.room.power_levels",
            "",
            json!({ "users": { &mallory: 100 } }),
            vec![create.clone(), join.clone()],
        );
        event(
            "m.room.join_rules",
            "",
            json!({ "join_rule": "public" }),
            vec![create, join, power],
        );
        HostileRoom { room_id, events }
    }

    /// Answers `send_knock` with this `knock_room_state`.
    pub fn set_knock_room_state(&self, state: Vec<Value>) {
        self.behaviour().knock_room_state = state;
    }

    fn behaviour(&self) -> std::sync::MutexGuard<'_, Behaviour> {
        self.shared.behaviour.lock().expect("behaviour lock")
    }

    // ---- what it received ----

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Recorded> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// Answers 200 with `body` to every request whose path starts with `prefix` (replacing an
    /// answer set before for the same prefix).
    pub fn set_answer(&self, prefix: &str, body: Value) {
        let mut behaviour = self.shared.behaviour.lock().expect("behaviour lock");
        behaviour.answers.retain(|(p, _)| p != prefix);
        behaviour.answers.push((prefix.to_owned(), body));
    }

    /// The requests received so far whose path starts with `prefix`.
    pub fn received_under(&self, prefix: &str) -> Vec<Recorded> {
        self.received()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Waits (up to `timeout`) until the requests received satisfy `found`, and returns what it
    /// returned; panics with `what` otherwise.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        found: impl Fn(&[Recorded]) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so a request recorded meanwhile still wakes us.
            let arrived = self.shared.arrived.notified();
            if let Some(value) = found(&self.received()) {
                return value;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "the hostile server never received {what}: {:?}",
                    self.received()
                );
            }
        }
    }

    // ---- signing ----

    /// `fields` as a PDU of room version 10 signed by this server.
    pub fn sign_pdu(&self, fields: Value) -> (String, Value) {
        sign_pdu(self.name.as_str(), &self.key, fields)
    }

    // ---- requests to a Myelin ----

    /// A request to `target` signed by this server (`X-Matrix`): status and JSON body.
    pub async fn request(
        &self,
        target: &TestServer,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let destination: OwnedServerName =
            target.server_name().try_into().expect("target server name");
        let content: Option<CanonicalJsonValue> =
            body.map(|b| CanonicalJsonValue::try_from(b.clone()).expect("canonical body"));
        let header = sign_request(
            &RequestToSign {
                method,
                uri,
                origin: &self.name,
                destination: &destination,
                content: content.as_ref(),
            },
            &self.key,
        )
        .expect("signs the request");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{uri}", target.base_url()))
            .header("authorization", header.to_string());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request to the target");
        let status = response.status();
        let bytes = response.bytes().await.expect("response body");
        (status, crate::parse_body(&bytes))
    }

    /// `PUT /send/{txnId}` to `target` with `pdus`: the per-PDU results.
    pub async fn send_transaction(
        &self,
        target: &TestServer,
        txn_id: &str,
        pdus: Vec<Value>,
    ) -> Value {
        let body = json!({
            "origin": self.name.as_str(),
            "origin_server_ts": now_ms(),
            "pdus": pdus,
            "edus": [],
        });
        let uri = format!("/_matrix/federation/v1/send/{}", enc(txn_id));
        let (status, answer) = self.request(target, "PUT", &uri, Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "transaction {txn_id}: {answer}");
        answer["pdus"].clone()
    }

    /// `PUT /send/{txnId}` to `target` with `edus` only; panics unless it is accepted.
    pub async fn send_edus(&self, target: &TestServer, txn_id: &str, edus: Vec<Value>) {
        let body = json!({
            "origin": self.name.as_str(),
            "origin_server_ts": now_ms(),
            "pdus": [],
            "edus": edus,
        });
        let uri = format!("/_matrix/federation/v1/send/{}", enc(txn_id));
        let (status, answer) = self.request(target, "PUT", &uri, Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "transaction {txn_id}: {answer}");
    }

    /// Joins `localpart` of this server to `room_id` on `target` (`make_join`, `send_join` v2);
    /// panics unless the join is accepted. Returns the join's event ID.
    pub async fn join(&self, target: &TestServer, room_id: &str, localpart: &str) -> String {
        let user = self.user(localpart);
        let versions: String = (1..=12).map(|v| format!("ver={v}&")).collect();
        let uri = format!(
            "/_matrix/federation/v1/make_join/{}/{}?{}",
            enc(room_id),
            enc(&user),
            versions.trim_end_matches('&')
        );
        let (status, template) = self.request(target, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "make_join: {template}");
        assert_eq!(template["room_version"], "10", "tests use version 10 rooms");
        let mut event = template["event"].clone();
        event["origin_server_ts"] = json!(now_ms());
        event["origin"] = json!(self.name.as_str());
        let (event_id, event) = self.sign_pdu(event);
        let uri = format!(
            "/_matrix/federation/v2/send_join/{}/{}",
            enc(room_id),
            enc(&event_id)
        );
        let (status, answer) = self.request(target, "PUT", &uri, Some(&event)).await;
        assert_eq!(status, StatusCode::OK, "send_join: {answer}");
        event_id
    }
}

/// Every request: recorded, then answered as the behaviour says.
async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = percent_decode(uri.path());
    let body = crate::parse_body(&body);
    shared.log.lock().expect("log lock").push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        body: body.clone(),
    });
    shared.arrived.notify_waiters();
    let json = |status: AxumStatus, value: Value| (status, axum::Json(value)).into_response();
    if path.starts_with("/_matrix/key/v2/server") {
        return json(AxumStatus::OK, shared.keys.clone());
    }
    if path == "/_matrix/federation/v1/version" {
        return json(AxumStatus::OK, json!({ "server": { "name": "hostile" } }));
    }
    let dag_fetch = [
        "/_matrix/federation/v1/get_missing_events/",
        "/_matrix/federation/v1/state/",
        "/_matrix/federation/v1/state_ids/",
        "/_matrix/federation/v1/event_auth/",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix));
    if dag_fetch {
        let mut held = shared.fetches_held.subscribe();
        // Ends when released, or when the server stops (the sender is gone).
        let _ = held.wait_for(|held| !*held).await;
    }
    let mut behaviour = shared.behaviour.lock().expect("behaviour lock");
    if let Some((_, body)) = behaviour.answers.iter().find(|(p, _)| path.starts_with(p)) {
        return json(AxumStatus::OK, body.clone());
    }
    for membership in ["join", "knock", "leave"] {
        if path.starts_with(&format!("/_matrix/federation/v1/make_{membership}/")) {
            return match behaviour.templates.get(membership) {
                Some(template) => json(AxumStatus::OK, template.clone()),
                None => json(
                    AxumStatus::NOT_FOUND,
                    json!({ "errcode": "M_NOT_FOUND", "error": "no template" }),
                ),
            };
        }
    }
    if path.starts_with("/_matrix/federation/v1/send_knock/") {
        let state = behaviour.knock_room_state.clone();
        return json(AxumStatus::OK, json!({ "knock_room_state": state }));
    }
    if path.starts_with("/_matrix/federation/v2/send_join/") {
        let Some(answer) = behaviour.send_join.clone() else {
            return json(
                AxumStatus::FORBIDDEN,
                json!({ "errcode": "M_FORBIDDEN", "error": "no joins here" }),
            );
        };
        let mut event = body;
        if answer.tamper_with_event {
            event["content"]["displayname"] = json!("tampered");
        }
        return json(
            AxumStatus::OK,
            json!({
                "origin": shared.name,
                "state": answer.state,
                "auth_chain": answer.auth_chain,
                "event": event,
                "members_omitted": false,
            }),
        );
    }
    if path.starts_with("/_matrix/federation/v2/send_leave/") {
        return json(AxumStatus::OK, json!({}));
    }
    if path.starts_with("/_matrix/federation/v1/send/") {
        if behaviour.failing_sends > 0 {
            behaviour.failing_sends -= 1;
            return json(
                AxumStatus::INTERNAL_SERVER_ERROR,
                json!({ "errcode": "M_UNKNOWN", "error": "failing on purpose" }),
            );
        }
        return json(AxumStatus::OK, json!({ "pdus": {} }));
    }
    json(
        AxumStatus::NOT_FOUND,
        json!({ "errcode": "M_UNRECOGNIZED", "error": "not served here" }),
    )
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let (b'%', Some(b)) = (bytes[i], hex) {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
