//! Test harness for Myelin integration tests.
//!
//! [`TestServer`] runs a real Myelin homeserver inside the test's tokio
//! runtime: it owns a temporary data directory, listens on an OS-assigned
//! port of `127.0.0.1`, and can be stopped gracefully and restarted on the
//! same data directory.
//!
//! The HTTP helpers speak raw JSON over `reqwest`, so tests can observe
//! exactly what the server returns (status codes, `errcode`s, field shapes)
//! without a client library in the way. Helpers that panic on failure
//! (`register`, `create_room`, `send_message`, `sync`, ...) are meant for
//! set-up steps; the generic `get`/`post`/`put`/`delete` helpers return the
//! status and body for the test to assert on.
//!
//! [`SynapseServer`] runs a real Synapse next to it for interoperability tests;
//! [`hostile::HostileServer`] is a federation server that lies, for the hardening tests.
//! [`http`] and [`federation`] hold the small helpers the test files share; [`interop::Server`]
//! drives either homeserver with the same steps.

pub mod appservice;
pub mod federation;
pub mod hostile;
pub mod http;
pub mod identity;
pub mod interop;
pub mod oidc;
pub mod smtp;
pub mod synapse;

use std::time::Duration;

pub use myelin::Config;
use reqwest::Method;
pub use reqwest::StatusCode;
use serde_json::{json, Value};
pub use synapse::SynapseServer;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a single HTTP request may take before the test fails.
/// Long-poll syncs in the tests use at most 10 s, so this is generous.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a graceful shutdown may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A logged-in user as returned by `/register` or `/login`.
#[derive(Clone, Debug)]
pub struct Account {
    pub user_id: String,
    pub access_token: String,
    pub device_id: String,
}

impl Account {
    /// The access token in the form the HTTP helpers take.
    pub fn token(&self) -> Option<&str> {
        Some(&self.access_token)
    }

    fn from_response(body: &Value) -> Account {
        let field = |name: &str| {
            body[name]
                .as_str()
                .unwrap_or_else(|| panic!("`{name}` missing from {body}"))
                .to_owned()
        };
        Account {
            user_id: field("user_id"),
            access_token: field("access_token"),
            device_id: field("device_id"),
        }
    }
}

/// Selects the PostgreSQL backend for every test server.
pub const BACKEND_VAR: &str = "MYELIN_TEST_BACKEND";

/// The file in a test server's data dir naming its PostgreSQL database, so that a restart on the
/// same data dir finds the same database.
const POSTGRES_MARKER: &str = "test-postgres-url";

/// With `MYELIN_TEST_BACKEND=postgres`, the URL of the data dir's own PostgreSQL database (created
/// on first use on the server named by `MYELIN_TEST_POSTGRES_URL`; left behind afterwards, as the
/// test cluster is thrown away); otherwise `None` (SQLite).
async fn postgres_database(data_dir: &std::path::Path) -> Option<String> {
    if std::env::var(BACKEND_VAR).ok()?.as_str() != "postgres" {
        return None;
    }
    let marker = data_dir.join(POSTGRES_MARKER);
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let db = myelin_storage_postgres::testing::TestDatabase::create()
        .await
        .unwrap_or_else(|| panic!("{BACKEND_VAR}=postgres needs MYELIN_TEST_POSTGRES_URL"));
    let url = db.keep();
    std::fs::write(&marker, &url).expect("write the test database marker");
    Some(url)
}

/// Points `config` at the data dir's PostgreSQL database when the tests run on PostgreSQL.
async fn use_test_backend(config: &mut Config, data_dir: &std::path::Path) {
    if let Some(url) = postgres_database(data_dir).await {
        config.database.backend = "postgres".to_owned();
        config.database.url = Some(url);
        config.database.pool_size = 4;
    }
}

