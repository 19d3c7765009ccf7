//! An identity-server stub for tests: an axum server on loopback with an Ed25519 key, answering
//! the few Identity Service API v2 endpoints a homeserver calls (`3pid/bind`, `3pid/unbind`,
//! `hash_details`, `lookup`, `store-invite`) from sessions the test validates directly. Like
//! Sydent, a bind of an address with stored invites tells the user's homeserver
//! (`/_matrix/federation/v1/3pid/onbind`) with each invite signed by its key. It records every
//! request, so a test asserts what the homeserver sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode as AxumStatus, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use myelin_federation::ruma::serde::{base64::Standard, Base64};
use myelin_federation::ruma::signatures::{self, Ed25519KeyPair};
use myelin_federation::ruma::CanonicalJsonObject;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::hostile::generate_key;

/// The access token the stub accepts (`id_access_token`); `expired` is answered
/// `M_UNKNOWN_TOKEN`, any other `M_UNAUTHORIZED`.
pub const IS_TOKEN: &str = "is-access-token";
/// The pepper of hashed lookups.
const PEPPER: &str = "test-pepper";

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct IsRequest {
    pub method: String,
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    pub body: Value,
}

/// An invite stored by `store-invite`, kept until the address is bound.
#[derive(Debug, Clone)]
struct PendingInvite {
    room_id: String,
    sender: String,
    token: String,
}

#[derive(Default)]
struct Inner {
    /// `(sid, client_secret)` → `(medium, address)` of validated sessions.
    sessions: HashMap<(String, String), (String, String)>,
    /// `(medium, address)` → bound Matrix user.
    bindings: HashMap<(String, String), String>,
    invites: HashMap<(String, String), Vec<PendingInvite>>,
    requests: Vec<IsRequest>,
    /// Where onbind notifications go (the homeserver's base URL).
    homeserver: Option<String>,
    /// The answers of the onbind notifications sent: status and body.
    onbind_answers: Vec<(u16, Value)>,
    next_token: u32,
}

struct Shared {
    key: Ed25519KeyPair,
    /// The server's name, `127.0.0.1:PORT`, as homeservers name it in `id_server`.
    name: String,
    inner: Mutex<Inner>,
}

/// The running stub.
pub struct IdentityStub {
    /// `127.0.0.1:PORT`: what clients pass as `id_server`.
    pub name: String,
    shared: Arc<Shared>,
}

