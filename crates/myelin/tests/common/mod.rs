//! What the tests that run the real `myelin` binary share: a `myelin serve` child process on a
//! data dir (killed on drop, or with SIGKILL on demand) and a few raw client-API calls.

#![allow(dead_code)] // Each test file uses its own part.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub const PW: &str = "correct horse battery staple";
pub const C: &str = "/_matrix/client/v3";

/// A running `myelin serve` process; killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn spawn(data_dir: &Path, log: &Path) -> Server {
        Server::spawn_with_env(data_dir, log, &[])
    }

    /// [`Server::spawn`] with more `MYELIN_*` variables (configuration overrides).
    pub fn spawn_with_env(data_dir: &Path, log: &Path, env: &[(&str, &str)]) -> Server {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open server log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_myelin"))
            .arg("serve")
            .env("MYELIN_DATA_DIR", data_dir)
            .env("MYELIN_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn myelin binary");

        // Read stdout until the listening line; keep draining it afterwards
        // so the server never blocks on a full pipe.
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(pos) = line.find("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line[pos + "listening on ".len()..].trim().to_owned());
                    }
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "myelin did not print its listening line; log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        };
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "unexpected listen URL {url:?}"
        );
        Server { child, url }
    }

    /// SIGKILL (std's `Child::kill` on unix) and reap the process.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9 myelin");
        self.child.wait().expect("reap myelin");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut req = http.post(url).json(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Registers `username` through UIA with m.login.dummy; returns the access token.
pub async fn register(http: &reqwest::Client, base: &str, username: &str) -> String {
    let url = format!("{base}{C}/register");
    let mut body = json!({ "username": username, "password": PW });
    let (status, uia) = post(http, url.clone(), None, &body).await;
    assert_eq!(status, 401, "register must start UIA: {uia}");
    body["auth"] = json!({ "type": "m.login.dummy", "session": uia["session"] });
    let (status, resp) = post(http, url, None, &body).await;
    assert_eq!(status, 200, "register: {resp}");
    resp["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}
