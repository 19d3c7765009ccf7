//! A real Synapse for interoperability tests, run from the venv that `scripts/synapse-venv`
//! creates (`.bench/synapse-venv`, or `SYNAPSE_VENV`).
//!
//! Each [`SynapseServer`] gets a fresh temporary directory, a free loopback port and the server
//! name `127.0.0.1:<port>`, and serves the client and federation APIs over HTTPS with a
//! self-signed certificate, as Synapse only federates over HTTPS. It can be stopped and started
//! again on its data and port ([`SynapseServer::stop`], [`SynapseServer::restart`]), to hold
//! federation back (a fork of a room's DAG, missed updates). Without the venv,
//! [`SynapseServer::start`] returns `None` and the test skips with a loud notice, unless
//! `MYELIN_REQUIRE_SYNAPSE=1` (CI), which makes a missing venv a failure.

mod config;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::{parse_body, REQUEST_TIMEOUT};
use config::Files;

/// Set to `1` to fail, rather than skip, when the Synapse venv is missing.
pub const REQUIRE_VAR: &str = "MYELIN_REQUIRE_SYNAPSE";

/// Overrides the venv's location (relative paths are relative to the repository root, as in
/// `scripts/synapse-venv`).
pub const VENV_VAR: &str = "SYNAPSE_VENV";

/// The venv `scripts/synapse-venv` creates, relative to the repository root.
const DEFAULT_VENV: &str = ".bench/synapse-venv";

/// How long Synapse may take to generate its config and answer (it imports a lot of Python).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The config Synapse generates, and the test's overrides merged over it.
const MAIN_CONFIG: &str = "homeserver.yaml";
const OVERRIDES: &str = "test-overrides.yaml";

/// How many lines of Synapse's logs a failing test prints.
const LOG_TAIL_LINES: usize = 60;

/// A Synapse process; killed (and its logs shown, if the test is failing) on drop.
pub struct SynapseServer {
    server_name: String,
    base_url: String,
    http: reqwest::Client,
    /// `None` between [`SynapseServer::stop`] and [`SynapseServer::restart`].
    child: Option<Child>,
    /// The venv's Python, to start Synapse again after a stop.
    python: PathBuf,
    /// `None` only while dropping, when a failing test keeps the directory for inspection.
    dir: Option<TempDir>,
}

impl SynapseServer {
    /// Starts a Synapse and waits until it answers over HTTPS; `None` (after printing a
    /// `*** SKIPPED ***` line) when the venv is missing and [`REQUIRE_VAR`] is not `1`.
    ///
    /// # Panics
    /// If the venv is missing and required, or Synapse does not start.
    pub async fn start() -> Option<SynapseServer> {
        let python = venv_python()?;
        let mut server = Self::launch(&python).await;
        server.wait_ready().await;
        Some(server)
    }

