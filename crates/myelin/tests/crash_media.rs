//! Media uploads survive a `kill -9` of the real `myelin` binary: every upload answered 200 is
//! downloadable with its bytes after a restart, and the media directory holds no partial file
//! (each file outside the temporary folder is named by the SHA-256 of its content, and the
//! temporary folder is emptied at start). Also runs `myelin media quarantine` as a separate
//! process against the data of a running server.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{http, register, Server};
use sha2::{Digest, Sha256};

/// Uploads running at once (as the benchmark).
const UPLOADERS: usize = 16;
/// Acknowledged uploads per round before the kill.
const ACKS_BEFORE_KILL: usize = 40;
const ROUNDS: usize = 2;

/// The server's overrides: no upload rate limit, so the uploaders run flat out.
const ENV: &[(&str, &str)] = &[("MYELIN_RATE_LIMITS__ENABLED", "false")];

/// An acknowledged upload: its URI and what its bytes were made from.
#[derive(Clone, Debug)]
struct Ack {
    uri: String,
    seed: u64,
    size: usize,
}

/// `size` bytes that depend on `seed` (xorshift), so no two uploads share a file.
fn bytes(seed: u64, size: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Uploads until a request fails (the server died) or `stop` is set.
async fn uploader(
    base: String,
    token: String,
    task: u64,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
) {
    let http = http();
    for i in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let seed = (task << 32) | i;
        let size = 64 * 1024 + (seed as usize % 7) * 150 * 1024;
        let sent = http
            .post(format!("{base}/_matrix/media/v3/upload"))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .body(bytes(seed, size))
            .send()
            .await;
        let Ok(resp) = sent else { return };
        if resp.status() != reqwest::StatusCode::OK {
            return;
        }
        let Ok(value) = resp.json::<serde_json::Value>().await else {
            return;
        };
        let uri = value["content_uri"]
            .as_str()
            .expect("content_uri")
            .to_owned();
        acks.lock().unwrap().push(Ack { uri, seed, size });
    }
}

/// Every file of the media directory outside `tmp/` is whole: named by its content's SHA-256.
/// The number of files.
fn assert_no_partial_files(media: &Path) -> usize {
    let mut count = 0;
    let mut dirs = vec![media.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read media dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tmp") {
                    dirs.push(path);
                }
                continue;
            }
            let content = std::fs::read(&path).expect("read media file");
            let digest = format!("{:x}", Sha256::digest(&content));
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            assert_eq!(
                name,
                digest,
                "a partial or misnamed file: {}",
                path.display()
            );
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_uploads_survive_kill_9() {
    let data_dir = tempfile::tempdir().expect("data dir");
    let log_dir = tempfile::tempdir().expect("log dir");
    let log = log_dir.path().join("myelin.log");
    let http = http();
    let mut server = Server::spawn_with_env(data_dir.path(), &log, ENV);
    let token = register(&http, &server.url, "uploader").await;

    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    for round in 0..ROUNDS as u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..UPLOADERS as u64)
            .map(|t| {
                let task = (round << 8) | t;
                let (acks, stop) = (acks.clone(), stop.clone());
                tokio::spawn(uploader(
                    server.url.clone(),
                    token.clone(),
                    task,
                    acks,
                    stop,
                ))
            })
            .collect();
        let target = acks.lock().unwrap().len() + ACKS_BEFORE_KILL;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while acks.lock().unwrap().len() < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "uploads made no progress; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Uploads are in flight: their temporary files are being written.
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.expect("uploader task");
        }
        server = Server::spawn_with_env(data_dir.path(), &log, ENV);
    }

    let media = data_dir.path().join("media");
    let leftovers = std::fs::read_dir(media.join("tmp")).map_or(0, |d| d.count());
    assert_eq!(leftovers, 0, "the temporary folder is emptied at start");
    let files = assert_no_partial_files(&media);
    let acks = acks.lock().unwrap().clone();
    eprintln!(
        "{} acknowledged uploads, {files} whole files after {ROUNDS} kill -9s",
        acks.len()
    );
    for ack in &acks {
        let url = format!(
            "{}/_matrix/client/v1/media/download/{}",
            server.url,
            &ack.uri["mxc://".len()..]
        );
        let resp = http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("download");
        assert_eq!(resp.status(), 200, "{} lost", ack.uri);
        let body = resp.bytes().await.expect("body");
        assert!(
            body[..] == bytes(ack.seed, ack.size)[..],
            "{} has other bytes",
            ack.uri
        );
    }
}

/// `myelin media quarantine` run as its own process while the server runs: the server answers
/// 404 at once, and `unquarantine` brings the media back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_command_works_on_a_running_server() {
    let data_dir = tempfile::tempdir().expect("data dir");
    let log_dir = tempfile::tempdir().expect("log dir");
    let log = log_dir.path().join("myelin.log");
    let http = http();
    let server = Server::spawn(data_dir.path(), &log);
    let token = register(&http, &server.url, "alice").await;
    let resp = http
        .post(format!("{}/_matrix/media/v3/upload", server.url))
        .bearer_auth(&token)
        .body(b"hello".to_vec())
        .send()
        .await
        .expect("upload");
    let value: serde_json::Value = resp.json().await.expect("json");
    let uri = value["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_owned();
    let download = format!(
        "{}/_matrix/client/v1/media/download/{}",
        server.url,
        &uri["mxc://".len()..]
    );
    let status = |http: reqwest::Client, url: String, token: String| async move {
        let resp = http.get(url).bearer_auth(token).send().await;
        resp.expect("download").status().as_u16()
    };
    assert_eq!(
        status(http.clone(), download.clone(), token.clone()).await,
        200
    );

    let myelin = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_myelin"))
            .args(args)
            .env("MYELIN_DATA_DIR", data_dir.path())
            .output()
            .expect("run myelin");
        assert!(
            output.status.success(),
            "myelin {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let said = myelin(&["media", "quarantine", &uri]);
    assert!(said.contains("Quarantined"), "{said}");
    assert_eq!(
        status(http.clone(), download.clone(), token.clone()).await,
        404
    );
    myelin(&["media", "unquarantine", &uri]);
    assert_eq!(
        status(http.clone(), download.clone(), token.clone()).await,
        200
    );
    let said = myelin(&["media", "purge-remote", "--max-bytes", "0"]);
    assert!(said.contains("0 media"), "{said}");
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_myelin"))
        .args(["media", "purge-remote"])
        .env("MYELIN_DATA_DIR", data_dir.path())
        .output()
        .expect("run myelin");
    assert!(!refused.status.success(), "purge-remote needs a bound");
}