/// A Myelin homeserver running in a background tokio task.
pub struct TestServer {
    base_url: String,
    /// `https://127.0.0.1:PORT` when the server also listens over TLS.
    tls_base_url: Option<String>,
    server_name: String,
    /// The configuration the server runs with (for command-line operations on its data).
    config: Config,
    http: reqwest::Client,
    data_dir: TempDir,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Starts a server with the default configuration on a fresh data dir.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh data dir after letting `configure` adjust
    /// the default configuration.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("create temp data dir");
        Self::launch(dir, configure).await
    }

    /// Starts a server whose database already holds a server administrator `localpart` with
    /// `password` (made as `myelin user create --admin` makes one, before the server starts).
    pub async fn start_with_admin(localpart: &str, password: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("create temp data dir");
        let mut config = Config::for_data_dir(dir.path().to_path_buf());
        use_test_backend(&mut config, dir.path()).await;
        let server = myelin::Myelin::open(config)
            .await
            .expect("open the data dir");
        server
            .services()
            .accounts
            .create_user(localpart, Some(password), true)
            .await
            .expect("create the administrator");
        drop(server);
        Self::launch(dir, |_| {}).await
    }

    /// Starts a server with the default configuration on an existing data
    /// dir, typically the one returned by [`TestServer::stop`]. A server
    /// started with `start_federating*` comes back with its configuration,
    /// server name and ports instead.
    pub async fn restart(data_dir: TempDir) -> TestServer {
        Self::launch(data_dir, |_| {}).await
    }

    /// Like [`TestServer::restart`], with a configuration hook.
    pub async fn restart_with(
        data_dir: TempDir,
        configure: impl FnOnce(&mut Config),
    ) -> TestServer {
        Self::launch(data_dir, configure).await
    }

    async fn launch(data_dir: TempDir, configure: impl FnOnce(&mut Config)) -> TestServer {
        if let Some(config) = saved_federating_config(data_dir.path()) {
            return Self::relaunch_federating(data_dir, config, configure).await;
        }
        let mut config = Config::for_data_dir(data_dir.path().to_path_buf());
        use_test_backend(&mut config, data_dir.path()).await;
        // Guests are off by default; the tests exercise them.
        config.registration.allow_guests = true;
        configure(&mut config);

        // Binding before spawning means connections made right away simply
        // wait in the accept backlog until the server is ready.
        let listener = bind_loopback().await;
        Self::spawn(config, data_dir, listener, None)
    }

    /// Runs the server described by `config` on the bound listeners in a background task.
    fn spawn(
        config: Config,
        data_dir: TempDir,
        listener: TcpListener,
        tls_listener: Option<TcpListener>,
    ) -> TestServer {
        let addr = listener.local_addr().expect("listener address");
        let tls_base_url = tls_listener
            .as_ref()
            .map(|l| format!("https://{}", l.local_addr().expect("TLS listener address")));
        let server_name = config.server_name.clone();
        let kept = config.clone();
        let (shutdown, signal) = oneshot::channel::<()>();
        let shutdown_future = async move {
            // Resolves on an explicit stop and when the sender is dropped.
            let _ = signal.await;
        };
        let task = tokio::spawn(myelin::run_with(
            config,
            listener,
            tls_listener,
            shutdown_future,
        ));

        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("build reqwest client");

        TestServer {
            base_url: format!("http://{addr}"),
            tls_base_url,
            server_name,
            config: kept,
            http,
            data_dir,
            shutdown,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `https://127.0.0.1:PORT` of a server started with [`TestServer::start_federating_tls`].
    pub fn tls_base_url(&self) -> Option<&str> {
        self.tls_base_url.as_deref()
    }

    /// The configured server name (`localhost` unless a federating start set it).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The configuration the server runs with: what `myelin --config ...` would read to work
    /// on its data (e.g. `myelin media ...` while it runs).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// Shuts the server down gracefully, waits for it to finish and hands
    /// back the data directory (still on disk) for a [`TestServer::restart`].
    pub async fn stop(self) -> TempDir {
        let _ = self.shutdown.send(());
        let finished = tokio::time::timeout(SHUTDOWN_TIMEOUT, self.task)
            .await
            .expect("server did not shut down within the timeout")
            .expect("server task panicked");
        finished.expect("myelin::run returned an error");
        self.data_dir
    }

    /// Stops the server and starts it again on the same data directory.
    pub async fn restarted(self) -> TestServer {
        let dir = self.stop().await;
        TestServer::restart(dir).await
    }

    // ----- generic HTTP -----

    /// Sends `body` verbatim (with `Content-Type: application/json`) and
    /// returns the status and the JSON body. A body that is not JSON is
    /// returned as a JSON string; an empty body as `Value::Null`.
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{}", self.base_url, path);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: request failed: {e}"));
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading body failed: {e}"));
        (status, parse_body(&bytes))
    }

    /// Sends an optional JSON body and returns status and JSON response.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| serde_json::to_vec(b).expect("serialize body"));
        self.request_raw(method, path, token, body).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, token, Some(body)).await
    }

    // ----- accounts -----

    /// Runs `/register` through User-Interactive Auth with `m.login.dummy`
    /// and returns the final status and body, whatever it is. Any fields of
    /// `body` (username, password, ...) are sent with both requests.
    pub async fn register_attempt(&self, body: Value) -> (StatusCode, Value) {
        let (status, first) = self.post("/_matrix/client/v3/register", None, &body).await;
        if status != StatusCode::UNAUTHORIZED {
            return (status, first);
        }
        let session = first["session"].clone();
        let mut second = body;
        second["auth"] = json!({ "type": "m.login.dummy", "session": session });
        self.post("/_matrix/client/v3/register", None, &second)
            .await
    }

    /// Registers `username` (UIA with `m.login.dummy`) and panics unless the
    /// server answers 200 with a full login.
    pub async fn register(&self, username: &str, password: &str) -> Account {
        let (status, first) = self
            .post(
                "/_matrix/client/v3/register",
                None,
                &json!({ "username": username, "password": password }),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "first /register must start UIA: {first}"
        );
        let session = first["session"]
            .as_str()
            .unwrap_or_else(|| panic!("UIA response without session: {first}"));
        assert!(
            has_flow_stage(&first, "m.login.dummy"),
            "UIA flows do not offer m.login.dummy: {first}"
        );

        let (status, body) = self
            .post(
                "/_matrix/client/v3/register",
                None,
                &json!({
                    "username": username,
                    "password": password,
                    "auth": { "type": "m.login.dummy", "session": session },
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "register {username}: {body}");
        Account::from_response(&body)
    }

    /// Logs in with a password, creating a new device.
    pub async fn login(&self, username: &str, password: &str) -> Account {
        let (status, body) = self.login_attempt(username, password).await;
        assert_eq!(status, StatusCode::OK, "login {username}: {body}");
        Account::from_response(&body)
    }

    /// `POST /login` with `m.login.password`, returning status and body.
    pub async fn login_attempt(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/_matrix/client/v3/login",
            None,
            &json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": username },
                "password": password,
            }),
        )
        .await
    }

    // ----- rooms -----

    /// `POST /createRoom`; panics unless it succeeds.
    pub async fn create_room(&self, token: &str, body: &Value) -> String {
        let (status, resp) = self
            .post("/_matrix/client/v3/createRoom", Some(token), body)
            .await;
        assert_eq!(status, StatusCode::OK, "createRoom {body}: {resp}");
        resp["room_id"]
            .as_str()
            .expect("room_id in createRoom response")
            .to_owned()
    }

    /// Sends an `m.text` message with the given transaction id; panics unless
    /// it succeeds. Returns the event id.
    pub async fn send_message(
        &self,
        token: &str,
        room_id: &str,
        txn_id: &str,
        body: &str,
    ) -> String {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            enc(room_id),
            enc(txn_id)
        );
        let (status, resp) = self
            .put(
                &path,
                Some(token),
                &json!({ "msgtype": "m.text", "body": body }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "send {body:?} to {room_id}: {resp}");
        resp["event_id"]
            .as_str()
            .expect("event_id in send response")
            .to_owned()
    }

    /// `POST /join/{roomIdOrAlias}`; panics unless it succeeds.
    pub async fn join(&self, token: &str, room_id: &str) {
        let path = format!("/_matrix/client/v3/join/{}", enc(room_id));
        let (status, resp) = self.post(&path, Some(token), &json!({})).await;
        assert_eq!(status, StatusCode::OK, "join {room_id}: {resp}");
    }

    /// `POST /rooms/{roomId}/invite`; panics unless it succeeds.
    pub async fn invite(&self, token: &str, room_id: &str, user_id: &str) {
        let path = format!("/_matrix/client/v3/rooms/{}/invite", enc(room_id));
        let (status, resp) = self
            .post(&path, Some(token), &json!({ "user_id": user_id }))
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "invite {user_id} to {room_id}: {resp}"
        );
    }

    /// `POST /rooms/{roomId}/leave`; panics unless it succeeds.
    pub async fn leave(&self, token: &str, room_id: &str) {
        let path = format!("/_matrix/client/v3/rooms/{}/leave", enc(room_id));
        let (status, resp) = self.post(&path, Some(token), &json!({})).await;
        assert_eq!(status, StatusCode::OK, "leave {room_id}: {resp}");
    }

    /// `GET /sync`; panics unless it succeeds. `timeout_ms` is the long-poll
    /// timeout.
    pub async fn sync(&self, token: &str, since: Option<&str>, timeout_ms: u64) -> Value {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(since) = since {
            path.push_str(&format!("&since={}", enc(since)));
        }
        let (status, resp) = self.get(&path, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "sync since {since:?}: {resp}");
        resp
    }
}

