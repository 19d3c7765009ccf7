//! A stub application service for tests: an axum server on loopback that records every
//! transaction and ping the homeserver sends (with its `Authorization` header), fails
//! transactions on demand (to test retries), answers third-party protocol lookups (and the
//! reverse ones, by alias and user ID), and answers
//! user and alias queries by registering the puppet or creating the portal room on the
//! homeserver with its `as_token`, as a bridge does. It also writes the registration file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode as AxumStatus, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::REQUEST_TIMEOUT;

/// The stub's appservice ID and tokens.
pub const AS_ID: &str = "stubbridge";
pub const AS_TOKEN: &str = "stub-as-token";
pub const HS_TOKEN: &str = "stub-hs-token";

/// One transaction received.
#[derive(Debug, Clone)]
pub struct Txn {
    pub txn_id: String,
    pub body: Value,
    /// Whether it carried `Authorization: Bearer <hs_token>`.
    pub authorized: bool,
}

#[derive(Default)]
struct Shared {
    txns: Mutex<Vec<Txn>>,
    pings: Mutex<Vec<Value>>,
    /// Transactions still to be answered 500.
    failing: Mutex<usize>,
    /// `(homeserver base URL)` for the queries' callbacks.
    homeserver: Mutex<Option<String>>,
    changed: Notify,
}

/// The running stub.
pub struct StubAppservice {
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for StubAppservice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubAppservice {
    pub async fn start() -> StubAppservice {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stub");
        let addr = listener.local_addr().expect("stub address");
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StubAppservice {
            url: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// A registration file for the stub on `server_name` (users `@stub_*`, aliases `#stub_*`,
    /// both exclusive), written into `dir`.
    pub fn write_registration(
        &self,
        dir: &std::path::Path,
        server_name: &str,
    ) -> std::path::PathBuf {
        let server = server_name.replace('.', "\\.");
        let yaml = format!(
            "id: {AS_ID}\nurl: {url}\nas_token: {AS_TOKEN}\nhs_token: {HS_TOKEN}\n\
             sender_localpart: stubbot\nrate_limited: false\nprotocols: [\"stubnet\"]\n\
             namespaces:\n  users:\n    - regex: '@stub_.*:{server}'\n      exclusive: true\n\
             \x20 aliases:\n    - regex: '#stub_.*:{server}'\n      exclusive: true\n\
             receive_ephemeral: true\norg.matrix.msc3202: true\nio.element.msc4190: true\n",
            url = self.url
        );
        let path = dir.join("stub-registration.yaml");
        std::fs::write(&path, yaml).expect("write the registration");
        path
    }

    /// The homeserver the queries' callbacks go to.
    pub fn set_homeserver(&self, base_url: &str) {
        *lock(&self.shared.homeserver) = Some(base_url.to_owned());
    }

    /// Answers the next `n` transactions with 500.
    pub fn fail_next(&self, n: usize) {
        *lock(&self.shared.failing) = n;
    }

    pub fn txns(&self) -> Vec<Txn> {
        lock(&self.shared.txns).clone()
    }

    pub fn pings(&self) -> Vec<Value> {
        lock(&self.shared.pings).clone()
    }

    /// Waits (at most 20 s) until `check` holds for the transactions received.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&[Txn]) -> bool) -> Vec<Txn> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let changed = self.shared.changed.notified();
            let txns = self.txns();
            if check(&txns) {
                return txns;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("timed out waiting for {what}; transactions: {txns:#?}");
            }
        }
    }
}

/// `path` with the appservice masquerading as `user` (`?user_id=` or `&user_id=`).
pub fn as_user(path: &str, user: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}user_id={}", crate::enc(user))
}

/// Registers a puppet of the stub on `server` (`type: m.login.application_service`).
pub async fn register_puppet(server: &crate::TestServer, localpart: &str) {
    let body = json!({ "type": "m.login.application_service", "username": localpart });
    let (status, answer) = server
        .post("/_matrix/client/v3/register", Some(AS_TOKEN), &body)
        .await;
    assert!(status.is_success(), "appservice registration: {answer}");
}

