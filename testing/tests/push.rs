//! Push notifications end to end: unread counts seen by the real SDK and over raw `/sync`,
//! `/notifications`, pusher validation and ownership, and delivery to a push gateway written
//! here (loopback, allowed through `[egress]`): formats and counts, a rejected pushkey, a
//! gateway that fails for a while, and a restart of Myelin with notifications still queued.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use tokio::sync::Notify;

use axum::{extract::State, http::StatusCode as AxumStatus, routing::post, Json, Router};
use matrix_sdk::{
    config::SyncSettings,
    ruma::{
        api::client::receipt::create_receipt::v3::ReceiptType, events::receipt::ReceiptThread,
        OwnedEventId, OwnedRoomId,
    },
    Client,
};
use myelin_testing::http::{assert_err, assert_ok, password_auth, room_path, PW};
use myelin_testing::{enc, has_flow_stage, Account, Config, TestServer};
use serde_json::{json, Value};

const C: &str = "/_matrix/client/v3";

// ---- the push gateway -------------------------------------------------------------------------

/// A push gateway on loopback that records what it is sent. `status` is what it answers (200 by
/// default); `reject` lists the pushkeys it answers as rejected.
#[derive(Clone, Default)]
struct Gateway {
    received: Arc<Mutex<Vec<Value>>>,
    /// Requests answered, failed ones included.
    attempts: Arc<AtomicU16>,
    /// Woken at every request.
    arrived: Arc<Notify>,
    status: Arc<AtomicU16>,
    reject: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts the gateway; returns it with its notify URL.
    async fn start() -> (Gateway, String) {
        let gateway = Gateway::default();
        gateway.status.store(200, Ordering::SeqCst);
        let app = Router::new()
            .route("/_matrix/push/v1/notify", post(notify))
            .with_state(gateway.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/_matrix/push/v1/notify",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (gateway, url)
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until the gateway got at least `n` notifications; returns them.
    async fn wait_for(&self, n: usize, what: &str) -> Vec<Value> {
        self.wait_until(|g| g.received().len() >= n, what).await;
        self.received()
    }

    /// Waits, woken by each request, until `done` holds (30 s at most).
    async fn wait_until(&self, done: impl Fn(&Gateway) -> bool, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let arrived = self.arrived.notified();
            if done(self) {
                return;
            }
            let waited = tokio::time::timeout_at(deadline, arrived).await;
            assert!(waited.is_ok(), "{what}: got only {:?}", self.received());
        }
    }
}

async fn notify(State(g): State<Gateway>, Json(body): Json<Value>) -> (AxumStatus, Json<Value>) {
    g.attempts.fetch_add(1, Ordering::SeqCst);
    let status = AxumStatus::from_u16(g.status.load(Ordering::SeqCst)).unwrap();
    if status != AxumStatus::OK {
        g.arrived.notify_waiters();
        return (status, Json(json!({})));
    }
    let reject = g.reject.lock().unwrap().clone();
    let rejected: Vec<&str> = body["notification"]["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["pushkey"].as_str())
        .filter(|k| reject.iter().any(|r| r == k))
        .collect();
    let answer = json!({ "rejected": rejected });
    g.received.lock().unwrap().push(body);
    g.arrived.notify_waiters();
    (AxumStatus::OK, Json(answer))
}

// ---- helpers ----------------------------------------------------------------------------------

/// A server that may reach the loopback gateway (and nothing else private).
async fn server() -> TestServer {
    TestServer::start_with(allow_loopback).await
}

fn allow_loopback(config: &mut Config) {
    config.egress.allow = vec!["127.0.0.1".into()];
}

/// Alice and Bob in a private room Alice created.
async fn pair(s: &TestServer) -> (Account, Account, String) {
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    s.invite(&alice.access_token, &room, &bob.user_id).await;
    s.join(&bob.access_token, &room).await;
    (alice, bob, room)
}

fn pusher(url: &str, pushkey: &str, format: Option<&str>) -> Value {
    let mut data = json!({ "url": url, "custom": "kept" });
    if let Some(format) = format {
        data["format"] = json!(format);
    }
    json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
        "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
        "data": data,
    })
}

