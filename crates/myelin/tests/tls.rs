//! The HTTPS listener: the same APIs as the plain listener over TLS with a self-signed
//! certificate, robustness against clients that do not speak TLS, graceful shutdown, and
//! `myelin serve` binding `tls.listen`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use myelin::Config;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server with a plain and a TLS listener on loopback.
struct Running {
    http: SocketAddr,
    https: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start(data_dir: &std::path::Path) -> Running {
    let mut config = Config::for_data_dir(data_dir.to_path_buf());
    config.tls.self_signed = true;
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http, https) = (plain.local_addr().unwrap(), tls.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(myelin::run_with(config, plain, Some(tls), async move {
        let _ = stopped.await;
    }));
    Running {
        http,
        https,
        stop,
        task,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the server stops in time")
            .expect("the server task does not panic")
            .expect("the server stops cleanly");
    }
}

fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    // The server starts in the background; its listeners are bound, so a connection waits in the
    // backlog, but retry a moment in case the first attempt races the start.
    let mut last_error = None;
    for _ in 0..50 {
        match client.get(url).send().await {
            Ok(response) => {
                assert_eq!(response.status(), 200, "GET {url}");
                return response.json().await.expect("a JSON body");
            }
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("GET {url} failed: {last_error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_same_apis_over_tls_and_survives_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let client = insecure_client();
    let https = format!("https://{}", server.https);

    // The federation key endpoint, signed by the server, and the same keys as over plain HTTP.
    let keys = get_json(&client, &format!("{https}/_matrix/key/v2/server")).await;
    assert_eq!(keys["server_name"], "localhost", "{keys}");
    let key_ids: Vec<&String> = keys["verify_keys"]
        .as_object()
        .expect("verify_keys")
        .keys()
        .collect();
    assert_eq!(key_ids.len(), 1, "{keys}");
    assert!(
        keys["signatures"]["localhost"][key_ids[0].as_str()].is_string(),
        "signed with its key: {keys}"
    );
    let plain_keys = get_json(
        &client,
        &format!("http://{}/_matrix/key/v2/server", server.http),
    )
    .await;
    assert_eq!(plain_keys["verify_keys"], keys["verify_keys"]);

    // The client API.
    let versions = get_json(&client, &format!("{https}/_matrix/client/versions")).await;
    assert!(
        versions["versions"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{versions}"
    );

    // A client that speaks plain HTTP to the TLS port gets its connection dropped...
    let mut garbage = TcpStream::connect(server.https).await.unwrap();
    garbage
        .write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), garbage.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closes a non-TLS connection");
    // ... as does one that connects and leaves at once, or sends random bytes.
    drop(TcpStream::connect(server.https).await.unwrap());
    let mut noise = TcpStream::connect(server.https).await.unwrap();
    noise
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3])
        .await
        .unwrap();
    drop(noise);

    // ... and the server goes on serving HTTPS (on a new connection) and plain HTTP.
    let fresh = insecure_client();
    let versions = get_json(&fresh, &format!("{https}/_matrix/client/versions")).await;
    assert!(versions["versions"].is_array());
    get_json(
        &fresh,
        &format!("http://{}/_matrix/client/versions", server.http),
    )
    .await;

    // The self-signed certificate was written to the data directory.
    let cert_path = dir.path().join("tls").join("certificate.pem");
    let cert = std::fs::read_to_string(&cert_path).expect("the certificate file");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");

    // Shutdown stops both listeners.
    let https_addr = server.https;
    server.stop().await;
    assert!(
        TcpStream::connect(https_addr).await.is_err(),
        "the TLS port is closed after shutdown"
    );

    // A restart on the same data directory reuses the certificate.
    let server = start(dir.path()).await;
    get_json(
        &client,
        &format!("https://{}/_matrix/client/versions", server.https),
    )
    .await;
    assert_eq!(std::fs::read_to_string(&cert_path).unwrap(), cert);
    server.stop().await;
}

#[tokio::test]
async fn a_tls_listener_needs_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_data_dir(dir.path().to_path_buf());
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = myelin::run_with(config, plain, Some(tls), async {})
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("tls.self_signed"),
        "the error says what to set: {e:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn myelin_serve_binds_tls_listen() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_myelin"))
        .arg("serve")
        .env("MYELIN_DATA_DIR", dir.path())
        .env("MYELIN_LISTEN", "127.0.0.1:0")
        .env("MYELIN_TLS__LISTEN", "127.0.0.1:0")
        .env("MYELIN_TLS__SELF_SIGNED", "true")
        .env("MYELIN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn myelin");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let https_url = loop {
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("myelin did not announce its HTTPS listener: {e}");
            }
        };
        if let Some(url) = line.strip_prefix("Myelin listening on https://") {
            break format!("https://{url}");
        }
    };
    let versions = get_json(
        &insecure_client(),
        &format!("{https_url}/_matrix/client/versions"),
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(versions["versions"].is_array(), "{versions}");
}