    /// `127.0.0.1:<port>`.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// `https://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Synapse's directory (config, database, logs).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// Kills Synapse (its directory, database and port stay): other servers' requests to it fail
    /// until [`SynapseServer::restart`], and it sends nothing meanwhile.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped Synapse again on its directory and port, and waits until it answers.
    ///
    /// # Panics
    /// If it is running, or does not come back.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() of a running Synapse");
        self.child = Some(spawn(&self.python, self.dir()));
        self.wait_ready().await;
    }

    /// Sends a request with an optional JSON body and access token; returns the status and the
    /// JSON answer (a non-JSON answer as a JSON string, an empty one as `null`).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("Synapse {method} {path}: request failed: {e:?}"));
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("Synapse {method} {path}: reading the body failed: {e}"));
        (status, parse_body(&bytes))
    }

    /// Registers `username` through the client API (User-Interactive Auth with
    /// `m.login.dummy`); returns the user ID and access token.
    pub async fn register(&self, username: &str, password: &str) -> (String, String) {
        let path = "/_matrix/client/v3/register";
        let mut body = json!({ "username": username, "password": password });
        let (status, first) = self.request(Method::POST, path, None, Some(&body)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "Synapse /register must start UIA: {first}"
        );
        body["auth"] = json!({ "type": "m.login.dummy", "session": first["session"] });
        let (status, done) = self.request(Method::POST, path, None, Some(&body)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "Synapse register {username}: {done}"
        );
        let field = |name: &str| {
            done[name]
                .as_str()
                .unwrap_or_else(|| panic!("`{name}` missing from {done}"))
                .to_owned()
        };
        (field("user_id"), field("access_token"))
    }

    /// Generates Synapse's config in a fresh directory and starts it.
    async fn launch(python: &Path) -> SynapseServer {
        let dir = tempfile::Builder::new()
            .prefix("myelin-synapse-")
            .tempdir()
            .expect("create Synapse's temp dir");
        let files = Files { dir: dir.path() };
        let port = free_port();
        let server_name = format!("127.0.0.1:{port}");
        let main_config = dir.path().join(MAIN_CONFIG);

        // Synapse's own generated config brings the signing key and the secrets; the override
        // file (merged over it by top-level key) sets everything the tests depend on.
        let generated = tokio::process::Command::new(python)
            .args([
                "-m",
                "synapse.app.homeserver",
                "--generate-config",
                "--report-stats=no",
            ])
            .arg("--server-name")
            .arg(&server_name)
            .arg("--config-path")
            .arg(&main_config)
            .arg("--data-directory")
            .arg(dir.path())
            .current_dir(dir.path())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            generated.status.success(),
            "synapse --generate-config failed: {}",
            String::from_utf8_lossy(&generated.stderr)
        );

        let certificate =
            myelin::tls::generate_self_signed(&["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("generate Synapse's certificate");
        let write = |path: PathBuf, text: &str| {
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()))
        };
        write(files.certificate(), &certificate.certificate_pem);
        write(files.private_key(), &certificate.private_key_pem);
        write(
            dir.path().join(OVERRIDES),
            &config::overrides_yaml(&files, port),
        );
        write(files.log_config(), &config::log_config_yaml(&files));

        let child = spawn(python, dir.path());
        SynapseServer {
            base_url: format!("https://{server_name}"),
            server_name,
            http: insecure_client(),
            child: Some(child),
            python: python.to_path_buf(),
            dir: Some(dir),
        }
    }

    /// Polls `/_matrix/client/versions` over HTTPS until Synapse answers.
    ///
    /// # Panics
    /// If Synapse exits or does not answer within [`START_TIMEOUT`] (the drop then prints its
    /// logs).
    async fn wait_ready(&mut self) {
        let url = format!("{}/_matrix/client/versions", self.base_url);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let answer = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("Synapse exited with {status} before answering");
            }
            if Instant::now() > deadline {
                panic!("Synapse did not answer {url} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for SynapseServer {
    fn drop(&mut self) {
        // The database is thrown away with the directory, so no graceful stop is needed.
        self.stop();
        if !std::thread::panicking() {
            return;
        }
        let Some(dir) = self.dir.take() else { return };
        let files = Files { dir: dir.path() };
        for log in [stdout_log(dir.path()), files.log()] {
            eprintln!(
                "--- Synapse {}: last {LOG_TAIL_LINES} lines of {} ---\n{}",
                self.server_name,
                log.display(),
                tail(&log, LOG_TAIL_LINES)
            );
        }
        eprintln!(
            "--- Synapse's files are kept in {} ---",
            dir.keep().display()
        );
    }
}

/// Starts Synapse on the config files in `dir` (made by `launch`), its output appended to
/// [`stdout_log`].
fn spawn(python: &Path, dir: &Path) -> Child {
    let stdout = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stdout_log(dir))
        .expect("open Synapse's stdout log");
    let stderr = stdout.try_clone().expect("clone the log file handle");
    std::process::Command::new(python)
        .args(["-m", "synapse.app.homeserver"])
        .arg("--config-path")
        .arg(dir.join(MAIN_CONFIG))
        .arg("--config-path")
        .arg(dir.join(OVERRIDES))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start Synapse with {}: {e}", python.display()))
}

/// The file Synapse's standard output and error go to.
fn stdout_log(dir: &Path) -> PathBuf {
    dir.join("stdout.log")
}

/// The last `n` lines of `path` (or why it cannot be read).
fn tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

/// The Python of the venv `scripts/synapse-venv` makes (Synapse, and mautrix for the
/// real-bridge test); `None` (after printing a `*** SKIPPED ***` line) when it is missing and
/// [`REQUIRE_VAR`] is not `1`.
///
/// # Panics
/// If the venv is missing and required.
pub fn venv_python() -> Option<PathBuf> {
    let venv = venv();
    let python = venv.join("bin").join("python");
    if python.is_file() {
        return Some(python);
    }
    let why = format!(
        "no Synapse venv at {} (create it with `bash scripts/synapse-venv`)",
        venv.display()
    );
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_VAR}=1 but there is {why}");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test needing the Synapse venv")
        .to_owned();
    eprintln!("*** SKIPPED {test}: {why} ***");
    None
}

/// The venv Synapse runs from: [`VENV_VAR`], or `.bench/synapse-venv` in the repository.
fn venv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testing crate is inside the repository")
        .to_path_buf();
    match std::env::var_os(VENV_VAR).filter(|v| !v.is_empty()) {
        Some(venv) => root.join(venv),
        None => root.join(DEFAULT_VENV),
    }
}

/// A loopback port that was free a moment ago (Synapse binds it itself).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free loopback port")
        .port()
}

/// A client for Synapse's self-signed certificate.
pub(crate) fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("build reqwest client")
}