async fn set_pusher(s: &TestServer, who: &Account, body: &Value) {
    let resp = s.post(&format!("{C}/pushers/set"), who.token(), body).await;
    assert_ok(&resp, "set the pusher");
}

async fn pushkeys(s: &TestServer, who: &Account) -> Vec<String> {
    let (_, body) = s.get(&format!("{C}/pushers"), who.token()).await;
    body["pushers"]
        .as_array()
        .unwrap_or_else(|| panic!("no pushers list: {body}"))
        .iter()
        .map(|p| p["pushkey"].as_str().unwrap().to_owned())
        .collect()
}

async fn send(s: &TestServer, who: &Account, room: &str, txn: &str, content: Value) -> String {
    let path = room_path(room, &format!("send/m.room.message/{txn}"));
    let (status, body) = s.put(&path, who.token(), &content).await;
    assert_eq!(status, 200, "send: {body}");
    body["event_id"].as_str().unwrap().to_owned()
}

fn mention(user_id: &str) -> Value {
    json!({"msgtype": "m.text", "body": "hey you", "m.mentions": {"user_ids": [user_id]}})
}

async fn read_receipt(s: &TestServer, who: &Account, room: &str, event_id: &str, body: Value) {
    let path = room_path(room, &format!("receipt/m.read/{}", enc(event_id)));
    assert_ok(&s.post(&path, who.token(), &body).await, "read receipt");
}

/// The joined room's entry in a full `/sync` with `filter`.
async fn synced_room(s: &TestServer, who: &Account, room: &str, filter: &Value) -> Value {
    let path = format!("{C}/sync?filter={}", enc(&filter.to_string()));
    let (status, body) = s.get(&path, who.token()).await;
    assert_eq!(status, 200, "sync: {body}");
    body["rooms"]["join"][room].clone()
}

// ---- counts -----------------------------------------------------------------------------------

#[tokio::test]
async fn the_sdk_sees_a_mention_highlighted_until_it_reads() {
    let s = TestServer::start().await;
    let (alice, bob, room) = pair(&s).await;
    let room_id = OwnedRoomId::try_from(room.as_str()).unwrap();
    let client = Client::builder()
        .homeserver_url(s.base_url())
        .build()
        .await
        .unwrap();
    client
        .matrix_auth()
        .login_username("bob", PW)
        .send()
        .await
        .unwrap();
    s.send_message(&alice.access_token, &room, "t1", "hello")
        .await;
    let last = send(&s, &alice, &room, "t2", mention(&bob.user_id)).await;

    let counts = |client: &Client| {
        client
            .get_room(&room_id)
            .map(|r| r.unread_notification_counts())
            .map(|c| (c.notification_count, c.highlight_count))
    };
    let settings = SyncSettings::default().timeout(Duration::from_secs(2));
    for _ in 0..10 {
        client.sync_once(settings.clone()).await.unwrap();
        if counts(&client) == Some((2, 1)) {
            break;
        }
    }
    assert_eq!(counts(&client), Some((2, 1)), "the mention highlights");

    let sdk_room = client.get_room(&room_id).unwrap();
    sdk_room
        .send_single_receipt(
            ReceiptType::Read,
            ReceiptThread::Unthreaded,
            OwnedEventId::try_from(last.as_str()).unwrap(),
        )
        .await
        .unwrap();
    for _ in 0..10 {
        client.sync_once(settings.clone()).await.unwrap();
        if counts(&client) == Some((0, 0)) {
            break;
        }
    }
    assert_eq!(counts(&client), Some((0, 0)), "the read receipt resets");
}

