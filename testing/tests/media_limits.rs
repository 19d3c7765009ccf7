//! The limits on uploads over raw HTTP: the per-user storage quota (`media.max_bytes_per_user`,
//! 403 `M_FORBIDDEN`, whether the length is declared or the body streams in chunks, and for an
//! upload to a created media ID) and the upload rate limit (`rate_limits.media_upload`, 429
//! `M_LIMIT_EXCEEDED` with `retry_after_ms`).

use myelin_testing::http::{assert_err, assert_ok, rate, PW};
use myelin_testing::{Account, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `POST /upload` of `bytes`; the status and JSON body.
async fn upload(server: &TestServer, who: &Account, bytes: Vec<u8>) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload", server.base_url()))
        .bearer_auth(&who.access_token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `POST /upload` with a chunked body (no `Content-Length`), over a raw connection; the status.
async fn upload_chunked(server: &TestServer, who: &Account, chunks: &[Vec<u8>]) -> u16 {
    let addr = server.base_url().trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        who.access_token
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    for chunk in chunks {
        let sent = async {
            stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            stream.write_all(chunk).await?;
            stream.write_all(b"\r\n").await
        };
        // The server may answer and close before the whole body is sent.
        if sent.await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

/// The files left in the media directory's temporary folder.
fn temporary_files(server: &TestServer) -> usize {
    std::fs::read_dir(server.data_dir().join("media").join("tmp"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_quota_is_per_user() {
    let server = TestServer::start_with(|c| {
        c.media.max_bytes_per_user = Some(100);
        c.media.max_upload_bytes = 1000;
    })
    .await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;

    assert_ok(&upload(&server, &alice, vec![1; 60]).await, "60 of 100");
    assert_err(
        &upload(&server, &alice, vec![2; 50]).await,
        403,
        "M_FORBIDDEN",
        "60 + 50 is over the quota",
    );
    assert_ok(&upload(&server, &alice, vec![3; 40]).await, "exactly 100");
    assert_err(
        &upload(&server, &alice, vec![4; 1]).await,
        403,
        "M_FORBIDDEN",
        "the quota is used up",
    );
    assert_err(
        &upload(&server, &alice, vec![5; 2000]).await,
        413,
        "M_TOO_LARGE",
        "the size limit answers first",
    );
    // The same bytes again still count: the quota is of the user's uploads, not of the disk.
    assert_ok(&upload(&server, &bob, vec![1; 60]).await, "bob has his own");

    // A body streamed without a declared length is cut off when it passes the quota.
    let status = upload_chunked(&server, &bob, &[vec![6; 30], vec![7; 30]]).await;
    assert_eq!(status, 403, "streamed past the quota");
    assert_eq!(
        temporary_files(&server),
        0,
        "nothing left of the refused upload"
    );
    let status = upload_chunked(&server, &bob, &[vec![8; 20], vec![9; 20]]).await;
    assert_eq!(status, 200, "streamed within the quota");

    // An upload to a created media ID counts the same.
    let (status, created) = server
        .post("/_matrix/media/v1/create", alice.token(), &Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let uri = created["content_uri"].as_str().expect("content_uri");
    let resp = reqwest::Client::new()
        .request(
            Method::PUT,
            format!(
                "{}/_matrix/media/v3/upload/{}",
                server.base_url(),
                &uri["mxc://".len()..]
            ),
        )
        .bearer_auth(&alice.access_token)
        .body(vec![0u8; 10])
        .send()
        .await
        .expect("put");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_err(&(status, body), 403, "M_FORBIDDEN", "PUT past the quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_rate_limited_per_user() {
    let server = TestServer::start_with(|c| c.rate_limits.media_upload = rate(1, 2)).await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    assert_ok(&upload(&server, &alice, b"one".to_vec()).await, "first");
    assert_ok(&upload(&server, &alice, b"two".to_vec()).await, "second");
    let limited = upload(&server, &alice, b"three".to_vec()).await;
    assert_err(&limited, 429, "M_LIMIT_EXCEEDED", "past the burst");
    let retry = limited.1["retry_after_ms"]
        .as_u64()
        .expect("retry_after_ms");
    assert!(retry > 0 && retry <= 60_000, "retry_after_ms {retry}");
    assert_ok(&upload(&server, &bob, b"one".to_vec()).await, "per user");
}