impl IdentityStub {
    pub async fn start() -> IdentityStub {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the identity stub");
        let name = listener.local_addr().expect("address").to_string();
        let shared = Arc::new(Shared {
            key: generate_key("0"),
            name: name.clone(),
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        IdentityStub { name, shared }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("stub lock")
    }

    /// A session the stub considers validated (as if the user had followed its mail).
    pub fn validated_session(&self, sid: &str, client_secret: &str, address: &str) {
        self.inner().sessions.insert(
            (sid.into(), client_secret.into()),
            ("email".into(), address.into()),
        );
    }

    /// Where onbind notifications are sent: the homeserver's base URL.
    pub fn notify_homeserver(&self, base_url: &str) {
        self.inner().homeserver = Some(base_url.to_owned());
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<IsRequest> {
        self.inner().requests.clone()
    }

    /// The requests received at `path` (under `/_matrix/identity/v2`).
    pub fn requests_to(&self, path: &str) -> Vec<IsRequest> {
        let full = format!("/_matrix/identity/v2{path}");
        self.requests()
            .into_iter()
            .filter(|r| r.path == full)
            .collect()
    }

    /// The Matrix user an address is bound to now.
    pub fn bound_to(&self, address: &str) -> Option<String> {
        self.inner()
            .bindings
            .get(&("email".to_owned(), address.to_owned()))
            .cloned()
    }

    /// The answers the homeserver gave to the onbind notifications.
    pub fn onbind_answers(&self) -> Vec<(u16, Value)> {
        self.inner().onbind_answers.clone()
    }

    /// The stub's public key, standard unpadded base64.
    pub fn public_key(&self) -> String {
        public_key(&self.shared.key)
    }

    /// `{ mxid, token }` signed by the stub's key, as an onbind invite carries it.
    pub fn signed(&self, mxid: &str, token: &str) -> Value {
        sign_invite(&self.shared.name, &self.shared.key, mxid, token)
    }
}

/// `{ mxid, token }` signed by `key` under `server`.
pub fn sign_invite(server: &str, key: &Ed25519KeyPair, mxid: &str, token: &str) -> Value {
    let mut object: CanonicalJsonObject =
        serde_json::from_value(json!({ "mxid": mxid, "token": token })).expect("canonical");
    signatures::sign_json(server, key, &mut object).expect("signs");
    serde_json::to_value(&object).expect("JSON")
}

fn public_key(key: &Ed25519KeyPair) -> String {
    Base64::<Standard>::new(key.public_key().to_vec()).encode()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = uri.path().to_owned();
    shared
        .inner
        .lock()
        .expect("stub lock")
        .requests
        .push(IsRequest {
            method: method.to_string(),
            path: path.clone(),
            authorization: authorization.clone(),
            body: body.clone(),
        });
    let bearer_ok = authorization.as_deref() == Some(&format!("Bearer {IS_TOKEN}"));
    let route = path.strip_prefix("/_matrix/identity/v2").unwrap_or("");
    let (status, answer) = match (method.as_str(), route) {
        ("POST", "/3pid/unbind") => unbind(&shared, &body),
        _ if authorization.as_deref() == Some("Bearer expired") => (
            AxumStatus::UNAUTHORIZED,
            json!({ "errcode": "M_UNKNOWN_TOKEN", "error": "Expired access token" }),
        ),
        _ if !bearer_ok => (
            AxumStatus::UNAUTHORIZED,
            json!({ "errcode": "M_UNAUTHORIZED", "error": "Unrecognised access token" }),
        ),
        ("GET", "/hash_details") => (
            AxumStatus::OK,
            json!({ "lookup_pepper": PEPPER, "algorithms": ["none", "sha256"] }),
        ),
        ("POST", "/lookup") => lookup(&shared, &body),
        ("POST", "/store-invite") => store_invite(&shared, &body),
        ("POST", "/3pid/bind") => return bind(&shared, &body).await,
        _ => (
            AxumStatus::NOT_FOUND,
            json!({ "errcode": "M_UNRECOGNIZED", "error": "Unrecognized request" }),
        ),
    };
    (status, axum::Json(answer)).into_response()
}

fn lookup(shared: &Shared, body: &Value) -> (AxumStatus, Value) {
    if body["algorithm"] != "sha256" || body["pepper"] != PEPPER {
        return (
            AxumStatus::BAD_REQUEST,
            json!({ "errcode": "M_INVALID_PEPPER", "error": "Unknown or invalid pepper" }),
        );
    }
    let inner = shared.inner.lock().expect("stub lock");
    let mut mappings = serde_json::Map::new();
    for ((medium, address), mxid) in &inner.bindings {
        let hashed = lookup_hash(address, medium);
        let asked = body["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(&hashed)));
        if asked {
            mappings.insert(hashed, json!(mxid));
        }
    }
    (AxumStatus::OK, json!({ "mappings": mappings }))
}

fn lookup_hash(address: &str, medium: &str) -> String {
    let digest = Sha256::digest(format!("{address} {medium} {PEPPER}").as_bytes());
    Base64::<myelin_federation::ruma::serde::base64::UrlSafe>::new(digest.to_vec()).encode()
}

fn store_invite(shared: &Shared, body: &Value) -> (AxumStatus, Value) {
    let (Some(address), Some(room_id), Some(sender)) = (
        body["address"].as_str(),
        body["room_id"].as_str(),
        body["sender"].as_str(),
    ) else {
        return (
            AxumStatus::BAD_REQUEST,
            json!({ "errcode": "M_MISSING_PARAMS", "error": "missing parameters" }),
        );
    };
    let mut inner = shared.inner.lock().expect("stub lock");
    inner.next_token += 1;
    let token = format!("invite-token-{}", inner.next_token);
    inner
        .invites
        .entry(("email".into(), address.into()))
        .or_default()
        .push(PendingInvite {
            room_id: room_id.into(),
            sender: sender.into(),
            token: token.clone(),
        });
    let base = format!("http://{}/_matrix/identity/v2", shared.name);
    let key = public_key(&shared.key);
    (
        AxumStatus::OK,
        json!({
            "token": token,
            "public_keys": [
                { "public_key": key, "key_validity_url": format!("{base}/pubkey/isvalid") },
            ],
            "display_name": "a...@e...",
        }),
    )
}

/// A bind: the association is published and, if invites wait for the address, the user's
/// homeserver is told before the answer (the test sees the membership once bind returns).
async fn bind(shared: &Arc<Shared>, body: &Value) -> Response {
    let key = (
        body["sid"].as_str().unwrap_or_default().to_owned(),
        body["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    let mxid = body["mxid"].as_str().unwrap_or_default().to_owned();
    let (found, homeserver, invites) = {
        let mut inner = shared.inner.lock().expect("stub lock");
        let found = inner.sessions.get(&key).cloned();
        if let Some(threepid) = &found {
            inner.bindings.insert(threepid.clone(), mxid.clone());
        }
        let invites = found
            .as_ref()
            .and_then(|t| inner.invites.remove(t))
            .unwrap_or_default();
        (found, inner.homeserver.clone(), invites)
    };
    let Some((medium, address)) = found else {
        return (
            AxumStatus::NOT_FOUND,
            axum::Json(json!({ "errcode": "M_NO_VALID_SESSION", "error": "No valid session" })),
        )
            .into_response();
    };
    if let (Some(homeserver), false) = (homeserver, invites.is_empty()) {
        let invites: Vec<Value> = invites
            .iter()
            .map(|i| {
                json!({
                    "medium": medium, "address": address, "mxid": mxid,
                    "room_id": i.room_id, "sender": i.sender,
                    "signed": sign_invite(&shared.name, &shared.key, &mxid, &i.token),
                })
            })
            .collect();
        let onbind =
            json!({ "medium": medium, "address": address, "mxid": mxid, "invites": invites });
        let answer = reqwest::Client::new()
            .put(format!("{homeserver}/_matrix/federation/v1/3pid/onbind"))
            .json(&onbind)
            .send()
            .await;
        let answer = match answer {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!(e.to_string())),
        };
        shared
            .inner
            .lock()
            .expect("stub lock")
            .onbind_answers
            .push(answer);
    }
    let mut association: CanonicalJsonObject = serde_json::from_value(json!({
        "address": address, "medium": medium, "mxid": mxid,
        "not_before": 0, "not_after": 4_000_000_000_000u64, "ts": 1,
    }))
    .expect("canonical");
    signatures::sign_json(&shared.name, &shared.key, &mut association).expect("signs");
    (AxumStatus::OK, axum::Json(json!(association))).into_response()
}

/// An unbind signed by the homeserver (`X-Matrix`, checked for its shape only).
fn unbind(shared: &Shared, body: &Value) -> (AxumStatus, Value) {
    let medium = body["threepid"]["medium"].as_str().unwrap_or_default();
    let address = body["threepid"]["address"].as_str().unwrap_or_default();
    let mut inner = shared.inner.lock().expect("stub lock");
    let key = (medium.to_owned(), address.to_owned());
    if inner.bindings.get(&key).map(String::as_str) != body["mxid"].as_str() {
        return (
            AxumStatus::NOT_FOUND,
            json!({ "errcode": "M_NOT_FOUND", "error": "No such binding" }),
        );
    }
    inner.bindings.remove(&key);
    (AxumStatus::OK, json!({}))
}
