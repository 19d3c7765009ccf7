//! `push`: a member with an HTTP pusher whose push gateway is a stub served here on loopback;
//! another member sends, one message at a time; measures the time from the start of the
//! `PUT /send` to the notification's arrival at the gateway.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::error::{BenchError, Result};
use crate::report::WorkloadReport;
use crate::setup::{register_users, rooms_with_members, Ctx};
use crate::stats::Summary;

/// The sizes of `push`.
#[derive(Debug, Clone)]
pub struct Params {
    pub samples: usize,
    /// How long to wait for one notification before counting it lost.
    pub arrival_timeout_ms: u64,
    /// The pause between an arrival and the next send.
    pub gap_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            samples: 200,
            arrival_timeout_ms: 10_000,
            gap_ms: 5,
        }
    }
}

/// The largest notification the stub gateway reads.
const MAX_BODY: usize = 1 << 20;

/// The body of the `i`-th probe message.
fn probe(i: usize) -> String {
    format!("push-{i}")
}

/// The probe number a notification carries (`notification.content.body`), if any.
pub fn probe_number(notification: &Value) -> Option<usize> {
    notification
        .pointer("/notification/content/body")?
        .as_str()?
        .strip_prefix("push-")?
        .parse()
        .ok()
}

/// Answers one connection's `POST /_matrix/push/v1/notify` requests (keep-alive), reporting
/// each notification with its arrival time.
async fn serve_gateway(stream: TcpStream, tx: mpsc::UnboundedSender<(Value, Instant)>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        // Request line and headers.
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        if length > MAX_BODY {
            return;
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let at = Instant::now();
        if let Ok(notification) = serde_json::from_slice::<Value>(&body) {
            let _ = tx.send((notification, at));
        }
        // One write, with Nagle off (see `start_gateway`): a head and body written apart would
        // wait for the server's delayed ACK, adding ~40 ms to every answer.
        let answer = r#"{"rejected":[]}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream
            .get_mut()
            .write_all(response.as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The stub push gateway on `127.0.0.1`: its port, and notifications as they arrive.
async fn start_gateway() -> Result<(u16, mpsc::UnboundedReceiver<(Value, Instant)>)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::Invalid(format!("cannot bind the stub gateway: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| BenchError::Invalid(format!("stub gateway address: {e}")))?
        .port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_gateway(stream, tx.clone()));
        }
    });
    Ok((port, rx))
}

/// Runs `push`.
pub async fn run(ctx: &Ctx, p: &Params) -> Result<WorkloadReport> {
    let mut report = WorkloadReport::new("push");
    report.param("samples", p.samples);
    let (port, mut rx) = start_gateway().await?;
    let users = register_users(ctx, "p", 2).await?;
    let rooms = rooms_with_members(ctx, &users, &[vec![0, 1]]).await?;
    let room = rooms
        .first()
        .ok_or_else(|| BenchError::Invalid("no room".into()))?
        .clone();
    let (sender, receiver) = (users[0].clone(), users[1].clone());
    let pusher = json!({
        "kind": "http",
        "app_id": "org.example.bench",
        "pushkey": format!("bench-{}", receiver.user_id),
        "app_display_name": "myelin-bench",
        "device_display_name": "bench",
        "lang": "en",
        "data": {"url": format!("http://127.0.0.1:{port}/_matrix/push/v1/notify")},
    });
    ctx.client
        .call(
            Method::POST,
            "/_matrix/client/v3/pushers/set",
            Some(&receiver.token),
            Some(&pusher),
            Duration::from_secs(30),
        )
        .await?;

    let mut latencies = Vec::with_capacity(p.samples);
    let wait = Duration::from_millis(p.arrival_timeout_ms);
    for i in 0..p.samples {
        tokio::time::sleep(Duration::from_millis(p.gap_ms)).await;
        let t0 = Instant::now();
        if let Err(e) = ctx
            .client
            .send_text(&sender, &room, &format!("p{i}"), &probe(i))
            .await
        {
            report.error(e);
            continue;
        }
        let deadline = t0 + wait;
        loop {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some((notification, at))) if probe_number(&notification) == Some(i) => {
                    latencies.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => {
                    report.error("the stub push gateway stopped");
                    break;
                }
                Err(_) => {
                    report.error(format!("notification {i} did not arrive within {wait:?}"));
                    break;
                }
            }
        }
    }
    report.latency("gateway", Summary::of(&latencies));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_names_its_probe_by_the_message_body() {
        let n = json!({"notification": {"content": {"msgtype": "m.text", "body": "push-17"}}});
        assert_eq!(probe_number(&n), Some(17));
        assert_eq!(probe(17), "push-17");
        for other in [
            json!({"notification": {"event_id": "$x"}}),
            json!({"notification": {"content": {"body": "deliver-3"}}}),
            json!({"notification": {"content": {"body": "push-x"}}}),
        ] {
            assert_eq!(probe_number(&other), None);
        }
    }

    #[tokio::test]
    async fn the_stub_gateway_answers_and_reports_each_notification() {
        let (port, mut rx) = start_gateway().await.expect("gateway");
        let client = reqwest::Client::new();
        for i in 0..3 {
            let resp = client
                .post(format!("http://127.0.0.1:{port}/_matrix/push/v1/notify"))
                .json(&json!({"notification": {"content": {"body": probe(i)}}}))
                .send()
                .await
                .expect("post");
            assert_eq!(resp.status(), 200);
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body, json!({"rejected": []}));
            let (n, _) = rx.recv().await.expect("reported");
            assert_eq!(probe_number(&n), Some(i));
        }
    }
}
