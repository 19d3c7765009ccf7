//! A minimal Matrix Client-Server API client over `reqwest`, returning typed errors.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::error::{BenchError, Result};

/// How long an ordinary (non-long-poll) request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub user_id: String,
    pub token: String,
}

/// A cheap-to-clone HTTP client bound to one homeserver base URL.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// Percent-encodes everything but the RFC 3986 unreserved characters.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks that `url` names a loopback host: the benchmark never loads anything else.
pub fn check_loopback(url: &str) -> Result<()> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        BenchError::Invalid(format!("{url}: only http:// loopback URLs are allowed"))
    })?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(BenchError::Invalid(format!(
            "{url}: host {host} is not a loopback address"
        )))
    }
}

impl Client {
    /// A client for the homeserver at `base_url` (e.g. `http://127.0.0.1:8008`), which must be
    /// a loopback address.
    pub fn new(base_url: &str) -> Result<Client> {
        check_loopback(base_url)?;
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|source| BenchError::Http {
                what: "building the HTTP client".into(),
                source,
            })?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One request; a non-2xx answer is [`BenchError::Status`]. Returns the JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let what = || format!("{method} {}", path.split('?').next().unwrap_or(path));
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path))
            .timeout(timeout);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| classify(what(), source))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| classify(what(), source))?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(BenchError::Status {
                what: what(),
                status: status.as_u16(),
                body,
            });
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| BenchError::Response {
            what: what(),
            detail: format!("body is not JSON: {e}"),
        })
    }

    /// `POST /_matrix/media/v3/upload` of `body`; the `mxc://` URI.
    pub async fn upload(&self, user: &User, body: Vec<u8>) -> Result<String> {
        let what = || "POST /_matrix/media/v3/upload".to_owned();
        let resp = self
            .http
            .post(format!("{}/_matrix/media/v3/upload", self.base))
            .timeout(REQUEST_TIMEOUT)
            .bearer_auth(&user.token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|source| classify(what(), source))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| classify(what(), source))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match value["content_uri"].as_str() {
            Some(uri) if status.is_success() => Ok(uri.to_owned()),
            _ => Err(BenchError::Status {
                what: what(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            }),
        }
    }

    /// `GET /_matrix/client/v1/media/download/{server}/{id}` of an `mxc://` URI, read in chunks
    /// and dropped; the number of bytes.
    pub async fn download(&self, user: &User, uri: &str) -> Result<u64> {
        let what = || "GET /_matrix/client/v1/media/download".to_owned();
        let rest = uri
            .strip_prefix("mxc://")
            .ok_or_else(|| BenchError::Response {
                what: what(),
                detail: format!("{uri} is not an mxc:// URI"),
            })?;
        let mut resp = self
            .http
            .get(format!(
                "{}/_matrix/client/v1/media/download/{rest}",
                self.base
            ))
            .timeout(REQUEST_TIMEOUT)
            .bearer_auth(&user.token)
            .send()
            .await
            .map_err(|source| classify(what(), source))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(BenchError::Status {
                what: what(),
                status: status.as_u16(),
                body: String::new(),
            });
        }
        let mut size = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|source| classify(what(), source))?
        {
            size += chunk.len() as u64;
        }
        Ok(size)
    }

    /// `GET /_matrix/client/versions`: succeeds once the server answers.
    pub async fn versions(&self, timeout: Duration) -> Result<Value> {
        self.call(Method::GET, "/_matrix/client/versions", None, None, timeout)
            .await
    }

    /// Registers `username` through User-Interactive Auth with `m.login.dummy`.
    pub async fn register(&self, username: &str, password: &str) -> Result<User> {
        let path = "/_matrix/client/v3/register";
        let mut body = json!({ "username": username, "password": password, "initial_device_display_name": "bench" });
        let first = self
            .call(Method::POST, path, None, Some(&body), REQUEST_TIMEOUT)
            .await;
        let done = match first {
            Ok(v) => v,
            Err(BenchError::Status {
                status: 401,
                body: text,
                ..
            }) => {
                let uia: Value = serde_json::from_str(&text).map_err(|e| BenchError::Response {
                    what: "POST /register".into(),
                    detail: format!("UIA answer is not JSON: {e}"),
                })?;
                body["auth"] = json!({ "type": "m.login.dummy", "session": uia.get("session").cloned().unwrap_or(Value::Null) });
                self.call(Method::POST, path, None, Some(&body), REQUEST_TIMEOUT)
                    .await?
            }
            Err(e) => return Err(e),
        };
        let field = |name: &str| {
            done.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| BenchError::Response {
                    what: "POST /register".into(),
                    detail: format!("no `{name}` in {done}"),
                })
        };
        Ok(User {
            user_id: field("user_id")?,
            token: field("access_token")?,
        })
    }

    /// `POST /login` with `m.login.password` as `user_id` on a new device `device_id`: a new
    /// access token each call (when `device_id` is new).
    pub async fn login(&self, user_id: &str, password: &str, device_id: &str) -> Result<User> {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": user_id },
            "password": password,
            "device_id": device_id,
            "initial_device_display_name": "bench",
        });
        let done = self
            .call(
                Method::POST,
                "/_matrix/client/v3/login",
                None,
                Some(&body),
                REQUEST_TIMEOUT,
            )
            .await?;
        let token = done
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| BenchError::Response {
                what: "POST /login".into(),
                detail: format!("no `access_token` in {done}"),
            })?;
        Ok(User {
            user_id: user_id.to_owned(),
            token: token.to_owned(),
        })
    }

    /// Creates a room with `body` as the `createRoom` request; returns its ID.
    pub async fn create_room(&self, user: &User, body: &Value) -> Result<String> {
        let v = self
            .call(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(&user.token),
                Some(body),
                REQUEST_TIMEOUT,
            )
            .await?;
        v.get("room_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| BenchError::Response {
                what: "POST /createRoom".into(),
                detail: format!("no room_id in {v}"),
            })
    }

    /// Creates a public room (anyone may join without an invite).
    pub async fn create_public_room(&self, user: &User) -> Result<String> {
        self.create_room(user, &json!({ "preset": "public_chat" }))
            .await
    }

    /// Joins a room by ID.
    pub async fn join(&self, user: &User, room_id: &str) -> Result<()> {
        let path = format!("/_matrix/client/v3/rooms/{}/join", enc(room_id));
        self.call(
            Method::POST,
            &path,
            Some(&user.token),
            Some(&json!({})),
            REQUEST_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    /// Leaves a room.
    pub async fn leave(&self, user: &User, room_id: &str) -> Result<()> {
        let path = format!("/_matrix/client/v3/rooms/{}/leave", enc(room_id));
        self.call(
            Method::POST,
            &path,
            Some(&user.token),
            Some(&json!({})),
            REQUEST_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    /// Sends an `m.room.message` text event; returns its event ID.
    pub async fn send_text(
        &self,
        user: &User,
        room_id: &str,
        txn_id: &str,
        body: &str,
    ) -> Result<String> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            enc(room_id),
            enc(txn_id)
        );
        let v = self
            .call(
                Method::PUT,
                &path,
                Some(&user.token),
                Some(&json!({ "msgtype": "m.text", "body": body })),
                REQUEST_TIMEOUT,
            )
            .await?;
        v.get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| BenchError::Response {
                what: "PUT /send".into(),
                detail: format!("no event_id in {v}"),
            })
    }

    /// `GET /sync`, long-polling up to `timeout_ms` when `since` is given; `filter` is a filter
    /// ID or inline JSON. The HTTP timeout is the long-poll plus a margin.
    pub async fn sync(
        &self,
        user: &User,
        since: Option<&str>,
        timeout_ms: u64,
        filter: Option<&str>,
    ) -> Result<Value> {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(since) = since {
            path.push_str("&since=");
            path.push_str(&enc(since));
        }
        if let Some(filter) = filter {
            path.push_str("&filter=");
            path.push_str(&enc(filter));
        }
        let limit = Duration::from_millis(timeout_ms) + REQUEST_TIMEOUT;
        self.call(Method::GET, &path, Some(&user.token), None, limit)
            .await
    }

    /// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync` (MSC4186): `body` is
    /// the whole request; `pos` continues a connection, long-polling up to `timeout_ms`.
    pub async fn sliding_sync(
        &self,
        user: &User,
        pos: Option<&str>,
        timeout_ms: u64,
        body: &Value,
    ) -> Result<Value> {
        let mut path = format!(
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout={timeout_ms}"
        );
        if let Some(pos) = pos {
            path.push_str("&pos=");
            path.push_str(&enc(pos));
        }
        let limit = Duration::from_millis(timeout_ms) + REQUEST_TIMEOUT;
        self.call(Method::POST, &path, Some(&user.token), Some(body), limit)
            .await
    }
}