pub(crate) fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Whether a UIA response offers a flow containing `stage`.
pub fn has_flow_stage(uia: &Value, stage: &str) -> bool {
    uia["flows"].as_array().is_some_and(|flows| {
        flows.iter().any(|flow| {
            flow["stages"]
                .as_array()
                .is_some_and(|stages| stages.iter().any(|s| s == stage))
        })
    })
}

/// Percent-encodes a path segment or query value (everything except the
/// RFC 3986 unreserved characters).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The timeline events of joined room `room_id` in a `/sync` response
/// (empty if the room is not in the response).
pub fn timeline(sync: &Value, room_id: &str) -> Vec<Value> {
    sync["rooms"]["join"][room_id]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The `body` of every `m.room.message` event in `events`, in order.
pub fn message_bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

// ----- federation -----

impl TestServer {
    /// Starts a server named after its own address (`127.0.0.1:PORT`), so that other servers
    /// started this way can reach it over federation: plain HTTP and loopback destinations are
    /// allowed for `127.0.0.1` (test networks only; both are off by default).
    pub async fn start_federating() -> TestServer {
        Self::start_federating_with(|_| {}).await
    }

    /// [`TestServer::start_federating`] with a configuration hook (run after the federation
    /// settings are made, so it can undo them).
    pub async fn start_federating_with(configure: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = tempfile::tempdir().expect("create temp data dir");
        let listener = bind_loopback().await;
        let addr = listener.local_addr().expect("listener address");
        let mut config = Config::for_data_dir(data_dir.path().to_path_buf());
        config.server_name = addr.to_string();
        config.federation.allow_private_destinations = true;
        config.federation.plain_http_servers = vec!["127.0.0.1".to_owned()];
        config.listen = addr.to_string();
        use_test_backend(&mut config, data_dir.path()).await;
        configure(&mut config);
        save_federating_config(&config);
        Self::spawn(config, data_dir, listener, None)
    }

    /// Starts a server that federates over HTTPS, as real homeservers (Synapse) require: besides
    /// the plain client listener ([`TestServer::base_url`]) it listens over TLS with a
    /// self-signed certificate, is named after that TLS address (`127.0.0.1:TLS_PORT`), so other
    /// servers reach it there, and contacts other servers over HTTPS, accepting self-signed
    /// certificates from `127.0.0.1` and loopback destinations (test networks only).
    pub async fn start_federating_tls() -> TestServer {
        Self::start_federating_tls_with(|_| {}).await
    }

    /// [`TestServer::start_federating_tls`] with a configuration hook (run after the federation
    /// settings are made, so it can undo them).
    pub async fn start_federating_tls_with(configure: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = tempfile::tempdir().expect("create temp data dir");
        let listener = bind_loopback().await;
        let tls_listener = bind_loopback().await;
        let tls_addr = tls_listener.local_addr().expect("TLS listener address");
        let mut config = Config::for_data_dir(data_dir.path().to_path_buf());
        config.server_name = tls_addr.to_string();
        config.listen = listener.local_addr().expect("listener address").to_string();
        config.tls.listen = Some(tls_addr.to_string());
        config.tls.self_signed = true;
        config.federation.allow_private_destinations = true;
        config.federation.trusted_self_signed = vec!["127.0.0.1".to_owned()];
        use_test_backend(&mut config, data_dir.path()).await;
        configure(&mut config);
        save_federating_config(&config);
        Self::spawn(config, data_dir, listener, Some(tls_listener))
    }

    /// Restarts a federating server with its saved configuration (plus `configure`) on the
    /// addresses it had, so it comes back under the same server name where others reach it.
    async fn relaunch_federating(
        data_dir: TempDir,
        mut config: Config,
        configure: impl FnOnce(&mut Config),
    ) -> TestServer {
        configure(&mut config);
        let listener = bind_again(&config.listen).await;
        let tls_listener = match &config.tls.listen {
            Some(addr) => Some(bind_again(addr).await),
            None => None,
        };
        Self::spawn(config, data_dir, listener, tls_listener)
    }

    /// The server name of a server started with [`TestServer::start_federating`] (its
    /// `127.0.0.1:PORT`) or [`TestServer::start_federating_tls`] (`127.0.0.1:TLS_PORT`); the
    /// same as [`TestServer::server_name`].
    pub fn loopback_server_name(&self) -> &str {
        &self.server_name
    }
}

/// The file in a federating test server's data dir holding its configuration (with the
/// addresses it listens on in `listen` / `tls.listen`), so that [`TestServer::restart`] brings it
/// back under the same server name, on the same ports.
const FEDERATING_CONFIG: &str = "test-federating.toml";

fn save_federating_config(config: &Config) {
    let text = config.to_toml_string().expect("serialize the test config");
    std::fs::write(config.data_dir.join(FEDERATING_CONFIG), text)
        .expect("write the federating test config");
}

fn saved_federating_config(data_dir: &std::path::Path) -> Option<Config> {
    let text = std::fs::read_to_string(data_dir.join(FEDERATING_CONFIG)).ok()?;
    Some(Config::from_toml_str(&text).expect("the saved federating test config parses"))
}

/// A listener on `addr` again, after the server that had it stopped.
async fn bind_again(addr: &str) -> TcpListener {
    TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("rebind {addr} for the restarted server: {e}"))
}