#[tokio::test]
async fn thread_replies_count_in_their_thread() {
    let s = TestServer::start().await;
    let (alice, bob, room) = pair(&s).await;
    let root = s
        .send_message(&alice.access_token, &room, "t1", "root")
        .await;
    let reply = json!({
        "msgtype": "m.text", "body": "reply",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    });
    let in_thread = send(&s, &alice, &room, "t2", reply).await;
    let threaded = json!({"room": {"timeline": {"unread_thread_notifications": true}}});

    let synced = synced_room(&s, &bob, &room, &threaded).await;
    assert_eq!(synced["unread_notifications"]["notification_count"], 1);
    assert_eq!(
        synced["unread_thread_notifications"][&root]["notification_count"], 1,
        "{synced}"
    );
    // Without the filter flag the room's count covers the thread too.
    let whole = synced_room(&s, &bob, &room, &json!({})).await;
    assert_eq!(whole["unread_notifications"]["notification_count"], 2);
    assert!(whole.get("unread_thread_notifications").is_none());

    // A receipt in the thread reads the thread only.
    read_receipt(&s, &bob, &room, &in_thread, json!({"thread_id": root})).await;
    let synced = synced_room(&s, &bob, &room, &threaded).await;
    assert_eq!(synced["unread_notifications"]["notification_count"], 1);
    assert!(synced["unread_thread_notifications"]
        .as_object()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn counts_after_redaction_and_leave() {
    let s = TestServer::start().await;
    let (alice, bob, room) = pair(&s).await;
    let first = s
        .send_message(&alice.access_token, &room, "t1", "one")
        .await;
    s.send_message(&alice.access_token, &room, "t2", "two")
        .await;
    let synced = synced_room(&s, &bob, &room, &json!({})).await;
    assert_eq!(synced["unread_notifications"]["notification_count"], 2);

    let path = room_path(&room, &format!("redact/{}/r1", enc(&first)));
    assert_ok(&s.put(&path, alice.token(), &json!({})).await, "redact");
    let synced = synced_room(&s, &bob, &room, &json!({})).await;
    assert_eq!(synced["unread_notifications"]["notification_count"], 1);
    assert_eq!(synced["unread_notifications"]["highlight_count"], 0);

    s.leave(&bob.access_token, &room).await;
    s.send_message(&alice.access_token, &room, "t3", "after")
        .await;
    let sync = s.sync(&bob.access_token, None, 0).await;
    assert!(sync["rooms"]["join"].get(&room).is_none(), "{sync}");
    let (_, body) = s.get(&format!("{C}/notifications"), bob.token()).await;
    let kinds: Vec<&str> = body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["event"]["content"]["body"]
                .as_str()
                .or(n["event"]["content"]["membership"].as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(kinds, ["two", "invite"], "nothing after the leave: {body}");
}

#[tokio::test]
async fn sliding_sync_carries_the_counts() {
    let s = TestServer::start().await;
    let (alice, bob, room) = pair(&s).await;
    s.send_message(&alice.access_token, &room, "t1", "hi").await;
    send(&s, &alice, &room, "t2", mention(&bob.user_id)).await;
    let request = json!({"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}}});
    let path = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0";
    let (status, body) = s.post(path, bob.token(), &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rooms"][&room]["notification_count"], 2, "{body}");
    assert_eq!(body["rooms"][&room]["highlight_count"], 1, "{body}");
}

#[tokio::test]
async fn notifications_list_pages_highlights_and_read_state() {
    let s = TestServer::start().await;
    let (alice, bob, room) = pair(&s).await;
    let plain = s
        .send_message(&alice.access_token, &room, "t1", "plain")
        .await;
    let mentioned = send(&s, &alice, &room, "t2", mention(&bob.user_id)).await;
    read_receipt(&s, &bob, &room, &plain, json!({})).await;

    let (status, body) = s.get(&format!("{C}/notifications"), bob.token()).await;
    assert_eq!(status, 200, "{body}");
    let list = body["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 3, "the invite, then two messages: {body}");
    assert_eq!(list[2]["event"]["content"]["membership"], "invite");
    assert_eq!(list[2]["read"], true, "what came before the join is read");
    assert_eq!(list[0]["event"]["event_id"], mentioned.as_str());
    assert_eq!(list[0]["read"], false);
    assert_eq!(list[0]["room_id"], room.as_str());
    assert!(list[0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["set_tweak"] == "highlight"));
    assert_eq!(list[1]["read"], true);

    let (_, page) = s
        .get(&format!("{C}/notifications?limit=1"), bob.token())
        .await;
    let token = page["next_token"]
        .as_str()
        .expect("a next token")
        .to_owned();
    let (_, rest) = s
        .get(
            &format!("{C}/notifications?limit=1&from={token}"),
            bob.token(),
        )
        .await;
    assert_eq!(
        rest["notifications"][0]["event"]["event_id"],
        plain.as_str()
    );
    let (_, highlights) = s
        .get(&format!("{C}/notifications?only=highlight"), bob.token())
        .await;
    assert_eq!(highlights["notifications"].as_array().unwrap().len(), 1);
    let resp = s
        .get(&format!("{C}/notifications?from=nonsense"), bob.token())
        .await;
    assert_err(&resp, 400, "M_INVALID_PARAM", "a bad from token");
    // Alice sent them: nothing for her.
    let (_, own) = s.get(&format!("{C}/notifications"), alice.token()).await;
    assert!(own["notifications"].as_array().unwrap().is_empty());
}

// ---- pushers ----------------------------------------------------------------------------------

#[tokio::test]
async fn pusher_bodies_are_validated() {
    let s = server().await;
    let bob = s.register("bob", PW).await;
    let set = format!("{C}/pushers/set");
    let good = pusher("https://push.example.org/_matrix/push/v1/notify", "k", None);

    let mut no_kind = good.clone();
    no_kind.as_object_mut().unwrap().remove("kind");
    assert_err(
        &s.post(&set, bob.token(), &no_kind).await,
        400,
        "M_MISSING_PARAM",
        "no kind",
    );
    let mut no_data = good.clone();
    no_data.as_object_mut().unwrap().remove("data");
    assert_err(
        &s.post(&set, bob.token(), &no_data).await,
        400,
        "M_MISSING_PARAM",
        "no data",
    );
    for (url, what) in [
        ("https://push.example.org/somewhere", "another path"),
        (
            "http://push.example.org/_matrix/push/v1/notify",
            "plain http to a public host",
        ),
        (
            "http://10.0.0.7/_matrix/push/v1/notify",
            "a private address not allowed",
        ),
        (
            "https://10.0.0.7/_matrix/push/v1/notify",
            "https to a private address",
        ),
        (
            "ftp://push.example.org/_matrix/push/v1/notify",
            "another scheme",
        ),
    ] {
        let mut bad = good.clone();
        bad["data"]["url"] = json!(url);
        assert_err(
            &s.post(&set, bob.token(), &bad).await,
            400,
            "M_INVALID_PARAM",
            what,
        );
    }
    let mut long = good.clone();
    long["pushkey"] = json!("k".repeat(513));
    assert_err(
        &s.post(&set, bob.token(), &long).await,
        400,
        "M_INVALID_PARAM",
        "long key",
    );
    let (status, _) = s
        .request_raw(
            axum::http::Method::POST,
            &set,
            bob.token(),
            Some(b"{nope".to_vec()),
        )
        .await;
    assert_eq!(status, 400, "bad JSON");
    assert!(pushkeys(&s, &bob).await.is_empty());

    set_pusher(&s, &bob, &good).await;
    assert_eq!(pushkeys(&s, &bob).await, ["k"]);
    let delete = json!({"kind": null, "app_id": "org.example.app", "pushkey": "k"});
    set_pusher(&s, &bob, &delete).await;
    assert!(pushkeys(&s, &bob).await.is_empty());

    // Loopback is refused by a server that does not allow it.
    let strict = TestServer::start().await;
    let carol = strict.register("carol", PW).await;
    let local = pusher("http://127.0.0.1:9/_matrix/push/v1/notify", "k", None);
    let resp = strict.post(&set, carol.token(), &local).await;
    assert_err(
        &resp,
        400,
        "M_INVALID_PARAM",
        "loopback without [egress] allow",
    );
}

#[tokio::test]
async fn pushers_belong_to_their_device() {
    let s = server().await;
    let bob = s.register("bob", PW).await;
    let laptop = s.login("bob", PW).await;
    let tablet = s.login("bob", PW).await;
    let url = "https://push.example.org/_matrix/push/v1/notify";
    set_pusher(&s, &bob, &pusher(url, "phone-key", None)).await;
    set_pusher(&s, &laptop, &pusher(url, "laptop-key", None)).await;
    set_pusher(&s, &tablet, &pusher(url, "tablet-key", None)).await;
    assert_eq!(pushkeys(&s, &tablet).await.len(), 3, "listed per user");

    // Another user taking a pushkey removes Bob's, unless appending.
    let eve = s.register("eve", PW).await;
    let mut shared = pusher(url, "phone-key", None);
    shared["append"] = json!(true);
    set_pusher(&s, &eve, &shared).await;
    assert_eq!(pushkeys(&s, &bob).await.len(), 3);

    assert_ok(
        &s.post(&format!("{C}/logout"), tablet.token(), &json!({}))
            .await,
        "logout",
    );
    let mut left = pushkeys(&s, &bob).await;
    left.sort();
    assert_eq!(left, ["laptop-key", "phone-key"]);

    // A password change keeps only the pushers of the device that changed it.
    let path = format!("{C}/account/password");
    let body = json!({"new_password": "An0ther-pass", "logout_devices": false});
    let (status, uia) = s.post(&path, bob.token(), &body).await;
    assert_eq!(status, 401);
    assert!(has_flow_stage(&uia, "m.login.password"));
    let mut body = body;
    body["auth"] = password_auth(&bob.user_id, PW, Some(&uia["session"]));
    assert_ok(&s.post(&path, bob.token(), &body).await, "change password");
    assert_eq!(pushkeys(&s, &bob).await, ["phone-key"]);
    assert_ok(
        &s.get(&format!("{C}/account/whoami"), laptop.token()).await,
        "the laptop stays logged in",
    );
}

// ---- delivery ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_gateway_gets_both_formats_with_counts_and_tweaks() {
    let (gateway, url) = Gateway::start().await;
    let s = server().await;
    let (alice, bob, room) = pair(&s).await;
    let name = room_path(&room, "state/m.room.name/");
    assert_ok(
        &s.put(&name, alice.token(), &json!({"name": "Pushy"})).await,
        "name",
    );
    set_pusher(&s, &bob, &pusher(&url, "full-key", None)).await;
    let second = s.login("bob", PW).await;
    set_pusher(&s, &second, &pusher(&url, "id-key", Some("event_id_only"))).await;

    let started = Instant::now();
    let first = s
        .send_message(&alice.access_token, &room, "t1", "hi bob")
        .await;
    let got = gateway
        .wait_for(2, "the first message at both pushers")
        .await;
    println!("delivery latency: {:?}", started.elapsed());
    let by_key = |key: &str| {
        got.iter()
            .map(|b| &b["notification"])
            .find(|n| n["devices"][0]["pushkey"] == key)
            .unwrap_or_else(|| panic!("nothing for {key}: {got:?}"))
            .clone()
    };
    let full = by_key("full-key");
    assert_eq!(full["event_id"], first.as_str());
    assert_eq!(full["room_id"], room.as_str());
    assert_eq!(full["type"], "m.room.message");
    assert_eq!(full["sender"], alice.user_id.as_str());
    assert_eq!(full["sender_display_name"], "alice");
    assert_eq!(full["room_name"], "Pushy");
    assert_eq!(full["content"]["body"], "hi bob");
    assert_eq!(full["prio"], "high");
    assert_eq!(full["counts"]["unread"], 1);
    let device = &full["devices"][0];
    assert_eq!(device["app_id"], "org.example.app");
    assert_eq!(
        device["data"],
        json!({"custom": "kept"}),
        "data without url"
    );
    assert_eq!(device["tweaks"]["sound"], "default", "one-to-one rule");
    let ids_only = by_key("id-key");
    assert_eq!(ids_only["event_id"], first.as_str());
    assert_eq!(ids_only["counts"]["unread"], 1);
    assert!(ids_only.get("content").is_none() && ids_only.get("sender").is_none());
    assert_eq!(ids_only["devices"][0]["data"]["format"], "event_id_only");

    send(&s, &alice, &room, "t2", mention(&bob.user_id)).await;
    let got = gateway.wait_for(4, "the mention").await;
    let last = &got[2..];
    assert!(last
        .iter()
        .all(|b| b["notification"]["devices"][0]["tweaks"]["highlight"] == true));
    // Bob's own messages never reach his gateway.
    s.send_message(&bob.access_token, &room, "t3", "mine").await;
    s.send_message(&alice.access_token, &room, "t4", "again")
        .await;
    let got = gateway.wait_for(6, "the next message").await;
    assert!(got
        .iter()
        .all(|b| b["notification"]["sender"] != bob.user_id.as_str()));
}

#[tokio::test]
async fn a_rejected_pushkey_removes_the_pusher() {
    let (gateway, url) = Gateway::start().await;
    let s = server().await;
    let (alice, bob, room) = pair(&s).await;
    set_pusher(&s, &bob, &pusher(&url, "stale-key", Some("event_id_only"))).await;
    gateway.reject.lock().unwrap().push("stale-key".into());
    s.send_message(&alice.access_token, &room, "t1", "one")
        .await;
    gateway.wait_for(1, "the notification").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pushkeys(&s, &bob).await.is_empty() {
        assert!(Instant::now() < deadline, "the pusher stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A new pusher gets the next notification; the removed one got nothing more.
    set_pusher(&s, &bob, &pusher(&url, "fresh-key", Some("event_id_only"))).await;
    s.send_message(&alice.access_token, &room, "t2", "two")
        .await;
    let got = gateway.wait_for(2, "the new pusher's notification").await;
    let keys: Vec<&str> = got
        .iter()
        .map(|b| b["notification"]["devices"][0]["pushkey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["stale-key", "fresh-key"],
        "nothing more for a removed pusher"
    );
}

#[tokio::test]
async fn a_gateway_that_was_down_gets_everything_queued_in_order() {
    let (gateway, url) = Gateway::start().await;
    let s = server().await;
    let (alice, bob, room) = pair(&s).await;
    set_pusher(&s, &bob, &pusher(&url, "key", Some("event_id_only"))).await;
    gateway.status.store(503, Ordering::SeqCst);
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(
            s.send_message(&alice.access_token, &room, &format!("t{i}"), "x")
                .await,
        );
    }
    // Refused and retried: nothing counts as delivered while the gateway is down.
    gateway
        .wait_until(
            |g| g.attempts.load(Ordering::SeqCst) >= 2,
            "a retry while the gateway is down",
        )
        .await;
    assert!(gateway.received().is_empty());
    gateway.status.store(200, Ordering::SeqCst);
    let got = gateway.wait_for(3, "the queued notifications").await;
    let ids: Vec<&str> = got
        .iter()
        .map(|b| b["notification"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, sent, "each once, in order");
}

#[tokio::test]
async fn a_restart_loses_no_queued_notification() {
    let (gateway, url) = Gateway::start().await;
    let s = server().await;
    let (alice, bob, room) = pair(&s).await;
    set_pusher(&s, &bob, &pusher(&url, "key", Some("event_id_only"))).await;
    gateway.status.store(503, Ordering::SeqCst);
    let first = s
        .send_message(&alice.access_token, &room, "t1", "one")
        .await;
    let second = s
        .send_message(&alice.access_token, &room, "t2", "two")
        .await;
    let dir = s.stop().await;

    gateway.status.store(200, Ordering::SeqCst);
    let s = TestServer::restart_with(dir, allow_loopback).await;
    let got = gateway
        .wait_for(2, "the notifications queued before the restart")
        .await;
    let ids: Vec<&str> = got
        .iter()
        .map(|b| b["notification"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    let third = s
        .send_message(&alice.access_token, &room, "t3", "three")
        .await;
    // The stopped server ran in this process and is not gone as a killed one would be: its
    // worker may still retry what it held before the stop, so only the new one is looked for.
    let arrived = |g: &Gateway| {
        g.received()
            .iter()
            .any(|b| b["notification"]["event_id"] == third.as_str())
    };
    gateway
        .wait_until(arrived, "a notification after the restart")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_received_over_federation_notify() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    let room = a
        .create_room(&alice.access_token, &json!({"preset": "public_chat"}))
        .await;
    let join = format!(
        "{C}/join/{}?server_name={}",
        enc(&room),
        a.loopback_server_name()
    );
    assert_ok(&b.post(&join, bob.token(), &json!({})).await, "remote join");
    send(&a, &alice, &room, "t1", mention(&bob.user_id)).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = b.get(&format!("{C}/notifications"), bob.token()).await;
        let list = body["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(n) = list.iter().find(|n| n["event"]["type"] == "m.room.message") {
            assert_eq!(n["event"]["sender"], alice.user_id.as_str());
            assert!(!n["read"].as_bool().unwrap());
            break;
        }
        assert!(Instant::now() < deadline, "no notification on B: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = synced_room(&b, &bob, &room, &json!({})).await;
    assert_eq!(
        synced["unread_notifications"]["highlight_count"], 1,
        "{synced}"
    );
}