/// The ephemeral events (MSC2409) of every transaction received, in order.
pub fn all_ephemeral(txns: &[Txn]) -> Vec<Value> {
    txns.iter()
        .flat_map(|t| {
            t.body["de.sorunome.msc2409.ephemeral"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every event of every transaction received, in order.
pub fn all_events(txns: &[Txn]) -> Vec<Value> {
    txns.iter()
        .flat_map(|t| t.body["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorized = headers.get("authorization").and_then(|h| h.to_str().ok())
        == Some(&format!("Bearer {HS_TOKEN}"));
    let path = uri.path().to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !authorized {
        return (
            AxumStatus::FORBIDDEN,
            axum::Json(json!({"errcode": "M_FORBIDDEN"})),
        )
            .into_response();
    }
    if let Some(txn_id) = path.strip_prefix("/_matrix/app/v1/transactions/") {
        return transaction(&shared, txn_id, body).await;
    }
    if path == "/_matrix/app/v1/ping" && method == Method::POST {
        lock(&shared.pings).push(body);
        return axum::Json(json!({})).into_response();
    }
    if let Some(user) = path.strip_prefix("/_matrix/app/v1/users/") {
        return query_user(&shared, user).await;
    }
    if let Some(alias) = path.strip_prefix("/_matrix/app/v1/rooms/") {
        return query_alias(&shared, alias).await;
    }
    if path == "/_matrix/app/v1/thirdparty/protocol/stubnet" {
        return axum::Json(json!({
            "user_fields": ["name"], "location_fields": ["channel"], "icon": "mxc://x/y",
            "field_types": {}, "instances": [
                { "desc": "Libera", "network_id": "libera", "fields": { "network": "libera" } },
                { "desc": "OFTC", "network_id": "oftc", "fields": { "network": "oftc" } },
            ],
        }))
        .into_response();
    }
    if path == "/_matrix/app/v1/thirdparty/location/stubnet" {
        let channel = uri.query().unwrap_or_default().to_owned();
        return axum::Json(
            json!([{ "alias": "#stub_chan:localhost", "protocol": "stubnet",
            "fields": { "query": channel } }]),
        )
        .into_response();
    }
    if path == "/_matrix/app/v1/thirdparty/location" {
        let alias = query_param(&uri, "alias");
        return axum::Json(json!([{ "alias": alias, "protocol": "stubnet",
            "fields": { "channel": "general" } }]))
        .into_response();
    }
    if path == "/_matrix/app/v1/thirdparty/user" {
        let user = query_param(&uri, "userid");
        return axum::Json(json!([{ "userid": user, "protocol": "stubnet",
            "fields": { "name": "carol" } }]))
        .into_response();
    }
    (
        AxumStatus::NOT_FOUND,
        axum::Json(json!({"errcode": "M_NOT_FOUND"})),
    )
        .into_response()
}

/// A query parameter of the request, percent-decoded (empty if absent).
fn query_param(uri: &Uri, name: &str) -> String {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
        .unwrap_or_default()
}

async fn transaction(shared: &Shared, txn_id: &str, body: Value) -> Response {
    let fail = {
        let mut failing = lock(&shared.failing);
        let fail = *failing > 0;
        *failing = failing.saturating_sub(1);
        fail
    };
    lock(&shared.txns).push(Txn {
        txn_id: txn_id.to_owned(),
        body,
        authorized: true,
    });
    shared.changed.notify_waiters();
    if fail {
        return (AxumStatus::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    axum::Json(json!({})).into_response()
}

/// Registers the puppet, as a bridge would, then says it exists.
async fn query_user(shared: &Shared, user: &str) -> Response {
    let user = percent_decode(user);
    let localpart = user
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let body = json!({ "type": "m.login.application_service", "username": localpart, "inhibit_login": true });
    match call_homeserver(shared, "/_matrix/client/v3/register", &body).await {
        Some(status) if status.is_success() => axum::Json(json!({})).into_response(),
        _ => (AxumStatus::NOT_FOUND, axum::Json(json!({}))).into_response(),
    }
}

/// Creates the portal room for the alias, as a bridge would, then says it exists.
async fn query_alias(shared: &Shared, alias: &str) -> Response {
    let alias = percent_decode(alias);
    let name = alias
        .trim_start_matches('#')
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let body = json!({ "room_alias_name": name, "preset": "public_chat", "name": "Portal" });
    match call_homeserver(shared, "/_matrix/client/v3/createRoom", &body).await {
        Some(status) if status.is_success() => axum::Json(json!({})).into_response(),
        _ => (AxumStatus::NOT_FOUND, axum::Json(json!({}))).into_response(),
    }
}

async fn call_homeserver(shared: &Shared, path: &str, body: &Value) -> Option<reqwest::StatusCode> {
    let base = lock(&shared.homeserver).clone()?;
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .ok()?;
    let response = client
        .post(format!("{base}{path}"))
        .bearer_auth(AS_TOKEN)
        .json(body)
        .send()
        .await
        .ok()?;
    Some(response.status())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