/// A listener on an OS-assigned port of `127.0.0.1`.
async fn bind_loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn federating_servers_restart_under_the_same_name_and_ports() {
        let plain = TestServer::start_federating().await;
        let (name, url) = (plain.server_name().to_owned(), plain.base_url().to_owned());
        assert_eq!(url, format!("http://{name}"));
        plain.register("alice", "pw-pw-pw-pw").await;
        let plain = plain.restarted().await;
        assert_eq!((plain.server_name(), plain.base_url()), (&*name, &*url));
        plain.login("alice", "pw-pw-pw-pw").await;

        let tls = TestServer::start_federating_tls().await;
        let name = tls.server_name().to_owned();
        let tls_url = tls.tls_base_url().expect("a TLS listener").to_owned();
        assert_eq!(tls_url, format!("https://{name}"));
        let tls = tls.restarted().await;
        assert_eq!(tls.server_name(), name);
        assert_eq!(tls.tls_base_url(), Some(&*tls_url));
        let (status, keys) = tls.get("/_matrix/key/v2/server", None).await;
        assert_eq!(status, StatusCode::OK, "{keys}");
        assert_eq!(keys["server_name"], name);
        let over_tls = synapse::insecure_client()
            .get(format!("{tls_url}/_matrix/client/versions"))
            .send()
            .await
            .expect("HTTPS after the restart");
        assert_eq!(over_tls.status(), StatusCode::OK);
    }
}
