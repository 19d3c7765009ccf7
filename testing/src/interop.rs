//! Either homeserver's client API behind one type, so interoperability tests drive Myelin and
//! Synapse with the same steps (create, join, send, wait until something arrives).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::http::room_path;
use crate::{enc, StatusCode, SynapseServer, TestServer};

/// Either server's client API, so one helper drives both.
pub enum Server<'a> {
    Myelin(&'a TestServer),
    Synapse(&'a SynapseServer),
}

impl Server<'_> {
    /// Sends a request with an optional JSON body (GET and PUT as such, anything else as a
    /// POST on Myelin); the status and the answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        match self {
            Server::Myelin(m) => {
                let empty = json!({});
                match method {
                    Method::GET => m.get(path, Some(token)).await,
                    Method::PUT => m.put(path, Some(token), body.unwrap_or(&empty)).await,
                    _ => m.post(path, Some(token), body.unwrap_or(&empty)).await,
                }
            }
            Server::Synapse(s) => s.request(method, path, Some(token), body).await,
        }
    }

    /// [`Server::call`] that must answer 200; the answer.
    pub async fn ok(&self, method: Method, path: &str, token: &str, body: Value) -> Value {
        let (status, answer) = self.call(method, path, token, Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        answer
    }

    /// A `/sync` token for now.
    pub async fn since_now(&self, token: &str) -> String {
        let sync = self
            .ok(
                Method::GET,
                "/_matrix/client/v3/sync?timeout=0",
                token,
                json!(null),
            )
            .await;
        sync["next_batch"].as_str().expect("next_batch").to_owned()
    }

    /// Long-polls `/sync` (from `since`, or from an initial sync) until `check` holds.
    pub async fn sync_until(
        &self,
        token: &str,
        since: Option<String>,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut since = since;
        loop {
            let path = match &since {
                Some(s) => format!("/_matrix/client/v3/sync?timeout=2000&since={}", enc(s)),
                None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
            };
            let (status, sync) = self.call(Method::GET, &path, token, None).await;
            assert_eq!(status, StatusCode::OK, "{sync}");
            if check(&sync) {
                return sync;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {sync}"
            );
            since = sync["next_batch"].as_str().map(str::to_owned);
        }
    }

    /// Polls a GET until `check` holds.
    pub async fn get_until(
        &self,
        token: &str,
        path: &str,
        what: &str,
        check: impl Fn(StatusCode, &Value) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.call(Method::GET, path, token, None).await;
            if check(status, &body) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every message body of the room, newest first, paging `/messages` back to the start.
    pub async fn history(&self, token: &str, room: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..40 {
            let mut path = format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
                enc(room)
            );
            if let Some(f) = &from {
                path.push_str(&format!("&from={}", enc(f)));
            }
            let page = self.ok(Method::GET, &path, token, json!(null)).await;
            let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
            bodies.extend(
                chunk
                    .iter()
                    .filter(|e| e["type"] == "m.room.message")
                    .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)),
            );
            match page["end"].as_str() {
                Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
                _ => break,
            }
        }
        bodies
    }
}

/// Sends an `m.text` message; its event ID.
pub async fn send_text(
    server: &Server<'_>,
    token: &str,
    room: &str,
    txn: &str,
    body: &str,
) -> String {
    let answer = server
        .ok(
            Method::PUT,
            &room_path(room, &format!("send/m.room.message/{txn}")),
            token,
            json!({ "msgtype": "m.text", "body": body }),
        )
        .await;
    answer["event_id"].as_str().expect("event_id").to_owned()
}

impl Server<'_> {
    /// `POST /join/{roomId}` through `via` (Myelin reads `via`, Synapse `server_name`); the
    /// status and answer.
    pub async fn join_via(&self, token: &str, room: &str, via: &str) -> (StatusCode, Value) {
        let param = match self {
            Server::Myelin(_) => "via",
            Server::Synapse(_) => "server_name",
        };
        let path = format!("/_matrix/client/v3/join/{}?{param}={}", enc(room), enc(via));
        self.call(Method::POST, &path, token, Some(&json!({})))
            .await
    }

    /// `POST /createRoom` with `body`; the room ID.
    pub async fn create_room(&self, token: &str, body: Value) -> String {
        let created = self
            .ok(Method::POST, "/_matrix/client/v3/createRoom", token, body)
            .await;
        created["room_id"].as_str().expect("room_id").to_owned()
    }

    /// `GET /rooms/{roomId}/state/{type}/` (empty state key): the status and content.
    pub async fn state(&self, token: &str, room: &str, kind: &str) -> (StatusCode, Value) {
        let path = room_path(room, &format!("state/{kind}/"));
        self.call(Method::GET, &path, token, None).await
    }
}