/// Turns a reqwest timeout into [`BenchError::Timeout`], anything else into [`BenchError::Http`].
fn classify(what: String, source: reqwest::Error) -> BenchError {
    if source.is_timeout() {
        BenchError::Timeout(what)
    } else {
        BenchError::Http { what, source }
    }
}

/// The `next_batch` token of a `/sync` response.
pub fn next_batch(sync: &Value) -> Result<String> {
    sync.get("next_batch")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Response {
            what: "GET /sync".into(),
            detail: "no next_batch".into(),
        })
}

/// The timeline events of every joined room in a `/sync` response, with their room ID.
pub fn timeline_events(sync: &Value) -> Vec<(&str, &Value)> {
    let mut out = Vec::new();
    if let Some(rooms) = sync.pointer("/rooms/join").and_then(Value::as_object) {
        for (room_id, room) in rooms {
            if let Some(events) = room.pointer("/timeline/events").and_then(Value::as_array) {
                out.extend(events.iter().map(|e| (room_id.as_str(), e)));
            }
        }
    }
    out
}

/// The number of joined rooms in a `/sync` response.
pub fn joined_room_count(sync: &Value) -> usize {
    sync.pointer("/rooms/join")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// The `content.body` and `sender` of an event, when both are strings.
pub fn body_and_sender(event: &Value) -> Option<(&str, &str)> {
    Some((
        event.pointer("/content/body")?.as_str()?,
        event.get("sender")?.as_str()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_room_ids() {
        assert_eq!(enc("!a b:localhost"), "%21a%20b%3Alocalhost");
        assert_eq!(enc("abc-1.2_~"), "abc-1.2_~");
    }

    #[test]
    fn only_loopback() {
        assert!(check_loopback("http://127.0.0.1:8008").is_ok());
        assert!(check_loopback("http://localhost:8008/").is_ok());
        assert!(check_loopback("http://[::1]:8008").is_ok());
        assert!(check_loopback("http://10.0.0.1:8008").is_err());
        assert!(check_loopback("https://127.0.0.1").is_err());
        assert!(check_loopback("http://example.org").is_err());
    }

    #[test]
    fn reads_sync_shapes() {
        let sync = json!({ "next_batch": "s1", "rooms": { "join": { "!r:x": { "timeline": { "events": [
            { "sender": "@a:x", "content": { "body": "hi" } }
        ] } } } } });
        assert_eq!(next_batch(&sync).ok().as_deref(), Some("s1"));
        let events = timeline_events(&sync);
        assert_eq!(events.len(), 1);
        assert_eq!(body_and_sender(events[0].1), Some(("hi", "@a:x")));
        assert_eq!(joined_room_count(&sync), 1);
        assert!(next_batch(&json!({})).is_err());
    }
}
